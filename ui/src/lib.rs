//! The cart's checkout UI: Slint screens, the view models the daemon fills,
//! and the controller between them.
//!
//! The daemon sends [`ViewUpdate`]s (a cart, a screen, the link state) and
//! reads [`UiEvent`]s (pay, cancel, remove a line, call staff, a language
//! switch) from a channel. Rust reaches the `.slint` screens (under `ui/`)
//! only through their `export global` adapters (`Session`, `CartAdapter`,
//! `PaymentAdapter`, `ServiceAdapter`). This crate knows nothing of devices
//! or storage. See `docs/ui.md`.
//!
//! # Layout
//! - [`view`]: the view models (`CartView`, `Screen`, `ReaderPrompt`, ...) and `UiEvent`.
//! - [`money`]: amounts in minor units formatted per currency and language.
//! - [`present`]: view models to formatted adapter values (pure).
//! - [`controller`]: `CheckoutController`, view state and UI actions to events (pure).
//! - [`binding`]: `CheckoutUi` and `UiHandle`, the controller wired to a window.
//! - [`qr`]: the receipt's QR code.
//! - [`headless`]: a display-less platform rendering into a pixel buffer (tests, demo, PNGs).
#![deny(missing_docs)]

pub mod binding;
pub mod controller;
pub mod headless;
pub mod money;
pub mod present;
pub mod qr;
pub mod view;

/// The Rust side of the `.slint` files, as `slint_build` generates it.
#[allow(missing_docs, clippy::all)]
pub mod generated {
    slint::include_modules!();
}

pub use binding::{CheckoutUi, UiError, UiHandle};
pub use controller::{CheckoutController, EventSink, UiAction, ViewUpdate};
pub use generated::CheckoutWindow;
/// Slint itself, for the daemon's event loop and timers.
pub use slint;
pub use view::*;
