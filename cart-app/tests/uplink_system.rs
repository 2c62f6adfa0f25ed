//! The daemon's own checkout ([`cart_app::checkout::Checkout`]) with the
//! reader simulator on a real pseudo-terminal, the cart's uplink and the
//! backend emulator through a real mosquitto over mutual TLS, with the broker
//! stopped and restarted and connections cut mid-publish while checkouts go
//! on. What the shopper was shown stays true and every payment reaches the
//! backend exactly once.
//!
//! `SYSTEM_CHECKOUTS` sets the number of checkouts (default 500).

#[path = "../../tests/backend-emulator/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cart_app::checkout::{Checkout, Shown};
use common::*;
use hal::reader::driver::{DriverConfig, SerialReader};
use hal::reader::fixtures::ProcessorBehaviour;
use hal::reader::sim::{SimConfig, SimTimings, spawn_pty};
use mqtt_harness::Broker;
use rand::Rng;
use store_and_forward::sync::SyncConfig;
use store_and_forward::{Currency, Money, PaymentKey, PaymentState};

const CARDS: &[&str] = &[
    "chip-approve",
    "contactless-approve",
    "chip-pin-approve",
    "decline-insufficient-funds",
    "decline-when-forwarded",
    "online-never-answers",
    "slow-online",
];

#[test]
fn checkouts_through_outages_reach_the_backend_exactly_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("SYSTEM_CHECKOUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    init_logs();
    let broker = Arc::new(Broker::start());
    let proxy = Arc::new(broker.fault_proxy());
    let emulator = rt.block_on(emulator(&broker));
    let cards = Reader::load();
    let sync = SyncConfig {
        auth_timeout_ms: 1_500,
        drain_interval_ms: 100,
        telemetry_linger_secs: 0,
        resend_unanswered_secs: 3,
        retry: store_and_forward::ledger::RetryPolicy {
            base_ms: 50,
            max_ms: 1_000,
        },
        ..SyncConfig::default()
    };
    let cart = {
        let _g = rt.enter();
        Cart::start(&broker, proxy.port(), "cart-0001", sync, roomy_limits())
    };
    assert!(
        rt.block_on(cart.uplink.link().wait_up(Duration::from_secs(20))),
        "cart connects"
    );
    // The daemon's checkout, on this thread as on the daemon's reader
    // thread, with the reader simulator behind a real serial line.
    let checkout = Checkout::new(
        cart.ledger.clone(),
        Some((cart.uplink.clone(), rt.handle().clone())),
    );
    let mut sim_config = SimConfig::from_fixtures(&fixtures_dir()).unwrap();
    sim_config.engine.timings = SimTimings {
        present: Duration::from_millis(1),
        pin: Duration::from_millis(1),
        read: Duration::from_millis(1),
    };
    let sim = spawn_pty(sim_config).unwrap();
    let mut reader =
        SerialReader::open(sim.path().to_str().unwrap(), DriverConfig::default()).unwrap();

    // Chaos: stop and restart the broker, and cut connections mid-publish.
    let chaos_broker = broker.clone();
    let chaos_proxy = proxy.clone();
    let (stop_chaos, mut chaos_stopped) = tokio::sync::watch::channel(false);
    let chaos = rt.spawn(async move {
        let mut outages = 0u32;
        let mut cuts = 0u32;
        let mut round = 0u32;
        loop {
            let pause = rand::rng().random_range(200..600);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            // Stop when the checkouts are done and the broker went down
            // at least three times.
            if *chaos_stopped.borrow_and_update() && outages >= 3 {
                break;
            }
            round += 1;
            if round.is_multiple_of(4) {
                let b = chaos_broker.clone();
                tokio::task::spawn_blocking(move || b.stop()).await.unwrap();
                let down_for = rand::rng().random_range(300..900);
                tokio::time::sleep(Duration::from_millis(down_for)).await;
                let b = chaos_broker.clone();
                tokio::task::spawn_blocking(move || b.resume())
                    .await
                    .unwrap();
                outages += 1;
            } else {
                chaos_proxy.cut_all();
                cuts += 1;
            }
        }
        (outages, cuts)
    });

    let eur = Currency::new("EUR").unwrap();
    let mut shown: HashMap<PaymentKey, (String, PaymentState)> = HashMap::new();
    for i in 0..n {
        let card = CARDS[i % CARDS.len()];
        // Mostly fast cards; the slow one (8 s online) now and then.
        let card = if card == "slow-online" && i % 35 != 6 {
            "chip-approve"
        } else {
            card
        };
        let amount = Money::new(rand::rng().random_range(100..20_000), eur);
        sim.queue_card(card);
        let paid = checkout
            .pay(&mut reader, amount, false, &mut |_| {}, &|| false)
            .unwrap_or_else(|e| panic!("checkout {i} with {card}: {e}"));
        let state = match &paid.shown {
            Shown::ApprovedOnline { .. } => PaymentState::OnlineApproved,
            Shown::DeclinedOnline { .. } => PaymentState::OnlineDeclined,
            Shown::ApprovedOffline => PaymentState::OfflineApproved,
            other => panic!("checkout {i} with {card}: shown {other:?} (roomy limits)"),
        };
        assert_eq!(paid.state, Some(state), "the ledger holds what was shown");
        shown.insert(paid.key, (card.to_owned(), state));
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = stop_chaos.send(true);
    let (outages, cuts) = rt.block_on(chaos).unwrap();
    assert!(broker.is_running());
    assert!(outages >= 3, "the broker went down {outages} times");

    // Everything settles once the link stays up.
    let settled = |cart: &Cart| {
        let l = cart.ledger.lock().unwrap();
        let open = l
            .payments()
            .unwrap()
            .iter()
            .filter(|p| {
                matches!(
                    p.state,
                    PaymentState::OfflineApproved
                        | PaymentState::Forwarded
                        | PaymentState::InDoubt
                        | PaymentState::CardRead
                )
            })
            .count();
        let pending = l
            .outbox_depth()
            .unwrap()
            .iter()
            .find(|d| d.class == "payment")
            .map(|d| d.pending)
            .unwrap_or(0);
        open == 0 && pending == 0
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !settled(&cart) {
        if std::time::Instant::now() > deadline {
            let l = cart.ledger.lock().unwrap();
            let mut states: HashMap<PaymentState, usize> = HashMap::new();
            for p in l.payments().unwrap() {
                *states.entry(p.state).or_default() += 1;
            }
            panic!(
                "not settled: {states:?}; outbox {:?}; link {:?}; backend {:?}",
                l.outbox_depth().unwrap(),
                *cart.uplink.link().state().borrow(),
                emulator.counts()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let payments = cart.ledger.lock().unwrap().payments().unwrap();
    assert_eq!(payments.len(), n);
    let backend: HashMap<String, backend_emulator::PaymentView> = emulator
        .payments()
        .into_iter()
        .map(|p| (p.key.clone(), p))
        .collect();
    let mut by_state: HashMap<PaymentState, usize> = HashMap::new();
    for p in &payments {
        *by_state.entry(p.state).or_default() += 1;
        let (card, first) = &shown[&p.key];
        let b = backend
            .get(&p.key.to_string())
            .unwrap_or_else(|| panic!("backend never saw {}", p.key));
        assert_eq!(b.amount, Some(p.amount));
        assert_eq!(
            b.card.as_deref(),
            Some(card.as_str()),
            "card data decrypted end to end"
        );
        let behaviour = cards.card(card).processor;
        // What the shopper saw stays true, and the final state follows the card.
        let expected = match (first, behaviour) {
            (PaymentState::OnlineApproved, _) => PaymentState::OnlineApproved,
            (PaymentState::OnlineDeclined, _) => PaymentState::OnlineDeclined,
            (
                PaymentState::OfflineApproved,
                ProcessorBehaviour::Decline { .. }
                | ProcessorBehaviour::DeclineWhenForwarded { .. },
            ) => PaymentState::DeclinedAfterForward,
            (PaymentState::OfflineApproved, _) => PaymentState::Confirmed,
            (other, _) => panic!("unexpected shown state {other}"),
        };
        // An offline approval whose online request was answered late by the
        // backend takes the backend's online outcome (same key, one charge).
        let late_online =
            *first == PaymentState::OfflineApproved && b.via == Some(backend_emulator::Via::Online);
        if late_online {
            assert!(
                matches!(
                    p.state,
                    PaymentState::Confirmed | PaymentState::DeclinedAfterForward
                ),
                "{} {}",
                p.key,
                p.state
            );
        } else {
            assert_eq!(p.state, expected, "{} with {card}", p.key);
        }
    }
    let counts = emulator.counts();
    assert_eq!(
        counts.payments as usize, n,
        "every payment exactly once at the backend"
    );
    let charged = payments
        .iter()
        .filter(|p| {
            matches!(
                p.state,
                PaymentState::OnlineApproved | PaymentState::Confirmed
            )
        })
        .count();
    assert_eq!(
        counts.charged as usize, charged,
        "charged once per approved payment"
    );
    assert_eq!(counts.undecryptable, 0);
    // The outcome events reach the backend too.
    rt.block_on(eventually(60, "telemetry drained", || {
        cart.telemetry_pending() == 0
    }));
    let report = cart.uplink.report();
    eprintln!(
        "{n} checkouts, {outages} broker outages, {cuts} cuts; states {by_state:?}; backend {counts:?}; report {report:?}"
    );
    assert!(
        cart.ledger
            .lock()
            .unwrap()
            .outbox_depth()
            .unwrap()
            .iter()
            .all(|d| d.quarantined == 0)
    );
    sim.stop().unwrap();
    rt.block_on(async {
        cart.stop().await;
        emulator.shutdown().await;
    });
}
