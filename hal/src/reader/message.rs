//! Messages of the reader protocol (docs/reader-protocol.md, section 6) as
//! typed values. Their byte encoding is in [`super::wire`].
//!
//! Cart-side types never hold a card number: a card-read result carries the
//! masked PAN, the keyed fingerprint, EMV data without PAN or track data, and
//! the encrypted blob. Their `Debug` prints no card data beyond the masked PAN.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Errors building message values from outside input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// A currency that is not three upper-case ASCII letters: the request is
    /// refused before it is sent.
    #[error("currency code must be three upper-case letters")]
    BadCurrency,
}

/// An ISO 4217 alphabetic currency code, e.g. `EUR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// `XXX`, ISO 4217's "no currency", used in a status reply for an unknown payment.
    pub const NONE: Currency = Currency(*b"XXX");

    /// From three bytes; upper-case ASCII letters only.
    pub fn from_bytes(b: [u8; 3]) -> Result<Self, MessageError> {
        if b.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency(b))
        } else {
            Err(MessageError::BadCurrency)
        }
    }

    /// The three letters as bytes.
    pub fn bytes(&self) -> [u8; 3] {
        self.0
    }

    /// The three letters.
    pub fn as_str(&self) -> &str {
        // Only upper-case ASCII gets in.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = MessageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b: [u8; 3] = s
            .as_bytes()
            .try_into()
            .map_err(|_| MessageError::BadCurrency)?;
        Currency::from_bytes(b)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the cart asks the reader to collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The payment attempt's idempotency key.
    pub key: Uuid,
    /// Amount in minor units of `currency`.
    pub amount_minor: u64,
    /// The currency.
    pub currency: Currency,
    /// Seconds the reader waits for a card; 0 means the reader's default (60 s).
    pub card_timeout_s: u16,
}

/// Prompts the reader shows and reports so the cart's UI can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UiEvent {
    /// `0x01`: waiting for the shopper to insert or tap a card.
    PresentCard,
    /// `0x02`: the card asks for a PIN; the reader's keypad is active.
    PinRequired,
    /// `0x03`: the card is being read.
    Processing,
    /// `0x04`: the card was taken out of the slot.
    CardRemoved,
}

/// How the card was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryMode {
    /// `0x01`: EMV chip (contact).
    Chip,
    /// `0x02`: EMV contactless.
    Contactless,
}

/// How the cardholder was verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cvm {
    /// `0x00`: no cardholder verification.
    None,
    /// `0x01`: PIN entered on the reader.
    Pin,
}

/// A PAN with all but the last four (and optionally the first six) digits
/// replaced by `*`.
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedPan(String);

impl MaskedPan {
    /// Accepts only the masked form, the length of a PAN (12..=19): the
    /// last four digits in clear, optionally the first six (the BIN), every
    /// other position `*` (`411111******1111`, `************1111`). Nothing
    /// else, so neither a full PAN nor more of one can be stored in it.
    pub fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if !(12..=19).contains(&b.len()) {
            return None;
        }
        let (head, tail) = b.split_at(b.len() - 4);
        let digits = |x: &[u8]| x.iter().all(u8::is_ascii_digit);
        let stars = |x: &[u8]| !x.is_empty() && x.iter().all(|&c| c == b'*');
        let ok = digits(tail)
            && (stars(head) || (head.len() > 6 && digits(&head[..6]) && stars(&head[6..])));
        ok.then(|| MaskedPan(s.to_owned()))
    }

    /// The masked text, e.g. `411111******1111`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MaskedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for MaskedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// HMAC-SHA256 of the PAN under the reader's fingerprint key: stable per card,
/// useless without the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Lower-case hex, for the ledger and the deny-list.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({}..)", &self.to_hex()[..12])
    }
}

/// A card-read result: all the cart gets to know about the card.
#[derive(Clone, PartialEq, Eq)]
pub struct CardReadResult {
    /// The payment attempt's idempotency key.
    pub key: Uuid,
    /// Chip or contactless.
    pub entry_mode: EntryMode,
    /// Cardholder verification performed.
    pub cvm: Cvm,
    /// The masked PAN, for the receipt and the UI.
    pub masked_pan: MaskedPan,
    /// The keyed card fingerprint, for velocity limits and the deny-list.
    pub fingerprint: Fingerprint,
    /// EMV data for the processor, BER-TLV; never holds PAN or track data.
    pub emv: Vec<u8>,
    /// Card data encrypted to the processor (see [`super::carddata`]); opaque
    /// to the cart.
    pub blob: Vec<u8>,
}

impl fmt::Debug for CardReadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardReadResult")
            .field("key", &self.key)
            .field("entry_mode", &self.entry_mode)
            .field("cvm", &self.cvm)
            .field("masked_pan", &self.masked_pan)
            .field("fingerprint", &self.fingerprint)
            .field("emv_len", &self.emv.len())
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// Why a payment ended without a card-read result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentErrorCode {
    /// `0x01`: no card within the card timeout.
    Timeout,
    /// `0x02`: cancelled by the cart.
    Cancelled,
    /// `0x03`: the card was removed before the read finished.
    CardRemoved,
    /// `0x04`: the card could not be read (chip and contactless both failed).
    Unreadable,
    /// `0x05`: the reader is out of order (tamper, hardware or key fault).
    ReaderFault,
    /// `0x06`: another payment is in progress.
    Busy,
    /// `0x07`: the request was malformed (amount 0, unsupported currency).
    BadRequest,
}

/// Why a payment was declined (shown by the reader).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// `0x01`: the issuer reports insufficient funds.
    InsufficientFunds,
    /// `0x02`: the issuer declined without a reason.
    DoNotHonour,
    /// `0x03`: the card is on the cart's deny-list.
    DenyListed,
    /// `0x04`: above the offline per-payment cap.
    OverOfflineLimit,
    /// `0x05`: offline approval is off (limits, staleness, online required).
    OfflineNotAllowed,
    /// `0x06`: the card has expired.
    ExpiredCard,
    /// `0x07`: no answer from the processor and no offline approval.
    ProcessorUnavailable,
    /// `0xFF`: any other reason (also any code this version does not know).
    Other,
}

/// The cart's decision, sent back for the reader to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `0x01`: approved online by the processor.
    ApprovedOnline,
    /// `0x02`: approved offline by the cart.
    ApprovedOffline,
    /// `0x03`: declined, with the reason.
    Declined(DeclineReason),
}

/// The reader's view of one payment, by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderPaymentState {
    /// `0x00`: the reader does not know this key (never seen, or forgotten).
    Unknown,
    /// `0x01`: waiting for a card.
    WaitingForCard,
    /// `0x02`: reading the card.
    Reading,
    /// `0x03`: waiting for the PIN.
    WaitingForPin,
    /// `0x04`: card read and result sent; waiting for the outcome.
    CardRead,
    /// `0x05`: ended without a card-read result.
    Failed(PaymentErrorCode),
    /// `0x06`: outcome received and shown.
    Completed(Outcome),
}

/// Answer to STATUS (and to CANCEL or a repeated START when nothing is to be
/// done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReply {
    /// The key asked about.
    pub key: Uuid,
    /// The reader's view of that payment.
    pub state: ReaderPaymentState,
    /// The payment's amount (0 when unknown).
    pub amount_minor: u64,
    /// The payment's currency ([`Currency::NONE`] when unknown).
    pub currency: Currency,
}

/// Reader capability bits (HELLO_REPLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities(pub u16);

impl Capabilities {
    /// Bit 0: contact chip.
    pub const CHIP: u16 = 1 << 0;
    /// Bit 1: contactless.
    pub const CONTACTLESS: u16 = 1 << 1;
    /// Bit 2: PIN pad.
    pub const PIN: u16 = 1 << 2;
    /// Bit 3: own display for prompts and outcomes.
    pub const DISPLAY: u16 = 1 << 3;

    /// True when every bit of `bits` is set.
    pub fn has(&self, bits: u16) -> bool {
        self.0 & bits == bits
    }
}

/// What the reader says about itself in HELLO_REPLY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderInfo {
    /// Protocol version chosen by the reader (0: none in common).
    pub protocol_version: u8,
    /// Firmware version text.
    pub firmware: String,
    /// Reader serial number.
    pub serial: String,
    /// What the reader can do.
    pub capabilities: Capabilities,
    /// Id of the processor key the reader encrypts to.
    pub processor_key_id: u32,
    /// Echo of the HELLO's session id, so a reply to an older HELLO is not
    /// taken for this one.
    pub session: u32,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `0x01` cart to reader: open a session.
    Hello {
        /// Lowest protocol version the cart speaks.
        proto_min: u8,
        /// Highest protocol version the cart speaks.
        proto_max: u8,
        /// Cart software name and version.
        host: String,
        /// Random per HELLO: makes each session's SYNC frame unique (spec 4.5)
        /// and is echoed in HELLO_REPLY.
        session: u32,
    },
    /// `0x02` cart to reader: collect a card for this payment.
    StartPayment(PaymentRequest),
    /// `0x03` cart to reader: abandon this payment.
    Cancel {
        /// The payment's key.
        key: Uuid,
    },
    /// `0x04` cart to reader: what do you know about this payment?
    Status {
        /// The payment's key.
        key: Uuid,
    },
    /// `0x05` cart to reader: the decision, to show.
    Outcome {
        /// The payment's key.
        key: Uuid,
        /// The decision.
        outcome: Outcome,
    },
    /// `0x81` reader to cart: answer to HELLO.
    HelloReply(ReaderInfo),
    /// `0x82` reader to cart: a prompt for the UI.
    Event {
        /// The payment's key.
        key: Uuid,
        /// The prompt.
        event: UiEvent,
    },
    /// `0x83` reader to cart: the card was read.
    CardRead(CardReadResult),
    /// `0x84` reader to cart: the payment ended without a card.
    PaymentError {
        /// The payment's key.
        key: Uuid,
        /// Why.
        code: PaymentErrorCode,
    },
    /// `0x85` reader to cart: the reader's view of a payment.
    StatusReply(StatusReply),
}

impl Message {
    /// The message's name in the spec, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "HELLO",
            Message::StartPayment(_) => "START_PAYMENT",
            Message::Cancel { .. } => "CANCEL",
            Message::Status { .. } => "STATUS",
            Message::Outcome { .. } => "OUTCOME",
            Message::HelloReply(_) => "HELLO_REPLY",
            Message::Event { .. } => "EVENT",
            Message::CardRead(_) => "CARD_READ",
            Message::PaymentError { .. } => "PAYMENT_ERROR",
            Message::StatusReply(_) => "STATUS_REPLY",
        }
    }
}

#[cfg(test)]
mod masked_pan_tests {
    use super::MaskedPan;

    #[test]
    fn only_last_four_optionally_first_six() {
        for ok in [
            "411111******1111",
            "************1111",
            "378282*****0005",
            "555555**4444",
            "411111*********1111",
        ] {
            assert!(MaskedPan::new(ok).is_some(), "{ok}");
        }
        for bad in [
            "4111111111111111",       // a full PAN
            "4111********1111",       // first four: not a masked form
            "4111111*****1111",       // first seven
            "411111******11111",      // last five
            "411111*****1*1111",      // a digit in the middle
            "41111*******1111",       // first five
            "************111",        // last three
            "****1111",               // too short
            "411111******111a",       // not a digit
            "411111************1111", // too long (22)
            "",
        ] {
            assert!(MaskedPan::new(bad).is_none(), "{bad}");
        }
    }
}
