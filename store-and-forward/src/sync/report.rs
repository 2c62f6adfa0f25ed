//! The delivery report: what left the cart, in messages, records, bytes and
//! billable units, per category.

use serde::{Deserialize, Serialize};

use crate::wire::telemetry::METERING_UNIT;

/// Counts for one category of messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Messages acknowledged by the broker.
    pub messages: u64,
    /// Ledger records they carried (events, for telemetry).
    pub records: u64,
    /// Payload bytes.
    pub payload_bytes: u64,
    /// MQTT PUBLISH packet bytes (fixed header, topic, packet id,
    /// properties, payload), before TLS.
    pub wire_bytes: u64,
    /// Billable units: per message, payload + topic in 5 KB steps.
    pub billable_units: u64,
}

impl Category {
    pub(crate) fn add(&mut self, topic_len: usize, payload_len: usize, records: usize) {
        self.messages += 1;
        self.records += records as u64;
        self.payload_bytes += payload_len as u64;
        self.wire_bytes += publish_packet_len(topic_len, payload_len) as u64;
        self.billable_units += billable_units(topic_len, payload_len);
    }

    /// Wire bytes per record.
    pub fn wire_bytes_per_record(&self) -> f64 {
        if self.records == 0 {
            0.0
        } else {
            self.wire_bytes as f64 / self.records as f64
        }
    }

    /// Billable units per record.
    pub fn units_per_record(&self) -> f64 {
        if self.records == 0 {
            0.0
        } else {
            self.billable_units as f64 / self.records as f64
        }
    }
}

/// What the uplink delivered since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Payment forwards and inquiries.
    pub payments: Category,
    /// Acks and status.
    pub control: Category,
    /// Telemetry batches.
    pub telemetry: Category,
    /// Online authorization requests answered.
    pub online_requests: u64,
    /// Records quarantined after a broker rejection.
    pub quarantined: u64,
    /// Publishes that failed and will be retried.
    pub retried: u64,
}

/// AWS IoT Core's metering: payload plus topic, in 5 KB steps (at least one).
pub fn billable_units(topic_len: usize, payload_len: usize) -> u64 {
    ((topic_len + payload_len).div_ceil(METERING_UNIT)).max(1) as u64
}

/// Size of an MQTT 5 QoS 1 PUBLISH with no properties besides their length.
pub fn publish_packet_len(topic_len: usize, payload_len: usize) -> usize {
    let remaining = 2 + topic_len + 2 + 1 + payload_len;
    let varint = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metering_rounds_up_per_5kb() {
        assert_eq!(billable_units(30, 0), 1);
        assert_eq!(billable_units(20, 5_100), 1);
        assert_eq!(billable_units(21, 5_100), 2);
    }

    #[test]
    fn packet_length() {
        assert_eq!(publish_packet_len(10, 100), 1 + 1 + 115);
        assert_eq!(publish_packet_len(30, 5_000), 1 + 2 + 5_035);
    }
}
