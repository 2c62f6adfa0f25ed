//! The payment cart's application: configuration, the checkout that ties
//! the card reader to the ledger and the uplink, and the tools.
//!
//! # Layout
//! - [`config`]: the TOML configuration and its validation.
//! - [`basket`]: the shopping session (lines, totals, tax, age check).
//! - [`catalog`]: items by GTIN, deltas, CSV import.
//! - [`checkout`]: one payment from "Pay" to the decision shown.
//! - [`control`]: the control socket's protocol (`cartctl` and the daemon).
//! - [`daemon`]: `cart-app run`, the daemon: threads, UI, uplink, signals,
//!   systemd, the control socket's server.
//! - [`diag`]: the diagnostic bundle (`cartctl diag`, the
//!   `diagnostic_upload` job): composed under a size cap, the journal read
//!   from its socket, sent by HTTPS PUT.
//! - [`logging`]: the journal with structured fields, or text.
//! - `demo` (feature `demo`): the whole cart scripted on simulated devices.
//! - [`recovery`]: the ledger's data key wrapped to the fleet's recovery
//!   key, and the export of what a cart with a dead TPM still owes.
//! - [`receipt`]: the receipt's QR code, an e-receipt URL signed with the
//!   cart's device key.
//! - [`session`]: the shopping session as a state machine (scans, taps,
//!   payments in; screen updates and device requests out).
//! - [`staff`]: who may clear an age check (the staff list, behind a trait).
//! - [`watchdog`]: sd_notify, and a watchdog fed only by progress.
//! - [`demo_ledger`]: the scripted ledger session (`cart-app demo-ledger`).
//! - [`provision`]: first boot as a resumable pipeline (Wi-Fi, TPM key,
//!   AWS IoT fleet provisioning, first publish) and certificate rotation.
//! - [`update`]: over-the-air updates: the job's checks, the bundle's
//!   download, RAUC over D-Bus, the health check that marks a slot good.
//! - [`tpm`]: the TPM behind the ledger (NV counter, sealed data key) and
//!   the uplink (a rustls signing key on the device identity).
#![deny(missing_docs)]

pub mod basket;
pub mod catalog;
pub mod checkout;
pub mod config;
pub mod control;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod demo_ledger;
pub mod diag;
pub mod logging;
pub mod provision;
pub mod receipt;
pub mod recovery;
pub mod session;
pub mod staff;
pub mod tpm;
pub mod update;
pub mod watchdog;
