//! The backend emulator: the cloud side of the cart's wire contract.
//!
//! It is the reference implementation of the contract in
//! `docs/wire-format.md`, not a mock of the cart: it speaks the same
//! envelopes over a real broker, decrypts the reader's card data with the
//! test processor key (`tests/fixtures/`), decides by the test-card table,
//! deduplicates by idempotency key and telemetry sequence, and counts
//! everything so tests can check "exactly once".
//!
//! # Layout
//! - [`processor`]: card data decryption and the test cards' rules.
//! - [`emulator`]: the MQTT side: requests in, answers and updates out.
//! - [`receipts`]: the e-receipt page's check of a receipt URL.
//! - `reversals.rs`: reversals with processor semantics (idempotent by
//!   key; an unknown or already reversed payment answered cleanly).
//! - `staff.rs`: the staff lists published per cart (age checks), and
//!   which badge a recorded approval names.
//! - `streams.rs`: the catalog and deny-list as published per cart,
//!   sent whole when a cart asks (`resync_request`).
//! - [`counts`]: what it saw, for tests (API) and scripts (JSON).
//! - [`fleet`]: AWS IoT fleet provisioning (CreateCertificateFromCsr,
//!   RegisterThing) and the certificate registry per cart.
//! - [`jobs`]: AWS IoT Jobs (the device MQTT API, rollout, timeouts,
//!   cancellation, abort), on an injectable clock.
//! - [`objects`]: the object store behind pre-signed HTTPS URLs (a
//!   diagnostic bundle uploaded, a file downloaded with `Range`).
//! - [`recovery`]: a dead-TPM cart's recovery export in, its payments
//!   forwarded exactly once (the `cart-recover` tool).
#![deny(missing_docs)]

pub mod counts;
pub mod emulator;
pub mod fleet;
pub mod jobs;
pub mod objects;
pub mod processor;
pub mod receipts;
pub mod recovery;
mod reversals;
mod staff;
mod streams;

pub use counts::{Counts, JobCounts, PaymentView, Via};
pub use emulator::{Emulator, EmulatorConfig, EmulatorError};
pub use fleet::{CertStatus, CertView, Fleet, FleetConfig};
pub use jobs::{JobConfig, JobsConfig, JobsService};
pub use objects::{ObjectStore, ObjectStoreError, Upload};
pub use receipts::{ReceiptRefused, ReceiptVerdict};
