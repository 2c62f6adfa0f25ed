//! The 72-hour backlog: 259,200 telemetry events (one reading a second)
//! and 500 offline payments in the ledger, drained to a real mosquitto over
//! mutual TLS (and, for comparison with the brief's peer, plain TCP). Timed
//! from the cart's link start with the broker reachable (so TCP, TLS and
//! CONNACK are inside the figure) until the last record is acknowledged;
//! the backend emulator's counts confirm what arrived.
//!
//! Run: `cargo bench -p backend-emulator --bench backlog` (release build).
//! `BACKLOG_EVENTS` / `BACKLOG_PAYMENTS` change the size.
//!
//! `BACKLOG_OUTAGE_SECS=120` measures the return instead, with the shipped
//! link and sync settings: the broker is down when the cart starts, the
//! cart backs off (its ceiling grows to 60 s) for that long, then the broker
//! starts and the clock starts with it. Figures: broker back to the first
//! payment acknowledged, to the CONNACK, to everything acknowledged, and the
//! drain itself (CONNACK to all acknowledged). "All" is every record queued
//! before the broker's return; telemetry the cart queues after it (the
//! payments' outcomes) lingers as designed and is not waited for.
//! `BACKLOG_RUNS` (5) runs, each printed, then the medians.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use mqtt_harness::Broker;
use store_and_forward::ledger::OutboxClass;
use store_and_forward::sync::SyncConfig;
use store_and_forward::telemetry::simulated_readings;
use store_and_forward::{Currency, Money, NewAttempt, PaymentKey, Timestamp};

async fn run(plain: bool, events: usize, payments: usize) {
    let broker = if plain {
        Broker::start_plain()
    } else {
        Broker::start()
    };
    let em = emulator_for(&broker).await;
    let reader = Reader::load();
    let id = "cart-0100";
    let mut link = link_config(&broker, broker.port(), id);
    link.tls = !plain;
    link.backoff_max_ms = 250;
    let sync = SyncConfig {
        drain_interval_ms: 50,
        telemetry_linger_secs: 0,
        ..SyncConfig::default()
    };
    // Build the backlog in the ledger before the cart's link starts.
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path(), roomy_limits());
    let t_fill = Instant::now();
    fill(&ledger, &reader, events, payments);
    let fill = t_fill.elapsed();

    let t0 = Instant::now();
    let cart = Cart::start_on(
        link,
        broker.client_cert(id),
        id,
        sync,
        ledger,
        dir.path().to_path_buf(),
    );
    let drained = loop {
        let done = {
            let l = cart.ledger.lock().unwrap();
            !l.has_pending(OutboxClass::Payment).unwrap()
                && !l.has_pending(OutboxClass::Telemetry).unwrap()
        };
        if done {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "backlog not drained in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (em.counts().telemetry_events as usize) < events
        || (em.counts().forwards as usize) < payments
    {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = t0.elapsed();
    // The report is updated just after the ledger marks: let it catch up.
    while (cart.uplink.report().telemetry.records as usize) < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = cart.uplink.report();
    let c = em.counts();
    println!(
        "{}: {events} events + {payments} payments; filled in {:.1} s; drained (all PUBACKed) in {:.2} s; backend had them all after {:.2} s",
        if plain { "plain TCP" } else { "mutual TLS" },
        fill.as_secs_f64(),
        drained.as_secs_f64(),
        received.as_secs_f64()
    );
    println!(
        "  telemetry: {} messages, {:.1} events/message, {:.1} wire bytes/event, {:.5} billable units/event (one message per event: 1)",
        r.telemetry.messages,
        r.telemetry.records as f64 / r.telemetry.messages.max(1) as f64,
        r.telemetry.wire_bytes_per_record(),
        r.telemetry.units_per_record()
    );
    println!(
        "  payments: {} messages, {:.0} wire bytes/payment; backend: {} events ({} duplicates), {} forwards, {} charged",
        r.payments.messages,
        r.payments.wire_bytes_per_record(),
        c.telemetry_events,
        c.telemetry_duplicates,
        c.forwards,
        c.charged
    );
    cart.stop().await;
    em.shutdown().await;
}

/// One return after an outage (see the file's doc); returns (first
/// payment, CONNACK, all acknowledged), each from the broker's return.
async fn outage_run(events: usize, payments: usize, outage: Duration) -> [Duration; 3] {
    let broker = Broker::start();
    let em = emulator_for(&broker).await;
    let reader = Reader::load();
    let id = "cart-0100";
    // The shipped settings, but for where the broker is.
    let shipped = store_and_forward::uplink::LinkConfig::default();
    let mut link = link_config(&broker, broker.port(), id);
    link.keep_alive_secs = shipped.keep_alive_secs;
    link.backoff_base_ms = shipped.backoff_base_ms;
    link.backoff_max_ms = shipped.backoff_max_ms;
    link.connect_timeout_secs = shipped.connect_timeout_secs;
    let sync = SyncConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path(), roomy_limits());
    fill(&ledger, &reader, events, payments);
    broker.stop();
    let cart = Cart::start_on(
        link,
        broker.client_cert(id),
        id,
        sync,
        ledger,
        dir.path().to_path_buf(),
    );
    tokio::time::sleep(outage).await;
    broker.resume();
    let t0 = Instant::now();
    let back = Timestamp::now();
    let mut first = None;
    let mut connack = None;
    let all = loop {
        // The backlog is what was queued before the broker's return. The
        // telemetry the cart queues after it (the payments' outcomes, as
        // the backend's confirmations come down) lingers as designed
        // (`telemetry_linger_secs`, 600 s shipped) unless a flush pass
        // happens to pick it up: it is not waited for (as in the fleet
        // simulation's outage scenario).
        let (pay_left, tel_left) = {
            let l = cart.ledger.lock().unwrap();
            let tel_left = l.has_pending(OutboxClass::Telemetry).unwrap()
                && l
                    // The lowest pending telemetry record, due or not.
                    .take_batch(
                        OutboxClass::Telemetry,
                        0,
                        1,
                        usize::MAX,
                        Timestamp(i64::MAX),
                    )
                    .unwrap()
                    .first()
                    .is_some_and(|r| r.created.0 < back.0);
            (l.has_pending(OutboxClass::Payment).unwrap(), tel_left)
        };
        if connack.is_none() && cart.uplink.link().state().borrow().up {
            connack = Some(t0.elapsed());
        }
        if first.is_none() && cart.uplink.report().payments.records > 0 {
            first = Some(t0.elapsed());
        }
        if !pay_left && !tel_left {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "not drained in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let first = first.unwrap_or(all);
    let connack = connack.unwrap_or(all);
    println!(
        "  broker back -> CONNACK {:.2} s, first payment acknowledged {:.2} s, all acknowledged {:.2} s (drain {:.2} s; {} records retried)",
        connack.as_secs_f64(),
        first.as_secs_f64(),
        all.as_secs_f64(),
        (all - connack).as_secs_f64(),
        cart.uplink.report().retried
    );
    cart.stop().await;
    em.shutdown().await;
    [first, connack, all]
}

/// The backlog in the ledger: `events` readings over 72 h and `payments`
/// offline approvals.
fn fill(
    ledger: &std::sync::Arc<std::sync::Mutex<store_and_forward::Ledger>>,
    reader: &Reader,
    events: usize,
    payments: usize,
) {
    let start = Timestamp::now().0 - 72 * 3600 * 1000;
    let all = simulated_readings(events, Timestamp(start), 7);
    let mut l = ledger.lock().unwrap();
    for chunk in all.chunks(1_000) {
        l.enqueue_telemetry(chunk, Timestamp::now()).unwrap();
    }
    let eur = Currency::new("EUR").unwrap();
    for i in 0..payments {
        let key = PaymentKey::new();
        let amount = Money::new(500 + i as i64, eur);
        let card = reader.read(reader.card("chip-approve"), &key, amount);
        l.record_card_read(
            &NewAttempt {
                key,
                amount,
                online_required: false,
                card,
            },
            Timestamp::now(),
        )
        .unwrap();
        assert!(l.decide_offline(&key, Timestamp::now()).unwrap().approved);
    }
}

async fn emulator_for(broker: &Broker) -> backend_emulator::Emulator {
    if matches!(broker.mode(), mqtt_harness::Mode::Tls) {
        emulator(broker).await
    } else {
        let mut cfg = link_config(broker, broker.port(), "backend");
        cfg.tls = false;
        let em = backend_emulator::Emulator::start(backend_emulator::EmulatorConfig {
            link: cfg,
            identity: None,
            fixtures: fixtures_dir(),
        })
        .await
        .unwrap();
        assert!(em.wait_up(Duration::from_secs(20)).await);
        em
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = std::env::var("BACKLOG_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(259_200);
    let payments = std::env::var("BACKLOG_PAYMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(outage) = std::env::var("BACKLOG_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let runs: usize = std::env::var("BACKLOG_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        println!(
            "return after a {outage} s broker outage, mutual TLS, shipped settings, {events} events + {payments} payments waiting, {runs} runs:"
        );
        let mut all: Vec<[Duration; 3]> = Vec::new();
        for _ in 0..runs {
            all.push(rt.block_on(outage_run(events, payments, Duration::from_secs(outage))));
        }
        let median = |i: usize| {
            let mut v: Vec<Duration> = all.iter().map(|r| r[i]).collect();
            v.sort();
            v[v.len() / 2].as_secs_f64()
        };
        let mut drains: Vec<Duration> = all.iter().map(|r| r[2] - r[1]).collect();
        drains.sort();
        println!(
            "  medians: first payment {:.2} s, CONNACK {:.2} s, all {:.2} s, drain {:.2} s",
            median(0),
            median(1),
            median(2),
            drains[drains.len() / 2].as_secs_f64()
        );
        return;
    }
    rt.block_on(run(false, events, payments));
    rt.block_on(run(true, events, payments));
}
