//! The ledger: one SQLite file (WAL, `synchronous=FULL`, mode 0600) holding
//! payments, the outbox, telemetry and the cart's state.
//!
//! A [`Ledger`] owns one connection and takes `&mut self` for every write:
//! the daemon keeps it behind one owner (a Mutex or a thread), which is also
//! what SQLite's single writer wants.
//!
//! - `open.rs`: opening, checks on a foreign or damaged file, migrations,
//!   the counter binding and crash recovery.
//! - `payments/`: the checkout path (attempt, decisions, outcomes).
//!   `mod.rs` holds the stored payment, its reads and the transition every
//!   state change goes through; `checkout.rs` the attempt and the offline
//!   decision (and cancel, fail); `settle.rs` the backend's outcomes and
//!   reversals' results.
//! - `outbox/`: batches for the uplink, delivery, retry, quarantine.
//!   `mod.rs` holds the record types, kinds and classes, the retry policy,
//!   enqueueing and depth; `drain.rs` taking batches, delivery, failures
//!   and requeueing; `quarantine.rs` quarantine, release and the lists of
//!   quarantined records.
//! - `telemetry.rs`: group-committed telemetry under a disk quota.
//! - `state.rs`: cart-level state, limits and deny-list updates, status.
//! - `staff.rs`: the staff list for age checks, and the approval recorded
//!   with a sale.
//! - `maintenance.rs`: retention, the telemetry quota over delivered
//!   records, WAL checkpoints, in bounded steps.
//! - `first.rs`: checkouts go first at the ledger's lock, background work
//!   after them.
//! - `checkpoint.rs`: the second connection that checkpoints the WAL
//!   outside the ledger's lock, and its thread.
//! - `recovery.rs`: the data key wrapped to backend recovery keys.
//! - `export.rs`: the read-only recovery export of what a cart with a dead
//!   TPM still owes the backend, and opening it with the unwrapped key.

mod checkpoint;
pub mod export;
mod first;
mod maintenance;
mod open;
mod outbox;
mod payments;
mod recovery;
pub mod schema;
mod staff;
mod state;
mod telemetry;

use std::path::PathBuf;

use rusqlite::Connection;

use crate::counter::MonotonicCounter;
use crate::datakey::Sealer;
use crate::policy::{LedgerIntegrity, Limits};

pub use checkpoint::CheckpointHandle;
pub use export::{ExportError, ExportedPayment, OpenedRecord, RecoveryExport, export_read_only};
pub use first::CheckoutFirst;
pub use maintenance::{MaintenanceReport, MaintenanceStep};
pub use open::OpenReport;
pub use outbox::{OutboxBody, OutboxClass, OutboxRecord, PaymentForward, RetryPolicy};
pub use recovery::Escrowed;

/// The kinds of outbox records the ledger itself writes.
pub mod outbox_kinds {
    pub use super::outbox::{
        KIND_PAYMENT_FORWARD, KIND_PAYMENT_INQUIRY, KIND_PAYMENT_REVERSAL, KIND_TELEMETRY,
    };
}
pub use payments::{Applied, PaymentRecord};
pub use state::{
    LedgerStatus, OutboxDepth, QuarantinedPayment, UpdateOutcome, keys, read_only_states,
    read_only_status,
};
pub use telemetry::EnqueueReport;

/// How the ledger is set up (the `[ledger]` table of the cart's config).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// The database file.
    pub path: PathBuf,
    /// Disk quota for telemetry, bytes (payload sizes). Undelivered
    /// telemetry over it drops the oldest (counted); delivered telemetry
    /// kept for retention gives way first (maintenance).
    pub telemetry_quota_bytes: u64,
    /// Free space kept for payments: below it offline approval stops and
    /// new telemetry is shed.
    pub payment_reserve_bytes: u64,
    /// Delivered records are purged after this many seconds.
    pub retention_secs: u64,
    /// The daemon runs the ledger's maintenance at start and then this
    /// often, seconds.
    pub maintenance_interval_secs: u64,
    /// The WAL file is truncated to at most this many bytes after a
    /// checkpoint (`PRAGMA journal_size_limit`).
    pub journal_size_limit_bytes: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            path: PathBuf::from("/var/lib/cart/ledger.sqlite"),
            telemetry_quota_bytes: 64 * 1024 * 1024,
            payment_reserve_bytes: 32 * 1024 * 1024,
            retention_secs: 7 * 24 * 3600,
            maintenance_interval_secs: 60,
            journal_size_limit_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The durable ledger. See the module docs.
pub struct Ledger {
    conn: Connection,
    config: LedgerConfig,
    sealer: Sealer,
    counter: Box<dyn MonotonicCounter>,
    integrity: LedgerIntegrity,
    limits: Limits,
    /// This ledger's random id: telemetry sequences are unique within it.
    ledger_id: String,
    /// Bytes of undelivered telemetry, kept in memory (summed at open).
    telemetry_bytes: u64,
    /// Bytes of delivered telemetry still kept (until retention or the
    /// quota purges it), kept in memory (summed at open).
    delivered_telemetry_bytes: u64,
    /// Commits since the last WAL checkpoint (auto-checkpoint is off so
    /// checkouts never pay for one).
    commits_since_checkpoint: u64,
    /// The second connection that checkpoints the WAL outside the lock.
    checkpointer: checkpoint::Checkpointer,
    /// Who goes first at the lock this ledger sits behind.
    checkout_first: CheckoutFirst,
    /// The counter's increment after the last offline approval, while the
    /// counter (a TPM) still works on it: the value the ledger expects, the
    /// payment, and the answer to come. Settled before the next offline
    /// decision, any binding check and on drop.
    pending_increment: Option<(u64, crate::PaymentKey, crate::counter::PendingIncrement)>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // A clean stop leaves the counter in step with the ledger.
        self.settle_counter();
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.config.path)
            .field("integrity", &self.integrity)
            .field("limits_version", &self.limits.version)
            .finish_non_exhaustive()
    }
}

/// Run a PASSIVE checkpoint after this many commits without one.
const CHECKPOINT_EVERY_COMMITS: u64 = 100;

impl Ledger {
    /// This ledger's id (random, made at creation): the scope in which
    /// telemetry sequence numbers are unique.
    pub fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    /// The ledger's binding to the monotonic counter.
    pub fn integrity(&self) -> &LedgerIntegrity {
        &self.integrity
    }

    /// The offline limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The config it was opened with.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when SQLite says "ok".
    pub fn integrity_check(&self) -> Result<(), crate::LedgerError> {
        let rows: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(crate::LedgerError::Corrupt {
                path: self.config.path.clone(),
                detail: rows.join("; "),
            })
        }
    }

    /// Reads one of the connection's pragmas as an integer (diagnostics,
    /// tests). Only plain pragma names are accepted.
    pub fn pragma_i64(&self, name: &str) -> Result<i64, crate::LedgerError> {
        Ok(self.conn.query_row(&pragma_sql(name)?, [], |r| r.get(0))?)
    }

    /// Reads one of the connection's pragmas as text.
    pub fn pragma_string(&self, name: &str) -> Result<String, crate::LedgerError> {
        Ok(self.conn.query_row(&pragma_sql(name)?, [], |r| r.get(0))?)
    }

    /// Runs `f` with `synchronous=NORMAL`: its commits are not fsynced on
    /// their own. For records whose loss in a power cut costs only a resend
    /// or some telemetry (telemetry, delivery marks, acks, cart state). In
    /// WAL mode order is kept: the next FULL commit (a payment's) fsyncs
    /// the WAL with everything before it, so nothing committed before a
    /// payment decision can be lost while that decision survives.
    pub(crate) fn relaxed<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, crate::LedgerError>,
    ) -> Result<T, crate::LedgerError> {
        self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let r = f(self);
        let restore = self.conn.execute_batch("PRAGMA synchronous = FULL");
        let v = r?;
        restore?;
        Ok(v)
    }

    /// Payment commits are always fsynced: `synchronous=FULL`, whatever a
    /// relaxed write before left behind.
    fn ensure_durable(&self) -> Result<(), crate::LedgerError> {
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        Ok(())
    }

    fn note_commit(&mut self) {
        self.commits_since_checkpoint += 1;
    }

    /// Asks for a PASSIVE checkpoint when many commits went by without
    /// one (called after telemetry and outbox writes). It runs on the
    /// checkpoint connection's thread: nobody waits for it.
    fn checkpoint_if_due(&mut self) -> Result<(), crate::LedgerError> {
        if self.commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS {
            self.checkpointer.request();
            self.commits_since_checkpoint = 0;
        }
        Ok(())
    }

    /// The handle that checkpoints the WAL without this ledger's lock
    /// (the daemon's maintenance run ends with it).
    pub fn checkpoint_handle(&self) -> CheckpointHandle {
        self.checkpointer.handle().clone()
    }
}

fn pragma_sql(name: &str) -> Result<String, crate::LedgerError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(crate::LedgerError::BadValue {
            table: "pragma",
            column: "name",
            value: name.to_owned(),
        });
    }
    Ok(format!("PRAGMA {name}"))
}
