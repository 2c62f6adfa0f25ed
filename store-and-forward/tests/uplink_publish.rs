//! Publishing over mutual TLS to a real mosquitto: PUBACKs resolve their
//! publish, the ACL's NotAuthorized surfaces as an error, a down link
//! refuses at once.

mod uplink_support;

use bytes::Bytes;
use mqtt_harness::{BACKEND_IDENTITY, Broker};
use store_and_forward::uplink::{LinkError, PublishProps, QoS, start};
use uplink_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_resolves_with_the_brokers_puback_and_reaches_the_backend() {
    let broker = Broker::start();
    let (backend, mut from_carts) = link_up(&broker, BACKEND_IDENTITY, &["carts/+/up/#"]).await;
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    // The backend's SUBACK may trail its CONNACK: publish until it sees one.
    let ack = loop {
        let ack = cart
            .publish(
                "carts/cart-1/up/telemetry",
                Bytes::from_static(b"hello"),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
            .expect("acknowledged");
        if ack.reason == 0 {
            break ack;
        }
        assert_eq!(ack.reason, 16, "NoMatchingSubscribers until subscribed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(ack.reason, 0);
    let got = recv(&mut from_carts).await;
    assert_eq!(got.topic, "carts/cart-1/up/telemetry");
    assert_eq!(&got.payload[..], b"hello");
    backend.shutdown().await;
    cart.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_outside_the_acl_returns_not_authorized() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    let err = cart
        .publish(
            "carts/cart-2/up/payment",
            Bytes::from_static(b"not mine"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
        .expect_err("must be refused");
    match err {
        LinkError::Rejected {
            reason_code,
            reason,
        } => {
            assert_eq!(reason_code, 135);
            assert!(reason.contains("NotAuthorized"), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    // The refusal does not poison the queue behind it.
    cart.publish(
        "carts/cart-1/up/payment",
        Bytes::from_static(b"mine"),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await
    .expect("own topic accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_concurrent_publish_gets_its_own_acknowledgement() {
    let broker = Broker::start();
    let (backend, mut from_carts) =
        link_up(&broker, BACKEND_IDENTITY, &["carts/cart-1/up/#"]).await;
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    // Make sure the backend's subscription is active before counting.
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
    let _ = recv(&mut from_carts).await;

    // Interleave allowed and forbidden topics: each caller must get the
    // answer for its own message.
    let mut tasks = Vec::new();
    for i in 0..600u32 {
        let cart = cart.clone();
        tasks.push(tokio::spawn(async move {
            let mine = i % 5 != 0;
            let topic = if mine {
                "carts/cart-1/up/t"
            } else {
                "carts/cart-9/up/t"
            };
            let r = cart
                .publish(
                    topic,
                    Bytes::from(i.to_be_bytes().to_vec()),
                    QoS::AtLeastOnce,
                    PublishProps::default(),
                )
                .await;
            (mine, r)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (mine, r) = tokio::time::timeout(HANG, t)
            .await
            .expect("hang guard")
            .expect("task");
        match (mine, r) {
            (true, Ok(ack)) => {
                assert_eq!(ack.reason, 0);
                accepted += 1;
            }
            (
                false,
                Err(LinkError::Rejected {
                    reason_code: 135, ..
                }),
            ) => {}
            (mine, r) => panic!("mine={mine}: {r:?}"),
        }
    }
    assert_eq!(accepted, 480);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 480 {
        let m = recv(&mut from_carts).await;
        let i = u32::from_be_bytes(m.payload[..].try_into().expect("4 bytes"));
        assert!(i % 5 != 0, "a forbidden message was delivered: {i}");
        seen.insert(i);
    }
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_the_broker_is_down_fails_at_once_as_disconnected() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    broker.stop();
    wait_down(&cart).await;
    let r = cart
        .publish(
            "carts/cart-1/up/t",
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await;
    assert!(matches!(r, Err(LinkError::Disconnected)), "{r:?}");
    let st = cart.state().borrow().clone();
    assert!(st.last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topics_and_qos2_are_refused_before_sending() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    let r = cart
        .publish(
            "carts/+/up",
            Bytes::new(),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await;
    assert!(matches!(r, Err(LinkError::InvalidTopic(_))), "{r:?}");
    let r = cart
        .publish(
            "carts/cart-1/up/x",
            Bytes::new(),
            QoS::ExactlyOnce,
            PublishProps::default(),
        )
        .await;
    assert!(matches!(r, Err(LinkError::UnsupportedQos)), "{r:?}");
    let ack = cart
        .publish(
            "carts/cart-1/up/x",
            Bytes::new(),
            QoS::AtMostOnce,
            PublishProps::default(),
        )
        .await
        .expect("QoS 0 resolves once written");
    assert_eq!(ack.reason, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_and_the_handle_refuses_afterwards() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &[]).await;
    cart.shutdown().await;
    assert!(!cart.state().borrow().up);
    let r = cart
        .publish(
            "carts/cart-1/up/x",
            Bytes::new(),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await;
    assert!(matches!(r, Err(LinkError::Shutdown)), "{r:?}");
    // mosquitto logs a graceful DISCONNECT as "disconnected", a dropped
    // socket as "closed its connection".
    let deadline = std::time::Instant::now() + HANG;
    while !broker.log().contains("Client cart-1 disconnected") {
        assert!(
            std::time::Instant::now() < deadline,
            "log:\n{}",
            broker.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscription_filter_is_refused_at_start() {
    let broker = Broker::start();
    let subs = vec![("carts/cart-1/#/down".to_string(), QoS::AtLeastOnce)];
    let r = start(
        config(&broker, "cart-1"),
        Some(identity(&broker, "cart-1")),
        subs,
    );
    assert!(matches!(r, Err(LinkError::Config(_))), "{:?}", r.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_only_when_configured() {
    let broker = Broker::start_plain();
    let mut cfg = config(&broker, "cart-1");
    cfg.tls = false;
    cfg.ca_file = None;
    let (cart, _rx) = start(cfg, None, vec![]).expect("start");
    assert!(cart.wait_up(HANG).await);
    cart.publish(
        "carts/cart-1/up/x",
        Bytes::new(),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await
    .expect("acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_without_dropping_the_link() {
    // rumqttc drops the whole connection on a packet over the broker's
    // announced maximum (failing every waiting publish, and the caller would
    // retry it forever); the link refuses anything over its own limit (or
    // the broker's, when smaller) before sending.
    let broker = Broker::start();
    let mut cfg = config(&broker, "cart-1");
    cfg.max_packet_size = 2048;
    let (cart, _rx) = link_up_with(cfg, identity(&broker, "cart-1"), &[]).await;
    let r = cart
        .publish(
            "carts/cart-1/up/t",
            Bytes::from(vec![0u8; 4096]),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await;
    assert!(
        matches!(r, Err(LinkError::TooLarge { max: 2048, .. })),
        "{r:?}"
    );
    cart.publish(
        "carts/cart-1/up/t",
        Bytes::from(vec![0u8; 1024]),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await
    .expect("a fitting message still goes");
    let st = cart.state().borrow().clone();
    assert_eq!((st.connects, st.failures), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traffic_meter_counts_what_crossed_the_link() {
    let broker = Broker::start();
    let (backend, _from_carts) = link_up(&broker, BACKEND_IDENTITY, &["carts/+/up/#"]).await;
    let (cart, mut to_cart) = link_up(&broker, "cart-7", &["carts/cart-7/down/#"]).await;
    let before = cart.traffic();
    assert_eq!((before.connects, before.subscribes), (1, 1));
    assert_eq!(
        before.subscribe_filter_bytes,
        "carts/cart-7/down/#".len() as u64
    );
    // Up: one small publish and one of 6,000 bytes (two 5 KB steps).
    for size in [10usize, 6_000] {
        cart.publish(
            "carts/cart-7/up/telemetry",
            Bytes::from(vec![b'x'; size]),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
        .expect("acknowledged");
    }
    // Down: one QoS 1 message, acknowledged by the cart once handled.
    backend
        .publish(
            "carts/cart-7/down/ack",
            Bytes::from_static(b"ok"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
        .expect("acknowledged");
    drop(recv(&mut to_cart).await);
    let t = loop {
        let t = cart.traffic();
        if t.pubacks_out == 1 {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(t.publishes_out - before.publishes_out, 2);
    assert_eq!(t.publish_out_steps - before.publish_out_steps, 3);
    assert!(t.publish_out_bytes - before.publish_out_bytes > 6_010);
    assert_eq!((t.publishes_in, t.publish_in_steps), (1, 1));
    assert!(t.connected_ms >= before.connected_ms);
    // Reconnecting counts a second CONNECT and SUBSCRIBE.
    cart.reconnect();
    wait_connects(&cart, 2).await;
    let t2 = cart.traffic();
    assert_eq!((t2.connects, t2.subscribes), (2, 2));
    backend.shutdown().await;
    cart.shutdown().await;
}
