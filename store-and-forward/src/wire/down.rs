//! Cloud-to-cart message bodies. Every one is keyed (payment key, request
//! id) or versioned, acknowledged by the cart, and safe to receive twice.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{Kind, WireError, body};
use crate::money::Money;
use crate::payment::BackendOutcome;
use crate::policy::LimitsConfig;
pub use crate::staff::StaffList as StaffListUpdate;
use crate::time::Timestamp;

/// Answer to an online authorization request. Envelope id: the payment key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    /// Approved or declined.
    pub outcome: BackendOutcome,
}

/// Result of a forward (confirmed or declined after forward) or of an
/// inquiry (also `unknown`). Envelope id: the payment key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardResult {
    /// The processor's answer.
    pub outcome: BackendOutcome,
}

/// What the backend did with a reversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalOutcome {
    /// Reversed now: the charge is given back.
    Reversed,
    /// The backend knows no approved payment with this key: nothing was
    /// charged, nothing to give back.
    UnknownPayment,
    /// Reversed before (a repeat): nothing more to do.
    AlreadyReversed,
}

impl ReversalOutcome {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReversalOutcome::Reversed => "reversed",
            ReversalOutcome::UnknownPayment => "unknown_payment",
            ReversalOutcome::AlreadyReversed => "already_reversed",
        }
    }
}

/// Answer to a `payment_reversal`. Envelope id: the payment key. Each of
/// the three results closes the payment as `reversed` on the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalResult {
    /// What the backend did.
    pub result: ReversalOutcome,
}

/// New offline limits. Envelope id: the version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyUpdate {
    /// The limits (validated on arrival; invalid ones are rejected whole).
    pub limits: LimitsConfig,
}

/// Deny-list update. Envelope id: the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyListUpdate {
    /// Version.
    pub version: u64,
    /// The version a delta applies on (absent: any, as before base
    /// versions existed; ignored with `replace`). A delta whose base is
    /// not the version held is rejected (`base_mismatch`) and the cart
    /// asks for the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version: Option<u64>,
    /// Replace the whole list (else apply as a delta).
    pub replace: bool,
    /// Fingerprints to add.
    #[serde(with = "super::b64::list")]
    pub add: Vec<Vec<u8>>,
    /// Fingerprints to remove.
    #[serde(with = "super::b64::list", default)]
    pub remove: Vec<Vec<u8>>,
}

/// One catalog item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// GTIN-14 (shorter codes left-padded with zeros).
    pub gtin: String,
    /// Name shown to the shopper.
    pub name: String,
    /// Price, or price per kilogram when sold by weight.
    pub price: Money,
    /// Tax class (market-specific code).
    pub tax_class: String,
    /// Minimum age to buy it, if restricted.
    #[serde(default)]
    pub min_age: Option<u8>,
    /// Priced per kilogram (variable-measure codes carry the weight).
    #[serde(default)]
    pub sold_by_weight: bool,
}

/// Catalog delta. Envelope id: the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogDelta {
    /// This delta's version.
    pub version: u64,
    /// The version it applies on (none: a full catalog).
    #[serde(default)]
    pub base_version: Option<u64>,
    /// Items added or changed.
    #[serde(default)]
    pub upserts: Vec<CatalogItem>,
    /// GTINs removed.
    #[serde(default)]
    pub removals: Vec<String>,
}

/// Rotate the device certificate. Envelope id: the request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRequest {
    /// Why (compromise, expiry, policy).
    pub reason: String,
    /// Rotate before this time.
    #[serde(default)]
    pub deadline: Option<Timestamp>,
}

/// A decoded cloud-to-cart message.
#[derive(Debug, Clone, PartialEq)]
pub enum Down {
    /// Authorization answer.
    AuthResponse(AuthResponse),
    /// Forward or inquiry result.
    ForwardResult(ForwardResult),
    /// Reversal result.
    ReversalResult(ReversalResult),
    /// Offline limits.
    PolicyUpdate(PolicyUpdate),
    /// Deny-list.
    DenyListUpdate(DenyListUpdate),
    /// Catalog.
    CatalogDelta(CatalogDelta),
    /// Certificate rotation.
    RotationRequest(RotationRequest),
    /// Staff list (age checks).
    StaffListUpdate(StaffListUpdate),
}

impl Down {
    /// Its type.
    pub fn kind(&self) -> Kind {
        match self {
            Down::AuthResponse(_) => Kind::AuthResponse,
            Down::ForwardResult(_) => Kind::ForwardResult,
            Down::ReversalResult(_) => Kind::ReversalResult,
            Down::PolicyUpdate(_) => Kind::PolicyUpdate,
            Down::DenyListUpdate(_) => Kind::DenyListUpdate,
            Down::CatalogDelta(_) => Kind::CatalogDelta,
            Down::RotationRequest(_) => Kind::RotationRequest,
            Down::StaffListUpdate(_) => Kind::StaffListUpdate,
        }
    }

    pub(crate) fn from_body(kind: Kind, v: Value) -> Result<Down, WireError> {
        Ok(match kind {
            Kind::AuthResponse => Down::AuthResponse(body(kind, v)?),
            Kind::ForwardResult => Down::ForwardResult(body(kind, v)?),
            Kind::ReversalResult => Down::ReversalResult(body(kind, v)?),
            Kind::PolicyUpdate => {
                let mut v = v;
                let limits = v.get_mut("limits").map(Value::take).unwrap_or(Value::Null);
                Down::PolicyUpdate(PolicyUpdate {
                    limits: tolerant(kind, limits)?,
                })
            }
            Kind::DenyListUpdate => Down::DenyListUpdate(body(kind, v)?),
            Kind::CatalogDelta => Down::CatalogDelta(body(kind, v)?),
            Kind::RotationRequest => Down::RotationRequest(body(kind, v)?),
            Kind::StaffListUpdate => Down::StaffListUpdate(body(kind, v)?),
            other => return Err(WireError::WrongDirection(other)),
        })
    }
}

/// Decodes a struct that refuses unknown fields in config files, dropping
/// the top-level fields this code does not know (a newer backend may send
/// more).
fn tolerant<T: DeserializeOwned + Serialize + Default>(
    kind: Kind,
    mut v: Value,
) -> Result<T, WireError> {
    let known =
        serde_json::to_value(T::default()).map_err(|source| WireError::Body { kind, source })?;
    if let (Value::Object(map), Value::Object(known)) = (&mut v, &known) {
        map.retain(|k, _| known.contains_key(k));
    }
    body(kind, v)
}
