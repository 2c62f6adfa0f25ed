//! The sans-IO line framer: bytes in, lines out. A line ends at any of the
//! configured terminator bytes; empty lines (the LF of a CR LF pair) are
//! skipped; a line that grows past the maximum is reported once as
//! [`Frame::TooLong`] and everything up to the next terminator is dropped,
//! so the stream resynchronises at the next terminator whatever came before.

use std::collections::VecDeque;

use zeroize::Zeroize;

/// One framed unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of a line, terminator removed.
    Line(Vec<u8>),
    /// A line longer than `max` bytes was dropped.
    TooLong {
        /// The configured maximum.
        max: usize,
    },
}

/// Splits a byte stream into lines.
#[derive(Debug)]
pub struct LineFramer {
    terminators: Vec<u8>,
    start: Option<u8>,
    max: usize,
    buf: Vec<u8>,
    discarding: bool,
    ready: VecDeque<Frame>,
}

impl LineFramer {
    /// A framer ending lines at any byte of `terminators`, with lines of at
    /// most `max` bytes (at least 1).
    pub fn new(terminators: &[u8], max: usize) -> Self {
        Self {
            terminators: terminators.to_vec(),
            start: None,
            max: max.max(1),
            buf: Vec::with_capacity(64),
            discarding: false,
            ready: VecDeque::new(),
        }
    }

    /// Also treats `start` as the beginning of a line (STX of STX ... ETX
    /// framing): it is dropped, and so is any partial line before it.
    pub fn with_start(mut self, start: u8) -> Self {
        self.start = Some(start);
        self
    }

    /// Feeds bytes; complete frames become available through [`Self::pop`].
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.start == Some(b) {
                self.reset();
            } else if self.terminators.contains(&b) {
                if self.discarding {
                    self.discarding = false;
                } else if !self.buf.is_empty() {
                    let line = std::mem::replace(&mut self.buf, Vec::with_capacity(64));
                    self.ready.push_back(Frame::Line(line));
                }
            } else if !self.discarding {
                if self.buf.len() >= self.max {
                    self.buf.zeroize();
                    self.buf.clear();
                    self.discarding = true;
                    self.ready.push_back(Frame::TooLong { max: self.max });
                } else {
                    self.buf.push(b);
                }
            }
        }
    }

    /// The next complete frame, if any.
    pub fn pop(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    /// Drops a partial line (after the device was lost mid-line).
    pub fn reset(&mut self) {
        self.buf.zeroize();
        self.buf.clear();
        self.discarding = false;
    }
}

impl Drop for LineFramer {
    fn drop(&mut self) {
        // A partial line may be part of a provisioning code's password.
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &mut LineFramer) -> Vec<Frame> {
        std::iter::from_fn(|| f.pop()).collect()
    }

    #[test]
    fn lines_split_across_pushes_and_crlf() {
        let mut f = LineFramer::new(b"\r\n", 16);
        f.push(b"123");
        assert!(f.pop().is_none());
        f.push(b"45\r\n678\r");
        assert_eq!(
            frames(&mut f),
            vec![Frame::Line(b"12345".to_vec()), Frame::Line(b"678".to_vec())]
        );
    }

    #[test]
    fn over_long_line_is_dropped_and_stream_resyncs() {
        let mut f = LineFramer::new(b"\r", 4);
        f.push(b"abcdefgh\rxyz\r");
        assert_eq!(
            frames(&mut f),
            vec![Frame::TooLong { max: 4 }, Frame::Line(b"xyz".to_vec())]
        );
        f.push(b"abcd\r");
        assert_eq!(frames(&mut f), vec![Frame::Line(b"abcd".to_vec())]);
    }

    #[test]
    fn start_byte_begins_a_fresh_line() {
        let mut f = LineFramer::new(b"\x03", 8).with_start(0x02);
        f.push(b"\x0212\x03noise\x0234\x03\x02123456789\x03\x025\x03");
        assert_eq!(
            frames(&mut f),
            vec![
                Frame::Line(b"12".to_vec()),
                Frame::Line(b"34".to_vec()),
                Frame::TooLong { max: 8 },
                Frame::Line(b"5".to_vec()),
            ]
        );
    }

    #[test]
    fn reset_drops_partial_line() {
        let mut f = LineFramer::new(b"\r", 8);
        f.push(b"12");
        f.reset();
        f.push(b"34\r");
        assert_eq!(frames(&mut f), vec![Frame::Line(b"34".to_vec())]);
    }
}
