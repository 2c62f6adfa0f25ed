//! The daemon's side of the threads: a UI event read on another thread, the
//! answer sent back through `UiHandle` into the UI's event loop. One test per
//! process: the testing backend's event loop can be set up only once.

use std::sync::mpsc;
use std::time::Duration;

use i_slint_backend_testing::{AccessibleRole, ElementHandle};
use slint::ComponentHandle;
use slint::platform::PointerEventButton;
use ui::{CartView, CheckoutUi, LineView, Quantity, Screen, UiEvent, ViewUpdate};

#[test]
fn daemon_thread_answers_a_tap_through_the_event_loop() {
    ui::headless::check_fonts().expect("fontconfig must find a font: install fonts-dejavu-core");
    i_slint_backend_testing::init_integration_test_with_mock_time();
    let (tx, rx) = mpsc::channel();
    let ui = CheckoutUi::new("EUR", tx).expect("window");
    ui.window()
        .window()
        .set_size(slint::LogicalSize::new(1280.0, 800.0));
    ui.window().show().expect("show");
    ui.update(ViewUpdate::Cart(CartView {
        currency: "EUR".into(),
        lines: vec![LineView {
            line_id: 9,
            name: "Sourdough bread".into(),
            quantity: Quantity::Units(1),
            unit_price_minor: 349,
            line_total_minor: 349,
            age_restricted: false,
            age_checked: false,
            adjustable: true,
        }],
        total_minor: 349,
        tax_minor: 23,
    }));
    ui.update(ViewUpdate::Screen(Screen::Shopping));

    let handle = ui.handle();
    let daemon = std::thread::spawn(move || {
        // Hang guard only: the tap is queued before the loop starts.
        let event = rx.recv_timeout(Duration::from_secs(60));
        if event == Ok(UiEvent::Checkout) {
            handle
                .update(ViewUpdate::Screen(Screen::Checkout))
                .expect("event loop alive");
        }
        slint::quit_event_loop().expect("quit");
        event
    });

    ui.window()
        .as_weak()
        .upgrade_in_event_loop(|window| {
            let button = ElementHandle::find_by_accessible_label(&window, "Checkout")
                .find(|e| e.accessible_role() == Some(AccessibleRole::Button))
                .expect("a Checkout button");
            button.mock_single_click(PointerEventButton::Left);
        })
        .expect("queue the tap");
    slint::run_event_loop().expect("event loop");

    assert_eq!(daemon.join().expect("daemon thread"), Ok(UiEvent::Checkout));
    assert!(
        ElementHandle::find_by_accessible_label(ui.window(), "Ready to pay?")
            .next()
            .is_some(),
        "the daemon's answer reached the screen"
    );
}
