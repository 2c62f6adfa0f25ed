//! The checkout path: the attempt's commit, the decision's commit, and
//! outcomes learned from the backend (online, forwarded, late or in doubt)
//! and reversals' results. Every state change goes through `transition`,
//! which asks the lifecycle table (`lifecycle.rs`).
//!
//! Two fsyncs per checkout: [`Ledger::record_card_read`] commits the attempt
//! with the card-read result; the decision ([`Ledger::decide_offline`] or
//! [`Ledger::apply_backend_outcome`]) commits the new state, its outbox
//! record and its telemetry event in one transaction.
//!
//! This file holds the stored payment (its record, its reads), the
//! transition every state change goes through and what both paths share;
//! by concern:
//! - `checkout.rs`: the attempt's commit, the offline decision's commit
//!   and closing an attempt before a decision (cancelled, failed).
//! - `settle.rs`: the backend's answers (outcomes of online requests,
//!   forwards and inquiries) and reversals' results.

mod checkout;
mod settle;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tracing::warn;
use zeroize::Zeroizing;

use super::Ledger;
use super::outbox::{self, KIND_PAYMENT_REVERSAL, OutboxClass};
use crate::error::LedgerError;
use crate::lifecycle::{IllegalTransition, PaymentEvent};
use crate::money::{Currency, Money};
use crate::payment::{CardRead, EntryMode, PaymentKey, PaymentState};
use crate::policy::{Exposure, OfflineDecision};
use crate::staff::StaffApproval;
use crate::telemetry::TelemetryEvent;
use crate::time::Timestamp;

/// A payment as stored, without its sealed card data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// Idempotency key.
    pub key: PaymentKey,
    /// Amount.
    pub amount: Money,
    /// Lifecycle state.
    pub state: PaymentState,
    /// When the attempt was committed.
    pub created: Timestamp,
    /// Last change.
    pub updated: Timestamp,
    /// Masked PAN.
    pub masked_pan: String,
    /// Entry mode.
    pub entry_mode: EntryMode,
    /// Online only.
    pub online_required: bool,
    /// The offline policy's decision, when one was taken.
    pub decision: Option<OfflineDecision>,
    /// When it was approved offline.
    pub offline_approved: Option<Timestamp>,
    /// When the broker acknowledged its forward.
    pub forwarded: Option<Timestamp>,
    /// Counter value this offline approval brought the ledger to.
    pub counter_value: Option<u64>,
    /// The backend's reference for an approval.
    pub backend_reference: Option<String>,
    /// The backend's reason for a decline.
    pub backend_reason: Option<String>,
}

/// What applying a backend outcome did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Applied {
    /// The state changed.
    Changed {
        /// Before.
        from: PaymentState,
        /// After.
        to: PaymentState,
    },
    /// Nothing to change: a replay, or an answer that settles nothing yet.
    Unchanged {
        /// The state, as it stays.
        state: PaymentState,
    },
}

pub(crate) fn key_from_blob(raw: &[u8]) -> Result<PaymentKey, LedgerError> {
    uuid::Uuid::from_slice(raw)
        .map(PaymentKey)
        .map_err(|_| LedgerError::BadValue {
            table: "payments",
            column: "key",
            value: crate::payment::hex_prefix(raw),
        })
}

fn parse_state(s: &str) -> Result<PaymentState, LedgerError> {
    PaymentState::parse(s).ok_or_else(|| LedgerError::BadValue {
        table: "payments",
        column: "state",
        value: s.to_owned(),
    })
}

fn seal_plaintext(card: &CardRead) -> Zeroizing<Vec<u8>> {
    let mut p = Zeroizing::new(Vec::with_capacity(
        4 + card.emv_data.len() + card.encrypted_blob.len(),
    ));
    p.extend_from_slice(&(card.emv_data.len() as u32).to_be_bytes());
    p.extend_from_slice(&card.emv_data);
    p.extend_from_slice(&card.encrypted_blob);
    p
}

/// Splits unsealed card data into (EMV data, encrypted blob).
pub(crate) fn split_plaintext(p: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let len = u32::from_be_bytes(p.get(..4)?.try_into().ok()?) as usize;
    let emv = p.get(4..4 + len)?.to_vec();
    let blob = p.get(4 + len..)?.to_vec();
    Some((emv, blob))
}

/// The ledger's error for an event the table refuses: a backend answer
/// that contradicts the recorded state is a conflict (reported, the
/// recorded state stays); anything else is an illegal transition.
pub(crate) fn refused(key: &PaymentKey, e: IllegalTransition) -> LedgerError {
    if e.event.is_from_backend() {
        warn!(payment_key = %key, state = %e.from, event = %e.event, "backend outcome conflicts with the ledger");
        LedgerError::ConflictingOutcome {
            key: *key,
            state: e.from,
        }
    } else {
        LedgerError::IllegalTransition {
            key: *key,
            from: e.from,
            event: e.event,
        }
    }
}

/// Applies `event` to the payment at row `seq`, in state `from`, through
/// the transition table ([`PaymentState::on`]): every state change of the
/// ledger goes through here. Returns the new state; the same state back is
/// a replay and nothing is written.
///
/// A backend answer that settles the payment makes whatever it still had
/// queued moot (an inquiry, a forward, a reversal). Entering
/// `reversal_pending` queues the payment's reversal in the same
/// transaction: the table has one way in, so it is queued once.
pub(crate) fn transition(
    tx: &Connection,
    key: &PaymentKey,
    seq: i64,
    from: PaymentState,
    event: PaymentEvent,
    now: Timestamp,
    detail: Option<&str>,
) -> Result<PaymentState, LedgerError> {
    let to = from.on(event).map_err(|e| refused(key, e))?;
    if to == from {
        return Ok(to);
    }
    write_state(tx, seq, from, to, now, detail)?;
    if event.is_from_backend() {
        outbox::supersede_for_payment(tx, seq, now)?;
    }
    if to == PaymentState::ReversalPending {
        outbox::insert(
            tx,
            OutboxClass::Payment,
            KIND_PAYMENT_REVERSAL,
            Some(seq),
            None,
            now,
        )?;
        warn!(payment_key = %key, %from, "approved by the backend but never shown approved: reversal queued");
    }
    Ok(to)
}

/// Writes a change the table allowed, with its log line. The `WHERE state`
/// guard makes a stale view fail loudly.
fn write_state(
    tx: &Connection,
    seq: i64,
    from: PaymentState,
    to: PaymentState,
    now: Timestamp,
    detail: Option<&str>,
) -> Result<(), LedgerError> {
    let n = tx.execute(
        "UPDATE payments SET state = ?1, updated_ms = ?2 WHERE seq = ?3 AND state = ?4",
        params![to.as_str(), now.0, seq, from.as_str()],
    )?;
    if n != 1 {
        return Err(LedgerError::BadValue {
            table: "payments",
            column: "state",
            value: format!("row {seq} not in state {from}"),
        });
    }
    tx.execute(
        "INSERT INTO payment_log (payment_seq, at_ms, from_state, to_state, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![seq, now.0, from.as_str(), to.as_str(), detail],
    )?;
    Ok(())
}

/// Outstanding offline exposure.
pub(crate) fn exposure(conn: &Connection) -> Result<Exposure, LedgerError> {
    let mut e = Exposure::default();
    let mut stmt = conn.prepare_cached(
        "SELECT currency, SUM(amount_minor), COUNT(*) FROM payments
         WHERE state IN ('offline_approved', 'forwarded') GROUP BY currency",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let code: String = r.get(0)?;
        let cur = Currency::new(&code).map_err(|_| LedgerError::BadValue {
            table: "payments",
            column: "currency",
            value: code.clone(),
        })?;
        e.amount.insert(cur, r.get(1)?);
        e.count += r.get::<_, i64>(2)? as u32;
    }
    e.oldest_unforwarded = conn
        .prepare_cached(
            "SELECT MIN(offline_approved_ms) FROM payments WHERE state = 'offline_approved'",
        )?
        .query_row([], |r| r.get::<_, Option<i64>>(0))?
        .map(Timestamp);
    Ok(e)
}

struct Row {
    seq: i64,
    state: PaymentState,
    amount: Money,
    fingerprint: Vec<u8>,
    online_required: bool,
    /// The age check that cleared the sale (telemetry carries it).
    age_check: Option<StaffApproval>,
}

fn load_row(tx: &Connection, key: &PaymentKey) -> Result<Row, LedgerError> {
    let row = tx
        .prepare_cached(
            "SELECT seq, state, amount_minor, currency, fingerprint, online_required,
             age_check_badge, age_check_list_version
             FROM payments WHERE key = ?1",
        )?
        .query_row([key.0.as_bytes().as_slice()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, Option<Vec<u8>>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .optional()?
        .ok_or(LedgerError::UnknownPayment(*key))?;
    let currency = Currency::new(&row.3).map_err(|_| LedgerError::BadValue {
        table: "payments",
        column: "currency",
        value: row.3.clone(),
    })?;
    Ok(Row {
        seq: row.0,
        state: parse_state(&row.1)?,
        amount: Money::new(row.2, currency),
        fingerprint: row.4,
        online_required: row.5,
        age_check: super::staff::approval_from_columns(row.6, row.7)?,
    })
}

fn enqueue_outcome_event(
    tx: &Connection,
    key: &PaymentKey,
    amount: Money,
    state: PaymentState,
    age_check: Option<StaffApproval>,
    now: Timestamp,
) -> Result<u64, LedgerError> {
    let ev = TelemetryEvent::PaymentOutcome {
        at: now,
        payment: *key,
        state,
        amount_minor: amount.minor,
        currency: amount.currency,
        age_check,
    };
    super::telemetry::insert_event(tx, &ev, now)
}

impl Ledger {
    /// One payment by key.
    pub fn payment(&self, key: &PaymentKey) -> Result<Option<PaymentRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_RECORD} WHERE key = ?1"))?;
        let mut rows = stmt.query([key.0.as_bytes().as_slice()])?;
        match rows.next()? {
            Some(r) => Ok(Some(record_from_row(r)?)),
            None => Ok(None),
        }
    }

    /// Every payment, oldest first (for reports and tests). A payment in a
    /// state only newer firmware knows (after a rollback) is reported in
    /// the journal and left out, untouched (the status report counts it
    /// under its stored state name).
    pub fn payments(&self) -> Result<Vec<PaymentRecord>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT_RECORD} ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let state: String = r.get(3)?;
            if PaymentState::parse(&state).is_none() {
                let key = key_from_blob(&r.get::<_, Vec<u8>>(0)?)
                    .map(|k| k.to_string())
                    .unwrap_or_default();
                warn!(payment_key = %key, %state, "payment in a state of newer firmware: left alone");
                continue;
            }
            out.push(record_from_row(r)?);
        }
        Ok(out)
    }
}

const SELECT_RECORD: &str = "SELECT key, amount_minor, currency, state, created_ms, updated_ms,
    masked_pan, entry_mode, online_required, decision, offline_approved_ms, forwarded_ms,
    counter_value, backend_reference, backend_reason FROM payments";

fn record_from_row(r: &rusqlite::Row<'_>) -> Result<PaymentRecord, LedgerError> {
    let code: String = r.get(2)?;
    let currency = Currency::new(&code).map_err(|_| LedgerError::BadValue {
        table: "payments",
        column: "currency",
        value: code.clone(),
    })?;
    let mode: String = r.get(7)?;
    let decision: Option<String> = r.get(9)?;
    Ok(PaymentRecord {
        key: key_from_blob(&r.get::<_, Vec<u8>>(0)?)?,
        amount: Money::new(r.get(1)?, currency),
        state: parse_state(&r.get::<_, String>(3)?)?,
        created: Timestamp(r.get(4)?),
        updated: Timestamp(r.get(5)?),
        masked_pan: r.get(6)?,
        entry_mode: EntryMode::parse(&mode).ok_or(LedgerError::BadValue {
            table: "payments",
            column: "entry_mode",
            value: mode.clone(),
        })?,
        online_required: r.get(8)?,
        decision: decision.and_then(|d| serde_json::from_str(&d).ok()),
        offline_approved: r.get::<_, Option<i64>>(10)?.map(Timestamp),
        forwarded: r.get::<_, Option<i64>>(11)?.map(Timestamp),
        counter_value: r.get::<_, Option<i64>>(12)?.map(|v| v as u64),
        backend_reference: r.get(13)?,
        backend_reason: r.get(14)?,
    })
}
