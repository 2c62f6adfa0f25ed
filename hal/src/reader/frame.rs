//! Frame layer of the reader protocol (docs/reader-protocol.md, section 3).
//!
//! ```text
//! STX | LEN (u16 BE) | CTRL | SEQ | PAYLOAD (LEN bytes) | CRC (u16 BE)
//! ```
//!
//! The CRC is CRC-16/IBM-3740 (also known as CRC-16/CCITT-FALSE: poly 0x1021,
//! init 0xFFFF, no reflection, xorout 0x0000, check 0x29B1) over LEN, CTRL,
//! SEQ and PAYLOAD. There is no byte stuffing: the [`Decoder`] hunts for STX,
//! checks the header, waits for LEN bytes and checks the CRC; on any failure it
//! drops the STX and hunts again from the next byte, so a frame hidden behind
//! noise or a false start is still found.

use std::fmt;

use crc::{CRC_16_IBM_3740, Crc};

/// Start of every frame.
pub const STX: u8 = 0x02;
/// Largest payload a frame may carry, in bytes.
pub const MAX_PAYLOAD: usize = 1024;
/// STX, LEN (2), CTRL, SEQ.
pub const HEADER_LEN: usize = 5;
/// The CRC after the payload.
pub const TRAILER_LEN: usize = 2;
/// The frame checksum: CRC-16/IBM-3740 (CCITT-FALSE) from the `crc` catalog.
pub const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// Errors building a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The payload is larger than [`MAX_PAYLOAD`]: the caller's message is
    /// refused before anything is sent.
    #[error("payload of {len} bytes exceeds the {MAX_PAYLOAD}-byte frame limit")]
    PayloadTooLarge {
        /// Length of the refused payload.
        len: usize,
    },
    /// A DATA or SYNC frame must carry at least the message type byte.
    #[error("a data frame needs a payload")]
    EmptyPayload,
}

/// The CTRL byte: what a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `0x44` ('D'): a message; acknowledged, duplicates detected by SEQ.
    Data,
    /// `0x53` ('S'): a message that also resets the receiver's duplicate
    /// detection (sent with HELLO); always delivered.
    Sync,
    /// `0x06`: the DATA or SYNC frame with this SEQ arrived intact.
    Ack,
    /// `0x15`: a damaged frame arrived; resend the outstanding frame now.
    Nak,
}

impl FrameKind {
    /// The CTRL byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Data => 0x44,
            FrameKind::Sync => 0x53,
            FrameKind::Ack => 0x06,
            FrameKind::Nak => 0x15,
        }
    }

    /// Parses a CTRL byte; `None` for anything else.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x44 => Some(FrameKind::Data),
            0x53 => Some(FrameKind::Sync),
            0x06 => Some(FrameKind::Ack),
            0x15 => Some(FrameKind::Nak),
            _ => None,
        }
    }

    /// DATA and SYNC carry messages; ACK and NAK are empty.
    pub fn carries_payload(self) -> bool {
        matches!(self, FrameKind::Data | FrameKind::Sync)
    }
}

/// One frame. Built only through the constructors, so it is always valid.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    kind: FrameKind,
    seq: u8,
    payload: Vec<u8>,
}

// The payload may be a card-read result: print only its length.
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("seq", &self.seq)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Frame {
    /// A DATA (or, with `sync`, SYNC) frame carrying one message.
    pub fn message(sync: bool, seq: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        if payload.is_empty() {
            return Err(FrameError::EmptyPayload);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLarge { len: payload.len() });
        }
        let kind = if sync {
            FrameKind::Sync
        } else {
            FrameKind::Data
        };
        Ok(Frame { kind, seq, payload })
    }

    /// An ACK for `seq`.
    pub fn ack(seq: u8) -> Self {
        Frame {
            kind: FrameKind::Ack,
            seq,
            payload: Vec::new(),
        }
    }

    /// A NAK; `seq` is the damaged frame's SEQ as read (informational).
    pub fn nak(seq: u8) -> Self {
        Frame {
            kind: FrameKind::Nak,
            seq,
            payload: Vec::new(),
        }
    }

    /// What the frame is.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// Its sequence number.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    /// Its payload (a message for DATA and SYNC, empty otherwise).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // The constructors bound the payload to MAX_PAYLOAD, which fits u16.
        let len = self.payload.len() as u16;
        out.push(STX);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(self.kind.code());
        out.push(self.seq);
        out.extend_from_slice(&self.payload);
        let crc = CRC16.checksum(&out[start + 1..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len() + TRAILER_LEN);
        self.encode_into(&mut out);
        out
    }
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An intact frame.
    Frame(Frame),
    /// A complete frame whose CRC did not match; `seq` as read. The receiver
    /// answers with a NAK.
    Corrupt {
        /// The SEQ byte as read (untrusted).
        seq: u8,
    },
    /// A frame that stopped before its end (the line went idle); `seq` as
    /// read. The receiver answers with a NAK.
    Truncated {
        /// The SEQ byte as read (untrusted).
        seq: u8,
    },
}

/// Incremental frame decoder: push bytes, pull frames. Never panics.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    noise_bytes: u64,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buffered())
            .field("noise_bytes", &self.noise_bytes)
            .finish()
    }
}

/// Result of looking at the buffer's head.
enum Head {
    /// Not enough bytes yet for the candidate at the head.
    NeedMore,
    /// The head byte cannot start a frame: drop it.
    Skip,
    /// A complete candidate of this many bytes.
    Complete(usize),
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes thrown away while hunting for STX or after a false start.
    pub fn noise_bytes(&self) -> u64 {
        self.noise_bytes
    }

    /// True while a frame has started and not ended.
    pub fn is_partial(&self) -> bool {
        self.buffered() > 0
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn skip(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn hunt(&mut self) {
        let head = &self.buf[self.start..];
        let n = head.iter().position(|&b| b == STX).unwrap_or(head.len());
        self.noise_bytes += n as u64;
        self.skip(n);
    }

    fn head(&self) -> Head {
        let b = &self.buf[self.start..];
        if b.len() < HEADER_LEN {
            return Head::NeedMore;
        }
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        let Some(kind) = FrameKind::from_code(b[3]) else {
            return Head::Skip;
        };
        let len_ok = if kind.carries_payload() {
            (1..=MAX_PAYLOAD).contains(&len)
        } else {
            len == 0
        };
        if !len_ok {
            return Head::Skip;
        }
        let total = HEADER_LEN + len + TRAILER_LEN;
        if b.len() < total {
            Head::NeedMore
        } else {
            Head::Complete(total)
        }
    }

    /// The next frame or damaged frame in the buffer, if any.
    pub fn next_frame(&mut self) -> Option<Decoded> {
        loop {
            self.hunt();
            if self.buffered() == 0 {
                return None;
            }
            match self.head() {
                Head::NeedMore => return None,
                Head::Skip => {
                    self.noise_bytes += 1;
                    self.skip(1);
                }
                Head::Complete(total) => {
                    let b = &self.buf[self.start..self.start + total];
                    let body = &b[1..total - TRAILER_LEN];
                    let crc = u16::from_be_bytes([b[total - 2], b[total - 1]]);
                    let seq = b[4];
                    if CRC16.checksum(body) == crc {
                        // The header check guarantees a valid kind.
                        let kind = FrameKind::from_code(b[3]).unwrap_or(FrameKind::Nak);
                        let payload = b[HEADER_LEN..total - TRAILER_LEN].to_vec();
                        self.skip(total);
                        return Some(Decoded::Frame(Frame { kind, seq, payload }));
                    }
                    // Drop only the STX: a real frame may hide inside.
                    self.noise_bytes += 1;
                    self.skip(1);
                    return Some(Decoded::Corrupt { seq });
                }
            }
        }
    }

    /// The line went idle with a frame started: discard every candidate that
    /// cannot complete (no more bytes are coming for it) and report the first.
    /// Complete frames found behind it stay buffered for [`Self::next_frame`].
    pub fn on_idle(&mut self) -> Option<Decoded> {
        let mut first = None;
        loop {
            self.hunt();
            if self.buffered() == 0 {
                return first;
            }
            match self.head() {
                Head::Complete(_) => return first,
                Head::Skip => {
                    self.noise_bytes += 1;
                    self.skip(1);
                }
                Head::NeedMore => {
                    let b = &self.buf[self.start..];
                    if first.is_none() && b.len() >= HEADER_LEN {
                        first = Some(Decoded::Truncated { seq: b[4] });
                    }
                    self.noise_bytes += 1;
                    self.skip(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_catalogued_ccitt_false() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x29B1);
    }

    #[test]
    fn round_trip_through_noise() {
        let f = Frame::message(false, 7, vec![0x04, STX, 0x00]).unwrap();
        let mut bytes = vec![0xFF, STX, 0x13];
        bytes.extend(f.encode());
        let mut d = Decoder::new();
        for b in bytes {
            d.push(&[b]);
        }
        assert_eq!(d.next_frame(), Some(Decoded::Frame(f)));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.noise_bytes(), 3);
    }

    #[test]
    fn corrupt_crc_reported_then_next_frame_found() {
        let mut bad = Frame::message(false, 1, vec![0x04]).unwrap().encode();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let good = Frame::ack(9);
        let mut d = Decoder::new();
        d.push(&bad);
        d.push(&good.encode());
        assert_eq!(d.next_frame(), Some(Decoded::Corrupt { seq: 1 }));
        assert_eq!(d.next_frame(), Some(Decoded::Frame(good)));
    }

    #[test]
    fn idle_discards_a_truncated_frame_and_keeps_what_follows() {
        let f = Frame::message(false, 3, vec![0x04; 10]).unwrap().encode();
        let good = Frame::ack(4);
        let mut d = Decoder::new();
        d.push(&f[..8]);
        assert_eq!(d.next_frame(), None);
        assert!(d.is_partial());
        assert_eq!(d.on_idle(), Some(Decoded::Truncated { seq: 3 }));
        assert!(!d.is_partial());
        d.push(&good.encode());
        assert_eq!(d.next_frame(), Some(Decoded::Frame(good)));
    }

    #[test]
    fn oversized_payload_refused() {
        assert_eq!(
            Frame::message(false, 0, vec![0; MAX_PAYLOAD + 1]),
            Err(FrameError::PayloadTooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
    }
}
