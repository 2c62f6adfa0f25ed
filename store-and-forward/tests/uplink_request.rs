//! MQTT 5 request/response through a real mosquitto: a responder task on a
//! second link (the `backend` identity) answers to the response topic with
//! the correlation data; timeouts and late answers.

mod uplink_support;

use std::time::Duration;

use bytes::Bytes;
use mqtt_harness::{BACKEND_IDENTITY, Broker};
use store_and_forward::uplink::{Incoming, LinkError, LinkHandle, PublishProps, QoS};
use tokio::sync::mpsc;
use uplink_support::*;

/// Answers every request on `carts/+/up/auth` with "ok:" + payload, after `delay`.
fn responder(backend: LinkHandle, mut rx: mpsc::Receiver<Incoming>, delay: Duration) {
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            let (Some(topic), Some(corr)) =
                (req.response_topic.clone(), req.correlation_data.clone())
            else {
                continue;
            };
            let backend = backend.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut body = b"ok:".to_vec();
                body.extend_from_slice(&req.payload);
                let props = PublishProps {
                    correlation_data: Some(corr),
                    ..PublishProps::default()
                };
                let _ = backend
                    .publish(&topic, Bytes::from(body), QoS::AtLeastOnce, props)
                    .await;
            });
        }
    });
}

/// Waits until the backend's subscription is active (a probe request is answered).
async fn until_answered(cart: &LinkHandle) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: responder never answered"
        );
        if cart
            .request(
                "carts/cart-1/up/auth",
                Bytes::from_static(b"probe"),
                "carts/cart-1/rpc/auth",
                Duration::from_millis(500),
            )
            .await
            .is_ok()
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_answer() {
    let broker = Broker::start();
    let (backend, backend_rx) = link_up(&broker, BACKEND_IDENTITY, &["carts/+/up/auth"]).await;
    responder(backend, backend_rx, Duration::ZERO);
    let (cart, mut cart_rx) = link_up(&broker, "cart-1", &["carts/cart-1/rpc/#"]).await;
    until_answered(&cart).await;
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let cart = cart.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("payment-{i}");
            let answer = cart
                .request(
                    "carts/cart-1/up/auth",
                    Bytes::from(body.clone()),
                    "carts/cart-1/rpc/auth",
                    HANG,
                )
                .await
                .expect("answered");
            assert_eq!(answer.payload, format!("ok:{body}").as_bytes());
            assert_eq!(answer.topic, "carts/cart-1/rpc/auth");
            assert!(answer.correlation_data.is_some());
        }));
    }
    for t in tasks {
        tokio::time::timeout(HANG, t)
            .await
            .expect("hang guard")
            .expect("task");
    }
    // Answers matched by the link are not also forwarded to the channel
    // (the probe's answers may have been late, so drain what is there).
    while let Ok(m) = cart_rx.try_recv() {
        assert!(m.payload.starts_with(b"ok:probe"), "forwarded: {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_request_times_out() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &["carts/cart-1/rpc/#"]).await;
    let r = cart
        .request(
            "carts/cart-1/up/auth",
            Bytes::from_static(b"nobody listens"),
            "carts/cart-1/rpc/auth",
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(r, Err(LinkError::Timeout)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answer_arrives_on_the_incoming_channel() {
    let broker = Broker::start();
    let (backend, backend_rx) = link_up(&broker, BACKEND_IDENTITY, &["carts/+/up/auth"]).await;
    responder(backend, backend_rx, Duration::from_millis(1500));
    let (cart, mut cart_rx) = link_up(&broker, "cart-1", &["carts/cart-1/rpc/#"]).await;
    // Until the backend's subscription is active the request goes nowhere:
    // retry until one is late (answered after its timeout) and arrives.
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "hang guard");
        let r = cart
            .request(
                "carts/cart-1/up/auth",
                Bytes::from_static(b"slow"),
                "carts/cart-1/rpc/auth",
                Duration::from_millis(200),
            )
            .await;
        assert!(matches!(r, Err(LinkError::Timeout)), "{r:?}");
        if let Ok(Some(late)) = tokio::time::timeout(Duration::from_secs(3), cart_rx.recv()).await {
            assert_eq!(&late.payload[..], b"ok:slow");
            assert!(
                late.correlation_data.is_some(),
                "the caller can match it by key"
            );
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_needs_a_subscribed_response_topic_and_a_live_link() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &["carts/cart-1/rpc/#"]).await;
    let r = cart
        .request(
            "carts/cart-1/up/auth",
            Bytes::new(),
            "carts/cart-1/other",
            HANG,
        )
        .await;
    assert!(matches!(r, Err(LinkError::NotSubscribed(_))), "{r:?}");
    broker.stop();
    wait_down(&cart).await;
    let r = cart
        .request(
            "carts/cart-1/up/auth",
            Bytes::new(),
            "carts/cart-1/rpc/auth",
            HANG,
        )
        .await;
    assert!(matches!(r, Err(LinkError::Disconnected)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_outside_the_acl_is_rejected_not_timed_out() {
    let broker = Broker::start();
    let (cart, _rx) = link_up(&broker, "cart-1", &["carts/cart-1/rpc/#"]).await;
    let r = cart
        .request(
            "carts/cart-2/up/auth",
            Bytes::new(),
            "carts/cart-1/rpc/auth",
            HANG,
        )
        .await;
    assert!(
        matches!(
            r,
            Err(LinkError::Rejected {
                reason_code: 135,
                ..
            })
        ),
        "{r:?}"
    );
}
