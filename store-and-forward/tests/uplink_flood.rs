//! What the broker can push at the cart is bounded: the CONNECT carries MQTT
//! 5 Receive Maximum, and a QoS 1 message is acknowledged only once the
//! consumer has dropped it. A flood of downstream messages (100,000 by
//! default; `FLOOD_MESSAGES=N`) while the consumer is stalled: the cart
//! holds at most `receive_maximum` of them, its resident memory grows by
//! at most 16 MiB, and once the consumer reads again every message arrives
//! once: nothing acknowledged is lost.

mod uplink_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_harness::{BACKEND_IDENTITY, Broker};
use store_and_forward::uplink::{LinkConfig, PublishProps, QoS};
use uplink_support::{config, identity, link_up, link_up_with};

const RECEIVE_MAXIMUM: u16 = 32;

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident");
    pages * 4096
}

fn messages() -> u32 {
    std::env::var("FLOOD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_flood_is_bounded_by_receive_maximum_and_nothing_acknowledged_is_lost() {
    let broker = Broker::start();
    let cart = "cart-flood";
    let topic = format!("carts/{cart}/down/catalog");
    let cfg = LinkConfig {
        receive_maximum: RECEIVE_MAXIMUM,
        ..config(&broker, cart)
    };
    let (link, mut rx) = link_up_with(cfg, identity(&broker, cart), &[&topic]).await;
    let (backend, _backend_rx) = link_up(&broker, BACKEND_IDENTITY, &[]).await;

    let n = messages();
    let before = rss();
    // The backend floods while the cart's consumer reads nothing.
    let publisher = {
        let backend = backend.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            // Up to 500 publishes wait for their PUBACK at a time.
            let mut waiting = tokio::task::JoinSet::new();
            for i in 0..n {
                // A realistic downstream size (a catalog delta's page).
                let body = Bytes::from(format!("{i:010}:{}", "x".repeat(190)));
                let (backend, topic) = (backend.clone(), topic.clone());
                waiting.spawn(async move {
                    backend
                        .publish(&topic, body, QoS::AtLeastOnce, PublishProps::default())
                        .await
                });
                while waiting.len() >= 500 {
                    let r = waiting.join_next().await.expect("task");
                    r.expect("join")
                        .expect("the broker takes the backend's publish");
                }
            }
            while let Some(r) = waiting.join_next().await {
                r.expect("join")
                    .expect("the broker takes the backend's publish");
            }
        })
    };
    let started = Instant::now();
    let mut held_max = 0;
    while !publisher.is_finished() {
        held_max = held_max.max(link.unacknowledged());
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the flood never finished publishing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.await.expect("publisher");
    // Give the broker the time to push more than it may.
    tokio::time::sleep(Duration::from_millis(500)).await;
    held_max = held_max.max(link.unacknowledged());
    let grown = rss().saturating_sub(before);
    assert!(
        held_max <= usize::from(RECEIVE_MAXIMUM),
        "the cart held {held_max} unacknowledged messages (Receive Maximum {RECEIVE_MAXIMUM})"
    );
    assert!(held_max > 0, "no message reached the stalled cart");
    assert!(
        grown <= 16 << 20,
        "resident memory grew by {} KiB during the flood",
        grown >> 10
    );

    // The consumer reads again: every message, each once (the publisher's
    // tasks race, so the order is not the numbers').
    let mut seen = vec![false; n as usize];
    for got in 0..n {
        let msg = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {n} messages came"))
            .expect("incoming channel open");
        let seq: usize = std::str::from_utf8(&msg.payload[..10])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("payload carries its number");
        assert!(
            !std::mem::replace(&mut seen[seq], true),
            "message {seq} twice"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(link.unacknowledged(), 0, "every message acknowledged");
    println!(
        "flood: {n} messages, at most {held_max} held unacknowledged, RSS +{} KiB, {:.1} s in all",
        grown >> 10,
        started.elapsed().as_secs_f64()
    );
    link.shutdown().await;
    backend.shutdown().await;
}
