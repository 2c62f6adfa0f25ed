//! Reconnects against a real mosquitto: subscriptions restored after every
//! broker restart, connections cut mid-publish, a half-open link found by
//! keep-alive. Real time; the bounds are hang guards only.

mod uplink_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use mqtt_harness::{BACKEND_IDENTITY, Broker};
use store_and_forward::uplink::{LinkError, LinkHandle, PublishProps, QoS};
use tokio::sync::mpsc;
use uplink_support::*;

/// The backend publishes `payload` to the cart's down topic until the cart
/// receives it: after a reconnect the cart's SUBSCRIBE trails its CONNACK,
/// so the first tries may find no subscriber. Without restored
/// subscriptions this never succeeds (hang guard).
async fn deliver_down(
    backend: &LinkHandle,
    cart_rx: &mut mpsc::Receiver<store_and_forward::uplink::Incoming>,
    payload: &str,
) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: {payload} never arrived"
        );
        match backend
            .publish(
                "carts/cart-1/down/policy",
                Bytes::from(payload.to_string()),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
        {
            Ok(_) | Err(LinkError::Disconnected) => {}
            Err(e) => panic!("{e}"),
        }
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(200), cart_rx.recv()).await
        {
            if m.payload == payload.as_bytes() {
                assert_eq!(m.topic, "carts/cart-1/down/policy");
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_restored_after_every_broker_restart() {
    let broker = Broker::start();
    let (cart, mut cart_rx) = link_up(&broker, "cart-1", &["carts/cart-1/down/#"]).await;
    let (backend, _backend_rx) = link_up(&broker, BACKEND_IDENTITY, &[]).await;
    deliver_down(&backend, &mut cart_rx, "before").await;
    for round in 1..=4u64 {
        broker.restart();
        wait_connects(&cart, round + 1).await;
        wait_connects(&backend, round + 1).await;
        deliver_down(&backend, &mut cart_rx, &format!("after restart {round}")).await;
    }
    let st = cart.state().borrow().clone();
    assert_eq!(st.connects, 5);
    assert!(st.failures >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_publish_never_acknowledges_falsely_and_recovers() {
    let broker = Broker::start();
    let (_backend, mut seen) = link_up(&broker, BACKEND_IDENTITY, &["carts/cart-1/up/#"]).await;
    let proxy = broker.fault_proxy();
    let mut cfg = config(&broker, "cart-1");
    cfg.port = proxy.port();
    let (cart, _rx) = link_up_with(cfg, identity(&broker, "cart-1"), &[]).await;
    // The backend's subscription is active before we count.
    loop {
        let ack = cart
            .publish(
                "carts/cart-1/up/probe",
                Bytes::new(),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
            .expect("probe");
        if ack.reason == 0 {
            break;
        }
    }
    let _ = recv(&mut seen).await;

    const PER_ROUND: u32 = 3000;
    for round in 0..3u32 {
        let acks = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..PER_ROUND {
            let cart = cart.clone();
            let acks = acks.clone();
            tasks.push(tokio::spawn(async move {
                let id = round * 10_000 + i;
                let r = cart
                    .publish(
                        "carts/cart-1/up/t",
                        Bytes::from(id.to_be_bytes().to_vec()),
                        QoS::AtLeastOnce,
                        PublishProps::default(),
                    )
                    .await;
                if r.is_ok() {
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                (id, r)
            }));
        }
        // Cut once acknowledgements are flowing: publishes are on the wire.
        let deadline = tokio::time::Instant::now() + HANG;
        while acks.load(Ordering::SeqCst) < 100 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "hang guard: no acks"
            );
            tokio::task::yield_now().await;
        }
        proxy.cut_all();
        let mut acked = Vec::new();
        for t in tasks {
            let (id, r) = tokio::time::timeout(HANG, t)
                .await
                .expect("hang guard")
                .expect("task");
            match r {
                Ok(_) => acked.push(id),
                Err(LinkError::Disconnected) => {}
                Err(e) => panic!("{e}"),
            }
        }
        eprintln!(
            "round {round}: {} acknowledged, {} not",
            acked.len(),
            PER_ROUND as usize - acked.len()
        );
        // Every acknowledged message reached the backend (at least once).
        let mut got = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + HANG;
        while !acked.iter().all(|id| got.contains(id)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "acknowledged but not delivered"
            );
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await
                && m.topic == "carts/cart-1/up/t"
            {
                got.insert(u32::from_be_bytes(
                    m.payload[..].try_into().expect("4 bytes"),
                ));
            }
        }
        cart.wait_up(HANG).await;
        cart.publish(
            "carts/cart-1/up/after",
            Bytes::new(),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
        .expect("works again after the cut");
    }
    assert!(proxy.accepted() >= 4, "reconnected through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_link_is_detected_by_keep_alive() {
    let broker = Broker::start();
    let proxy = broker.fault_proxy();
    let mut cfg = config(&broker, "cart-1");
    cfg.port = proxy.port();
    let (cart, _rx) = link_up_with(cfg, identity(&broker, "cart-1"), &[]).await;
    // The network goes silent; sockets stay open on both ends.
    proxy.set_blackhole(true);
    let pending = {
        let cart = cart.clone();
        tokio::spawn(async move {
            cart.publish(
                "carts/cart-1/up/t",
                Bytes::new(),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
        })
    };
    wait_down(&cart).await;
    let r = tokio::time::timeout(HANG, pending)
        .await
        .expect("hang guard")
        .expect("task");
    assert!(matches!(r, Err(LinkError::Disconnected)), "{r:?}");
    let st = cart.state().borrow().clone();
    assert!(st.last_error.is_some());
    // The path heals: the link comes back by itself.
    proxy.set_blackhole(false);
    wait_connects(&cart, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_reconnect_counts_a_new_connection() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    cart.reconnect();
    wait_connects(&cart, 2).await;
    cart.publish(
        "carts/cart-1/up/t",
        Bytes::new(),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await
    .expect("acknowledged after reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_started_while_broker_is_down_connects_when_it_starts() {
    let broker = Broker::start();
    broker.stop();
    let subs = vec![("carts/cart-1/down/#".to_string(), QoS::AtLeastOnce)];
    let (cart, _rx) = store_and_forward::uplink::start(
        config(&broker, "cart-1"),
        Some(identity(&broker, "cart-1")),
        subs,
    )
    .expect("start");
    let mut st = cart.state();
    tokio::time::timeout(HANG, st.wait_for(|s| s.failures >= 2))
        .await
        .expect("hang guard")
        .expect("alive");
    assert!(!st.borrow().up);
    broker.resume();
    assert!(cart.wait_up(HANG).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconsumed_incoming_messages_do_not_stall_publishing() {
    let broker = Broker::start();
    let (cart, _never_read) = link_up(&broker, "cart-1", &["carts/cart-1/down/#"]).await;
    let (backend, _rx) = link_up(&broker, BACKEND_IDENTITY, &[]).await;
    // Far more downstream messages than the incoming channel holds (256).
    for i in 0..2000u32 {
        backend
            .publish(
                "carts/cart-1/down/catalog",
                Bytes::from(i.to_be_bytes().to_vec()),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
            .expect("backend publish");
    }
    // The cart's event loop still answers: its own publishes are acknowledged.
    for _ in 0..50 {
        tokio::time::timeout(
            HANG,
            cart.publish(
                "carts/cart-1/up/t",
                Bytes::new(),
                QoS::AtLeastOnce,
                PublishProps::default(),
            ),
        )
        .await
        .expect("hang guard: publish stalled behind unread messages")
        .expect("acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_attempts_are_spaced_by_backoff() {
    // Connection refused is instant: without backoff the link would retry
    // thousands of times a second. The bound is loose on purpose (a slower
    // machine only makes fewer attempts).
    let broker = Broker::start();
    broker.stop();
    let (cart, _rx) = store_and_forward::uplink::start(
        config(&broker, "cart-1"),
        Some(identity(&broker, "cart-1")),
        vec![],
    )
    .expect("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failures = cart.state().borrow().failures;
    assert!(failures >= 1, "it did try");
    // base 50 ms, max 500 ms: about 15 attempts expected in 3 s.
    assert!(failures < 200, "{failures} attempts in 3 s: no backoff");
}
