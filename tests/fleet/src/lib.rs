//! Fleet operations at scale, measured on this machine: N carts of the
//! project's real ledger, uplink and sync code in one process, against a
//! real mosquitto (mutual TLS, per-cart ACLs) with the backend emulator
//! behind it; the scenarios an operator of thousands of carts asks about,
//! and the cloud bill from the traffic measured.
//!
//! # Layout
//! - [`cart`]: one simulated cart (its own SQLite ledger, certificate,
//!   link and sync; a shopper stand-in checking out and reporting
//!   telemetry; an application stand-in answering jobs).
//! - [`fleet`]: the broker, the emulator and the carts; draining and the
//!   exactly-once check against the backend.
//! - [`external`]: an external MQTT 5 broker as the target instead of the
//!   local mosquitto (its CA, the fleet's issuer of cart certificates,
//!   the backend's identity or none), and the command line's options.
//! - [`scenario`]: steady fleet, broker restart, fleet-wide outage, job
//!   rollout; each a report.
//! - [`bill`]: MQTT traffic as AWS IoT Core meters it (each packet kind's
//!   rule, 5 KB steps, connection minutes, the ingest rule, job
//!   executions), projected to a cart-month and priced from a replaceable
//!   table (`prices/*.toml`), for one fleet size or several.
//! - [`quota`]: which AWS IoT default quota a fleet of N hits first, from
//!   the measured per-cart rates and a replaceable quota table.
//! - [`probe`]: CPU and memory of the broker and of this process, from
//!   `/proc`; the open-files limit.
//!
//! The binary `fleet-sim` runs the scenarios (docs/fleet.md); the test
//! `tests/reduced.rs` runs each at 100 carts in the README's test command.

pub mod bill;
pub mod cart;
pub mod external;
pub mod fleet;
pub mod probe;
pub mod quota;
pub mod scenario;

use thiserror::Error;

/// A simulation failed (not a finding: a finding is in a report).
#[derive(Debug, Error)]
pub enum SimError {
    /// The fixtures (test cards, keys) did not load.
    #[error("fixtures: {0}")]
    Fixtures(String),
    /// A file or folder.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A ledger failed.
    #[error(transparent)]
    Ledger(#[from] store_and_forward::LedgerError),
    /// A link failed to start or publish.
    #[error(transparent)]
    Link(#[from] store_and_forward::uplink::LinkError),
    /// A TLS identity did not load.
    #[error(transparent)]
    Tls(#[from] store_and_forward::uplink::TlsError),
    /// The emulator did not start.
    #[error(transparent)]
    Emulator(#[from] backend_emulator::EmulatorError),
    /// The Jobs service refused an operator action.
    #[error(transparent)]
    Jobs(#[from] backend_emulator::jobs::JobsServiceError),
    /// A bad setting.
    #[error("configuration: {0}")]
    Config(String),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A check could not be made.
    #[error("check: {0}")]
    Check(String),
    /// The scenario stops and starts the broker: only the local mosquitto
    /// can be.
    #[error(
        "{0} needs the local broker (it kills and restarts mosquitto under the fleet): it cannot run against an external broker"
    )]
    NeedsLocalBroker(&'static str),
    /// The scenario reads what the backend emulator received or runs its
    /// Jobs service, and no emulator runs.
    #[error(
        "{0} needs the backend emulator (what it received, its Jobs service): it cannot run with no emulator (--no-backend)"
    )]
    NeedsEmulator(&'static str),
}
