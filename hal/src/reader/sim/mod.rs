//! The reader simulator: the reader's end of the protocol over a real serial
//! line (a pseudo-terminal in tests and the demo), reading test cards from
//! the shared fixtures and encrypting to the test processor key.
//!
//! - [`engine`]: the payment logic, sans-IO.
//! - [`emv`]: the EMV data of a simulated read.
//! - [`faults`]: line faults to inject.
//! - this file: the I/O loop ([`run`]) and [`spawn_pty`], which creates a
//!   pseudo-terminal pair and runs the simulator on its master side.

pub mod emv;
pub mod engine;
pub mod faults;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

pub use engine::{Engine, EngineConfig, SimTimings};
pub use faults::{FaultInjector, FaultPlan};

use super::fixtures::{self, FixtureError, TestCards};
use super::link::{Link, LinkConfig};
use super::wire;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Fixtures could not be loaded: the simulator does not start.
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    /// The pseudo-terminal could not be created or configured.
    #[error("pseudo-terminal: {0}")]
    Pty(#[from] nix::Error),
    /// The line failed: the simulator stops.
    #[error("line I/O: {0}")]
    Io(#[from] io::Error),
    /// The default card is not in the table.
    #[error("unknown test card {0}")]
    UnknownCard(String),
}

/// Commands to a running simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimCommand {
    /// Read this test card at the next payment.
    QueueCard(String),
    /// Pull the cable: close the line and stop.
    Unplug,
    /// Stop.
    Stop,
}

/// Everything the simulator needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Cards, keys and timings.
    pub engine: EngineConfig,
    /// Link timers.
    pub link: LinkConfig,
    /// Line faults to inject into what the simulator sends.
    pub faults: FaultPlan,
}

impl SimConfig {
    /// Loads the fixtures from `dir` (normally `tests/fixtures`).
    pub fn from_fixtures(dir: &Path) -> Result<Self, SimError> {
        let cards = TestCards::load(&dir.join(fixtures::TEST_CARDS))?;
        let processor_key =
            fixtures::load_processor_public_key(&dir.join(fixtures::PROCESSOR_KEY))?;
        let fingerprint_key = fixtures::load_fingerprint_key(&dir.join(fixtures::FINGERPRINT_KEY))?;
        Ok(SimConfig {
            engine: EngineConfig {
                cards,
                default_card: "chip-approve".to_owned(),
                processor_key,
                fingerprint_key,
                firmware: concat!("sim-", env!("CARGO_PKG_VERSION")).to_owned(),
                serial: "SIM-0001".to_owned(),
                timings: SimTimings::default(),
            },
            link: LinkConfig::default(),
            faults: FaultPlan::default(),
        })
    }
}

/// What a simulator run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Line faults injected.
    pub faults_injected: u64,
    /// Link counters at the end.
    pub link: super::link::LinkStats,
}

/// Runs the simulator on `line` until stopped or unplugged. `line` is the
/// master side of a pty or an opened serial device.
pub fn run(
    line: File,
    cfg: SimConfig,
    commands: Receiver<SimCommand>,
) -> Result<SimReport, SimError> {
    if cfg.engine.cards.get(&cfg.engine.default_card).is_none() {
        return Err(SimError::UnknownCard(cfg.engine.default_card.clone()));
    }
    let mut line = line;
    let mut engine = Engine::new(cfg.engine);
    let mut link = Link::new(cfg.link);
    let mut faults = FaultInjector::new(cfg.faults);
    let mut inbound_faults = FaultInjector::inbound(cfg.faults);
    let mut buf = [0u8; 512];
    loop {
        if !drain_commands(&commands, &mut engine) {
            break;
        }
        let now = Instant::now();
        let next = [link.poll_timeout(), engine.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        let readable = {
            let mut fds = [PollFd::new(line.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(wait.as_millis()).unwrap_or(20);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN)),
                Ok(_) => false,
                Err(nix::Error::EINTR) => false,
                Err(e) => return Err(e.into()),
            }
        };
        if readable {
            match line.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    let bytes = inbound_faults.apply(buf[..n].to_vec());
                    link.handle_input(&bytes, Instant::now());
                }
                // EIO: no one has the other side open (cart restarting). Wait.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Commands sent before the bytes just read must act first (a card
        // queued before START_PAYMENT is for that payment).
        if !drain_commands(&commands, &mut engine) {
            break;
        }
        let now = Instant::now();
        link.handle_timeout(now);
        while let Some(d) = link.poll_delivered() {
            if d.sync {
                // The cart started a new session: what we were still
                // sending belongs to the old one.
                link.clear_tx();
            }
            match wire::decode(&d.payload) {
                Ok(m) => engine.handle(m, now),
                Err(e) => tracing::warn!(cause = %e, "reader sim: malformed message dropped"),
            }
        }
        while link.poll_error().is_some() {}
        engine.poll(now);
        while let Some(m) = engine.poll_output() {
            match wire::encode(&m) {
                Ok(p) => {
                    if let Err(e) = link.send(p, false, now) {
                        tracing::warn!(cause = %e, msg = m.name(), "reader sim: message not sent");
                    }
                }
                Err(e) => {
                    tracing::warn!(cause = %e, msg = m.name(), "reader sim: message not encoded")
                }
            }
        }
        let out = faults.apply(link.poll_transmit());
        if !out.is_empty() {
            match line.write_all(&out) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(SimReport {
        faults_injected: faults.applied() + inbound_faults.applied(),
        link: link.stats(),
    })
}

/// Applies pending commands; `false` when the simulator must stop.
fn drain_commands(commands: &Receiver<SimCommand>, engine: &mut Engine) -> bool {
    loop {
        match commands.try_recv() {
            Ok(SimCommand::QueueCard(name)) => {
                if !engine.queue_card(&name) {
                    tracing::warn!(card = %name, "reader sim: unknown test card ignored");
                }
            }
            Ok(SimCommand::Unplug | SimCommand::Stop) | Err(TryRecvError::Disconnected) => {
                return false;
            }
            Err(TryRecvError::Empty) => return true,
        }
    }
}

/// A simulator running on its own thread behind a pseudo-terminal.
#[derive(Debug)]
pub struct SimHandle {
    path: PathBuf,
    commands: Sender<SimCommand>,
    thread: Option<JoinHandle<Result<SimReport, SimError>>>,
    slave: Option<OwnedFd>,
}

impl SimHandle {
    /// The pty's slave path: open it as the reader's serial port.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `name` at the next payment.
    pub fn queue_card(&self, name: &str) {
        let _ = self.commands.send(SimCommand::QueueCard(name.to_owned()));
    }

    /// A sender for commands.
    pub fn commands(&self) -> Sender<SimCommand> {
        self.commands.clone()
    }

    /// Pulls the cable: closes both sides of the pty as the simulator sees
    /// them, so the cart's port hangs up.
    pub fn unplug(mut self) -> Result<SimReport, SimError> {
        let _ = self.commands.send(SimCommand::Unplug);
        self.slave = None;
        self.join()
    }

    /// Waits until the simulator stops by itself (a command or a line error).
    pub fn wait(mut self) -> Result<SimReport, SimError> {
        self.join()
    }

    /// Stops the simulator and returns its report.
    pub fn stop(mut self) -> Result<SimReport, SimError> {
        let _ = self.commands.send(SimCommand::Stop);
        self.join()
    }

    fn join(&mut self) -> Result<SimReport, SimError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(SimError::Io(io::Error::other("simulator thread panicked"))),
            None => Ok(SimReport::default()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(SimCommand::Stop);
        let _ = self.join();
    }
}

/// Creates a raw-mode pty pair and runs the simulator on the master side.
/// The simulator keeps a slave descriptor open, so the cart may close and
/// reopen the port (a restart) without the line hanging up.
pub fn spawn_pty(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let pty = nix::pty::openpty(None, None)?;
    let mut t = nix::sys::termios::tcgetattr(&pty.slave)?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)?;
    let path = nix::unistd::ttyname(&pty.slave)?;
    let (tx, rx) = mpsc::channel();
    let master = File::from(pty.master);
    let thread = std::thread::Builder::new()
        .name("reader-sim".to_owned())
        .spawn(move || run(master, cfg, rx))?;
    Ok(SimHandle {
        path,
        commands: tx,
        thread: Some(thread),
        slave: Some(pty.slave),
    })
}
