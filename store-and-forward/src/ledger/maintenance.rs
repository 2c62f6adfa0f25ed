//! Housekeeping that keeps the file from growing until the cart stops
//! selling: delivered records past retention are purged, delivered
//! telemetry gives way first when telemetry (delivered or not) is over its
//! quota, settled payments past retention go, and the WAL is checkpointed.
//!
//! The ledger sits behind one lock that a checkout waits on, so the work is
//! cut into bounded steps ([`Ledger::maintain_step`]): the daemon releases
//! the lock between steps. Freed pages go to SQLite's free list and are
//! reused by later inserts, so a cart in a steady state keeps a steady file
//! size (auto_vacuum stays off: switching it on needs a full VACUUM).
//! Deleting the highest outbox rows never lets an id come again: the
//! schema's sequence mark keeps the highest id (see `schema.rs`).

use rusqlite::params;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::Ledger;
use super::outbox::OutboxClass;
use crate::error::LedgerError;
use crate::time::Timestamp;

/// What one bounded step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceStep {
    /// Delivered outbox records past retention deleted.
    pub purged_delivered: u64,
    /// Delivered telemetry deleted before retention because telemetry was
    /// over its quota (the backend has it already).
    pub purged_over_quota: u64,
    /// Undelivered telemetry dropped over the quota (counted in
    /// `telemetry_dropped`).
    pub dropped_undelivered: u64,
    /// Settled payments past retention deleted (with their log).
    pub purged_payments: u64,
    /// More work is left: call again (after letting checkouts in).
    pub more: bool,
}

impl MaintenanceStep {
    fn add(&mut self, o: &MaintenanceStep) {
        self.purged_delivered += o.purged_delivered;
        self.purged_over_quota += o.purged_over_quota;
        self.dropped_undelivered += o.dropped_undelivered;
        self.purged_payments += o.purged_payments;
    }
}

/// What a whole maintenance run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceReport {
    /// The sum of the steps (`more` is false).
    pub totals: MaintenanceStep,
    /// Steps taken.
    pub steps: u64,
    /// The WAL checkpoint at the end.
    pub checkpoint: WalCheckpoint,
}

impl MaintenanceReport {
    /// Records and payments deleted, all reasons together.
    pub fn purged(&self) -> u64 {
        let t = &self.totals;
        t.purged_delivered + t.purged_over_quota + t.purged_payments
    }
}

/// The result of a WAL checkpoint (`PRAGMA wal_checkpoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalCheckpoint {
    /// The WAL was truncated to zero bytes (a TRUNCATE checkpoint that
    /// completed).
    pub truncated: bool,
    /// Frames in the WAL before the checkpoint.
    pub wal_frames: i64,
    /// Frames copied back into the database.
    pub checkpointed_frames: i64,
}

/// Rows one step deletes at most: about a millisecond of work, so a
/// checkout waiting on the lock is not held up for long.
pub const STEP_ROWS: usize = 200;

/// Settled payments past retention: nothing of theirs is left in the outbox.
/// Same state list as the `payments_settled` index, so it is used.
const SETTLED: &str = "state IN ('online_approved', 'online_declined', 'offline_declined',
        'cancelled', 'failed', 'confirmed', 'declined_after_forward')
    AND updated_ms < ?1
    AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.payment_seq = payments.seq)";

impl Ledger {
    /// Runs maintenance to the end in one go, then a TRUNCATE checkpoint
    /// (at start, in tests and tools; the daemon runs the steps itself so
    /// checkouts are never held up).
    pub fn maintain(&mut self, now: Timestamp) -> Result<MaintenanceReport, LedgerError> {
        let mut report = MaintenanceReport::default();
        loop {
            let step = self.maintain_step(now, STEP_ROWS)?;
            report.totals.add(&step);
            report.steps += 1;
            if !step.more {
                break;
            }
        }
        report.checkpoint = self.checkpoint_wal(true)?;
        Ok(report)
    }

    /// One bounded step of maintenance: deletes at most about `max_rows`
    /// rows, in one relaxed commit (losing it in a power cut only leaves
    /// the rows for the next run).
    pub fn maintain_step(
        &mut self,
        now: Timestamp,
        max_rows: usize,
    ) -> Result<MaintenanceStep, LedgerError> {
        self.relaxed(|l| l.maintain_step_inner(now, max_rows.max(1)))
    }

    fn maintain_step_inner(
        &mut self,
        now: Timestamp,
        max_rows: usize,
    ) -> Result<MaintenanceStep, LedgerError> {
        let mut step = MaintenanceStep {
            dropped_undelivered: self.enforce_telemetry_quota(now)?,
            ..MaintenanceStep::default()
        };
        let cutoff = now.minus_secs(self.config.retention_secs).0;
        let tx = self.conn.transaction()?;
        let mut budget = max_rows as i64;
        let mut freed_delivered_telemetry = 0u64;

        // 1. Delivered records past retention, oldest first.
        {
            let mut del = tx.prepare_cached(
                "DELETE FROM outbox WHERE id IN (
                     SELECT id FROM outbox WHERE status = 1 AND done_ms < ?1
                     ORDER BY done_ms LIMIT ?2)
                 RETURNING class, size",
            )?;
            let mut rows = del.query(params![cutoff, budget])?;
            while let Some(r) = rows.next()? {
                step.purged_delivered += 1;
                if r.get::<_, i64>(0)? == OutboxClass::Telemetry as i64 {
                    freed_delivered_telemetry += r.get::<_, i64>(1)? as u64;
                }
            }
        }
        budget -= step.purged_delivered as i64;

        // 2. Telemetry over its quota, delivered first: the backend has it.
        let quota = self.config.telemetry_quota_bytes;
        let mut kept = self
            .delivered_telemetry_bytes
            .saturating_sub(freed_delivered_telemetry);
        if budget > 0 && self.telemetry_bytes + kept > quota {
            let mut excess = self.telemetry_bytes + kept - quota;
            let mut pick = tx.prepare_cached(
                "SELECT id, size FROM outbox WHERE status = 1 AND class = 2
                 ORDER BY done_ms LIMIT ?1",
            )?;
            let mut ids = Vec::new();
            let mut rows = pick.query([budget])?;
            while let Some(r) = rows.next()? {
                let size = r.get::<_, i64>(1)? as u64;
                ids.push(r.get::<_, i64>(0)?);
                freed_delivered_telemetry += size;
                kept = kept.saturating_sub(size);
                excess = excess.saturating_sub(size);
                if excess == 0 {
                    break;
                }
            }
            drop(rows);
            let mut del = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in &ids {
                del.execute([id])?;
            }
            step.purged_over_quota = ids.len() as u64;
            budget -= ids.len() as i64;
        }

        // 3. Settled payments past retention, with their log.
        if budget > 0 {
            let seqs: Vec<i64> = tx
                .prepare_cached(&format!(
                    "SELECT seq FROM payments WHERE {SETTLED} ORDER BY updated_ms LIMIT ?2"
                ))?
                .query_map(params![cutoff, budget / 4 + 1], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut log = tx.prepare_cached("DELETE FROM payment_log WHERE payment_seq = ?1")?;
            let mut pay = tx.prepare_cached("DELETE FROM payments WHERE seq = ?1")?;
            for seq in &seqs {
                log.execute([seq])?;
                pay.execute([seq])?;
            }
            step.purged_payments = seqs.len() as u64;
            budget -= 4 * seqs.len() as i64;
        }
        tx.commit()?;
        self.delivered_telemetry_bytes = self
            .delivered_telemetry_bytes
            .saturating_sub(freed_delivered_telemetry);
        self.note_commit();
        // Used up the budget: there may be more.
        step.more = budget <= 0;
        if step.purged_delivered + step.purged_over_quota + step.purged_payments > 0 {
            debug!(?step, "ledger maintenance step");
        }
        Ok(step)
    }

    /// Checkpoints the WAL now, on the checkpoint connection: PASSIVE, or
    /// TRUNCATE (the WAL file goes back to zero bytes; call it when no
    /// checkout is in progress). The daemon calls
    /// [`Ledger::checkpoint_handle`]'s instead, without the ledger's lock.
    pub fn checkpoint_wal(&mut self, truncate: bool) -> Result<WalCheckpoint, LedgerError> {
        self.commits_since_checkpoint = 0;
        self.checkpointer.handle().checkpoint(truncate)
    }

    /// Bytes of delivered telemetry still kept.
    pub fn delivered_telemetry_bytes(&self) -> u64 {
        self.delivered_telemetry_bytes
    }

    /// The ledger's size on disk: the database file plus its WAL, bytes.
    pub fn file_bytes(&self) -> u64 {
        let main = std::fs::metadata(&self.config.path).map_or(0, |m| m.len());
        let mut wal = self.config.path.as_os_str().to_owned();
        wal.push("-wal");
        main + std::fs::metadata(&wal).map_or(0, |m| m.len())
    }
}
