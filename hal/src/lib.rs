//! Device layer of the payment cart.
//!
//! Every device on the cart sits behind a small trait, with a real driver and a
//! simulator that speaks the same protocol over a real serial line. This crate
//! depends on no other crate of the workspace.
//!
//! # Layout
//! - [`scanner`]: barcode scanners (serial and HID keyboard-wedge) and the
//!   barcode decoder.
//! - [`reader`]: the card reader: its serial protocol, the cart-side driver and
//!   the simulator.
//! - [`identity`]: the device identity: the TPM-backed key, the ledger's NV
//!   counter and sealed data key, CSRs, the fleet's recovery key, and a
//!   software key for development.
//! - [`ecies`]: ECIES on P-256 (ECDH, HKDF-SHA256, AES-256-GCM), shared by
//!   the reader's card data and the data key's recovery copy.
#![deny(missing_docs)]

pub mod ecies;
pub mod identity;
pub mod reader;
pub mod scanner;
