//! The link layer as a sans-IO state machine (docs/reader-protocol.md,
//! section 4): stop-and-wait ARQ per direction, ACK/NAK, bounded
//! retransmission, duplicate detection by sequence number.
//!
//! Its methods only change the state: bytes in through
//! [`Link::handle_input`], time through [`Link::handle_timeout`]; bytes out,
//! delivered payloads and errors are pulled with the `poll_*` methods. The
//! caller owns the clock and the port, so tests drive it without a line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{Decoded, Decoder, Frame, FrameError, FrameKind};

/// Timers and limits of the link (section 4.3 of the spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// T_ACK: how long a sender waits for an ACK before retransmitting.
    pub ack_timeout: Duration,
    /// N_TRIES: transmissions of one frame, the first included, before the
    /// sender gives up.
    pub max_tries: u8,
    /// T_IDLE: silence inside a frame after which the partial frame is
    /// discarded (and NAKed when its header was read).
    pub idle_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            ack_timeout: Duration::from_millis(500),
            max_tries: 4,
            idle_timeout: Duration::from_millis(100),
        }
    }
}

/// Errors the link reports through [`Link::poll_error`].
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum LinkError {
    /// A frame was sent `tries` times without an ACK: the frame is dropped and
    /// the caller treats the peer as unreachable (the driver returns
    /// `ReaderError::NoAck`).
    #[error("no ACK for frame {seq} after {tries} tries")]
    NoAck {
        /// The frame's sequence number.
        seq: u8,
        /// Transmissions made.
        tries: u8,
    },
}

/// Counters and sequence numbers, for diagnostics and for the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// SEQ the next new frame will carry.
    pub next_tx_seq: u8,
    /// SEQ of the frame waiting for its ACK, if any.
    pub outstanding_seq: Option<u8>,
    /// SEQ of the last frame the peer acknowledged.
    pub last_acked_seq: Option<u8>,
    /// SEQ of the last DATA/SYNC frame accepted from the peer.
    pub last_rx_seq: Option<u8>,
    /// Frames sent for the first time.
    pub frames_sent: u64,
    /// Frames delivered to the caller.
    pub frames_delivered: u64,
    /// Retransmissions (after a timeout or a NAK).
    pub retransmissions: u64,
    /// Duplicates received and dropped (re-ACKed).
    pub duplicates: u64,
    /// Damaged or truncated frames received (each NAKed when possible).
    pub damaged: u64,
    /// NAKs received from the peer.
    pub naks_received: u64,
    /// Bytes discarded while hunting for frames.
    pub noise_bytes: u64,
}

struct Outstanding {
    seq: u8,
    bytes: Vec<u8>,
    tries: u8,
    deadline: Instant,
}

/// A payload delivered by the link.
#[derive(PartialEq, Eq)]
pub struct Delivered {
    /// True when it came in a SYNC frame (the peer restarted its session).
    pub sync: bool,
    /// The message bytes.
    pub payload: Vec<u8>,
}

// Payloads may be card-read results: Debug shows lengths and counters only.
impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivered")
            .field("sync", &self.sync)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// One end of the link.
pub struct Link {
    cfg: LinkConfig,
    decoder: Decoder,
    next_tx_seq: u8,
    outstanding: Option<Outstanding>,
    queue: VecDeque<Frame>,
    last_rx_seq: Option<u8>,
    last_byte_at: Option<Instant>,
    out: Vec<u8>,
    delivered: VecDeque<Delivered>,
    errors: VecDeque<LinkError>,
    stats: LinkStats,
    sent_any: bool,
    /// Payload of the last accepted frame if it was a SYNC (spec 4.5: a SYNC
    /// is a duplicate only when byte-identical to it).
    last_sync: Option<Vec<u8>>,
}

impl Link {
    /// A fresh link: SEQ starts at 0, nothing received yet.
    pub fn new(cfg: LinkConfig) -> Self {
        Link {
            cfg,
            decoder: Decoder::new(),
            next_tx_seq: 0,
            outstanding: None,
            queue: VecDeque::new(),
            last_rx_seq: None,
            last_byte_at: None,
            out: Vec::new(),
            delivered: VecDeque::new(),
            errors: VecDeque::new(),
            stats: LinkStats::default(),
            sent_any: false,
            last_sync: None,
        }
    }

    /// Queues a message payload in a DATA frame (SYNC with `sync`, and always
    /// for the first frame of this link: the peer may remember a SEQ from
    /// before we restarted). Returns the SEQ it will carry.
    pub fn send(&mut self, payload: Vec<u8>, sync: bool, now: Instant) -> Result<u8, FrameError> {
        let seq = self.next_tx_seq;
        let sync = sync || !self.sent_any;
        let frame = Frame::message(sync, seq, payload)?;
        self.sent_any = true;
        self.next_tx_seq = self.next_tx_seq.wrapping_add(1);
        self.queue.push_back(frame);
        self.pump(now);
        Ok(seq)
    }

    /// Drops the outstanding and queued frames (the reader does this when a
    /// SYNC arrives: the cart restarted and will ask for what it needs).
    pub fn clear_tx(&mut self) {
        self.outstanding = None;
        self.queue.clear();
    }

    /// True when no frame waits for an ACK and none is queued.
    pub fn tx_idle(&self) -> bool {
        self.outstanding.is_none() && self.queue.is_empty()
    }

    /// True when the frame with `seq` has been acknowledged (it is neither
    /// outstanding nor queued).
    pub fn is_acked(&self, seq: u8) -> bool {
        self.outstanding.as_ref().is_none_or(|o| o.seq != seq)
            && self.queue.iter().all(|f| f.seq() != seq)
    }

    fn pump(&mut self, now: Instant) {
        if self.outstanding.is_some() {
            return;
        }
        if let Some(frame) = self.queue.pop_front() {
            let bytes = frame.encode();
            self.out.extend_from_slice(&bytes);
            self.stats.frames_sent += 1;
            self.outstanding = Some(Outstanding {
                seq: frame.seq(),
                bytes,
                tries: 1,
                deadline: now + self.cfg.ack_timeout,
            });
        }
    }

    fn retransmit(&mut self, now: Instant) {
        let Some(o) = self.outstanding.as_mut() else {
            return;
        };
        if o.tries >= self.cfg.max_tries {
            let err = LinkError::NoAck {
                seq: o.seq,
                tries: o.tries,
            };
            tracing::warn!(
                seq = o.seq,
                tries = o.tries,
                "reader link: no ACK, frame dropped"
            );
            self.outstanding = None;
            self.errors.push_back(err);
            self.pump(now);
            return;
        }
        o.tries += 1;
        o.deadline = now + self.cfg.ack_timeout;
        self.out.extend_from_slice(&o.bytes);
        self.stats.retransmissions += 1;
        tracing::debug!(seq = o.seq, try_no = o.tries, "reader link: retransmit");
    }

    fn send_control(&mut self, frame: Frame) {
        frame.encode_into(&mut self.out);
    }

    /// Feeds received bytes.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            return;
        }
        self.last_byte_at = Some(now);
        self.decoder.push(bytes);
        while let Some(d) = self.decoder.next_frame() {
            self.on_decoded(d, now);
        }
        self.stats.noise_bytes = self.decoder.noise_bytes();
    }

    fn on_decoded(&mut self, d: Decoded, now: Instant) {
        match d {
            Decoded::Frame(f) => self.on_frame(f, now),
            Decoded::Corrupt { seq } | Decoded::Truncated { seq } => {
                self.stats.damaged += 1;
                tracing::debug!(seq, "reader link: damaged frame, NAK");
                self.send_control(Frame::nak(seq));
            }
        }
    }

    fn on_frame(&mut self, f: Frame, now: Instant) {
        let seq = f.seq();
        match f.kind() {
            FrameKind::Ack => {
                if self.outstanding.as_ref().is_some_and(|o| o.seq == seq) {
                    self.outstanding = None;
                    self.stats.last_acked_seq = Some(seq);
                    self.pump(now);
                }
            }
            FrameKind::Nak => {
                self.stats.naks_received += 1;
                if self.outstanding.is_some() {
                    self.retransmit(now);
                }
            }
            FrameKind::Data | FrameKind::Sync => {
                let sync = f.kind() == FrameKind::Sync;
                self.send_control(Frame::ack(seq));
                let duplicate = self.last_rx_seq == Some(seq)
                    && (!sync || self.last_sync.as_deref() == Some(f.payload()));
                if duplicate {
                    self.stats.duplicates += 1;
                    tracing::debug!(seq, "reader link: duplicate dropped");
                    return;
                }
                self.last_rx_seq = Some(seq);
                self.last_sync = sync.then(|| f.payload().to_vec());
                self.stats.frames_delivered += 1;
                self.delivered.push_back(Delivered {
                    sync,
                    payload: f.into_payload(),
                });
            }
        }
    }

    /// Advances the timers: retransmits after T_ACK, discards a partial frame
    /// after T_IDLE.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outstanding.as_ref().is_some_and(|o| now >= o.deadline) {
            self.retransmit(now);
        }
        if let Some(t) = self.last_byte_at
            && self.decoder.is_partial()
            && now >= t + self.cfg.idle_timeout
        {
            if let Some(d) = self.decoder.on_idle() {
                self.on_decoded(d, now);
            }
            while let Some(d) = self.decoder.next_frame() {
                self.on_decoded(d, now);
            }
            self.stats.noise_bytes = self.decoder.noise_bytes();
        }
    }

    /// When [`Self::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = self.outstanding.as_ref().map(|o| o.deadline);
        let idle = self
            .last_byte_at
            .filter(|_| self.decoder.is_partial())
            .map(|t| t + self.cfg.idle_timeout);
        match (ack, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes to write to the line (empty when none).
    pub fn poll_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The next payload received, in order.
    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        self.delivered.pop_front()
    }

    /// The next error, if any.
    pub fn poll_error(&mut self) -> Option<LinkError> {
        self.errors.pop_front()
    }

    /// Counters and sequence numbers.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            next_tx_seq: self.next_tx_seq,
            outstanding_seq: self.outstanding.as_ref().map(|o| o.seq),
            last_rx_seq: self.last_rx_seq,
            ..self.stats
        }
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
