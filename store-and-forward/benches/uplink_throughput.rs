//! Figures, not assertions: TLS connect time and QoS 1 publish throughput
//! against the harness mosquitto:
//! `cargo bench -p store-and-forward --bench uplink_throughput`.

#[path = "../tests/uplink_support/mod.rs"]
mod uplink_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_harness::Broker;
use store_and_forward::uplink::{LinkConfig, LinkHandle, PublishProps, QoS, start};
use uplink_support::*;

async fn connect_time(broker: &Broker, cfg: LinkConfig, tls: bool) -> Duration {
    let id = tls.then(|| identity(broker, &cfg.client_id));
    let t = Instant::now();
    let (link, _rx) = start(cfg, id, vec![]).expect("start");
    assert!(link.wait_up(HANG).await);
    let d = t.elapsed();
    link.shutdown().await;
    d
}

async fn blast(link: &LinkHandle, n: usize, size: usize) -> Duration {
    let payload = Bytes::from(vec![0x5a; size]);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let link = link.clone();
        let payload = payload.clone();
        tasks.spawn(async move {
            link.publish(
                "carts/cart-1/up/telemetry",
                payload,
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("acknowledged");
    }
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(tls_connect_and_publish_throughput());
}

async fn tls_connect_and_publish_throughput() {
    for tls in [true, false] {
        let broker = if tls {
            Broker::start()
        } else {
            Broker::start_plain()
        };
        let mut cfg = config(&broker, "cart-1");
        if !tls {
            cfg.tls = false;
            cfg.ca_file = None;
        }
        let mut times = Vec::new();
        for _ in 0..20 {
            times.push(connect_time(&broker, cfg.clone(), tls).await);
        }
        let id = tls.then(|| identity(&broker, "cart-1"));
        let (link, _rx) = start(cfg.clone(), id, vec![]).expect("start");
        assert!(link.wait_up(HANG).await);
        // Reconnects (TLS 1.3 resumption when TLS).
        let mut re = Vec::new();
        for i in 0..20u64 {
            let t = Instant::now();
            link.reconnect();
            wait_connects(&link, i + 2).await;
            re.push(t.elapsed());
        }
        let _ = blast(&link, 1000, 1024).await; // warm-up
        let n = 10_000;
        let d = blast(&link, n, 1024).await;
        println!(
            "{}: connect (start -> CONNACK) median {:?}; reconnect median {:?}; {n} x 1 KB QoS 1 publishes with PUBACK: {:.3} s ({:.0} msg/s)",
            if tls { "mutual TLS" } else { "plain TCP" },
            median(times),
            median(re),
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64()
        );
        link.shutdown().await;
    }
}
