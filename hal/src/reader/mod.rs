//! The card reader: its serial protocol, the cart-side driver and the
//! simulator. The protocol is ours and is specified in
//! `docs/reader-protocol.md`; this module implements both ends from it.
//!
//! # Layout
//! - [`frame`]: framing (STX, length, SEQ, CRC-16) and the resyncing decoder.
//! - [`link`]: the sans-IO link state machine (ACK/NAK, retransmission,
//!   duplicate detection).
//! - [`message`] and [`wire`]: the messages and their byte encoding.
//! - [`card`]: Luhn, PAN masking and the keyed card fingerprint (reader side).
//! - [`tlv`]: BER-TLV walker; the driver refuses EMV data carrying card data
//!   in clear.
//! - [`carddata`]: card-data encryption to the processor's key (and its
//!   decryption, for the backend emulator).
//! - [`fixtures`]: the TEST ONLY keys and test-card table under `tests/fixtures`.
//! - [`driver`]: [`SerialReader`], the cart's driver: the I/O loop over a
//!   serial port, implementing [`PaymentReader`].
//! - [`sim`]: the reader simulator (library; the `reader-sim` binary wraps it).
//!
//! # Threading
//! [`PaymentReader`] is blocking: each call drives the serial line until its
//! answer arrives or its timeout passes. The daemon owns the reader on one
//! thread (the serial fd has one owner) and talks to it through a channel.
//!
//! # Card data
//! Nothing the cart side returns holds a PAN: a card read gives a masked PAN,
//! a keyed fingerprint, EMV data without PAN or track data, and an opaque blob
//! only the processor can open. Cart-side `Debug` output redacts the rest.

pub mod card;
pub mod carddata;
pub mod driver;
pub mod fixtures;
pub mod frame;
pub mod link;
pub mod message;
pub mod sim;
pub mod tlv;
pub mod wire;

use std::time::Duration;

use uuid::Uuid;

pub use driver::{DriverConfig, SerialReader};
pub use message::{
    CardReadResult, Currency, DeclineReason, Outcome, PaymentErrorCode, PaymentRequest, ReaderInfo,
    ReaderPaymentState, StatusReply, UiEvent,
};

/// Errors of the cart-side reader.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The reader is gone (cable pulled, port closed, hang-up): the daemon
    /// marks the payment in doubt, shows "reader disconnected" and reopens the
    /// port with backoff; after reconnecting it asks STATUS for the attempt's key.
    #[error("card reader disconnected")]
    Disconnected,
    /// Another I/O error on the port: handled like a disconnection.
    #[error("card reader I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame went unacknowledged after every retry: the reader is not
    /// answering; the daemon handles it like a disconnection.
    #[error("card reader did not acknowledge frame {seq} after {tries} tries")]
    NoAck {
        /// The frame's SEQ.
        seq: u8,
        /// Transmissions made.
        tries: u8,
    },
    /// No expected answer within the caller's timeout (the link worked): the
    /// caller retries or asks STATUS.
    #[error("card reader did not answer in time")]
    Timeout,
    /// The reader speaks no protocol version we speak: the reader is taken out
    /// of service and the fault reported.
    #[error("card reader speaks protocol {reader}, we speak {ours}")]
    Incompatible {
        /// The reader's answer (0 = none in common).
        reader: u8,
        /// Ours.
        ours: u8,
    },
    /// A message could not be encoded (a field too long): a bug on our side,
    /// the call is refused.
    #[error("message could not be encoded: {0}")]
    Encode(#[from] wire::WireError),
}

/// What happens during a payment, in order, as the cart sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    /// A prompt to mirror on the cart's screen.
    Ui {
        /// The payment's key.
        key: Uuid,
        /// The prompt.
        event: UiEvent,
    },
    /// The card was read: commit it with the attempt, then authorize.
    CardRead(CardReadResult),
    /// The payment ended without a card.
    Failed {
        /// The payment's key.
        key: Uuid,
        /// Why.
        code: PaymentErrorCode,
    },
    /// The reader's view of a payment (after CANCEL of a payment that had no
    /// card read in progress, or a repeated START).
    Status(StatusReply),
}

/// What the driver knows, for the ledger to resolve an interrupted attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverSnapshot {
    /// The key of the payment last started through this driver.
    pub current_key: Option<Uuid>,
    /// The last state learned about it (from events or STATUS).
    pub last_state: Option<ReaderPaymentState>,
    /// Link sequence numbers and counters.
    pub link: link::LinkStats,
    /// What the reader said in HELLO_REPLY, once it did.
    pub reader: Option<ReaderInfo>,
}

/// The cart's side of the card reader. Blocking; one owner thread.
pub trait PaymentReader: Send {
    /// Opens a session (HELLO, sent as SYNC): the reader drops anything it was
    /// still sending to a previous session. Returns what the reader is. The
    /// other calls open the session themselves if it is not open yet.
    fn hello(&mut self) -> Result<ReaderInfo, ReaderError>;

    /// Starts collecting a card for `request`. Returns once the reader has
    /// acknowledged the request; the rest comes through [`Self::next_event`].
    /// Starting again with the same key never reads a second card: the reader
    /// repeats the result it already has.
    fn start_payment(&mut self, request: &PaymentRequest) -> Result<(), ReaderError>;

    /// The next event, waiting at most `timeout`; `None` when nothing came.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<PaymentEvent>, ReaderError>;

    /// Asks the reader to abandon the payment `key`. The answer comes as an
    /// event: `Failed { code: Cancelled }`, or `Status` when the payment was
    /// already past the card read (or unknown).
    fn cancel(&mut self, key: Uuid) -> Result<(), ReaderError>;

    /// The reader's view of payment `key`, waiting at most `timeout`. Other
    /// events arriving meanwhile are kept for [`Self::next_event`].
    fn status(&mut self, key: Uuid, timeout: Duration) -> Result<StatusReply, ReaderError>;

    /// Tells the reader the decision, to show. Returns once acknowledged.
    fn send_outcome(&mut self, key: Uuid, outcome: Outcome) -> Result<(), ReaderError>;

    /// Sequence numbers, the current key and its last known state.
    fn snapshot(&self) -> DriverSnapshot;
}
