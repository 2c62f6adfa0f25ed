use super::*;
use hal::scanner::{Decoder, DecoderConfig};
use store_and_forward::PaymentKey;

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

fn session() -> Session {
    Session::new(
        Currency::new("EUR").unwrap(),
        TaxTable([("standard".to_string(), 1900), ("reduced".to_string(), 700)].into()),
    )
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
            amount: s.basket().total()
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
}
