//! Which AWS IoT default quota a fleet hits first: the measured per-cart
//! rates (the steady run's publishes, the restart run's connection storm)
//! scaled to a fleet size, against a replaceable quota table
//! (`prices/aws-iot-core-quotas-*.toml`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bill::BillError;

/// A quota table file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaTable {
    /// Where the figures come from.
    pub source: crate::bill::Source,
    /// The quotas.
    pub quota: Vec<Quota>,
}

/// One account-level rate quota.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// AWS's name for it.
    pub name: String,
    /// The rate, per second.
    pub per_sec: f64,
    /// Which demand it limits.
    pub demand: Demand,
}

/// A fleet's demand on a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Demand {
    /// CONNECTs per second in the reconnect storm after a broker or
    /// regional outage.
    Connects,
    /// SUBSCRIBE requests per second in that storm (one per connection).
    Subscribes,
    /// PUBLISHes per second from the carts, steady.
    PublishesIn,
    /// PUBLISHes per second to the carts, steady.
    PublishesOut,
    /// Job executions per second a whole-fleet rollout needs to reach every
    /// cart within an hour.
    JobRollout,
}

/// The measured rates, per cart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerCart {
    /// Steady PUBLISHes per second from one cart.
    pub publishes_in_per_sec: f64,
    /// Steady PUBLISHes per second to one cart.
    pub publishes_out_per_sec: f64,
    /// Peak connections per second in the restart storm, per cart of the
    /// fleet measured (the storm's shape scales with the fleet: the same
    /// backoff spreads N carts over the same window).
    pub storm_connects_per_sec: f64,
}

/// The fields of a steady run's report (`steady.json`) the rates need.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SteadyRates {
    /// Carts.
    pub carts: u64,
    /// Time scale of the run (1: real time).
    pub time_scale: u64,
    /// PUBLISHes per wall second from carts.
    pub broker_msgs_in_per_sec: f64,
    /// PUBLISHes per wall second to carts.
    pub broker_msgs_out_per_sec: f64,
}

/// The fields of a restart run's report (`restart.json`) the rates need.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct StormRates {
    /// Carts.
    pub carts: u64,
    /// Most connections accepted in one second.
    pub peak_connects_per_sec: u64,
}

impl PerCart {
    /// Per-cart rates from a steady and a restart report, at real time (a
    /// scaled run sends `time_scale` times as much per wall second).
    pub fn from_reports(steady: &SteadyRates, storm: &StormRates) -> PerCart {
        let per = (steady.carts.max(1) * steady.time_scale.max(1)) as f64;
        PerCart {
            publishes_in_per_sec: steady.broker_msgs_in_per_sec / per,
            publishes_out_per_sec: steady.broker_msgs_out_per_sec / per,
            storm_connects_per_sec: storm.peak_connects_per_sec as f64 / storm.carts.max(1) as f64,
        }
    }

    /// Reads `steady.json` and `restart.json` from `dir` (the runs' `--out`).
    pub fn load(dir: &Path) -> Result<PerCart, BillError> {
        fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, BillError> {
            let text = std::fs::read_to_string(path).map_err(|source| BillError::Read {
                path: path.display().to_string(),
                source,
            })?;
            serde_json::from_str(&text)
                .map_err(|e| BillError::Invalid(format!("{}: {e}", path.display())))
        }
        Ok(PerCart::from_reports(
            &read(&dir.join("steady.json"))?,
            &read(&dir.join("restart.json"))?,
        ))
    }
}

/// One quota at one fleet size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projected {
    /// The quota's name.
    pub quota: String,
    /// What the fleet asks, per second.
    pub demand_per_sec: f64,
    /// The quota, per second.
    pub limit_per_sec: f64,
    /// demand / limit (over 1: throttled).
    pub use_ratio: f64,
}

impl QuotaTable {
    /// Reads and checks a quota table.
    pub fn load(path: &Path) -> Result<QuotaTable, BillError> {
        let text = std::fs::read_to_string(path).map_err(|source| BillError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let t: QuotaTable = toml::from_str(&text)?;
        if t.quota.is_empty()
            || t.quota
                .iter()
                .any(|q| !q.per_sec.is_finite() || q.per_sec <= 0.0)
        {
            return Err(BillError::Invalid(
                "every quota must be a positive rate".into(),
            ));
        }
        Ok(t)
    }

    /// Every quota at `carts`, the most used first.
    pub fn project(&self, rates: &PerCart, carts: u64) -> Vec<Projected> {
        let n = carts as f64;
        let mut out: Vec<Projected> = self
            .quota
            .iter()
            .map(|q| {
                let demand = match q.demand {
                    Demand::Connects | Demand::Subscribes => rates.storm_connects_per_sec * n,
                    Demand::PublishesIn => rates.publishes_in_per_sec * n,
                    Demand::PublishesOut => rates.publishes_out_per_sec * n,
                    Demand::JobRollout => n / 3_600.0,
                };
                Projected {
                    quota: q.name.clone(),
                    demand_per_sec: demand,
                    limit_per_sec: q.per_sec,
                    use_ratio: demand / q.per_sec,
                }
            })
            .collect();
        out.sort_by(|a, b| b.use_ratio.total_cmp(&a.use_ratio));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> QuotaTable {
        QuotaTable::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("prices/aws-iot-core-quotas-us-east-1.toml"),
        )
        .expect("shipped table")
    }

    #[test]
    fn the_shipped_table_loads_and_ranks_the_storm_first() {
        let rates = PerCart {
            publishes_in_per_sec: 0.01,
            publishes_out_per_sec: 0.005,
            storm_connects_per_sec: 0.5,
        };
        let p = table().project(&rates, 10_000);
        // 5,000 connects and SUBSCRIBEs a second against 500 and 200.
        assert!(p[0].quota.starts_with("Subscriptions"), "{p:#?}");
        assert!((p[0].use_ratio - 25.0).abs() < 1e-9);
        assert!(
            p.iter()
                .any(|q| q.quota.starts_with("Inbound") && (q.demand_per_sec - 100.0).abs() < 1e-9)
        );
    }

    #[test]
    fn rates_come_back_to_real_time_per_cart() {
        let steady = SteadyRates {
            carts: 100,
            time_scale: 60,
            broker_msgs_in_per_sec: 16.0,
            broker_msgs_out_per_sec: 1.2,
        };
        let storm = StormRates {
            carts: 1_000,
            peak_connects_per_sec: 331,
        };
        let r = PerCart::from_reports(&steady, &storm);
        assert!((r.publishes_in_per_sec - 16.0 / 6_000.0).abs() < 1e-12);
        assert!((r.publishes_out_per_sec - 1.2 / 6_000.0).abs() < 1e-12);
        assert!((r.storm_connects_per_sec - 0.331).abs() < 1e-12);
    }

    #[test]
    fn a_bad_table_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("q.toml");
        let mut text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("prices/aws-iot-core-quotas-us-east-1.toml"),
        )
        .expect("read");
        text = text.replace("per_sec = 500.0", "per_sec = -1.0");
        std::fs::write(&path, &text).expect("write");
        assert!(matches!(
            QuotaTable::load(&path),
            Err(BillError::Invalid(_))
        ));
        std::fs::write(
            &path,
            text.replace("demand = \"connects\"", "demand = \"pings\""),
        )
        .expect("write");
        assert!(matches!(QuotaTable::load(&path), Err(BillError::Parse(_))));
    }
}
