//! Barcode scanners: the [`Scanner`] trait, its drivers and the decoder.
//!
//! A scanner driver turns bytes (a serial line) or key events (a HID
//! keyboard-wedge scanner) into lines, and the sans-IO [`Decoder`] turns
//! each line into a typed [`ScanContent`]: a product, a non-product code the
//! cart acts on (provisioning QR code, staff badge), or a rejection with a
//! reason the UI can show. The daemon runs each scanner on its own thread,
//! calling [`Scanner::next_scan`] in a loop.
//!
//! # Layout
//! - [`check`]: GS1 check digit and price/measure verifier digits.
//! - [`gtin`]: the GTIN-14 type, EAN/UPC forms, UPC-E expansion, add-ons.
//! - [`gs1`]: GS1 element strings: AIs, lengths, dates, separators, pairing rules.
//! - [`variable`]: in-store variable-measure codes, layout per market.
//! - [`addon`]: joins an add-on sent as its own packet to its main code.
//! - [`aim`]: AIM symbology identifiers and the [`Symbology`] enum.
//! - [`nonproduct`]: `WIFI:` provisioning codes and staff badges.
//! - [`decode`]: line in, typed content out.
//! - [`line`](mod@line): the sans-IO line framer (terminators, over-long lines, resync).
//! - [`serial`]: the serial scanner driver (serialport).
//! - [`keymap`]: evdev key events to characters, a pure state machine.
//! - [`wedge`]: the HID keyboard-wedge driver (evdev, grab, reopen).
//! - [`sim`]: the scanner simulator that writes scans to a serial line.
//! - [`channel`]: a scanner fed through a channel, for the demo and tests
//!   of the code that consumes scans.
//! - [`reject`]: the rejection reasons.

pub mod addon;
pub mod aim;
pub mod channel;
pub mod check;
pub mod decode;
pub mod gs1;
pub mod gtin;
pub mod keymap;
pub mod line;
pub mod nonproduct;
pub mod reject;
pub mod serial;
pub mod sim;
mod state;
pub mod variable;
pub mod wedge;

use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

pub use addon::{AddOnConfig, AddOnJoiner};
pub use aim::{AimId, Symbology};
pub use channel::{ChannelScanner, ScanFeeder};
pub use decode::{Decoder, DecoderConfig};
pub use gs1::ElementString;
pub use gtin::{AddOn, Gtin};
pub use nonproduct::{StaffBadge, WifiCredentials, WifiSecurity};
pub use reject::{Gs1Error, RejectReason};
pub use serial::{SerialScanner, SerialScannerConfig};
pub use state::{Backoff, BackoffConfig, DeviceState, StateHandle};
pub use variable::{Measure, VariableMeasure, VariableMeasureConfig};
pub use wedge::{WedgeScanner, WedgeScannerConfig};

/// One scan, stamped when its terminator arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Wall-clock time of the terminator (for records and telemetry).
    pub at: SystemTime,
    /// Monotonic time of the terminator (for latency and ordering).
    pub monotonic: Instant,
    /// What was scanned.
    pub content: ScanContent,
}

/// What a scan turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanContent {
    /// A trade item to put in the cart.
    Product(Product),
    /// A code the cart acts on that is not a product.
    NonProduct(NonProduct),
    /// A code refused, with the reason the UI shows.
    Rejected(Rejection),
}

/// A product code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// The symbology, from the AIM identifier or inferred.
    pub symbology: Symbology,
    /// The AIM identifier the scanner sent, if any.
    pub aim: Option<AimId>,
    /// The data as scanned (AIM identifier and terminator removed).
    pub raw: String,
    /// The GTIN-14 that identifies the item (for a variable-measure code,
    /// the code as scanned; see [`VariableMeasure::lookup_gtin`]).
    pub gtin: Gtin,
    /// Another reading of the same digits, when they are valid as two
    /// symbologies (8 digits without AIM identifier: UPC-E and EAN-8). The
    /// catalog decides: the item that exists is the one scanned.
    pub alternative: Option<Gtin>,
    /// The parsed content.
    pub content: ProductContent,
}

/// The parsed content of a product code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductContent {
    /// An EAN/UPC/ITF-14 code: the GTIN, maybe an add-on.
    Retail {
        /// The 2- or 5-digit add-on, when the scanner read one.
        add_on: Option<AddOn>,
    },
    /// An in-store code with a price or weight.
    VariableMeasure(VariableMeasure),
    /// A GS1 element string (GS1-128, DataBar, GS1 DataMatrix/QR).
    Gs1(ElementString),
}

/// A code that is not a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonProduct {
    /// A provisioning QR code with network settings.
    Wifi(WifiCredentials),
    /// A staff badge.
    StaffBadge(StaffBadge),
}

/// A refused scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why, for the UI.
    pub reason: RejectReason,
    /// The symbology named by the AIM identifier, if one was sent.
    pub symbology: Option<Symbology>,
    /// The start of the data, printable characters only, for a technician;
    /// `None` when there is no data kept (over-long lines, unmapped keys)
    /// and for a `WIFI:` code (it may hold a password).
    pub excerpt: Option<String>,
}

impl Rejection {
    /// The longest excerpt kept, in characters.
    pub const EXCERPT_LEN: usize = 48;

    /// A rejection with a printable excerpt of `data`.
    pub fn new(reason: RejectReason, symbology: Option<Symbology>, data: &[u8]) -> Self {
        let excerpt = (!data.is_empty() && !data.starts_with(b"WIFI:")).then(|| {
            String::from_utf8_lossy(data)
                .chars()
                .take(Self::EXCERPT_LEN)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect()
        });
        Self {
            reason,
            symbology,
            excerpt,
        }
    }
}

/// A scanner driver's failure to go on. Bad scans are not errors (they are
/// [`ScanContent::Rejected`]), and a device that disappears is reopened
/// with backoff inside the driver; only these reach the caller.
#[derive(Debug, Error)]
pub enum ScannerError {
    /// The device stayed unreachable through the whole reopen budget. The
    /// daemon reports a device fault and stops this scanner's thread.
    #[error("scanner {device} is gone after {attempts} reopen attempts")]
    Gone {
        /// The configured device path.
        device: String,
        /// Reopen attempts made.
        attempts: u32,
    },
    /// A setting that cannot work. The daemon refuses to start with it.
    #[error("scanner config {key}: {problem}")]
    Config {
        /// The config key.
        key: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A barcode scanner as the daemon sees it. Blocking by design: each
/// scanner gets its own thread, which calls `next_scan` in a loop and
/// forwards the scans.
pub trait Scanner: Send {
    /// Waits up to `timeout` for the next scan. `Ok(None)` when none came;
    /// while the device is away the driver reopens it with backoff inside
    /// this call and reports it through [`Scanner::state`].
    fn next_scan(&mut self, timeout: Duration) -> Result<Option<Scan>, ScannerError>;

    /// The device's connection state now.
    fn state(&self) -> DeviceState;

    /// A handle other threads (the UI) can read the state through.
    fn state_handle(&self) -> StateHandle;
}
