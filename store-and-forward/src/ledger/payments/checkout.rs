//! The checkout path on the cart's side: the attempt's commit with its
//! card-read result (the first fsync), the offline decision's commit (the
//! second: the new state, its outbox record and its telemetry event in one
//! transaction, then the counter), and closing an attempt before a
//! decision (cancelled, failed).

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use tracing::{info, warn};

use super::{enqueue_outcome_event, exposure, load_row, refused, seal_plaintext, transition};
use crate::error::LedgerError;
use crate::failpoint;
use crate::ledger::Ledger;
use crate::ledger::outbox::{self, KIND_PAYMENT_FORWARD, OutboxClass};
use crate::ledger::state::{keys, read_meta, read_state_i64, write_meta};
use crate::lifecycle::PaymentEvent;
use crate::payment::{NewAttempt, PaymentKey, PaymentState};
use crate::policy::{self, Context, LedgerIntegrity, OfflineDecision, StorageLow};
use crate::staff::StaffApproval;
use crate::time::Timestamp;

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
    pub(in crate::ledger) fn record_attempt(
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
        // The last approval's increment first: approvals move the counter
        // one at a time.
        self.settle_counter();
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
            // The decision is durable and can be shown; the counter (a TPM:
            // about a millisecond) moves meanwhile, and is settled before
            // the next offline decision at the latest.
            failpoint::hit("decision.before_counter_increment");
            self.pending_increment = Some((target, *key, self.counter.start_increment()));
        }
        if decision.approved {
            info!(payment_key = %key, amount = %row.amount, "approved offline");
        } else {
            info!(payment_key = %key, amount = %row.amount, reasons = ?decision.reasons, "declined offline");
        }
        Ok(decision)
    }

    /// Waits for the counter's increment after the last offline approval,
    /// if one is still under way, and checks it: a counter that failed or
    /// moved out of step turns offline approval off (the approval itself
    /// stands: it is committed). The daemon calls it once the decision is
    /// shown; the next offline decision, a binding check and dropping the
    /// ledger call it too.
    pub fn settle_counter(&mut self) {
        let Some((target, key, pending)) = self.pending_increment.take() else {
            return;
        };
        match pending.wait() {
            Ok(v) if v == target => {}
            Ok(v) => {
                warn!(payment_key = %key, counter = v, expected = target, "counter out of step");
                self.integrity = LedgerIntegrity::CounterMismatch {
                    detail: format!("counter at {v} after increment, ledger expects {target}"),
                };
            }
            Err(e) => {
                // Offline approval pauses until the counter is repaired.
                warn!(payment_key = %key, cause = %e, "counter increment failed after an offline approval");
                self.integrity = LedgerIntegrity::CounterMismatch {
                    detail: e.to_string(),
                };
            }
        }
        failpoint::hit("decision.after_counter_increment");
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
