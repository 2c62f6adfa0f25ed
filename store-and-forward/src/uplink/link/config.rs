//! The link's configuration: serde with a default for every key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::Transport;
use rumqttc::v5::MqttOptions;
use serde::{Deserialize, Serialize};

use super::LinkError;
use crate::uplink::tls::{self, SwappableClientCert};
use crate::uplink::topics::valid_cart_id;

/// How the cart reaches its broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// The broker's host name or IP (default `localhost`).
    pub host: String,
    /// The broker's port (default 8883, MQTT over TLS).
    pub port: u16,
    /// The MQTT client id: the cart id, which is also the certificate CN
    /// and the `{cart_id}` in topics. Required.
    pub client_id: String,
    /// Keep-alive in seconds (default 30: AWS IoT does not bill pings every
    /// 30 s or slower). A link silent for about two intervals is declared
    /// dead and reconnected. At least 5.
    pub keep_alive_secs: u16,
    /// First reconnect delay ceiling in ms (default 500).
    pub backoff_base_ms: u64,
    /// Largest reconnect delay in ms (default 60,000).
    pub backoff_max_ms: u64,
    /// While the broker cannot be reached at all, a TCP probe (not metered,
    /// not an MQTT CONNECT) checks this often whether it is back, ms
    /// (default 1,000; 0: no probe, backoff only).
    pub probe_interval_ms: u64,
    /// Up to this much random delay on every probe, and before connecting
    /// once the broker or the network is back, ms (default 500): carts that
    /// regain their network at once spread their connects.
    pub probe_jitter_ms: u64,
    /// Random spread of reconnects (default true): the backoff is drawn
    /// uniformly below its ceiling and probes and returns get up to
    /// `probe_jitter_ms`. `false` waits the whole ceiling and adds no
    /// spread, so carts that lost the broker together come back together:
    /// only to measure the connection storm the jitter prevents (the fleet
    /// simulator); the image never sets it.
    pub backoff_jitter: bool,
    /// Reconnect at once when the kernel reports a network change (a
    /// netlink route socket), instead of waiting out the backoff
    /// (default true).
    pub watch_network: bool,
    /// QoS 1 publishes in flight on the wire (default 100; the broker's
    /// receive maximum may lower it).
    pub inflight: u16,
    /// Publishes queued or in flight before `publish` waits (default 1,000).
    pub max_pending: usize,
    /// Connect timeout in seconds, TCP + TLS + CONNACK (default 10).
    pub connect_timeout_secs: u64,
    /// Mutual TLS (default true). `false` is plain TCP, for tests and demos
    /// only: the cart's image never sets it.
    pub tls: bool,
    /// The CA bundle (PEM) the broker's certificate is verified against.
    /// Required with TLS.
    pub ca_file: Option<PathBuf>,
    /// The name the broker's certificate must be valid for (default: `host`).
    pub server_name: Option<String>,
    /// Largest MQTT packet in bytes, both ways (default 131,072: AWS IoT's 128 KB).
    pub max_packet_size: u32,
    /// Capacity of the channel of incoming messages (default 256). When
    /// the consumer falls behind, the link stops reading from the broker.
    pub incoming_capacity: usize,
    /// MQTT 5 Receive Maximum sent in the CONNECT (default 32, 1 to
    /// 65,535): the broker sends at most this many QoS 1 messages the cart
    /// has not acknowledged; a message is acknowledged once handled.
    pub receive_maximum: u16,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            host: "localhost".to_string(),
            port: 8883,
            client_id: String::new(),
            keep_alive_secs: 30,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            probe_interval_ms: 1_000,
            probe_jitter_ms: 500,
            backoff_jitter: true,
            watch_network: true,
            inflight: 100,
            max_pending: 1000,
            connect_timeout_secs: 10,
            tls: true,
            ca_file: None,
            server_name: None,
            max_packet_size: 131_072,
            incoming_capacity: 256,
            receive_maximum: 32,
        }
    }
}

impl LinkConfig {
    /// Checks the values `start` relies on.
    pub fn validate(&self) -> Result<(), LinkError> {
        if !valid_cart_id(&self.client_id) {
            return Err(LinkError::Config(
                "client_id must be the cart id: non-empty, no '/', '+', '#' or spaces",
            ));
        }
        if self.host.is_empty() {
            return Err(LinkError::Config("host is empty"));
        }
        if self.keep_alive_secs < 5 {
            return Err(LinkError::Config("keep_alive_secs must be at least 5"));
        }
        if self.inflight == 0
            || self.max_pending == 0
            || self.incoming_capacity == 0
            || self.receive_maximum == 0
        {
            return Err(LinkError::Config(
                "inflight, max_pending, incoming_capacity and receive_maximum must be at least 1",
            ));
        }
        if self.connect_timeout_secs == 0 {
            return Err(LinkError::Config("connect_timeout_secs must be at least 1"));
        }
        if self.probe_interval_ms != 0 && !(100..=60_000).contains(&self.probe_interval_ms) {
            return Err(LinkError::Config(
                "probe_interval_ms must be 0 (off) or 100 to 60,000",
            ));
        }
        if self.probe_jitter_ms > 60_000 {
            return Err(LinkError::Config("probe_jitter_ms must be at most 60,000"));
        }
        if self.max_packet_size < 1024 {
            return Err(LinkError::Config("max_packet_size must be at least 1024"));
        }
        if self.tls && self.ca_file.is_none() {
            return Err(LinkError::Config("tls needs ca_file"));
        }
        Ok(())
    }

    /// The keep-alive interval.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(u64::from(self.keep_alive_secs))
    }

    /// rumqttc's options for this configuration.
    pub(crate) fn mqtt_options(
        &self,
        cert: Option<&Arc<SwappableClientCert>>,
    ) -> Result<MqttOptions, LinkError> {
        self.validate()?;
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive());
        // Clean sessions: the outbox is the durable queue, and a resumed
        // broker session would resend packets this link already reported
        // as not acknowledged.
        o.set_clean_start(true);
        o.set_connection_timeout(self.connect_timeout_secs);
        o.set_outgoing_inflight_upper_limit(self.inflight);
        o.set_request_channel_capacity(self.max_pending.saturating_add(16));
        o.set_max_packet_size(Some(self.max_packet_size));
        // Downstream flow control: at most `receive_maximum` messages
        // unacknowledged, each acknowledged once handled (TransportAck).
        o.set_receive_maximum(Some(self.receive_maximum));
        o.set_manual_acks(true);
        // No Nagle: a request/response exchange (online authorization,
        // fleet provisioning) otherwise waits out the peer's delayed ACK
        // (~40 ms) on small writes; measured, provisioning end to end went
        // from ~140 ms to ~12 ms. rumqttc still writes queued packets in
        // one batch per flush, so bulk sending keeps large segments.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        o.set_network_options(net);
        if self.tls {
            let ca = self
                .ca_file
                .as_deref()
                .ok_or(LinkError::Config("tls needs ca_file"))?;
            let name = self.server_name.as_deref().unwrap_or(&self.host);
            let config = tls::client_config(ca, name, cert)?;
            o.set_transport(Transport::Tls(rumqttc::TlsConfiguration::Rustls(config)));
        } else {
            tracing::warn!("uplink over plain TCP: tests and demos only");
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> LinkConfig {
        LinkConfig {
            client_id: "cart-1".into(),
            tls: false,
            ..LinkConfig::default()
        }
    }

    #[test]
    fn defaults_fill_missing_keys() {
        let c: LinkConfig =
            serde_json::from_str(r#"{"client_id":"cart-7","ca_file":"/etc/cart/ca.pem"}"#)
                .expect("parse");
        assert_eq!(c.keep_alive_secs, 30);
        assert_eq!(c.port, 8883);
        assert!(c.tls);
        c.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_json::from_str::<LinkConfig>(r#"{"client_id":"c","tsl":false}"#).is_err());
    }

    #[test]
    fn invalid_values_are_refused() {
        let cases: Vec<fn(&mut LinkConfig)> = vec![
            |c| c.client_id = String::new(),
            |c| c.client_id = "a/b".into(),
            |c| c.keep_alive_secs = 4,
            |c| c.inflight = 0,
            |c| c.max_pending = 0,
            |c| c.receive_maximum = 0,
            |c| c.connect_timeout_secs = 0,
            |c| c.host = String::new(),
            |c| c.tls = true,
        ];
        for (i, f) in cases.into_iter().enumerate() {
            let mut c = ok();
            f(&mut c);
            assert!(
                matches!(c.validate(), Err(LinkError::Config(_))),
                "case {i}"
            );
        }
        ok().validate().expect("baseline valid");
    }
}
