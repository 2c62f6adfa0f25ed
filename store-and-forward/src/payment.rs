//! Payment attempts: the idempotency key, the card-read result and the
//! persisted lifecycle state machine.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::money::Money;

/// The idempotency key of one payment attempt (a UUIDv7: time-ordered).
///
/// Created when the shopper taps Pay; the online request, the offline
/// approval, the stored record and the forwarded record all carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentKey(pub uuid::Uuid);

impl PaymentKey {
    /// A new time-ordered key.
    pub fn new() -> Self {
        PaymentKey(uuid::Uuid::now_v7())
    }

    /// Parses the hyphenated form.
    pub fn parse(s: &str) -> Result<Self, uuid::Error> {
        uuid::Uuid::parse_str(s).map(PaymentKey)
    }
}

impl Default for PaymentKey {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for PaymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// How the card was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryMode {
    /// Chip inserted.
    Chip,
    /// Tapped.
    Contactless,
    /// Magnetic stripe fallback.
    Swipe,
}

impl EntryMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EntryMode::Chip => "chip",
            EntryMode::Contactless => "contactless",
            EntryMode::Swipe => "swipe",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "chip" => Some(EntryMode::Chip),
            "contactless" => Some(EntryMode::Contactless),
            "swipe" => Some(EntryMode::Swipe),
            _ => None,
        }
    }
}

/// What the card reader hands the cart for one payment. The cart never sees a
/// card number: it gets a masked PAN, a fingerprint and data it cannot read.
///
/// The EMV data and the encrypted blob are sealed with the ledger's data key
/// before they touch disk, and zeroized from memory on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct CardRead {
    /// Masked PAN as printed on receipts, e.g. `411111******1111`.
    pub masked_pan: String,
    /// Keyed hash of the card computed by the reader: stable per card, used
    /// for velocity limits and the deny-list.
    pub fingerprint: Vec<u8>,
    /// EMV data (TLV) the processor needs; may contain track data.
    pub emv_data: Vec<u8>,
    /// Card data encrypted by the reader to the processor's key.
    pub encrypted_blob: Vec<u8>,
    /// How the card was presented.
    #[zeroize(skip)]
    pub entry_mode: EntryMode,
}

impl fmt::Debug for CardRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardRead")
            .field("masked_pan", &self.masked_pan)
            .field("fingerprint", &hex_prefix(&self.fingerprint))
            .field(
                "emv_data",
                &format_args!("<{} bytes redacted>", self.emv_data.len()),
            )
            .field(
                "encrypted_blob",
                &format_args!("<{} bytes>", self.encrypted_blob.len()),
            )
            .field("entry_mode", &self.entry_mode)
            .finish()
    }
}

pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 4 {
        s.push('…');
    }
    s
}

/// A payment attempt as the checkout creates it, with the card-read result.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// Idempotency key, created when the shopper tapped Pay.
    pub key: PaymentKey,
    /// The amount to charge.
    pub amount: Money,
    /// The merchant or the basket asks for online authorization only.
    pub online_required: bool,
    /// What the reader returned.
    pub card: CardRead,
}

/// The lifecycle of a payment attempt, persisted in the ledger. The
/// transitions are the table in [`crate::lifecycle`] ([`PaymentState::on`]).
///
/// ```text
///  CardRead ──► OnlineApproved / OnlineDeclined                    (terminal)
///     │    ──► OfflineApproved ──► Forwarded ──► Confirmed         (terminal)
///     │               └────────────────┴────► DeclinedAfterForward (terminal)
///     │    ──► OfflineDeclined / Cancelled / Failed
///     │               └─(late approval)─► ReversalPending ──► Reversed (terminal)
///     └─(restart)─► InDoubt ──(inquiry: approved)─► ReversalPending
///                          ──(inquiry: unknown)──► Cancelled
///                          ──(inquiry: declined)─► OnlineDeclined
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// The attempt and the card-read result are committed; no decision yet.
    CardRead,
    /// The backend approved it online.
    OnlineApproved,
    /// The backend declined it online.
    OnlineDeclined,
    /// Approved by the offline policy; to be forwarded.
    OfflineApproved,
    /// Declined by the offline policy (reasons recorded).
    OfflineDeclined,
    /// Cancelled by the shopper or the reader before a decision.
    Cancelled,
    /// Failed before a decision (reader fault, or the backend never saw an
    /// in-doubt attempt).
    Failed,
    /// The cart stopped between the attempt's commit and its decision; resolved
    /// by asking the backend with the same key.
    InDoubt,
    /// An offline approval handed to the broker; the backend's answer is due.
    Forwarded,
    /// The backend authorized a forwarded payment.
    Confirmed,
    /// Approved offline, then declined by the backend: a merchant loss,
    /// recorded and reported.
    DeclinedAfterForward,
    /// The backend approved a payment whose approval the shopper was never
    /// shown (a late online approval after an offline decline or a cancel,
    /// an in-doubt attempt approved there): a reversal is queued.
    ReversalPending,
    /// The backend answered the reversal: nothing stays charged.
    Reversed,
}

impl PaymentState {
    /// Every state, for tests and reports.
    pub const ALL: [PaymentState; 13] = [
        PaymentState::CardRead,
        PaymentState::OnlineApproved,
        PaymentState::OnlineDeclined,
        PaymentState::OfflineApproved,
        PaymentState::OfflineDeclined,
        PaymentState::Cancelled,
        PaymentState::Failed,
        PaymentState::InDoubt,
        PaymentState::Forwarded,
        PaymentState::Confirmed,
        PaymentState::DeclinedAfterForward,
        PaymentState::ReversalPending,
        PaymentState::Reversed,
    ];

    /// The stable name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::CardRead => "card_read",
            PaymentState::OnlineApproved => "online_approved",
            PaymentState::OnlineDeclined => "online_declined",
            PaymentState::OfflineApproved => "offline_approved",
            PaymentState::OfflineDeclined => "offline_declined",
            PaymentState::Cancelled => "cancelled",
            PaymentState::Failed => "failed",
            PaymentState::InDoubt => "in_doubt",
            PaymentState::Forwarded => "forwarded",
            PaymentState::Confirmed => "confirmed",
            PaymentState::DeclinedAfterForward => "declined_after_forward",
            PaymentState::ReversalPending => "reversal_pending",
            PaymentState::Reversed => "reversed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the shopper was told "approved" in this state (or a state it
    /// can only have reached through an approval).
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            PaymentState::OnlineApproved
                | PaymentState::OfflineApproved
                | PaymentState::Forwarded
                | PaymentState::Confirmed
                | PaymentState::DeclinedAfterForward
        )
    }

    /// Offline exposure: approved offline and not yet answered by the
    /// backend. A reversal-pending payment is not: it was never an offline
    /// approval (the table has no path from one), and what it holds is the
    /// shopper's money to give back, not the merchant's risk
    /// (docs/ledger.md, "Offline exposure").
    pub fn is_outstanding_offline(self) -> bool {
        matches!(
            self,
            PaymentState::OfflineApproved | PaymentState::Forwarded
        )
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The backend's answer about one payment, online or after forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum BackendOutcome {
    /// Authorized by the processor.
    Approved {
        /// The processor's authorization code or reference.
        reference: String,
    },
    /// Declined by the processor.
    Declined {
        /// The processor's reason, for the receipt and the report.
        reason: String,
    },
    /// The backend has no record of this key (only meaningful for an
    /// in-doubt attempt: nothing was charged).
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in PaymentState::ALL {
            assert_eq!(PaymentState::parse(st.as_str()), Some(st));
        }
        assert_eq!(PaymentState::parse("bogus"), None);
    }

    #[test]
    fn debug_redacts_card_data() {
        let card = CardRead {
            masked_pan: "411111******1111".into(),
            fingerprint: vec![1, 2, 3, 4, 5],
            emv_data: b"5A084111111111111111".to_vec(),
            encrypted_blob: vec![9; 64],
            entry_mode: EntryMode::Chip,
        };
        let s = format!("{card:?}");
        assert!(!s.contains("4111111111111111"), "{s}");
        assert!(s.contains("411111******1111"));
    }
}
