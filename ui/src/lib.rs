//! The cart's checkout UI.
//!
//! The Slint screens arrive with the checkout UI issue; for now this crate holds
//! the view-model helpers that do not need a window.
//!
//! # Layout
//! - [`money`]: amounts in minor units formatted for the shopper.
#![deny(missing_docs)]

pub mod money;
