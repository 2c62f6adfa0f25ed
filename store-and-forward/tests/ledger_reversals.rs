//! Nobody pays for goods they did not take: every path to a reversal
//! through the ledger's real state machine, and the paths that must not
//! reverse.

mod common;

use common::*;
use store_and_forward::ledger::{Applied, OutboxBody, OutboxClass};
use store_and_forward::{
    BackendOutcome, Ledger, LedgerError, NewAttempt, PaymentKey, PaymentState, Timestamp,
};

fn at(secs: i64) -> Timestamp {
    Timestamp(t0().0 + secs * 1_000)
}

fn approved() -> BackendOutcome {
    BackendOutcome::Approved {
        reference: "LATE-1".into(),
    }
}

fn state(ledger: &Ledger, key: &PaymentKey) -> PaymentState {
    ledger.payment(key).unwrap().unwrap().state
}

/// Pending payment-class records: (kind, key).
fn pending(ledger: &Ledger, now: Timestamp) -> Vec<(String, PaymentKey)> {
    ledger
        .take_batch(OutboxClass::Payment, 0, 100, 1 << 20, now)
        .unwrap()
        .into_iter()
        .map(|r| match r.body {
            OutboxBody::Payment(p) => (r.kind, p.key),
            other => panic!("payment record expected, got {other:?}"),
        })
        .collect()
}

fn deliver(ledger: &mut Ledger, now: Timestamp) -> usize {
    let ids: Vec<i64> = ledger
        .take_batch(OutboxClass::Payment, 0, 100, 1 << 20, now)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    ledger.mark_delivered(&ids, now).unwrap();
    ids.len()
}

fn declined_offline(ledger: &mut Ledger) -> PaymentKey {
    let a = NewAttempt {
        online_required: true,
        ..attempt(eur(4_200), 3)
    };
    ledger.record_card_read(&a, t0()).unwrap();
    assert!(!ledger.decide_offline(&a.key, t0()).unwrap().approved);
    a.key
}

#[test]
fn late_approval_after_an_offline_decline_is_reversed_exactly_once() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let key = declined_offline(&mut ledger);
    assert!(pending(&ledger, at(1)).is_empty());

    // The online answer the checkout gave up on arrives after the shopper left.
    let r = ledger
        .apply_backend_outcome(&key, &approved(), at(5))
        .unwrap();
    assert_eq!(
        r,
        Applied::Changed {
            from: PaymentState::OfflineDeclined,
            to: PaymentState::ReversalPending
        }
    );
    assert_eq!(pending(&ledger, at(5)), [("payment_reversal".into(), key)]);
    // Never an offline approval: not offline exposure.
    let st = ledger.status(at(5)).unwrap();
    assert_eq!(st.exposure.count, 0);

    // The same approval again (a replay) queues nothing more.
    assert_eq!(
        ledger
            .apply_backend_outcome(&key, &approved(), at(6))
            .unwrap(),
        Applied::Unchanged {
            state: PaymentState::ReversalPending
        }
    );
    assert_eq!(pending(&ledger, at(6)).len(), 1);

    // Durable like a forward: it survives a restart.
    drop(ledger);
    let (mut ledger, report) = fx.reopen();
    assert!(report.in_doubt.is_empty());
    assert_eq!(pending(&ledger, at(7)), [("payment_reversal".into(), key)]);

    // Delivered to the broker: still pending until the backend answers.
    assert_eq!(deliver(&mut ledger, at(8)), 1);
    assert_eq!(state(&ledger, &key), PaymentState::ReversalPending);
    assert!(pending(&ledger, at(8)).is_empty());

    // The result closes it; a second result is fine and changes nothing.
    assert_eq!(
        ledger
            .apply_reversal_result(&key, "reversed", at(9))
            .unwrap(),
        Applied::Changed {
            from: PaymentState::ReversalPending,
            to: PaymentState::Reversed
        }
    );
    assert_eq!(
        ledger
            .apply_reversal_result(&key, "already_reversed", at(10))
            .unwrap(),
        Applied::Unchanged {
            state: PaymentState::Reversed
        }
    );
    // A very late replay of the approval does not queue a second reversal.
    ledger
        .apply_backend_outcome(&key, &approved(), at(11))
        .unwrap();
    assert_eq!(state(&ledger, &key), PaymentState::Reversed);
    assert!(pending(&ledger, at(11)).is_empty());
    assert_eq!(ledger.requeue_unanswered(0, at(3_600)).unwrap(), 0);
    drop(ledger);
    let (ledger, _) = fx.reopen();
    assert_eq!(state(&ledger, &key), PaymentState::Reversed);
}

#[test]
fn late_approval_after_a_cancel_or_a_reader_fault_is_reversed() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let cancelled = attempt(eur(700), 4);
    let failed = attempt(eur(800), 5);
    ledger.record_card_read(&cancelled, t0()).unwrap();
    ledger.record_card_read(&failed, t0()).unwrap();
    ledger
        .cancel(&cancelled.key, "shopper cancelled", t0())
        .unwrap();
    ledger.fail(&failed.key, "reader fault", t0()).unwrap();
    for k in [cancelled.key, failed.key] {
        ledger
            .apply_backend_outcome(&k, &approved(), at(2))
            .unwrap();
        assert_eq!(state(&ledger, &k), PaymentState::ReversalPending);
    }
    let queued = pending(&ledger, at(2));
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|(kind, _)| kind == "payment_reversal"));
    // A late decline for them is nothing to do.
    let other = attempt(eur(900), 6);
    ledger.record_card_read(&other, t0()).unwrap();
    ledger
        .cancel(&other.key, "shopper cancelled", t0())
        .unwrap();
    let declined = BackendOutcome::Declined {
        reason: "late".into(),
    };
    assert_eq!(
        ledger
            .apply_backend_outcome(&other.key, &declined, at(3))
            .unwrap(),
        Applied::Unchanged {
            state: PaymentState::Cancelled
        }
    );
}

#[test]
fn in_doubt_is_resolved_by_asking_never_forwarded_as_a_sale() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let approved_there = attempt(eur(100), 1);
    let unknown_there = attempt(eur(200), 2);
    let declined_there = attempt(eur(300), 3);
    for a in [&approved_there, &unknown_there, &declined_there] {
        ledger.record_card_read(a, t0()).unwrap();
    }
    drop(ledger); // the cart stops before any decision
    let (mut ledger, report) = fx.reopen();
    assert_eq!(report.in_doubt.len(), 3);
    let kinds: Vec<String> = pending(&ledger, at(1))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds, ["payment_inquiry"; 3],
        "asked about, never forwarded"
    );
    // Delivering the inquiries moves nothing (no in_doubt -> forwarded).
    deliver(&mut ledger, at(1));
    for a in [&approved_there, &unknown_there, &declined_there] {
        assert_eq!(state(&ledger, &a.key), PaymentState::InDoubt);
    }

    // Approved there although never shown: reversed.
    ledger
        .apply_backend_outcome(&approved_there.key, &approved(), at(2))
        .unwrap();
    assert_eq!(
        state(&ledger, &approved_there.key),
        PaymentState::ReversalPending
    );
    // Unknown there: closed as cancelled, nothing to reverse.
    ledger
        .apply_backend_outcome(&unknown_there.key, &BackendOutcome::Unknown, at(2))
        .unwrap();
    assert_eq!(state(&ledger, &unknown_there.key), PaymentState::Cancelled);
    // Declined there: nothing charged.
    ledger
        .apply_backend_outcome(
            &declined_there.key,
            &BackendOutcome::Declined {
                reason: "no".into(),
            },
            at(2),
        )
        .unwrap();
    assert_eq!(
        state(&ledger, &declined_there.key),
        PaymentState::OnlineDeclined
    );
    assert_eq!(
        pending(&ledger, at(2)),
        [("payment_reversal".into(), approved_there.key)]
    );
    assert_eq!(ledger.status(at(2)).unwrap().exposure.count, 0);
}

#[test]
fn an_approval_the_shopper_saw_is_never_reversed() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(1_500), 8);
    ledger.record_card_read(&a, t0()).unwrap();
    assert!(ledger.decide_offline(&a.key, t0()).unwrap().approved);
    // The online answer learned late after the offline approval.
    ledger
        .apply_backend_outcome(&a.key, &approved(), at(3))
        .unwrap();
    assert_eq!(state(&ledger, &a.key), PaymentState::Confirmed);
    assert!(
        pending(&ledger, at(3)).is_empty(),
        "the forward is moot, no reversal"
    );
    // A reversal result for it is a conflict and changes nothing.
    let err = ledger
        .apply_reversal_result(&a.key, "reversed", at(4))
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::ConflictingOutcome { .. }),
        "{err}"
    );
    assert_eq!(state(&ledger, &a.key), PaymentState::Confirmed);
}

#[test]
fn an_unanswered_reversal_is_sent_again_and_a_quarantined_one_released() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let key = declined_offline(&mut ledger);
    ledger
        .apply_backend_outcome(&key, &approved(), at(1))
        .unwrap();
    deliver(&mut ledger, at(2));
    // The broker has it, the backend never answered: queued again.
    assert_eq!(ledger.requeue_unanswered(60, at(30)).unwrap(), 0);
    assert_eq!(ledger.requeue_unanswered(60, at(120)).unwrap(), 1);
    let again = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, at(120))
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].kind, "payment_reversal");
    // Same quarantine rule as a forward: set aside, visible, releasable.
    ledger
        .quarantine(&[again[0].id], "broker reason 135", at(121))
        .unwrap();
    assert!(pending(&ledger, at(121)).is_empty());
    let st = ledger.status(at(121)).unwrap();
    assert_eq!(
        st.outbox
            .iter()
            .find(|d| d.class == "payment")
            .map(|d| d.quarantined),
        Some(1)
    );
    assert_eq!(ledger.release_quarantined(&key, at(122)).unwrap(), 1);
    assert_eq!(
        pending(&ledger, at(122)),
        [("payment_reversal".into(), key)]
    );
}
