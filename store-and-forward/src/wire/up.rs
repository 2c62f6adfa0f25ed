//! Cart-to-cloud message bodies.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{Kind, WireError, body};
use crate::ledger::{OutboxDepth, PaymentForward};
use crate::money::Money;
use crate::payment::EntryMode;
use crate::policy::Exposure;
use crate::telemetry::TelemetryEvent;
use crate::time::Timestamp;

/// What the card reader returned, for the processor. The PAN is only inside
/// `blob`, encrypted by the reader to the processor's key; `emv` may carry
/// track data and is only ever sent over TLS.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardData {
    /// Masked PAN.
    pub masked_pan: String,
    /// The reader's card fingerprint.
    #[serde(with = "super::b64")]
    pub fingerprint: Vec<u8>,
    /// Entry mode.
    pub entry_mode: EntryMode,
    /// EMV data (TLV).
    #[serde(with = "super::b64")]
    pub emv: Vec<u8>,
    /// The reader's encrypted card data.
    #[serde(with = "super::b64")]
    pub blob: Vec<u8>,
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardData")
            .field("masked_pan", &self.masked_pan)
            .field("entry_mode", &self.entry_mode)
            .field("emv", &format_args!("<{} bytes>", self.emv.len()))
            .field("blob", &format_args!("<{} bytes>", self.blob.len()))
            .finish_non_exhaustive()
    }
}

/// Online authorization request. Envelope id: the payment key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// Amount.
    pub amount: Money,
    /// Card data.
    pub card: CardData,
    /// When the attempt was committed.
    pub created: Timestamp,
}

/// An offline approval to authorize. Envelope id: the payment key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// Amount.
    pub amount: Money,
    /// Card data.
    pub card: CardData,
    /// When the attempt was committed.
    pub created: Timestamp,
    /// When the cart approved it offline.
    pub approved_offline_at: Option<Timestamp>,
    /// The ledger's counter value for that approval.
    pub counter: Option<u64>,
}

/// What does the backend know of this in-doubt key? Envelope id: the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inquiry {
    /// Amount.
    pub amount: Money,
    /// When the attempt was committed.
    pub created: Timestamp,
}

/// Give back a payment: the backend approved it but the shopper was never
/// shown it approved (a late online approval after an offline decline or a
/// cancel; an in-doubt attempt the backend had approved). Envelope id: the
/// payment key; the backend reverses a key once and answers a repeat
/// `already_reversed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    /// Amount (as authorized).
    pub amount: Money,
    /// When the attempt was committed.
    pub created: Timestamp,
}

impl From<&PaymentForward> for CardData {
    fn from(p: &PaymentForward) -> Self {
        CardData {
            masked_pan: p.masked_pan.clone(),
            fingerprint: p.fingerprint.clone(),
            entry_mode: p.entry_mode,
            emv: p.emv_data.to_vec(),
            blob: p.encrypted_blob.clone(),
        }
    }
}

/// A batch of telemetry events. Envelope id: `{ledger}:{first sequence}`.
/// The backend deduplicates events by (cart, ledger, sequence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryBatch {
    /// The ledger's id: sequences are unique within it.
    pub ledger: String,
    /// Inclusive ranges of event sequences, in order, matching `events`.
    pub seqs: Vec<(i64, i64)>,
    /// The events (kept raw: an event type newer than the reader is kept,
    /// not rejected).
    pub events: Vec<Value>,
}

impl TelemetryBatch {
    /// Every event's sequence, in order.
    pub fn sequences(&self) -> impl Iterator<Item = i64> + '_ {
        self.seqs.iter().flat_map(|(a, b)| *a..=*b)
    }

    /// The events this code knows, with their sequence.
    pub fn known_events(&self) -> Vec<(i64, TelemetryEvent)> {
        self.sequences()
            .zip(&self.events)
            .filter_map(|(s, v)| serde_json::from_value(v.clone()).ok().map(|e| (s, e)))
            .collect()
    }
}

/// The cart's status. Envelope id: a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartStatus {
    /// Firmware version.
    pub firmware: String,
    /// Ledger binding (`bound`, `rolled_back`, `counter_mismatch`).
    pub integrity: String,
    /// Outstanding offline exposure.
    pub exposure: Exposure,
    /// Outbox depth per class.
    pub outbox: Vec<OutboxDepth>,
    /// Versions in force: limits, deny-list, catalog, staff list.
    pub versions: Versions,
    /// Telemetry dropped over quota so far.
    pub telemetry_dropped: u64,
}

/// Versions of the downstream data the cart holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Versions {
    /// Offline limits.
    pub limits: u64,
    /// Deny-list.
    pub deny_list: u64,
    /// Catalog.
    pub catalog: u64,
    /// Staff list (age checks); left out while 0 (no list, or older
    /// firmware), so older statuses read the same.
    #[serde(skip_serializing_if = "is_zero")]
    pub staff_list: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// How the cart handled a downstream message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    /// Applied.
    Applied,
    /// Already had it, or a newer version: nothing changed.
    Ignored,
    /// Could not be applied (see `reason`).
    Rejected,
}

/// Acknowledgement of a downstream message. Envelope id: `{type}:{id}` of
/// the acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledged message's type.
    pub of: Kind,
    /// Its envelope id.
    pub of_id: String,
    /// What the cart did.
    pub result: AckResult,
    /// The version in force afterwards, for versioned streams.
    pub current_version: Option<u64>,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// Several acknowledgements in one message (one billable unit instead of
/// one per ack). Envelope id: `{type}:{id}` of the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckBatch {
    /// The acks, in the order the cart made them.
    pub acks: Vec<Ack>,
}

/// The first message a cart sends with its device certificate, after
/// fleet provisioning. Envelope id: the certificate id (so a resend after
/// a crash is recognised). The backend deletes the listed certificates
/// when they are not active (issued by create-from-csr but never
/// registered, a crash between the two calls) and every other certificate
/// still pending activation for this cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningComplete {
    /// The certificate the cart now uses (AWS IoT certificate id).
    pub certificate_id: String,
    /// Certificates issued to the cart that it never registered or no
    /// longer uses: please delete them.
    #[serde(default)]
    pub orphans: Vec<String>,
    /// create-from-csr requests whose answer the cart never recorded (a
    /// crash or a lost link while waiting): their certificates, if any
    /// were issued, are unknown to the cart.
    #[serde(default)]
    pub unanswered_requests: u32,
}

/// A certificate rotation finished: the cart works with the new
/// certificate and has evicted the old key. Envelope id: the new
/// certificate id. The backend deactivates `old_certificate_id` and
/// deletes the orphans, as for [`ProvisioningComplete`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationComplete {
    /// The certificate now in use.
    pub certificate_id: String,
    /// The certificate it replaces (to deactivate).
    pub old_certificate_id: String,
    /// The backend's rotation request id, when it asked for it.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Why: `lifetime` (the configured fraction of the validity passed),
    /// `request` (the backend asked) or `manual`.
    pub reason: String,
    /// The new certificate's end of validity.
    pub not_after: Timestamp,
    /// Certificates to delete, as in [`ProvisioningComplete`].
    #[serde(default)]
    pub orphans: Vec<String>,
    /// Unanswered create-from-csr requests, as in [`ProvisioningComplete`].
    #[serde(default)]
    pub unanswered_requests: u32,
}

/// A decoded cart-to-cloud message.
#[derive(Debug, Clone, PartialEq)]
pub enum Up {
    /// Online authorization request.
    AuthRequest(AuthRequest),
    /// Offline approval forward.
    PaymentForward(Forward),
    /// In-doubt inquiry.
    PaymentInquiry(Inquiry),
    /// Reversal of an approval never shown.
    PaymentReversal(Reversal),
    /// Telemetry.
    TelemetryBatch(TelemetryBatch),
    /// Status.
    CartStatus(Box<CartStatus>),
    /// Acknowledgement.
    Ack(Ack),
    /// Acknowledgements.
    AckBatch(AckBatch),
    /// Provisioned: the first publish with the device certificate.
    ProvisioningComplete(ProvisioningComplete),
    /// A certificate rotation finished.
    RotationComplete(RotationComplete),
    /// Send a stream whole again.
    ResyncRequest(ResyncRequest),
}

/// The cart asks for a versioned stream whole: a delta's base did not
/// match the version the cart holds (lost or out of order), so the delta
/// was rejected (`base_mismatch`). The backend answers with the stream
/// whole (a catalog without a base version, a deny-list with `replace`) at
/// its newest version. Envelope id: `{of}:{have_version}`, so a repeated
/// request for the same gap is the same message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncRequest {
    /// The stream: `catalog_delta` or `deny_list_update`.
    pub of: Kind,
    /// The version the cart holds.
    pub have_version: u64,
    /// The version of the delta that did not fit.
    pub rejected_version: u64,
}

impl Up {
    /// Its type.
    pub fn kind(&self) -> Kind {
        match self {
            Up::AuthRequest(_) => Kind::AuthRequest,
            Up::PaymentForward(_) => Kind::PaymentForward,
            Up::PaymentInquiry(_) => Kind::PaymentInquiry,
            Up::PaymentReversal(_) => Kind::PaymentReversal,
            Up::TelemetryBatch(_) => Kind::TelemetryBatch,
            Up::CartStatus(_) => Kind::CartStatus,
            Up::Ack(_) => Kind::Ack,
            Up::AckBatch(_) => Kind::AckBatch,
            Up::ProvisioningComplete(_) => Kind::ProvisioningComplete,
            Up::RotationComplete(_) => Kind::RotationComplete,
            Up::ResyncRequest(_) => Kind::ResyncRequest,
        }
    }

    pub(crate) fn from_body(kind: Kind, v: Value) -> Result<Up, WireError> {
        Ok(match kind {
            Kind::AuthRequest => Up::AuthRequest(body(kind, v)?),
            Kind::PaymentForward => Up::PaymentForward(body(kind, v)?),
            Kind::PaymentInquiry => Up::PaymentInquiry(body(kind, v)?),
            Kind::PaymentReversal => Up::PaymentReversal(body(kind, v)?),
            Kind::TelemetryBatch => Up::TelemetryBatch(body(kind, v)?),
            Kind::CartStatus => Up::CartStatus(Box::new(body(kind, v)?)),
            Kind::Ack => Up::Ack(body(kind, v)?),
            Kind::AckBatch => Up::AckBatch(body(kind, v)?),
            Kind::ProvisioningComplete => Up::ProvisioningComplete(body(kind, v)?),
            Kind::RotationComplete => Up::RotationComplete(body(kind, v)?),
            Kind::ResyncRequest => Up::ResyncRequest(body(kind, v)?),
            other => return Err(WireError::WrongDirection(other)),
        })
    }
}
