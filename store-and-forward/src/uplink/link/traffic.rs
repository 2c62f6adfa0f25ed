//! What crossed the link, packet by packet: the figures a per-message
//! bill (AWS IoT Core's) is computed from, measured where the cart sends
//! and receives, not assumed.
//!
//! Sizes are whole MQTT packets as written (fixed header, topic, packet
//! id, properties, payload): a little above what AWS meters (topic,
//! payload, properties), so a bill computed from them errs high.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// AWS IoT Core's metering step for a message.
const STEP: u64 = 5 * 1024;

/// Packets and bytes over the link's life (every connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Connections the broker accepted (CONNACK): each a CONNECT sent.
    pub connects: u64,
    /// SUBSCRIBE packets sent (one per connection, every filter in it).
    pub subscribes: u64,
    /// Bytes of the topic filters in those SUBSCRIBEs.
    pub subscribe_filter_bytes: u64,
    /// PUBLISHes written to the broker.
    pub publishes_out: u64,
    /// Their bytes.
    pub publish_out_bytes: u64,
    /// Their 5 KB steps (each at least one).
    pub publish_out_steps: u64,
    /// PUBLISHes received from the broker.
    pub publishes_in: u64,
    /// Their bytes.
    pub publish_in_bytes: u64,
    /// Their 5 KB steps (each at least one).
    pub publish_in_steps: u64,
    /// PUBACKs sent for QoS 1 messages received.
    pub pubacks_out: u64,
    /// Time connected, all connections, ms.
    pub connected_ms: u64,
}

impl Traffic {
    /// What crossed the link since `earlier` (a reading of the same link).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        self.zip(earlier, u64::saturating_sub)
    }

    /// Each counter of `self` and `other` combined by `f`.
    fn zip(&self, other: &Traffic, f: impl Fn(u64, u64) -> u64) -> Traffic {
        Traffic {
            connects: f(self.connects, other.connects),
            subscribes: f(self.subscribes, other.subscribes),
            subscribe_filter_bytes: f(self.subscribe_filter_bytes, other.subscribe_filter_bytes),
            publishes_out: f(self.publishes_out, other.publishes_out),
            publish_out_bytes: f(self.publish_out_bytes, other.publish_out_bytes),
            publish_out_steps: f(self.publish_out_steps, other.publish_out_steps),
            publishes_in: f(self.publishes_in, other.publishes_in),
            publish_in_bytes: f(self.publish_in_bytes, other.publish_in_bytes),
            publish_in_steps: f(self.publish_in_steps, other.publish_in_steps),
            pubacks_out: f(self.pubacks_out, other.pubacks_out),
            connected_ms: f(self.connected_ms, other.connected_ms),
        }
    }
}

/// Several links' traffic together (a fleet's, a group's).
impl<'a> std::iter::Sum<&'a Traffic> for Traffic {
    fn sum<I: Iterator<Item = &'a Traffic>>(iter: I) -> Traffic {
        iter.fold(Traffic::default(), |acc, t| acc.zip(t, u64::saturating_add))
    }
}

impl std::iter::Sum for Traffic {
    fn sum<I: Iterator<Item = Traffic>>(iter: I) -> Traffic {
        iter.fold(Traffic::default(), |acc, t| {
            acc.zip(&t, u64::saturating_add)
        })
    }
}

/// 5 KB steps of a packet of `bytes`, at least one.
pub(crate) fn steps(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(STEP).max(1)
}

/// The running meter (kept under the dispatcher's lock).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub(crate) traffic: Traffic,
    connected_at: Option<Instant>,
}

impl Meter {
    pub(crate) fn publish_out(&mut self, bytes: usize) {
        let t = &mut self.traffic;
        t.publishes_out += 1;
        t.publish_out_bytes += bytes as u64;
        t.publish_out_steps += steps(bytes);
    }

    pub(crate) fn publish_in(&mut self, bytes: usize) {
        let t = &mut self.traffic;
        t.publishes_in += 1;
        t.publish_in_bytes += bytes as u64;
        t.publish_in_steps += steps(bytes);
    }

    pub(crate) fn connected(&mut self, now: Instant, filter_bytes: Option<usize>) {
        self.disconnected(now);
        self.traffic.connects += 1;
        if let Some(b) = filter_bytes {
            self.traffic.subscribes += 1;
            self.traffic.subscribe_filter_bytes += b as u64;
        }
        self.connected_at = Some(now);
    }

    pub(crate) fn disconnected(&mut self, now: Instant) {
        if let Some(at) = self.connected_at.take() {
            self.traffic.connected_ms += duration_ms(now.saturating_duration_since(at));
        }
    }

    /// The totals, the current connection's time included.
    pub(crate) fn snapshot(&self, now: Instant, pubacks_out: u64) -> Traffic {
        let mut t = self.traffic;
        if let Some(at) = self.connected_at {
            t.connected_ms += duration_ms(now.saturating_duration_since(at));
        }
        t.pubacks_out = pubacks_out;
        t
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_5_kb_at_least_one() {
        assert_eq!(steps(0), 1);
        assert_eq!(steps(5 * 1024), 1);
        assert_eq!(steps(5 * 1024 + 1), 2);
    }

    #[test]
    fn connected_time_sums_every_connection_and_the_current_one() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        m.connected(t0, Some(40));
        m.disconnected(t0 + Duration::from_millis(1_500));
        m.disconnected(t0 + Duration::from_millis(2_000));
        m.connected(t0 + Duration::from_millis(3_000), Some(40));
        m.publish_out(6_000);
        m.publish_in(10);
        let t = m.snapshot(t0 + Duration::from_millis(3_250), 7);
        assert_eq!(t.connected_ms, 1_750);
        assert_eq!(
            (t.connects, t.subscribes, t.subscribe_filter_bytes),
            (2, 2, 80)
        );
        assert_eq!(
            (t.publishes_out, t.publish_out_bytes, t.publish_out_steps),
            (1, 6_000, 2)
        );
        assert_eq!((t.publishes_in, t.publish_in_steps), (1, 1));
        assert_eq!(t.pubacks_out, 7);
        let twice: Traffic = [t, t].iter().sum();
        assert_eq!(twice.since(&t), t);
        assert_eq!(t.since(&twice), Traffic::default());
    }
}
