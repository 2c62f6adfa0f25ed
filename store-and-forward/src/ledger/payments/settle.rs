//! Settling a payment from the backend's answers: the outcome of an online
//! request, a forward or an inquiry (including a late answer after an
//! offline approval), and the result of a reversal. Each commits the new
//! state and its telemetry event in one transaction.

use rusqlite::{Transaction, TransactionBehavior, params};
use tracing::{info, warn};

use super::{Applied, enqueue_outcome_event, load_row, refused, transition};
use crate::error::LedgerError;
use crate::failpoint;
use crate::ledger::Ledger;
use crate::lifecycle::PaymentEvent;
use crate::payment::{BackendOutcome, PaymentKey, PaymentState};
use crate::time::Timestamp;

impl Ledger {
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
}
