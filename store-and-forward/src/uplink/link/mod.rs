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
//!
//! Files: `config.rs` ([`LinkConfig`]), `error.rs` ([`LinkError`]),
//! `handle.rs` ([`LinkHandle`]), `driver.rs` (the owner loop),
//! `dispatch.rs` (matching acknowledgements and responses).

mod config;
mod dispatch;
mod driver;
mod error;
mod handle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

use bytes::Bytes;
use rumqttc::v5::AsyncClient;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use config::LinkConfig;
pub use error::{LinkError, TlsFailure, permanent_refusal, tls_failure};
pub use handle::LinkHandle;
/// MQTT quality of service (QoS 0 and 1 are used; AWS IoT has no QoS 2).
pub use rumqttc::v5::mqttbytes::QoS;

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
