//! `cart-recover`: the backend's recovery tool for a cart whose TPM died.
//! Reads a `cartctl recovery-export` file, unwraps the ledger's data key
//! with the fleet's recovery private key, and forwards the payments to the
//! backend (the emulator in tests) exactly once; prints one JSON line per
//! payment and a summary. Exit 0 when every record was answered, 1
//! otherwise (run it again: the backend deduplicates), 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use backend_emulator::recovery;
use clap::Parser;
use hal::identity::recovery::RecoveryPrivateKey;
use store_and_forward::ledger::RecoveryExport;
use store_and_forward::uplink::{self, LinkConfig, SwappableClientCert};

#[derive(Debug, Parser)]
#[command(
    name = "cart-recover",
    about = "Forward a dead-TPM cart's payments from its recovery export"
)]
struct Args {
    /// The export file (`cartctl recovery-export --out FILE`).
    #[arg(long)]
    export: PathBuf,
    /// The fleet's recovery private key (PEM: PKCS#8 or SEC1).
    #[arg(long)]
    recovery_key: PathBuf,
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
    /// Plain TCP (tests only).
    #[arg(long)]
    plain: bool,
    /// Seconds to wait for the backend's answers.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cart-recover: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cart-recover: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let export: RecoveryExport = serde_json::from_slice(&std::fs::read(&args.export)?)?;
    let key = RecoveryPrivateKey::from_pem_file(&args.recovery_key)?;
    let cert = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some(std::sync::Arc::new(SwappableClientCert::new(
            uplink::certified_key_from_pem_files(c, k)?,
        ))),
        _ => None,
    };
    let config = LinkConfig {
        host: args.host.clone(),
        port: args.port,
        client_id: format!("recovery-{}", export.cart_id),
        tls: !args.plain,
        ca_file: args.ca.clone(),
        ..LinkConfig::default()
    };
    let (link, mut incoming) =
        uplink::start(config, cert, vec![recovery::subscription(&export.cart_id)])?;
    let timeout = Duration::from_secs(args.timeout);
    anyhow::ensure!(link.wait_up(timeout).await, "broker not reachable");
    let report = recovery::recover(&export, &key, &link, &mut incoming, timeout).await;
    link.shutdown().await;
    let report = report?;
    for (payment, outcome) in &report.outcomes {
        println!(
            "{}",
            serde_json::json!({ "payment": payment, "outcome": outcome })
        );
    }
    for (payment, result) in &report.reversals {
        println!(
            "{}",
            serde_json::json!({ "payment": payment, "reversal": result })
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "cart": export.cart_id,
            "answered": report.outcomes.len() + report.reversals.len(),
            "unanswered": report.unanswered,
            "unreadable": report.unreadable,
        })
    );
    Ok(
        if report.unanswered.is_empty() && report.unreadable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
