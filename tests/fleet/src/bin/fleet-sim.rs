//! `fleet-sim`: runs one of the fleet scenarios and prints its figures;
//! `--out DIR` also writes them as `DIR/<scenario>.json`. The broker is a
//! local mosquitto, or an external MQTT 5 broker (`--broker-host` and the
//! flags that go with it). See docs/fleet.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fleet_sim::bill::PriceTable;
use fleet_sim::external::ExternalOptions;
use fleet_sim::quota::{PerCart, QuotaTable};
use fleet_sim::scenario::{
    self, OutageConfig, RestartConfig, RolloutScenario, Setting, SteadyConfig,
};
use serde::Serialize;

#[derive(Parser)]
#[command(
    about = "N carts of the real ledger, uplink and sync against mosquitto and the backend emulator",
    long_about = "N carts of the real ledger, uplink and sync against mosquitto and the backend emulator.\n\n\
        By default the simulator starts its own mosquitto and test CA. With --broker-host and the \
        flags that go with it (all or none), the carts connect to an external MQTT 5 broker instead \
        (AWS IoT Core, or a cluster that trusts the fleet's CA): each cart gets a certificate with \
        CN = its id (cart-00000, cart-00001, ...) signed by --issuer-cert/--issuer-key, and the \
        backend emulator connects as client id `backend` with --backend-cert/--backend-key, unless \
        --no-backend. steady, outage and rollout run against an external broker; restart needs the \
        local one. See docs/fleet.md, \"Against a real broker\"."
)]
struct Cli {
    /// Write the report as JSON into this folder too.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

/// An external broker instead of the local mosquitto: all of these or none
/// (the port and server name have defaults; the backend needs its
/// certificate and key, or --no-backend).
#[derive(Args)]
#[command(next_help_heading = "External broker (all or none)")]
struct BrokerArgs {
    /// The external broker's host name (e.g. the AWS IoT ATS endpoint).
    #[arg(long, global = true, value_name = "HOST")]
    broker_host: Option<String>,
    /// Its MQTT-over-TLS port [default: 8883].
    #[arg(long, global = true, value_name = "PORT")]
    broker_port: Option<u16>,
    /// The name the broker's certificate must be valid for [default: the host].
    #[arg(long, global = true, value_name = "NAME")]
    server_name: Option<String>,
    /// The CA bundle (PEM) that verifies the broker (on AWS IoT Core: Amazon Root CA 1).
    #[arg(long, global = true, value_name = "PEM")]
    broker_ca: Option<PathBuf>,
    /// The CA certificate (PEM) the broker trusts for client certificates:
    /// every cart's certificate is signed by it, CN = the cart id.
    #[arg(long, global = true, value_name = "PEM")]
    issuer_cert: Option<PathBuf>,
    /// The issuer's private key (PKCS#8 PEM).
    #[arg(long, global = true, value_name = "PEM")]
    issuer_key: Option<PathBuf>,
    /// The backend emulator's client certificate (PEM; it connects as client id `backend`).
    #[arg(long, global = true, value_name = "PEM")]
    backend_cert: Option<PathBuf>,
    /// The backend emulator's private key (PEM).
    #[arg(long, global = true, value_name = "PEM")]
    backend_key: Option<PathBuf>,
    /// Run no backend emulator: the broker's own backend answers the carts.
    /// Exactly-once at the backend and its ingest rate are then not
    /// measured, and rollout cannot run.
    #[arg(long, global = true)]
    no_backend: bool,
}

impl BrokerArgs {
    fn options(self) -> ExternalOptions {
        ExternalOptions {
            broker_host: self.broker_host,
            broker_port: self.broker_port,
            server_name: self.server_name,
            broker_ca: self.broker_ca,
            issuer_cert: self.issuer_cert,
            issuer_key: self.issuer_key,
            backend_cert: self.backend_cert,
            backend_key: self.backend_key,
            no_backend: self.no_backend,
        }
    }
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
    /// The broker restarted under the fleet (the local mosquitto only).
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
    let options = cli.broker.options();
    // What a scenario cannot do against an external broker is refused
    // first (the scenarios refuse it too); then the flags are checked, all
    // or none, files readable and usable, before anything starts.
    match &cli.scenario {
        Scenario::Project { .. } if options.any() => {
            anyhow::bail!("project reads reports and runs no fleet: the broker flags do not apply");
        }
        Scenario::Restart { .. } if options.any() => {
            return Err(fleet_sim::SimError::NeedsLocalBroker("the restart scenario").into());
        }
        Scenario::Rollout { .. } if options.no_backend => {
            return Err(fleet_sim::SimError::NeedsEmulator("the rollout scenario").into());
        }
        _ => {}
    }
    let target = options.target()?;
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
                target,
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
                target,
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
                target,
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
                target,
            })
            .await?;
            emit(&cli.out, "rollout", &r)?;
        }
    }
    Ok(())
}
