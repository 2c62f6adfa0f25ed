//! A desktop preview of the checkout with sample data, for developers:
//! `cargo run -p ui --example preview --features winit [SCREEN]`, where SCREEN
//! is one of idle, shopping, checkout, reader, approved, offline, declined,
//! age, fault, out-of-service. Events from the buttons are printed.

use std::sync::mpsc;

use ui::{
    AgeCheckView, CartView, CheckoutUi, DeclineReason, FaultView, LineView, LinkBanner, Quantity,
    ReaderPrompt, ReceiptView, Screen, ViewUpdate,
};

fn sample_cart() -> CartView {
    let line = |line_id, name: &str, quantity, unit, total| LineView {
        line_id,
        name: name.into(),
        quantity,
        unit_price_minor: unit,
        line_total_minor: total,
        age_restricted: false,
        age_checked: false,
        adjustable: matches!(quantity, Quantity::Units(_)),
    };
    CartView {
        currency: "EUR".into(),
        lines: vec![
            line(1, "Organic whole milk 1 l", Quantity::Units(2), 129, 258),
            line(2, "Sourdough bread", Quantity::Units(1), 349, 349),
            line(3, "Apples (loose)", Quantity::Grams(756), 299, 226),
        ],
        total_minor: 833,
        tax_minor: 54,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = mpsc::channel();
    let ui = CheckoutUi::new("EUR", tx)?;
    ui.update(ViewUpdate::CartId("cart-preview".into()));
    ui.update(ViewUpdate::Cart(sample_cart()));
    let receipt = |offline| ReceiptView {
        cart: sample_cart(),
        payment_reference: "PAY-7F3A-19C2".into(),
        receipt_reference: "R-9AB1-6C2D-0E4F".into(),
        receipt_code: "01a2385e-2640-761f-9ab1-6c2d0e4f5a6b".into(),
        masked_pan: "**** 4242".into(),
        offline,
    };
    let which = std::env::args().nth(1).unwrap_or_else(|| "shopping".into());
    let screen = match which.as_str() {
        "idle" => Screen::Idle,
        "checkout" => Screen::Checkout,
        "reader" => Screen::Reader(ReaderPrompt::PresentCard),
        "approved" => Screen::Approved(receipt(false)),
        "offline" => {
            ui.update(ViewUpdate::Link(LinkBanner::Offline {
                offline_cap_minor: Some(10_000),
            }));
            Screen::Approved(receipt(true))
        }
        "declined" => Screen::Declined(DeclineReason::InsufficientFunds),
        "age" => Screen::AgeCheck(AgeCheckView {
            line_id: 3,
            item_name: "Red wine 0.75 l".into(),
            staff_called: false,
        }),
        "fault" => Screen::Fault(FaultView {
            scanner_missing: true,
            reader_missing: false,
        }),
        "out-of-service" => Screen::OutOfService,
        _ => Screen::Shopping,
    };
    ui.update(ViewUpdate::Screen(screen));
    std::thread::spawn(move || {
        for event in rx {
            println!("{event:?}");
        }
    });
    slint::ComponentHandle::run(ui.window())?;
    Ok(())
}
