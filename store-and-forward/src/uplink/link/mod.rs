//! The MQTT 5 link to the broker: one owner of rumqttc's event loop on its
//! own thread, reconnecting with backoff, restoring subscriptions, matching
//! PUBACKs and responses to their callers.
//!
//! - [`start`] spawns the owner thread (a current-thread tokio runtime of
//!   its own: rustls signs synchronously during the handshake and a TPM
//!   signature can take tens of ms, so nothing else waits behind it) and
//!   returns a [`LinkHandle`] and the channel of [`Incoming`] messages.
//! - [`LinkHandle::publish`] resolves when the broker's PUBACK for that
//!   publish arrives; [`LinkHandle::request`] is MQTT 5 request/response.
//! - [`LinkHandle::state`] is a watch of [`LinkState`] for the UI and CLI.
//! - Downstream flow control: the CONNECT carries MQTT 5 Receive Maximum
//!   (`receive_maximum`, default 32) and a QoS 1 message is acknowledged
//!   to the broker only when the consumer drops its [`Incoming`] (after
//!   handling it), so the broker never has more than that many
//!   unacknowledged messages in the cart's memory.
//!
//! Files: `config.rs` ([`LinkConfig`]), `error.rs` ([`LinkError`]),
//! `handle.rs` ([`LinkHandle`]), `driver.rs` (the owner loop),
//! `dispatch.rs` (matching acknowledgements and responses), `reach.rs`
//! (the network's and the broker's return: a netlink watch, a TCP probe).

mod config;
mod dispatch;
mod driver;
mod error;
mod handle;
mod reach;
mod traffic;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use rumqttc::v5::AsyncClient;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use config::LinkConfig;
pub use error::{LinkError, TlsFailure, permanent_refusal, tls_failure};
pub use handle::LinkHandle;
/// MQTT quality of service (QoS 0 and 1 are used; AWS IoT has no QoS 2).
pub use rumqttc::v5::mqttbytes::QoS;
pub use traffic::Traffic;

use crate::time::Timestamp;
use crate::uplink::tls::SwappableClientCert;
use crate::uplink::topics::{filter_matches, valid_filter};

/// The broker accepted a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    /// The MQTT 5 reason code: 0 Success or 16 NoMatchingSubscribers
    /// (QoS 0 publishes resolve with 0 once written).
    pub reason: u8,
}

/// MQTT 5 properties of a publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProps {
    /// Where the receiver should answer.
    pub response_topic: Option<String>,
    /// Echoed in the answer, to match it.
    pub correlation_data: Option<Bytes>,
    /// Content type (e.g. `application/cbor`).
    pub content_type: Option<String>,
    /// The broker drops the message if not delivered within this many seconds.
    pub message_expiry_secs: Option<u32>,
}

/// A message from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The topic it was published to.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// MQTT 5 correlation data (set on responses, including late ones).
    pub correlation_data: Option<Bytes>,
    /// MQTT 5 response topic (set on requests from the cloud).
    pub response_topic: Option<String>,
    /// The broker's acknowledgement of a QoS 1 message: sent when the last
    /// copy of this message is dropped, i.e. once the consumer is done.
    pub transport_ack: TransportAck,
}

/// The MQTT acknowledgement (PUBACK) owed for one incoming QoS 1 message,
/// sent when the last clone is dropped. Only on the connection it came in
/// on: after a reconnect the packet id may name another message, so a late
/// acknowledgement is dropped (the clean session dropped the message too;
/// the backend sends again what the cart did not acknowledge in the wire
/// contract). Compares equal to every other (it is not part of the message).
#[derive(Clone, Default)]
pub struct TransportAck(Option<Arc<AckOnDrop>>);

impl TransportAck {
    /// No acknowledgement owed (QoS 0, or a message made by a test).
    pub fn none() -> TransportAck {
        TransportAck(None)
    }

    /// Whether an acknowledgement is still owed.
    pub fn owed(&self) -> bool {
        self.0.is_some()
    }
}

impl PartialEq for TransportAck {
    fn eq(&self, _: &TransportAck) -> bool {
        true
    }
}

impl Eq for TransportAck {}

impl std::fmt::Debug for TransportAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(a) => write!(f, "TransportAck(pkid {})", a.pkid),
            None => f.write_str("TransportAck(none)"),
        }
    }
}

/// Sends its PUBACK when dropped.
pub(crate) struct AckOnDrop {
    shared: Weak<Shared>,
    pkid: u16,
    connection: u64,
}

impl Drop for AckOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.ack(self.pkid, self.connection);
        }
    }
}

/// The link's state, published on a watch channel for the UI and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    /// Connected to the broker (CONNACK received, no error since).
    pub up: bool,
    /// When `up` last changed (or the link started), wall-clock ms.
    pub since: Timestamp,
    /// The last error seen (kept after recovery, as history).
    pub last_error: Option<String>,
    /// Set when the last error was a TLS failure: which kind.
    pub tls_failure: Option<TlsFailure>,
    /// Successful connections so far.
    pub connects: u64,
    /// Failed connection attempts and lost connections so far.
    pub failures: u64,
    /// The broker answered this connection's SUBSCRIBE (or there is none):
    /// what the backend sends from now on reaches the cart.
    #[serde(default)]
    pub subscribed: bool,
}

/// What the handle and the owner thread share.
pub(crate) struct Shared {
    pub(crate) dispatch: std::sync::Mutex<dispatch::Dispatch>,
    pub(crate) client: AsyncClient,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) state: watch::Sender<LinkState>,
    pub(crate) subscriptions: Vec<(String, QoS)>,
    pub(crate) client_id: String,
    /// Our `max_packet_size`, lowered to the broker's CONNACK maximum.
    pub(crate) max_packet: AtomicU32,
    /// The configured `max_packet_size`.
    pub(crate) max_packet_config: u32,
    pub(crate) shutdown: Notify,
    pub(crate) reconnect: Notify,
    pub(crate) stopping: AtomicBool,
    pub(crate) stopped: watch::Sender<bool>,
    /// The connection acknowledgements belong to: bumped (under this lock,
    /// before rumqttc's queues are emptied) whenever a connection ends or
    /// starts, so an acknowledgement is queued on its own connection or
    /// not at all. Taken after the dispatch lock, never before it.
    pub(crate) connection: Mutex<u64>,
    /// Incoming messages handed out and not yet acknowledged.
    pub(crate) unacked: std::sync::atomic::AtomicUsize,
    /// PUBACKs queued for incoming QoS 1 messages ([`Traffic`]).
    pub(crate) pubacks_out: AtomicU64,
}

impl Shared {
    /// The dispatcher; a poisoned lock is recovered (the data is plain
    /// bookkeeping, consistent after every statement).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, dispatch::Dispatch> {
        match self.dispatch.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Starts a new connection epoch (acknowledgements owed on the old one
    /// are dropped from now on).
    pub(crate) fn next_connection(&self) -> u64 {
        let mut c = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        *c += 1;
        *c
    }

    /// A guard that acknowledges `pkid` (of connection `connection`) when
    /// the last copy of its message is dropped.
    pub(crate) fn ack_guard(self: &Arc<Self>, pkid: u16, connection: u64) -> TransportAck {
        self.unacked
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        TransportAck(Some(Arc::new(AckOnDrop {
            shared: Arc::downgrade(self),
            pkid,
            connection,
        })))
    }

    /// Queues the PUBACK for `pkid` if `connection` is still the current
    /// one.
    fn ack(&self, pkid: u16, connection: u64) {
        self.unacked
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let current = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        if *current != connection {
            tracing::debug!(pkid, "acknowledgement for an earlier connection dropped");
            return;
        }
        let mut publish = rumqttc::v5::mqttbytes::v5::Publish::new("", QoS::AtLeastOnce, "", None);
        publish.pkid = pkid;
        match self.client.try_ack(&publish) {
            Ok(()) => {
                self.pubacks_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                // The request channel is full or closed: the broker keeps the
                // message in flight until the connection ends, then drops it
                // (clean session) and the backend sends it again.
                tracing::warn!(pkid, cause = %e, "could not queue an acknowledgement");
            }
        }
    }

    pub(crate) fn covers(&self, topic: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|(f, _)| filter_matches(f, topic))
    }
}

/// Starts the link: validates the configuration, loads the TLS
/// configuration, spawns the owner thread, and returns the handle and the
/// channel of incoming messages (everything published to the
/// `subscriptions` except responses to this link's own requests).
/// The subscriptions are made again after every reconnect.
pub fn start(
    config: LinkConfig,
    cert: Option<Arc<SwappableClientCert>>,
    subscriptions: Vec<(String, QoS)>,
) -> Result<(LinkHandle, mpsc::Receiver<Incoming>), LinkError> {
    if !subscriptions.iter().all(|(f, _)| valid_filter(f)) {
        return Err(LinkError::Config("invalid subscription filter"));
    }
    let options = config.mqtt_options(cert.as_ref())?;
    let (client, eventloop) = AsyncClient::new(options, config.max_pending.saturating_add(16));
    let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_capacity);
    let (state, _) = watch::channel(LinkState {
        up: false,
        since: Timestamp::now(),
        last_error: None,
        tls_failure: None,
        connects: 0,
        failures: 0,
        subscribed: false,
    });
    let (stopped, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        dispatch: std::sync::Mutex::new(dispatch::Dispatch::default()),
        client,
        permits: Arc::new(Semaphore::new(config.max_pending)),
        state,
        subscriptions,
        client_id: config.client_id.clone(),
        max_packet: AtomicU32::new(config.max_packet_size),
        max_packet_config: config.max_packet_size,
        shutdown: Notify::new(),
        reconnect: Notify::new(),
        stopping: AtomicBool::new(false),
        stopped,
        connection: Mutex::new(0),
        unacked: std::sync::atomic::AtomicUsize::new(0),
        pubacks_out: AtomicU64::new(0),
    });
    let driver = driver::Driver::new(eventloop, shared.clone(), incoming_tx, &config);
    // The runtime is built on the owner thread itself (a runtime must not
    // be dropped inside the caller's async context should start fail).
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("uplink-{}", config.client_id))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let _ = ready_tx.send(Ok(()));
                    runtime.block_on(driver.run());
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(LinkError::Runtime)?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(LinkError::Runtime(e)),
        Err(_) => {
            return Err(LinkError::Runtime(std::io::Error::other(
                "link thread ended before starting",
            )));
        }
    }
    Ok((LinkHandle::new(shared), incoming_rx))
}
