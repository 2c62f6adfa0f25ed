//! Whole checkout flows driven as a person would: find a control by its
//! accessible label, click it, and read what the screen says. The test plays
//! the daemon (tests/common), the scanner and the card reader.
//!
//! Needs the `.slint` debug info, which `build.rs` emits in every non-release
//! profile (see docs/ui.md).

mod common;

use common::{APPLES, BREAD, Daemon, MILK, WINE};
use i_slint_backend_testing::{AccessibleRole, ElementHandle, ElementQuery};
use slint::ComponentHandle;
use slint::platform::PointerEventButton;
use ui::{DeclineReason, LinkBanner, ReaderPrompt, UiEvent};

fn start() -> Daemon {
    ui::headless::check_fonts().expect("fontconfig must find a font: install fonts-dejavu-core");
    i_slint_backend_testing::init_no_event_loop();
    let daemon = Daemon::new();
    let window = daemon.ui.window();
    window
        .window()
        .set_size(slint::LogicalSize::new(1280.0, 800.0));
    window.show().expect("show the window");
    daemon
}

fn find(d: &Daemon, label: &str) -> Vec<ElementHandle> {
    ElementHandle::find_by_accessible_label(d.ui.window(), label).collect()
}

fn shows(d: &Daemon, label: &str) -> bool {
    !find(d, label).is_empty()
}

/// The controls (buttons) with this label; a button's text has the same label.
fn buttons(d: &Daemon, label: &str) -> Vec<ElementHandle> {
    find(d, label)
        .into_iter()
        .filter(|e| e.accessible_role() == Some(AccessibleRole::Button))
        .collect()
}

/// Clicks the one visible control with this label, then lets the daemon answer.
fn tap(d: &mut Daemon, label: &str) -> Vec<UiEvent> {
    let found = buttons(d, label);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one control labelled {label:?}, found {}",
        found.len()
    );
    found[0].mock_single_click(PointerEventButton::Left);
    d.pump()
}

#[test]
fn scan_pay_and_get_the_receipt() {
    let mut d = start();
    assert!(shows(&d, "Welcome!"), "a fresh cart welcomes the shopper");
    d.scan(MILK);
    d.scan(MILK);
    d.scan(BREAD);
    assert!(shows(&d, "Organic whole milk 1 l"));
    assert!(shows(&d, "Sourdough bread"));
    assert!(shows(&d, "EUR 6.07"), "running total of 2 x 1.29 + 3.49");
    assert!(shows(&d, "3 items"));

    assert_eq!(tap(&mut d, "Checkout"), vec![UiEvent::Checkout]);
    assert!(shows(&d, "Ready to pay?"));
    assert_eq!(tap(&mut d, "Pay by card"), vec![UiEvent::Pay]);
    assert!(shows(&d, "Tap, insert or swipe your card"));
    assert!(shows(&d, "Amount to pay: EUR 6.07"));
    d.reader(ReaderPrompt::EnterPin);
    assert!(shows(&d, "Enter your PIN on the card reader"));
    d.reader(ReaderPrompt::Processing);
    assert!(shows(&d, "Processing payment..."));
    assert!(
        buttons(&d, "Cancel payment").is_empty(),
        "no cancel once the card is being authorized"
    );
    d.approve(false);
    assert!(shows(&d, "Payment approved"));
    assert!(shows(&d, "Card **** 4242  -  reference PAY-7F3A-19C2"));
    assert!(shows(&d, "R-9AB1-6C2D-0E4F"));
    let qr = find(&d, "Receipt QR code");
    assert_eq!(qr.len(), 1, "the receipt has a QR code");
    assert!(
        qr[0].size().width >= 100.0,
        "the QR code is large enough to scan"
    );
    assert!(
        !shows(
            &d,
            "Approved offline: your bank will see this payment once the cart is back online."
        ),
        "an online approval has no offline note"
    );
    assert_eq!(tap(&mut d, "Done"), vec![UiEvent::Done]);
    assert!(shows(&d, "Welcome!"), "the next shopper starts fresh");
}

#[test]
fn receipt_goes_away_by_itself_for_the_next_shopper() {
    let mut d = start();
    d.ui.set_receipt_timeout(std::time::Duration::from_secs(30));
    d.scan(BREAD);
    tap(&mut d, "Checkout");
    tap(&mut d, "Pay by card");
    d.approve(false);
    // The screen (and its timer) exists once it is drawn, or looked at.
    assert!(shows(&d, "Payment approved"));
    i_slint_backend_testing::mock_elapsed_time(std::time::Duration::from_secs(20));
    assert!(
        d.pump().is_empty(),
        "the receipt stays while the shopper looks"
    );
    i_slint_backend_testing::mock_elapsed_time(std::time::Duration::from_secs(11));
    assert_eq!(d.pump(), vec![UiEvent::Done]);
    assert!(shows(&d, "Welcome!"));
}

#[test]
fn declined_payment_says_why_and_allows_another_try() {
    let mut d = start();
    d.scan(BREAD);
    tap(&mut d, "Checkout");
    tap(&mut d, "Pay by card");
    d.decline(DeclineReason::InsufficientFunds);
    assert!(shows(&d, "Payment declined"));
    assert!(shows(
        &d,
        "Your bank declined the payment: not enough funds."
    ));
    assert_eq!(tap(&mut d, "Try again"), vec![UiEvent::TryAgain]);
    assert!(shows(&d, "Tap, insert or swipe your card"));
    assert_eq!(tap(&mut d, "Cancel payment"), vec![UiEvent::CancelPayment]);
    assert!(shows(&d, "Payment cancelled"));
    assert!(shows(&d, "The payment was cancelled. Nothing was charged."));
    assert_eq!(tap(&mut d, "Back to cart"), vec![UiEvent::BackToCart]);
    assert!(shows(&d, "Sourdough bread"));
}

#[test]
fn offline_banner_and_offline_approval_note() {
    let mut d = start();
    d.scan(MILK);
    d.link(LinkBanner::Offline {
        offline_cap_minor: Some(10_000),
    });
    assert!(shows(
        &d,
        "No connection. You can still pay by card up to EUR 100.00."
    ));
    tap(&mut d, "Checkout");
    tap(&mut d, "Pay by card");
    d.approve(true);
    assert!(shows(&d, "Payment approved"));
    assert!(shows(
        &d,
        "Approved offline: your bank will see this payment once the cart is back online."
    ));
    d.link(LinkBanner::Offline {
        offline_cap_minor: None,
    });
    assert!(shows(
        &d,
        "No connection. Card payments are paused until the connection returns; your items are kept."
    ));
    d.link(LinkBanner::Online);
    assert!(!shows(
        &d,
        "No connection. You can still pay by card up to EUR 100.00."
    ));
}

#[test]
fn over_the_offline_limit_is_declined_with_a_reason() {
    let mut d = start();
    d.scan(BREAD);
    d.link(LinkBanner::Offline {
        offline_cap_minor: Some(200),
    });
    tap(&mut d, "Checkout");
    tap(&mut d, "Pay by card");
    d.decline(DeclineReason::OverOfflineLimit);
    assert!(shows(
        &d,
        "The cart has no connection, and this amount is above what it can accept offline. Pay a smaller amount or try again later."
    ));
}

#[test]
fn remove_an_item_from_the_list() {
    let mut d = start();
    d.scan(MILK);
    d.scan(APPLES);
    assert!(shows(&d, "Apples (loose)"));
    assert!(shows(&d, "0.756 kg x EUR 2.99 / kg"));
    // Pieces: one more, one less; the last one less takes the line.
    assert!(
        buttons(&d, "Remove Organic whole milk 1 l").is_empty(),
        "pieces have − and +"
    );
    let events = tap(&mut d, "One more Organic whole milk 1 l");
    assert!(matches!(events.as_slice(), [UiEvent::OneMore { .. }]));
    assert!(shows(&d, "2 x EUR 1.29"));
    tap(&mut d, "One less Organic whole milk 1 l");
    assert!(shows(&d, "1 x EUR 1.29"));
    let events = tap(&mut d, "One less Organic whole milk 1 l");
    assert!(matches!(events.as_slice(), [UiEvent::OneLess { .. }]));
    assert_eq!(d.line_count(), 1);
    assert!(!shows(&d, "Organic whole milk 1 l"));
    assert!(shows(&d, "Apples (loose)"));
    // A weighed line is removed whole.
    assert!(buttons(&d, "One less Apples (loose)").is_empty());
    let events = tap(&mut d, "Remove Apples (loose)");
    assert!(matches!(events.as_slice(), [UiEvent::RemoveLine { .. }]));
    assert!(
        shows(&d, "Welcome!"),
        "an empty cart is back to the welcome"
    );
}

#[test]
fn age_restricted_item_waits_for_staff() {
    let mut d = start();
    d.scan(BREAD);
    d.scan(WINE);
    assert!(shows(&d, "Age check needed"));
    assert!(shows(
        &d,
        "Red wine 0.75 l can only be sold after a staff member has checked your age."
    ));
    let events = tap(&mut d, "Call staff");
    assert!(matches!(events.as_slice(), [UiEvent::RequestStaff { .. }]));
    assert!(shows(
        &d,
        "A staff member is on the way. They will scan their badge on this cart."
    ));
    let call = buttons(&d, "Call staff");
    assert_eq!(call[0].accessible_enabled(), Some(false), "called once");
    // A badge the cart refuses: the check stays open and the shopper reads why.
    d.staff_badge_refused(ui::ScanNotice::StaffBadgeRefused);
    assert!(shows(&d, "Age check needed"));
    assert!(shows(
        &d,
        "This badge is not on the staff list. The age check is still open: please ask another staff member."
    ));
    d.staff_badge();
    assert!(shows(&d, "Red wine 0.75 l"));
    assert!(shows(&d, "Age checked"), "the line says it was checked");
    assert!(!shows(&d, "Age check"), "no line still waits");
    assert!(shows(&d, "EUR 12.48"));
}

#[test]
fn without_a_staff_list_the_shopper_is_sent_to_a_till() {
    let mut d = start();
    d.scan(WINE);
    d.staff_badge_refused(ui::ScanNotice::AgeCheckUnavailable);
    assert!(shows(&d, "Age check needed"));
    assert!(shows(
        &d,
        "This cart cannot check ages yet. Please pay for age-restricted items at a till, or remove them."
    ));
    tap(&mut d, "Deutsch");
    assert!(shows(
        &d,
        "Dieser Wagen kann das Alter noch nicht prüfen. Bitte bezahlen Sie Artikel mit Altersgrenze an einer Kasse oder entfernen Sie sie."
    ));
}

#[test]
fn age_restricted_item_can_be_removed_instead() {
    let mut d = start();
    d.scan(WINE);
    let events = tap(&mut d, "Remove item");
    assert!(matches!(events.as_slice(), [UiEvent::RemoveLine { .. }]));
    assert_eq!(d.line_count(), 0);
    assert!(shows(&d, "Welcome!"));
}

#[test]
fn language_switch_translates_the_screen_and_amounts() {
    let mut d = start();
    d.scan(MILK);
    let events = tap(&mut d, "Deutsch");
    assert_eq!(events, vec![UiEvent::LanguageChanged(ui::Language::German)]);
    assert!(
        shows(&d, "Zur Kasse"),
        "the bundled German translation is used"
    );
    assert!(shows(&d, "1,29 EUR"));
    assert!(shows(&d, "1 Artikel"));
    tap(&mut d, "Zur Kasse");
    assert!(shows(&d, "Bereit zum Bezahlen?"));
    tap(&mut d, "English");
    assert!(shows(&d, "Ready to pay?"));
}

#[test]
fn device_fault_and_out_of_service_tell_the_shopper_what_to_do() {
    let d = start();
    d.ui.update(ui::ViewUpdate::Screen(ui::Screen::Fault(ui::FaultView {
        scanner_missing: false,
        reader_missing: true,
    })));
    assert!(shows(&d, "The card reader is not responding."));
    assert!(!shows(&d, "The barcode scanner is not responding."));
    assert!(shows(
        &d,
        "Please ask a staff member for help. Your items are kept."
    ));
    assert!(shows(&d, "Cart cart-0042"));
    d.ui.update(ui::ViewUpdate::Screen(ui::Screen::OutOfService));
    assert!(shows(&d, "This cart is out of service"));
}

fn check_controls(size: (f32, f32)) -> f32 {
    // Regression guard for unlabelled, tiny or clipped buttons: every element
    // with the button role on the busiest screens has a label, a touch-sized
    // box, and lies wholly inside the window.
    let mut d = start();
    d.ui.window()
        .window()
        .set_size(slint::LogicalSize::new(size.0, size.1));
    // Without an event loop, run the window's `changed height` handler (it
    // picks the compact sizes below 640 px) as an event loop turn would.
    slint::platform::update_timers_and_animations();
    d.scan(MILK);
    d.scan(WINE);
    let mut checkout_height = 0.0;
    for screen in [
        "age", "shopping", "checkout", "reader", "approved", "declined",
    ] {
        match screen {
            "shopping" => d.staff_badge(),
            "checkout" => {
                tap(&mut d, "Checkout");
            }
            "reader" => {
                tap(&mut d, "Pay by card");
            }
            "approved" => d.approve(false),
            "declined" => d.decline(DeclineReason::CardRemoved),
            _ => {}
        }
        if screen == "shopping" {
            checkout_height = buttons(&d, "Checkout")
                .first()
                .map_or(0.0, |b| b.size().height);
        }
        let buttons: Vec<ElementHandle> = ElementQuery::from_root(d.ui.window())
            .match_descendants()
            .match_accessible_role(AccessibleRole::Button)
            .find_all();
        assert!(!buttons.is_empty(), "{screen}: no buttons found");
        for b in buttons {
            let label = b.accessible_label().unwrap_or_default();
            assert!(!label.is_empty(), "{screen}: a button has no label");
            let (pos, sz) = (b.absolute_position(), b.size());
            assert!(
                sz.height >= 44.0 && sz.width >= 44.0,
                "{screen} at {size:?}: {label:?} is {}x{}, too small to touch",
                sz.width,
                sz.height
            );
            assert!(
                pos.x >= 0.0
                    && pos.y >= 0.0
                    && pos.x + sz.width <= size.0 + 0.5
                    && pos.y + sz.height <= size.1 + 0.5,
                "{screen} at {size:?}: {label:?} at {pos:?} size {sz:?} is outside the window"
            );
        }
    }
    checkout_height
}

#[test]
fn every_touch_control_is_labelled_large_and_inside_at_1280x800() {
    let height = check_controls((1280.0, 800.0));
    assert!(height >= 66.0, "full size: 3 rem of 22 px, got {height}");
}

#[test]
fn every_touch_control_is_labelled_large_and_inside_at_800x480() {
    let height = check_controls((800.0, 480.0));
    assert!(
        (48.0..66.0).contains(&height),
        "compact sizes (16 px rem) at 480 px high, got {height}"
    );
}

/// The texts drawn now.
fn drawn_texts(d: &Daemon) -> std::collections::BTreeSet<String> {
    ElementQuery::from_root(d.ui.window())
        .match_descendants()
        .match_accessible_role(AccessibleRole::Text)
        .find_all()
        .into_iter()
        .filter_map(|e| e.accessible_label().map(|l| l.to_string()))
        .collect()
}

#[test]
fn every_decline_reason_has_its_own_words_in_both_languages() {
    let mut d = start();
    d.scan(BREAD);
    for language in ["English", "Deutsch"] {
        let mut seen: Vec<(DeclineReason, std::collections::BTreeSet<String>)> = Vec::new();
        for reason in DeclineReason::ALL {
            d.decline(reason);
            let texts = drawn_texts(&d);
            assert!(texts.len() >= 2, "{reason:?} in {language}: {texts:?}");
            for (other, other_texts) in &seen {
                assert_ne!(
                    &texts, other_texts,
                    "{reason:?} and {other:?} read the same in {language}"
                );
            }
            seen.push((reason, texts));
        }
        // The next round in German: switch on the shopping list.
        d.ui.update(ui::ViewUpdate::Screen(ui::Screen::Shopping));
        if language == "English" {
            tap(&mut d, "Deutsch");
        }
    }
    d.decline(DeclineReason::CardUnreadable);
    assert!(shows(&d, "Karte konnte nicht gelesen werden"));
    assert!(
        !shows(&d, "Zahlung abgelehnt"),
        "an unread card is no decline"
    );
    d.decline(DeclineReason::PayAtTill);
    assert!(shows(
        &d,
        "Der Wagen nimmt erst wieder Kartenzahlungen an, wenn er online ist. Bitte zahlen Sie an einer Kasse oder versuchen Sie es, wenn der Wagen wieder online ist."
    ));
}

#[test]
fn a_refused_scan_is_shown_until_the_next_scan() {
    let mut d = start();
    d.scan(MILK);
    d.ui.update(ui::ViewUpdate::Notice(Some(ui::ScanNotice::Coupon)));
    assert!(shows(&d, "Coupons are redeemed at a till."));
    tap(&mut d, "Deutsch");
    assert!(shows(&d, "Gutscheine werden an der Kasse eingelöst."));
    d.ui.update(ui::ViewUpdate::Notice(None));
    assert!(!shows(&d, "Gutscheine werden an der Kasse eingelöst."));
}
