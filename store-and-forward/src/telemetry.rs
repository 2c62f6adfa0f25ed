//! Telemetry events the cart reports, and the in-memory group-commit buffer
//! in front of the ledger.
//!
//! Events carry no shopper or card data: scans name the item, payment
//! outcomes name the key, the state, the amount and, after an age check,
//! the approving badge's hash (never its code).

use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::payment::{PaymentKey, PaymentState};
use crate::staff::StaffApproval;
use crate::time::Timestamp;

/// One telemetry event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TelemetryEvent {
    /// The periodic reading.
    Reading {
        /// When.
        at: Timestamp,
        /// Reading sequence number.
        seq: u64,
        /// Temperature, °C.
        temperature_c: f32,
        /// Battery, percent.
        battery_pct: u8,
        /// Wi-Fi signal, dBm.
        rssi_dbm: i16,
        /// The cart's state (idle, shopping, paying, ...).
        state: String,
        /// Position in the store (x, y metres), when known.
        position: Option<(f32, f32)>,
    },
    /// A shopping session started.
    SessionStarted {
        /// When.
        at: Timestamp,
        /// Session id.
        session: String,
    },
    /// A shopping session ended.
    SessionEnded {
        /// When.
        at: Timestamp,
        /// Session id.
        session: String,
        /// Items scanned.
        items: u32,
    },
    /// An item was scanned (no shopper data).
    Scan {
        /// When.
        at: Timestamp,
        /// The item's GTIN.
        gtin: String,
    },
    /// A payment reached a new state (no card data).
    PaymentOutcome {
        /// When.
        at: Timestamp,
        /// Idempotency key.
        payment: PaymentKey,
        /// The new state.
        state: PaymentState,
        /// Amount, minor units.
        amount_minor: i64,
        /// Currency.
        currency: Currency,
        /// The staff badge (hashed) that cleared the sale's age check;
        /// absent when it needed none (and from older firmware).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        age_check: Option<StaffApproval>,
    },
    /// The link to the backend went up or down.
    Link {
        /// When.
        at: Timestamp,
        /// Up or down.
        up: bool,
    },
    /// A device fault.
    Fault {
        /// When.
        at: Timestamp,
        /// Which device.
        device: String,
        /// Machine-readable code.
        code: String,
    },
}

/// `n` periodic readings, one a second from `start`, as a cart would send
/// them: a seeded random walk of temperature, battery, signal, state and
/// position ([`ReadingWalk`]). For benchmarks and demos that need realistic
/// telemetry (the encoding measurements in docs/wire-format.md, the 72 h
/// backlog).
pub fn simulated_readings(n: usize, start: Timestamp, seed: u64) -> Vec<TelemetryEvent> {
    let mut walk = ReadingWalk::new(seed);
    (0..n)
        .map(|i| walk.next_at(Timestamp(start.0 + i as i64 * 1000)))
        .collect()
}

/// A cart's periodic readings as a seeded random walk: temperature drifts,
/// the battery drains, the signal wanders, the cart moves while shopping
/// and changes state now and then. For simulations (the fleet simulator
/// steps one per cart) and [`simulated_readings`].
#[derive(Debug)]
pub struct ReadingWalk {
    rng: rand::rngs::StdRng,
    seq: u64,
    temp: f32,
    batt: f32,
    rssi: i16,
    x: f32,
    y: f32,
    state: usize,
}

impl ReadingWalk {
    /// A walk from the same start state for every seed.
    pub fn new(seed: u64) -> ReadingWalk {
        use rand::SeedableRng;
        ReadingWalk {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            seq: 0,
            temp: 21.0,
            batt: 100.0,
            rssi: -60,
            x: 10.0,
            y: 5.0,
            state: 0,
        }
    }

    /// The next reading, taken at `at`.
    pub fn next_at(&mut self, at: Timestamp) -> TelemetryEvent {
        use rand::Rng;
        const STATES: [&str; 3] = ["idle", "shopping", "paying"];
        let rng = &mut self.rng;
        self.temp += rng.random_range(-0.05..0.05);
        self.batt = (self.batt - rng.random_range(0.0..0.001)).max(0.0);
        self.rssi = (self.rssi + rng.random_range(-2..=2)).clamp(-90, -30);
        if rng.random_bool(0.002) {
            self.state = rng.random_range(0..3);
        }
        if self.state == 1 {
            self.x = (self.x + rng.random_range(-0.5..0.5)).clamp(0.0, 80.0);
            self.y = (self.y + rng.random_range(-0.5..0.5)).clamp(0.0, 40.0);
        }
        let seq = self.seq;
        self.seq += 1;
        TelemetryEvent::Reading {
            at,
            seq,
            temperature_c: (self.temp * 10.0).round() / 10.0,
            battery_pct: self.batt as u8,
            rssi_dbm: self.rssi,
            state: STATES[self.state].to_string(),
            position: Some((
                (self.x * 10.0).round() / 10.0,
                (self.y * 10.0).round() / 10.0,
            )),
        }
    }
}

/// Collects events in memory and says when to commit them as one group:
/// after `max_events` events or `max_delay_ms` after the first one. A crash
/// loses at most one group of telemetry; payments never wait on it.
#[derive(Debug)]
pub struct TelemetryBuffer {
    events: Vec<TelemetryEvent>,
    first_at: Option<Timestamp>,
    max_events: usize,
    max_delay_ms: i64,
}

impl TelemetryBuffer {
    /// A buffer that flushes after `max_events` or `max_delay_ms`.
    pub fn new(max_events: usize, max_delay_ms: u64) -> Self {
        TelemetryBuffer {
            events: Vec::with_capacity(max_events),
            first_at: None,
            max_events: max_events.max(1),
            max_delay_ms: max_delay_ms as i64,
        }
    }

    /// Adds an event; returns whether the group is due.
    pub fn push(&mut self, ev: TelemetryEvent, now: Timestamp) -> bool {
        self.first_at.get_or_insert(now);
        self.events.push(ev);
        self.is_due(now)
    }

    /// Whether the group should be committed now.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.events.len() >= self.max_events
            || self
                .first_at
                .is_some_and(|t| now.0 - t.0 >= self.max_delay_ms)
    }

    /// Takes the group for committing.
    pub fn take(&mut self) -> Vec<TelemetryEvent> {
        self.first_at = None;
        std::mem::replace(&mut self.events, Vec::with_capacity(self.max_events))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_on_count_or_delay() {
        let mut b = TelemetryBuffer::new(3, 100);
        let ev = TelemetryEvent::Link {
            at: Timestamp(0),
            up: true,
        };
        assert!(!b.push(ev.clone(), Timestamp(0)));
        assert!(!b.push(ev.clone(), Timestamp(50)));
        assert!(b.push(ev.clone(), Timestamp(60)));
        assert_eq!(b.take().len(), 3);
        assert!(!b.push(ev.clone(), Timestamp(200)));
        assert!(b.is_due(Timestamp(300)));
    }

    #[test]
    fn reading_is_about_150_bytes_as_json() {
        let ev = TelemetryEvent::Reading {
            at: Timestamp(1_764_000_000_000),
            seq: 123_456,
            temperature_c: 21.5,
            battery_pct: 87,
            rssi_dbm: -61,
            state: "shopping".into(),
            position: Some((12.5, 40.25)),
        };
        let n = serde_json::to_vec(&ev).unwrap().len();
        assert!((100..200).contains(&n), "{n}");
    }
}
