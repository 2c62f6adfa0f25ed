//! The checkout path against a real ledger file: decisions, outbox,
//! forwarding, late outcomes, in-doubt recovery, the counter binding, card
//! data at rest, telemetry quota and versioned updates.

mod common;

use std::fs;

use common::*;
use store_and_forward::counter::{FileCounter, MonotonicCounter};
use store_and_forward::ledger::{Applied, OutboxBody, OutboxClass, RetryPolicy, UpdateOutcome};
use store_and_forward::policy::{LedgerIntegrity, OfflineReason};
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::{BackendOutcome, LedgerError, PaymentState, Timestamp};

fn approved() -> BackendOutcome {
    BackendOutcome::Approved {
        reference: "AUTH123".into(),
    }
}

fn declined() -> BackendOutcome {
    BackendOutcome::Declined {
        reason: "insufficient funds".into(),
    }
}

#[test]
fn offline_approval_writes_forward_and_increments_counter() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(2_500), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    let d = ledger.decide_offline(&a.key, t0()).unwrap();
    assert!(d.approved, "{:?}", d.reasons);
    let p = ledger.payment(&a.key).unwrap().unwrap();
    assert_eq!(p.state, PaymentState::OfflineApproved);
    assert_eq!(p.counter_value, Some(fx.initial_counter + 1));
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 1);
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
        .unwrap();
    assert_eq!(batch.len(), 1);
    let OutboxBody::Payment(fwd) = &batch[0].body else {
        panic!("payment body expected");
    };
    assert_eq!(fwd.key, a.key);
    assert_eq!(&*fwd.emv_data, &a.card.emv_data, "unsealed for the wire");
    assert_eq!(fwd.encrypted_blob, a.card.encrypted_blob);
    // The outcome event is telemetry in the same transaction.
    let t = ledger
        .take_batch(OutboxClass::Telemetry, 0, 10, 1 << 20, t0())
        .unwrap();
    assert_eq!(t.len(), 1);
}

#[test]
fn forward_then_confirm_clears_exposure() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(2_500), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    assert_eq!(ledger.status(t0()).unwrap().exposure.count, 1);
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
        .unwrap();
    let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
    assert_eq!(ledger.mark_delivered(&ids, t0()).unwrap(), 1);
    assert_eq!(
        ledger.mark_delivered(&ids, t0()).unwrap(),
        0,
        "acks may repeat"
    );
    assert_eq!(
        ledger.payment(&a.key).unwrap().unwrap().state,
        PaymentState::Forwarded
    );
    assert!(
        ledger
            .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
            .unwrap()
            .is_empty()
    );
    // Still outstanding until the backend answers.
    assert_eq!(ledger.status(t0()).unwrap().exposure.count, 1);
    let r = ledger
        .apply_backend_outcome(&a.key, &approved(), t0())
        .unwrap();
    assert_eq!(
        r,
        Applied::Changed {
            from: PaymentState::Forwarded,
            to: PaymentState::Confirmed
        }
    );
    // Receiving it twice is safe.
    assert_eq!(
        ledger
            .apply_backend_outcome(&a.key, &approved(), t0())
            .unwrap(),
        Applied::Unchanged {
            state: PaymentState::Confirmed
        }
    );
    assert_eq!(ledger.status(t0()).unwrap().exposure.count, 0);
}

#[test]
fn declined_after_forward_is_recorded_as_merchant_loss() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(4_200), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    ledger
        .apply_backend_outcome(&a.key, &declined(), t0())
        .unwrap();
    let st = ledger.status(t0()).unwrap();
    assert_eq!(st.payments.get("declined_after_forward"), Some(&1));
    assert_eq!(st.declined_after_forward.values().sum::<i64>(), 4_200);
    assert_eq!(st.exposure.count, 0);
    // A contradicting outcome later is refused; the recorded one stays.
    let err = ledger
        .apply_backend_outcome(&a.key, &approved(), t0())
        .unwrap_err();
    assert!(matches!(err, LedgerError::ConflictingOutcome { .. }));
}

#[test]
fn late_online_approval_after_offline_approval_is_one_payment() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(3_000), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    // Online request timed out; offline approved under the same key.
    ledger.decide_offline(&a.key, t0()).unwrap();
    // Then the online answer arrives late.
    let r = ledger
        .apply_backend_outcome(&a.key, &approved(), t0())
        .unwrap();
    assert_eq!(
        r,
        Applied::Changed {
            from: PaymentState::OfflineApproved,
            to: PaymentState::Confirmed
        }
    );
    // The forward is moot: nothing left to send, one payment in the ledger.
    assert!(
        ledger
            .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger.payments().unwrap().len(), 1);
}

#[test]
fn online_decisions() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(50_000), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger
        .apply_backend_outcome(&a.key, &approved(), t0())
        .unwrap();
    let p = ledger.payment(&a.key).unwrap().unwrap();
    assert_eq!(p.state, PaymentState::OnlineApproved);
    assert_eq!(p.backend_reference.as_deref(), Some("AUTH123"));
    // No forward for an online approval, and no counter increment.
    assert!(
        ledger
            .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
            .unwrap()
            .is_empty()
    );
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter);
    let b = attempt(eur(100), 2);
    ledger.record_card_read(&b, t0()).unwrap();
    ledger
        .apply_backend_outcome(&b.key, &declined(), t0())
        .unwrap();
    assert_eq!(
        ledger.payment(&b.key).unwrap().unwrap().state,
        PaymentState::OnlineDeclined
    );
    // A decided attempt cannot be decided again offline.
    let err = ledger.decide_offline(&b.key, t0()).unwrap_err();
    assert!(
        matches!(err, LedgerError::IllegalTransition { .. }),
        "{err:?}"
    );
}

#[test]
fn over_cap_is_declined_with_reasons() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(10_001), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    let d = ledger.decide_offline(&a.key, t0()).unwrap();
    assert!(!d.approved);
    assert_eq!(
        d.reasons,
        vec![OfflineReason::PerPaymentCap {
            amount: 10_001,
            cap: 10_000
        }]
    );
    let p = ledger.payment(&a.key).unwrap().unwrap();
    assert_eq!(p.state, PaymentState::OfflineDeclined);
    assert_eq!(p.decision.unwrap().reasons, d.reasons);
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter);
}

#[test]
fn velocity_is_counted_per_card_from_the_ledger() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    for i in 0..3 {
        let a = attempt(eur(100), 7);
        ledger.record_card_read(&a, t0().plus_secs(i)).unwrap();
        assert!(
            ledger
                .decide_offline(&a.key, t0().plus_secs(i))
                .unwrap()
                .approved
        );
    }
    let a = attempt(eur(100), 7);
    ledger.record_card_read(&a, t0().plus_secs(10)).unwrap();
    let d = ledger.decide_offline(&a.key, t0().plus_secs(10)).unwrap();
    assert!(matches!(
        d.reasons[..],
        [OfflineReason::CardVelocity { count: 3, .. }]
    ));
    // Another card is fine; the same card after the window is fine.
    let b = attempt(eur(100), 8);
    ledger.record_card_read(&b, t0().plus_secs(11)).unwrap();
    assert!(
        ledger
            .decide_offline(&b.key, t0().plus_secs(11))
            .unwrap()
            .approved
    );
    let later = t0().plus_secs(3600 + 5);
    ledger.record_backend_contact(later).unwrap();
    let c = attempt(eur(100), 7);
    ledger.record_card_read(&c, later).unwrap();
    assert!(ledger.decide_offline(&c.key, later).unwrap().approved);
}

#[test]
fn deny_list_updates_are_versioned() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let bad = vec![9u8; 32];
    assert_eq!(
        ledger
            .apply_deny_list(2, None, true, std::slice::from_ref(&bad), &[], t0())
            .unwrap(),
        UpdateOutcome::Applied
    );
    // An older version never replaces a newer one.
    assert_eq!(
        ledger
            .apply_deny_list(1, None, true, &[], &[], t0())
            .unwrap(),
        UpdateOutcome::Ignored { current: 2 }
    );
    let a = attempt(eur(100), 9);
    ledger.record_card_read(&a, t0()).unwrap();
    let d = ledger.decide_offline(&a.key, t0()).unwrap();
    assert_eq!(d.reasons, vec![OfflineReason::CardDenied]);
    ledger
        .apply_deny_list(3, None, false, &[], &[bad], t0())
        .unwrap();
    let b = attempt(eur(100), 9);
    ledger.record_card_read(&b, t0()).unwrap();
    assert!(ledger.decide_offline(&b.key, t0()).unwrap().approved);
}

#[test]
fn limits_updates_are_versioned_and_persist() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let mut newer = limits_config();
    newer.version = 5;
    newer.per_payment_cap.insert("EUR".into(), 200);
    assert_eq!(
        ledger.apply_limits_update(&newer, t0()).unwrap(),
        UpdateOutcome::Applied
    );
    let mut older = limits_config();
    older.version = 4;
    assert_eq!(
        ledger.apply_limits_update(&older, t0()).unwrap(),
        UpdateOutcome::Ignored { current: 5 }
    );
    let mut invalid = limits_config();
    invalid.version = 9;
    invalid.per_payment_cap.insert("EUR".into(), -1);
    assert!(matches!(
        ledger.apply_limits_update(&invalid, t0()),
        Err(LedgerError::Policy(_))
    ));
    drop(ledger);
    // The config file still says version 1: the persisted 5 wins.
    let (ledger, _) = fx.reopen();
    assert_eq!(ledger.limits().version, 5);
}

#[test]
fn untrusted_clock_turns_offline_approval_off() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    ledger
        .record_known_good_time(t0().plus_secs(10_000), t0())
        .unwrap();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    let d = ledger.decide_offline(&a.key, t0()).unwrap();
    assert!(matches!(
        d.reasons[..],
        [OfflineReason::ClockUntrusted { .. }]
    ));
    let b = attempt(eur(100), 1);
    ledger.record_card_read(&b, Timestamp(1_000)).unwrap();
    let d = ledger.decide_offline(&b.key, Timestamp(1_000)).unwrap();
    assert!(
        d.reasons
            .iter()
            .any(|r| matches!(r, OfflineReason::ClockUntrusted { .. }))
    );
}

/// Trusted time from the backend, through the ledger (the real SQLite
/// file, reopened as after a reboot): a backend clock in step, behind,
/// ahead within the slack, jumping a day ahead, and a cart switched off
/// overnight. A far-future backend time never switches offline approval
/// off.
#[test]
fn backend_time_moves_known_good_only_as_far_as_the_cart_vouches() {
    use store_and_forward::time::{MonoPoint, TimeVerdict};
    let boot = |id: &str, ms: i64| MonoPoint {
        boot_id: id.into(),
        ms,
    };
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let slack = 300;
    let known = |l: &store_and_forward::Ledger| l.trust_point().unwrap().unwrap().known_good;
    // First contact: the wall clock vouches.
    let v = ledger
        .record_backend_time(t0(), t0(), Some(&boot("b1", 1_000)), slack)
        .unwrap();
    assert_eq!(v, TimeVerdict::Advance(t0()));
    // An hour later on the cart's own clock, the backend in step.
    let hour = t0().plus_secs(3_600);
    let v = ledger
        .record_backend_time(hour, hour, Some(&boot("b1", 3_601_000)), slack)
        .unwrap();
    assert_eq!(v, TimeVerdict::Advance(hour));
    // Behind: nothing changes.
    let v = ledger
        .record_backend_time(t0(), hour, Some(&boot("b1", 3_602_000)), slack)
        .unwrap();
    assert_eq!(v, TimeVerdict::Behind);
    // Jumping a day ahead (with the wall clock): ignored; offline approval
    // stays on.
    let jump = hour.plus_secs(86_400);
    let v = ledger
        .record_backend_time(jump, hour, Some(&boot("b1", 3_603_000)), slack)
        .unwrap();
    assert!(matches!(v, TimeVerdict::Unvouched { .. }), "{v:?}");
    assert_eq!(known(&ledger), hour);
    let a = attempt(eur(100), 1);
    let now = hour.plus_secs(5);
    ledger.record_card_read(&a, now).unwrap();
    let d = ledger.decide_offline(&a.key, now).unwrap();
    assert!(
        !d.reasons
            .iter()
            .any(|r| matches!(r, OfflineReason::ClockUntrusted { .. })),
        "{:?}",
        d.reasons
    );
    drop(ledger);
    // Switched off overnight: a new boot, the wall clock ten hours on.
    let (mut ledger, _) = fx.reopen();
    let morning = hour.plus_secs(10 * 3_600);
    let v = ledger
        .record_backend_time(morning, morning, Some(&boot("b2", 20_000)), slack)
        .unwrap();
    assert_eq!(v, TimeVerdict::Advance(morning));
    let p = ledger.trust_point().unwrap().unwrap();
    assert_eq!(p.at, Some(boot("b2", 20_000)));
    // Within the slack ahead on the new boot's clock.
    let v = ledger
        .record_backend_time(
            morning.plus_secs(70),
            morning,
            Some(&boot("b2", 80_000)),
            slack,
        )
        .unwrap();
    assert_eq!(v, TimeVerdict::Advance(morning.plus_secs(70)));
}

#[test]
fn crash_before_decision_leaves_attempt_in_doubt_with_an_inquiry() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    drop(ledger); // the process stops here
    let (mut ledger, report) = fx.reopen();
    assert_eq!(report.in_doubt, vec![a.key]);
    assert_eq!(
        ledger.payment(&a.key).unwrap().unwrap().state,
        PaymentState::InDoubt
    );
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].kind, "payment_inquiry");
    // The backend never saw it: nothing was charged; closed as cancelled.
    ledger
        .apply_backend_outcome(&a.key, &BackendOutcome::Unknown, t0())
        .unwrap();
    assert_eq!(
        ledger.payment(&a.key).unwrap().unwrap().state,
        PaymentState::Cancelled
    );
    assert!(
        ledger
            .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn in_doubt_approved_there_is_reversed_never_kept() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    drop(ledger);
    let (mut ledger, _) = fx.reopen();
    ledger
        .apply_backend_outcome(&a.key, &approved(), t0())
        .unwrap();
    assert_eq!(
        ledger.payment(&a.key).unwrap().unwrap().state,
        PaymentState::ReversalPending
    );
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
        .unwrap();
    let kinds: Vec<&str> = batch.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["payment_reversal"], "the inquiry is moot");
}

#[test]
fn crash_between_commit_and_increment_is_repaired() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    drop(ledger);
    // Simulate the increment never happening.
    fs::write(fx.counter_path(), fx.initial_counter.to_string()).unwrap();
    let (ledger, report) = fx.reopen();
    assert!(report.counter_repaired);
    assert_eq!(report.integrity, LedgerIntegrity::Bound);
    assert_eq!(ledger.integrity(), &LedgerIntegrity::Bound);
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 1);
}

#[test]
fn restored_older_copy_is_detected_as_rolled_back() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    ledger.maintain(t0()).unwrap();
    drop(ledger);
    // Back up the ledger (all three files), as an attacker or a careless
    // restore would.
    let backup = fx.dir.path().join("backup");
    fs::create_dir(&backup).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let src = format!("{}{suffix}", fx.path().display());
        if fs::metadata(&src).is_ok() {
            fs::copy(&src, backup.join(format!("l{suffix}"))).unwrap();
        }
    }
    let mut ledger = fx.open();
    for i in 0..3 {
        let b = attempt(eur(100), 10 + i);
        ledger.record_card_read(&b, t0()).unwrap();
        assert!(ledger.decide_offline(&b.key, t0()).unwrap().approved);
    }
    drop(ledger);
    for suffix in ["", "-wal", "-shm"] {
        let dst = format!("{}{suffix}", fx.path().display());
        let _ = fs::remove_file(&dst);
        let src = backup.join(format!("l{suffix}"));
        if src.exists() {
            fs::copy(&src, &dst).unwrap();
        }
    }
    let (mut ledger, report) = fx.reopen();
    assert_eq!(
        report.integrity,
        LedgerIntegrity::RolledBack {
            ledger: fx.initial_counter + 1,
            counter: fx.initial_counter + 4
        }
    );
    ledger.record_backend_contact(t0()).unwrap();
    let c = attempt(eur(100), 20);
    ledger.record_card_read(&c, t0()).unwrap();
    let d = ledger.decide_offline(&c.key, t0()).unwrap();
    assert!(matches!(
        d.reasons[..],
        [OfflineReason::LedgerIntegrity {
            integrity: LedgerIntegrity::RolledBack { .. }
        }]
    ));
    // Online selling still works on a rolled-back ledger.
    let e = attempt(eur(100), 21);
    ledger.record_card_read(&e, t0()).unwrap();
    ledger
        .apply_backend_outcome(&e.key, &approved(), t0())
        .unwrap();
}

#[test]
fn counter_that_never_starts_at_zero_is_bound_at_its_value() {
    let fx = Fixture::new();
    let ledger = fx.open();
    assert_eq!(ledger.integrity(), &LedgerIntegrity::Bound);
    let mut c = FileCounter::open(fx.counter_path(), 0).unwrap();
    assert_eq!(c.read().unwrap(), fx.initial_counter);
}

#[test]
fn test_pan_never_reaches_the_files() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    for i in 0..20 {
        let a = attempt(eur(100 + i), (i % 5) as u8);
        ledger.record_card_read(&a, t0()).unwrap();
        ledger.decide_offline(&a.key, t0()).unwrap();
    }
    let status = serde_json::to_string(&ledger.status(t0()).unwrap()).unwrap();
    assert!(!status.contains(TEST_PAN));
    drop(ledger);
    let bcd: [u8; 8] = [0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
    let mut checked = 0;
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", fx.path().display());
        let Ok(bytes) = fs::read(&p) else { continue };
        checked += bytes.len();
        assert!(
            !bytes
                .windows(TEST_PAN.len())
                .any(|w| w == TEST_PAN.as_bytes()),
            "PAN in ASCII found in {p}"
        );
        assert!(
            !bytes.windows(bcd.len()).any(|w| w == bcd),
            "PAN in BCD found in {p}"
        );
    }
    assert!(checked > 10_000, "the files were read ({checked} bytes)");
}

fn reading(i: u64) -> TelemetryEvent {
    TelemetryEvent::Reading {
        at: t0(),
        seq: i,
        temperature_c: 21.5,
        battery_pct: 80,
        rssi_dbm: -60,
        state: "idle".into(),
        position: None,
    }
}

#[test]
fn telemetry_over_quota_drops_oldest_and_never_payments() {
    let mut fx = Fixture::new();
    fx.config.telemetry_quota_bytes = 20_000;
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    let mut dropped = 0;
    for batch in 0..20 {
        let events: Vec<_> = (0..50).map(|i| reading(batch * 50 + i)).collect();
        dropped += ledger
            .enqueue_telemetry(&events, t0())
            .unwrap()
            .dropped_oldest;
    }
    assert!(dropped > 0);
    assert!(ledger.telemetry_bytes() <= 20_000);
    let st = ledger.status(t0()).unwrap();
    assert_eq!(st.telemetry_dropped, dropped);
    // The newest reading survives, the oldest does not.
    let t = ledger
        .take_batch(OutboxClass::Telemetry, 0, 10_000, 1 << 30, t0())
        .unwrap();
    let seqs: Vec<u64> = t
        .iter()
        .filter_map(|r| match &r.body {
            OutboxBody::Bytes(b) => match serde_json::from_slice(b).ok()? {
                TelemetryEvent::Reading { seq, .. } => Some(seq),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(seqs.contains(&999));
    assert!(!seqs.contains(&0));
    // The payment is intact.
    assert_eq!(
        ledger
            .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
            .unwrap()
            .len(),
        1
    );
    // The quota is remembered across a restart.
    drop(ledger);
    let (ledger, _) = fx.reopen();
    assert!(ledger.telemetry_bytes() <= 20_000 && ledger.telemetry_bytes() > 0);
}

#[test]
fn storage_below_reserve_stops_offline_approval_and_sheds_telemetry() {
    let mut fx = Fixture::new();
    fx.config.payment_reserve_bytes = u64::MAX;
    let mut ledger = fx.open();
    let r = ledger.enqueue_telemetry(&[reading(1)], t0()).unwrap();
    assert_eq!((r.written, r.shed), (0, 1));
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    let d = ledger.decide_offline(&a.key, t0()).unwrap();
    assert!(matches!(d.reasons[..], [OfflineReason::StorageLow(_)]));
}

#[test]
fn outbox_retry_backoff_and_quarantine() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let id1 = ledger
        .enqueue(OutboxClass::Control, "ack", b"one", t0())
        .unwrap();
    let id2 = ledger
        .enqueue(OutboxClass::Control, "ack", b"two", t0())
        .unwrap();
    let retry = RetryPolicy {
        base_ms: 60_000,
        max_ms: 60_000,
    };
    ledger.mark_failed(&[id1], "timeout", &retry, t0()).unwrap();
    // id1 waits for its backoff (at most 60 s); id2 is not blocked behind it.
    let due_later = Timestamp(t0().0 + 60_001);
    let now_batch = ledger
        .take_batch(OutboxClass::Control, 0, 10, 1 << 20, t0())
        .unwrap();
    assert!(now_batch.iter().any(|r| r.id == id2));
    let later = ledger
        .take_batch(OutboxClass::Control, 0, 10, 1 << 20, due_later)
        .unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(later[0].attempts, 1);
    ledger
        .quarantine(&[id2], "reason code 153 payload format invalid", t0())
        .unwrap();
    let q = ledger.quarantined(10).unwrap();
    assert_eq!(q[0].0, id2);
    assert!(q[0].2.contains("153"));
    let after = ledger
        .take_batch(OutboxClass::Control, 0, 10, 1 << 20, due_later)
        .unwrap();
    assert_eq!(after.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id1]);
    let depth = ledger.outbox_depth().unwrap();
    let control = depth.iter().find(|d| d.class == "control").unwrap();
    assert_eq!((control.pending, control.quarantined), (1, 1));
}

#[test]
fn batches_respect_byte_budget_and_cursor() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let events: Vec<_> = (0..100).map(reading).collect();
    ledger.enqueue_telemetry(&events, t0()).unwrap();
    let b1 = ledger
        .take_batch(OutboxClass::Telemetry, 0, 1000, 1_000, t0())
        .unwrap();
    let bytes: usize = b1
        .iter()
        .map(|r| match &r.body {
            OutboxBody::Bytes(b) => b.len(),
            _ => 0,
        })
        .sum();
    assert!(bytes <= 1_000 && !b1.is_empty());
    let last = b1.last().unwrap().id;
    let b2 = ledger
        .take_batch(OutboxClass::Telemetry, last, 1000, 1 << 20, t0())
        .unwrap();
    assert_eq!(b1.len() + b2.len(), 100);
    assert!(b2.iter().all(|r| r.id > last));
}

#[test]
fn delivered_records_are_purged_after_retention() {
    let mut fx = Fixture::new();
    fx.config.retention_secs = 60;
    let mut ledger = fx.open();
    ledger
        .enqueue_telemetry(&[reading(1), reading(2)], t0())
        .unwrap();
    let b = ledger
        .take_batch(OutboxClass::Telemetry, 0, 10, 1 << 20, t0())
        .unwrap();
    let ids: Vec<i64> = b.iter().map(|r| r.id).collect();
    ledger.mark_delivered(&ids, t0()).unwrap();
    assert_eq!(ledger.maintain(t0().plus_secs(30)).unwrap().purged(), 0);
    assert_eq!(ledger.maintain(t0().plus_secs(61)).unwrap().purged(), 2);
}

#[test]
fn unknown_and_duplicate_keys_are_errors() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    assert!(matches!(
        ledger.record_card_read(&a, t0()),
        Err(LedgerError::DuplicatePayment(_))
    ));
    let b = attempt(eur(100), 1);
    assert!(matches!(
        ledger.decide_offline(&b.key, t0()),
        Err(LedgerError::UnknownPayment(_))
    ));
    let z = attempt(eur(0), 1);
    assert!(matches!(
        ledger.record_card_read(&z, t0()),
        Err(LedgerError::InvalidAmount(0))
    ));
}

#[test]
fn cancel_before_decision() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.cancel(&a.key, "shopper cancelled", t0()).unwrap();
    assert_eq!(
        ledger.payment(&a.key).unwrap().unwrap().state,
        PaymentState::Cancelled
    );
    assert!(ledger.cancel(&a.key, "again", t0()).is_err());
}

#[test]
fn a_newer_status_supersedes_pending_ones_but_not_other_control_records() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    ledger
        .enqueue(OutboxClass::Control, "ack", b"ack-1", t0())
        .unwrap();
    for i in 0..5u8 {
        let (_, dropped) = ledger
            .enqueue_replacing(OutboxClass::Control, "cart_status", &[i], t0())
            .unwrap();
        assert_eq!(dropped, usize::from(i > 0));
    }
    let batch = ledger
        .take_batch(OutboxClass::Control, 0, 100, 1 << 20, t0())
        .unwrap();
    let kinds: Vec<&str> = batch.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["ack", "cart_status"], "one status, the newest");
    let OutboxBody::Bytes(last) = &batch[1].body else {
        panic!("bytes expected");
    };
    assert_eq!(last.as_slice(), &[4u8]);
}

/// A counter like the TPM's: `start_increment` returns at once and the
/// increment happens when the test lets it (`true`) or fails (`false`).
struct GatedCounter {
    path: std::path::PathBuf,
    initial: u64,
    gate: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<bool>>>,
}

impl MonotonicCounter for GatedCounter {
    fn read(&mut self) -> Result<u64, store_and_forward::counter::CounterError> {
        FileCounter::open(&self.path, self.initial)?.read()
    }
    fn increment(&mut self) -> Result<u64, store_and_forward::counter::CounterError> {
        FileCounter::open(&self.path, self.initial)?.increment()
    }
    fn start_increment(&mut self) -> store_and_forward::counter::PendingIncrement {
        let (path, initial, gate) = (self.path.clone(), self.initial, self.gate.clone());
        store_and_forward::counter::PendingIncrement::waiting(move || {
            // A failing test drops the ledger (which settles) before the
            // sender: never wait for ever.
            let go = gate
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(10));
            if go != Ok(true) {
                return Err(store_and_forward::counter::CounterError::Device(
                    "the TPM stopped answering".into(),
                ));
            }
            FileCounter::open(&path, initial)?.increment()
        })
    }
}

#[test]
fn the_decision_does_not_wait_for_the_counter_which_moves_one_approval_at_a_time() {
    let fx = Fixture::new();
    let (release, gate) = std::sync::mpsc::channel();
    let counter = GatedCounter {
        path: fx.counter_path(),
        initial: fx.initial_counter,
        gate: std::sync::Arc::new(std::sync::Mutex::new(gate)),
    };
    let mut key = store_and_forward::datakey::FileDataKey::new(fx.dir.path().join("data.key"));
    let (mut ledger, _) = store_and_forward::Ledger::open(
        fx.config.clone(),
        fx.limits.clone(),
        Box::new(counter),
        &mut key,
        t0(),
    )
    .unwrap();
    ledger.record_backend_contact(t0()).unwrap();

    // Approved and durable while the counter has not moved yet.
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    assert!(ledger.decide_offline(&a.key, t0()).unwrap().approved);
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter);
    // Settled: the counter moved once, the ledger stays bound.
    release.send(true).unwrap();
    ledger.settle_counter();
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 1);
    assert_eq!(ledger.integrity(), &LedgerIntegrity::Bound);

    // The next approval's increment fails: the approval stands (it is
    // committed) and offline approval stops until the counter is repaired.
    let b = attempt(eur(100), 2);
    ledger.record_card_read(&b, t0()).unwrap();
    assert!(ledger.decide_offline(&b.key, t0()).unwrap().approved);
    release.send(false).unwrap();
    ledger.settle_counter();
    assert!(
        matches!(ledger.integrity(), LedgerIntegrity::CounterMismatch { .. }),
        "{:?}",
        ledger.integrity()
    );
    assert_eq!(
        ledger.payment(&b.key).unwrap().unwrap().state,
        PaymentState::OfflineApproved
    );
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 1);

    // A third approval while its predecessor's increment is under way
    // waits for it first: the counter moves one approval at a time.
    // (Here the counter answers again: the next decision repairs the one
    // it missed, then approves.)
    let c = attempt(eur(100), 3);
    ledger.record_card_read(&c, t0()).unwrap();
    assert!(ledger.decide_offline(&c.key, t0()).unwrap().approved);
    assert_eq!(ledger.integrity(), &LedgerIntegrity::Bound);
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 2);
    let e = attempt(eur(100), 4);
    ledger.record_card_read(&e, t0()).unwrap();
    release.send(true).unwrap();
    assert!(ledger.decide_offline(&e.key, t0()).unwrap().approved);
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 3);
    // The last increment is still under way when the ledger closes: a
    // clean stop waits for it, the counter is in step at the next start.
    release.send(true).unwrap();
    drop(ledger);
    let (ledger, report) = fx.reopen();
    assert!(!report.counter_repaired);
    assert_eq!(ledger.integrity(), &LedgerIntegrity::Bound);
    assert_eq!(fx.counter().read().unwrap(), fx.initial_counter + 4);
}
