//! Nobody pays for goods they did not take, end to end through a real
//! mosquitto: an approval the shopper never saw reaches the backend as a
//! `payment_reversal`, exactly once, and comes back as `reversal_result`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mqtt_harness::Broker;
use store_and_forward::sync::SyncConfig;
use store_and_forward::wire::down::{ReversalOutcome, ReversalResult};
use store_and_forward::wire::up::AckResult;
use store_and_forward::wire::{Kind, encode, topics};
use store_and_forward::{
    BackendOutcome, Currency, Ledger, Money, NewAttempt, PaymentKey, PaymentState, Timestamp,
};

fn sync() -> SyncConfig {
    SyncConfig {
        auth_timeout_ms: 1_500,
        drain_interval_ms: 100,
        telemetry_linger_secs: 0,
        ..SyncConfig::default()
    }
}

fn state(ledger: &Arc<Mutex<Ledger>>, key: &PaymentKey) -> PaymentState {
    ledger.lock().unwrap().payment(key).unwrap().unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_approval_after_an_offline_decline_is_reversed_exactly_once() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let reader = Reader::load();
    let cart = Cart::start(&broker, broker.port(), "cart-0071", sync(), roomy_limits());
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);

    // The processor answers this card after 8 s; the cart waits 1.5 s, then
    // the offline policy declines (the basket needs online authorization).
    let key = PaymentKey::new();
    let amount = Money::new(3_450, Currency::new("EUR").unwrap());
    let card = reader.read(reader.card("slow-online"), &key, amount);
    let attempt = NewAttempt {
        key,
        amount,
        online_required: true,
        card: card.clone(),
    };
    cart.ledger
        .lock()
        .unwrap()
        .record_card_read(&attempt, Timestamp::now())
        .unwrap();
    let online = cart
        .uplink
        .authorize_online(&key, amount, &card, Timestamp::now())
        .await;
    assert!(online.is_err(), "no answer within the timeout: {online:?}");
    let d = cart
        .ledger
        .lock()
        .unwrap()
        .decide_offline(&key, Timestamp::now())
        .unwrap();
    assert!(!d.approved);
    // The shopper leaves with nothing. Then the approval arrives.
    eventually(60, "the late approval reversed", || {
        state(&cart.ledger, &key) == PaymentState::Reversed
    })
    .await;
    let counts = em.counts();
    assert_eq!(counts.charged, 1, "{counts:?}");
    assert_eq!(counts.reversals, 1, "{counts:?}");
    assert_eq!(counts.reversed, 1, "{counts:?}");
    let view = em
        .payments()
        .into_iter()
        .find(|p| p.key == key.to_string())
        .unwrap();
    assert!(view.reversed);
    assert!(matches!(
        view.outcome,
        Some(BackendOutcome::Approved { .. })
    ));
    let acked = |result: AckResult| {
        em.acks().iter().any(|(_, a)| {
            a.of == Kind::ReversalResult && a.of_id == key.to_string() && a.result == result
        })
    };
    eventually(30, "reversal_result acknowledged", || {
        acked(AckResult::Applied)
    })
    .await;

    // The result received twice: acknowledged as ignored, nothing changes,
    // and no second reversal goes out.
    let again = encode(
        Kind::ReversalResult,
        "cart-0071",
        &key.to_string(),
        Timestamp::now(),
        &ReversalResult {
            result: ReversalOutcome::Reversed,
        },
    );
    em.publish_raw(&topics::down("cart-0071", Kind::ReversalResult), again)
        .await
        .unwrap();
    eventually(30, "the repeat acknowledged as ignored", || {
        acked(AckResult::Ignored)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&cart.ledger, &key), PaymentState::Reversed);
    let counts = em.counts();
    assert_eq!((counts.reversals, counts.reversed), (1, 1), "{counts:?}");
    cart.stop().await;
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_doubt_is_asked_about_and_an_approval_there_is_reversed() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let reader = Reader::load();
    let dir = tempfile::tempdir().unwrap();
    let id = "cart-0072";
    let eur = Currency::new("EUR").unwrap();
    let charged = PaymentKey::new();
    let unseen = PaymentKey::new();
    {
        // The online request reaches the backend (approved, charged), then
        // the cart stops before it records any decision. A second attempt
        // stops before its request left.
        let ledger = open_ledger(dir.path(), roomy_limits());
        let cart = Cart::start_on(
            link_config(&broker, broker.port(), id),
            broker.client_cert(id),
            id,
            sync(),
            ledger.clone(),
            dir.path().to_path_buf(),
        );
        assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
        for (key, minor) in [(charged, 1_200), (unseen, 1_300)] {
            let amount = Money::new(minor, eur);
            let card = reader.read(reader.card("chip-approve"), &key, amount);
            let a = NewAttempt {
                key,
                amount,
                online_required: false,
                card: card.clone(),
            };
            ledger
                .lock()
                .unwrap()
                .record_card_read(&a, Timestamp::now())
                .unwrap();
            if key == charged {
                let outcome = cart
                    .uplink
                    .authorize_online(&key, amount, &card, Timestamp::now())
                    .await
                    .unwrap();
                assert!(matches!(outcome, BackendOutcome::Approved { .. }));
            }
        }
        cart.stop().await;
        let ledger = Arc::try_unwrap(ledger)
            .unwrap_or_else(|_| panic!("the stopped cart still holds the ledger"));
        drop(ledger);
    }
    // Restart: both are in doubt, each with an inquiry.
    let ledger = open_ledger(dir.path(), roomy_limits());
    assert_eq!(state(&ledger, &charged), PaymentState::InDoubt);
    let cart = Cart::start_on(
        link_config(&broker, broker.port(), id),
        broker.client_cert(id),
        id,
        sync(),
        ledger.clone(),
        dir.path().to_path_buf(),
    );
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    cart.uplink.kick();
    eventually(60, "both in-doubt attempts resolved", || {
        state(&ledger, &charged) == PaymentState::Reversed
            && state(&ledger, &unseen) == PaymentState::Cancelled
    })
    .await;
    let counts = em.counts();
    assert_eq!(counts.inquiries, 2, "{counts:?}");
    assert_eq!(counts.forwards, 0, "never forwarded as a sale: {counts:?}");
    assert_eq!(counts.charged, 1, "{counts:?}");
    assert_eq!((counts.reversals, counts.reversed), (1, 1), "{counts:?}");
    assert_eq!(counts.reversal_unknown, 0, "{counts:?}");
    cart.stop().await;
    em.shutdown().await;
}
