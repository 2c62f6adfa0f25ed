//! Byte encoding of [`Message`] (docs/reader-protocol.md, sections 5 and 6).
//!
//! A message is a type byte followed by its fields in a fixed order; integers
//! are big-endian, keys are the 16 bytes of the UUID, text is `str8` (u8
//! length, UTF-8), binary is `bytes16` (u16 length). Bytes after the last
//! known field are ignored, so a later protocol version may append fields.

use uuid::Uuid;

use super::message::{
    Capabilities, CardReadResult, Currency, Cvm, DeclineReason, EntryMode, Fingerprint, MaskedPan,
    Message, Outcome, PaymentErrorCode, PaymentRequest, ReaderInfo, ReaderPaymentState,
    StatusReply, UiEvent,
};

/// Errors decoding a message payload. The link has already acknowledged the
/// frame; the receiver logs the error (type byte and field name only) and
/// drops the message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The payload ended inside a field.
    #[error("message truncated in field {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A type byte this version does not know.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// A field holds a value outside its range.
    #[error("bad value 0x{value:02x} in field {field}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The offending byte.
        value: u8,
    },
    /// Text or binary longer than its length prefix allows (encoding side).
    #[error("field {field} too long")]
    TooLong {
        /// The field.
        field: &'static str,
    },
}

/// Message type bytes.
pub mod ty {
    /// HELLO.
    pub const HELLO: u8 = 0x01;
    /// START_PAYMENT.
    pub const START_PAYMENT: u8 = 0x02;
    /// CANCEL.
    pub const CANCEL: u8 = 0x03;
    /// STATUS.
    pub const STATUS: u8 = 0x04;
    /// OUTCOME.
    pub const OUTCOME: u8 = 0x05;
    /// HELLO_REPLY.
    pub const HELLO_REPLY: u8 = 0x81;
    /// EVENT.
    pub const EVENT: u8 = 0x82;
    /// CARD_READ.
    pub const CARD_READ: u8 = 0x83;
    /// PAYMENT_ERROR.
    pub const PAYMENT_ERROR: u8 = 0x84;
    /// STATUS_REPLY.
    pub const STATUS_REPLY: u8 = 0x85;
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn key(&mut self, k: &Uuid) {
        self.0.extend_from_slice(k.as_bytes());
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn str8(&mut self, field: &'static str, s: &str) -> Result<(), WireError> {
        let len = u8::try_from(s.len()).map_err(|_| WireError::TooLong { field })?;
        self.u8(len);
        self.raw(s.as_bytes());
        Ok(())
    }
    fn bytes16(&mut self, field: &'static str, b: &[u8]) -> Result<(), WireError> {
        let len = u16::try_from(b.len()).map_err(|_| WireError::TooLong { field })?;
        self.u16(len);
        self.raw(b);
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated { field });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let b = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn key(&mut self) -> Result<Uuid, WireError> {
        Ok(Uuid::from_bytes(self.array("key")?))
    }
    fn currency(&mut self) -> Result<Currency, WireError> {
        let b: [u8; 3] = self.array("currency")?;
        Currency::from_bytes(b).map_err(|_| WireError::BadValue {
            field: "currency",
            value: b[0],
        })
    }
    fn str8(&mut self, field: &'static str) -> Result<String, WireError> {
        let len = usize::from(self.u8(field)?);
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::BadValue {
            field,
            value: b.first().copied().unwrap_or(0),
        })
    }
    fn bytes16(&mut self, field: &'static str) -> Result<Vec<u8>, WireError> {
        let len = usize::from(self.u16(field)?);
        Ok(self.take(len, field)?.to_vec())
    }
}

fn bad(field: &'static str, value: u8) -> WireError {
    WireError::BadValue { field, value }
}

fn event_code(e: UiEvent) -> u8 {
    match e {
        UiEvent::PresentCard => 0x01,
        UiEvent::PinRequired => 0x02,
        UiEvent::Processing => 0x03,
        UiEvent::CardRemoved => 0x04,
    }
}

fn event_from(v: u8) -> Result<UiEvent, WireError> {
    Ok(match v {
        0x01 => UiEvent::PresentCard,
        0x02 => UiEvent::PinRequired,
        0x03 => UiEvent::Processing,
        0x04 => UiEvent::CardRemoved,
        _ => return Err(bad("event", v)),
    })
}

/// The wire code of a payment error.
pub fn error_code(c: PaymentErrorCode) -> u8 {
    match c {
        PaymentErrorCode::Timeout => 0x01,
        PaymentErrorCode::Cancelled => 0x02,
        PaymentErrorCode::CardRemoved => 0x03,
        PaymentErrorCode::Unreadable => 0x04,
        PaymentErrorCode::ReaderFault => 0x05,
        PaymentErrorCode::Busy => 0x06,
        PaymentErrorCode::BadRequest => 0x07,
    }
}

fn error_from(v: u8) -> Result<PaymentErrorCode, WireError> {
    Ok(match v {
        0x01 => PaymentErrorCode::Timeout,
        0x02 => PaymentErrorCode::Cancelled,
        0x03 => PaymentErrorCode::CardRemoved,
        0x04 => PaymentErrorCode::Unreadable,
        0x05 => PaymentErrorCode::ReaderFault,
        0x06 => PaymentErrorCode::Busy,
        0x07 => PaymentErrorCode::BadRequest,
        _ => return Err(bad("error", v)),
    })
}

fn reason_code(r: DeclineReason) -> u8 {
    match r {
        DeclineReason::InsufficientFunds => 0x01,
        DeclineReason::DoNotHonour => 0x02,
        DeclineReason::DenyListed => 0x03,
        DeclineReason::OverOfflineLimit => 0x04,
        DeclineReason::OfflineNotAllowed => 0x05,
        DeclineReason::ExpiredCard => 0x06,
        DeclineReason::ProcessorUnavailable => 0x07,
        DeclineReason::Other => 0xFF,
    }
}

fn reason_from(v: u8) -> DeclineReason {
    match v {
        0x01 => DeclineReason::InsufficientFunds,
        0x02 => DeclineReason::DoNotHonour,
        0x03 => DeclineReason::DenyListed,
        0x04 => DeclineReason::OverOfflineLimit,
        0x05 => DeclineReason::OfflineNotAllowed,
        0x06 => DeclineReason::ExpiredCard,
        0x07 => DeclineReason::ProcessorUnavailable,
        _ => DeclineReason::Other,
    }
}

fn outcome_codes(o: Outcome) -> (u8, u8) {
    match o {
        Outcome::ApprovedOnline => (0x01, 0x00),
        Outcome::ApprovedOffline => (0x02, 0x00),
        Outcome::Declined(r) => (0x03, reason_code(r)),
    }
}

fn outcome_from(code: u8, reason: u8) -> Result<Outcome, WireError> {
    Ok(match code {
        0x01 => Outcome::ApprovedOnline,
        0x02 => Outcome::ApprovedOffline,
        0x03 => Outcome::Declined(reason_from(reason)),
        _ => return Err(bad("outcome", code)),
    })
}

fn state_codes(s: ReaderPaymentState) -> (u8, u8, u8) {
    match s {
        ReaderPaymentState::Unknown => (0x00, 0, 0),
        ReaderPaymentState::WaitingForCard => (0x01, 0, 0),
        ReaderPaymentState::Reading => (0x02, 0, 0),
        ReaderPaymentState::WaitingForPin => (0x03, 0, 0),
        ReaderPaymentState::CardRead => (0x04, 0, 0),
        ReaderPaymentState::Failed(c) => (0x05, error_code(c), 0),
        ReaderPaymentState::Completed(o) => {
            let (a, b) = outcome_codes(o);
            (0x06, a, b)
        }
    }
}

fn state_from(s: u8, d1: u8, d2: u8) -> Result<ReaderPaymentState, WireError> {
    Ok(match s {
        0x00 => ReaderPaymentState::Unknown,
        0x01 => ReaderPaymentState::WaitingForCard,
        0x02 => ReaderPaymentState::Reading,
        0x03 => ReaderPaymentState::WaitingForPin,
        0x04 => ReaderPaymentState::CardRead,
        0x05 => ReaderPaymentState::Failed(error_from(d1)?),
        0x06 => ReaderPaymentState::Completed(outcome_from(d1, d2)?),
        _ => return Err(bad("state", s)),
    })
}

fn entry_code(e: EntryMode) -> u8 {
    match e {
        EntryMode::Chip => 0x01,
        EntryMode::Contactless => 0x02,
    }
}

/// Parses an entry-mode byte.
pub fn entry_from(v: u8) -> Option<EntryMode> {
    match v {
        0x01 => Some(EntryMode::Chip),
        0x02 => Some(EntryMode::Contactless),
        _ => None,
    }
}

/// The wire byte of an entry mode.
pub fn entry_byte(e: EntryMode) -> u8 {
    entry_code(e)
}

/// Encodes a message payload (type byte and fields).
pub fn encode(m: &Message) -> Result<Vec<u8>, WireError> {
    let mut w = Writer(Vec::with_capacity(64));
    match m {
        Message::Hello {
            proto_min,
            proto_max,
            host,
            session,
        } => {
            w.u8(ty::HELLO);
            w.u8(*proto_min);
            w.u8(*proto_max);
            w.str8("host", host)?;
            w.u32(*session);
        }
        Message::StartPayment(r) => {
            w.u8(ty::START_PAYMENT);
            w.key(&r.key);
            w.u64(r.amount_minor);
            w.raw(&r.currency.bytes());
            w.u16(r.card_timeout_s);
        }
        Message::Cancel { key } => {
            w.u8(ty::CANCEL);
            w.key(key);
        }
        Message::Status { key } => {
            w.u8(ty::STATUS);
            w.key(key);
        }
        Message::Outcome { key, outcome } => {
            let (c, r) = outcome_codes(*outcome);
            w.u8(ty::OUTCOME);
            w.key(key);
            w.u8(c);
            w.u8(r);
        }
        Message::HelloReply(i) => {
            w.u8(ty::HELLO_REPLY);
            w.u8(i.protocol_version);
            w.str8("firmware", &i.firmware)?;
            w.str8("serial", &i.serial)?;
            w.u16(i.capabilities.0);
            w.u32(i.processor_key_id);
            w.u32(i.session);
        }
        Message::Event { key, event } => {
            w.u8(ty::EVENT);
            w.key(key);
            w.u8(event_code(*event));
        }
        Message::CardRead(r) => {
            w.u8(ty::CARD_READ);
            w.key(&r.key);
            w.u8(entry_code(r.entry_mode));
            w.u8(match r.cvm {
                Cvm::None => 0x00,
                Cvm::Pin => 0x01,
            });
            w.str8("masked_pan", r.masked_pan.as_str())?;
            w.raw(&r.fingerprint.0);
            w.bytes16("emv", &r.emv)?;
            w.bytes16("blob", &r.blob)?;
        }
        Message::PaymentError { key, code } => {
            w.u8(ty::PAYMENT_ERROR);
            w.key(key);
            w.u8(error_code(*code));
        }
        Message::StatusReply(s) => {
            let (st, d1, d2) = state_codes(s.state);
            w.u8(ty::STATUS_REPLY);
            w.key(&s.key);
            w.u8(st);
            w.u8(d1);
            w.u8(d2);
            w.u64(s.amount_minor);
            w.raw(&s.currency.bytes());
        }
    }
    Ok(w.0)
}

/// Decodes a message payload. Trailing bytes after the known fields are ignored.
pub fn decode(payload: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader(payload);
    let t = r.u8("type")?;
    Ok(match t {
        ty::HELLO => Message::Hello {
            proto_min: r.u8("proto_min")?,
            proto_max: r.u8("proto_max")?,
            host: r.str8("host")?,
            session: r.u32("session")?,
        },
        ty::START_PAYMENT => Message::StartPayment(PaymentRequest {
            key: r.key()?,
            amount_minor: r.u64("amount")?,
            currency: r.currency()?,
            card_timeout_s: r.u16("card_timeout")?,
        }),
        ty::CANCEL => Message::Cancel { key: r.key()? },
        ty::STATUS => Message::Status { key: r.key()? },
        ty::OUTCOME => {
            let key = r.key()?;
            let c = r.u8("outcome")?;
            let reason = r.u8("reason")?;
            Message::Outcome {
                key,
                outcome: outcome_from(c, reason)?,
            }
        }
        ty::HELLO_REPLY => Message::HelloReply(ReaderInfo {
            protocol_version: r.u8("protocol_version")?,
            firmware: r.str8("firmware")?,
            serial: r.str8("serial")?,
            capabilities: Capabilities(r.u16("capabilities")?),
            processor_key_id: r.u32("processor_key_id")?,
            session: r.u32("session")?,
        }),
        ty::EVENT => Message::Event {
            key: r.key()?,
            event: event_from(r.u8("event")?)?,
        },
        ty::CARD_READ => {
            let key = r.key()?;
            let e = r.u8("entry_mode")?;
            let entry_mode = entry_from(e).ok_or(bad("entry_mode", e))?;
            let c = r.u8("cvm")?;
            let cvm = match c {
                0x00 => Cvm::None,
                0x01 => Cvm::Pin,
                _ => return Err(bad("cvm", c)),
            };
            let masked = r.str8("masked_pan")?;
            let masked_pan = MaskedPan::new(&masked)
                .ok_or(bad("masked_pan", masked.bytes().next().unwrap_or(0)))?;
            Message::CardRead(CardReadResult {
                key,
                entry_mode,
                cvm,
                masked_pan,
                fingerprint: Fingerprint(r.array("fingerprint")?),
                emv: r.bytes16("emv")?,
                blob: r.bytes16("blob")?,
            })
        }
        ty::PAYMENT_ERROR => Message::PaymentError {
            key: r.key()?,
            code: error_from(r.u8("error")?)?,
        },
        ty::STATUS_REPLY => {
            let key = r.key()?;
            let s = r.u8("state")?;
            let d1 = r.u8("detail1")?;
            let d2 = r.u8("detail2")?;
            Message::StatusReply(StatusReply {
                key,
                state: state_from(s, d1, d2)?,
                amount_minor: r.u64("amount")?,
                currency: r.currency()?,
            })
        }
        other => return Err(WireError::UnknownType(other)),
    })
}
