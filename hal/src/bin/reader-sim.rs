//! `reader-sim`: the card reader simulator on a serial line.
//!
//! ```text
//! reader-sim [--fixtures DIR] [--port PATH] [--card NAME]... [--default-card NAME]
//!            [--faults N] [--faults-in N] [--exit-on-eof]
//! ```
//!
//! Without `--port` it creates a pseudo-terminal and prints `PTY <path>` on
//! stdout: open that path as the cart's reader port. With `--port` it opens
//! the given serial device or pty. Each `--card` queues a test card for the
//! next payment; more can be queued at run time by writing `card NAME` lines
//! on stdin, each confirmed by a `QUEUED NAME` line. `quit` stops it, and so
//! does the end of stdin with `--exit-on-eof` (as tests use it); otherwise it
//! runs until killed. `--faults N` damages every N-th frame it sends,
//! `--faults-in N` every N-th frame it receives (before its own link layer
//! sees it). Card names and behaviours: `tests/fixtures/test-cards.json`;
//! the protocol: `docs/reader-protocol.md` (appendix A).

use std::fs::OpenOptions;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};

use hal::reader::fixtures;
use hal::reader::sim::{self, FaultPlan, SimCommand, SimConfig};

#[derive(Debug)]
struct Args {
    fixtures: PathBuf,
    port: Option<PathBuf>,
    cards: Vec<String>,
    default_card: Option<String>,
    faults: u32,
    faults_in: u32,
    exit_on_eof: bool,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(
        "usage: reader-sim [--fixtures DIR] [--port PATH] [--card NAME]... [--default-card NAME] [--faults N] [--faults-in N] [--exit-on-eof] ({0})"
    )]
    Usage(String),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Termios(#[from] nix::Error),
}

fn parse() -> Result<Args, CliError> {
    let mut a = Args {
        fixtures: fixtures::source_tree_dir(),
        port: None,
        cards: Vec::new(),
        default_card: None,
        faults: 0,
        faults_in: 0,
        exit_on_eof: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--fixtures" => a.fixtures = value()?.into(),
            "--port" => a.port = Some(value()?.into()),
            "--card" => a.cards.push(value()?),
            "--default-card" => a.default_card = Some(value()?),
            "--faults" => {
                a.faults = value()?
                    .parse()
                    .map_err(|_| CliError::Usage("--faults takes a number".into()))?
            }
            "--exit-on-eof" => a.exit_on_eof = true,
            "--faults-in" => {
                a.faults_in = value()?
                    .parse()
                    .map_err(|_| CliError::Usage("--faults-in takes a number".into()))?
            }
            other => return Err(CliError::Usage(format!("unknown argument {other}"))),
        }
    }
    Ok(a)
}

/// Forwards stdin lines (`card NAME`, `quit`) as commands. Returns true on
/// `quit`, false at the end of input.
fn read_stdin(tx: Sender<SimCommand>) -> bool {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let cmd = match (words.next(), words.next()) {
            (Some("card"), Some(name)) => SimCommand::QueueCard(name.to_owned()),
            (Some("quit"), _) => SimCommand::Stop,
            (None, _) => continue,
            _ => {
                eprintln!("commands: card NAME | quit");
                continue;
            }
        };
        let stop = cmd == SimCommand::Stop;
        let queued = match &cmd {
            SimCommand::QueueCard(name) => Some(name.clone()),
            _ => None,
        };
        if tx.send(cmd).is_err() || stop {
            return true;
        }
        if let Some(name) = queued {
            // Printed once the simulator has the command: a payment started
            // after this line reads that card.
            println!("QUEUED {name}");
        }
    }
    false
}

fn main() -> Result<(), CliError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse()?;
    let mut cfg = SimConfig::from_fixtures(&args.fixtures)?;
    cfg.faults = FaultPlan {
        every: args.faults,
        inbound_every: args.faults_in,
    };
    if let Some(d) = args.default_card {
        cfg.engine.default_card = d;
    }
    match args.port {
        None => {
            let handle = sim::spawn_pty(cfg)?;
            for c in &args.cards {
                handle.queue_card(c);
            }
            println!("PTY {}", handle.path().display());
            let tx = handle.commands();
            // Runs until `quit` (or, with --exit-on-eof, the end of stdin);
            // otherwise until killed.
            let report = if read_stdin(tx) || args.exit_on_eof {
                handle.stop()?
            } else {
                handle.wait()?
            };
            tracing::info!(?report, "reader sim stopped");
        }
        Some(path) => {
            let line = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut t = nix::sys::termios::tcgetattr(&line)?;
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::cfsetspeed(&mut t, nix::sys::termios::BaudRate::B115200)?;
            nix::sys::termios::tcsetattr(&line, nix::sys::termios::SetArg::TCSANOW, &t)?;
            let (tx, rx) = mpsc::channel();
            for c in args.cards {
                let _ = tx.send(SimCommand::QueueCard(c));
            }
            let exit_on_eof = args.exit_on_eof;
            std::thread::spawn(move || {
                if !read_stdin(tx.clone()) && !exit_on_eof {
                    // End of input: keep the sender alive so the simulator
                    // runs until killed.
                    std::mem::forget(tx);
                }
            });
            let report = sim::run(line, cfg, rx)?;
            tracing::info!(?report, "reader sim stopped");
        }
    }
    Ok(())
}
