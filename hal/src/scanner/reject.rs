//! Why a scan was refused, in terms the checkout UI can show.
//!
//! These are not errors of the program: a rejected scan is a normal outcome
//! ([`ScanContent::Rejected`](super::ScanContent::Rejected)); the UI shows
//! the reason's text and the shopper scans again.

use serde::Serialize;
use thiserror::Error;

/// The reason a scanned code was refused. Every variant is shown to the
/// shopper (its `Display` text) and counted in telemetry; none is fatal.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    /// Nothing between two terminators; dropped silently by the drivers.
    #[error("empty scan")]
    Empty,
    /// The line grew past the configured maximum before a terminator came;
    /// the rest up to the next terminator is discarded (resynchronisation).
    #[error("scan too long (over {max} bytes)")]
    TooLong {
        /// The configured maximum line length in bytes.
        max: usize,
    },
    /// The bytes are not UTF-8 (line noise, wrong baud rate or parity).
    #[error("unreadable scan (not UTF-8)")]
    InvalidUtf8,
    /// A control character other than the GS1 separator (line noise).
    #[error("unreadable scan (control byte 0x{byte:02x})")]
    ControlCharacter {
        /// The offending byte.
        byte: u8,
    },
    /// A key the keyboard-wedge keymap does not know.
    #[error("unreadable scan (unknown key {code})")]
    UnmappedKey {
        /// The evdev key code.
        code: u16,
    },
    /// Digits expected, something else found.
    #[error("not a number where digits were expected")]
    NotNumeric,
    /// A length this symbology cannot have.
    #[error("wrong number of digits ({len})")]
    BadLength {
        /// The length that was found.
        len: usize,
    },
    /// The check digit does not match: a misread or a damaged label.
    #[error("check digit does not match: please scan again")]
    BadCheckDigit,
    /// A UPC-E code whose number system is not 0 or 1.
    #[error("UPC-E code with an invalid number system")]
    BadUpcENumberSystem,
    /// The price or weight verifier digit of an in-store code is wrong.
    #[error("price check digit does not match: please scan again")]
    BadPriceCheckDigit,
    /// An in-store code (prefix 20-29) for which this market has no layout.
    #[error("in-store code with prefix {prefix} is not configured for this store")]
    NoVariableMeasureLayout {
        /// The two-digit prefix.
        prefix: String,
    },
    /// A GS1 element string that breaks a GS1 rule.
    #[error("invalid GS1 code: {0}")]
    Gs1(#[from] Gs1Error),
    /// A valid GS1 element string that names no trade item (no AI 01 or 02),
    /// such as a pallet's SSCC label.
    #[error("this code does not identify a product")]
    NoGtin,
    /// A `WIFI:` provisioning code that could not be parsed.
    #[error("invalid Wi-Fi provisioning code ({problem})")]
    BadWifi {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A coupon (GS1 prefixes 981-984 and 99, UPC number system 5, or a
    /// GS1 coupon code, AI 255): redeemed at a till, not sold.
    #[error("coupons are redeemed at a till")]
    Coupon,
    /// A refund receipt (GS1 prefix 980), as printed by bottle-return
    /// machines: cashed at a till, not sold.
    #[error("refund receipts are cashed at a till")]
    RefundReceipt,
    /// A GTIN with indicator digit 9 (a variable-measure trade item) read
    /// without its measure.
    #[error("this code needs its weight or count: please weigh it at the scale")]
    NeedsMeasure,
    /// A code that is neither a product, a provisioning code nor a badge.
    #[error("this code is not a product")]
    Unrecognised,
}

/// A GS1 element string rule that was broken. Carried inside
/// [`RejectReason::Gs1`]; the AI is named so a technician can see which
/// field of a label is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Gs1Error {
    /// No element at all.
    #[error("no data")]
    Empty,
    /// The digits at this position are not an Application Identifier we know.
    #[error("unknown application identifier at position {at}")]
    UnknownAi {
        /// Byte offset in the element string.
        at: usize,
    },
    /// The data ends before the field's fixed length.
    #[error("AI ({ai}) is too short")]
    TooShort {
        /// The Application Identifier.
        ai: String,
    },
    /// A variable-length field longer than its maximum (often a missing
    /// FNC1/GS separator).
    #[error("AI ({ai}) is too long (missing separator?)")]
    TooLong {
        /// The Application Identifier.
        ai: String,
    },
    /// A character outside the field's character set.
    #[error("AI ({ai}) holds a character it may not")]
    BadCharacter {
        /// The Application Identifier.
        ai: String,
    },
    /// The field's check digit is wrong.
    #[error("AI ({ai}) check digit does not match")]
    BadCheckDigit {
        /// The Application Identifier.
        ai: String,
    },
    /// A date field that is not a valid YYMMDD date.
    #[error("AI ({ai}) is not a valid date")]
    BadDate {
        /// The Application Identifier.
        ai: String,
    },
    /// The same AI twice with different values.
    #[error("AI ({ai}) appears twice with different values")]
    Duplicate {
        /// The Application Identifier.
        ai: String,
    },
    /// Two AIs that GS1 forbids in the same item's data.
    #[error("AI ({a}) may not appear with AI ({b})")]
    InvalidPair {
        /// The first AI.
        a: String,
        /// The AI it may not appear with.
        b: String,
    },
    /// A GTIN with indicator digit 9 (a variable-measure trade item) without
    /// the AI that says how much (net weight, count, ...).
    #[error("AI (01) with indicator digit 9 needs a measure")]
    NoMeasure,
    /// An AI used without one of the AIs it requires.
    #[error("AI ({ai}) requires one of {requires}")]
    MissingAssociation {
        /// The AI that is present.
        ai: String,
        /// The AIs of which one must be present, e.g. `(01) or (02)`.
        requires: String,
    },
}
