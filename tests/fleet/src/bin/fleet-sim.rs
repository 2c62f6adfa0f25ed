//! `fleet-sim`: runs one of the fleet scenarios and prints its figures;
//! `--out DIR` also writes them as `DIR/<scenario>.json`. See docs/fleet.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleet_sim::bill::PriceTable;
use fleet_sim::quota::{PerCart, QuotaTable};
use fleet_sim::scenario::{
    self, OutageConfig, RestartConfig, RolloutScenario, Setting, SteadyConfig,
};
use serde::Serialize;

#[derive(Parser)]
#[command(
    about = "N carts of the real ledger, uplink and sync against mosquitto and the backend emulator"
)]
struct Cli {
    /// Write the report as JSON into this folder too.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// A fleet shopping steadily: broker load, CPU and memory, the bill.
    Steady {
        #[arg(long, default_value_t = 1_000)]
        carts: usize,
        /// Seconds measured.
        #[arg(long, default_value_t = 180)]
        secs: u64,
        /// Seconds after start before measuring.
        #[arg(long, default_value_t = 20)]
        warmup: u64,
        /// Telemetry readings per cart per second.
        #[arg(long, default_value_t = 1.0)]
        readings_per_sec: f64,
        /// A checkout every this many seconds per cart (0: none).
        #[arg(long, default_value_t = 300.0)]
        checkout_every: f64,
        /// Simulated time runs this many times faster (rates multiplied,
        /// lingers and status intervals divided).
        #[arg(long, default_value_t = 1)]
        time_scale: u64,
        /// A group to compare, NAME:LINGER_SECS:STATUS_SECS (repeat it);
        /// default: the shipped settings.
        #[arg(long = "setting", value_parser = parse_setting)]
        settings: Vec<Setting>,
        /// The price table.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/prices/aws-iot-core-us-east-1.toml"))]
        prices: PathBuf,
        /// Fleet sizes to price at.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        fleets: Vec<u64>,
    },
    /// The broker restarted under the fleet.
    Restart {
        #[arg(long, default_value_t = 1_000)]
        carts: usize,
        /// Seconds the broker stays down.
        #[arg(long, default_value_t = 5.0)]
        down_secs: f64,
        /// Switch the jittered backoff off (to measure the storm).
        #[arg(long)]
        no_jitter: bool,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Every cart offline for a simulated period, then the link returns.
    Outage {
        #[arg(long, default_value_t = 1_000)]
        carts: usize,
        /// Simulated outage, seconds.
        #[arg(long, default_value_t = 3_600)]
        outage_secs: u64,
        #[arg(long, default_value_t = 1.0)]
        readings_per_sec: f64,
        /// A checkout every this many seconds per cart during the outage.
        #[arg(long, default_value_t = 300.0)]
        checkout_every: f64,
        #[arg(long, default_value_t = 1_800)]
        timeout_secs: u64,
    },
    /// Projects measured rates to fleet sizes against AWS IoT's default
    /// quotas: reads `steady.json` and `restart.json` from `--reports`.
    Project {
        /// The folder the steady and restart runs wrote (`--out`).
        #[arg(long)]
        reports: PathBuf,
        /// The quota table.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/prices/aws-iot-core-quotas-us-east-1.toml"))]
        quotas: PathBuf,
        /// Fleet sizes.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        fleets: Vec<u64>,
    },
    /// A job rolled out at a set rate with an abort threshold.
    Rollout {
        #[arg(long, default_value_t = 1_000)]
        carts: usize,
        /// maximumPerMinute.
        #[arg(long, default_value_t = 100)]
        per_minute: u32,
        /// Every N-th cart fails the job on purpose (0: none).
        #[arg(long, default_value_t = 4)]
        fail_every: usize,
        /// thresholdPercentage (FAILED).
        #[arg(long, default_value_t = 20.0)]
        abort_percent: f64,
        /// minNumberOfExecutedThings.
        #[arg(long, default_value_t = 100)]
        abort_min_executed: u32,
        #[arg(long, default_value_t = 120)]
        minute_timeout_secs: u64,
    },
}

fn parse_setting(s: &str) -> Result<Setting, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [name, linger, status] = parts.as_slice() else {
        return Err(format!("{s}: expected NAME:LINGER_SECS:STATUS_SECS"));
    };
    Ok(Setting {
        name: (*name).to_owned(),
        telemetry_linger_secs: linger.parse().map_err(|e| format!("{linger}: {e}"))?,
        status_interval_secs: status.parse().map_err(|e| format!("{status}: {e}"))?,
    })
}

fn emit(out: &Option<PathBuf>, name: &str, report: &impl Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    println!("{json}");
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, json + "\n").with_context(|| path.display().to_string())?;
        eprintln!("written to {}", path.display());
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,fleet_sim=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Steady {
            carts,
            secs,
            warmup,
            readings_per_sec,
            checkout_every,
            time_scale,
            mut settings,
            prices,
            fleets,
        } => {
            if settings.is_empty() {
                let d = store_and_forward::sync::SyncConfig::default();
                settings.push(Setting {
                    name: "shipped".into(),
                    telemetry_linger_secs: d.telemetry_linger_secs,
                    status_interval_secs: d.status_interval_secs,
                });
            }
            let prices = PriceTable::load(&prices)?;
            let r = scenario::steady(SteadyConfig {
                carts,
                secs,
                warmup_secs: warmup,
                readings_per_sec,
                checkout_every_secs: checkout_every,
                time_scale,
                settings,
                prices,
                bill_fleets: fleets,
            })
            .await?;
            emit(&cli.out, "steady", &r)?;
        }
        Scenario::Restart {
            carts,
            down_secs,
            no_jitter,
            timeout_secs,
        } => {
            let r = scenario::restart(RestartConfig {
                carts,
                down_secs,
                jitter: !no_jitter,
                timeout_secs,
            })
            .await?;
            let name = if no_jitter {
                "restart-no-jitter"
            } else {
                "restart"
            };
            emit(&cli.out, name, &r)?;
        }
        Scenario::Outage {
            carts,
            outage_secs,
            readings_per_sec,
            checkout_every,
            timeout_secs,
        } => {
            let r = scenario::outage(OutageConfig {
                carts,
                outage_secs,
                readings_per_sec,
                checkout_every_secs: checkout_every,
                timeout_secs,
            })
            .await?;
            emit(&cli.out, "outage", &r)?;
        }
        Scenario::Project {
            reports,
            quotas,
            fleets,
        } => {
            let rates = PerCart::load(&reports)?;
            let table = QuotaTable::load(&quotas)?;
            #[derive(Serialize)]
            struct Projection {
                per_cart: PerCart,
                source: fleet_sim::bill::Source,
                fleets: Vec<(u64, Vec<fleet_sim::quota::Projected>)>,
            }
            let p = Projection {
                per_cart: rates,
                source: table.source.clone(),
                fleets: fleets
                    .iter()
                    .map(|&n| (n, table.project(&rates, n)))
                    .collect(),
            };
            emit(&cli.out, "project", &p)?;
        }
        Scenario::Rollout {
            carts,
            per_minute,
            fail_every,
            abort_percent,
            abort_min_executed,
            minute_timeout_secs,
        } => {
            let r = scenario::rollout(RolloutScenario {
                carts,
                per_minute,
                fail_every,
                abort_percent,
                abort_min_executed,
                minute_timeout_secs,
            })
            .await?;
            emit(&cli.out, "rollout", &r)?;
        }
    }
    Ok(())
}
