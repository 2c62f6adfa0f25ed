use std::sync::mpsc;

use super::*;
use crate::generated::{DeclineKind, ReaderStep, ScreenKind};
use crate::view::{
    AgeCheckView, DeclineReason, FaultView, LineView, Quantity, ReaderPrompt, ReceiptView,
};

fn line(line_id: u64, name: &str, quantity: Quantity, unit: i64, total: i64) -> LineView {
    LineView {
        line_id,
        name: name.into(),
        quantity,
        unit_price_minor: unit,
        line_total_minor: total,
        age_restricted: false,
        age_checked: false,
        adjustable: matches!(quantity, Quantity::Units(_)),
    }
}

fn cart() -> CartView {
    CartView {
        currency: "EUR".into(),
        lines: vec![
            line(10, "Milk", Quantity::Units(2), 129, 258),
            line(11, "Apples", Quantity::Grams(756), 299, 226),
        ],
        total_minor: 484,
        tax_minor: 32,
    }
}

fn controller() -> (CheckoutController, mpsc::Receiver<UiEvent>) {
    let (tx, rx) = mpsc::channel();
    (CheckoutController::new("EUR", tx), rx)
}

#[test]
fn cart_update_shows_newest_line_first_with_formatted_amounts() {
    let (mut c, _rx) = controller();
    c.apply(ViewUpdate::Screen(Screen::Shopping));
    let p = c.apply(ViewUpdate::Cart(cart()));
    assert_eq!(p.screen, ScreenKind::Shopping);
    assert_eq!(p.lines.len(), 2);
    assert_eq!(p.lines[0].name, "Apples");
    assert_eq!(p.lines[0].quantity, "0.756 kg");
    assert_eq!(p.lines[0].unit_price, "EUR 2.99 / kg");
    assert_eq!(p.lines[0].line_total, "EUR 2.26");
    assert_eq!(p.lines[1].quantity, "2");
    assert_eq!(p.line_ids, vec![11, 10]);
    assert_eq!(p.item_count, 3, "two pieces of milk and one weighed line");
    assert_eq!(p.total, "EUR 4.84");
    assert_eq!(p.tax, "EUR 0.32");
}

#[test]
fn remove_row_names_the_daemon_line_id() {
    let (mut c, rx) = controller();
    c.apply(ViewUpdate::Cart(cart()));
    assert_eq!(c.on_action(UiAction::RemoveRow(1)), None);
    assert_eq!(rx.try_recv(), Ok(UiEvent::RemoveLine { line_id: 10 }));
    // A stale index (the row is gone) sends nothing.
    c.on_action(UiAction::RemoveRow(7));
    c.on_action(UiAction::RemoveRow(-1));
    assert!(rx.try_recv().is_err());
    // One less, one more: the same row's line.
    c.on_action(UiAction::LessRow(1));
    assert_eq!(rx.try_recv(), Ok(UiEvent::OneLess { line_id: 10 }));
    c.on_action(UiAction::MoreRow(1));
    assert_eq!(rx.try_recv(), Ok(UiEvent::OneMore { line_id: 10 }));
    c.on_action(UiAction::MoreRow(9));
    assert!(rx.try_recv().is_err());
}

#[test]
fn buttons_become_events() {
    let (mut c, rx) = controller();
    for (action, event) in [
        (UiAction::Checkout, UiEvent::Checkout),
        (UiAction::BackToCart, UiEvent::BackToCart),
        (UiAction::Pay, UiEvent::Pay),
        (UiAction::Cancel, UiEvent::CancelPayment),
        (UiAction::TryAgain, UiEvent::TryAgain),
        (UiAction::Done, UiEvent::Done),
    ] {
        c.on_action(action);
        assert_eq!(rx.try_recv(), Ok(event));
    }
}

#[test]
fn language_switch_reformats_amounts_and_tells_the_daemon() {
    let (mut c, rx) = controller();
    c.apply(ViewUpdate::Cart(cart()));
    let p = c
        .on_action(UiAction::SetLanguage("de".into()))
        .expect("a language switch redraws");
    assert_eq!(p.language, "de");
    assert_eq!(p.total, "4,84 EUR");
    assert_eq!(p.lines[0].quantity, "0,756 kg");
    assert_eq!(
        rx.try_recv(),
        Ok(UiEvent::LanguageChanged(Language::German))
    );
    assert_eq!(c.on_action(UiAction::SetLanguage("xx".into())), None);
    assert!(rx.try_recv().is_err(), "an unknown language is ignored");
}

#[test]
fn age_check_actions_name_the_waiting_line() {
    let (mut c, rx) = controller();
    // Outside the age check, the buttons do not exist: a late tap is ignored.
    c.on_action(UiAction::CallStaff);
    assert!(rx.try_recv().is_err());
    let p = c.apply(ViewUpdate::Screen(Screen::AgeCheck(AgeCheckView {
        line_id: 42,
        item_name: "Red wine".into(),
        staff_called: false,
    })));
    assert_eq!(p.screen, ScreenKind::AgeCheck);
    assert_eq!(p.age_item_name, "Red wine");
    c.on_action(UiAction::CallStaff);
    assert_eq!(rx.try_recv(), Ok(UiEvent::RequestStaff { line_id: 42 }));
    c.on_action(UiAction::RemoveAgeItem);
    assert_eq!(rx.try_recv(), Ok(UiEvent::RemoveLine { line_id: 42 }));
}

#[test]
fn screens_map_to_their_adapter_values() {
    let (mut c, _rx) = controller();
    c.apply(ViewUpdate::Cart(cart()));
    let p = c.apply(ViewUpdate::Screen(Screen::Reader(ReaderPrompt::EnterPin)));
    assert_eq!(
        (p.screen, p.reader_step),
        (ScreenKind::Reader, ReaderStep::EnterPin)
    );
    let p = c.apply(ViewUpdate::Screen(Screen::Declined(
        DeclineReason::OverOfflineLimit,
    )));
    assert_eq!(
        (p.screen, p.decline),
        (ScreenKind::Declined, DeclineKind::OverOfflineLimit)
    );
    let p = c.apply(ViewUpdate::Screen(Screen::Fault(FaultView {
        scanner_missing: true,
        reader_missing: false,
    })));
    assert_eq!(p.screen, ScreenKind::Fault);
    assert!(p.fault.scanner_missing && !p.fault.reader_missing);
    let p = c.apply(ViewUpdate::Screen(Screen::OutOfService));
    assert_eq!(p.screen, ScreenKind::OutOfService);
}

#[test]
fn receipt_has_totals_references_and_a_qr_code() {
    let (mut c, _rx) = controller();
    let p = c.apply(ViewUpdate::Screen(Screen::Approved(ReceiptView {
        cart: cart(),
        payment_reference: "PAY-1".into(),
        receipt_reference: "R-9AB1-6C2D-0E4F".into(),
        receipt_code: "01a2385e-2640-761f-9ab1-6c2d0e4f5a6b".into(),
        masked_pan: "**** 4242".into(),
        offline: true,
    })));
    assert_eq!(p.screen, ScreenKind::Approved);
    let r = &p.receipt;
    assert_eq!(r.lines.len(), 2);
    assert_eq!(r.lines[0].name, "Milk", "the receipt keeps scan order");
    assert_eq!(r.total, "EUR 4.84");
    assert_eq!(r.payment_reference, "PAY-1");
    assert!(r.offline);
    assert_eq!(r.receipt_reference, "R-9AB1-6C2D-0E4F");
    // The code carries the whole key (36 characters: version 3).
    assert_eq!(r.qr.as_ref().map(|q| q.size()), Some(29));
}

#[test]
fn offline_banner_shows_the_cap_or_says_payments_are_paused() {
    let (mut c, _rx) = controller();
    let p = c.apply(ViewUpdate::Link(LinkBanner::Offline {
        offline_cap_minor: Some(10_000),
    }));
    assert!(p.link_down);
    assert_eq!(p.offline_cap, "EUR 100.00");
    let p = c.apply(ViewUpdate::Link(LinkBanner::Offline {
        offline_cap_minor: None,
    }));
    assert!(p.link_down);
    assert_eq!(p.offline_cap, "");
    let p = c.apply(ViewUpdate::Link(LinkBanner::Online));
    assert!(!p.link_down);
}

#[test]
fn closed_channel_does_not_panic() {
    let (mut c, rx) = controller();
    drop(rx);
    c.on_action(UiAction::Pay);
}
