//! The cloud bill: what AWS IoT Core meters, priced from a table.
//!
//! Metering rules, from AWS IoT Core's "additional metering details"
//! (<https://aws.amazon.com/iot-core/pricing/additional-details/>):
//! - a PUBLISH either way is metered on its topic, payload and (MQTT 5)
//!   properties, in 5 KB steps, at least one;
//! - a CONNECT on its size (Will included), a SUBSCRIBE on its topics;
//! - a PUBACK the device sends is metered: on its size with MQTT 5, as a
//!   whole 5 KB message with MQTT 3.1.1;
//! - PINGREQ/PINGRESP, CONNACK, SUBACK, the service's PUBACK, UNSUBSCRIBE
//!   and DISCONNECT are free;
//! - connectivity in one-minute increments of connected time;
//! - a rule routing a message to the backend is one rule triggered (5 KB
//!   steps) plus one action; a job execution is one remote action (AWS IoT
//!   Device Management).
//!
//! Prices come from a [`PriceTable`] file, never from the code. Messaging
//! is tiered on the account's monthly total, so a bill is for a fleet size:
//! [`PriceTable::bill`] prices one cart's month inside a fleet of N.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store_and_forward::uplink::Traffic;
use thiserror::Error;

/// AWS IoT Core's metering step.
pub const STEP_BYTES: u64 = 5 * 1024;

/// The month a bill is for: 30 days.
pub const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

/// How many metered messages `bytes` make: 5 KB steps, at least one.
pub fn steps(bytes: u64) -> u64 {
    bytes.div_ceil(STEP_BYTES).max(1)
}

/// One MQTT packet between a cart and the broker, with the sizes its
/// metering rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, its whole size (Will and properties included).
    Connect {
        /// Bytes.
        bytes: u64,
    },
    /// PUBLISH from the cart.
    PublishFromDevice {
        /// Topic bytes.
        topic: u64,
        /// Payload bytes.
        payload: u64,
        /// MQTT 5 properties (user properties, content type, ...).
        props: u64,
    },
    /// PUBLISH to the cart.
    PublishToDevice {
        /// Topic bytes.
        topic: u64,
        /// Payload bytes.
        payload: u64,
        /// MQTT 5 properties.
        props: u64,
    },
    /// PUBACK from the cart for a QoS 1 delivery.
    PubAckFromDevice {
        /// Its size with MQTT 5; `None` with MQTT 3.1.1 (a whole step).
        mqtt5_bytes: Option<u64>,
    },
    /// SUBSCRIBE.
    Subscribe {
        /// The topic filters' bytes.
        topics: u64,
        /// MQTT 5 user properties.
        props: u64,
    },
    /// A packet AWS does not meter (PINGREQ/PINGRESP, CONNACK, SUBACK, the
    /// service's PUBACK, UNSUBSCRIBE, DISCONNECT).
    Free,
}

/// Metered usage over a measured period, for any number of carts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Messages metered for CONNECT.
    pub connect: u64,
    /// Messages metered for the carts' PUBLISHes.
    pub publish_in: u64,
    /// Messages metered for PUBLISHes to the carts.
    pub publish_out: u64,
    /// Messages metered for the carts' PUBACKs.
    pub puback_in: u64,
    /// Messages metered for SUBSCRIBE.
    pub subscribe: u64,
    /// Packets seen that are not metered.
    pub free_packets: u64,
    /// Connected minutes (each connection rounded up to a minute).
    pub connection_minutes: u64,
    /// Rule executions on the backend's ingest path (5 KB steps).
    pub rules_triggered: u64,
    /// Rule actions applied.
    pub rule_actions: u64,
    /// Job executions (remote actions).
    pub job_executions: u64,
}

impl Usage {
    /// Records one packet.
    pub fn record(&mut self, packet: Packet) {
        match packet {
            Packet::Connect { bytes } => self.connect += steps(bytes),
            Packet::PublishFromDevice {
                topic,
                payload,
                props,
            } => self.publish_in += steps(topic + payload + props),
            Packet::PublishToDevice {
                topic,
                payload,
                props,
            } => self.publish_out += steps(topic + payload + props),
            Packet::PubAckFromDevice { mqtt5_bytes } => {
                self.puback_in += mqtt5_bytes.map_or(1, steps);
            }
            Packet::Subscribe { topics, props } => self.subscribe += steps(topics + props),
            Packet::Free => self.free_packets += 1,
        }
    }

    /// Records one connection that lasted `connected`.
    pub fn connection(&mut self, connected: Duration) {
        self.connection_minutes += connected.as_secs().div_ceil(60).max(1);
    }

    /// Records one message a rule routes to the backend's ingest.
    pub fn routed(&mut self, topic: u64, payload: u64) {
        self.rules_triggered += steps(topic + payload);
        self.rule_actions += 1;
    }

    /// Records one job execution.
    pub fn job_execution(&mut self) {
        self.job_executions += 1;
    }

    /// Usage from what carts' links measured ([`Traffic`], summed or
    /// one cart's): CONNECT and SUBSCRIBE one step each (a few hundred
    /// bytes), PUBLISHes by their own 5 KB steps, every PUBACK the carts
    /// sent (MQTT 5: a few bytes, one step), connected minutes rounded up
    /// per connection; every PUBLISH from a cart routed to the backend's
    /// ingest by one rule with one action. Packet sizes are whole MQTT
    /// packets, a little above what AWS meters: the bill errs high.
    pub fn from_traffic(t: &Traffic) -> Usage {
        let mut u = Usage {
            connect: t.connects,
            publish_in: t.publish_out_steps,
            publish_out: t.publish_in_steps,
            puback_in: t.pubacks_out,
            subscribe: t.subscribes,
            rules_triggered: t.publish_out_steps,
            rule_actions: t.publishes_out,
            ..Usage::default()
        };
        u.connection_minutes = t.connected_ms.div_ceil(60_000).max(t.connects.min(1));
        u
    }

    /// All metered messages.
    pub fn messages(&self) -> u64 {
        self.connect + self.publish_in + self.publish_out + self.puback_in + self.subscribe
    }

    /// Adds another period's (or cart's) usage.
    pub fn add(&mut self, o: &Usage) {
        self.connect += o.connect;
        self.publish_in += o.publish_in;
        self.publish_out += o.publish_out;
        self.puback_in += o.puback_in;
        self.subscribe += o.subscribe;
        self.free_packets += o.free_packets;
        self.connection_minutes += o.connection_minutes;
        self.rules_triggered += o.rules_triggered;
        self.rule_actions += o.rule_actions;
        self.job_executions += o.job_executions;
    }

    /// One cart's month, from `carts` measured over `measured`.
    pub fn per_cart_month(&self, carts: u64, measured: Duration) -> Monthly {
        let f = MONTH.as_secs_f64() / measured.as_secs_f64().max(1e-9) / carts.max(1) as f64;
        Monthly {
            messages: self.messages() as f64 * f,
            connection_minutes: self.connection_minutes as f64 * f,
            rules_triggered: self.rules_triggered as f64 * f,
            rule_actions: self.rule_actions as f64 * f,
            job_executions: self.job_executions as f64 * f,
        }
    }
}

/// One cart's metered month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Monthly {
    /// Messages (5 KB steps, both ways).
    pub messages: f64,
    /// Connected minutes.
    pub connection_minutes: f64,
    /// Rules triggered.
    pub rules_triggered: f64,
    /// Rule actions.
    pub rule_actions: f64,
    /// Job executions.
    pub job_executions: f64,
}

/// A price list, read from a file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Where the figures come from.
    pub source: Source,
    /// Connection time.
    pub connectivity: Connectivity,
    /// Messages.
    pub messaging: Messaging,
    /// The ingest rule.
    pub rules: Rules,
    /// Jobs.
    pub jobs: Jobs,
}

/// Where a price table's figures come from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The services priced.
    pub service: String,
    /// Their region.
    pub region: String,
    /// The table's date.
    pub date: String,
    /// Whether the figures were read from the live price pages on `date`.
    pub checked_live: bool,
}

/// Connectivity prices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Connectivity {
    /// USD per million connected minutes.
    pub usd_per_million_minutes: f64,
}

/// Messaging prices, tiered on the account's monthly total.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Messaging {
    /// Ascending tiers; the last has no upper bound.
    pub tiers: Vec<Tier>,
}

/// One messaging tier.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The tier ends at this many million messages a month (none: open).
    pub up_to_millions: Option<f64>,
    /// USD per million messages in this tier.
    pub usd_per_million: f64,
}

/// Rules engine prices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// USD per million rules triggered.
    pub usd_per_million_triggered: f64,
    /// USD per million actions applied.
    pub usd_per_million_actions: f64,
}

/// Jobs prices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    /// USD per remote action (job execution).
    pub usd_per_remote_action: f64,
}

/// A price table that cannot be used.
#[derive(Debug, Error)]
pub enum BillError {
    /// The file could not be read.
    #[error("price table {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a price table.
    #[error("price table: {0}")]
    Parse(#[from] toml::de::Error),
    /// The figures make no sense.
    #[error("price table: {0}")]
    Invalid(String),
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// What is metered.
    pub item: &'static str,
    /// How much, per cart-month.
    pub quantity: f64,
    /// The pricing rule applied.
    pub rule: String,
    /// USD per cart-month.
    pub usd: f64,
}

/// One cart's month inside a fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bill {
    /// The fleet size the tiers were applied at.
    pub carts: u64,
    /// Its lines.
    pub lines: Vec<Line>,
    /// Their sum.
    pub usd_per_cart_month: f64,
}

impl PriceTable {
    /// Reads and checks a price table file.
    pub fn load(path: &Path) -> Result<PriceTable, BillError> {
        let text = std::fs::read_to_string(path).map_err(|source| BillError::Read {
            path: path.display().to_string(),
            source,
        })?;
        PriceTable::parse(&text)
    }

    /// Parses and checks a price table.
    pub fn parse(text: &str) -> Result<PriceTable, BillError> {
        let table: PriceTable = toml::from_str(text)?;
        table.check()?;
        Ok(table)
    }

    fn check(&self) -> Result<(), BillError> {
        let prices = [
            self.connectivity.usd_per_million_minutes,
            self.rules.usd_per_million_triggered,
            self.rules.usd_per_million_actions,
            self.jobs.usd_per_remote_action,
        ];
        let tiers = &self.messaging.tiers;
        if prices
            .iter()
            .chain(tiers.iter().map(|t| &t.usd_per_million))
            .any(|p| !p.is_finite() || *p < 0.0)
        {
            return Err(BillError::Invalid(
                "a price is negative or not a number".into(),
            ));
        }
        let Some((last, rest)) = tiers.split_last() else {
            return Err(BillError::Invalid("messaging has no tiers".into()));
        };
        if last.up_to_millions.is_some() || rest.iter().any(|t| t.up_to_millions.is_none()) {
            return Err(BillError::Invalid(
                "only the last messaging tier is open-ended, and it must be".into(),
            ));
        }
        let bounds: Vec<f64> = rest.iter().filter_map(|t| t.up_to_millions).collect();
        if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0)
            || bounds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(BillError::Invalid(
                "messaging tiers must rise strictly".into(),
            ));
        }
        Ok(())
    }

    /// USD for `millions` messages in one month of the whole account.
    pub fn messaging_usd(&self, millions: f64) -> f64 {
        let mut usd = 0.0;
        let mut floor = 0.0;
        for tier in &self.messaging.tiers {
            let top = tier.up_to_millions.unwrap_or(f64::INFINITY);
            let here = (millions.min(top) - floor).max(0.0);
            usd += here * tier.usd_per_million;
            if millions <= top {
                break;
            }
            floor = top;
        }
        usd
    }

    /// One cart's month, `month`, in a fleet of `carts` alike.
    pub fn bill(&self, month: &Monthly, carts: u64) -> Bill {
        let carts = carts.max(1);
        let fleet_millions = month.messages * carts as f64 / 1e6;
        let messaging = self.messaging_usd(fleet_millions) / carts as f64;
        let lines = vec![
            Line {
                item: "messages",
                quantity: month.messages,
                rule: format!(
                    "5 KB steps both ways (CONNECT, PUBLISH, SUBSCRIBE, the cart's PUBACK); \
                     tiered on the fleet's {fleet_millions:.1} M a month"
                ),
                usd: messaging,
            },
            Line {
                item: "connection minutes",
                quantity: month.connection_minutes,
                rule: format!(
                    "${} per million minutes",
                    self.connectivity.usd_per_million_minutes
                ),
                usd: month.connection_minutes * self.connectivity.usd_per_million_minutes / 1e6,
            },
            Line {
                item: "rules triggered (ingest)",
                quantity: month.rules_triggered,
                rule: format!(
                    "${} per million, 5 KB steps",
                    self.rules.usd_per_million_triggered
                ),
                usd: month.rules_triggered * self.rules.usd_per_million_triggered / 1e6,
            },
            Line {
                item: "rule actions (ingest)",
                quantity: month.rule_actions,
                rule: format!("${} per million", self.rules.usd_per_million_actions),
                usd: month.rule_actions * self.rules.usd_per_million_actions / 1e6,
            },
            Line {
                item: "job executions",
                quantity: month.job_executions,
                rule: format!("${} per remote action", self.jobs.usd_per_remote_action),
                usd: month.job_executions * self.jobs.usd_per_remote_action,
            },
        ];
        let usd_per_cart_month = lines.iter().map(|l| l.usd).sum();
        Bill {
            carts,
            lines,
            usd_per_cart_month,
        }
    }
}

#[cfg(test)]
mod tests;
