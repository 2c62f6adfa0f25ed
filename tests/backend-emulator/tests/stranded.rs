//! No payment is stranded: a payment record that cannot be read is
//! quarantined alone while the rest of the queue flows to the backend; the
//! quarantine is visible (status, an alarm in telemetry) and an operator
//! can release it; its offline exposure stays counted meanwhile.

mod common;

use std::time::Duration;

use common::*;
use mqtt_harness::Broker;
use store_and_forward::ledger::OutboxClass;
use store_and_forward::sync::SyncConfig;
use store_and_forward::{Currency, Money, PaymentKey, PaymentState, Timestamp};

/// The outbox's depth per class, read through the cart's shared ledger.
fn depth(
    ledger: &store_and_forward::sync::SharedLedger,
) -> Vec<store_and_forward::ledger::OutboxDepth> {
    ledger.lock().unwrap().outbox_depth().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_payment_is_quarantined_alone_and_the_rest_flows() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let reader = Reader::load();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path(), roomy_limits());
    let eur = Currency::new("EUR").unwrap();
    // Three offline approvals, the link not started yet.
    let keys: Vec<PaymentKey> = (0..3)
        .map(|i| reader.approve_offline(&ledger, Money::new(1_000 + i, eur)))
        .collect();
    // The middle one's sealed card data is damaged on disk.
    {
        let c = rusqlite::Connection::open(dir.path().join("ledger.sqlite")).unwrap();
        let n = c
            .execute(
                "UPDATE payments SET card_sealed = zeroblob(80) WHERE key = ?1",
                [keys[1].0.as_bytes().as_slice()],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let id = "cart-0031";
    let cart = Cart::start_on(
        link_config(&broker, broker.port(), id),
        broker.client_cert(id),
        id,
        SyncConfig {
            drain_interval_ms: 100,
            telemetry_linger_secs: 0,
            ..SyncConfig::default()
        },
        ledger.clone(),
        dir.path().to_path_buf(),
    );
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    cart.uplink.kick();
    let state = |k: &PaymentKey| ledger.lock().unwrap().payment(k).unwrap().unwrap().state;
    eventually(60, "the readable payments confirmed", || {
        state(&keys[0]) == PaymentState::Confirmed && state(&keys[2]) == PaymentState::Confirmed
    })
    .await;
    let backend: Vec<String> = em.payments().into_iter().map(|p| p.key).collect();
    assert!(backend.contains(&keys[0].to_string()), "{backend:?}");
    assert!(backend.contains(&keys[2].to_string()), "{backend:?}");
    assert!(!backend.contains(&keys[1].to_string()), "{backend:?}");

    // The unreadable one: quarantined, shown, still in the exposure.
    assert_eq!(state(&keys[1]), PaymentState::OfflineApproved);
    let status = ledger.lock().unwrap().status(Timestamp::now()).unwrap();
    assert_eq!(status.quarantined_payments.len(), 1, "{status:?}");
    let q = &status.quarantined_payments[0];
    assert_eq!(q.payment, keys[1].to_string());
    assert!(
        q.reason.contains("unseal") || q.reason.contains("card data"),
        "{q:?}"
    );
    assert_eq!(status.exposure.count, 1, "its exposure stays counted");
    assert_eq!(
        status
            .outbox
            .iter()
            .find(|d| d.class == "payment")
            .map(|d| (d.pending, d.quarantined)),
        Some((0, 1))
    );
    // An alarm for the backend went into telemetry with the key.
    eventually(30, "the alarm delivered", || {
        depth(&ledger)
            .iter()
            .all(|d| d.class != "telemetry" || d.pending == 0)
    })
    .await;
    let alarm = rusqlite::Connection::open(dir.path().join("ledger.sqlite"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE class = 2 AND instr(CAST(payload AS TEXT), ?1) > 0",
            [format!("payment_quarantined:{}", keys[1])],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(alarm, 1, "one alarm with the payment key");

    // Released: queued again (and set aside again: its data is still bad).
    assert_eq!(
        ledger
            .lock()
            .unwrap()
            .release_quarantined(&keys[1], Timestamp::now())
            .unwrap(),
        1
    );
    cart.uplink.kick();
    eventually(30, "quarantined again after the release", || {
        ledger
            .lock()
            .unwrap()
            .quarantined(10)
            .unwrap()
            .iter()
            .any(|(_, class, _)| *class == OutboxClass::Payment)
    })
    .await;
    cart.stop().await;
}

/// A self-hosted broker answers PUBACK reason 16 (no matching subscribers)
/// while the backend's subscriber is away: the message reached nobody.
/// With the default (`no_subscribers = "retry"`) the cart keeps its
/// records and sends them again with backoff; once the backend is back,
/// the payment is charged once and every telemetry event arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nobody_received_is_sent_again_once_the_backend_is_back() {
    use store_and_forward::ledger::RetryPolicy;
    use store_and_forward::telemetry::simulated_readings;

    init_logs();
    let broker = Broker::start();
    let reader = Reader::load();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path(), roomy_limits());
    let eur = Currency::new("EUR").unwrap();
    let key = reader.approve_offline(&ledger, Money::new(1_250, eur));
    ledger
        .lock()
        .unwrap()
        .enqueue_telemetry(
            &simulated_readings(40, Timestamp::now(), 3),
            Timestamp::now(),
        )
        .unwrap();
    let id = "cart-0032";
    let cart = Cart::start_on(
        link_config(&broker, broker.port(), id),
        broker.client_cert(id),
        id,
        SyncConfig {
            drain_interval_ms: 100,
            telemetry_linger_secs: 0,
            retry: RetryPolicy {
                base_ms: 200,
                max_ms: 1_000,
            },
            ..SyncConfig::default()
        },
        ledger.clone(),
        dir.path().to_path_buf(),
    );
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    cart.uplink.kick();
    // Nobody subscribed: every publish is answered 16, nothing is delivered.
    let pending = |class: &str| {
        depth(&ledger)
            .iter()
            .find(|d| d.class == class)
            .map_or(0, |d| d.pending)
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let traffic = cart.uplink.link().traffic();
    assert!(traffic.publishes_out >= 2, "it tried: {traffic:?}");
    assert!(pending("payment") >= 1, "the forward is still pending");
    assert!(pending("telemetry") >= 1, "the telemetry is still pending");

    // The backend comes back: delivered, each once.
    let em = emulator(&broker).await;
    let state = |k: &PaymentKey| ledger.lock().unwrap().payment(k).unwrap().unwrap().state;
    eventually(60, "the payment confirmed", || {
        state(&key) == PaymentState::Confirmed
    })
    .await;
    eventually(30, "the telemetry delivered", || pending("telemetry") == 0).await;
    let counts = em.counts();
    assert_eq!(counts.charged, 1, "{counts:?}");
    // The 40 readings and the cart's own events (link, payment), none twice.
    assert!(counts.telemetry_events >= 40, "{counts:?}");
    assert_eq!(counts.telemetry_duplicates, 0, "{counts:?}");
}

/// The return after an outage sends what waited through it at once,
/// telemetry too (no linger). When the broker is back before the
/// backend's subscriber, that first pass is answered 16 and its records
/// are retried: they were released from the linger already and must not
/// be held again for `telemetry_linger_secs` (600 s shipped) once the
/// backend is back. Shipped sync settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waited_through_an_outage_goes_once_the_backend_is_back_without_lingering() {
    use store_and_forward::telemetry::simulated_readings;

    init_logs();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path(), roomy_limits());
    let events = 3_000;
    {
        let mut l = ledger.lock().unwrap();
        let readings = simulated_readings(events, Timestamp(Timestamp::now().0 - 3_600_000), 5);
        for chunk in readings.chunks(1_000) {
            l.enqueue_telemetry(chunk, Timestamp::now()).unwrap();
        }
    }
    broker.stop();
    let id = "cart-0033";
    let cart = Cart::start_on(
        link_config(&broker, broker.port(), id),
        broker.client_cert(id),
        id,
        SyncConfig::default(),
        ledger.clone(),
        dir.path().to_path_buf(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.resume();
    let back = Timestamp::now();
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    // The flush pass meets a broker without the backend: 16, retried.
    eventually(20, "the first pass answered 16", || {
        cart.uplink.report().retried > 0
    })
    .await;
    let em = emulator(&broker).await;
    let t = std::time::Instant::now();
    // Records queued before the return; what the cart queues after it
    // (its own link events) lingers as designed.
    let outage_left = || {
        depth(&ledger)
            .iter()
            .any(|d| d.pending > 0 && d.oldest_pending.is_some_and(|o| o.0 < back.0))
    };
    eventually(60, "the outage's telemetry delivered", || !outage_left()).await;
    let took = t.elapsed();
    let counts = em.counts();
    assert!(counts.telemetry_events >= events as u64, "{counts:?}");
    assert_eq!(counts.telemetry_duplicates, 0, "{counts:?}");
    assert!(
        took < Duration::from_secs(15),
        "delivered {took:?} after the backend was back"
    );
    cart.stop().await;
    em.shutdown().await;
}
