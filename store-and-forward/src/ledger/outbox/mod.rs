//! The transactional outbox: what the uplink sends, in priority order, and
//! what happened to it (delivered, retrying, quarantined).
//!
//! Delivery is at-least-once to the broker: a record stays pending until the
//! uplink reports the PUBACK of the message that carried it. Everything the
//! backend receives carries a key or sequence it deduplicates by.
//!
//! This file holds the record types, the kinds and classes, the retry
//! policy, enqueueing and the queue's depth; by concern:
//! - `drain.rs`: taking batches for the uplink and what became of them
//!   (delivered, failed and retried, unanswered and queued again).
//! - `quarantine.rs`: setting records aside, releasing them, and listing
//!   what is quarantined.

mod drain;
mod quarantine;

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Ledger;
use super::state::OutboxDepth;
use crate::error::LedgerError;
use crate::money::Money;
use crate::payment::{EntryMode, PaymentKey, PaymentState};
use crate::time::Timestamp;

pub(crate) use quarantine::quarantined_payments;

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
