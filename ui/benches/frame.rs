//! From a view-model update (an item added to the cart) to the frame drawn by
//! the software renderer at 1280x800: p50 and p99 over 400 updates.
//!
//! `cargo bench -p ui --bench frame` (release; the first build takes minutes).

use std::sync::mpsc;
use std::time::Instant;

use hdrhistogram::Histogram;
use ui::headless::Headless;
use ui::{CartView, CheckoutUi, LineView, Quantity, Screen, ViewUpdate};

const UPDATES: usize = 400;
/// A cart is emptied after this many lines, as a real shopping trip ends.
const LINES_PER_CART: usize = 40;

fn main() {
    let headless = match Headless::install() {
        Ok(h) => h,
        Err(err) => {
            eprintln!("frame bench: {err}");
            std::process::exit(1);
        }
    };
    headless.resize(1280, 800);
    let (tx, _rx) = mpsc::channel();
    let ui = match CheckoutUi::new("EUR", tx) {
        Ok(ui) => ui,
        Err(err) => {
            eprintln!("frame bench: {err}");
            std::process::exit(1);
        }
    };
    ui.update(ViewUpdate::Screen(Screen::Shopping));
    // Warm up: glyph caches, first layout.
    headless.render();

    let mut cart = CartView {
        currency: "EUR".into(),
        ..CartView::default()
    };
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..UPDATES {
        if cart.lines.len() == LINES_PER_CART {
            cart.lines.clear();
            cart.total_minor = 0;
            cart.tax_minor = 0;
        }
        let price = 99 + (i as i64 * 37) % 900;
        cart.lines.push(LineView {
            line_id: i as u64,
            name: format!("Product number {i}"),
            quantity: Quantity::Units(1 + (i % 3) as u32),
            unit_price_minor: price,
            line_total_minor: price * (1 + (i % 3) as i64),
            age_restricted: i % 17 == 0,
            age_checked: false,
            adjustable: i % 5 != 0,
        });
        cart.total_minor += price * (1 + (i % 3) as i64);
        cart.tax_minor = cart.total_minor * 7 / 107;
        let update = ViewUpdate::Cart(cart.clone());
        let start = Instant::now();
        ui.update(update);
        let frame = headless.render();
        let elapsed = start.elapsed();
        std::hint::black_box(&frame);
        histogram
            .record(elapsed.as_micros() as u64)
            .expect("in range");
    }
    println!(
        "item added -> frame rendered at 1280x800 over {UPDATES} updates: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        histogram.value_at_quantile(0.50) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0
    );
}
