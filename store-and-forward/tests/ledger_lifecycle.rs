//! The full state × event matrix of the payment lifecycle, against a real
//! ledger file: the table the ledger enforces is the one in `lifecycle.rs`.
//!
//! For every cell a fresh ledger brings one payment into the state through
//! the ledger's own operations, then applies the event through the
//! operation that carries it. Every illegal cell is an error (or, for the
//! two events no caller asks for — the restart that finds an attempt
//! undecided and a forward's delivery — a no-op) and changes nothing;
//! every replay is accepted and writes nothing; every legal move persists
//! across a reopen.

mod common;

use common::*;
use store_and_forward::ledger::{Applied, OutboxClass};
use store_and_forward::{
    BackendOutcome, Ledger, LedgerError, NewAttempt, PaymentEvent, PaymentKey, PaymentState,
    Timestamp,
};

use PaymentEvent as E;
use PaymentState as S;

/// What the cell's operation returned.
#[derive(Debug)]
enum Outcome {
    /// An operation with a result: Ok(Some(state)) when it says it changed
    /// the state, Ok(None) when it says nothing changed.
    Result(Result<Option<PaymentState>, LedgerError>),
    /// An operation that never refuses (restart, delivery).
    Silent,
}

fn t1() -> Timestamp {
    Timestamp(t0().0 + 1_000)
}

fn approved() -> BackendOutcome {
    BackendOutcome::Approved {
        reference: "AUTH-1".into(),
    }
}

fn declined() -> BackendOutcome {
    BackendOutcome::Declined {
        reason: "do not honour".into(),
    }
}

/// Delivers every pending payment record (the broker's PUBACK).
fn deliver_all(ledger: &mut Ledger) {
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 100, 1 << 20, t1())
        .unwrap();
    let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
    ledger.mark_delivered(&ids, t1()).unwrap();
}

/// Brings a payment into `state` through the ledger's operations. The
/// attempt asks for online authorization (so the offline policy declines
/// it) where the path or the event needs an offline decline.
fn bring_to(fx: &Fixture, state: PaymentState, event: PaymentEvent) -> (Ledger, PaymentKey) {
    let mut ledger = fx.open();
    let declines = matches!(state, S::OfflineDeclined | S::ReversalPending | S::Reversed)
        || (state == S::CardRead && event == E::OfflineDeclined);
    let a = NewAttempt {
        online_required: declines,
        ..attempt(eur(500), 7)
    };
    let key = a.key;
    ledger.record_card_read(&a, t0()).unwrap();
    match state {
        S::CardRead => {}
        S::OnlineApproved => drop(
            ledger
                .apply_backend_outcome(&key, &approved(), t0())
                .unwrap(),
        ),
        S::OnlineDeclined => drop(
            ledger
                .apply_backend_outcome(&key, &declined(), t0())
                .unwrap(),
        ),
        S::OfflineApproved => assert!(ledger.decide_offline(&key, t0()).unwrap().approved),
        S::OfflineDeclined => assert!(!ledger.decide_offline(&key, t0()).unwrap().approved),
        S::Cancelled => ledger.cancel(&key, "shopper left", t0()).unwrap(),
        S::Failed => ledger.fail(&key, "reader fault", t0()).unwrap(),
        S::InDoubt => {
            drop(ledger);
            ledger = fx.reopen().0;
        }
        S::Forwarded | S::Confirmed | S::DeclinedAfterForward => {
            assert!(ledger.decide_offline(&key, t0()).unwrap().approved);
            deliver_all(&mut ledger);
            match state {
                S::Confirmed => drop(
                    ledger
                        .apply_backend_outcome(&key, &approved(), t1())
                        .unwrap(),
                ),
                S::DeclinedAfterForward => drop(
                    ledger
                        .apply_backend_outcome(&key, &declined(), t1())
                        .unwrap(),
                ),
                _ => {}
            }
        }
        S::ReversalPending | S::Reversed => {
            assert!(!ledger.decide_offline(&key, t0()).unwrap().approved);
            ledger
                .apply_backend_outcome(&key, &approved(), t0())
                .unwrap();
            if state == S::Reversed {
                ledger
                    .apply_reversal_result(&key, "reversed", t1())
                    .unwrap();
            }
        }
    }
    assert_eq!(state_of(&ledger, &key), state, "set-up of {state}");
    (ledger, key)
}

fn state_of(ledger: &Ledger, key: &PaymentKey) -> PaymentState {
    ledger.payment(key).unwrap().unwrap().state
}

fn changed(r: Result<Applied, LedgerError>) -> Result<Option<PaymentState>, LedgerError> {
    r.map(|a| match a {
        Applied::Changed { to, .. } => Some(to),
        Applied::Unchanged { .. } => None,
    })
}

/// Applies `event` through the ledger operation that carries it.
fn apply(
    fx: &Fixture,
    mut ledger: Ledger,
    key: &PaymentKey,
    event: PaymentEvent,
) -> (Ledger, Outcome) {
    let out = match event {
        E::OfflineApproved | E::OfflineDeclined => {
            Outcome::Result(ledger.decide_offline(key, t1()).map(|d| {
                Some(if d.approved {
                    S::OfflineApproved
                } else {
                    S::OfflineDeclined
                })
            }))
        }
        E::Cancelled => Outcome::Result(
            ledger
                .cancel(key, "cancel", t1())
                .map(|()| Some(S::Cancelled)),
        ),
        E::Failed => Outcome::Result(ledger.fail(key, "fault", t1()).map(|()| Some(S::Failed))),
        E::CrashedUndecided => {
            drop(ledger);
            ledger = fx.reopen().0;
            Outcome::Silent
        }
        E::Forwarded => {
            // A forward queued again, as for an unanswered one.
            ledger.requeue_unanswered(0, t1()).unwrap();
            deliver_all(&mut ledger);
            Outcome::Silent
        }
        E::BackendApproved => Outcome::Result(changed(ledger.apply_backend_outcome(
            key,
            &approved(),
            t1(),
        ))),
        E::BackendDeclined => Outcome::Result(changed(ledger.apply_backend_outcome(
            key,
            &declined(),
            t1(),
        ))),
        E::BackendUnknown => Outcome::Result(changed(ledger.apply_backend_outcome(
            key,
            &BackendOutcome::Unknown,
            t1(),
        ))),
        E::ReversalDone => {
            Outcome::Result(changed(ledger.apply_reversal_result(key, "reversed", t1())))
        }
    };
    (ledger, out)
}

/// The payment's log lines (every written change adds one).
fn log_lines(fx: &Fixture) -> i64 {
    let c = rusqlite::Connection::open(fx.path()).unwrap();
    c.query_row("SELECT COUNT(*) FROM payment_log", [], |r| r.get(0))
        .unwrap()
}

fn pending_payment_records(ledger: &Ledger) -> usize {
    ledger
        .take_batch(OutboxClass::Payment, 0, 100, 1 << 20, t1())
        .unwrap()
        .len()
}

#[test]
fn the_ledger_enforces_the_lifecycle_table_cell_by_cell() {
    let (mut moves, mut replays, mut illegal) = (0, 0, 0);
    for state in S::ALL {
        for event in E::ALL {
            let cell = format!("{state} on {event}");
            let fx = Fixture::new();
            let (ledger, key) = bring_to(&fx, state, event);
            let lines = log_lines(&fx);
            let pending = pending_payment_records(&ledger);
            let (ledger, out) = apply(&fx, ledger, &key, event);
            let now = state_of(&ledger, &key);
            match state.on(event) {
                Err(_) => {
                    illegal += 1;
                    match out {
                        Outcome::Result(r) => {
                            let err = r.expect_err(&cell);
                            assert!(
                                matches!(
                                    err,
                                    LedgerError::IllegalTransition { .. }
                                        | LedgerError::ConflictingOutcome { .. }
                                ),
                                "{cell}: {err}"
                            );
                            assert_eq!(
                                pending_payment_records(&ledger),
                                pending,
                                "{cell}: outbox changed"
                            );
                        }
                        Outcome::Silent => {}
                    }
                    assert_eq!(now, state, "{cell}: state changed");
                    assert_eq!(log_lines(&fx), lines, "{cell}: something written");
                }
                Ok(to) if to == state => {
                    replays += 1;
                    if let Outcome::Result(r) = out {
                        assert_eq!(r.expect(&cell), None, "{cell}: a replay changes nothing");
                    }
                    assert_eq!(now, state, "{cell}");
                    assert_eq!(log_lines(&fx), lines, "{cell}: a replay writes nothing");
                }
                Ok(to) => {
                    moves += 1;
                    if let Outcome::Result(r) = out {
                        assert_eq!(r.expect(&cell), Some(to), "{cell}");
                    }
                    assert_eq!(now, to, "{cell}");
                    assert_eq!(log_lines(&fx), lines + 1, "{cell}: one log line");
                    drop(ledger);
                    let (ledger, _) = fx.reopen();
                    assert_eq!(state_of(&ledger, &key), to, "{cell}: lost on reopen");
                }
            }
        }
    }
    // The table is not degenerate: 13 states × 10 events.
    assert_eq!(moves + replays + illegal, 130);
    assert_eq!(moves, 19, "legal moves");
    assert!(
        replays > 0 && illegal > 0,
        "{replays} replays, {illegal} illegal"
    );
}
