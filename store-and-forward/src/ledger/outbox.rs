//! The transactional outbox: what the uplink sends, in priority order, and
//! what happened to it (delivered, retrying, quarantined).
//!
//! Delivery is at-least-once to the broker: a record stays pending until the
//! uplink reports the PUBACK of the message that carried it. Everything the
//! backend receives carries a key or sequence it deduplicates by.

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Ledger;
use super::payments::{key_from_blob, split_plaintext};
use super::state::OutboxDepth;
use crate::error::LedgerError;
use crate::lifecycle::PaymentEvent;
use crate::money::{Currency, Money};
use crate::payment::{EntryMode, PaymentKey, PaymentState};
use crate::time::Timestamp;

/// Kind of a payment forward (an offline approval to authorize).
pub const KIND_PAYMENT_FORWARD: &str = "payment_forward";
/// Kind of an in-doubt inquiry (ask the backend what it knows of a key).
pub const KIND_PAYMENT_INQUIRY: &str = "payment_inquiry";
/// Kind of a reversal (give back a payment approved by the backend but
/// never shown approved to the shopper).
pub const KIND_PAYMENT_REVERSAL: &str = "payment_reversal";
/// Kind of a telemetry event.
pub const KIND_TELEMETRY: &str = "telemetry";

/// Priority classes, drained in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxClass {
    /// Payment forwards, inquiries and reversals: never dropped.
    Payment = 0,
    /// Acknowledgements and cart status.
    Control = 1,
    /// Telemetry: shed oldest first over the disk quota.
    Telemetry = 2,
}

impl OutboxClass {
    /// All classes in drain order.
    pub const ALL: [OutboxClass; 3] = [
        OutboxClass::Payment,
        OutboxClass::Control,
        OutboxClass::Telemetry,
    ];

    fn from_i64(v: i64) -> Result<Self, LedgerError> {
        match v {
            0 => Ok(OutboxClass::Payment),
            1 => Ok(OutboxClass::Control),
            2 => Ok(OutboxClass::Telemetry),
            _ => Err(LedgerError::BadValue {
                table: "outbox",
                column: "class",
                value: v.to_string(),
            }),
        }
    }

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxClass::Payment => "payment",
            OutboxClass::Control => "control",
            OutboxClass::Telemetry => "telemetry",
        }
    }
}

/// A payment to forward, to ask about or to reverse, with its card data
/// unsealed for the wire. Zeroized on drop.
#[derive(Debug, Clone)]
pub struct PaymentForward {
    /// Idempotency key.
    pub key: PaymentKey,
    /// Amount.
    pub amount: Money,
    /// State when taken.
    pub state: PaymentState,
    /// Masked PAN.
    pub masked_pan: String,
    /// Card fingerprint.
    pub fingerprint: Vec<u8>,
    /// Entry mode.
    pub entry_mode: EntryMode,
    /// EMV data for the processor.
    pub emv_data: Zeroizing<Vec<u8>>,
    /// The reader's encrypted card data.
    pub encrypted_blob: Vec<u8>,
    /// When the attempt was committed.
    pub created: Timestamp,
    /// When it was approved offline.
    pub offline_approved: Option<Timestamp>,
    /// The counter value of that approval.
    pub counter_value: Option<u64>,
}

/// What a record carries.
#[derive(Debug, Clone)]
pub enum OutboxBody {
    /// A payment forward, inquiry or reversal, built from the payments table.
    Payment(Box<PaymentForward>),
    /// Opaque bytes (telemetry event, ack, status) as enqueued.
    Bytes(Vec<u8>),
    /// A payment record this cart cannot read (its card data does not
    /// unseal, a column does not decode): the uplink quarantines it alone
    /// and the rest of the queue keeps flowing.
    Unreadable(String),
    /// A payment record in a state newer firmware wrote (a rollback): kept
    /// as it is and skipped, never quarantined.
    Unknown(String),
}

/// One outbox record.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    /// Outbox id: increasing, the uplink's cursor.
    pub id: i64,
    /// Priority class.
    pub class: OutboxClass,
    /// Kind (`payment_forward`, `telemetry`, ...).
    pub kind: String,
    /// When it was enqueued.
    pub created: Timestamp,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// The content.
    pub body: OutboxBody,
}

/// Retry backoff: exponential with full jitter, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// First delay ceiling, ms.
    pub base_ms: u64,
    /// Largest delay ceiling, ms.
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 1_000,
            max_ms: 5 * 60_000,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`: uniform in `[0, min(max, base * 2^attempts)]`.
    pub fn delay_ms(&self, attempts: u32, rng: &mut impl Rng) -> u64 {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << attempts.min(30))
            .min(self.max_ms);
        rng.random_range(0..=ceiling)
    }
}

pub(crate) fn insert(
    tx: &Connection,
    class: OutboxClass,
    kind: &str,
    payment_seq: Option<i64>,
    payload: Option<&[u8]>,
    now: Timestamp,
) -> Result<i64, LedgerError> {
    let size = payload.map_or(0, |p| p.len()) as i64;
    tx.prepare_cached(
        "INSERT INTO outbox (class, kind, payment_seq, payload, size, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        class as i64,
        kind,
        payment_seq,
        payload,
        size,
        now.0
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Marks pending records of a payment delivered: its outcome is known.
pub(crate) fn supersede_for_payment(
    tx: &Connection,
    seq: i64,
    now: Timestamp,
) -> Result<(), LedgerError> {
    tx.prepare_cached(
        "UPDATE outbox SET status = 1, done_ms = ?1, last_error = 'superseded'
         WHERE payment_seq = ?2 AND status = 0",
    )?
    .execute(params![now.0, seq])?;
    Ok(())
}

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
    /// Enqueues an opaque control message (ack, cart status). One commit.
    pub fn enqueue(
        &mut self,
        class: OutboxClass,
        kind: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<i64, LedgerError> {
        self.relaxed(|l| l.enqueue_inner(class, kind, payload, now))
    }

    fn enqueue_inner(
        &mut self,
        class: OutboxClass,
        kind: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<i64, LedgerError> {
        let id = insert(&self.conn, class, kind, None, Some(payload), now)?;
        self.note_commit();
        if class == OutboxClass::Telemetry {
            self.telemetry_bytes += payload.len() as u64;
        }
        Ok(id)
    }

    /// Queues a record that supersedes every pending record of the same
    /// `class` and `kind` (the cart's status: only the newest matters), in
    /// one transaction. Returns the new id and how many were dropped.
    pub fn enqueue_replacing(
        &mut self,
        class: OutboxClass,
        kind: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<(i64, usize), LedgerError> {
        self.relaxed(|l| {
            let tx = l.conn.unchecked_transaction()?;
            let dropped = tx.execute(
                "DELETE FROM outbox WHERE class = ?1 AND kind = ?2 AND status = 0
                 AND payment_seq IS NULL",
                rusqlite::params![class as i64, kind],
            )?;
            let id = insert(&tx, class, kind, None, Some(payload), now)?;
            tx.commit()?;
            l.note_commit();
            Ok((id, dropped))
        })
    }

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
                let to = super::payments::transition(
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
                    alarms += super::telemetry::insert_event(&tx, &alarm, now)?;
                }
            }
        }
        tx.commit()?;
        self.telemetry_bytes = self.telemetry_bytes.saturating_sub(released) + alarms;
        self.note_commit();
        tracing::warn!(records = ids.len(), reason, "outbox records quarantined");
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

    /// Depth of each class. Cheap enough for a status line with a large
    /// backlog: counts come from the pending index, the oldest record is
    /// the lowest id, telemetry bytes are kept in memory.
    pub fn outbox_depth(&self) -> Result<Vec<OutboxDepth>, LedgerError> {
        outbox_depth(&self.conn, Some(self.telemetry_bytes))
    }

    /// Whether any record of `class` is pending (an index lookup).
    pub fn has_pending(&self, class: OutboxClass) -> Result<bool, LedgerError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM outbox WHERE status = 0 AND class = ?1 LIMIT 1")?
            .query_row([class as i64], |_| Ok(()))
            .optional()?
            .is_some())
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
) -> Result<Vec<super::state::QuarantinedPayment>, LedgerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.key, o.kind, COALESCE(o.last_error, ''), o.done_ms, p.amount_minor, p.currency
         FROM outbox o JOIN payments p ON p.seq = o.payment_seq
         WHERE o.status = 2 AND o.class = 0 ORDER BY o.id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(super::state::QuarantinedPayment {
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

/// Depth of each class (see [`Ledger::outbox_depth`]); telemetry bytes are
/// summed when not given.
pub(crate) fn outbox_depth(
    conn: &Connection,
    telemetry_bytes: Option<u64>,
) -> Result<Vec<OutboxDepth>, LedgerError> {
    let mut out = Vec::new();
    for class in OutboxClass::ALL {
        let pending: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 0 AND class = ?1")?
            .query_row([class as i64], |r| r.get(0))?;
        let oldest: Option<i64> = conn
            .prepare_cached(
                "SELECT created_ms FROM outbox WHERE status = 0 AND class = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([class as i64], |r| r.get(0))
            .optional()?;
        let bytes = if let (OutboxClass::Telemetry, Some(b)) = (class, telemetry_bytes) {
            b as i64
        } else {
            conn.prepare_cached(
                "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE status = 0 AND class = ?1",
            )?
            .query_row([class as i64], |r| r.get(0))?
        };
        let quarantined: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 2 AND class = ?1")?
            .query_row([class as i64], |r| r.get(0))?;
        out.push(OutboxDepth {
            class: class.as_str().to_owned(),
            pending: pending as u64,
            pending_bytes: bytes as u64,
            oldest_pending: oldest.map(Timestamp),
            quarantined: quarantined as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy {
            base_ms: 100,
            max_ms: 1_000,
        };
        let mut rng = rand::rng();
        for attempts in 0..40 {
            let d = p.delay_ms(attempts, &mut rng);
            assert!(d <= 1_000);
            assert!(d <= 100 * (1u64 << attempts.min(30)));
        }
    }
}
