//! The payment cart's daemon and tools: parses the command line, starts
//! logging, and calls the library (`cart_app::daemon::run` for `run`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cart_app::{config, daemon, demo_ledger, logging};
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
    /// Runs the cart: UI, devices, ledger, uplink (systemd starts this).
    Run {
        /// The configuration file (see config/cart.toml).
        #[arg(long, env = "CART_CONFIG", default_value = "/etc/cart/cart.toml")]
        config: PathBuf,
    },
    /// Validates a configuration file and the cart's own settings file it
    /// names (`local_settings`), strictly, and prints the result with
    /// defaults filled in.
    CheckConfig {
        /// The file (see config/cart.toml).
        path: PathBuf,
    },
    /// Runs the whole cart on simulated devices, a local broker and the
    /// backend emulator (build with `--features demo`).
    #[cfg(feature = "demo")]
    Demo {
        /// Folder for the ledger, catalog, config and screenshots, kept
        /// (default: a new temporary one, removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the temporary folder when the demo ends.
        #[arg(long)]
        keep: bool,
        /// Folder with the TEST ONLY fixtures.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// A window and typed commands (needs a display and the `winit`
        /// feature); default: scripted, with a transcript and PNGs.
        #[arg(long)]
        interactive: bool,
    },
    /// Runs a scripted checkout session against a real ledger file.
    DemoLedger {
        /// Folder for the ledger, its counter and data key (new if missing).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => {
            let loaded = match config::Config::load(&config) {
                Ok(l) => l,
                Err(e) => {
                    logging::init_text();
                    eprintln!("cart-app: {e}");
                    // 78 = EX_CONFIG: systemd's RestartPreventExitStatus keeps
                    // a bad file from restarting in a loop.
                    return ExitCode::from(78);
                }
            };
            logging::init_daemon(&loaded.config.cart_id);
            loaded.log_notes();
            let opts = daemon::RunOptions {
                config_path: Some(config),
                signals: true,
                ..daemon::RunOptions::default()
            };
            match daemon::run(loaded, opts) {
                Ok(())
                    if daemon::restart_requested()
                        && std::env::var_os("INVOCATION_ID").is_some() =>
                {
                    // Under systemd: start again at once, same PID (the
                    // unit's RestartSec=30 is for failures).
                    use std::os::unix::process::CommandExt;
                    let mut args = std::env::args_os();
                    let err = std::process::Command::new("/proc/self/exe")
                        .arg0(args.next().unwrap_or_else(|| "cart-app".into()))
                        .args(args)
                        .exec();
                    tracing::warn!(cause = %err, "restart in place failed: systemd restarts the cart");
                    ExitCode::SUCCESS
                }
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(cause = %e, "cart-app stopped");
                    eprintln!("cart-app: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        other => {
            // The demo's transcript is its output: its log says only errors
            // unless RUST_LOG asks for more (developers: RUST_LOG=warn).
            logging::init_text_at(if is_demo(&other) { "error" } else { "info" });
            match tool(other) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cart-app: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The demo prints a transcript; its log stays at errors.
fn is_demo(command: &Command) -> bool {
    #[cfg(feature = "demo")]
    if matches!(command, Command::Demo { .. }) {
        return true;
    }
    matches!(command, Command::DemoLedger { .. })
}

fn tool(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { .. } => unreachable!("handled in main"),
        Command::CheckConfig { path } => {
            let strict = config::LoadOptions {
                strict_local: true,
                ..config::LoadOptions::default()
            };
            let loaded = config::Config::load_with(&path, strict)?;
            loaded.log_notes();
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
        Command::Demo {
            dir,
            keep,
            fixtures,
            interactive,
        } => {
            let fixtures = fixtures.unwrap_or_else(cart_app::demo::default_fixtures);
            cart_app::demo::run(cart_app::demo::DemoOptions {
                dir,
                keep,
                fixtures,
                interactive,
            })
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
