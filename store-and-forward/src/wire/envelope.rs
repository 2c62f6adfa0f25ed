//! The envelope every message travels in, and its codec.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Down, Up};
use crate::time::Timestamp;

/// The wire's major version. Additive changes (new fields, new kinds) keep
/// it; decoders ignore fields they do not know.
pub const WIRE_VERSION: u32 = 1;

/// Largest message accepted from the network (AWS IoT's limit is 128 KB).
pub const MAX_MESSAGE: usize = 128 * 1024;

/// Largest decompressed message (a guard against compression bombs).
pub const MAX_DECOMPRESSED: usize = 1024 * 1024;

/// zstd's frame magic; a JSON text never starts with it.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Every message type of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Up: online authorization request (id: payment key).
    AuthRequest,
    /// Up: an offline approval forwarded for authorization (id: payment key).
    PaymentForward,
    /// Up: what does the backend know of this in-doubt key (id: payment key).
    PaymentInquiry,
    /// Up: a batch of telemetry events (id: ledger id and first sequence).
    TelemetryBatch,
    /// Up: the cart's status (id: status sequence).
    CartStatus,
    /// Up: acknowledgement of a downstream message (id: the acked id).
    Ack,
    /// Up: several acknowledgements in one message (id: the first ack's id).
    AckBatch,
    /// Up: give back a payment the backend approved but the shopper was
    /// never shown approved (id: payment key).
    PaymentReversal,
    /// Up: the first message with the device certificate after fleet
    /// provisioning (id: the certificate id).
    ProvisioningComplete,
    /// Up: a certificate rotation finished; the old certificate may be
    /// deactivated (id: the new certificate id).
    RotationComplete,
    /// Up: send a versioned stream whole again (a delta did not fit the
    /// version held) (id: `{stream}:{have_version}`).
    ResyncRequest,
    /// Down: answer to an authorization request (id: payment key).
    AuthResponse,
    /// Down: result of a forward or an inquiry (id: payment key).
    ForwardResult,
    /// Down: result of a reversal (id: payment key).
    ReversalResult,
    /// Down: new offline limits (id: version).
    PolicyUpdate,
    /// Down: deny-list update (id: version).
    DenyListUpdate,
    /// Down: catalog delta (id: version).
    CatalogDelta,
    /// Down: rotate the device certificate (id: request id).
    RotationRequest,
    /// Down: the staff list for age checks, whole (id: version).
    StaffListUpdate,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 19] = [
        Kind::AuthRequest,
        Kind::PaymentForward,
        Kind::PaymentInquiry,
        Kind::TelemetryBatch,
        Kind::CartStatus,
        Kind::Ack,
        Kind::AckBatch,
        Kind::ProvisioningComplete,
        Kind::RotationComplete,
        Kind::ResyncRequest,
        Kind::AuthResponse,
        Kind::ForwardResult,
        Kind::PolicyUpdate,
        Kind::DenyListUpdate,
        Kind::CatalogDelta,
        Kind::RotationRequest,
        Kind::StaffListUpdate,
        Kind::PaymentReversal,
        Kind::ReversalResult,
    ];

    /// The name on the wire and in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AuthRequest => "auth_request",
            Kind::PaymentForward => "payment_forward",
            Kind::PaymentInquiry => "payment_inquiry",
            Kind::TelemetryBatch => "telemetry_batch",
            Kind::CartStatus => "cart_status",
            Kind::Ack => "ack",
            Kind::AckBatch => "ack_batch",
            Kind::ProvisioningComplete => "provisioning_complete",
            Kind::RotationComplete => "rotation_complete",
            Kind::ResyncRequest => "resync_request",
            Kind::AuthResponse => "auth_response",
            Kind::ForwardResult => "forward_result",
            Kind::PolicyUpdate => "policy_update",
            Kind::DenyListUpdate => "deny_list_update",
            Kind::CatalogDelta => "catalog_delta",
            Kind::RotationRequest => "rotation_request",
            Kind::StaffListUpdate => "staff_list_update",
            Kind::PaymentReversal => "payment_reversal",
            Kind::ReversalResult => "reversal_result",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Sent by the cart (else by the backend).
    pub fn is_up(self) -> bool {
        matches!(
            self,
            Kind::AuthRequest
                | Kind::PaymentForward
                | Kind::PaymentInquiry
                | Kind::TelemetryBatch
                | Kind::CartStatus
                | Kind::Ack
                | Kind::AckBatch
                | Kind::ProvisioningComplete
                | Kind::RotationComplete
                | Kind::ResyncRequest
                | Kind::PaymentReversal
        )
    }
}

/// The envelope's fields besides the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Wire version.
    pub v: u32,
    /// Message type.
    pub kind: Kind,
    /// The cart it is from or for.
    pub cart: String,
    /// Idempotency key, version or sequence (per kind).
    pub id: String,
    /// When it was written.
    pub ts: Timestamp,
}

/// The envelope as serialized.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Wire version.
    pub v: u32,
    /// Message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Cart id.
    pub cart: String,
    /// Key, version or sequence.
    pub id: String,
    /// Milliseconds since the epoch.
    pub ts: i64,
    /// The body.
    pub body: B,
}

/// A message that cannot be decoded or does not belong here. The receiver
/// logs it, drops it whole (nothing is applied partially) and, for a
/// downstream message it can identify, acknowledges it as rejected.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Larger than [`MAX_MESSAGE`] or, decompressed, [`MAX_DECOMPRESSED`].
    #[error("message of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A zstd frame that does not decompress.
    #[error("compressed message does not decompress: {0}")]
    Decompress(String),
    /// Not a JSON envelope (truncated, garbage).
    #[error("not a valid envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A wire version this code does not speak.
    #[error("unsupported wire version {0} (this cart speaks {WIRE_VERSION})")]
    UnsupportedVersion(u32),
    /// A message type this code does not know.
    #[error("unknown message type {0:?}")]
    UnknownKind(String),
    /// Addressed to another cart.
    #[error("message for cart {found:?} received by cart {expected:?}")]
    WrongCart {
        /// This cart.
        expected: String,
        /// The envelope's cart.
        found: String,
    },
    /// An upstream type where a downstream one was expected, or the reverse.
    #[error("message type {0:?} does not travel in this direction")]
    WrongDirection(Kind),
    /// The body does not match its type.
    #[error("{kind:?} body invalid: {source}")]
    Body {
        /// The type.
        kind: Kind,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Encodes a message as a JSON envelope.
pub fn encode<B: Serialize>(kind: Kind, cart: &str, id: &str, ts: Timestamp, body: &B) -> Vec<u8> {
    let env = Envelope {
        v: WIRE_VERSION,
        kind: kind.as_str().to_owned(),
        cart: cart.to_owned(),
        id: id.to_owned(),
        ts: ts.0,
        body,
    };
    // Serializing plain data structures to a Vec cannot fail.
    serde_json::to_vec(&env).unwrap_or_default()
}

/// Encodes a message as a zstd-compressed JSON envelope (telemetry
/// batches: see docs/wire-format.md for why).
pub fn encode_compressed<B: Serialize>(
    kind: Kind,
    cart: &str,
    id: &str,
    ts: Timestamp,
    body: &B,
) -> Vec<u8> {
    compress(&encode(kind, cart, id, ts, body))
}

pub(crate) fn compress(json: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(json, 3).unwrap_or_else(|_| json.to_vec())
}

/// Decodes any message into its header and raw body.
pub fn decode(bytes: &[u8]) -> Result<(Header, Value), WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE,
        });
    }
    let owned;
    let json = if bytes.starts_with(&ZSTD_MAGIC) {
        owned = zstd::bulk::decompress(bytes, MAX_DECOMPRESSED)
            .map_err(|e| WireError::Decompress(e.to_string()))?;
        &owned[..]
    } else {
        bytes
    };
    let env: Envelope<Value> = serde_json::from_slice(json)?;
    if env.v != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(env.v));
    }
    let kind = Kind::parse(&env.kind).ok_or_else(|| WireError::UnknownKind(env.kind.clone()))?;
    Ok((
        Header {
            v: env.v,
            kind,
            cart: env.cart,
            id: env.id,
            ts: Timestamp(env.ts),
        },
        env.body,
    ))
}

pub(crate) fn body<T: serde::de::DeserializeOwned>(kind: Kind, v: Value) -> Result<T, WireError> {
    serde_json::from_value(v).map_err(|source| WireError::Body { kind, source })
}

/// Decodes a cart-to-cloud message (the backend's side).
pub fn decode_up(bytes: &[u8]) -> Result<(Header, Up), WireError> {
    let (h, v) = decode(bytes)?;
    if !h.kind.is_up() {
        return Err(WireError::WrongDirection(h.kind));
    }
    let up = Up::from_body(h.kind, v)?;
    Ok((h, up))
}

/// Decodes a cloud-to-cart message addressed to `cart`.
pub fn decode_down(bytes: &[u8], cart: &str) -> Result<(Header, Down), WireError> {
    let (h, v) = decode(bytes)?;
    if h.kind.is_up() {
        return Err(WireError::WrongDirection(h.kind));
    }
    if h.cart != cart {
        return Err(WireError::WrongCart {
            expected: cart.to_owned(),
            found: h.cart,
        });
    }
    let down = Down::from_body(h.kind, v)?;
    Ok((h, down))
}
