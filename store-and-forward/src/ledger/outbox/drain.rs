//! Draining the outbox: taking batches for the uplink, and what became of
//! them (delivered, failed and retried with backoff, or acknowledged by the
//! broker but never answered by the backend and queued again).

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::{
    KIND_PAYMENT_FORWARD, KIND_PAYMENT_INQUIRY, KIND_PAYMENT_REVERSAL, OutboxBody, OutboxClass,
    OutboxRecord, PaymentForward, RetryPolicy, insert,
};
use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::ledger::payments::{key_from_blob, split_plaintext};
use crate::lifecycle::PaymentEvent;
use crate::money::{Currency, Money};
use crate::payment::{EntryMode, PaymentState};
use crate::time::Timestamp;

/// Runs of consecutive values in a sorted, deduplicated list.
fn runs(sorted: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &id in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => out.push((id, id)),
        }
    }
    out
}

impl Ledger {
    /// Takes up to `max_records` pending records of `class` with id above
    /// `after_id` that are due at `now`, stopping before `max_bytes` of
    /// payload would be exceeded (at least one record is returned). Records
    /// stay pending until [`Ledger::mark_delivered`].
    pub fn take_batch(
        &self,
        class: OutboxClass,
        after_id: i64,
        max_records: usize,
        max_bytes: usize,
        now: Timestamp,
    ) -> Result<Vec<OutboxRecord>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.id, o.kind, o.created_ms, o.attempts, o.payload, o.size,
                    p.key, p.amount_minor, p.currency, p.state, p.masked_pan, p.fingerprint,
                    p.entry_mode, p.card_sealed, p.created_ms, p.offline_approved_ms, p.counter_value
             FROM outbox o LEFT JOIN payments p ON p.seq = o.payment_seq
             WHERE o.status = 0 AND o.class = ?1 AND o.id > ?2 AND o.next_attempt_ms <= ?3
             ORDER BY o.id LIMIT ?4",
        )?;
        let mut rows = stmt.query(params![class as i64, after_id, now.0, max_records as i64])?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.next()? {
            let size = r.get::<_, i64>(5)? as usize;
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            let payment_key: Option<Vec<u8>> = r.get(6)?;
            let state: Option<String> = r.get(9)?;
            let body = match (payment_key, state) {
                (Some(_), Some(s)) if PaymentState::parse(&s).is_none() => {
                    OutboxBody::Unknown(format!("payment state {s:?}"))
                }
                (Some(raw), _) => match self.forward_from_row(r, &raw) {
                    Ok(f) => OutboxBody::Payment(Box::new(f)),
                    Err(e @ (LedgerError::Unseal(_) | LedgerError::BadValue { .. })) => {
                        OutboxBody::Unreadable(e.to_string())
                    }
                    Err(e) => return Err(e),
                },
                (None, _) => OutboxBody::Bytes(r.get::<_, Option<Vec<u8>>>(4)?.unwrap_or_default()),
            };
            out.push(OutboxRecord {
                id: r.get(0)?,
                class,
                kind: r.get(1)?,
                created: Timestamp(r.get(2)?),
                attempts: r.get::<_, i64>(3)? as u32,
                body,
            });
        }
        Ok(out)
    }

    fn forward_from_row(
        &self,
        r: &rusqlite::Row<'_>,
        raw_key: &[u8],
    ) -> Result<PaymentForward, LedgerError> {
        let key = key_from_blob(raw_key)?;
        let code: String = r.get(8)?;
        let currency = Currency::new(&code).map_err(|_| LedgerError::BadValue {
            table: "payments",
            column: "currency",
            value: code.clone(),
        })?;
        let state: String = r.get(9)?;
        let mode: String = r.get(12)?;
        let sealed: Vec<u8> = r.get(13)?;
        let plain = self
            .sealer
            .open(&sealed, raw_key)
            .map_err(|_| LedgerError::Unseal(key))?;
        let (emv, blob) = split_plaintext(&plain).ok_or(LedgerError::Unseal(key))?;
        Ok(PaymentForward {
            key,
            amount: Money::new(r.get(7)?, currency),
            state: PaymentState::parse(&state).ok_or(LedgerError::BadValue {
                table: "payments",
                column: "state",
                value: state.clone(),
            })?,
            masked_pan: r.get(10)?,
            fingerprint: r.get(11)?,
            entry_mode: EntryMode::parse(&mode).ok_or(LedgerError::BadValue {
                table: "payments",
                column: "entry_mode",
                value: mode.clone(),
            })?,
            emv_data: Zeroizing::new(emv),
            encrypted_blob: blob,
            created: Timestamp(r.get(14)?),
            offline_approved: r.get::<_, Option<i64>>(15)?.map(Timestamp),
            counter_value: r.get::<_, Option<i64>>(16)?.map(|v| v as u64),
        })
    }

    /// Marks records delivered (the PUBACK of the message that carried them
    /// arrived), in one transaction. A delivered payment forward moves its
    /// payment to `forwarded`. Returns how many records changed (records
    /// already delivered are left alone: acks may repeat).
    pub fn mark_delivered(&mut self, ids: &[i64], now: Timestamp) -> Result<u64, LedgerError> {
        self.relaxed(|l| l.mark_delivered_inner(ids, now))
    }

    fn mark_delivered_inner(&mut self, ids: &[i64], now: Timestamp) -> Result<u64, LedgerError> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let tx = self.conn.transaction()?;
        let mut changed = 0u64;
        let mut delivered_telemetry = 0u64;
        {
            // One statement per run of consecutive ids: every id of a run
            // is in `ids`, so the range is exact.
            let mut upd = tx.prepare_cached(
                "UPDATE outbox SET status = 1, done_ms = ?1
                 WHERE id BETWEEN ?2 AND ?3 AND status = 0
                 RETURNING class, kind, payment_seq, size",
            )?;
            let mut forwarded = Vec::new();
            for (first, last) in runs(&sorted) {
                let mut rows = upd.query(params![now.0, first, last])?;
                while let Some(r) = rows.next()? {
                    changed += 1;
                    let class: i64 = r.get(0)?;
                    if class == OutboxClass::Telemetry as i64 {
                        delivered_telemetry += r.get::<_, i64>(3)? as u64;
                    }
                    let kind: String = r.get(1)?;
                    if kind == KIND_PAYMENT_FORWARD
                        && let Some(seq) = r.get::<_, Option<i64>>(2)?
                    {
                        forwarded.push(seq);
                    }
                }
            }
            let mut get = tx.prepare_cached("SELECT key, state FROM payments WHERE seq = ?1")?;
            let mut stamp =
                tx.prepare_cached("UPDATE payments SET forwarded_ms = ?1 WHERE seq = ?2")?;
            for seq in forwarded {
                let Some((raw, state)) = get
                    .query_row([seq], |r| {
                        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()?
                else {
                    continue;
                };
                // A state of newer firmware is left alone; a payment the
                // backend answered before the PUBACK came has moved on (the
                // table has no `forwarded` for it): the delivery changes
                // nothing.
                let Some(from) = PaymentState::parse(&state) else {
                    continue;
                };
                if from.on(PaymentEvent::Forwarded).is_err() {
                    continue;
                }
                let key = key_from_blob(&raw)?;
                let to = crate::ledger::payments::transition(
                    &tx,
                    &key,
                    seq,
                    from,
                    PaymentEvent::Forwarded,
                    now,
                    None,
                )?;
                if to != from {
                    stamp.execute(params![now.0, seq])?;
                }
            }
        }
        tx.commit()?;
        self.telemetry_bytes = self.telemetry_bytes.saturating_sub(delivered_telemetry);
        self.delivered_telemetry_bytes += delivered_telemetry;
        self.note_commit();
        self.checkpoint_if_due()?;
        Ok(changed)
    }

    /// Records a failed delivery: each record's retry is pushed back by the
    /// policy's backoff with full jitter.
    pub fn mark_failed(
        &mut self,
        ids: &[i64],
        error: &str,
        retry: &RetryPolicy,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.relaxed(|l| l.mark_failed_inner(ids, error, retry, now))
    }

    fn mark_failed_inner(
        &mut self,
        ids: &[i64],
        error: &str,
        retry: &RetryPolicy,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        {
            let mut get =
                tx.prepare_cached("SELECT attempts FROM outbox WHERE id = ?1 AND status = 0")?;
            let mut upd = tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?1, last_error = ?2 WHERE id = ?3",
            )?;
            let mut rng = rand::rng();
            for id in ids {
                let Ok(attempts) = get.query_row([id], |r| r.get::<_, i64>(0)) else {
                    continue;
                };
                let delay = retry.delay_ms(attempts as u32, &mut rng);
                upd.execute(params![now.0 + delay as i64, error, id])?;
            }
        }
        tx.commit()?;
        self.note_commit();
        Ok(())
    }

    /// Queues again the forwards, inquiries and reversals that the broker acknowledged
    /// but the backend never answered within `older_than_secs` (a PUBACK
    /// only says the broker has it). The backend deduplicates by key, so a
    /// repeat never charges twice. Returns how many were queued.
    pub fn requeue_unanswered(
        &mut self,
        older_than_secs: u64,
        now: Timestamp,
    ) -> Result<u64, LedgerError> {
        self.relaxed(|l| l.requeue_unanswered_inner(older_than_secs, now))
    }

    fn requeue_unanswered_inner(
        &mut self,
        older_than_secs: u64,
        now: Timestamp,
    ) -> Result<u64, LedgerError> {
        let cutoff = now.minus_secs(older_than_secs).0;
        let tx = self.conn.transaction()?;
        let rows: Vec<(i64, String)> = tx
            .prepare_cached(
                "SELECT p.seq, p.state FROM payments p
                 WHERE p.state IN ('forwarded', 'in_doubt', 'reversal_pending') AND p.updated_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.payment_seq = p.seq AND o.status = 0)",
            )?
            .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (seq, state) in &rows {
            let kind = match state.as_str() {
                "forwarded" => KIND_PAYMENT_FORWARD,
                "reversal_pending" => KIND_PAYMENT_REVERSAL,
                _ => KIND_PAYMENT_INQUIRY,
            };
            insert(&tx, OutboxClass::Payment, kind, Some(*seq), None, now)?;
            tx.prepare_cached("UPDATE payments SET updated_ms = ?1 WHERE seq = ?2")?
                .execute(params![now.0, seq])?;
        }
        tx.commit()?;
        self.note_commit();
        if !rows.is_empty() {
            tracing::info!(
                payments = rows.len(),
                "unanswered forwards and inquiries queued again"
            );
        }
        Ok(rows.len() as u64)
    }
}
