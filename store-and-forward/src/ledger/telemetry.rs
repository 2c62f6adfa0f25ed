//! Telemetry in the outbox: group commits under a disk quota. Over quota the
//! oldest undelivered telemetry is dropped and counted; payments are never
//! touched. With free space below the payment reserve, new telemetry is shed.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Ledger;
use super::outbox::{self, KIND_TELEMETRY, OutboxClass};
use super::state::{keys, read_state_i64, write_state};
use crate::error::LedgerError;
use crate::telemetry::TelemetryEvent;
use crate::time::Timestamp;

/// What one group commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueReport {
    /// Events committed.
    pub written: usize,
    /// Events refused because free space is below the payment reserve.
    pub shed: usize,
    /// Older events dropped to stay under the quota.
    pub dropped_oldest: u64,
}

pub(crate) fn insert_event(
    tx: &Connection,
    ev: &TelemetryEvent,
    now: Timestamp,
) -> Result<u64, LedgerError> {
    let payload = serde_json::to_vec(ev).map_err(|e| LedgerError::BadValue {
        table: "outbox",
        column: "payload",
        value: e.to_string(),
    })?;
    outbox::insert(
        tx,
        OutboxClass::Telemetry,
        KIND_TELEMETRY,
        None,
        Some(&payload),
        now,
    )?;
    Ok(payload.len() as u64)
}

impl Ledger {
    /// Commits a group of telemetry events in one transaction (one fsync for
    /// the group), then enforces the quota.
    pub fn enqueue_telemetry(
        &mut self,
        events: &[TelemetryEvent],
        now: Timestamp,
    ) -> Result<EnqueueReport, LedgerError> {
        self.relaxed(|l| l.enqueue_telemetry_inner(events, now))
    }

    fn enqueue_telemetry_inner(
        &mut self,
        events: &[TelemetryEvent],
        now: Timestamp,
    ) -> Result<EnqueueReport, LedgerError> {
        let mut report = EnqueueReport::default();
        if events.is_empty() {
            return Ok(report);
        }
        if let Some(low) = self.storage_low().map(|l| l.free_bytes) {
            report.shed = events.len();
            let tx = self.conn.transaction()?;
            add_dropped(&tx, events.len() as u64, now)?;
            tx.commit()?;
            warn!(
                events = events.len(),
                free = low,
                "telemetry shed: free space below the payment reserve"
            );
            return Ok(report);
        }
        let tx = self.conn.transaction()?;
        let mut bytes = 0u64;
        for ev in events {
            bytes += insert_event(&tx, ev, now)?;
        }
        tx.commit()?;
        self.note_commit();
        self.telemetry_bytes += bytes;
        report.written = events.len();
        report.dropped_oldest = self.enforce_telemetry_quota(now)?;
        self.checkpoint_if_due()?;
        Ok(report)
    }

    /// Drops the oldest undelivered telemetry until under the quota.
    pub(super) fn enforce_telemetry_quota(&mut self, now: Timestamp) -> Result<u64, LedgerError> {
        let quota = self.config.telemetry_quota_bytes;
        if self.telemetry_bytes <= quota {
            return Ok(0);
        }
        let excess = self.telemetry_bytes - quota;
        let tx = self.conn.transaction()?;
        let (last_id, freed, n) = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, size FROM outbox WHERE class = 2 AND status = 0 ORDER BY id",
            )?;
            let mut rows = stmt.query([])?;
            let (mut last, mut freed, mut n) = (0i64, 0u64, 0u64);
            while let Some(r) = rows.next()? {
                last = r.get(0)?;
                freed += r.get::<_, i64>(1)? as u64;
                n += 1;
                if freed >= excess {
                    break;
                }
            }
            (last, freed, n)
        };
        tx.execute(
            "DELETE FROM outbox WHERE class = 2 AND status = 0 AND id <= ?1",
            params![last_id],
        )?;
        add_dropped(&tx, n, now)?;
        tx.commit()?;
        self.telemetry_bytes = self.telemetry_bytes.saturating_sub(freed);
        warn!(
            dropped = n,
            bytes = freed,
            quota,
            "telemetry over quota: oldest dropped"
        );
        Ok(n)
    }

    /// Bytes of undelivered telemetry.
    pub fn telemetry_bytes(&self) -> u64 {
        self.telemetry_bytes
    }
}

fn add_dropped(tx: &Connection, n: u64, now: Timestamp) -> Result<(), LedgerError> {
    let cur = read_state_i64(tx, keys::TELEMETRY_DROPPED)?.unwrap_or(0);
    write_state(
        tx,
        keys::TELEMETRY_DROPPED,
        &(cur + n as i64).to_string(),
        now,
    )
}
