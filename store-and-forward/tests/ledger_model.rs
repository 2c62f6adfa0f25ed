//! Property test: random sequences of checkouts, forwards, backend results,
//! late online outcomes, policy updates, clock changes and restarts against
//! a real ledger file, checked against a simple model.
//!
//! Invariants: an offline approval never takes the outstanding amount or
//! count above the caps in force (computed from the model, not from the
//! ledger); every payment the model knows is in the ledger exactly once, in
//! the state the model expects; nothing appears that the model did not start.

mod common;

use std::collections::HashMap;

use common::*;
use proptest::prelude::*;
use store_and_forward::ledger::{OutboxBody, OutboxClass};
use store_and_forward::policy::{LimitsConfig, OfflineReason};
use store_and_forward::{BackendOutcome, Ledger, PaymentKey, PaymentState, Timestamp};

#[derive(Debug, Clone)]
enum Op {
    Checkout {
        amount: i64,
        card: u8,
        online_required: bool,
        path: u8,
    },
    Forward {
        max: usize,
    },
    BackendResult {
        pick: usize,
        approve: bool,
    },
    Policy {
        per: i64,
        total: i64,
        count: u32,
    },
    Clock {
        secs: i64,
    },
    Contact,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..15_000, 0u8..6, prop::bool::weighted(0.1), 0u8..5).prop_map(|(amount, card, online_required, path)| Op::Checkout { amount, card, online_required, path }),
        2 => (1usize..5).prop_map(|max| Op::Forward { max }),
        2 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(pick, approve)| Op::BackendResult { pick, approve }),
        1 => (1i64..20_000, 1i64..60_000, 1u32..12).prop_map(|(per, total, count)| Op::Policy { per, total: total.max(per), count }),
        1 => (-1_000i64..4_000).prop_map(|secs| Op::Clock { secs }),
        1 => Just(Op::Contact),
        1 => Just(Op::Restart),
    ]
}

struct Model {
    states: HashMap<PaymentKey, (PaymentState, i64)>,
    order: Vec<PaymentKey>,
    per: i64,
    total: i64,
    count: u32,
    version: u64,
}

impl Model {
    fn outstanding(&self) -> (i64, u32) {
        self.states
            .values()
            .filter(|(s, _)| s.is_outstanding_offline())
            .fold((0, 0), |(a, n), (_, amt)| (a + amt, n + 1))
    }
}

fn check_ledger(ledger: &Ledger, model: &Model) -> Result<(), TestCaseError> {
    let payments = ledger.payments().unwrap();
    prop_assert_eq!(payments.len(), model.states.len());
    for p in payments {
        let (state, amount) = model
            .states
            .get(&p.key)
            .ok_or_else(|| TestCaseError::fail(format!("phantom {}", p.key)))?;
        prop_assert_eq!(p.state, *state, "state of {}", p.key);
        prop_assert_eq!(p.amount.minor, *amount);
    }
    let st = ledger.status(t0()).unwrap();
    let (amt, n) = model.outstanding();
    prop_assert_eq!(st.exposure.count, n);
    prop_assert_eq!(st.exposure.amount.values().sum::<i64>(), amt);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn caps_hold_and_nothing_is_lost_or_duplicated(ops in prop::collection::vec(op(), 1..40)) {
        let mut fx = Fixture::new();
        let mut cfg = limits_config();
        cfg.total_outstanding_cap.insert("EUR".into(), 30_000);
        cfg.max_outstanding_count = 6;
        cfg.velocity_max_per_card = 100;
        fx.limits = cfg.validate("offline").unwrap();
        let mut model = Model { states: HashMap::new(), order: Vec::new(), per: 10_000, total: 30_000, count: 6, version: 1 };
        let mut ledger = fx.open();
        let mut now = t0();
        for op in ops {
            match op {
                Op::Checkout { amount, card: c, online_required, path } => {
                    let mut a = attempt(eur(amount), c);
                    a.online_required = online_required;
                    ledger.record_card_read(&a, now).unwrap();
                    model.states.insert(a.key, (PaymentState::CardRead, amount));
                    model.order.push(a.key);
                    match path {
                        0 | 1 => {
                            let (out_amt, out_n) = model.outstanding();
                            let d = ledger.decide_offline(&a.key, now).unwrap();
                            if d.approved {
                                prop_assert!(out_amt + amount <= model.total, "amount cap: {out_amt}+{amount} > {}", model.total);
                                prop_assert!(out_n < model.count, "count cap: {out_n} >= {}", model.count);
                                prop_assert!(amount <= model.per, "per-payment cap");
                                prop_assert!(!online_required);
                                model.states.insert(a.key, (PaymentState::OfflineApproved, amount));
                            } else {
                                prop_assert!(!d.reasons.is_empty());
                                if online_required {
                                    prop_assert!(d.reasons.contains(&OfflineReason::OnlineRequired));
                                }
                                model.states.insert(a.key, (PaymentState::OfflineDeclined, amount));
                            }
                        }
                        2 => {
                            ledger.apply_backend_outcome(&a.key, &BackendOutcome::Approved { reference: "R".into() }, now).unwrap();
                            model.states.insert(a.key, (PaymentState::OnlineApproved, amount));
                        }
                        3 => {
                            ledger.cancel(&a.key, "cancel", now).unwrap();
                            model.states.insert(a.key, (PaymentState::Cancelled, amount));
                        }
                        _ => {
                            // Crash before the decision: restart.
                            drop(ledger);
                            let (l, report) = fx.reopen();
                            ledger = l;
                            prop_assert_eq!(report.in_doubt, vec![a.key]);
                            model.states.insert(a.key, (PaymentState::InDoubt, amount));
                        }
                    }
                }
                Op::Forward { max } => {
                    let batch = ledger.take_batch(OutboxClass::Payment, 0, max, 1 << 20, now).unwrap();
                    let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
                    ledger.mark_delivered(&ids, now).unwrap();
                    for r in &batch {
                        if let OutboxBody::Payment(p) = &r.body {
                            let e = model.states.get_mut(&p.key).unwrap();
                            if e.0 == PaymentState::OfflineApproved {
                                prop_assert_eq!(r.kind.as_str(), "payment_forward");
                                e.0 = PaymentState::Forwarded;
                            } else if e.0 == PaymentState::ReversalPending {
                                prop_assert_eq!(r.kind.as_str(), "payment_reversal");
                            } else {
                                prop_assert_eq!(e.0, PaymentState::InDoubt);
                            }
                        }
                    }
                }
                Op::BackendResult { pick, approve } => {
                    if model.order.is_empty() { continue; }
                    let key = model.order[pick % model.order.len()];
                    let outcome = if approve {
                        BackendOutcome::Approved { reference: "B".into() }
                    } else {
                        BackendOutcome::Declined { reason: "no".into() }
                    };
                    let (state, amount) = model.states[&key];
                    let expected = match (state, approve) {
                        (PaymentState::OfflineApproved | PaymentState::Forwarded, true) => Some(PaymentState::Confirmed),
                        (PaymentState::OfflineApproved | PaymentState::Forwarded, false) => Some(PaymentState::DeclinedAfterForward),
                        // Approved but never shown approved: reversed.
                        (PaymentState::InDoubt | PaymentState::OfflineDeclined | PaymentState::Cancelled, true) => Some(PaymentState::ReversalPending),
                        (PaymentState::InDoubt, false) => Some(PaymentState::OnlineDeclined),
                        _ => None,
                    };
                    let r = ledger.apply_backend_outcome(&key, &outcome, now);
                    match expected {
                        Some(to) => {
                            prop_assert!(r.is_ok(), "{r:?}");
                            model.states.insert(key, (to, amount));
                        }
                        None => {
                            // A replay or a conflict: either way nothing changes.
                            if let Ok(applied) = r {
                                prop_assert_eq!(applied, store_and_forward::ledger::Applied::Unchanged { state });
                            }
                        }
                    }
                }
                Op::Policy { per, total, count } => {
                    model.version += 1;
                    let update = LimitsConfig {
                        version: model.version,
                        per_payment_cap: [("EUR".to_string(), per)].into(),
                        total_outstanding_cap: [("EUR".to_string(), total)].into(),
                        max_outstanding_count: count,
                        velocity_max_per_card: 100,
                        velocity_window_secs: 3600,
                        ..LimitsConfig::default()
                    };
                    ledger.apply_limits_update(&update, now).unwrap();
                    model.per = per;
                    model.total = total;
                    model.count = count;
                }
                Op::Clock { secs } => {
                    now = Timestamp(now.0 + secs * 1000);
                }
                Op::Contact => {
                    ledger.record_backend_contact(now).unwrap();
                    ledger.record_known_good_time(now, now).unwrap();
                }
                Op::Restart => {
                    drop(ledger);
                    let (l, report) = fx.reopen();
                    ledger = l;
                    prop_assert!(report.in_doubt.is_empty());
                    prop_assert_eq!(ledger.limits().version, model.version);
                }
            }
            check_ledger(&ledger, &model)?;
        }
        ledger.integrity_check().unwrap();
        if std::env::var_os("MODEL_DEBUG").is_some() {
            let n = model.states.values().filter(|(s, _)| matches!(s, PaymentState::OfflineApproved | PaymentState::Forwarded | PaymentState::Confirmed | PaymentState::DeclinedAfterForward)).count();
            eprintln!("case: {} payments, {n} approved offline", model.states.len());
        }
    }
}
