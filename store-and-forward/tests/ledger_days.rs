//! Days of a cart's life in simulated time, with the real ledger and the
//! real maintenance code: one reading a second, 2,000 payments a day, a
//! one-day retention, the link up except a 6-hour outage each day.
//!
//! The file must stay at or under the telemetry quota + the payment
//! reserve + 16 MiB, stop growing once retention is reached (the last day
//! at most 1.05 times the day before), never hand out a sequence twice, and
//! never decline a payment for lack of space.
//!
//! 3 days in CI; `LEDGER_SIM_DAYS=30 cargo test -p store-and-forward --test
//! ledger_days -- --nocapture` runs a month and prints the size each day.
//!
//! The file sizes are what this measures, not the cost of durability (the
//! ledger bench counts fsyncs and times them): the ledger lives in shared
//! memory (`/dev/shm`, a tmpfs, where there is one) so about 26,000
//! fsyncs do not make a CI run wait on a shared disk. `LEDGER_SIM_DIR`
//! picks another folder.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use store_and_forward::ledger::{OutboxBody, OutboxClass};
use store_and_forward::policy::LimitsConfig;
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::{BackendOutcome, CardRead, EntryMode, Ledger, NewAttempt, PaymentKey};

const DAY_SECS: i64 = 86_400;
const TICK_SECS: i64 = 60;
const PAYMENTS_PER_DAY: i64 = 2_000;
/// The outage each day, seconds into the day.
const OUTAGE: std::ops::Range<i64> = 10 * 3600..16 * 3600;
const MIB: u64 = 1024 * 1024;

fn reading(at: store_and_forward::Timestamp, seq: u64) -> TelemetryEvent {
    TelemetryEvent::Reading {
        at,
        seq,
        temperature_c: 21.5,
        battery_pct: 80,
        rssi_dbm: -61,
        state: "shopping".into(),
        position: Some((12.5, 40.25)),
    }
}

fn attempt(i: i64) -> NewAttempt {
    // 5,000 different cards: the velocity limit is not what this tests.
    let card_no = (i % 5_000) as u32;
    let mut fingerprint = card_no.to_le_bytes().to_vec();
    fingerprint.resize(32, 0xA5);
    NewAttempt {
        key: PaymentKey::new(),
        amount: eur(500 + (i % 4_000)),
        online_required: false,
        card: CardRead {
            masked_pan: "411111******1111".into(),
            fingerprint,
            emv_data: vec![0x9F; 180],
            encrypted_blob: vec![0xEE; 160],
            entry_mode: EntryMode::Contactless,
        },
    }
}

struct Run {
    /// Every outbox id the uplink has delivered: none may come twice.
    delivered: HashSet<i64>,
    /// Offline decline reasons by limit name.
    declines: BTreeMap<String, u64>,
    approved_offline: u64,
    approved_online: u64,
}

impl Run {
    /// The link is up: drain every class, the backend answers forwards.
    fn drain(&mut self, ledger: &mut Ledger, now: store_and_forward::Timestamp) {
        for class in OutboxClass::ALL {
            loop {
                let batch = ledger.take_batch(class, 0, 1_000, 1 << 20, now).unwrap();
                if batch.is_empty() {
                    break;
                }
                let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
                for id in &ids {
                    assert!(
                        self.delivered.insert(*id),
                        "outbox id {id} handed out twice"
                    );
                }
                ledger.mark_delivered(&ids, now).unwrap();
                for r in batch {
                    if let OutboxBody::Payment(p) = r.body {
                        let ok = BackendOutcome::Approved {
                            reference: "R".into(),
                        };
                        ledger.apply_backend_outcome(&p.key, &ok, now).unwrap();
                    }
                }
            }
        }
    }
}

#[test]
fn three_days_stay_bounded_and_steady() {
    let days: i64 = std::env::var("LEDGER_SIM_DAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(3);
    let mut fx = Fixture::new();
    let base = std::env::var_os("LEDGER_SIM_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    if let Some(base) = base {
        fx.dir = tempfile::tempdir_in(base).unwrap();
        fx.config.path = fx.dir.path().join("ledger.sqlite");
    }
    fx.config.retention_secs = DAY_SECS as u64;
    fx.config.telemetry_quota_bytes = 8 * MIB;
    fx.config.payment_reserve_bytes = 8 * MIB;
    fx.limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 10_000_000)].into(),
        ..LimitsConfig::default()
    }
    .validate("offline")
    .unwrap();
    let bound = fx.config.telemetry_quota_bytes + fx.config.payment_reserve_bytes + 16 * MIB;
    let mut ledger = fx.open();
    let start = t0();
    let mut run = Run {
        delivered: HashSet::new(),
        declines: BTreeMap::new(),
        approved_offline: 0,
        approved_online: 0,
    };
    let mut day_max = Vec::new();
    let mut seq = 0u64;
    let mut payment_no = 0i64;
    for day in 0..days {
        let mut max_bytes = 0u64;
        for tick in 0..DAY_SECS / TICK_SECS {
            let s = tick * TICK_SECS;
            let now = start.plus_secs((day * DAY_SECS + s) as u64);
            let link_up = !OUTAGE.contains(&s);
            // A minute of readings, group-committed.
            let events: Vec<_> = (0..TICK_SECS)
                .map(|k| reading(now.plus_secs(k as u64), seq + k as u64))
                .collect();
            seq += TICK_SECS as u64;
            let report = ledger.enqueue_telemetry(&events, now).unwrap();
            assert_eq!(report.shed, 0, "telemetry shed for lack of space");
            // The payments due in this minute.
            let due = ((day * DAY_SECS + s + TICK_SECS) * PAYMENTS_PER_DAY) / DAY_SECS
                - ((day * DAY_SECS + s) * PAYMENTS_PER_DAY) / DAY_SECS;
            for _ in 0..due {
                let a = attempt(payment_no);
                payment_no += 1;
                ledger.record_card_read(&a, now).unwrap();
                if link_up {
                    let ok = BackendOutcome::Approved {
                        reference: "R".into(),
                    };
                    ledger.apply_backend_outcome(&a.key, &ok, now).unwrap();
                    run.approved_online += 1;
                } else {
                    let d = ledger.decide_offline(&a.key, now).unwrap();
                    if d.approved {
                        run.approved_offline += 1;
                    }
                    for r in &d.reasons {
                        let v = serde_json::to_value(r).unwrap();
                        let name = v["limit"].as_str().unwrap_or("?").to_owned();
                        *run.declines.entry(name).or_default() += 1;
                    }
                }
            }
            if link_up {
                ledger.record_backend_contact(now).unwrap();
                run.drain(&mut ledger, now);
            }
            // The daemon's maintenance, every minute, idle between payments.
            loop {
                if !ledger.maintain_step(now, 500).unwrap().more {
                    break;
                }
            }
            ledger.checkpoint_wal(true).unwrap();
            let bytes = ledger.file_bytes();
            max_bytes = max_bytes.max(bytes);
            assert!(
                bytes <= bound,
                "day {day} {s} s: the ledger is {bytes} bytes, over {bound}"
            );
        }
        eprintln!(
            "day {}: largest {:.2} MiB, pending telemetry {} B, delivered kept {} B",
            day + 1,
            max_bytes as f64 / MIB as f64,
            ledger.telemetry_bytes(),
            ledger.delivered_telemetry_bytes()
        );
        day_max.push(max_bytes);
    }
    eprintln!(
        "{} payments: {} online, {} offline, declines {:?}",
        payment_no, run.approved_online, run.approved_offline, run.declines
    );
    let last = day_max[day_max.len() - 1] as f64;
    let before = day_max[day_max.len() - 2] as f64;
    assert!(
        last <= 1.05 * before,
        "still growing: {before} then {last} bytes"
    );
    assert!(
        !run.declines.contains_key("storage_low"),
        "declined for lack of space: {:?}",
        run.declines
    );
    // The 6-hour outages hold 500 payments a day; the outstanding count
    // (200) is what declines the rest, and nothing else does.
    assert_eq!(
        run.declines.keys().collect::<Vec<_>>(),
        ["outstanding_count"],
        "{:?}",
        run.declines
    );
    assert!(run.approved_offline >= 200 * days as u64);
    assert_eq!(ledger.outbox_depth().unwrap()[0].quarantined, 0);
}
