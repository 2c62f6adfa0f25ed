//! The checkout's offline decision and durable commit (the second fsync;
//! the TPM counter's increment is started then, and settled once the
//! decision is shown: both are timed), three ways side by side:
//!
//! 1. the counter stood in for in memory (the ledger bench's figure);
//! 2. the TPM's NV counter on swtpm, and the data key sealed in it;
//! 3. the same, with the sync draining to mosquitto over mutual TLS and
//!    telemetry enqueued from another thread meanwhile (the daemon's
//!    runtime and sensors), all through the one shared ledger.
//!
//! `cargo bench -p cart-app --bench checkout` (needs mosquitto and swtpm);
//! `CHECKOUT_BENCH_N` checkouts per run (2,000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cart_app::tpm::CartTpm;
use hal::identity::tpm::TpmConfig;
use hdrhistogram::Histogram;
use mqtt_harness::Broker;
use store_and_forward::counter::{CounterError, MonotonicCounter};
use store_and_forward::datakey::FileDataKey;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::sync::{SyncConfig, Uplink};
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::uplink::{
    self, LinkConfig, SwappableClientCert, certified_key_from_pem_files,
};
use store_and_forward::{
    BackendOutcome, CardRead, Currency, EntryMode, Ledger, LedgerConfig, Money, NewAttempt,
    PaymentKey, Timestamp,
};
use swtpm_harness::Swtpm;

/// The counter in memory: no TPM, no fsync.
struct MemoryCounter(u64);

impl MonotonicCounter for MemoryCounter {
    fn read(&mut self) -> Result<u64, CounterError> {
        Ok(self.0)
    }
    fn increment(&mut self) -> Result<u64, CounterError> {
        self.0 += 1;
        Ok(self.0)
    }
}

fn limits() -> store_and_forward::policy::Limits {
    LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), i64::MAX / 2)].into(),
        max_outstanding_count: u32::MAX,
        velocity_max_per_card: u32::MAX,
        ..LimitsConfig::default()
    }
    .validate("offline")
    .expect("limits")
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

/// `n` checkouts through the shared ledger as the payments thread makes
/// them (the lock taken per step). Returns, in µs: the decision + commit
/// (what the shopper waits for), and the wait for the counter's increment
/// the daemon settles once the decision is shown.
fn checkouts(ledger: &Mutex<Ledger>, n: u64) -> (Histogram<u64>, Histogram<u64>) {
    let mut decide = Histogram::<u64>::new(3).expect("histogram");
    let mut settle = Histogram::<u64>::new(3).expect("histogram");
    let mut wait = Histogram::<u64>::new(3).expect("histogram");
    let mut confirm = Vec::new();
    // As the daemon's checkout does: ahead of waiting background work.
    let first = ledger.lock().unwrap().checkout_first();
    for i in 0..n {
        let a = attempt(i);
        first
            .lock_checkout(ledger)
            .record_card_read(&a, Timestamp::now())
            .expect("attempt");
        let t = Instant::now();
        let mut l = first.lock_checkout(ledger);
        wait.record(t.elapsed().as_micros() as u64).expect("record");
        let d = l.decide_offline(&a.key, Timestamp::now()).expect("decide");
        drop(l);
        decide
            .record(t.elapsed().as_micros() as u64)
            .expect("record");
        assert!(d.approved, "{:?}", d.reasons);
        // As the daemon does once the reader shows the decision.
        let t = Instant::now();
        ledger.lock().unwrap().settle_counter();
        settle
            .record(t.elapsed().as_micros() as u64)
            .expect("record");
        // The backend confirms as forwards arrive: keep the outstanding
        // exposure near a real cart's.
        confirm.push(a.key);
        if confirm.len() > 100 {
            let old = confirm.remove(0);
            let ok = BackendOutcome::Approved {
                reference: "R".into(),
            };
            let _ = ledger
                .lock()
                .unwrap()
                .apply_backend_outcome(&old, &ok, Timestamp::now());
        }
    }
    report(
        "    (of the decision: waiting for the ledger's lock)",
        &wait,
    );
    (decide, settle)
}

/// Both figures of a [`checkouts`] run.
fn report_run(name: &str, (decide, settle): &(Histogram<u64>, Histogram<u64>)) {
    report(&format!("  {name}: decision + commit"), decide);
    report(
        &format!("  {name}: then the counter's increment settled"),
        settle,
    );
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

fn open(
    dir: &std::path::Path,
    counter: Box<dyn MonotonicCounter>,
    tpm: Option<&CartTpm>,
) -> Ledger {
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        ..LedgerConfig::default()
    };
    let (ledger, _) = match tpm {
        Some(t) => Ledger::open(
            config,
            limits(),
            counter,
            &mut t.data_key(),
            Timestamp::now(),
        ),
        None => Ledger::open(
            config,
            limits(),
            counter,
            &mut FileDataKey::new(dir.join("data.key")),
            Timestamp::now(),
        ),
    }
    .expect("open the ledger");
    let mut ledger = ledger;
    // A backend heard from: not stale.
    ledger
        .record_backend_contact(Timestamp::now())
        .expect("contact");
    ledger
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("CHECKOUT_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let base = std::env::var_os("CHECKOUT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/checkout-bench")
        });
    let fresh = |name: &str| {
        let d = base.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("bench dir");
        d
    };
    println!("offline decision + durable commit, {n} checkouts each:");

    // 1. The counter in memory.
    let l = Mutex::new(open(&fresh("memory"), Box::new(MemoryCounter(7)), None));
    report_run("counter in memory", &checkouts(&l, n));

    // 2. The TPM's NV counter and sealed data key on swtpm.
    let sim = Swtpm::start();
    let tpm = CartTpm::open(TpmConfig {
        tcti: sim.tcti(),
        ..TpmConfig::default()
    })
    .expect("open the TPM");
    let l = Mutex::new(open(
        &fresh("tpm"),
        Box::new(tpm.counter().expect("counter")),
        Some(&tpm),
    ));
    report_run("swtpm NV counter", &checkouts(&l, n));
    drop(l);

    // 3. The same with a drain and telemetry running.
    let broker = Broker::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ledger = Arc::new(Mutex::new(open(
        &fresh("tpm-drain"),
        Box::new(tpm.counter().expect("counter")),
        Some(&tpm),
    )));
    let cart = "cart-0100";
    let (cert, key) = broker.client_cert(cart);
    let identity = Arc::new(SwappableClientCert::new(
        certified_key_from_pem_files(&cert, &key).expect("identity"),
    ));
    let link_config = LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: cart.into(),
        ca_file: Some(broker.ca_pem_path()),
        server_name: Some("localhost".into()),
        ..LinkConfig::default()
    };
    let stop = tokio::sync::watch::channel(false);
    let uplink = {
        let _guard = rt.enter();
        let (link, incoming) =
            uplink::start(link_config, Some(identity), vec![]).expect("start the link");
        let u = Uplink::new(
            SyncConfig {
                cart_id: cart.into(),
                telemetry_linger_secs: 0,
                drain_interval_ms: 50,
                // No backend subscribes to this broker: its PUBACKs say
                // "no matching subscribers", which would otherwise be
                // retried with backoff instead of drained.
                no_subscribers: store_and_forward::sync::NoSubscribers::Delivered,
                ..SyncConfig::default()
            },
            ledger.clone(),
            link,
            None,
        );
        rt.spawn(u.clone().run(incoming, stop.1.clone()));
        u
    };
    assert!(rt.block_on(uplink.link().wait_up(Duration::from_secs(20))));
    let running = Arc::new(AtomicBool::new(true));
    let sensors = {
        let (ledger, running, uplink) = (ledger.clone(), running.clone(), uplink.clone());
        let first = ledger.lock().unwrap().checkout_first();
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while running.load(Ordering::Relaxed) {
                let events: Vec<_> = (0..50)
                    .map(|k| TelemetryEvent::Reading {
                        at: Timestamp::now(),
                        seq: seq + k,
                        temperature_c: 21.5,
                        battery_pct: 80,
                        rssi_dbm: -61,
                        state: "shopping".into(),
                        position: Some((12.5, 40.25)),
                    })
                    .collect();
                seq += 50;
                let _ = first
                    .lock_background(&ledger)
                    .enqueue_telemetry(&events, Timestamp::now());
                uplink.kick();
                std::thread::sleep(Duration::from_millis(5));
            }
            seq
        })
    };
    let h = checkouts(&ledger, n);
    running.store(false, Ordering::Relaxed);
    let events = sensors.join().expect("sensors");
    let report_now = uplink.report();
    report_run("swtpm NV counter, drain and telemetry running", &h);
    println!(
        "    meanwhile: {events} telemetry events enqueued (10,000/s), {} sent in {} messages, {} payments forwarded",
        report_now.telemetry.records, report_now.telemetry.messages, report_now.payments.records
    );
    let _ = stop.0.send(true);
    rt.block_on(uplink.link().shutdown());
}
