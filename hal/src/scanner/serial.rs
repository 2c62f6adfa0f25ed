//! The serial scanner driver: a scanner on an RS-232 line (or a USB CDC-ACM
//! port), read through serialport, framed into lines, decoded.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serialport::{SerialPort, TTYPort};
use zeroize::Zeroize;

use super::addon::AddOnJoiner;
use super::decode::{Decoder, year_of};
use super::line::{Frame, LineFramer};
use super::reject::RejectReason;
use super::state::{BackoffConfig, DeviceState, Link, StateHandle};
use super::{Rejection, Scan, ScanContent, Scanner, ScannerError};

/// Parity of the serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit (8N1, the usual setting).
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity (7E1 scanners).
    Even,
}

/// The byte(s) the scanner sends after each scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Terminator {
    /// Carriage return (0x0D), the usual factory setting.
    #[default]
    Cr,
    /// Line feed (0x0A).
    Lf,
    /// CR LF; either byte ends a line, the empty line between is skipped.
    Crlf,
    /// Tab (0x09).
    Tab,
    /// ETX (0x03), for scanners that frame each scan STX ... ETX; an STX
    /// starts a fresh line (anything before it is dropped).
    Etx,
}

impl Terminator {
    /// The bytes that end a line.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::Cr => b"\r",
            Terminator::Lf => b"\n",
            Terminator::Crlf => b"\r\n",
            Terminator::Tab => b"\t",
            Terminator::Etx => b"\x03",
        }
    }
}

/// A serial scanner's settings (config file section `[scanner.serial]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SerialScannerConfig {
    /// Device path, e.g. `/dev/ttyS1` or a `/dev/serial/by-id/...` link.
    pub port: String,
    /// Baud rate.
    pub baud_rate: u32,
    /// Parity.
    pub parity: Parity,
    /// Data bits, 7 or 8.
    pub data_bits: u8,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// What ends a scan.
    pub terminator: Terminator,
    /// Longest accepted line in bytes; longer ones are rejected.
    pub max_line: usize,
    /// Reopen timing when the port goes away.
    pub backoff: BackoffConfig,
}

impl Default for SerialScannerConfig {
    fn default() -> Self {
        Self {
            port: "/dev/ttyS1".to_owned(),
            baud_rate: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            terminator: Terminator::Cr,
            max_line: 1024,
            backoff: BackoffConfig::default(),
        }
    }
}

/// A scanner on a serial line.
pub struct SerialScanner {
    config: SerialScannerConfig,
    decoder: Decoder,
    // One owner: the scanner's thread. A serial fd is not shared.
    link: Link<TTYPort>,
    framer: LineFramer,
    add_on: AddOnJoiner,
    /// A line too long, kept until the add-on joiner released what it held.
    too_long: Option<usize>,
    read_buf: [u8; 256],
}

impl std::fmt::Debug for SerialScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialScanner")
            .field("port", &self.config.port)
            .finish_non_exhaustive()
    }
}

impl SerialScanner {
    /// A driver for `config`. The port is opened on the first
    /// [`Scanner::next_scan`] (and reopened whenever it goes away), so a
    /// scanner plugged in after start is picked up.
    pub fn new(config: SerialScannerConfig, decoder: Decoder) -> Result<Self, ScannerError> {
        let bad = |key, problem| Err(ScannerError::Config { key, problem });
        if !matches!(config.data_bits, 7 | 8) {
            return bad("data_bits", "must be 7 or 8");
        }
        if !matches!(config.stop_bits, 1 | 2) {
            return bad("stop_bits", "must be 1 or 2");
        }
        if config.baud_rate == 0 {
            return bad("baud_rate", "must be above 0");
        }
        if config.max_line == 0 {
            return bad("max_line", "must be above 0");
        }
        let framer = LineFramer::new(config.terminator.bytes(), config.max_line);
        let framer = match config.terminator {
            Terminator::Etx => framer.with_start(0x02),
            _ => framer,
        };
        Ok(Self {
            framer,
            add_on: AddOnJoiner::new(decoder.config().add_on.clone()),
            too_long: None,
            link: Link::new(config.port.clone(), config.backoff),
            decoder,
            config,
            read_buf: [0; 256],
        })
    }

    fn lost(&mut self, cause: &dyn std::fmt::Display) {
        self.link.lost(cause);
        // A partial line from before the loss must not join the next scan.
        self.framer.reset();
        self.add_on.flush();
    }

    /// The next scan ready now: framed lines go through the add-on joiner
    /// (which may hold a main code briefly for its add-on packet).
    fn ready_scan(&mut self, now: Instant) -> Option<Scan> {
        loop {
            if let Some(mut line) = self.add_on.pop(now) {
                let scan = self.line_to_scan(&line);
                line.zeroize();
                return Some(scan);
            }
            if let Some(max) = self.too_long.take() {
                return Some(stamp(ScanContent::Rejected(Rejection::new(
                    RejectReason::TooLong { max },
                    None,
                    b"",
                ))));
            }
            match self.framer.pop()? {
                Frame::Line(line) => self.add_on.push(line, now),
                Frame::TooLong { max } => {
                    self.add_on.flush();
                    self.too_long = Some(max);
                }
            }
        }
    }

    fn line_to_scan(&self, line: &[u8]) -> Scan {
        let at = SystemTime::now();
        let mut scan = stamp(self.decoder.decode(line, year_of(at)));
        scan.at = at;
        scan
    }
}

fn stamp(content: ScanContent) -> Scan {
    Scan {
        at: SystemTime::now(),
        monotonic: Instant::now(),
        content,
    }
}

impl Scanner for SerialScanner {
    fn next_scan(&mut self, timeout: Duration) -> Result<Option<Scan>, ScannerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(scan) = self.ready_scan(now) {
                return Ok(Some(scan));
            }
            if now >= deadline {
                return Ok(None);
            }
            // Wake up for a held main code's window too.
            let deadline = self.add_on.deadline().map_or(deadline, |d| d.min(deadline));
            let now = Instant::now().min(deadline);
            let config = &self.config;
            let Some(port) = self.link.get_or_open(now, || open_port(config))? else {
                let pause = self.link.wait(now).min(deadline - now);
                std::thread::sleep(pause.max(Duration::from_millis(1)));
                continue;
            };
            let read = port
                .set_timeout(deadline - now)
                .map_err(std::io::Error::from)
                .and_then(|()| port.read(&mut self.read_buf));
            match read {
                Ok(0) => self.lost(&"end of file"),
                Ok(n) => {
                    self.framer.push(&self.read_buf[..n]);
                    self.read_buf[..n].zeroize();
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
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

fn open_port(c: &SerialScannerConfig) -> serialport::Result<TTYPort> {
    serialport::new(&c.port, c.baud_rate)
        .parity(match c.parity {
            Parity::None => serialport::Parity::None,
            Parity::Odd => serialport::Parity::Odd,
            Parity::Even => serialport::Parity::Even,
        })
        .data_bits(if c.data_bits == 7 {
            serialport::DataBits::Seven
        } else {
            serialport::DataBits::Eight
        })
        .stop_bits(if c.stop_bits == 2 {
            serialport::StopBits::Two
        } else {
            serialport::StopBits::One
        })
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_millis(100))
        .open_native()
}
