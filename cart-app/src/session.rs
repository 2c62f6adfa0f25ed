//! The shopping session as a state machine without I/O: scans, taps on the
//! screen and the payment's progress come in; screen updates and requests
//! to the devices go out. The daemon's threads only move these values.

use hal::reader::message::{PaymentErrorCode, UiEvent as ReaderUiEvent};
use hal::scanner::{RejectReason, Scan, ScanContent};
use std::sync::Arc;

use store_and_forward::policy::OfflineReason;
use store_and_forward::staff::StaffApproval;
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::{Currency, Money, Timestamp};
use tracing::{info, warn};
use ui::{
    AgeCheckView, CartView, DeclineReason, FaultView, Language, LineView, Quantity, ReaderPrompt,
    ReceiptView, ScanNotice, Screen, SetupView, UiEvent, ViewUpdate,
};

use crate::basket::{Basket, Scanned, TaxTable};
use crate::catalog::Catalog;
use crate::checkout::{PayEvent, PayResult, Shown};
use crate::staff::{NoStaffList, StaffCheck};

/// Something that happened.
#[derive(Debug)]
pub enum Input {
    /// The scanner read a code.
    Scan(Scan),
    /// A person tapped the screen.
    Ui(UiEvent),
    /// The payment in progress moved on.
    Payment(PayEvent),
    /// The payment ended (or could not run: the error text is logged).
    PaymentDone(Result<PayResult, String>),
    /// Which devices are missing now.
    Devices(FaultView),
    /// The cart stops selling (`true`: stopping, not provisioned) or
    /// resumes (`false`).
    OutOfService(bool),
    /// First-boot setup moved on (shown while out of service).
    Setup(SetupView),
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Update the screen.
    View(ViewUpdate),
    /// Start a payment on the reader's thread.
    StartPayment {
        /// The amount.
        amount: Money,
        /// The staff badge that cleared the basket's age check (recorded
        /// with the sale), if it needed one.
        age_check: Option<StaffApproval>,
    },
    /// Ask the reader to cancel.
    CancelPayment,
    /// Call a staff member (age check).
    CallStaff {
        /// The line that waits.
        item: String,
    },
    /// Record telemetry.
    Telemetry(TelemetryEvent),
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Shopping,
    Checkout,
    Paying,
    Done,
}

/// The session.
#[derive(Clone)]
pub struct Session {
    basket: Basket,
    ids: Vec<u64>,
    next_id: u64,
    taxes: TaxTable,
    phase: Phase,
    session_no: u64,
    fault: FaultView,
    out_of_service: bool,
    /// Where first-boot setup stands (not provisioned).
    setup: Option<SetupView>,
    /// The receipt of the sale just paid, while it is on screen.
    receipt: Option<Screen>,
    /// The store's language; every session ends back in it.
    default_language: Language,
    /// Who may clear an age check (the staff list).
    staff: Arc<dyn StaffCheck>,
}

impl Session {
    /// A new session in `currency` with the store's tax table.
    pub fn new(currency: Currency, taxes: TaxTable) -> Session {
        Session {
            basket: Basket::new(currency),
            ids: Vec::new(),
            next_id: 1,
            taxes,
            phase: Phase::Idle,
            session_no: 0,
            fault: FaultView::default(),
            out_of_service: false,
            setup: None,
            receipt: None,
            default_language: Language::default(),
            staff: Arc::new(NoStaffList),
        }
    }

    /// Sets who may clear an age check (without it, nobody: every badge
    /// is refused as on a cart with no staff list yet).
    pub fn with_staff(mut self, staff: Arc<dyn StaffCheck>) -> Session {
        self.staff = staff;
        self
    }

    /// Sets the store's language, which every session ends back in.
    pub fn with_default_language(mut self, language: Language) -> Session {
        self.default_language = language;
        self
    }

    /// The basket.
    pub fn basket(&self) -> &Basket {
        &self.basket
    }

    /// The basket as the UI shows it.
    pub fn cart_view(&self) -> CartView {
        cart_view(&self.basket, &self.taxes, |i| self.ids[i])
    }

    /// The age check for `line`, staff not called yet.
    fn age_check_screen(&self, line: usize) -> Screen {
        Screen::AgeCheck(AgeCheckView {
            line_id: self.ids[line],
            item_name: self.basket.lines()[line].name.clone(),
            staff_called: false,
        })
    }

    fn start_if_idle(&mut self, out: &mut Vec<Effect>) {
        if self.phase == Phase::Idle {
            self.session_no += 1;
            out.push(Effect::Telemetry(TelemetryEvent::SessionStarted {
                at: Timestamp::now(),
                session: format!("s{}", self.session_no),
            }));
            self.phase = Phase::Shopping;
        }
    }

    fn reset(&mut self) {
        self.basket.clear();
        self.ids.clear();
        self.receipt = None;
    }

    /// Ends the sale on screen (the receipt's Done, or a scan on the
    /// receipt): the basket is emptied and the next scan starts a session.
    fn end_session(&mut self, out: &mut Vec<Effect>) {
        let items = self.basket.lines().len() as u32;
        self.reset();
        self.phase = Phase::Idle;
        out.push(Effect::Telemetry(TelemetryEvent::SessionEnded {
            at: Timestamp::now(),
            session: format!("s{}", self.session_no),
            items,
        }));
        out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
        // The next shopper does not inherit this one's language.
        out.push(Effect::View(ViewUpdate::Language(self.default_language)));
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input, catalog: &Catalog) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Scan(scan) => self.on_scan(scan, catalog, &mut out),
            Input::Ui(ev) => self.on_ui(ev, &mut out),
            Input::Payment(PayEvent::Prompt(p)) => {
                let prompt = match p {
                    ReaderUiEvent::PinRequired => ReaderPrompt::EnterPin,
                    ReaderUiEvent::Processing => ReaderPrompt::Processing,
                    _ => ReaderPrompt::PresentCard,
                };
                out.push(Effect::View(ViewUpdate::Screen(Screen::Reader(prompt))));
            }
            Input::Payment(PayEvent::Authorizing { .. }) => {
                out.push(Effect::View(ViewUpdate::Screen(Screen::Reader(
                    ReaderPrompt::Processing,
                ))));
            }
            Input::PaymentDone(result) => {
                self.on_paid(result, &mut out);
                if self.out_of_service {
                    // The result stays on screen; the next tap or scan is refused.
                    self.phase = Phase::Done;
                }
            }
            Input::Devices(fault) => self.on_devices(fault, &mut out),
            Input::Setup(view) => {
                self.setup = Some(view);
                if self.out_of_service && self.phase != Phase::Paying {
                    out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
                }
            }
            Input::OutOfService(on) => {
                self.out_of_service = on;
                // A payment declined while out of service left its basket
                // behind a result screen: back in service, that basket is
                // the shopper's list again (a paid one keeps its receipt).
                let unpaid_done = self.phase == Phase::Done && self.receipt.is_none();
                if self.phase == Phase::Checkout || (!on && unpaid_done) {
                    self.phase = Phase::Shopping;
                }
                if self.phase != Phase::Paying {
                    out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
                }
            }
        }
        out
    }

    /// Whether a payment is in progress.
    pub fn paying(&self) -> bool {
        self.phase == Phase::Paying
    }

    /// Whether no shopper is using the cart: nothing scanned since the
    /// last sale ended.
    pub fn idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// Whether the cart shows out of service.
    pub fn out_of_service(&self) -> bool {
        self.out_of_service
    }

    /// The screen to show when nothing else asks for one.
    fn resting_screen(&self) -> Screen {
        if self.out_of_service {
            match &self.setup {
                Some(setup) => Screen::Setup(setup.clone()),
                None => Screen::OutOfService,
            }
        } else if self.fault.scanner_missing || self.fault.reader_missing {
            Screen::Fault(self.fault)
        } else if let Some(receipt) = self.receipt.as_ref().filter(|_| self.phase == Phase::Done) {
            receipt.clone()
        } else if self.basket.lines().is_empty() {
            Screen::Idle
        } else {
            Screen::Shopping
        }
    }

    fn on_devices(&mut self, fault: FaultView, out: &mut Vec<Effect>) {
        if fault == self.fault {
            return;
        }
        for (device, was, now) in [
            ("scanner", self.fault.scanner_missing, fault.scanner_missing),
            ("reader", self.fault.reader_missing, fault.reader_missing),
        ] {
            if now && !was {
                out.push(Effect::Telemetry(TelemetryEvent::Fault {
                    at: Timestamp::now(),
                    device: device.into(),
                    code: "missing".into(),
                }));
            }
        }
        self.fault = fault;
        if self.phase != Phase::Paying {
            if self.phase == Phase::Checkout {
                self.phase = Phase::Shopping;
            }
            out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
        }
    }

    fn on_scan(&mut self, scan: Scan, catalog: &Catalog, out: &mut Vec<Effect>) {
        if self.out_of_service {
            info!("scan ignored: out of service");
            return;
        }
        if self.phase == Phase::Paying {
            info!("scan ignored while paying");
            return;
        }
        if self.phase == Phase::Done && matches!(scan.content, ScanContent::Product(_)) {
            // A product scanned while the receipt is on screen: that sale
            // is over, the item starts the next basket. (The basket must be
            // emptied before the item goes in: emptying it afterwards lost
            // the item and panicked on its index.)
            self.end_session(out);
            out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
        }
        let before = self.basket.lines().len();
        let scanned = match self.basket.scan(&scan, catalog, true) {
            Ok(s) => s,
            Err(e) => {
                warn!(cause = %e, "catalog lookup failed");
                return;
            }
        };
        if matches!(
            scanned,
            Scanned::Added { .. } | Scanned::NeedsAgeCheck { .. }
        ) {
            self.start_if_idle(out);
        }
        if self.basket.lines().len() > before {
            self.ids.push(self.next_id);
            self.next_id += 1;
        }
        match scanned {
            Scanned::Added { line } => {
                out.push(Effect::View(ViewUpdate::Notice(None)));
                out.push(Effect::Telemetry(TelemetryEvent::Scan {
                    at: Timestamp::now(),
                    gtin: self.basket.lines()[line].gtin.clone(),
                }));
                self.phase = Phase::Shopping;
                out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
                // The list, unless a missing device's screen must stay.
                out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
            }
            Scanned::NeedsAgeCheck { line, .. } => {
                out.push(Effect::View(ViewUpdate::Notice(None)));
                self.phase = Phase::Shopping;
                out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
                out.push(Effect::View(ViewUpdate::Screen(
                    self.age_check_screen(line),
                )));
            }
            Scanned::StaffBadge { id } => self.on_badge(&id, out),
            Scanned::UnknownItem { gtin } => {
                info!(%gtin, "item not in the catalog");
                notice(out, ScanNotice::NotInCatalog);
            }
            Scanned::WeighAtScale { name } => {
                info!(item = %name, "sold by weight: weigh it at the scale");
                notice(out, ScanNotice::WeighAtScale);
            }
            Scanned::NotSoldByWeight { name } => {
                info!(item = %name, "weight code for an item sold by the piece");
                notice(out, ScanNotice::NotSoldByWeight);
            }
            Scanned::NotForBasket => {}
            Scanned::Rejected { reason } => {
                info!(%reason, "scan rejected");
                // An empty line is scanner noise, not a shopper's scan.
                if reason != RejectReason::Empty {
                    notice(out, scan_notice(&reason));
                }
            }
        }
    }

    fn on_ui(&mut self, ev: UiEvent, out: &mut Vec<Effect>) {
        match ev {
            UiEvent::Checkout
                if self.phase == Phase::Shopping && self.resting_screen() == Screen::Shopping =>
            {
                self.phase = Phase::Checkout;
                out.push(Effect::View(ViewUpdate::Screen(Screen::Checkout)));
            }
            UiEvent::BackToCart if matches!(self.phase, Phase::Shopping | Phase::Checkout) => {
                self.phase = Phase::Shopping;
                out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
            }
            UiEvent::TryAgain if self.phase == Phase::Checkout => {
                out.push(Effect::View(ViewUpdate::Screen(Screen::Checkout)));
            }
            UiEvent::Pay
                if self.phase != Phase::Paying
                    && (self.out_of_service || self.fault.reader_missing) =>
            {
                if self.phase == Phase::Checkout {
                    self.phase = Phase::Shopping;
                }
                out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
            }
            UiEvent::Pay if matches!(self.phase, Phase::Checkout | Phase::Shopping) => {
                if self.basket.can_pay() {
                    self.phase = Phase::Paying;
                    out.push(Effect::View(ViewUpdate::Screen(Screen::Reader(
                        ReaderPrompt::PresentCard,
                    ))));
                    out.push(Effect::StartPayment {
                        amount: self.basket.total(),
                        age_check: self.basket.age_approval(),
                    });
                } else if let Some(i) = self.basket.lines().iter().position(|l| l.min_age.is_some())
                    && self.basket.pending_age_check().is_some()
                {
                    out.push(Effect::View(ViewUpdate::Screen(self.age_check_screen(i))));
                }
            }
            UiEvent::CancelPayment if self.phase == Phase::Paying => {
                out.push(Effect::CancelPayment)
            }
            UiEvent::Done if self.phase == Phase::Done => {
                self.end_session(out);
                out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
            }
            UiEvent::RemoveLine { line_id }
                if !matches!(self.phase, Phase::Paying | Phase::Done) =>
            {
                if let Some(i) = self.ids.iter().position(|id| *id == line_id) {
                    self.basket.remove(i);
                    self.ids.remove(i);
                    // The list (or the welcome screen) is what shows now,
                    // whether the line went from the list, the checkout or
                    // the age check: the state follows the screen.
                    self.phase = Phase::Shopping;
                    out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
                    out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
                }
            }
            UiEvent::OneMore { line_id } if !matches!(self.phase, Phase::Paying | Phase::Done) => {
                let Some(i) = self.ids.iter().position(|id| *id == line_id) else {
                    return;
                };
                let Some(scanned) = self.basket.one_more(i) else {
                    return;
                };
                self.phase = Phase::Shopping;
                out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
                // One more of an age-restricted item asks again, as a scan.
                let screen = match scanned {
                    Scanned::NeedsAgeCheck { line, .. } => self.age_check_screen(line),
                    _ => self.resting_screen(),
                };
                out.push(Effect::View(ViewUpdate::Screen(screen)));
            }
            UiEvent::OneLess { line_id } if !matches!(self.phase, Phase::Paying | Phase::Done) => {
                let Some(i) = self.ids.iter().position(|id| *id == line_id) else {
                    return;
                };
                let Some(removed) = self.basket.one_less(i) else {
                    return;
                };
                if removed {
                    self.ids.remove(i);
                }
                self.phase = Phase::Shopping;
                out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
                out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
            }
            UiEvent::RequestStaff { line_id }
                if matches!(self.phase, Phase::Shopping | Phase::Checkout)
                    && self.basket.pending_age_check().is_some() =>
            {
                if let Some(i) = self.ids.iter().position(|id| *id == line_id) {
                    let name = self.basket.lines()[i].name.clone();
                    out.push(Effect::CallStaff { item: name.clone() });
                    out.push(Effect::View(ViewUpdate::Screen(Screen::AgeCheck(
                        AgeCheckView {
                            line_id,
                            item_name: name,
                            staff_called: true,
                        },
                    ))));
                }
            }
            other => info!(event = ?other, "tap ignored in this state"),
        }
    }

    fn on_paid(&mut self, result: Result<PayResult, String>, out: &mut Vec<Effect>) {
        let screen = match result {
            Ok(res) => {
                let screen = result_screen(&res, self.cart_view());
                self.phase = if matches!(screen, Screen::Approved(_)) {
                    self.receipt = Some(screen.clone());
                    Phase::Done
                } else {
                    Phase::Checkout
                };
                screen
            }
            Err(e) => {
                warn!(cause = %e, "payment could not run");
                self.phase = Phase::Checkout;
                Screen::Declined(DeclineReason::ReaderError)
            }
        };
        out.push(Effect::View(ViewUpdate::Screen(screen)));
    }
}

fn notice(out: &mut Vec<Effect>, notice: ScanNotice) {
    out.push(Effect::View(ViewUpdate::Notice(Some(notice))));
}

/// The notice the shopper sees for a refused scan.
pub fn scan_notice(reason: &RejectReason) -> ScanNotice {
    match reason {
        RejectReason::Coupon => ScanNotice::Coupon,
        RejectReason::RefundReceipt => ScanNotice::RefundReceipt,
        RejectReason::NeedsMeasure => ScanNotice::WeighAtScale,
        RejectReason::Unrecognised
        | RejectReason::NoGtin
        | RejectReason::BadWifi { .. }
        | RejectReason::NoVariableMeasureLayout { .. } => ScanNotice::NotAProduct,
        _ => ScanNotice::ScanAgain,
    }
}

/// The reference an offline receipt shows: stable (derived from the
/// payment's key, so the backend finds the payment by it), readable
/// (`OFF-XXXX-XXXX-XXXX`), and unique among the cart's payments. The
/// key's first digits are its timestamp (UUID v7), the same for payments
/// a minute apart, so the reference takes the key's random tail. Built
/// from whole characters, never cut inside one.
pub fn offline_reference(key: &store_and_forward::PaymentKey) -> String {
    format!("OFF-{}", key_tail(key))
}

/// The receipt's number under its QR code: `R-XXXX-XXXX-XXXX`, the same
/// tail of the payment's key as [`offline_reference`] (the QR code carries
/// the whole key). Short enough to stand whole on an 800x480 panel, where
/// the whole key was cut off.
pub fn receipt_number(key: &store_and_forward::PaymentKey) -> String {
    format!("R-{}", key_tail(key))
}

/// The key's last 12 hex digits, upper case, in groups of four.
fn key_tail(key: &store_and_forward::PaymentKey) -> String {
    let hex: Vec<char> = key
        .0
        .simple()
        .to_string()
        .to_ascii_uppercase()
        .chars()
        .collect();
    let tail = &hex[hex.len().saturating_sub(12)..];
    let groups: Vec<String> = tail.chunks(4).map(|c| c.iter().collect()).collect();
    groups.join("-")
}

/// A basket as the UI's view model; `line_id` names the line at an index.
pub fn cart_view(basket: &Basket, taxes: &TaxTable, line_id: impl Fn(usize) -> u64) -> CartView {
    CartView {
        currency: basket.total().currency.as_str().to_owned(),
        lines: basket
            .lines()
            .iter()
            .enumerate()
            .map(|(i, l)| LineView {
                line_id: line_id(i),
                name: l.name.clone(),
                quantity: match l.weight_g {
                    Some(g) => Quantity::Grams(u32::try_from(g).unwrap_or(u32::MAX)),
                    None => Quantity::Units(l.quantity),
                },
                unit_price_minor: l.unit_price.minor,
                line_total_minor: l.total.minor,
                age_restricted: l.min_age.is_some(),
                age_checked: l.min_age.is_some() && l.age_checked,
                adjustable: basket.adjustable(i),
            })
            .collect(),
        total_minor: basket.total().minor,
        tax_minor: basket.tax(taxes).values().map(|m| m.minor).sum(),
    }
}

/// The screen for a payment's end.
pub fn result_screen(res: &PayResult, cart: CartView) -> Screen {
    let receipt = |reference: String, offline: bool| {
        Screen::Approved(ReceiptView {
            cart: cart.clone(),
            payment_reference: reference,
            receipt_reference: receipt_number(&res.key),
            receipt_code: res
                .receipt_code
                .clone()
                .unwrap_or_else(|| res.key.to_string()),
            masked_pan: res.masked_pan.clone().unwrap_or_default(),
            offline,
        })
    };
    match &res.shown {
        Shown::ApprovedOnline { reference } => receipt(reference.clone(), false),
        Shown::ApprovedOffline => receipt(offline_reference(&res.key), true),
        Shown::DeclinedOnline { reason } if reason.contains("insufficient") => {
            Screen::Declined(DeclineReason::InsufficientFunds)
        }
        Shown::DeclinedOnline { .. } => Screen::Declined(DeclineReason::DeclinedByBank),
        Shown::DeclinedOffline {
            bank_timed_out: true,
            reasons,
        } if !reasons.iter().any(card_level) => Screen::Declined(DeclineReason::BankTimeout),
        Shown::DeclinedOffline { reasons, .. } | Shown::RefusedBeforeCard { reasons } => {
            Screen::Declined(offline_decline(reasons))
        }
        Shown::NoCard { code } => Screen::Declined(no_card_reason(*code)),
        Shown::Cancelled => Screen::Declined(DeclineReason::Cancelled),
    }
}

/// A reason about this card (another card may work), not about the cart.
fn card_level(r: &OfflineReason) -> bool {
    matches!(
        r,
        OfflineReason::CardDenied | OfflineReason::CardVelocity { .. }
    )
}

/// What the shopper is told for one offline reason: the card (try
/// another), the amount (over the cap), the payment (needs a connection),
/// or the whole cart (pay at a till or when online).
pub fn offline_reason_text(r: &OfflineReason) -> DeclineReason {
    match r {
        OfflineReason::CardDenied => DeclineReason::CardNotAccepted,
        OfflineReason::CardVelocity { .. } => DeclineReason::CardOfflineLimit,
        OfflineReason::PerPaymentCap { .. } => DeclineReason::OverOfflineLimit,
        OfflineReason::OnlineRequired => DeclineReason::ConnectionRequired,
        OfflineReason::CurrencyNotAllowed { .. }
        | OfflineReason::OutstandingAmount { .. }
        | OfflineReason::OutstandingCount { .. }
        | OfflineReason::ForwardingDeadline { .. }
        | OfflineReason::BackendStale { .. }
        | OfflineReason::ClockUntrusted { .. }
        | OfflineReason::LedgerIntegrity { .. }
        | OfflineReason::StorageLow(_) => DeclineReason::PayAtTill,
    }
}

/// The one reason shown when several limits refused a payment: a refused
/// card first (another card helps), then the cart-wide limits (no card
/// helps: pay at a till), then the amount, then the payment's own rule.
fn offline_decline(reasons: &[OfflineReason]) -> DeclineReason {
    let shown: Vec<DeclineReason> = reasons.iter().map(offline_reason_text).collect();
    [
        DeclineReason::CardNotAccepted,
        DeclineReason::PayAtTill,
        DeclineReason::OverOfflineLimit,
        DeclineReason::CardOfflineLimit,
        DeclineReason::ConnectionRequired,
    ]
    .into_iter()
    .find(|r| shown.contains(r))
    .unwrap_or(DeclineReason::PayAtTill)
}

/// What the shopper is told when no card was read.
pub fn no_card_reason(code: PaymentErrorCode) -> DeclineReason {
    match code {
        PaymentErrorCode::Timeout => DeclineReason::TimedOut,
        PaymentErrorCode::CardRemoved => DeclineReason::CardRemoved,
        PaymentErrorCode::Cancelled => DeclineReason::Cancelled,
        PaymentErrorCode::Unreadable => DeclineReason::CardUnreadable,
        PaymentErrorCode::ReaderFault | PaymentErrorCode::Busy | PaymentErrorCode::BadRequest => {
            DeclineReason::ReaderError
        }
    }
}

#[path = "session_age_check.rs"]
mod age_check;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_model_tests.rs"]
mod model_tests;
