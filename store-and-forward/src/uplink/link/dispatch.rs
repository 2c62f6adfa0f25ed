//! Matching broker acknowledgements and responses to the callers waiting
//! for them. Sans-IO: the driver feeds it rumqttc's events in order.
//!
//! rumqttc hands out packet ids itself and reports each PUBLISH it writes
//! as `Outgoing::Publish(pkid)`, in the order requests entered its channel.
//! Requests enter that channel only under the dispatcher's lock, in the
//! same order as [`Dispatch::push_sent`], so the n-th `Outgoing::Publish`
//! belongs to the n-th sent entry; the PUBACK then carries the pkid.
//! When the connection drops, every entry still waiting fails with
//! `Disconnected` and rumqttc's own queues are emptied (clean session), so
//! nothing from an old connection is matched against a new one.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::traffic::Meter;
use super::{Incoming, LinkError, PubAck, QoS};

/// Reply slot of one publish.
pub(crate) type AckSender = oneshot::Sender<Result<PubAck, LinkError>>;

/// One publish waiting for its packet id or its PUBACK.
pub(crate) struct Pending {
    pub(crate) qos: QoS,
    pub(crate) tx: AckSender,
    /// Released when the publish resolves: bounds queued + in-flight publishes.
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
    /// The PUBLISH packet's size, metered when it is written.
    pub(crate) bytes: usize,
}

/// The link's bookkeeping of callers waiting on the broker.
#[derive(Default)]
pub(crate) struct Dispatch {
    /// Connected (CONNACK seen, no error since): publishes are accepted.
    pub(crate) up: bool,
    sent: VecDeque<Pending>,
    awaiting: HashMap<u16, Pending>,
    requests: HashMap<Bytes, oneshot::Sender<Incoming>>,
    /// What crossed the link.
    pub(crate) meter: Meter,
}

/// MQTT 5 PUBACK reason codes that mean "accepted".
pub(crate) fn is_success(code: u8) -> bool {
    code == 0 || code == 16
}

impl Dispatch {
    /// A publish was handed to rumqttc.
    pub(crate) fn push_sent(&mut self, p: Pending) {
        self.sent.push_back(p);
    }

    /// rumqttc wrote the next PUBLISH with packet id `pkid` (0 for QoS 0).
    pub(crate) fn on_outgoing_publish(&mut self, pkid: u16) {
        let Some(p) = self.sent.pop_front() else {
            tracing::warn!(pkid, "PUBLISH written that no caller sent");
            return;
        };
        self.meter.publish_out(p.bytes);
        if p.qos == QoS::AtMostOnce || pkid == 0 {
            let _ = p.tx.send(Ok(PubAck { reason: 0 }));
            return;
        }
        if let Some(old) = self.awaiting.insert(pkid, p) {
            // rumqttc never reuses an unacknowledged id; if it did, the old
            // one's fate is unknown: not delivered as far as we can tell.
            tracing::error!(pkid, "packet id reused while awaiting its PUBACK");
            let _ = old.tx.send(Err(LinkError::Disconnected));
        }
    }

    /// The broker acknowledged `pkid` with `code` (and maybe a reason string).
    pub(crate) fn on_puback(&mut self, pkid: u16, code: u8, name: &str, text: Option<&str>) {
        let Some(p) = self.awaiting.remove(&pkid) else {
            tracing::warn!(pkid, code, "PUBACK for no waiting publish");
            return;
        };
        let result = if is_success(code) {
            Ok(PubAck { reason: code })
        } else {
            let reason = match text {
                Some(t) => format!("{name}: {t}"),
                None => name.to_string(),
            };
            tracing::warn!(pkid, reason_code = code, %reason, "broker rejected a publish");
            Err(LinkError::Rejected {
                reason_code: code,
                reason,
            })
        };
        let _ = p.tx.send(result);
    }

    /// Registers a request's correlation data; its response goes to `tx`.
    pub(crate) fn register_request(&mut self, correlation: Bytes, tx: oneshot::Sender<Incoming>) {
        self.requests.insert(correlation, tx);
    }

    /// Forgets a request (timed out or cancelled).
    pub(crate) fn forget_request(&mut self, correlation: &Bytes) {
        self.requests.remove(correlation);
    }

    /// An incoming PUBLISH: a response to a waiting request goes to it;
    /// anything else (downstream messages, late responses) is returned for
    /// the `Incoming` channel.
    pub(crate) fn on_incoming(&mut self, msg: Incoming) -> Option<Incoming> {
        if let Some(c) = &msg.correlation_data
            && let Some(tx) = self.requests.remove(c)
        {
            // Err: the requester gave up in the meantime, a late answer.
            return tx.send(msg).err();
        }
        Some(msg)
    }

    /// The connection dropped: every waiting publish and request fails
    /// with `Disconnected` (requests see their channel closed).
    pub(crate) fn fail_all(&mut self) -> usize {
        self.up = false;
        let n = self.sent.len() + self.awaiting.len();
        for p in self
            .sent
            .drain(..)
            .chain(self.awaiting.drain().map(|(_, p)| p))
        {
            let _ = p.tx.send(Err(LinkError::Disconnected));
        }
        self.requests.clear();
        n
    }

    /// Publishes waiting for an id or an acknowledgement.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.sent.len() + self.awaiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(qos: QoS) -> (Pending, oneshot::Receiver<Result<PubAck, LinkError>>) {
        let (tx, rx) = oneshot::channel();
        (
            Pending {
                qos,
                tx,
                _permit: None,
                bytes: 0,
            },
            rx,
        )
    }

    fn msg(corr: Option<&'static [u8]>) -> Incoming {
        Incoming {
            topic: "carts/c1/rpc/auth".into(),
            payload: Bytes::from_static(b"x"),
            correlation_data: corr.map(Bytes::from_static),
            response_topic: None,
            transport_ack: crate::uplink::TransportAck::none(),
        }
    }

    #[test]
    fn pubacks_resolve_the_publish_with_that_packet_id() {
        let mut d = Dispatch::default();
        let (a, mut ra) = pending(QoS::AtLeastOnce);
        let (b, mut rb) = pending(QoS::AtLeastOnce);
        d.push_sent(a);
        d.push_sent(b);
        d.on_outgoing_publish(7);
        d.on_outgoing_publish(8);
        // Acknowledged out of order.
        d.on_puback(8, 0, "Success", None);
        assert_eq!(rb.try_recv().expect("b resolved").expect("ok").reason, 0);
        assert!(ra.try_recv().is_err());
        d.on_puback(7, 16, "NoMatchingSubscribers", None);
        assert_eq!(ra.try_recv().expect("a").expect("ok").reason, 16);
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn rejection_carries_the_reason_code() {
        let mut d = Dispatch::default();
        let (a, mut ra) = pending(QoS::AtLeastOnce);
        d.push_sent(a);
        d.on_outgoing_publish(1);
        d.on_puback(1, 135, "NotAuthorized", Some("acl"));
        match ra.try_recv().expect("resolved") {
            Err(LinkError::Rejected {
                reason_code,
                reason,
            }) => {
                assert_eq!(reason_code, 135);
                assert_eq!(reason, "NotAuthorized: acl");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn qos0_resolves_when_written() {
        let mut d = Dispatch::default();
        let (a, mut ra) = pending(QoS::AtMostOnce);
        d.push_sent(a);
        d.on_outgoing_publish(0);
        assert!(ra.try_recv().expect("resolved").is_ok());
    }

    #[test]
    fn link_loss_fails_everything_waiting_never_acknowledges() {
        let mut d = Dispatch {
            up: true,
            ..Dispatch::default()
        };
        let (a, mut ra) = pending(QoS::AtLeastOnce);
        let (b, mut rb) = pending(QoS::AtLeastOnce);
        d.push_sent(a);
        d.push_sent(b);
        d.on_outgoing_publish(1);
        let (tx, mut rrx) = oneshot::channel();
        d.register_request(Bytes::from_static(b"k"), tx);
        assert_eq!(d.fail_all(), 2);
        assert!(!d.up);
        assert!(matches!(ra.try_recv(), Ok(Err(LinkError::Disconnected))));
        assert!(matches!(rb.try_recv(), Ok(Err(LinkError::Disconnected))));
        assert!(rrx.try_recv().is_err());
        // A late PUBACK from the old connection is ignored.
        d.on_puback(1, 0, "Success", None);
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn responses_go_to_their_request_and_others_to_the_channel() {
        let mut d = Dispatch::default();
        let (tx, mut rx) = oneshot::channel();
        d.register_request(Bytes::from_static(b"abc"), tx);
        assert!(d.on_incoming(msg(Some(b"zzz"))).is_some());
        assert!(d.on_incoming(msg(None)).is_some());
        assert!(d.on_incoming(msg(Some(b"abc"))).is_none());
        assert!(rx.try_recv().is_ok());
        // Second answer with the same correlation: late, forwarded.
        assert!(d.on_incoming(msg(Some(b"abc"))).is_some());
    }

    #[test]
    fn answer_to_an_abandoned_request_is_forwarded() {
        let mut d = Dispatch::default();
        let (tx, rx) = oneshot::channel();
        d.register_request(Bytes::from_static(b"abc"), tx);
        drop(rx);
        assert!(d.on_incoming(msg(Some(b"abc"))).is_some());
    }
}
