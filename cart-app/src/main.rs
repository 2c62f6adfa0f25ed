//! The payment cart's daemon and tools.
//!
//! The daemon itself arrives with the checkout-UI issue; today the binary
//! checks a configuration file and runs the ledger's scripted session.

use cart_app::{config, demo_ledger};

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cart-app",
    version,
    about = "The payment cart's daemon and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validates a configuration file and prints it with defaults filled in.
    CheckConfig {
        /// The file (see config/cart.toml).
        path: PathBuf,
    },
    /// Runs the whole cart scripted on simulated devices, a local broker and
    /// the backend emulator (build with `--features demo`).
    #[cfg(feature = "demo")]
    Demo {
        /// Folder for the ledger and catalog (a new temporary one if omitted).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Folder with the TEST ONLY fixtures.
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Runs a scripted checkout session against a real ledger file.
    DemoLedger {
        /// Folder for the ledger, its counter and data key (new if missing).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::CheckConfig { path } => {
            let loaded = config::Config::load(&path)?;
            let config = &loaded.config;
            eprintln!(
                "{}: valid; offline limits version {} ({} currencies), deny-list version {} ({} cards)",
                path.display(),
                loaded.limits.version,
                loaded.limits.per_payment_cap.len(),
                config.deny_list.version,
                loaded.deny_list.len()
            );
            println!(
                "{}",
                toml::to_string_pretty(config).context("printing the config")?
            );
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo { dir, fixtures } => {
            let dir = match dir {
                Some(d) => d,
                None => std::env::temp_dir().join(format!("cart-demo-{}", std::process::id())),
            };
            std::fs::create_dir_all(&dir)?;
            let fixtures = fixtures.unwrap_or_else(cart_app::demo::default_fixtures);
            cart_app::demo::run(&dir, &fixtures)
        }
        Command::DemoLedger { dir } => {
            let dir = match dir {
                Some(d) => d,
                None => std::env::temp_dir().join(format!("cart-demo-{}", std::process::id())),
            };
            demo_ledger::run(dir)
        }
    }
}
