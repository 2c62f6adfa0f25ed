//! `cartctl`: the field technician's tool.
//!
//! `status` reads the ledger read-only, so it answers whether the daemon
//! runs or not (the monotonic counter is only checked by the daemon).
//! `catalog import` loads a CSV into the catalog (all or nothing).
//!
//! Exit codes: 0 done; 1 a runtime failure (ledger or catalog refused, with
//! the reason); 2 bad usage or configuration; 3 no ledger at the path.

use std::path::PathBuf;
use std::process::ExitCode;

use cart_app::catalog::Catalog;
use cart_app::config::Config;
use clap::{Parser, Subcommand};
use store_and_forward::ledger::{LedgerStatus, read_only_status};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ledger, queues, offline exposure against each limit, trusted time.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
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
    match cli.command {
        Command::Status { json } => {
            let path = &config.ledger.path;
            if !path.exists() {
                eprintln!(
                    "cartctl: no ledger at {} (not provisioned yet, or ledger.path is wrong)",
                    path.display()
                );
                return ExitCode::from(3);
            }
            match read_only_status(path, Timestamp::now()) {
                Ok(st) if json => match serde_json::to_string_pretty(&st) {
                    Ok(s) => {
                        out(&format!("{s}\n"));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("cartctl: {e}");
                        ExitCode::from(1)
                    }
                },
                Ok(st) => {
                    out(&human(&st, &path.display().to_string()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cartctl: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Catalog {
            command: CatalogCommand::Import { file },
        } => {
            let imported =
                Catalog::open(&config.catalog.path).and_then(|mut c| c.import_csv_file(&file));
            match imported {
                Ok(n) => {
                    out(&format!(
                        "imported {n} items into {}\n",
                        config.catalog.path.display()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cartctl: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
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

fn human(st: &LedgerStatus, path: &str) -> String {
    let now = Timestamp::now();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
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
    let mut exposure = format!(
        "{} outstanding (cap {})",
        st.exposure.count, st.limits.max_outstanding_count
    );
    for (cur, amount) in &st.exposure.amount {
        let cap = st
            .limits
            .total_outstanding_cap
            .get(cur)
            .copied()
            .unwrap_or(0);
        exposure.push_str(&format!(
            "; {} of {}",
            Money::new(*amount, *cur),
            Money::new(cap, *cur)
        ));
    }
    if let Some(oldest) = st.exposure.oldest_unforwarded {
        exposure.push_str(&format!(
            "; oldest unforwarded {} (deadline {} h)",
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
    line(
        "telemetry",
        format!("{} dropped over quota", st.telemetry_dropped),
    );
    out
}
