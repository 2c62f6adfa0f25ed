//! Crash-test child for provisioning and rotation: does what the daemon
//! does at first boot (or when a rotation is asked), against a real TPM
//! (swtpm), broker and backend emulator, until it is killed (by the
//! parent, or by itself at an armed failpoint). Reports on stdout:
//!
//! - `READY`: TPM and ledger open;
//! - `PROVISIONED <certificate id>` / `ROTATED <certificate id>`: done.
//!
//! Usage: `provision-crash-child CONFIG.json provision|rotate:<request id>`.
//! Errors the daemon would retry (broker busy, no answer) are retried
//! here the same way. Built only with the `failpoints` feature; never part
//! of the image.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cart_app::provision::{self, Context, ProvisionError, ProvisioningConfig, fleet, rotation};
use cart_app::tpm::CartTpm;
use hal::identity::tpm::TpmConfig;
use store_and_forward::policy::Limits;
use store_and_forward::uplink::{self, LinkConfig, SwappableClientCert};
use store_and_forward::{Ledger, LedgerConfig, Timestamp};

/// What the parent writes for the child.
#[derive(Debug, serde::Deserialize)]
struct ChildConfig {
    cart_id: String,
    tcti: String,
    ledger: PathBuf,
    link: LinkConfig,
    provisioning: ProvisioningConfig,
    /// The provisioning QR code's text, as the scanner would read it.
    wifi_qr: Option<String>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run() {
        eprintln!("provision crash child: {e}");
        std::process::exit(2);
    }
}

fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// Errors the daemon retries with backoff.
fn transient(e: &ProvisionError) -> bool {
    matches!(
        e,
        ProvisionError::Offline(_)
            | ProvisionError::NoAnswer(_)
            | ProvisionError::Link(_)
            | ProvisionError::Rejected { .. }
            | ProvisionError::NewCertificateRefused(_)
    )
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: provision-crash-child CONFIG MODE")?;
    let mode = args
        .next()
        .ok_or("usage: provision-crash-child CONFIG MODE")?;
    let config: ChildConfig = serde_json::from_slice(&std::fs::read(path)?)?;
    let tpm = CartTpm::open(TpmConfig {
        tcti: config.tcti.clone(),
        ..TpmConfig::default()
    })?;
    let counter = tpm.counter()?;
    let mut data_key = tpm.data_key();
    let (ledger, _) = Ledger::open(
        LedgerConfig {
            path: config.ledger.clone(),
            ..LedgerConfig::default()
        },
        Limits::none(),
        Box::new(counter),
        &mut data_key,
        Timestamp::now(),
    )?;
    let ledger = Arc::new(Mutex::new(ledger));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ctx = Context {
        config: &config.provisioning,
        cart_id: &config.cart_id,
        link: &config.link,
        tpm: &tpm,
        ledger: &ledger,
    };
    say("READY");
    rt.block_on(async {
        if mode == "provision" {
            for attempt in 0.. {
                let wifi = match &config.wifi_qr {
                    Some(qr) => Some(
                        hal::scanner::nonproduct::parse_wifi(qr)
                            .map_err(|e| format!("QR refused: {e:?}"))?,
                    ),
                    None => None,
                };
                match provision::run(&ctx, wifi).await {
                    Ok(p) => {
                        say(&format!("PROVISIONED {}", p.certificate_id));
                        return Ok(());
                    }
                    Err(e) if transient(&e) && attempt < 30 => {
                        eprintln!("retrying: {e}");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        } else if let Some(id) = mode.strip_prefix("rotate:") {
            let p = provision::load(&ctx).await?.ok_or("not provisioned")?;
            let cert = Arc::new(SwappableClientCert::new(p.certified_key));
            let mut link_config = config.link.clone();
            link_config.client_id = config.cart_id.clone();
            let subs = fleet::subscriptions(&config.provisioning.template);
            let (link, incoming) = uplink::start(link_config, Some(cert.clone()), subs)?;
            let mut client = fleet::FleetClient::over(
                link.clone(),
                incoming,
                &config.provisioning.template,
                config.provisioning.response_timeout(),
            );
            for attempt in 0.. {
                let trigger = rotation::Trigger::Request { id: id.to_owned() };
                match rotation::rotate(&ctx, &mut client, &link, &cert, trigger).await {
                    Ok(p) => {
                        say(&format!("ROTATED {}", p.certificate_id));
                        link.shutdown().await;
                        return Ok(());
                    }
                    Err(e) if transient(&e) && attempt < 30 => {
                        eprintln!("retrying: {e}");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        } else {
            Err(format!("unknown mode {mode}").into())
        }
    })
}
