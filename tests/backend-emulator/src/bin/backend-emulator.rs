//! The backend emulator as a process, for the demo and scripts: connects to
//! a broker as `backend`, answers carts, and prints its counts as JSON lines
//! every few seconds and on exit (SIGINT/SIGTERM).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use backend_emulator::{Emulator, EmulatorConfig, JobConfig, JobsConfig};
use clap::Parser;
use store_and_forward::uplink::LinkConfig;

#[derive(Debug, Parser)]
#[command(
    name = "backend-emulator",
    about = "The cloud side of the cart's wire contract (tests, demo)"
)]
struct Args {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long)]
    port: u16,
    /// CA bundle (PEM) for the broker's certificate; omit with --plain.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The backend's client certificate (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The backend's client key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Plain TCP (demo and tests only).
    #[arg(long)]
    plain: bool,
    /// Folder with the TEST ONLY fixtures.
    #[arg(long, default_value = "tests/fixtures")]
    fixtures: PathBuf,
    /// Seconds between count lines.
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// Sends a cart its staff list for age checks, `CART=ID[,ID...]` (the
    /// badge ids after `STAFF:`), again every second until the cart
    /// acknowledges it. Repeatable.
    #[arg(long = "staff-list", value_name = "CART=IDS")]
    staff_lists: Vec<String>,
    /// The version of the staff lists sent with `--staff-list`.
    #[arg(long, default_value_t = 1)]
    staff_list_version: u64,
    /// Answers AWS IoT Jobs (the broker must let `backend` use `$aws/things/#`).
    #[arg(long)]
    jobs: bool,
    /// Creates a job at start from a JSON file with CreateJob's fields
    /// (`jobId`, `targets`, `document`, `jobExecutionsRolloutConfig`,
    /// `abortConfig`, `timeoutConfig`); implies `--jobs`. Repeatable.
    #[arg(long = "job", value_name = "FILE")]
    job_files: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    let config = EmulatorConfig {
        link: LinkConfig {
            host: args.host.clone(),
            port: args.port,
            client_id: "backend".into(),
            tls: !args.plain,
            ca_file: args.ca.clone(),
            ..LinkConfig::default()
        },
        identity,
        fixtures: args.fixtures.clone(),
    };
    let jobs = (args.jobs || !args.job_files.is_empty()).then(JobsConfig::default);
    let emulator = Emulator::start_with(config, None, jobs)
        .await
        .context("starting the emulator")?;
    if !args.job_files.is_empty() && !emulator.wait_up(Duration::from_secs(30)).await {
        anyhow::bail!("the broker did not answer within 30 s; no job created");
    }
    for file in &args.job_files {
        let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let job: JobConfig = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a job (CreateJob's fields)", file.display()))?;
        if let Some(service) = emulator.jobs() {
            service
                .create_job(job)
                .await
                .with_context(|| format!("creating the job of {}", file.display()))?;
        }
    }
    for spec in &args.staff_lists {
        let Some((cart, ids)) = spec.split_once('=') else {
            anyhow::bail!("--staff-list {spec:?}: expected CART=ID[,ID...]");
        };
        let ids: Vec<&str> = ids.split(',').filter(|i| !i.is_empty()).collect();
        emulator.keep_publishing_staff_list(
            cart,
            args.staff_list_version,
            &ids,
            Duration::from_secs(1),
        );
    }
    let mut every = tokio::time::interval(Duration::from_secs(args.every.max(1)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = every.tick() => println!("{}", serde_json::to_string(&emulator.counts())?),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    println!("{}", serde_json::to_string(&emulator.counts())?);
    emulator.shutdown().await;
    Ok(())
}
