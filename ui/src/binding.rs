//! Connects a [`CheckoutController`] to a [`CheckoutWindow`]: pushes each
//! [`Presentation`] into the adapters and routes the adapters' callbacks to the
//! controller. Runs on the UI thread; [`UiHandle`] reaches it from others.

use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use slint::{ComponentHandle, Image, ModelRc, VecModel};

use crate::controller::{CheckoutController, EventSink, UiAction, ViewUpdate};
use crate::generated::{CartAdapter, CheckoutWindow, PaymentAdapter, ServiceAdapter, Session};
use crate::present::Presentation;

/// Errors of the UI binding.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Slint could not make the window (no backend, no display, no font);
    /// the daemon cannot show anything and exits with this cause.
    #[error("cannot create the checkout window: {0}")]
    Platform(#[from] slint::PlatformError),
    /// The UI's event loop has stopped; the update is dropped (the daemon is
    /// shutting down).
    #[error("the UI event loop is gone: {0}")]
    EventLoop(#[from] slint::EventLoopError),
}

type Shared = Arc<Mutex<CheckoutController>>;

fn lock(controller: &Shared) -> MutexGuard<'_, CheckoutController> {
    // Only the UI thread locks it, so a poisoned lock means a panic there:
    // the state is still consistent (each method completes its own update).
    controller
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The checkout window with its controller, on the UI thread.
pub struct CheckoutUi {
    window: CheckoutWindow,
    controller: Shared,
}

impl CheckoutUi {
    /// Creates the window (not yet shown), idle, with an empty cart in
    /// `currency`; UI events go to `sink`.
    pub fn new(currency: &str, sink: impl EventSink) -> Result<CheckoutUi, UiError> {
        let window = CheckoutWindow::new()?;
        let controller = Arc::new(Mutex::new(CheckoutController::new(currency, sink)));
        wire_callbacks(&window, &controller);
        let presentation = lock(&controller).presentation();
        show(&window, &presentation);
        Ok(CheckoutUi { window, controller })
    }

    /// The Slint window, to show it, run the event loop, or find elements in tests.
    pub fn window(&self) -> &CheckoutWindow {
        &self.window
    }

    /// Applies a daemon update now (on the UI thread).
    pub fn update(&self, update: ViewUpdate) {
        let presentation = lock(&self.controller).apply(update);
        show(&self.window, &presentation);
    }

    /// How long the receipt stays before the UI reports [`crate::UiEvent::Done`]
    /// by itself (default 60 s).
    pub fn set_receipt_timeout(&self, timeout: std::time::Duration) {
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        self.window
            .global::<PaymentAdapter>()
            .set_receipt_timeout(ms);
    }

    /// A handle other threads use to send updates.
    pub fn handle(&self) -> UiHandle {
        UiHandle {
            window: self.window.as_weak(),
            controller: Arc::clone(&self.controller),
        }
    }
}

/// Sends view updates to the UI thread from any thread. Cheap to clone.
#[derive(Clone)]
pub struct UiHandle {
    window: slint::Weak<CheckoutWindow>,
    controller: Shared,
}

impl UiHandle {
    /// Queues `update` on the UI's event loop. Returns an error only when
    /// the event loop is gone.
    pub fn update(&self, update: ViewUpdate) -> Result<(), UiError> {
        let controller = Arc::clone(&self.controller);
        self.window.upgrade_in_event_loop(move |window| {
            let presentation = lock(&controller).apply(update);
            show(&window, &presentation);
        })?;
        Ok(())
    }
}

fn wire_callbacks(window: &CheckoutWindow, controller: &Shared) {
    // Each callback holds the controller (plain data) and a weak window
    // handle, so the window is not kept alive by its own callbacks.
    let act = {
        let controller = Arc::clone(controller);
        let weak = window.as_weak();
        Rc::new(move |action: UiAction| {
            let presentation = lock(&controller).on_action(action);
            if let (Some(p), Some(window)) = (presentation, weak.upgrade()) {
                show(&window, &p);
            }
        })
    };
    let cart = window.global::<CartAdapter>();
    let a = Rc::clone(&act);
    cart.on_checkout(move || a(UiAction::Checkout));
    let a = Rc::clone(&act);
    cart.on_back_to_cart(move || a(UiAction::BackToCart));
    let a = Rc::clone(&act);
    cart.on_remove_line(move |index| a(UiAction::RemoveRow(index)));
    let a = Rc::clone(&act);
    cart.on_less_line(move |index| a(UiAction::LessRow(index)));
    let a = Rc::clone(&act);
    cart.on_more_line(move |index| a(UiAction::MoreRow(index)));
    let pay = window.global::<PaymentAdapter>();
    let a = Rc::clone(&act);
    pay.on_pay(move || a(UiAction::Pay));
    let a = Rc::clone(&act);
    pay.on_cancel(move || a(UiAction::Cancel));
    let a = Rc::clone(&act);
    pay.on_try_again(move || a(UiAction::TryAgain));
    let a = Rc::clone(&act);
    pay.on_done(move || a(UiAction::Done));
    let service = window.global::<ServiceAdapter>();
    let a = Rc::clone(&act);
    service.on_call_staff(move || a(UiAction::CallStaff));
    let a = Rc::clone(&act);
    service.on_remove_age_item(move || a(UiAction::RemoveAgeItem));
    let a = Rc::clone(&act);
    window
        .global::<Session>()
        .on_set_language(move |code| a(UiAction::SetLanguage(code.to_string())));
}

/// Pushes a presentation into the adapters.
fn show(window: &CheckoutWindow, p: &Presentation) {
    let session = window.global::<Session>();
    if session.get_language() != p.language {
        // "en" selects the source texts; the German bundle is always compiled
        // in, so this cannot fail for the languages `Language` has.
        let _ = slint::select_bundled_translation(p.language);
        session.set_language(p.language.into());
    }
    session.set_screen(p.screen);
    session.set_link_down(p.link_down);
    session.set_notice(p.notice);
    session.set_offline_cap(p.offline_cap.as_str().into());

    let cart = window.global::<CartAdapter>();
    cart.set_lines(ModelRc::new(VecModel::from(p.lines.clone())));
    cart.set_item_count(p.item_count);
    cart.set_total(p.total.as_str().into());
    cart.set_tax(p.tax.as_str().into());

    let pay = window.global::<PaymentAdapter>();
    pay.set_step(p.reader_step);
    pay.set_amount(p.total.as_str().into());
    pay.set_decline(p.decline);
    let r = &p.receipt;
    pay.set_receipt_lines(ModelRc::new(VecModel::from(r.lines.clone())));
    pay.set_receipt_total(r.total.as_str().into());
    pay.set_receipt_tax(r.tax.as_str().into());
    pay.set_card(r.card.as_str().into());
    pay.set_payment_reference(r.payment_reference.as_str().into());
    pay.set_receipt_reference(r.receipt_reference.as_str().into());
    pay.set_approved_offline(r.offline);
    pay.set_receipt_qr(match &r.qr {
        Some(qr) => Image::from_rgb8(qr.to_pixels()),
        None => Image::default(),
    });

    let service = window.global::<ServiceAdapter>();
    service.set_age_item_name(p.age_item_name.as_str().into());
    service.set_staff_called(p.staff_called);
    service.set_scanner_missing(p.fault.scanner_missing);
    service.set_reader_missing(p.fault.reader_missing);
    service.set_cart_id(p.cart_id.as_str().into());
    service.set_setup_step(p.setup_step);
    service.set_setup_network(p.setup_network.as_str().into());
}
