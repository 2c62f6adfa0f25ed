//! Ledger benchmarks (a bench binary, not a test): run with
//! `cargo bench -p store-and-forward --bench ledger` or through
//! `scripts/bench-ledger.sh`, which also counts fsyncs with strace.
//!
//! - checkout: offline decision + durable commit (p50/p99/p99.9), alone and
//!   with telemetry group commits interleaved;
//! - telemetry enqueue with group commit (events/s);
//! - outbox batch read + mark delivered (records/s);
//! - 10,000 checkouts with the daemon's maintenance running beside them on
//!   another thread (telemetry in, delivery marks, retention purges in
//!   bounded steps, TRUNCATE checkpoints while no checkout is in progress):
//!   each checkout timed from taking the ledger's lock to its second commit;
//!   the slowest must stay at or under 5 ms.
//!
//! `LEDGER_BENCH_DIR` picks the folder (default: the target folder; a tmpfs
//! would hide the fsync cost). `--checkouts N` runs only N checkouts (for
//! counting system calls); `--maintenance` only the checkouts with
//! maintenance beside them.

use std::path::PathBuf;
use std::time::Instant;

use hdrhistogram::Histogram;
use store_and_forward::counter::{CounterError, MonotonicCounter};
use store_and_forward::datakey::FileDataKey;
use store_and_forward::ledger::OutboxClass;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::{
    CardRead, Currency, EntryMode, Ledger, LedgerConfig, Money, NewAttempt, PaymentKey, Timestamp,
};

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("LEDGER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ledger-bench")
        });
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

/// Stands in for the TPM's NV counter, which costs the cart no fsync. (The
/// development `FileCounter` adds two fsyncs per offline approval.)
struct NvCounter(u64);

impl MonotonicCounter for NvCounter {
    fn read(&mut self) -> Result<u64, CounterError> {
        Ok(self.0)
    }
    fn increment(&mut self) -> Result<u64, CounterError> {
        self.0 += 1;
        Ok(self.0)
    }
}

fn open(dir: &std::path::Path) -> Ledger {
    open_with(dir, LedgerConfig::default())
}

fn open_with(dir: &std::path::Path, base: LedgerConfig) -> Ledger {
    let limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), i64::MAX / 2)].into(),
        max_outstanding_count: u32::MAX,
        velocity_max_per_card: u32::MAX,
        ..LimitsConfig::default()
    }
    .validate("offline")
    .expect("limits");
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        telemetry_quota_bytes: 1 << 40,
        payment_reserve_bytes: 0,
        ..base
    };
    let counter = NvCounter(1_000);
    let mut key = FileDataKey::new(dir.join("data.key"));
    let (mut l, _) = Ledger::open(
        config,
        limits,
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )
    .expect("open");
    l.record_backend_contact(Timestamp::now()).expect("contact");
    l
}

fn attempt(i: u64) -> NewAttempt {
    NewAttempt {
        key: PaymentKey::new(),
        amount: Money::new(100 + (i % 9_000) as i64, Currency::new("EUR").expect("EUR")),
        online_required: false,
        card: CardRead {
            masked_pan: "411111******1111".into(),
            fingerprint: vec![(i % 251) as u8; 32],
            emv_data: vec![0x9F; 180],
            encrypted_blob: vec![0xEE; 160],
            entry_mode: EntryMode::Contactless,
        },
    }
}

fn reading(seq: u64) -> TelemetryEvent {
    TelemetryEvent::Reading {
        at: Timestamp::now(),
        seq,
        temperature_c: 21.5,
        battery_pct: 80,
        rssi_dbm: -61,
        state: "shopping".into(),
        position: Some((12.5, 40.25)),
    }
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name}: n={} p50={:.3} ms p99={:.3} ms p99.9={:.3} ms max={:.3} ms",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

/// Returns (decision+commit histogram, whole checkout histogram), in µs.
fn checkouts(
    ledger: &mut Ledger,
    n: u64,
    telemetry_per_checkout: u64,
    housekeeping: bool,
) -> (Histogram<u64>, Histogram<u64>) {
    let mut decide = Histogram::<u64>::new(3).expect("histogram");
    let mut whole = Histogram::<u64>::new(3).expect("histogram");
    let mut seq = 0;
    let mut confirm = Vec::new();
    for i in 0..n {
        let a = attempt(i);
        let t0 = Instant::now();
        ledger
            .record_card_read(&a, Timestamp::now())
            .expect("attempt");
        let t1 = Instant::now();
        let d = ledger
            .decide_offline(&a.key, Timestamp::now())
            .expect("decide");
        let t2 = Instant::now();
        assert!(d.approved, "{:?}", d.reasons);
        decide.record((t2 - t1).as_micros() as u64).expect("record");
        whole.record((t2 - t0).as_micros() as u64).expect("record");
        // The backend confirms offline approvals as they are forwarded: keep
        // the outstanding exposure near a real cart's (about 100 payments;
        // the brief's caps are 200-500). Not in the syscall-counting run,
        // which counts the checkout's own fsyncs.
        confirm.push(a.key);
        if housekeeping && confirm.len() > 100 {
            let old = confirm.remove(0);
            let ok = store_and_forward::BackendOutcome::Approved {
                reference: "R".into(),
            };
            ledger
                .apply_backend_outcome(&old, &ok, Timestamp::now())
                .expect("confirm");
        }
        if telemetry_per_checkout > 0 {
            let events: Vec<_> = (0..telemetry_per_checkout)
                .map(|k| reading(seq + k))
                .collect();
            seq += telemetry_per_checkout;
            ledger
                .enqueue_telemetry(&events, Timestamp::now())
                .expect("telemetry");
        }
        if housekeeping && i % 500 == 499 {
            // The daemon's housekeeping timer, off the checkout path.
            ledger.maintain(Timestamp::now()).expect("maintain");
        }
    }
    (decide, whole)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--checkouts") {
        let n: u64 = args
            .get(pos + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        let dir = bench_dir("syscalls");
        let mut ledger = open(&dir);
        checkouts(&mut ledger, n, 0, false);
        println!("ran {n} checkouts");
        return;
    }
    if args.iter().any(|a| a == "--maintenance") {
        paced_alone(10_000);
        checkouts_with_maintenance(10_000);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }

    let dir = bench_dir("checkout");
    let mut ledger = open(&dir);
    checkouts(&mut ledger, 200, 0, true); // warm-up
    let (decide, whole) = checkouts(&mut ledger, 5_000, 0, true);
    report("offline decision + commit", &decide);
    report("whole checkout (attempt + decision, 2 commits)", &whole);
    let (decide, whole) = checkouts(&mut ledger, 5_000, 20, true);
    report("offline decision + commit, telemetry interleaved", &decide);
    report("whole checkout, telemetry interleaved", &whole);
    drop(ledger);

    paced_alone(10_000);
    checkouts_with_maintenance(10_000);

    let dir = bench_dir("telemetry");
    let mut ledger = open(&dir);
    let total = 259_200u64;
    let group = 1_000u64;
    let start = Instant::now();
    let mut seq = 0;
    while seq < total {
        let events: Vec<_> = (seq..seq + group).map(reading).collect();
        ledger
            .enqueue_telemetry(&events, Timestamp::now())
            .expect("enqueue");
        seq += group;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "telemetry enqueue: {total} events in groups of {group}: {secs:.2} s, {:.0} events/s",
        total as f64 / secs
    );

    let start = Instant::now();
    let mut done = 0usize;
    loop {
        let batch = ledger
            .take_batch(OutboxClass::Telemetry, 0, 1_000, 1 << 20, Timestamp::now())
            .expect("take");
        if batch.is_empty() {
            break;
        }
        let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
        ledger.mark_delivered(&ids, Timestamp::now()).expect("mark");
        done += ids.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "outbox batch read + mark delivered: {done} records in {secs:.2} s, {:.0} records/s",
        done as f64 / secs
    );
}

fn lock(l: &std::sync::Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// `n` checkouts (after 200 not counted) at a paced rhythm, "paying"
/// raised around each as the daemon does. Returns the whole checkout and,
/// within it, the time spent waiting for the ledger's lock, µs.
fn paced_checkouts(
    ledger: &std::sync::Mutex<Ledger>,
    paying: &std::sync::atomic::AtomicBool,
    n: u64,
) -> (Histogram<u64>, Histogram<u64>) {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let mut whole = Histogram::<u64>::new(3).expect("histogram");
    let mut waited = Histogram::<u64>::new(3).expect("histogram");
    let mut confirm = std::collections::VecDeque::new();
    let first = lock(ledger).checkout_first();
    for i in 0..n + 200 {
        let a = attempt(i);
        // As in the daemon: "paying" goes up when the shopper presses Pay,
        // before the card is presented (a tap takes hundreds of ms; 5 ms
        // here), so no TRUNCATE checkpoint starts during a checkout and one
        // already running ends before the card is read.
        paying.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        let t0 = Instant::now();
        let mut l = first.lock_checkout(ledger);
        let mut wait = t0.elapsed();
        l.record_card_read(&a, Timestamp::now()).expect("attempt");
        drop(l);
        let t1 = Instant::now();
        let mut l = first.lock_checkout(ledger);
        wait += t1.elapsed();
        let d = l.decide_offline(&a.key, Timestamp::now()).expect("decide");
        drop(l);
        let took = t0.elapsed();
        paying.store(false, Ordering::SeqCst);
        assert!(d.approved, "{:?}", d.reasons);
        if i >= 200 {
            whole.record(took.as_micros() as u64).expect("record");
            waited.record(wait.as_micros() as u64).expect("record");
        }
        confirm.push_back(a.key);
        if confirm.len() > 100
            && let Some(old) = confirm.pop_front()
        {
            let ok = store_and_forward::BackendOutcome::Approved {
                reference: "R".into(),
            };
            lock(ledger)
                .apply_backend_outcome(&old, &ok, Timestamp::now())
                .expect("confirm");
        }
        // A shopper's pace is far slower; a short gap lets the other
        // thread in as a real cart's would.
        std::thread::sleep(Duration::from_micros(500));
    }
    (whole, waited)
}

/// The same paced checkouts with nothing beside them: what this disk's
/// fsyncs alone give, the floor under the figure with maintenance.
fn paced_alone(n: u64) {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    let ledger = Mutex::new(open(&bench_dir("paced")));
    let (whole, _) = paced_checkouts(&ledger, &AtomicBool::new(false), n);
    report(
        "whole checkout (2 commits), paced, nothing beside it",
        &whole,
    );
}

/// Checkouts on this thread while another plays the daemon's uplink and
/// maintenance against the same locked ledger (as `cart-app` shares it).
fn checkouts_with_maintenance(n: u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let dir = bench_dir("maintenance");
    let config = LedgerConfig {
        // Everything delivered is past retention a second later: the
        // maintenance thread always has rows to purge.
        retention_secs: 1,
        ..LedgerConfig::default()
    };
    let ledger = Arc::new(Mutex::new(open_with(&dir, config)));
    let stop = Arc::new(AtomicBool::new(false));
    let paying = Arc::new(AtomicBool::new(false));
    // As in the daemon: background work takes the lock after a waiting
    // checkout.
    let first = lock(&ledger).checkout_first();
    let background = {
        let (ledger, stop, paying) = (ledger.clone(), stop.clone(), paying.clone());
        let first = first.clone();
        std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut rounds = 0u64;
            let mut purged = 0u64;
            let mut truncated = 0u64;
            // How long each kind of work holds the ledger's lock, µs.
            let mut held: Vec<(&str, Histogram<u64>)> = [
                "telemetry enqueue",
                "take batch",
                "mark delivered",
                "maintenance step",
                "TRUNCATE checkpoint",
                "checkpoint",
            ]
            .into_iter()
            .map(|k| (k, Histogram::<u64>::new(3).expect("histogram")))
            .collect();
            let mut timed = |kind: usize, t: Instant| {
                held[kind]
                    .1
                    .record(t.elapsed().as_micros() as u64)
                    .expect("record");
            };
            while !stop.load(Ordering::SeqCst) {
                // A second of the daemon's life in 100 ms: telemetry in,
                // the uplink's delivery marks, a maintenance run.
                let events: Vec<_> = (seq..seq + 200).map(reading).collect();
                seq += 200;
                {
                    let mut l = first.lock_background(&ledger);
                    let t = Instant::now();
                    l.enqueue_telemetry(&events, Timestamp::now())
                        .expect("telemetry");
                    timed(0, t);
                }
                for class in [OutboxClass::Payment, OutboxClass::Telemetry] {
                    let ids: Vec<i64> = {
                        let l = first.lock_background(&ledger);
                        let t = Instant::now();
                        let b = l
                            .take_batch(class, 0, 500, 1 << 20, Timestamp::now())
                            .expect("take");
                        timed(1, t);
                        b.iter().map(|r| r.id).collect()
                    };
                    if !ids.is_empty() {
                        let mut l = first.lock_background(&ledger);
                        let t = Instant::now();
                        l.mark_delivered(&ids, Timestamp::now()).expect("mark");
                        timed(2, t);
                    }
                }
                loop {
                    let step = {
                        let mut l = first.lock_background(&ledger);
                        let t = Instant::now();
                        let step = l.maintain_step(Timestamp::now(), 200).expect("maintain");
                        timed(3, t);
                        step
                    };
                    purged += step.purged_delivered + step.purged_payments;
                    if !step.more {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                // As the daemon does: TRUNCATE under the lock when no
                // payment is in progress, else PASSIVE on the checkpoint
                // connection with the ledger's lock free meanwhile.
                let checkpoint = if !paying.load(Ordering::SeqCst) {
                    let mut l = first.lock_background(&ledger);
                    let t = Instant::now();
                    let c = l.checkpoint_wal(true).expect("checkpoint");
                    timed(4, t);
                    c
                } else {
                    let handle = lock(&ledger).checkpoint_handle();
                    let t = Instant::now();
                    let c = handle.checkpoint(false).expect("checkpoint");
                    timed(5, t);
                    c
                };
                if checkpoint.truncated {
                    truncated += 1;
                }
                rounds += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (rounds, purged, truncated, held)
        })
    };
    let (whole, waited) = paced_checkouts(&ledger, &paying, n);
    stop.store(true, Ordering::SeqCst);
    let (rounds, purged, truncated, held) = background.join().expect("maintenance thread");
    for (kind, h) in &held {
        // The checkpoint runs on its own connection: its time is not a
        // hold of the ledger's lock.
        let what = if *kind == "checkpoint" {
            "PASSIVE checkpoint, run without the lock".to_owned()
        } else {
            format!("lock held by {kind}")
        };
        report(&format!("  {what}"), h);
    }
    report(
        "whole checkout (2 commits), maintenance + telemetry + delivery beside it",
        &whole,
    );
    report("  of which waiting for the ledger's lock", &waited);
    println!(
        "  beside it: {rounds} maintenance runs, {purged} rows purged, {truncated} TRUNCATE checkpoints; \
         slowest checkout {:.3} ms (target <= 5 ms): {}",
        whole.max() as f64 / 1000.0,
        if whole.max() <= 5_000 {
            "met"
        } else {
            "NOT MET"
        }
    );
}
