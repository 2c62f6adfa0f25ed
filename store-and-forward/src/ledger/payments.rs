//! The checkout path: the attempt's commit, the decision's commit, and
//! outcomes learned from the backend (online, forwarded, late or in doubt)
//! and reversals' results. Every state change goes through `transition`,
//! which asks the lifecycle table (`lifecycle.rs`).
//!
//! Two fsyncs per checkout: [`Ledger::record_card_read`] commits the attempt
//! with the card-read result; the decision ([`Ledger::decide_offline`] or
//! [`Ledger::apply_backend_outcome`]) commits the new state, its outbox
//! record and its telemetry event in one transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::Ledger;
use super::outbox::{self, KIND_PAYMENT_FORWARD, KIND_PAYMENT_REVERSAL, OutboxClass};
use super::state::{keys, read_meta, read_state_i64, write_meta};
use crate::error::LedgerError;
use crate::failpoint;
use crate::lifecycle::{IllegalTransition, PaymentEvent};
use crate::money::{Currency, Money};
use crate::payment::{BackendOutcome, CardRead, EntryMode, NewAttempt, PaymentKey, PaymentState};
use crate::policy::{self, Context, Exposure, LedgerIntegrity, OfflineDecision, StorageLow};
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
    /// Commits a new attempt with its card-read result (the checkout's first
    /// fsync). Must return before any authorization request leaves the cart.
    pub fn record_card_read(
        &mut self,
        attempt: &NewAttempt,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.record_attempt(attempt, None, now)
    }

    /// The attempt's commit, with the age check that cleared the sale.
    pub(super) fn record_attempt(
        &mut self,
        attempt: &NewAttempt,
        age_check: Option<&StaffApproval>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        if attempt.amount.minor <= 0 {
            return Err(LedgerError::InvalidAmount(attempt.amount.minor));
        }
        self.ensure_durable()?;
        let key_bytes = attempt.key.0.as_bytes();
        let sealed = self
            .sealer
            .seal(&seal_plaintext(&attempt.card), key_bytes.as_slice());
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let inserted = tx
            .prepare_cached(
                "INSERT INTO payments (key, created_ms, updated_ms, amount_minor, currency,
                 online_required, state, masked_pan, fingerprint, entry_mode, card_sealed,
                 age_check_badge, age_check_list_version)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![
                key_bytes.as_slice(),
                now.0,
                attempt.amount.minor,
                attempt.amount.currency.as_str(),
                attempt.online_required,
                PaymentState::CardRead.as_str(),
                attempt.card.masked_pan,
                attempt.card.fingerprint,
                attempt.card.entry_mode.as_str(),
                sealed,
                age_check.map(|a| a.badge.0.to_vec()),
                age_check.map(|a| a.list_version as i64),
            ])?;
        if inserted == 0 {
            return Err(LedgerError::DuplicatePayment(attempt.key));
        }
        let seq = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO payment_log (payment_seq, at_ms, from_state, to_state) VALUES (?1, ?2, NULL, ?3)",
        )?
        .execute(params![seq, now.0, PaymentState::CardRead.as_str()])?;
        failpoint::hit("attempt.before_commit");
        tx.commit()?;
        failpoint::hit("attempt.after_commit");
        self.note_commit();
        Ok(())
    }

    /// Gathers the policy's context inside the decision's transaction.
    fn policy_context(
        &self,
        tx: &Transaction<'_>,
        fingerprint: &[u8],
        now: Timestamp,
    ) -> Result<Context, LedgerError> {
        let known_good = read_state_i64(tx, keys::LAST_KNOWN_GOOD_MS)?.map(Timestamp);
        let last_contact = read_state_i64(tx, keys::LAST_BACKEND_CONTACT_MS)?.map(Timestamp);
        let window_start = now.minus_secs(self.limits.velocity_window_secs);
        let card_recent_offline: i64 = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM payments WHERE fingerprint = ?1 AND offline_approved_ms >= ?2",
            )?
            .query_row(params![fingerprint, window_start.0], |r| r.get(0))?;
        let card_denied = tx
            .prepare_cached("SELECT 1 FROM deny_list WHERE fingerprint = ?1")?
            .query_row([fingerprint], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(Context {
            now,
            clock: crate::time::clock_trust(now, known_good, self.limits.clock_tolerance_secs),
            last_backend_contact: last_contact,
            card_recent_offline: card_recent_offline as u32,
            card_denied,
            integrity: self.integrity.clone(),
            storage_low: self.storage_low(),
            exposure: exposure(tx)?,
        })
    }

    /// Free space is below the payment reserve (the policy refuses offline
    /// approval; telemetry is shed).
    pub(crate) fn storage_low(&self) -> Option<StorageLow> {
        let dir = self
            .config
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let free = free_bytes(dir)?;
        (free < self.config.payment_reserve_bytes).then_some(StorageLow {
            free_bytes: free,
            reserve_bytes: self.config.payment_reserve_bytes,
        })
    }

    /// Decides an attempt offline (link down, timeout, no answer) and commits
    /// the decision, its outbox record and its telemetry event together (the
    /// checkout's second fsync). An offline approval then increments the
    /// monotonic counter.
    pub fn decide_offline(
        &mut self,
        key: &PaymentKey,
        now: Timestamp,
    ) -> Result<OfflineDecision, LedgerError> {
        // A counter left behind by a failed increment is repaired first.
        if matches!(self.integrity, LedgerIntegrity::CounterMismatch { .. }) {
            self.check_binding(now)?;
        }
        self.ensure_durable()?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let row = load_row(&tx, key)?;
        // Both decisions leave the same states: refuse before the policy runs.
        row.state
            .on(PaymentEvent::OfflineApproved)
            .map_err(|e| refused(key, e))?;
        let ctx = self.policy_context(&tx, &row.fingerprint, now)?;
        let decision = policy::evaluate(&self.limits, row.amount, row.online_required, &ctx);
        let decision_json = serde_json::to_string(&decision).unwrap_or_default();
        let mut counter_target = None;
        let event = if decision.approved {
            PaymentEvent::OfflineApproved
        } else {
            PaymentEvent::OfflineDeclined
        };
        let to = transition(&tx, key, row.seq, row.state, event, now, None)?;
        if decision.approved {
            let expected: u64 = read_meta(&tx, keys::COUNTER_EXPECTED)?
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let target = expected + 1;
            write_meta(&tx, keys::COUNTER_EXPECTED, &target.to_string())?;
            counter_target = Some(target);
            tx.prepare_cached(
                "UPDATE payments SET decided_ms = ?1, offline_approved_ms = ?1, counter_value = ?2,
                     decision = ?3 WHERE seq = ?4",
            )?
            .execute(params![now.0, target as i64, decision_json, row.seq])?;
            outbox::insert(
                &tx,
                OutboxClass::Payment,
                KIND_PAYMENT_FORWARD,
                Some(row.seq),
                None,
                now,
            )?;
        } else {
            tx.prepare_cached("UPDATE payments SET decided_ms = ?1, decision = ?2 WHERE seq = ?3")?
                .execute(params![now.0, decision_json, row.seq])?;
        }
        let ev_bytes = enqueue_outcome_event(&tx, key, row.amount, to, row.age_check, now)?;
        failpoint::hit("decision.before_commit");
        tx.commit()?;
        failpoint::hit("decision.after_commit");
        self.telemetry_bytes += ev_bytes;
        self.note_commit();
        if let Some(target) = counter_target {
            failpoint::hit("decision.before_counter_increment");
            match self.counter.increment() {
                Ok(v) if v == target => {}
                Ok(v) => {
                    warn!(payment_key = %key, counter = v, expected = target, "counter out of step");
                    self.integrity = LedgerIntegrity::CounterMismatch {
                        detail: format!("counter at {v} after increment, ledger expects {target}"),
                    };
                }
                Err(e) => {
                    // The approval stands (it is committed); offline approval
                    // pauses until the counter is repaired.
                    warn!(payment_key = %key, cause = %e, "counter increment failed after an offline approval");
                    self.integrity = LedgerIntegrity::CounterMismatch {
                        detail: e.to_string(),
                    };
                }
            }
            failpoint::hit("decision.after_counter_increment");
        }
        if decision.approved {
            info!(payment_key = %key, amount = %row.amount, "approved offline");
        } else {
            info!(payment_key = %key, amount = %row.amount, reasons = ?decision.reasons, "declined offline");
        }
        Ok(decision)
    }

    /// Applies what the backend said about a payment: the online answer to
    /// a fresh attempt, the result of a forward, a late online answer after
    /// an offline approval, or the resolution of an in-doubt attempt.
    ///
    /// Idempotent: the same outcome twice changes nothing. An outcome that
    /// contradicts a settled state is refused and the recorded one stays.
    pub fn apply_backend_outcome(
        &mut self,
        key: &PaymentKey,
        outcome: &BackendOutcome,
        now: Timestamp,
    ) -> Result<Applied, LedgerError> {
        self.ensure_durable()?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let row = load_row(&tx, key)?;
        let (event, reference, reason) = match outcome {
            BackendOutcome::Approved { reference } => (
                PaymentEvent::BackendApproved,
                Some(reference.as_str()),
                None,
            ),
            BackendOutcome::Declined { reason } => {
                (PaymentEvent::BackendDeclined, None, Some(reason.as_str()))
            }
            BackendOutcome::Unknown => (
                PaymentEvent::BackendUnknown,
                None,
                Some("backend has no record"),
            ),
        };
        let to = row.state.on(event).map_err(|e| refused(key, e))?;
        if to == row.state {
            return Ok(Applied::Unchanged { state: row.state });
        }
        tx.prepare_cached(
            "UPDATE payments SET backend_reference = COALESCE(?1, backend_reference),
                 backend_reason = COALESCE(?2, backend_reason),
                 decided_ms = COALESCE(decided_ms, ?3) WHERE seq = ?4",
        )?
        .execute(params![reference, reason, now.0, row.seq])?;
        transition(&tx, key, row.seq, row.state, event, now, reason)?;
        let ev_bytes = enqueue_outcome_event(&tx, key, row.amount, to, row.age_check, now)?;
        failpoint::hit("decision.before_commit");
        tx.commit()?;
        failpoint::hit("decision.after_commit");
        self.telemetry_bytes += ev_bytes;
        self.note_commit();
        if to == PaymentState::DeclinedAfterForward {
            warn!(payment_key = %key, amount = %row.amount, "declined after forward: merchant loss");
        } else {
            info!(payment_key = %key, from = %row.state, to = %to, "backend outcome applied");
        }
        Ok(Applied::Changed {
            from: row.state,
            to,
        })
    }

    /// Applies the backend's answer to a reversal (`reversal_result`):
    /// `reversal_pending` becomes `reversed` whether the backend reversed
    /// it now, had reversed it before, or knew no payment to reverse
    /// (`result` is recorded as the reason). Idempotent: a second result
    /// changes nothing. A result for a payment that is not being reversed
    /// is a conflict; the recorded state stays.
    pub fn apply_reversal_result(
        &mut self,
        key: &PaymentKey,
        result: &str,
        now: Timestamp,
    ) -> Result<Applied, LedgerError> {
        self.ensure_durable()?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let row = load_row(&tx, key)?;
        let event = PaymentEvent::ReversalDone;
        let to = row.state.on(event).map_err(|e| refused(key, e))?;
        if to == row.state {
            return Ok(Applied::Unchanged { state: row.state });
        }
        tx.prepare_cached("UPDATE payments SET backend_reason = ?1 WHERE seq = ?2")?
            .execute(params![result, row.seq])?;
        transition(&tx, key, row.seq, row.state, event, now, Some(result))?;
        let ev_bytes = enqueue_outcome_event(&tx, key, row.amount, to, row.age_check, now)?;
        failpoint::hit("decision.before_commit");
        tx.commit()?;
        failpoint::hit("decision.after_commit");
        self.telemetry_bytes += ev_bytes;
        self.note_commit();
        info!(payment_key = %key, amount = %row.amount, result, "reversal answered: nothing stays charged");
        Ok(Applied::Changed {
            from: row.state,
            to,
        })
    }

    /// The shopper or the reader cancelled before a decision.
    pub fn cancel(
        &mut self,
        key: &PaymentKey,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.close_undecided(key, PaymentEvent::Cancelled, reason, now)
    }

    /// The attempt failed before a decision (reader fault).
    pub fn fail(
        &mut self,
        key: &PaymentKey,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.close_undecided(key, PaymentEvent::Failed, reason, now)
    }

    fn close_undecided(
        &mut self,
        key: &PaymentKey,
        event: PaymentEvent,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.ensure_durable()?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let row = load_row(&tx, key)?;
        let to = transition(&tx, key, row.seq, row.state, event, now, Some(reason))?;
        let ev_bytes = enqueue_outcome_event(&tx, key, row.amount, to, row.age_check, now)?;
        tx.commit()?;
        self.telemetry_bytes += ev_bytes;
        self.note_commit();
        Ok(())
    }

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

/// Bytes available to an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (u32 on some 32-bit ARM).
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
