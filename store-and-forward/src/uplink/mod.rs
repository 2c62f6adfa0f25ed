//! The uplink transport: MQTT 5 over mutual TLS to the managed broker.
//!
//! - [`tls`]: the rustls client configuration (ring), the CA bundle, the
//!   swappable client identity ([`tls::SwappableClientCert`]).
//! - [`link`]: the link itself ([`link::start`], [`link::LinkHandle`]):
//!   one owner thread for the event loop, reconnect with backoff,
//!   subscriptions restored, PUBACK and response matching, state watch.
//! - [`backoff`]: exponential backoff with full jitter (pure).
//! - [`topics`]: the topic layout `carts/{cart_id}/{up,down,rpc}/{kind}`.
//!
//! See `docs/uplink.md`.

pub mod backoff;
pub mod link;
pub mod tls;
pub mod topics;

pub use link::{
    Incoming, LinkConfig, LinkError, LinkHandle, LinkState, PubAck, PublishProps, QoS, TlsFailure,
    Traffic, TransportAck, start,
};
pub use tls::{SwappableClientCert, TlsError, certified_key_from_pem_files};
