//! Shared helpers of the uplink integration tests (real mosquitto via
//! `mqtt-harness`, real time with generous hang guards).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mqtt_harness::Broker;
use store_and_forward::uplink::{
    Incoming, LinkConfig, LinkHandle, QoS, SwappableClientCert, certified_key_from_pem_files, start,
};
use tokio::sync::mpsc;

/// Hang guard: no test step may take this long on a healthy machine.
pub const HANG: Duration = Duration::from_secs(30);

/// A link configuration for `cart` against the harness broker, with short
/// backoff (tests restart the broker) and the minimum keep-alive.
pub fn config(broker: &Broker, cart: &str) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: cart.into(),
        keep_alive_secs: 5,
        backoff_base_ms: 50,
        backoff_max_ms: 500,
        connect_timeout_secs: 5,
        tls: true,
        ca_file: Some(broker.ca_pem_path()),
        ..LinkConfig::default()
    }
}

/// A fresh identity with CN = `cn`, signed by the harness CA.
pub fn identity(broker: &Broker, cn: &str) -> Arc<SwappableClientCert> {
    let (cert, key) = broker.client_cert(cn);
    let key = certified_key_from_pem_files(&cert, &key).expect("load identity");
    Arc::new(SwappableClientCert::new(key))
}

/// Starts a link for `cart` (its own identity) and waits until it is up.
pub async fn link_up(
    broker: &Broker,
    cart: &str,
    subscriptions: &[&str],
) -> (LinkHandle, mpsc::Receiver<Incoming>) {
    link_up_with(config(broker, cart), identity(broker, cart), subscriptions).await
}

/// Starts a link with the given configuration and identity; waits until up.
pub async fn link_up_with(
    config: LinkConfig,
    identity: Arc<SwappableClientCert>,
    subscriptions: &[&str],
) -> (LinkHandle, mpsc::Receiver<Incoming>) {
    let subs = subscriptions
        .iter()
        .map(|s| (s.to_string(), QoS::AtLeastOnce))
        .collect();
    let (link, rx) = start(config, Some(identity), subs).expect("start link");
    assert!(
        link.wait_up(HANG).await,
        "link did not come up: {:?}",
        *link.state().borrow()
    );
    (link, rx)
}

/// Waits until the link's successful connections reach `n` and it is up.
pub async fn wait_connects(link: &LinkHandle, n: u64) {
    let mut st = link.state();
    tokio::time::timeout(HANG, st.wait_for(|s| s.up && s.connects >= n))
        .await
        .expect("hang guard: reconnect")
        .expect("link alive");
}

/// Waits until the link is down.
pub async fn wait_down(link: &LinkHandle) {
    let mut st = link.state();
    tokio::time::timeout(HANG, st.wait_for(|s| !s.up))
        .await
        .expect("hang guard: link down")
        .expect("link alive");
}

/// Receives the next message, or panics after the hang guard.
pub async fn recv(rx: &mut mpsc::Receiver<Incoming>) -> Incoming {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("hang guard: incoming")
        .expect("incoming channel open")
}
