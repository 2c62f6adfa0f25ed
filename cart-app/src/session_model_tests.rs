//! A model-based property test of the shopping session and the screen:
//! random sequences of every input (scans of every kind, every tap, payment
//! progress and results, device and service changes) drive a [`Session`]
//! whose view updates feed the UI's real [`CheckoutController`]. Taps go
//! through the controller as a person's would. After every step:
//!
//! - the screen shown is one the session's state implies (paying <=> the
//!   reader screen; the list and the checkout only with items; the welcome
//!   screen only with none; an age check names a restricted line that still
//!   waits; the cart drawn is the session's cart);
//! - every control the shown screen offers as enabled, tapped (on a copy),
//!   makes the transition the state machine defines;
//! - a control drawn disabled (Call staff once called) is disabled in the
//!   presentation the window binds.

use std::sync::{Arc, Mutex};

use hal::reader::message::{PaymentErrorCode, UiEvent as ReaderUiEvent};
use hal::scanner::{Decoder, DecoderConfig};
use proptest::prelude::*;
use store_and_forward::PaymentKey;
use ui::{CheckoutController, EventSink, UiAction};

use super::*;

const CSV: &str = "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
4006381333931,Highlighter,189,EUR,standard,,false
4012345000023,Sparkling water,399,EUR,reduced,,false
5000267024202,Whisky 70 cl,2999,EUR,standard,18,false
";

/// Every kind of scan the session can receive.
const CODES: &[&str] = &[
    "4006381333931",                        // an item
    "4012345000023",                        // another item
    "5000267024202",                        // age-restricted
    "4006381333948",                        // valid code, not in the catalog
    "]C10109501101530003\u{1d}70112612311", // refused (the old crash)
    "9912345678909",                        // coupon
    "STAFF:1234",                           // staff badge on the list
    "WIFI:S:store;T:WPA;P:secret;;",        // provisioning code
    "hello",                                // not a product
    "STAFF:0099",                           // staff badge not on the list
];

/// `CODES` index of the badge on the staff list.
const BADGE_ON_LIST: usize = 6;
/// `CODES` index of the badge not on it.
const BADGE_NOT_ON_LIST: usize = 9;

/// The staff list every model cart holds: badge 1234 only.
fn staff_list() -> store_and_forward::staff::StaffList {
    store_and_forward::staff::StaffList::hashing(3, vec![7; 16], &["1234"])
}

#[derive(Debug, Clone)]
enum Step {
    Scan(usize),
    Tap(UiAction),
    Prompt(u8),
    Authorizing(bool),
    Paid(u8),
    Devices(bool, bool),
    OutOfService(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..CODES.len()).prop_map(Step::Scan),
        6 => prop_oneof![
            Just(UiAction::Checkout),
            Just(UiAction::BackToCart),
            Just(UiAction::Pay),
            Just(UiAction::Cancel),
            Just(UiAction::TryAgain),
            Just(UiAction::Done),
            (0i32..4).prop_map(UiAction::RemoveRow),
            (0i32..4).prop_map(UiAction::LessRow),
            (0i32..4).prop_map(UiAction::MoreRow),
            Just(UiAction::CallStaff),
            Just(UiAction::RemoveAgeItem),
            Just(UiAction::SetLanguage("de".into())),
            Just(UiAction::SetLanguage("en".into())),
        ]
        .prop_map(Step::Tap),
        2 => (0u8..3).prop_map(Step::Prompt),
        1 => any::<bool>().prop_map(Step::Authorizing),
        3 => (0u8..10).prop_map(Step::Paid),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Step::Devices(a, b)),
        1 => any::<bool>().prop_map(Step::OutOfService),
    ]
}

fn paid(kind: u8) -> Result<PayResult, String> {
    let shown = match kind {
        0 => Shown::ApprovedOnline {
            reference: "ref-1".into(),
        },
        1 => Shown::ApprovedOffline,
        2 => Shown::DeclinedOnline {
            reason: "insufficient funds".into(),
        },
        3 => Shown::DeclinedOffline {
            reasons: vec![OfflineReason::CardDenied],
            bank_timed_out: false,
        },
        4 => Shown::NoCard {
            code: PaymentErrorCode::Timeout,
        },
        5 => Shown::NoCard {
            code: PaymentErrorCode::Unreadable,
        },
        6 => Shown::Cancelled,
        7 => Shown::NoCard {
            code: PaymentErrorCode::CardRemoved,
        },
        8 => Shown::DeclinedOnline {
            reason: "do not honour".into(),
        },
        _ => return Err("reader unplugged".into()),
    };
    Ok(PayResult {
        key: PaymentKey::new(),
        state: None,
        shown,
        masked_pan: Some("411111******1111".into()),
        receipt_code: None,
    })
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<UiEvent>>>);

impl EventSink for Sink {
    fn send(&self, event: UiEvent) {
        self.0.lock().expect("sink").push(event);
    }
}

impl Sink {
    fn take(&self) -> Vec<UiEvent> {
        std::mem::take(&mut *self.0.lock().expect("sink"))
    }
}

/// A session and the screen the shopper sees.
struct Cart {
    session: Session,
    ui: CheckoutController,
    sink: Sink,
    /// Every effect of the last step.
    effects: Vec<Effect>,
}

impl Cart {
    fn new() -> Cart {
        let sink = Sink::default();
        let session = Session::new(
            Currency::new("EUR").expect("currency"),
            TaxTable([("standard".to_string(), 1900), ("reduced".to_string(), 700)].into()),
        )
        .with_staff(Arc::new(staff_list()));
        Cart {
            session,
            ui: CheckoutController::new("EUR", sink.clone()),
            sink,
            effects: Vec::new(),
        }
    }

    /// A copy of this cart: the session cloned, a controller showing what
    /// this one shows.
    fn copy(&self) -> Cart {
        let sink = Sink::default();
        let mut ui = CheckoutController::new("EUR", sink.clone());
        ui.apply(ViewUpdate::Cart(self.session.cart_view()));
        ui.apply(ViewUpdate::Screen(self.ui.screen().clone()));
        Cart {
            session: self.session.clone(),
            ui,
            sink,
            effects: Vec::new(),
        }
    }

    fn input(&mut self, input: Input, catalog: &Catalog) {
        let effects = self.session.handle(input, catalog);
        for e in &effects {
            if let Effect::View(update) = e {
                self.ui.apply(update.clone());
            }
        }
        self.effects.extend(effects);
    }

    fn tap(&mut self, action: UiAction, catalog: &Catalog) {
        self.ui.on_action(action);
        for ev in self.sink.take() {
            self.input(Input::Ui(ev), catalog);
        }
    }

    fn run(&mut self, step: &Step, catalog: &Catalog) {
        self.effects.clear();
        let decoder = Decoder::new(DecoderConfig::default());
        match step {
            Step::Scan(i) => self.input(
                Input::Scan(Scan {
                    at: std::time::SystemTime::now(),
                    monotonic: std::time::Instant::now(),
                    content: decoder.decode(CODES[*i].as_bytes(), 2026),
                }),
                catalog,
            ),
            Step::Tap(action) => self.tap(action.clone(), catalog),
            // The daemon reports payment progress and results only while a
            // payment runs.
            Step::Prompt(k) if self.session.paying() => {
                let p = match k {
                    0 => ReaderUiEvent::PinRequired,
                    1 => ReaderUiEvent::Processing,
                    _ => ReaderUiEvent::PresentCard,
                };
                self.input(Input::Payment(PayEvent::Prompt(p)), catalog)
            }
            Step::Authorizing(online) if self.session.paying() => self.input(
                Input::Payment(PayEvent::Authorizing { online: *online }),
                catalog,
            ),
            Step::Paid(kind) if self.session.paying() => {
                self.input(Input::PaymentDone(paid(*kind)), catalog)
            }
            Step::Prompt(_) | Step::Authorizing(_) | Step::Paid(_) => {}
            Step::Devices(scanner, reader) => self.input(
                Input::Devices(FaultView {
                    scanner_missing: *scanner,
                    reader_missing: *reader,
                }),
                catalog,
            ),
            Step::OutOfService(on) => self.input(Input::OutOfService(*on), catalog),
        }
    }
}

/// The screen shown is one the state implies.
fn check_screen(cart: &mut Cart) -> Result<(), TestCaseError> {
    let shown = cart.ui.screen().clone();
    let shown = &shown;
    let s = &cart.session;
    let lines = s.basket().lines();
    prop_assert_eq!(
        s.paying(),
        matches!(shown, Screen::Reader(_)),
        "paying vs shown {:?}",
        shown
    );
    match shown {
        Screen::Idle => prop_assert!(
            lines.is_empty(),
            "welcome screen with {} lines",
            lines.len()
        ),
        Screen::Shopping | Screen::Checkout => {
            prop_assert!(!lines.is_empty(), "{:?} with an empty basket", shown);
            prop_assert!(matches!(s.phase, Phase::Shopping | Phase::Checkout));
            prop_assert_eq!(
                s.phase == Phase::Checkout,
                matches!(shown, Screen::Checkout),
                "phase {:?} on {:?}",
                s.phase,
                shown
            );
        }
        Screen::AgeCheck(v) => {
            let i = s.ids.iter().position(|id| *id == v.line_id);
            prop_assert!(i.is_some(), "age check for a line that is gone");
            prop_assert!(s.basket().pending_age_check().is_some(), "nothing waits");
            prop_assert!(lines[i.unwrap_or(0)].min_age.is_some());
        }
        Screen::Approved(_) => prop_assert_eq!(s.phase, Phase::Done),
        Screen::Declined(_) => prop_assert!(
            s.phase == Phase::Checkout || (s.phase == Phase::Done && s.out_of_service),
            "declined in {:?}",
            s.phase
        ),
        Screen::Reader(_) => prop_assert_eq!(s.phase, Phase::Paying),
        Screen::Fault(f) => prop_assert!(f.scanner_missing || f.reader_missing),
        Screen::OutOfService | Screen::Setup(_) => prop_assert!(s.out_of_service),
    }
    if !matches!(shown, Screen::Approved(_)) {
        // The list drawn is the session's basket.
        let drawn = cart.ui.presentation();
        prop_assert_eq!(drawn.line_ids.len(), lines.len());
    }
    Ok(())
}

/// The list, unless the cart is out of service or a device is missing
/// (the model's rule, written apart from the session's).
fn list_or_fault(s: &Session) -> Screen {
    if s.out_of_service {
        Screen::OutOfService
    } else if s.fault.scanner_missing || s.fault.reader_missing {
        Screen::Fault(s.fault)
    } else if s.basket().lines().is_empty() {
        Screen::Idle
    } else {
        Screen::Shopping
    }
}

/// Only a badge on the staff list clears an age check, the lines drawn say
/// which are checked, and a payment of restricted items carries the badge
/// that cleared them (its hash), never a payment without them.
fn check_age_approval(cart: &Cart) -> Result<(), TestCaseError> {
    let basket = cart.session.basket();
    let restricted = basket.lines().iter().any(|l| l.min_age.is_some());
    for (line, view) in basket.lines().iter().zip(cart.session.cart_view().lines) {
        prop_assert_eq!(view.age_checked, line.age_checked && line.min_age.is_some());
        if basket.pending_age_check().is_none() && line.min_age.is_some() {
            prop_assert!(line.age_checked, "{} cleared but not marked", line.name);
        }
    }
    let approved_by = match staff_list().check("1234") {
        store_and_forward::staff::BadgeCheck::Approved(a) => a,
        other => return Err(TestCaseError::fail(format!("{other:?}"))),
    };
    for e in &cart.effects {
        if let Effect::StartPayment { age_check, .. } = e {
            prop_assert_eq!(*age_check, restricted.then_some(approved_by));
        }
    }
    Ok(())
}

fn started_payment(effects: &[Effect]) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::StartPayment { .. }))
}

/// Every enabled control of the shown screen, tapped on a copy, makes the
/// defined transition; disabled ones are drawn disabled.
fn check_controls(cart: &mut Cart, catalog: &Catalog) -> Result<(), TestCaseError> {
    let shown = cart.ui.screen().clone();
    let drawn_staff_called = cart.ui.presentation().staff_called;
    let tap = |action: UiAction| {
        let mut c = cart.copy();
        c.tap(action, catalog);
        c
    };
    match &shown {
        Screen::Shopping => {
            let c = tap(UiAction::Checkout);
            prop_assert_eq!(c.ui.screen(), &Screen::Checkout, "Checkout on the list");
            let before = cart.session.basket().lines().len();
            let c = tap(UiAction::RemoveRow(0));
            prop_assert_eq!(c.session.basket().lines().len(), before - 1, "Remove");
            prop_assert!(matches!(
                c.ui.screen(),
                Screen::Shopping | Screen::Idle | Screen::Fault(_)
            ));
            // Row 0 is the newest line: pieces have − and +.
            let newest = before - 1;
            if cart.session.basket().adjustable(newest) {
                let pieces = |c: &Cart| -> u32 {
                    c.session.basket().lines().iter().map(|l| l.quantity).sum()
                };
                let c = tap(UiAction::MoreRow(0));
                prop_assert_eq!(pieces(&c), pieces(cart) + 1, "One more");
                prop_assert!(matches!(
                    c.ui.screen(),
                    Screen::Shopping | Screen::AgeCheck(_) | Screen::Fault(_)
                ));
                let c = tap(UiAction::LessRow(0));
                prop_assert_eq!(pieces(&c), pieces(cart) - 1, "One less");
                prop_assert!(matches!(
                    c.ui.screen(),
                    Screen::Shopping | Screen::Idle | Screen::Fault(_)
                ));
            }
        }
        Screen::Checkout => {
            let c = tap(UiAction::BackToCart);
            prop_assert_eq!(c.ui.screen(), &list_or_fault(&cart.session), "Back to cart");
            let c = tap(UiAction::Pay);
            let b = cart.session.basket();
            if cart.session.out_of_service || cart.session.fault.reader_missing {
                prop_assert!(!started_payment(&c.effects));
            } else if b.can_pay() {
                prop_assert!(started_payment(&c.effects), "Pay started nothing");
                prop_assert!(matches!(c.ui.screen(), Screen::Reader(_)));
            } else if b.pending_age_check().is_some() {
                prop_assert!(
                    matches!(c.ui.screen(), Screen::AgeCheck(_)),
                    "Pay with an age check"
                );
            }
        }
        Screen::Declined(_) if cart.session.phase == Phase::Checkout => {
            let c = tap(UiAction::TryAgain);
            prop_assert_eq!(c.ui.screen(), &Screen::Checkout, "Try again");
            let c = tap(UiAction::BackToCart);
            prop_assert_eq!(c.ui.screen(), &list_or_fault(&cart.session), "Back to cart");
        }
        Screen::Approved(_) => {
            let c = tap(UiAction::Done);
            prop_assert!(c.session.basket().lines().is_empty(), "Done leaves items");
            prop_assert!(
                matches!(
                    c.ui.screen(),
                    Screen::Idle | Screen::Fault(_) | Screen::OutOfService
                ),
                "Done shows {:?}",
                c.ui.screen()
            );
        }
        Screen::AgeCheck(v) => {
            // Call staff is drawn disabled once called (the window binds
            // `enabled: !staff-called`).
            prop_assert_eq!(drawn_staff_called, v.staff_called);
            if !v.staff_called {
                let c = tap(UiAction::CallStaff);
                prop_assert!(
                    c.effects
                        .iter()
                        .any(|e| matches!(e, Effect::CallStaff { .. })),
                    "Call staff called nobody"
                );
                prop_assert!(matches!(c.ui.screen(), Screen::AgeCheck(a) if a.staff_called));
            }
            let before = cart.session.basket().lines().len();
            let c = tap(UiAction::RemoveAgeItem);
            prop_assert_eq!(c.session.basket().lines().len(), before - 1, "Remove item");
            prop_assert!(
                !matches!(c.ui.screen(), Screen::AgeCheck(_))
                    || c.session.basket().pending_age_check().is_some()
            );
            // A badge not on the staff list clears nothing: the check stays,
            // and the shopper reads why.
            let mut c = cart.copy();
            c.run(&Step::Scan(BADGE_NOT_ON_LIST), catalog);
            if !c.session.out_of_service {
                prop_assert!(
                    c.session.basket().pending_age_check().is_some(),
                    "refused badge"
                );
                prop_assert!(matches!(c.ui.screen(), Screen::AgeCheck(_)));
                prop_assert!(c.effects.contains(&Effect::View(ViewUpdate::Notice(Some(
                    ui::ScanNotice::StaffBadgeRefused
                )))));
            }
            // A staff badge on the list clears the check: the list, and
            // Checkout works.
            let mut c = cart.copy();
            c.run(&Step::Scan(BADGE_ON_LIST), catalog);
            if c.session.basket().pending_age_check().is_none() {
                let f = c.session.fault;
                if c.session.out_of_service || f.reader_missing || f.scanner_missing {
                    prop_assert!(matches!(
                        c.ui.screen(),
                        Screen::Fault(_) | Screen::OutOfService
                    ));
                } else {
                    prop_assert_eq!(c.ui.screen(), &Screen::Shopping, "after the badge");
                    c.tap(UiAction::Checkout, catalog);
                    prop_assert_eq!(c.ui.screen(), &Screen::Checkout, "Checkout after the badge");
                }
            }
        }
        Screen::Reader(_) => {
            let c = tap(UiAction::Cancel);
            prop_assert!(c.effects.iter().any(|e| matches!(e, Effect::CancelPayment)));
        }
        Screen::Declined(_)
        | Screen::Idle
        | Screen::Fault(_)
        | Screen::OutOfService
        | Screen::Setup(_) => {}
    }
    Ok(())
}

proptest! {
    // 300 cases in CI; `PROPTEST_CASES=N` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn screen_follows_state_and_enabled_controls_work(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().expect("dir");
        let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).expect("catalog");
        catalog.import_csv(CSV).expect("csv");
        let mut cart = Cart::new();
        for step in &steps {
            cart.run(step, &catalog);
            check_screen(&mut cart)?;
            check_age_approval(&cart)?;
            check_controls(&mut cart, &catalog)?;
        }
    }
}

/// Regression: a scan while the receipt was on screen added the item, then
/// emptied the basket for the new session and read the added line by its
/// index: the session thread panicked and the window froze on the receipt.
#[test]
fn scan_on_receipt_panics_the_session_thread() {
    let dir = tempfile::tempdir().expect("dir");
    let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).expect("catalog");
    catalog.import_csv(CSV).expect("csv");
    let mut cart = Cart::new();
    for step in [
        Step::Scan(0),
        Step::Scan(1),
        Step::Tap(UiAction::Checkout),
        Step::Tap(UiAction::Pay),
        Step::Paid(0),
    ] {
        cart.run(&step, &catalog);
    }
    assert!(matches!(cart.ui.screen(), Screen::Approved(_)));
    cart.run(&Step::Scan(0), &catalog);
    // That sale ended; a new basket holds the item.
    assert_eq!(cart.ui.screen(), &Screen::Shopping);
    let lines = cart.session.basket().lines();
    assert_eq!((lines.len(), lines[0].quantity), (1, 1));
    let ended = cart.effects.iter().position(|e| {
        matches!(
            e,
            Effect::Telemetry(TelemetryEvent::SessionEnded { items: 2, .. })
        )
    });
    let started = cart
        .effects
        .iter()
        .position(|e| matches!(e, Effect::Telemetry(TelemetryEvent::SessionStarted { .. })));
    assert!(
        matches!((ended, started), (Some(a), Some(b)) if a < b),
        "{:?}",
        cart.effects
    );
}

/// Regression: an age check cleared from the Pay screen went back to the
/// list while the state stayed at checkout, so Checkout did nothing.
#[test]
fn age_check_cleared_from_pay_then_checkout_works() {
    let dir = tempfile::tempdir().expect("dir");
    let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).expect("catalog");
    catalog.import_csv(CSV).expect("csv");
    let mut cart = Cart::new();
    for step in [
        Step::Scan(2),
        Step::Tap(UiAction::BackToCart),
        Step::Tap(UiAction::Checkout),
        Step::Tap(UiAction::Pay),
    ] {
        cart.run(&step, &catalog);
    }
    assert!(
        matches!(cart.ui.screen(), Screen::AgeCheck(_)),
        "{:?}",
        cart.ui.screen()
    );
    cart.run(&Step::Scan(BADGE_ON_LIST), &catalog);
    assert_eq!(cart.ui.screen(), &Screen::Shopping);
    cart.run(&Step::Tap(UiAction::Checkout), &catalog);
    assert_eq!(cart.ui.screen(), &Screen::Checkout);
    cart.run(&Step::Tap(UiAction::Pay), &catalog);
    assert!(started_payment(&cart.effects));
}

#[test]
fn the_language_returns_to_the_stores_default_when_the_session_ends() {
    let dir = tempfile::tempdir().expect("dir");
    let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).expect("catalog");
    catalog.import_csv(CSV).expect("csv");
    let mut cart = Cart::new();
    for step in [
        Step::Scan(0),
        Step::Tap(UiAction::SetLanguage("de".into())),
        Step::Tap(UiAction::Checkout),
        Step::Tap(UiAction::Pay),
        Step::Paid(0),
    ] {
        cart.run(&step, &catalog);
    }
    assert_eq!(cart.ui.language(), ui::Language::German);
    cart.run(&Step::Tap(UiAction::Done), &catalog);
    assert_eq!(cart.ui.language(), ui::Language::English);
}

#[test]
fn refused_and_unknown_scans_are_shown_with_their_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).expect("catalog");
    catalog.import_csv(CSV).expect("csv");
    let mut cart = Cart::new();
    let notices = |cart: &Cart| -> Vec<Option<ui::ScanNotice>> {
        cart.effects
            .iter()
            .filter_map(|e| match e {
                Effect::View(ViewUpdate::Notice(n)) => Some(*n),
                _ => None,
            })
            .collect()
    };
    for (code, want) in [
        (3, ui::ScanNotice::NotInCatalog),
        (4, ui::ScanNotice::ScanAgain),
        (5, ui::ScanNotice::Coupon),
        (8, ui::ScanNotice::NotAProduct),
    ] {
        cart.run(&Step::Scan(code), &catalog);
        assert_eq!(notices(&cart), vec![Some(want)], "{}", CODES[code]);
    }
    // The next item scanned clears the notice.
    cart.run(&Step::Scan(0), &catalog);
    assert_eq!(notices(&cart), vec![None]);
}
