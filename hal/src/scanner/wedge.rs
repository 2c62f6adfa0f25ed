//! The HID keyboard-wedge scanner driver: a scanner that types its scans as
//! a USB keyboard, read through evdev. The device is grabbed (EVIOCGRAB) so
//! its keystrokes never reach a console or the UI; an unplugged scanner is
//! reopened with backoff and the state is visible through [`StateHandle`].

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use evdev::{Device, EventSummary};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::decode::{Decoder, year_of};
use super::keymap::{KeymapConfig, WedgeLines};
use super::reject::RejectReason;
use super::state::{BackoffConfig, DeviceState, Link, StateHandle};
use super::{Rejection, Scan, ScanContent, Scanner, ScannerError};

/// A keyboard-wedge scanner's settings (config section `[scanner.wedge]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WedgeScannerConfig {
    /// The event device; prefer the stable `/dev/input/by-id/...-event-kbd`
    /// link, which comes back under the same name after a replug.
    pub device: PathBuf,
    /// Grab the device so no other reader (console, UI) sees its keys.
    pub grab: bool,
    /// Keymap settings: terminator key and GS1 separator key.
    pub keymap: KeymapConfig,
    /// Longest accepted scan in characters.
    pub max_line: usize,
    /// Reopen timing when the device goes away.
    pub backoff: BackoffConfig,
}

impl Default for WedgeScannerConfig {
    fn default() -> Self {
        Self {
            device: PathBuf::from("/dev/input/by-id/usb-scanner-event-kbd"),
            grab: true,
            keymap: KeymapConfig::default(),
            max_line: 1024,
            backoff: BackoffConfig::default(),
        }
    }
}

/// A scanner that types its scans as a keyboard.
pub struct WedgeScanner {
    config: WedgeScannerConfig,
    decoder: Decoder,
    // One owner: the scanner's thread.
    link: Link<Device>,
    lines: WedgeLines,
    ready: VecDeque<Result<Vec<u8>, RejectReason>>,
}

impl std::fmt::Debug for WedgeScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WedgeScanner")
            .field("device", &self.config.device)
            .finish_non_exhaustive()
    }
}

impl WedgeScanner {
    /// A driver for `config`; the device is opened on the first
    /// [`Scanner::next_scan`] and reopened whenever it goes away.
    pub fn new(config: WedgeScannerConfig, decoder: Decoder) -> Result<Self, ScannerError> {
        if config.max_line == 0 {
            return Err(ScannerError::Config {
                key: "max_line",
                problem: "must be above 0",
            });
        }
        if config
            .keymap
            .gs_function_key
            .is_some_and(|f| !(1..=24).contains(&f))
        {
            return Err(ScannerError::Config {
                key: "keymap.gs_function_key",
                problem: "must be 1 to 24",
            });
        }
        Ok(Self {
            lines: WedgeLines::new(config.keymap, config.max_line),
            link: Link::new(config.device.display().to_string(), config.backoff),
            ready: VecDeque::new(),
            decoder,
            config,
        })
    }

    fn lost(&mut self, cause: &dyn std::fmt::Display) {
        self.link.lost(cause);
        // A partial scan from before the loss must not join the next one.
        self.lines.reset();
    }

    fn to_scan(&self, line: Result<Vec<u8>, RejectReason>) -> Scan {
        let at = SystemTime::now();
        let monotonic = Instant::now();
        let content = match line {
            Ok(mut bytes) => {
                let c = self.decoder.decode(&bytes, year_of(at));
                bytes.zeroize();
                c
            }
            Err(reason) => ScanContent::Rejected(Rejection::new(reason, None, b"")),
        };
        Scan {
            at,
            monotonic,
            content,
        }
    }
}

impl Scanner for WedgeScanner {
    fn next_scan(&mut self, timeout: Duration) -> Result<Option<Scan>, ScannerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(self.to_scan(line)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let config = &self.config;
            let Some(dev) = self.link.get_or_open(now, || open_device(config))? else {
                let pause = self.link.wait(now).min(deadline - now);
                std::thread::sleep(pause.max(Duration::from_millis(1)));
                continue;
            };
            // Poll in slices of at most 1 s so the u16 poll timeout never clips.
            let wait = (deadline - now).min(Duration::from_secs(1));
            let read = read_events(dev, wait, &mut self.lines, &mut self.ready);
            match read {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ENODEV after an unplug, or a hangup.
                Err(e) => self.lost(&e),
            }
        }
    }

    fn state(&self) -> DeviceState {
        self.link.state().get()
    }

    fn state_handle(&self) -> StateHandle {
        self.link.state().clone()
    }
}

fn open_device(config: &WedgeScannerConfig) -> std::io::Result<Device> {
    let mut dev = Device::open(&config.device)?;
    if config.grab {
        dev.grab()?;
    }
    dev.set_nonblocking(true)?;
    tracing::info!(
        name = dev.name().unwrap_or(""),
        grabbed = config.grab,
        "wedge scanner"
    );
    Ok(dev)
}

/// Waits up to `wait` for the device to be readable, then reads what
/// it has.
fn read_events(
    dev: &mut Device,
    wait: Duration,
    lines: &mut WedgeLines,
    ready: &mut VecDeque<Result<Vec<u8>, RejectReason>>,
) -> std::io::Result<()> {
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(dev.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)?;
    if n == 0 {
        return Ok(());
    }
    let hangup = fds[0].revents().is_some_and(|r| {
        r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
    });
    if hangup {
        return Err(std::io::Error::new(ErrorKind::BrokenPipe, "device hung up"));
    }
    let events = match dev.fetch_events() {
        Ok(events) => events,
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
        Err(e) => return Err(e),
    };
    for ev in events {
        if let EventSummary::Key(_, code, value) = ev.destructure()
            && let Some(line) = lines.feed(code, value)
        {
            ready.push_back(line);
        }
    }
    Ok(())
}
