//! The cart's reader driver: the I/O loop on top of [`Link`], over any
//! blocking port with a short read timeout (a serial port from `serialport`
//! in production, a pseudo-terminal in tests).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::link::{Link, LinkConfig, LinkError};
use super::message::{
    Message, PROTOCOL_VERSION, PaymentErrorCode, PaymentRequest, ReaderInfo, UiEvent,
};
use super::{
    DriverSnapshot, Outcome, PaymentEvent, PaymentReader, ReaderError, ReaderPaymentState,
    StatusReply,
};
use super::{tlv, wire};

/// Messages kept for [`PaymentReader::next_event`] before the oldest is dropped.
pub const INBOX_LIMIT: usize = 256;

/// Settings of the driver.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Link timers and retry limit.
    pub link: LinkConfig,
    /// Baud rate (the spec fixes 115200 8N1).
    pub baud: u32,
    /// Read timeout of one loop turn.
    pub tick: Duration,
    /// How long HELLO waits for its reply.
    pub hello_timeout: Duration,
    /// Cart software name and version sent in HELLO.
    pub host: String,
    /// Open the port in exclusive mode (TIOCEXCL).
    pub exclusive: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            link: LinkConfig::default(),
            baud: 115_200,
            tick: Duration::from_millis(10),
            hello_timeout: Duration::from_secs(3),
            host: concat!("cart hal ", env!("CARGO_PKG_VERSION")).to_owned(),
            exclusive: true,
        }
    }
}

/// The cart-side driver. It owns the port: one thread drives it.
pub struct SerialReader<P> {
    port: P,
    link: Link,
    cfg: DriverConfig,
    inbox: VecDeque<Message>,
    snapshot: DriverSnapshot,
    disconnected: bool,
    /// True once HELLO was answered on this port (spec 4.5: HELLO first).
    in_session: bool,
}

impl<P> std::fmt::Debug for SerialReader<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialReader")
            .field("snapshot", &self.snapshot)
            .field("queued_messages", &self.inbox.len())
            .field("disconnected", &self.disconnected)
            .finish()
    }
}

impl SerialReader<serialport::TTYPort> {
    /// Opens the serial port at `path` (115200 8N1, no flow control).
    pub fn open(path: &str, cfg: DriverConfig) -> Result<Self, ReaderError> {
        let mut port = serialport::new(path, cfg.baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(cfg.tick)
            .open_native()
            .map_err(map_serial)?;
        port.set_exclusive(cfg.exclusive).map_err(map_serial)?;
        Ok(SerialReader::new(port, cfg))
    }
}

/// Maps serialport's errors into ours (one place).
fn map_serial(e: serialport::Error) -> ReaderError {
    match e.kind() {
        serialport::ErrorKind::NoDevice => ReaderError::Disconnected,
        serialport::ErrorKind::Io(kind) => map_io(io::Error::new(kind, e.description)),
        _ => ReaderError::Io(io::Error::other(e.description)),
    }
}

/// Maps a port I/O error: hang-up and EIO mean the reader is gone.
fn map_io(e: io::Error) -> ReaderError {
    let gone = matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof | io::ErrorKind::NotConnected
    ) || e.raw_os_error() == Some(libc::EIO)
        || e.raw_os_error() == Some(libc::ENXIO);
    if gone {
        ReaderError::Disconnected
    } else {
        ReaderError::Io(e)
    }
}

impl<P: Read + Write + Send> SerialReader<P> {
    /// Wraps an open port. Its reads must time out after a short while
    /// (`cfg.tick`) with `TimedOut` or `WouldBlock`.
    pub fn new(port: P, cfg: DriverConfig) -> Self {
        SerialReader {
            port,
            link: Link::new(cfg.link),
            cfg,
            inbox: VecDeque::new(),
            snapshot: DriverSnapshot::default(),
            disconnected: false,
            in_session: false,
        }
    }

    fn send(&mut self, m: &Message, sync: bool) -> Result<u8, ReaderError> {
        let payload = wire::encode(m)?;
        let seq = self
            .link
            .send(payload, sync, Instant::now())
            .map_err(|_| ReaderError::Encode(wire::WireError::TooLong { field: "message" }))?;
        tracing::debug!(msg = m.name(), seq, "reader: send");
        self.flush()?;
        Ok(seq)
    }

    fn flush(&mut self) -> Result<(), ReaderError> {
        let out = self.link.poll_transmit();
        if out.is_empty() {
            return Ok(());
        }
        let r = self.port.write_all(&out).and_then(|_| self.port.flush());
        r.map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: io::Error) -> ReaderError {
        let err = map_io(e);
        if matches!(err, ReaderError::Disconnected) {
            self.disconnected = true;
            tracing::warn!(key = ?self.snapshot.current_key, "reader: disconnected");
        }
        err
    }

    /// One turn of the loop: read what came within one tick, run the timers,
    /// write what the link wants to send, file delivered messages.
    fn turn(&mut self) -> Result<(), ReaderError> {
        if self.disconnected {
            return Err(ReaderError::Disconnected);
        }
        let mut buf = [0u8; 512];
        match self.port.read(&mut buf) {
            Ok(0) => {
                self.disconnected = true;
                return Err(ReaderError::Disconnected);
            }
            Ok(n) => self.link.handle_input(&buf[..n], Instant::now()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(self.fail(e)),
        }
        self.link.handle_timeout(Instant::now());
        self.flush()?;
        while let Some(d) = self.link.poll_delivered() {
            if d.sync {
                // The reader's first frame since it powered up (spec 4.5): if
                // that happened mid-session, it forgot its payments (6.2).
                tracing::info!("reader: reader link started (SYNC)");
            }
            match wire::decode(&d.payload) {
                Ok(m) => self.file(m),
                Err(e) => tracing::warn!(cause = %e, "reader: malformed message dropped"),
            }
        }
        if let Some(LinkError::NoAck { seq, tries }) = self.link.poll_error() {
            return Err(ReaderError::NoAck { seq, tries });
        }
        Ok(())
    }

    fn file(&mut self, m: Message) {
        let m = match m {
            Message::CardRead(r) => match tlv::check_no_card_data(&r.emv) {
                Ok(()) => Message::CardRead(r),
                Err(e) => {
                    // Never keep it: it may hold card data in clear.
                    tracing::error!(key = %r.key, cause = %e, "reader: card read refused");
                    Message::PaymentError {
                        key: r.key,
                        code: PaymentErrorCode::ReaderFault,
                    }
                }
            },
            other => other,
        };
        let (key, state) = match &m {
            Message::Event { key, event } => (
                *key,
                Some(match event {
                    UiEvent::PresentCard => ReaderPaymentState::WaitingForCard,
                    UiEvent::PinRequired => ReaderPaymentState::WaitingForPin,
                    UiEvent::Processing | UiEvent::CardRemoved => ReaderPaymentState::Reading,
                }),
            ),
            Message::CardRead(r) => (r.key, Some(ReaderPaymentState::CardRead)),
            Message::PaymentError { key, code } => (*key, Some(ReaderPaymentState::Failed(*code))),
            Message::StatusReply(s) => (s.key, Some(s.state)),
            _ => (Uuid::nil(), None),
        };
        tracing::debug!(msg = m.name(), key = %key, "reader: received");
        if let Some(state) = state
            && self.snapshot.current_key == Some(key)
        {
            // A card removed after the read does not undo the read.
            let keep = matches!(
                m,
                Message::Event {
                    event: UiEvent::CardRemoved,
                    ..
                }
            ) && self.snapshot.last_state == Some(ReaderPaymentState::CardRead);
            if !keep {
                self.snapshot.last_state = Some(state);
            }
        }
        if self.inbox.len() >= INBOX_LIMIT {
            // Nobody is reading events (or the reader floods us): keep the newest.
            if let Some(old) = self.inbox.pop_front() {
                tracing::warn!(msg = old.name(), "reader: event queue full, oldest dropped");
            }
        }
        self.inbox.push_back(m);
    }

    /// Opens the session first if nobody did: a DATA frame sent before HELLO
    /// could be taken for a duplicate of the previous session's last frame.
    fn ensure_session(&mut self) -> Result<(), ReaderError> {
        if !self.in_session {
            self.hello()?;
        }
        Ok(())
    }

    fn wait_acked(&mut self, seq: u8) -> Result<(), ReaderError> {
        while !self.link.is_acked(seq) {
            self.turn()?;
        }
        Ok(())
    }

    fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Message) -> bool,
    ) -> Result<Option<Message>, ReaderError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.inbox.iter().position(&mut pred) {
                return Ok(self.inbox.remove(i));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.turn()?;
        }
    }

    /// The link's counters and sequence numbers.
    pub fn link_stats(&self) -> super::link::LinkStats {
        self.link.stats()
    }
}

impl<P: Read + Write + Send> PaymentReader for SerialReader<P> {
    fn hello(&mut self) -> Result<ReaderInfo, ReaderError> {
        let session: u32 = rand::random();
        let hello = Message::Hello {
            proto_min: PROTOCOL_VERSION,
            proto_max: PROTOCOL_VERSION,
            host: self.cfg.host.clone(),
            session,
        };
        // Whatever the reader sent to a previous session is stale now.
        self.inbox.clear();
        self.send(&hello, true)?;
        let reply = self.wait_for(
            self.cfg.hello_timeout,
            |m| matches!(m, Message::HelloReply(i) if i.session == session),
        )?;
        let Some(Message::HelloReply(info)) = reply else {
            return Err(ReaderError::Timeout);
        };
        if info.protocol_version != PROTOCOL_VERSION {
            return Err(ReaderError::Incompatible {
                reader: info.protocol_version,
                ours: PROTOCOL_VERSION,
            });
        }
        tracing::info!(
            firmware = %info.firmware,
            serial = %info.serial,
            capabilities = info.capabilities.0,
            processor_key_id = info.processor_key_id,
            "reader: connected"
        );
        self.snapshot.reader = Some(info.clone());
        self.in_session = true;
        Ok(info)
    }

    fn start_payment(&mut self, request: &PaymentRequest) -> Result<(), ReaderError> {
        self.snapshot.current_key = Some(request.key);
        self.snapshot.last_state = None;
        self.ensure_session()?;
        tracing::info!(
            key = %request.key,
            amount_minor = request.amount_minor,
            currency = %request.currency,
            "reader: start payment"
        );
        let seq = self.send(&Message::StartPayment(*request), false)?;
        self.wait_acked(seq)
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<PaymentEvent>, ReaderError> {
        let m = self.wait_for(timeout, |m| !matches!(m, Message::HelloReply(_)))?;
        Ok(m.and_then(|m| match m {
            Message::Event { key, event } => Some(PaymentEvent::Ui { key, event }),
            Message::CardRead(r) => Some(PaymentEvent::CardRead(r)),
            Message::PaymentError { key, code } => Some(PaymentEvent::Failed { key, code }),
            Message::StatusReply(s) => Some(PaymentEvent::Status(s)),
            // Cart-to-reader messages never come from a reader: dropped.
            _ => None,
        }))
    }

    fn cancel(&mut self, key: Uuid) -> Result<(), ReaderError> {
        self.ensure_session()?;
        tracing::info!(key = %key, "reader: cancel");
        let seq = self.send(&Message::Cancel { key }, false)?;
        self.wait_acked(seq)
    }

    fn status(&mut self, key: Uuid, timeout: Duration) -> Result<StatusReply, ReaderError> {
        self.ensure_session()?;
        let seq = self.send(&Message::Status { key }, false)?;
        self.wait_acked(seq)?;
        let reply = self.wait_for(
            timeout,
            |m| matches!(m, Message::StatusReply(s) if s.key == key),
        )?;
        match reply {
            Some(Message::StatusReply(s)) => Ok(s),
            _ => Err(ReaderError::Timeout),
        }
    }

    fn send_outcome(&mut self, key: Uuid, outcome: Outcome) -> Result<(), ReaderError> {
        self.ensure_session()?;
        tracing::info!(key = %key, outcome = ?outcome, "reader: outcome");
        let seq = self.send(&Message::Outcome { key, outcome }, false)?;
        self.wait_acked(seq)?;
        if self.snapshot.current_key == Some(key) {
            self.snapshot.last_state = Some(ReaderPaymentState::Completed(outcome));
        }
        Ok(())
    }

    fn snapshot(&self) -> DriverSnapshot {
        DriverSnapshot {
            link: self.link.stats(),
            ..self.snapshot.clone()
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
