//! The cart's durable heart: the SQLite payment ledger, the offline
//! authorization policy, the transactional outbox and telemetry.
//!
//! Every payment the shopper sees approved is committed (fsynced) first;
//! every record leaves through the outbox exactly once as far as the backend
//! can tell (each carries a key it deduplicates by). This crate depends on no
//! other crate of the workspace: the monotonic counter and the data key are
//! traits here, implemented with the TPM in `cart-app`.
//!
//! # Layout
//! - [`ledger`]: the [`Ledger`] itself (open, checkout path, outbox,
//!   telemetry, cart state), one file per operation family.
//! - [`policy`]: offline limits, their validation, the pure decision.
//! - [`payment`]: idempotency keys, card-read results, the payment states.
//! - [`lifecycle`]: the one transition table (states × events) the ledger
//!   enforces and the tests check.
//! - [`telemetry`]: the events and the group-commit buffer.
//! - [`staff`]: the staff list for age checks (hashed badges, the
//!   approval recorded with a sale).
//! - [`counter`]: the monotonic-counter trait and a file-backed counter.
//! - [`datakey`]: the data-key trait and card-data sealing.
//! - [`money`], [`time`]: currencies and amounts; timestamps and trusted time.
//! - [`sync`]: the outbox drain, online authorization and downstream
//!   handling over the uplink.
//! - [`wire`]: the wire contract (envelope, message bodies, topics,
//!   telemetry packing), and AWS IoT's own MQTT APIs the cart speaks:
//!   fleet provisioning (`wire::fleet`) and Jobs (`wire::jobs`: topics,
//!   execution payloads, the job documents).
//! - [`failpoint`]: crash-test hooks (feature `failpoints`).
//! - [`uplink`]: MQTT 5 over mutual TLS to the broker (link, TLS identity, backoff, topics).
//! - [`error`], the crate's error type [`LedgerError`].
#![deny(missing_docs)]

pub mod counter;
pub mod datakey;
pub mod error;
pub mod failpoint;
pub mod ledger;
pub mod lifecycle;
pub mod money;
pub mod payment;
pub mod policy;
pub mod staff;
pub mod sync;
pub mod telemetry;
pub mod time;
pub mod uplink;
pub mod wire;

pub use error::LedgerError;
pub use ledger::{Ledger, LedgerConfig};
pub use lifecycle::{IllegalTransition, PaymentEvent};
pub use money::{Currency, Money};
pub use payment::{BackendOutcome, CardRead, EntryMode, NewAttempt, PaymentKey, PaymentState};
pub use time::Timestamp;
