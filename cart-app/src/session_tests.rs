use super::*;
use hal::scanner::{Decoder, DecoderConfig};
use store_and_forward::PaymentKey;
use store_and_forward::staff::{BadgeCheck, StaffApproval, StaffList};
use ui::ScanNotice;

const CSV: &str = "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
4006381333931,Highlighter,189,EUR,standard,,false
4012345000023,Sparkling water,399,EUR,reduced,,false
5000267024202,Whisky 70 cl,2999,EUR,standard,18,false
";

fn catalog(dir: &tempfile::TempDir) -> Catalog {
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    c.import_csv(CSV).unwrap();
    c
}

fn scan(code: &str) -> Input {
    Input::Scan(Scan {
        at: std::time::SystemTime::now(),
        monotonic: std::time::Instant::now(),
        content: Decoder::new(DecoderConfig::default()).decode(code.as_bytes(), 2026),
    })
}

/// Staff list 1: badges 0042 and 1234.
fn staff() -> StaffList {
    StaffList::hashing(1, vec![9; 16], &["0042", "1234"])
}

fn session() -> Session {
    bare_session().with_staff(Arc::new(staff()))
}

/// A session on a cart that has received no staff list.
fn bare_session() -> Session {
    Session::new(
        Currency::new("EUR").unwrap(),
        TaxTable([("standard".to_string(), 1900), ("reduced".to_string(), 700)].into()),
    )
}

fn notices(effects: &[Effect]) -> Vec<Option<ScanNotice>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::View(ViewUpdate::Notice(n)) => Some(*n),
            _ => None,
        })
        .collect()
}

fn started(effects: &[Effect]) -> Option<Option<StaffApproval>> {
    effects.iter().find_map(|e| match e {
        Effect::StartPayment { age_check, .. } => Some(*age_check),
        _ => None,
    })
}

/// The whisky scanned: the age check screen, its line id.
fn whisky(s: &mut Session, c: &Catalog) -> u64 {
    let e = s.handle(scan("5000267024202"), c);
    let Screen::AgeCheck(a) = screens(&e)[0] else {
        panic!("{e:?}")
    };
    a.line_id
}

fn screens(effects: &[Effect]) -> Vec<&Screen> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::View(ViewUpdate::Screen(s)) => Some(s),
            _ => None,
        })
        .collect()
}

fn paid(shown: Shown) -> Input {
    Input::PaymentDone(Ok(PayResult {
        key: PaymentKey::new(),
        state: None,
        shown,
        masked_pan: Some("411111******1111".into()),
        receipt_code: None,
    }))
}

#[test]
fn scan_checkout_pay_receipt_done() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    let e = s.handle(scan("4006381333931"), &c);
    assert!(
        matches!(
            e[0],
            Effect::Telemetry(TelemetryEvent::SessionStarted { .. })
        ),
        "{e:?}"
    );
    assert_eq!(screens(&e), vec![&Screen::Shopping]);
    s.handle(scan("4012345000023"), &c);
    assert_eq!(s.cart_view().total_minor, 588);
    assert_eq!(
        screens(&s.handle(Input::Ui(UiEvent::Checkout), &c)),
        vec![&Screen::Checkout]
    );
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(
        e.contains(&Effect::StartPayment {
            amount: s.basket().total(),
            age_check: None,
        }),
        "{e:?}"
    );
    // Scans while paying change nothing.
    assert!(s.handle(scan("4006381333931"), &c).is_empty());
    let e = s.handle(
        Input::Payment(PayEvent::Prompt(ReaderUiEvent::PinRequired)),
        &c,
    );
    assert_eq!(screens(&e), vec![&Screen::Reader(ReaderPrompt::EnterPin)]);
    let e = s.handle(
        paid(Shown::ApprovedOnline {
            reference: "ONL-1".into(),
        }),
        &c,
    );
    let Screen::Approved(r) = screens(&e)[0] else {
        panic!("{e:?}")
    };
    assert_eq!(r.payment_reference, "ONL-1");
    assert_eq!(r.cart.total_minor, 588);
    // The receipt's number is short and readable; its QR code carries the
    // whole payment key.
    let key = store_and_forward::PaymentKey::parse(&r.receipt_code).expect("the key");
    assert_eq!(r.receipt_reference, receipt_number(&key));
    assert_eq!(r.receipt_reference.len(), 16, "{}", r.receipt_reference);
    let e = s.handle(Input::Ui(UiEvent::Done), &c);
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::Telemetry(TelemetryEvent::SessionEnded { items: 2, .. })
    )));
    assert_eq!(screens(&e), vec![&Screen::Idle]);
    assert!(s.basket().lines().is_empty());
}

#[test]
fn declined_then_try_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    s.handle(Input::Ui(UiEvent::Pay), &c);
    let e = s.handle(
        paid(Shown::DeclinedOffline {
            reasons: vec![OfflineReason::PerPaymentCap {
                amount: 189,
                cap: 100,
            }],
            bank_timed_out: false,
        }),
        &c,
    );
    assert_eq!(
        screens(&e),
        vec![&Screen::Declined(DeclineReason::OverOfflineLimit)]
    );
    assert_eq!(
        screens(&s.handle(Input::Ui(UiEvent::TryAgain), &c)),
        vec![&Screen::Checkout]
    );
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(e.iter().any(|x| matches!(x, Effect::StartPayment { .. })));
}

#[test]
fn age_restricted_item_needs_staff_before_paying() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    let e = s.handle(scan("5000267024202"), &c);
    let Screen::AgeCheck(a) = screens(&e)[0] else {
        panic!("{e:?}")
    };
    let line = a.line_id;
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(
        !e.iter().any(|x| matches!(x, Effect::StartPayment { .. })),
        "{e:?}"
    );
    let e = s.handle(Input::Ui(UiEvent::RequestStaff { line_id: line }), &c);
    assert!(e.contains(&Effect::CallStaff {
        item: "Whisky 70 cl".into()
    }));
    let e = s.handle(scan("STAFF:0042"), &c);
    assert_eq!(screens(&e), vec![&Screen::Shopping]);
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(e.iter().any(|x| matches!(x, Effect::StartPayment { .. })));
}

#[test]
fn line_ids_stay_stable_when_lines_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    s.handle(scan("4012345000023"), &c);
    let ids: Vec<u64> = s.cart_view().lines.iter().map(|l| l.line_id).collect();
    s.handle(Input::Ui(UiEvent::RemoveLine { line_id: ids[0] }), &c);
    let after = s.cart_view();
    assert_eq!(after.lines.len(), 1);
    assert_eq!(after.lines[0].line_id, ids[1]);
    assert_eq!(after.lines[0].name, "Sparkling water");
    let e = s.handle(Input::Ui(UiEvent::RemoveLine { line_id: ids[1] }), &c);
    assert_eq!(screens(&e), vec![&Screen::Idle]);
}

#[test]
fn a_failed_payment_shows_a_reader_error_and_allows_another_try() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    s.handle(Input::Ui(UiEvent::Pay), &c);
    let e = s.handle(Input::PaymentDone(Err("reader unplugged".into())), &c);
    assert_eq!(
        screens(&e),
        vec![&Screen::Declined(DeclineReason::ReaderError)]
    );
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(e.iter().any(|x| matches!(x, Effect::StartPayment { .. })));
}

#[test]
fn a_missing_reader_shows_the_fault_and_refuses_to_pay_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    let missing = ui::FaultView {
        scanner_missing: false,
        reader_missing: true,
    };
    let e = s.handle(Input::Devices(missing), &c);
    assert_eq!(screens(&e), vec![&Screen::Fault(missing)]);
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::Telemetry(store_and_forward::telemetry::TelemetryEvent::Fault { .. })
    )));
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(!e.iter().any(|x| matches!(x, Effect::StartPayment { .. })));
    let e = s.handle(Input::Devices(ui::FaultView::default()), &c);
    assert_eq!(screens(&e), vec![&Screen::Shopping]);
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(e.iter().any(|x| matches!(x, Effect::StartPayment { .. })));
}

#[test]
fn out_of_service_during_a_payment_lets_it_finish_then_refuses_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    s.handle(Input::Ui(UiEvent::Pay), &c);
    // Stopping while the reader waits: the screen stays on the payment.
    let e = s.handle(Input::OutOfService(true), &c);
    assert!(screens(&e).is_empty());
    assert!(s.paying());
    let e = s.handle(Input::PaymentDone(Err("reader unplugged".into())), &c);
    assert_eq!(screens(&e).len(), 1);
    assert!(!s.paying());
    let e = s.handle(scan("4012345000023"), &c);
    assert!(e.is_empty(), "{e:?}");
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert_eq!(screens(&e), vec![&Screen::OutOfService]);
    // Back in service, the unpaid basket is the shopper's list again, and
    // paying works from it.
    let e = s.handle(Input::OutOfService(false), &c);
    assert_eq!(screens(&e), vec![&Screen::Shopping]);
    assert_eq!(s.basket().lines().len(), 1);
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert!(e.iter().any(|x| matches!(x, Effect::StartPayment { .. })));
}

/// A cart that is not provisioned shows where its setup stands, whichever
/// arrives first: the setup's progress or out of service.
#[test]
fn an_unprovisioned_cart_shows_its_setup() {
    use ui::{SetupStep, SetupView};
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let view = |step| SetupView {
        step,
        network: "shop-carts".into(),
    };
    let mut s = session();
    assert!(
        s.handle(Input::Setup(view(SetupStep::ScanNetworkCode)), &c)
            .is_empty()
    );
    let e = s.handle(Input::OutOfService(true), &c);
    assert_eq!(
        screens(&e),
        vec![&Screen::Setup(view(SetupStep::ScanNetworkCode))]
    );
    let e = s.handle(Input::Setup(view(SetupStep::WrongPassword)), &c);
    assert_eq!(
        screens(&e),
        vec![&Screen::Setup(view(SetupStep::WrongPassword))]
    );
    // Scans sell nothing meanwhile.
    assert!(s.handle(scan("4006381333931"), &c).is_empty());
}

/// Every reason code a payment can end with, walked to the screen the
/// shopper sees (the UI's own test walks every screen reason to its words
/// in both languages).
#[test]
fn every_reason_code_reaches_its_own_screen() {
    use store_and_forward::policy::{LedgerIntegrity, StorageLow};
    use store_and_forward::time::ClockTrust;
    let eur = Currency::new("EUR").unwrap();
    let offline: Vec<(OfflineReason, DeclineReason)> = vec![
        (
            OfflineReason::OnlineRequired,
            DeclineReason::ConnectionRequired,
        ),
        (
            OfflineReason::CurrencyNotAllowed { currency: eur },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::PerPaymentCap {
                amount: 9_999,
                cap: 5_000,
            },
            DeclineReason::OverOfflineLimit,
        ),
        (
            OfflineReason::OutstandingAmount {
                outstanding: 1,
                amount: 1,
                cap: 1,
            },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::OutstandingCount {
                count: 200,
                cap: 200,
            },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::ForwardingDeadline {
                oldest_age_secs: 90_000,
                deadline_secs: 86_400,
            },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::CardVelocity {
                count: 3,
                cap: 3,
                window_secs: 86_400,
            },
            DeclineReason::CardOfflineLimit,
        ),
        (OfflineReason::CardDenied, DeclineReason::CardNotAccepted),
        (
            OfflineReason::BackendStale {
                since_secs: None,
                limit_secs: 1,
            },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::ClockUntrusted {
                clock: ClockTrust::Unset,
            },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::LedgerIntegrity {
                integrity: LedgerIntegrity::RolledBack {
                    ledger: 1,
                    counter: 2,
                },
            },
            DeclineReason::PayAtTill,
        ),
        (
            OfflineReason::StorageLow(StorageLow {
                free_bytes: 0,
                reserve_bytes: 1,
            }),
            DeclineReason::PayAtTill,
        ),
    ];
    let screen = |shown: Shown| {
        let res = PayResult {
            key: PaymentKey::new(),
            state: None,
            shown,
            masked_pan: None,
            receipt_code: None,
        };
        match result_screen(&res, CartView::default()) {
            Screen::Declined(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let mut reached = std::collections::BTreeSet::new();
    for (reason, want) in offline {
        let declined = screen(Shown::DeclinedOffline {
            reasons: vec![reason.clone()],
            bank_timed_out: false,
        });
        assert_eq!(declined, want, "{reason:?}");
        let before_card = screen(Shown::RefusedBeforeCard {
            reasons: vec![reason.clone()],
        });
        assert_eq!(before_card, want, "{reason:?} before the card");
        // The link was up and the bank did not answer: that is what the
        // shopper hears, unless the card itself was refused.
        let timed_out = screen(Shown::DeclinedOffline {
            reasons: vec![reason.clone()],
            bank_timed_out: true,
        });
        let card = matches!(
            want,
            DeclineReason::CardNotAccepted | DeclineReason::CardOfflineLimit
        );
        assert_eq!(
            timed_out,
            if card {
                want
            } else {
                DeclineReason::BankTimeout
            },
            "{reason:?} after a bank timeout"
        );
        reached.extend([format!("{declined:?}"), format!("{timed_out:?}")]);
    }
    // A cart-wide limit says so even beside an amount over the cap.
    assert_eq!(
        screen(Shown::DeclinedOffline {
            reasons: vec![
                OfflineReason::PerPaymentCap { amount: 2, cap: 1 },
                OfflineReason::OutstandingCount { count: 1, cap: 1 },
            ],
            bank_timed_out: false,
        }),
        DeclineReason::PayAtTill
    );
    for (code, want) in [
        (PaymentErrorCode::Timeout, DeclineReason::TimedOut),
        (PaymentErrorCode::Cancelled, DeclineReason::Cancelled),
        (PaymentErrorCode::CardRemoved, DeclineReason::CardRemoved),
        (PaymentErrorCode::Unreadable, DeclineReason::CardUnreadable),
        (PaymentErrorCode::ReaderFault, DeclineReason::ReaderError),
        (PaymentErrorCode::Busy, DeclineReason::ReaderError),
        (PaymentErrorCode::BadRequest, DeclineReason::ReaderError),
    ] {
        let got = screen(Shown::NoCard { code });
        assert_eq!(got, want, "{code:?}");
        reached.insert(format!("{got:?}"));
    }
    for (reason, want) in [
        ("insufficient funds", DeclineReason::InsufficientFunds),
        ("do not honour", DeclineReason::DeclinedByBank),
    ] {
        let got = screen(Shown::DeclinedOnline {
            reason: reason.into(),
        });
        assert_eq!(got, want);
        reached.insert(format!("{got:?}"));
    }
    reached.insert(format!("{:?}", screen(Shown::Cancelled)));
    let all: std::collections::BTreeSet<String> = DeclineReason::ALL
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    assert_eq!(reached, all, "every screen reason is reached");
}

#[test]
fn a_signed_receipt_code_reaches_the_receipt_screen() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    s.handle(Input::Ui(UiEvent::Checkout), &c);
    s.handle(Input::Ui(UiEvent::Pay), &c);
    let key = PaymentKey::new();
    let code = format!("https://r.example/r?v=1&k={key}&s=abc");
    let e = s.handle(
        Input::PaymentDone(Ok(PayResult {
            key,
            state: None,
            shown: Shown::ApprovedOffline,
            masked_pan: None,
            receipt_code: Some(code.clone()),
        })),
        &c,
    );
    let Screen::Approved(r) = screens(&e)[0] else {
        panic!("{e:?}")
    };
    assert_eq!(r.receipt_code, code);
    assert_eq!(r.receipt_reference, receipt_number(&key));
}

#[test]
fn offline_receipt_references_are_readable_stable_and_distinct() {
    let keys: Vec<PaymentKey> = (0..200).map(|_| PaymentKey::new()).collect();
    let refs: std::collections::BTreeSet<String> = keys.iter().map(offline_reference).collect();
    // Keys made in the same millisecond share their first digits; the
    // references do not.
    assert_eq!(refs.len(), keys.len());
    for (k, r) in keys.iter().zip(keys.iter().map(offline_reference)) {
        assert_eq!(r, offline_reference(k), "stable");
        assert_eq!(r.len(), 18, "{r}");
        assert!(r.starts_with("OFF-") && r.is_ascii(), "{r}");
        assert!(
            k.0.simple()
                .to_string()
                .to_ascii_uppercase()
                .ends_with(&r[4..].replace('-', "")),
            "{r} is the key's tail"
        );
    }
}

#[path = "session_age_check_tests.rs"]
mod age_check;
