//! Quarantine: records set aside with the broker's reason so they no
//! longer block the queue, an operator's release of a payment's records,
//! and the lists of what is quarantined (for the technician and the status
//! report).

use rusqlite::{Connection, OptionalExtension, params};

use super::OutboxClass;
use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::ledger::payments::key_from_blob;
use crate::payment::PaymentKey;
use crate::time::Timestamp;

impl Ledger {
    /// Sets records aside with the broker's reason; they no longer block the
    /// queue and show in the status report. Payments stay in the exposure.
    pub fn quarantine(
        &mut self,
        ids: &[i64],
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.relaxed(|l| l.quarantine_inner(ids, reason, now))
    }

    fn quarantine_inner(
        &mut self,
        ids: &[i64],
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        let mut released = 0u64;
        let mut alarms = 0u64;
        {
            let mut upd = tx.prepare_cached(
                "UPDATE outbox SET status = 2, done_ms = ?1, last_error = ?2 WHERE id = ?3 AND status = 0
                 RETURNING class, size, kind,
                     (SELECT key FROM payments p WHERE p.seq = outbox.payment_seq)",
            )?;
            for id in ids {
                let Some((class, size, kind, key)) = upd
                    .query_row(params![now.0, reason, id], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                        ))
                    })
                    .optional()?
                else {
                    continue;
                };
                if class == OutboxClass::Telemetry as i64 {
                    released += size as u64;
                }
                if class == OutboxClass::Payment as i64 {
                    // Never silent: the journal, the status report, and an
                    // alarm to the backend in the same commit.
                    let key = key.as_deref().map(key_text).unwrap_or_default();
                    tracing::error!(
                        payment_key = %key,
                        record = id,
                        %kind,
                        reason,
                        "payment record quarantined: not sent until released (cartctl release); its offline exposure stays counted"
                    );
                    let alarm = crate::telemetry::TelemetryEvent::Fault {
                        at: now,
                        device: "uplink".into(),
                        code: format!("payment_quarantined:{key}"),
                    };
                    alarms += crate::ledger::telemetry::insert_event(&tx, &alarm, now)?;
                }
            }
        }
        tx.commit()?;
        self.telemetry_bytes = self.telemetry_bytes.saturating_sub(released) + alarms;
        self.note_commit();
        tracing::warn!(records = ids.len(), reason, "outbox records quarantined");
        Ok(())
    }

    /// Queues a quarantined payment record again (an operator's release
    /// after the cause was fixed: a policy on the broker, a key). Returns
    /// how many records were released (0: nothing quarantined for it).
    pub fn release_quarantined(
        &mut self,
        key: &PaymentKey,
        now: Timestamp,
    ) -> Result<u64, LedgerError> {
        let n = self.conn.execute(
            "UPDATE outbox SET status = 0, attempts = 0, next_attempt_ms = 0, done_ms = NULL,
                 last_error = 'released; was: ' || COALESCE(last_error, '')
             WHERE status = 2 AND payment_seq = (SELECT seq FROM payments WHERE key = ?1)",
            [key.0.as_bytes().as_slice()],
        )? as u64;
        self.note_commit();
        if n > 0 {
            tracing::warn!(payment_key = %key, records = n, at = now.0, "quarantined payment released: queued again");
        }
        Ok(n)
    }

    /// Quarantined records' reasons, newest first (for the technician).
    pub fn quarantined(
        &self,
        limit: usize,
    ) -> Result<Vec<(i64, OutboxClass, String)>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, class, COALESCE(last_error, '') FROM outbox WHERE status = 2 ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, class, reason) = row?;
            out.push((id, OutboxClass::from_i64(class)?, reason));
        }
        Ok(out)
    }
}

/// A stored key as text (the key itself, or its bytes in hex when they do
/// not decode).
fn key_text(raw: &[u8]) -> String {
    match key_from_blob(raw) {
        Ok(k) => k.to_string(),
        Err(_) => raw.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Quarantined payment records, newest first.
pub(crate) fn quarantined_payments(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<crate::ledger::state::QuarantinedPayment>, LedgerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.key, o.kind, COALESCE(o.last_error, ''), o.done_ms, p.amount_minor, p.currency
         FROM outbox o JOIN payments p ON p.seq = o.payment_seq
         WHERE o.status = 2 AND o.class = 0 ORDER BY o.id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(crate::ledger::state::QuarantinedPayment {
            payment: key_text(&r.get::<_, Vec<u8>>(0)?),
            kind: r.get(1)?,
            reason: r.get(2)?,
            since: r.get::<_, Option<i64>>(3)?.map(Timestamp),
            amount_minor: r.get(4)?,
            currency: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
