//! The handle everyone but the owner thread holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use tokio::sync::{oneshot, watch};

use super::dispatch::Pending;
use super::{Incoming, LinkError, LinkState, PubAck, PublishProps, QoS, Shared};
use crate::uplink::topics::valid_topic_name;

/// A cheap, cloneable handle to the link (Send + Sync). When the last
/// clone is dropped, the link shuts down.
#[derive(Clone)]
pub struct LinkHandle {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle")
            .field("client_id", &self.shared.client_id)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

/// Stops the link when the last handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        self.0.shutdown.notify_one();
    }
}

/// Removes a request's correlation entry however the request ends.
struct ForgetRequest<'a> {
    shared: &'a Shared,
    correlation: Bytes,
}

impl Drop for ForgetRequest<'_> {
    fn drop(&mut self) {
        self.shared.lock().forget_request(&self.correlation);
    }
}

impl LinkHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> LinkHandle {
        LinkHandle {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    /// The MQTT client id (the cart id).
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// Publishes and resolves when the broker's PUBACK for this publish
    /// arrives (QoS 1), or once written (QoS 0).
    ///
    /// `Err(Disconnected)`: the link is down or dropped before the PUBACK;
    /// not delivered, retry later. `Err(Rejected)`: the broker refused it
    /// with a reason code; quarantine. `Err(TooLarge)`: bigger than the
    /// packet limit; split or quarantine. QoS 2 is refused (`UnsupportedQos`).
    /// Waits while `max_pending` publishes are already queued or in flight.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        props: PublishProps,
    ) -> Result<PubAck, LinkError> {
        if !valid_topic_name(topic) {
            return Err(LinkError::InvalidTopic(topic.to_string()));
        }
        if qos == QoS::ExactlyOnce {
            return Err(LinkError::UnsupportedQos);
        }
        let properties = PublishProperties {
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            content_type: props.content_type,
            message_expiry_interval: props.message_expiry_secs,
            ..PublishProperties::default()
        };
        // An oversized packet would make rumqttc drop the whole connection
        // (and the caller retry it forever): refuse it here instead.
        let size = Publish::new(topic, qos, payload.clone(), Some(properties.clone())).size() + 2;
        let max = self.shared.max_packet.load(Ordering::SeqCst);
        if size > max as usize {
            return Err(LinkError::TooLarge { size, max });
        }
        let permit = self
            .shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LinkError::Shutdown)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut d = self.shared.lock();
            if self.shared.stopping.load(Ordering::SeqCst) {
                return Err(LinkError::Shutdown);
            }
            if !d.up {
                return Err(LinkError::Disconnected);
            }
            // Under the lock, so the order in rumqttc's channel is the order
            // of the dispatcher's queue (see dispatch.rs).
            if let Err(e) = self
                .shared
                .client
                .try_publish_with_properties(topic, qos, false, payload, properties)
            {
                // Full cannot happen (permits < capacity) and closed means
                // the owner is gone: either way, not sent.
                tracing::warn!(cause = %e, "publish not queued");
                return Err(LinkError::Disconnected);
            }
            d.push_sent(Pending {
                qos,
                tx,
                _permit: Some(permit),
                bytes: size,
            });
        }
        rx.await.unwrap_or(Err(LinkError::Disconnected))
    }

    /// MQTT 5 request/response: publishes `payload` to `topic` (QoS 1) with
    /// `response_topic` and fresh correlation data, and returns the message
    /// answering it. `response_topic` must be covered by the link's
    /// subscriptions (`NotSubscribed` otherwise).
    ///
    /// `Err(Timeout)` when no answer came in `timeout` (an answer arriving
    /// later goes to the `Incoming` channel with its correlation data);
    /// `Err(Disconnected)` when the link is down or drops meanwhile;
    /// `Err(Rejected)` when the broker refused the request.
    pub async fn request(
        &self,
        topic: &str,
        payload: Bytes,
        response_topic: &str,
        timeout: Duration,
    ) -> Result<Incoming, LinkError> {
        if !self.shared.covers(response_topic) {
            return Err(LinkError::NotSubscribed(response_topic.to_string()));
        }
        let correlation = Bytes::copy_from_slice(&rand::random::<[u8; 16]>());
        let (tx, rx) = oneshot::channel();
        self.shared.lock().register_request(correlation.clone(), tx);
        let _forget = ForgetRequest {
            shared: &self.shared,
            correlation: correlation.clone(),
        };
        let props = PublishProps {
            response_topic: Some(response_topic.to_string()),
            correlation_data: Some(correlation),
            ..PublishProps::default()
        };
        let exchange = async {
            self.publish(topic, payload, QoS::AtLeastOnce, props)
                .await?;
            rx.await.map_err(|_| LinkError::Disconnected)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(LinkError::Timeout))
    }

    /// The link's state; `changed()` wakes on every transition.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.shared.state.subscribe()
    }

    /// Incoming QoS 1 messages handed out and not yet acknowledged to the
    /// broker (dropped by the consumer). Bounded by `receive_maximum` plus
    /// what arrived on earlier connections and is still held.
    pub fn unacknowledged(&self) -> usize {
        self.shared
            .unacked
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What crossed the link so far (packets, bytes, 5 KB steps, connected
    /// time): the measured side of a per-message bill.
    pub fn traffic(&self) -> super::Traffic {
        let pubacks = self
            .shared
            .pubacks_out
            .load(std::sync::atomic::Ordering::Relaxed);
        self.shared
            .lock()
            .meter
            .snapshot(std::time::Instant::now(), pubacks)
    }

    /// Waits until the link is up and its subscriptions are acknowledged
    /// (what the backend sends from then on arrives), or `timeout` passes;
    /// returns whether it is.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut rx = self.state();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.up && s.subscribed))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Drops the current connection and connects again at once (e.g. after
    /// [`SwappableClientCert::swap`](crate::uplink::tls::SwappableClientCert::swap),
    /// to use the new certificate now). Waiting publishes fail with `Disconnected`.
    pub fn reconnect(&self) {
        self.shared.reconnect.notify_one();
    }

    /// Graceful stop: sends DISCONNECT if connected, fails what still waits
    /// with `Disconnected`, and returns when the owner thread has finished.
    pub async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.shutdown.notify_one();
        let mut stopped = self.shared.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }
}
