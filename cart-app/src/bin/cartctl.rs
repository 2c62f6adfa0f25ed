//! `cartctl`: the field technician's tool.
//!
//! Talks to the running daemon over its control socket (root and the
//! `cart-tech` group only). When the daemon is down, `status` still answers
//! from a read-only look at the ledger (no recovery runs, nothing is
//! written), and `diag` bundles what it can read itself.
//!
//! Exit codes: 0 done; 1 a runtime failure (with the reason); 2 bad usage
//! or configuration; 3 no ledger at the path; 4 the daemon is not running
//! (for commands that need it); 5 not allowed (root or cart-tech only).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cart_app::catalog::Catalog;
use cart_app::config::Config;
use cart_app::control::{self, CartStatus, ControlError, Reply, Request};
use cart_app::daemon::control_server::redact;
use cart_app::daemon::parts::cert_status;
use clap::{Parser, Subcommand};
use store_and_forward::ledger::read_only_status;
use store_and_forward::{Money, Timestamp};

#[derive(Debug, Parser)]
#[command(
    name = "cartctl",
    version,
    about = "Field-technician tool for the payment cart"
)]
struct Cli {
    /// The cart's configuration file.
    #[arg(long, default_value = "/etc/cart/cart.toml")]
    config: PathBuf,
    /// The daemon's control socket (default: `control.socket` of the config).
    #[arg(long)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provisioning, link, queues, offline exposure against each limit,
    /// trusted time, certificate expiry, versions.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sends everything waiting now, showing progress.
    Sync {
        /// Stop waiting after this many seconds (the drain goes on).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Writes a redacted diagnostics bundle (config without secrets, recent
    /// journal, ledger statistics) as one JSON file.
    Diag {
        /// The file to write (default: cart-diag-<cart>-<time>.json here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Queues a quarantined payment (see `status`) for another attempt,
    /// once its cause is fixed.
    Release {
        /// The payment's key, as `status` shows it.
        payment: String,
    },
    /// Catalog operations.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Imports items from a CSV file (header:
    /// gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

/// A failure with its exit code.
struct Failure(u8, String);

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Unreachable { .. } => Failure(4, format!("{e} (is cart-app running?)")),
            ControlError::Refused(m) if m.starts_with("not allowed") => Failure(5, m),
            e => Failure(1, e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = if cli.config.exists() {
        match Config::load(&cli.config) {
            Ok(l) => l.config,
            Err(e) => {
                eprintln!("cartctl: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        Config::default()
    };
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| config.control.socket.clone());
    let result = match cli.command {
        Command::Status { json } => status(&config, &socket, json),
        Command::Sync { timeout } => sync(&socket, timeout),
        Command::Diag { out } => diag(&config, &socket, out),
        Command::Release { payment } => release(&socket, payment),
        Command::Catalog {
            command: CatalogCommand::Import { file },
        } => Catalog::open(&config.catalog.path)
            .and_then(|mut c| c.import_csv_file(&file))
            .map(|n| {
                out(&format!(
                    "imported {n} items into {}\n",
                    config.catalog.path.display()
                ))
            })
            .map_err(|e| Failure(1, e.to_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("cartctl: {message}");
            ExitCode::from(code)
        }
    }
}

/// The status from the daemon, or from the ledger when the daemon is down.
fn fetch_status(config: &Config, socket: &Path) -> Result<CartStatus, Failure> {
    match control::status(socket, Duration::from_secs(10)) {
        Ok(status) => Ok(status),
        Err(ControlError::Unreachable { .. }) => {
            let path = &config.ledger.path;
            if !path.exists() {
                return Err(Failure(
                    3,
                    format!(
                        "no ledger at {} (not provisioned yet, or ledger.path is wrong)",
                        path.display()
                    ),
                ));
            }
            let now = Timestamp::now();
            let ledger = read_only_status(path, now).map_err(|e| Failure(1, e.to_string()))?;
            let certificate = cert_status(&config.provisioning.certificate, now);
            let provisioning_detail = if config.identity.software_key.is_none() {
                cart_app::provision::read_only_status(path, now).ok()
            } else {
                None
            };
            Ok(CartStatus {
                provisioning_detail: provisioning_detail.clone(),
                cart_id: config.cart_id.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                source: "ledger (daemon down)".into(),
                uptime_secs: None,
                provisioning: match (&provisioning_detail, &certificate) {
                    (Some(d), _) if d.provisioned => "provisioned".into(),
                    (Some(d), _) => format!("not provisioned (step: {:?})", d.step),
                    (None, Some(_)) => "provisioned (software identity)".into(),
                    (None, None) => "not provisioned (no certificate)".into(),
                },
                certificate,
                link: None,
                devices: Vec::new(),
                ledger,
                delivery: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn status(config: &Config, socket: &Path, json: bool) -> Result<(), Failure> {
    let st = fetch_status(config, socket)?;
    if json {
        let s = serde_json::to_string_pretty(&st).map_err(|e| Failure(1, e.to_string()))?;
        out(&format!("{s}\n"));
    } else {
        out(&human(
            &st,
            &config.ledger.path.display().to_string(),
            config.provisioning.expiry_warn_days as i64,
        ));
    }
    Ok(())
}

fn release(socket: &Path, payment: String) -> Result<(), Failure> {
    control::call(
        socket,
        &Request::Release {
            payment: payment.clone(),
        },
        Duration::from_secs(10),
        &mut |_| {},
    )?;
    out(&format!("payment {payment} queued again\n"));
    Ok(())
}

fn sync(socket: &Path, timeout: u64) -> Result<(), Failure> {
    let mut done = None;
    control::call(
        socket,
        &Request::Sync {
            timeout_secs: timeout,
        },
        Duration::from_secs(timeout + 10),
        &mut |r| match r {
            Reply::Progress { pending } => {
                let parts: Vec<String> = pending.iter().map(|(c, n)| format!("{n} {c}")).collect();
                out(&format!("waiting: {}\n", parts.join(", ")));
            }
            Reply::SyncDone { drained, pending } => done = Some((drained, pending)),
            _ => {}
        },
    )?;
    match done {
        Some((true, _)) => {
            out("synced: nothing waits\n");
            Ok(())
        }
        Some((false, pending)) => Err(Failure(
            1,
            format!(
                "{pending} records still waiting after {timeout} s (is the link up? see `cartctl status`)"
            ),
        )),
        None => Err(Failure(
            1,
            "the daemon ended the sync without a result".into(),
        )),
    }
}

fn diag(config: &Config, socket: &Path, path: Option<PathBuf>) -> Result<(), Failure> {
    let mut daemon = None;
    let reached = control::call(socket, &Request::Diag, Duration::from_secs(20), &mut |r| {
        if let Reply::Diag(v) = r {
            daemon = Some(*v);
        }
    });
    let daemon = match reached {
        Ok(()) => daemon.unwrap_or(serde_json::Value::Null),
        Err(ControlError::Unreachable { .. }) => serde_json::json!({
            "unreachable": true,
            "status": fetch_status(config, socket).ok(),
            "config": redact(serde_json::to_value(config).unwrap_or_default()),
        }),
        Err(e) => return Err(e.into()),
    };
    let journal = std::process::Command::new("journalctl")
        .args([
            "-u",
            "cart-app",
            "-n",
            "500",
            "--no-pager",
            "-o",
            "short-iso",
        ])
        .output();
    let journal = match journal {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!(
            "journalctl failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("journalctl not available: {e}"),
    };
    let bundle = serde_json::json!({
        "cart_id": config.cart_id,
        "cartctl_version": env!("CARGO_PKG_VERSION"),
        "written_at_ms": Timestamp::now().0,
        "daemon": daemon,
        "journal": journal,
    });
    let path = path.unwrap_or_else(|| {
        PathBuf::from(format!(
            "cart-diag-{}-{}.json",
            config.cart_id,
            Timestamp::now().0 / 1000
        ))
    });
    let text = serde_json::to_string_pretty(&bundle).map_err(|e| Failure(1, e.to_string()))?;
    write_private(&path, text.as_bytes())
        .map_err(|e| Failure(1, format!("{}: {e}", path.display())))?;
    out(&format!("diagnostics written to {}\n", path.display()));
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Writes to stdout; a closed pipe (`cartctl status | head`) is not an error.
fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}

fn ago(now: Timestamp, t: Option<Timestamp>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = now.secs_since(t);
            match s {
                0..=119 => format!("{s} s ago"),
                120..=7199 => format!("{} min ago", s / 60),
                _ => format!("{} h ago", s / 3600),
            }
        }
    }
}

fn human(status: &CartStatus, path: &str, warn_days: i64) -> String {
    let now = Timestamp::now();
    let st = &status.ledger;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line("cart", format!("{} ({})", status.cart_id, status.source));
    line(
        "version",
        match status.uptime_secs {
            Some(u) => format!("{}, up {u} s", status.version),
            None => status.version.clone(),
        },
    );
    line("provisioning", status.provisioning.clone());
    if let Some(d) = &status.provisioning_detail {
        if let Some(id) = &d.certificate_id {
            line(
                "certificate id",
                format!(
                    "{}{}",
                    &id[..id.len().min(16)],
                    d.active_handle
                        .as_ref()
                        .map(|h| format!(" (TPM key {h})"))
                        .unwrap_or_default()
                ),
            );
        }
        if let Some(r) = &d.rotation {
            line("rotation", format!("in progress: {r}"));
        }
        if !d.orphans.is_empty() {
            line(
                "orphans",
                format!("{} certificates reported for deletion", d.orphans.len()),
            );
        }
    }
    line(
        "certificate",
        match &status.certificate {
            Some(c) if c.days_left < 0 => format!("{} EXPIRED", c.subject),
            Some(c) if c.days_left < warn_days => format!(
                "{}, expires in {} days: ROTATION DUE",
                c.subject, c.days_left
            ),
            Some(c) => format!("{}, expires in {} days", c.subject, c.days_left),
            None => "none installed".into(),
        },
    );
    line(
        "link",
        match &status.link {
            Some(l) if l.up => format!("up since {}", ago(now, Some(l.since))),
            Some(l) => format!(
                "DOWN since {}{}",
                ago(now, Some(l.since)),
                l.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            None => "unknown (daemon down)".into(),
        },
    );
    for d in &status.devices {
        line(&d.device, d.state.clone());
    }
    line("ledger", path.to_owned());
    line(
        "integrity",
        match &st.integrity {
            None => "not checked here (the daemon checks the TPM counter at start)".into(),
            Some(i) => format!("{i:?}"),
        },
    );
    line("clock", format!("{:?}", st.clock));
    line(
        "backend",
        format!("last contact {}", ago(now, st.last_backend_contact)),
    );
    line("limits", format!("version {}", st.limits.version));
    let mut exposure = status.exposure_line();
    if let Some(oldest) = st.exposure.oldest_unforwarded {
        exposure.push_str(&format!(
            ", oldest unforwarded {} (deadline {} h)",
            ago(now, Some(oldest)),
            st.limits.forwarding_deadline_secs / 3600
        ));
    }
    line("exposure", exposure);
    let payments: Vec<String> = st
        .payments
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    line(
        "payments",
        if payments.is_empty() {
            "none".into()
        } else {
            payments.join(", ")
        },
    );
    for (cur, amount) in &st.declined_after_forward {
        line(
            "losses",
            format!("declined after forward: {}", Money::new(*amount, *cur)),
        );
    }
    for d in &st.outbox {
        line(
            &format!("queue {}", d.class),
            format!(
                "{} pending ({} bytes), oldest {}, {} quarantined",
                d.pending,
                d.pending_bytes,
                ago(now, d.oldest_pending),
                d.quarantined
            ),
        );
    }
    for q in &st.quarantined_payments {
        line(
            "QUARANTINED",
            format!(
                "payment {} ({} {}, {}) since {}: {}; release with `cartctl release {}`",
                q.payment,
                q.amount_minor,
                q.currency,
                q.kind,
                ago(now, q.since),
                q.reason,
                q.payment
            ),
        );
    }
    line(
        "telemetry",
        format!("{} dropped over quota", st.telemetry_dropped),
    );
    out
}
