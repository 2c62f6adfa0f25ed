//! The wire contract between the cart and the backend: one JSON envelope for
//! every message, zstd-compressed as a whole when that pays (telemetry
//! batches), on per-cart MQTT topics. `docs/wire-format.md` is the reference
//! and explains the choice with measured sizes; the golden vectors under
//! `store-and-forward/tests/vectors/` are frozen.
//!
//! - `envelope.rs`: the envelope, the message kinds, encode/decode with
//!   size limits and the cart check.
//! - `up.rs`: cart-to-cloud bodies.
//! - `down.rs`: cloud-to-cart bodies.
//! - `topics.rs`: topic names.
//! - [`fleet`]: AWS IoT fleet provisioning's MQTT API (AWS's topics and
//!   payloads, outside our envelope), spoken by provisioning and rotation.
//! - [`jobs`]: AWS IoT Jobs' device MQTT API (AWS's topics and payloads,
//!   outside our envelope) and the job documents the cart understands.
//! - [`receipt`]: the receipt's QR code, an e-receipt URL carrying the
//!   payment and the cart's signature over it (device key).
//! - `telemetry.rs`: packing telemetry into messages that fill the 5 KB
//!   metering unit.

pub mod down;
mod envelope;
pub mod fleet;
pub mod jobs;
pub mod receipt;
pub mod telemetry;
pub mod topics;
pub mod up;

pub use down::Down;
pub use envelope::{
    Envelope, Header, Kind, MAX_DECOMPRESSED, MAX_MESSAGE, WIRE_VERSION, WireError, decode,
    decode_down, decode_up, encode, encode_compressed,
};
pub use up::Up;

/// serde helper: bytes as standard base64 strings.
pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }

    /// A list of byte strings.
    pub mod list {
        use super::*;
        use serde::ser::SerializeSeq;

        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for b in v {
                seq.serialize_element(&STANDARD.encode(b))?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.iter()
                .map(|s| {
                    STANDARD
                        .decode(s.as_bytes())
                        .map_err(serde::de::Error::custom)
                })
                .collect()
        }
    }
}
