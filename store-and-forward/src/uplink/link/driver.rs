//! The owner of rumqttc's event loop: polls it, reconnects with backoff,
//! restores subscriptions, feeds the dispatcher, publishes the state.
//!
//! Polling again after an error is rumqttc's reconnect; between attempts
//! the driver empties rumqttc's queues (clean session) and fails what was
//! waiting, so a packet from an old connection is never matched to a caller
//! of a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PubAckReason, Publish, SubscribeReasonCode};
use rumqttc::v5::{Event, EventLoop};
use tokio::sync::mpsc;

use super::dispatch::Dispatch;
use super::error::classify;
use super::{Incoming, LinkConfig, LinkError, Shared, TransportAck};
use crate::time::Timestamp;
use crate::uplink::backoff::Backoff;

use super::reach::{NetworkWatch, reachable};

/// How long a graceful DISCONNECT may take.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// The owner loop's state.
pub(crate) struct Driver {
    eventloop: EventLoop,
    shared: Arc<Shared>,
    /// Unbounded toward the forwarder task, so the event loop never waits
    /// on a slow consumer (it must keep answering pings and PUBACKs).
    incoming: mpsc::UnboundedSender<Incoming>,
    incoming_rx: Option<(mpsc::UnboundedReceiver<Incoming>, mpsc::Sender<Incoming>)>,
    backlog: Arc<AtomicUsize>,
    backlog_warn: usize,
    backoff: Backoff,
    /// A poll that makes no progress this long means a dead link even if
    /// the socket looks open (a write blocked on a half-open connection
    /// keeps rumqttc from sending its keep-alive ping).
    stall: Duration,
    /// The connection incoming messages belong to (their acknowledgements
    /// go out on it or not at all).
    connection: u64,
    /// The broker's address, for the probe.
    host: String,
    port: u16,
    probe_interval: Option<Duration>,
    probe_jitter: Duration,
    /// Draw the backoff at random below its ceiling (else the ceiling).
    jitter: bool,
    /// The kernel's network changes (opened on first use; `None` when not
    /// wanted or not available).
    network: Option<NetworkWatch>,
    watch_network: bool,
}

/// What one turn of the loop produced.
enum Step {
    Event(Box<Event>),
    Lost(LinkError),
    Reconnect,
    Shutdown,
}

impl Driver {
    pub(crate) fn new(
        eventloop: EventLoop,
        shared: Arc<Shared>,
        incoming: mpsc::Sender<Incoming>,
        config: &LinkConfig,
    ) -> Driver {
        let (tx, rx) = mpsc::unbounded_channel();
        Driver {
            eventloop,
            shared,
            incoming: tx,
            incoming_rx: Some((rx, incoming)),
            backlog: Arc::new(AtomicUsize::new(0)),
            backlog_warn: config.incoming_capacity,
            backoff: Backoff::new(
                Duration::from_millis(config.backoff_base_ms),
                Duration::from_millis(config.backoff_max_ms),
            ),
            stall: config.keep_alive() * 2
                + Duration::from_secs(config.connect_timeout_secs)
                + Duration::from_secs(1),
            connection: 0,
            host: config.host.clone(),
            port: config.port,
            probe_interval: (config.probe_interval_ms > 0)
                .then(|| Duration::from_millis(config.probe_interval_ms)),
            probe_jitter: if config.backoff_jitter {
                Duration::from_millis(config.probe_jitter_ms)
            } else {
                Duration::ZERO
            },
            jitter: config.backoff_jitter,
            network: None,
            watch_network: config.watch_network,
        }
    }

    /// Feeds one event to the dispatcher (the dispatch lock held).
    fn apply_event(&self, d: &mut Dispatch, ev: Event) -> Option<Incoming> {
        let (shared, connection) = (&self.shared, self.connection);
        apply(d, ev, |pkid| shared.ack_guard(pkid, connection))
    }

    pub(crate) async fn run(mut self) {
        let client_id = self.shared.client_id.clone();
        tracing::info!(client_id, "uplink starting");
        if let Some((rx, out)) = self.incoming_rx.take() {
            tokio::spawn(forwarder(rx, out, self.backlog.clone()));
        }
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                // Asked to stop between two turns (the notification may
                // already have been consumed): still say goodbye.
                self.graceful_disconnect().await;
                break;
            }
            let step = tokio::select! {
                biased;
                _ = self.shared.shutdown.notified() => Step::Shutdown,
                _ = self.shared.reconnect.notified() => Step::Reconnect,
                r = tokio::time::timeout(self.stall, self.eventloop.poll()) => match r {
                    Ok(Ok(ev)) => Step::Event(Box::new(ev)),
                    Ok(Err(e)) => Step::Lost(classify(&e)),
                    Err(_) => Step::Lost(LinkError::Connection {
                        detail: format!("no progress for {:?}: link considered dead", self.stall),
                    }),
                },
            };
            match step {
                Step::Event(ev) => self.on_event(*ev),
                Step::Shutdown => {
                    self.graceful_disconnect().await;
                    break;
                }
                Step::Reconnect => {
                    tracing::info!(client_id, "reconnect requested");
                    self.link_lost(None);
                }
                Step::Lost(err) => {
                    self.link_lost(Some(err));
                    if !self.wait_backoff().await {
                        break;
                    }
                }
            }
        }
        self.finish();
        tracing::info!(client_id, "uplink stopped");
    }

    /// Handles one event.
    fn on_event(&mut self, ev: Event) {
        if let Event::Incoming(Packet::ConnAck(connack)) = &ev {
            let broker_max = connack.properties.as_ref().and_then(|p| p.max_packet_size);
            self.on_connected(broker_max);
            return;
        }
        if let Event::Incoming(Packet::SubAck(ack)) = &ev {
            let refused: Vec<_> = ack
                .return_codes
                .iter()
                .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                .collect();
            if !refused.is_empty() {
                tracing::error!(?refused, "broker refused subscriptions");
                self.shared.state.send_modify(|s| {
                    s.last_error = Some(format!("subscriptions refused: {refused:?}"));
                });
            }
            self.shared.state.send_modify(|s| s.subscribed = s.up);
            return;
        }
        let forward = {
            let mut d = self.shared.lock();
            self.apply_event(&mut d, ev)
        };
        if let Some(msg) = forward {
            self.forward(msg);
        }
    }

    fn on_connected(&mut self, broker_max_packet: Option<u32>) {
        self.backoff.on_connected(Instant::now());
        let max = broker_max_packet
            .unwrap_or(u32::MAX)
            .min(self.shared.max_packet_config);
        self.shared.max_packet.store(max, Ordering::SeqCst);
        let mut refused = None;
        {
            // SUBSCRIBE enters rumqttc's channel before any publish of this
            // connection (publishes wait for `up`, set under the same lock):
            // the broker handles packets of a connection in order, so a
            // response or downstream message triggered by our first publish
            // finds the subscription in place.
            let mut d = self.shared.lock();
            self.connection = self.shared.next_connection();
            let filter_bytes = (!self.shared.subscriptions.is_empty()).then(|| {
                self.shared
                    .subscriptions
                    .iter()
                    .map(|(f, _)| f.len())
                    .sum::<usize>()
            });
            d.meter.connected(Instant::now(), filter_bytes);
            if !self.shared.subscriptions.is_empty() {
                let filters = self
                    .shared
                    .subscriptions
                    .iter()
                    .map(|(f, q)| Filter::new(f.clone(), *q));
                if let Err(e) = self.shared.client.try_subscribe_many(filters) {
                    refused = Some(e.to_string());
                }
            }
            d.up = true;
        }
        if let Some(e) = refused {
            tracing::error!(cause = %e, "could not queue the subscriptions");
            self.shared.state.send_modify(|s| {
                s.last_error = Some(format!("subscriptions not sent: {e}"));
            });
        }
        let none = self.shared.subscriptions.is_empty();
        self.shared.state.send_modify(|s| {
            s.up = true;
            s.subscribed = none;
            s.since = Timestamp::now();
            s.connects += 1;
        });
        tracing::info!(
            client_id = %self.shared.client_id,
            subscriptions = self.shared.subscriptions.len(),
            "uplink up"
        );
    }

    /// Hands a message to the forwarder; never waits.
    fn forward(&mut self, msg: Incoming) {
        let n = self.backlog.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.backlog_warn) {
            tracing::warn!(backlog = n, "incoming messages not consumed");
        }
        if self.incoming.send(msg).is_err() {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The connection is gone (or being dropped: `cause` None, a requested
    /// reconnect): empty rumqttc's queues, fail every waiting caller,
    /// publish the state.
    fn link_lost(&mut self, cause: Option<LinkError>) {
        let mut late = Vec::new();
        let failed = {
            let mut d = self.shared.lock();
            // Events rumqttc buffered from the old connection still count
            // (a PUBACK read just before the error is a real acknowledgement).
            let stale: Vec<Event> = self.eventloop.state.events.drain(..).collect();
            for ev in stale {
                if let Some(msg) = self.apply_event(&mut d, ev) {
                    late.push(msg);
                }
            }
            // Acknowledgements owed on this connection are dropped from
            // here on; those already queued go with the queues below.
            self.connection = self.shared.next_connection();
            // Under the lock: nothing enters rumqttc's channel meanwhile.
            self.eventloop.clean();
            self.eventloop.pending.clear();
            self.eventloop.state.collision = None;
            d.meter.disconnected(Instant::now());
            d.fail_all()
        };
        let Some(err) = cause else {
            self.shared.state.send_modify(|s| {
                if s.up {
                    s.since = Timestamp::now();
                }
                s.up = false;
                s.subscribed = false;
            });
            tracing::info!(client_id = %self.shared.client_id, failed, "connection dropped on request");
            for msg in late {
                self.forward(msg);
            }
            return;
        };
        let tls = match &err {
            LinkError::Tls { kind, .. } => Some(*kind),
            _ => None,
        };
        let text = err.to_string();
        let mut was_up = false;
        let mut repeated = false;
        self.shared.state.send_modify(|s| {
            was_up = s.up;
            repeated = s.last_error.as_deref() == Some(text.as_str());
            if s.up {
                s.since = Timestamp::now();
            }
            s.up = false;
            s.subscribed = false;
            s.failures += 1;
            s.last_error = Some(text.clone());
            s.tls_failure = tls;
        });
        let client_id = &self.shared.client_id;
        if tls.is_some() {
            tracing::error!(client_id, cause = %text, "uplink TLS failure");
        } else if was_up || !repeated {
            tracing::warn!(client_id, cause = %text, failed, "uplink down");
        } else {
            tracing::debug!(client_id, cause = %text, "uplink still down");
        }
        for msg in late {
            self.forward(msg);
        }
    }

    /// Sleeps the backoff delay, cut short when the network changes or,
    /// if the broker could not be reached at all, when a probe finds it
    /// again; false when asked to stop meanwhile.
    async fn wait_backoff(&mut self) -> bool {
        let delay = self.backoff.next_delay(Instant::now(), self.draw());
        tracing::debug!(
            delay_ms = delay.as_millis() as u64,
            attempt = self.backoff.attempt(),
            "reconnecting after backoff"
        );
        if self.watch_network && self.network.is_none() {
            match NetworkWatch::open() {
                Ok(w) => self.network = Some(w),
                Err(e) => {
                    tracing::warn!(cause = %e, "no network watch: the backoff alone paces reconnects");
                    self.watch_network = false;
                }
            }
        }
        if let Some(w) = &self.network {
            // Changes while the link was up are not a return.
            w.clear();
        }
        // The probe ends the wait only when the broker comes back: seen
        // unreachable, then reachable. A broker that answers TCP but
        // refused the connection is paced by the backoff alone; one that
        // was still closing its listener when the drop was seen (a broker
        // restart) is caught once it is gone and back.
        let probe = match self.probe_interval {
            Some(every) if delay > every => {
                let timeout = every.min(Duration::from_secs(2));
                let gone = !reachable(&self.host, self.port, timeout).await;
                Some((every, timeout, gone))
            }
            _ => None,
        };
        let (host, port, jitter) = (self.host.clone(), self.port, self.probe_jitter);
        let probing = async move {
            let Some((every, timeout, mut gone)) = probe else {
                return std::future::pending::<()>().await;
            };
            loop {
                tokio::time::sleep(every + jitter.mul_f64(rand::random::<f64>())).await;
                let answers = reachable(&host, port, timeout).await;
                if answers && gone {
                    return;
                }
                gone |= !answers;
            }
        };
        let network = self.network.as_ref();
        let changed = async move {
            match network {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            biased;
            _ = self.shared.shutdown.notified() => return false,
            _ = self.shared.reconnect.notified() => return true,
            _ = tokio::time::sleep(delay) => return true,
            _ = changed => "the network changed",
            _ = probing => "the broker answers again",
        };
        let spread = self.probe_jitter.mul_f64(rand::random::<f64>());
        tracing::info!(
            client_id = %self.shared.client_id,
            why,
            in_ms = spread.as_millis() as u64,
            "reconnecting before the backoff ends"
        );
        tokio::select! {
            biased;
            _ = self.shared.shutdown.notified() => false,
            _ = tokio::time::sleep(spread) => true,
        }
    }

    /// The backoff's draw: uniform in [0, 1), or the ceiling without jitter.
    fn draw(&self) -> f64 {
        if self.jitter {
            rand::random::<f64>()
        } else {
            1.0
        }
    }

    async fn graceful_disconnect(&mut self) {
        let up = self.shared.lock().up;
        if !up {
            return;
        }
        if self.shared.client.try_disconnect().is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + DISCONNECT_GRACE;
        loop {
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(ev)) => {
                    let mut d = self.shared.lock();
                    // Late acknowledgements still resolve their callers.
                    let _ = self.apply_event(&mut d, ev);
                }
            }
        }
    }

    fn finish(&mut self) {
        {
            let mut d = self.shared.lock();
            self.eventloop.clean();
            self.eventloop.pending.clear();
            d.meter.disconnected(Instant::now());
            d.fail_all();
        }
        self.shared.permits.close();
        self.shared.state.send_modify(|s| {
            if s.up {
                s.since = Timestamp::now();
            }
            s.up = false;
            s.subscribed = false;
        });
        self.shared.stopped.send_replace(true);
    }
}

/// Moves incoming messages to the consumer's bounded channel, waiting for
/// room there instead of in the event loop.
async fn forwarder(
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    out: mpsc::Sender<Incoming>,
    backlog: Arc<AtomicUsize>,
) {
    while let Some(msg) = rx.recv().await {
        let sent = out.send(msg).await;
        backlog.fetch_sub(1, Ordering::SeqCst);
        if sent.is_err() {
            tracing::debug!("incoming channel closed; messages dropped");
            break;
        }
    }
}

/// Feeds one rumqttc event to the dispatcher; returns a message for the
/// `Incoming` channel if the event was one. `guard` makes the
/// acknowledgement of a QoS 1 message (sent when the message is dropped:
/// here for a response matched to its request, else by the consumer).
fn apply(d: &mut Dispatch, ev: Event, guard: impl Fn(u16) -> TransportAck) -> Option<Incoming> {
    match ev {
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            d.on_outgoing_publish(pkid);
            None
        }
        Event::Incoming(Packet::PubAck(ack)) => {
            let (code, name) = puback_reason(ack.reason);
            let text = ack
                .properties
                .as_ref()
                .and_then(|p| p.reason_string.as_deref());
            d.on_puback(ack.pkid, code, name, text);
            None
        }
        Event::Incoming(Packet::Publish(p)) => {
            d.meter.publish_in(p.size());
            let ack = match p.qos {
                rumqttc::v5::mqttbytes::QoS::AtMostOnce => TransportAck::none(),
                _ => guard(p.pkid),
            };
            incoming(p, ack).and_then(|m| d.on_incoming(m))
        }
        _ => None,
    }
}

fn incoming(p: Publish, transport_ack: TransportAck) -> Option<Incoming> {
    let topic = match String::from_utf8(p.topic.to_vec()) {
        Ok(t) => t,
        Err(_) => {
            tracing::warn!("incoming publish with a non-UTF-8 topic dropped");
            return None;
        }
    };
    let (correlation_data, response_topic) = match p.properties {
        Some(props) => (props.correlation_data, props.response_topic),
        None => (None, None),
    };
    Some(Incoming {
        topic,
        payload: p.payload,
        correlation_data,
        response_topic,
        transport_ack,
    })
}

/// The MQTT 5 code and name of a PUBACK reason.
pub(crate) fn puback_reason(r: PubAckReason) -> (u8, &'static str) {
    match r {
        PubAckReason::Success => (0, "Success"),
        PubAckReason::NoMatchingSubscribers => (16, "NoMatchingSubscribers"),
        PubAckReason::UnspecifiedError => (128, "UnspecifiedError"),
        PubAckReason::ImplementationSpecificError => (131, "ImplementationSpecificError"),
        PubAckReason::NotAuthorized => (135, "NotAuthorized"),
        PubAckReason::TopicNameInvalid => (144, "TopicNameInvalid"),
        PubAckReason::PacketIdentifierInUse => (145, "PacketIdentifierInUse"),
        PubAckReason::QuotaExceeded => (151, "QuotaExceeded"),
        PubAckReason::PayloadFormatInvalid => (153, "PayloadFormatInvalid"),
    }
}
