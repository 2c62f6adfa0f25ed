//! The link's errors and how a connection failure is classified.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use rumqttc::v5::ConnectionError;
use rumqttc::v5::StateError;
use rustls::{AlertDescription, CertificateError};

use crate::uplink::tls::TlsError;

/// What went wrong with the TLS handshake, as far as the cart can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsFailure {
    /// The broker's certificate is not signed by the configured CA bundle.
    UnknownCa,
    /// The broker's certificate is expired or not yet valid (check the clock too).
    ServerCertExpired,
    /// The broker's certificate is not valid for the configured server name.
    ServerNameMismatch,
    /// The broker refused our client certificate (expired, revoked, unknown CA).
    ClientCertRejected,
    /// Any other TLS failure (protocol, cipher, signature).
    Other,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFailure::UnknownCa => "server certificate not signed by a trusted CA",
            TlsFailure::ServerCertExpired => "server certificate expired or not yet valid",
            TlsFailure::ServerNameMismatch => "server certificate not valid for the server name",
            TlsFailure::ClientCertRejected => "broker rejected the client certificate",
            TlsFailure::Other => "TLS failure",
        })
    }
}

/// Whether an MQTT 5 refusal reason code is permanent (retrying the same
/// message will be refused again: quarantine it) rather than transient
/// (retry with backoff). Unknown codes count as transient: a payment is
/// never set aside on a code nobody classified.
pub fn permanent_refusal(reason_code: u8) -> bool {
    matches!(
        reason_code,
        0x87 // NotAuthorized
            | 0x90 // TopicNameInvalid
            | 0x95 // PacketTooLarge
            | 0x99 // PayloadFormatInvalid
    )
}

/// Errors of the link. Each says what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The link is down, or went down before the broker acknowledged: the
    /// message is NOT delivered. Keep it queued and retry when the link is up;
    /// an online request goes to the offline policy with the same key.
    #[error("link down: not acknowledged")]
    Disconnected,
    /// The broker refused the message with an MQTT 5 reason code. A
    /// permanent refusal ([`permanent_refusal`]: 135 NotAuthorized, 144
    /// TopicNameInvalid, 149 PacketTooLarge, 153 PayloadFormatInvalid)
    /// quarantines the message with the reason; every other code (128
    /// UnspecifiedError, 131 ImplementationSpecificError, 137 ServerBusy,
    /// 145 PacketIdentifierInUse, 151 QuotaExceeded, codes not known here)
    /// is retried with backoff.
    #[error("broker rejected the message: reason {reason_code} ({reason})")]
    Rejected {
        /// The MQTT 5 PUBACK reason code.
        reason_code: u8,
        /// Its name, plus the broker's reason string if it sent one.
        reason: String,
    },
    /// No response to a request within its timeout: go to the offline
    /// policy with the same idempotency key; a late answer still arrives on
    /// the `Incoming` channel.
    #[error("no response within the timeout")]
    Timeout,
    /// The TLS handshake failed. Not retried faster: show it to the field
    /// technician (certificate, CA bundle, server name or clock).
    #[error("TLS: {kind}: {detail}")]
    Tls {
        /// The class of failure.
        kind: TlsFailure,
        /// rustls' description.
        detail: String,
    },
    /// The broker refused the MQTT connection (CONNACK reason code, e.g.
    /// 135 NotAuthorized, 133 client id not valid): check the identity and
    /// the broker's policy; the link keeps retrying with backoff.
    #[error("broker refused the connection: {reason}")]
    Refused {
        /// The CONNACK reason, as rumqttc names it.
        reason: String,
    },
    /// Network or protocol failure (connection refused, reset, keep-alive
    /// timeout, connect timeout): the link reconnects with backoff.
    #[error("connection failed: {detail}")]
    Connection {
        /// What happened.
        detail: String,
    },
    /// A request's response topic is not covered by the link's
    /// subscriptions, so the answer could never arrive: a programming error.
    #[error("response topic {0:?} is not covered by any subscription")]
    NotSubscribed(String),
    /// The topic is not a valid MQTT topic name (empty, wildcard): a
    /// programming error; quarantine the message.
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    /// The PUBLISH packet would exceed the maximum packet size (ours, or
    /// the broker's if smaller): sending it would only get the connection
    /// dropped. Split the message, or quarantine it.
    #[error("message too large: {size} bytes, at most {max}")]
    TooLarge {
        /// The packet's size in bytes.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// QoS 2 was asked for: the cart uses QoS 0 and 1 only (AWS IoT has no
    /// QoS 2); a programming error.
    #[error("QoS 2 is not supported")]
    UnsupportedQos,
    /// The configuration is unusable: fix it; the link does not start.
    #[error("invalid link configuration: {0}")]
    Config(&'static str),
    /// The TLS identity or CA bundle could not be loaded: fix the files;
    /// the link does not start.
    #[error(transparent)]
    TlsSetup(#[from] TlsError),
    /// The link's thread or runtime could not be created: the process is
    /// out of resources; exit and let systemd restart it.
    #[error("cannot start the link thread: {0}")]
    Runtime(#[source] io::Error),
    /// The link was shut down: stop using this handle.
    #[error("link shut down")]
    Shutdown,
}

/// Finds a rustls error in an error's chain, including inside `io::Error`s
/// (whose `source()` skips the wrapped error itself).
fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        // rumqttc's StateError::Deserialization does not expose its cause
        // as a source; step into it by hand.
        if let Some(StateError::Deserialization(inner)) = err.downcast_ref::<StateError>() {
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

/// Classifies a rustls error.
pub fn tls_failure(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::ServerCertExpired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::ServerNameMismatch
            }
            _ => TlsFailure::Other,
        },
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::DecryptError,
        ) => TlsFailure::ClientCertRejected,
        _ => TlsFailure::Other,
    }
}

/// Maps a rumqttc connection error to the link's error.
pub(crate) fn classify(e: &ConnectionError) -> LinkError {
    if let Some(r) = find_rustls(e) {
        let kind = tls_failure(r);
        let detail = match (kind, r) {
            (TlsFailure::ClientCertRejected, rustls::Error::AlertReceived(a)) => {
                format!("alert {a:?} from the broker")
            }
            _ => r.to_string(),
        };
        return LinkError::Tls { kind, detail };
    }
    match e {
        ConnectionError::ConnectionRefused(code) => LinkError::Refused {
            reason: format!("{code:?}"),
        },
        ConnectionError::MqttState(StateError::ConnFail { reason }) => LinkError::Refused {
            reason: format!("{reason:?}"),
        },
        ConnectionError::MqttState(StateError::AwaitPingResp) => LinkError::Connection {
            detail: "keep-alive: no PINGRESP from the broker (half-open link)".to_string(),
        },
        ConnectionError::Timeout(_) => LinkError::Connection {
            detail: "connect timeout".to_string(),
        },
        other => LinkError::Connection {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusals_are_permanent_only_for_codes_a_retry_cannot_fix() {
        for code in [0x87, 0x90, 0x95, 0x99] {
            assert!(super::permanent_refusal(code), "{code}");
        }
        // Unspecified, implementation specific, server busy, packet id in
        // use, quota exceeded, and codes nobody classified: retried.
        for code in [0x80, 0x83, 0x89, 0x91, 0x97, 0x9F, 0xFF] {
            assert!(!super::permanent_refusal(code), "{code}");
        }
    }

    use super::*;

    #[test]
    fn rustls_error_inside_io_error_is_found() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let e = ConnectionError::Io(io);
        match classify(&e) {
            LinkError::Tls { kind, .. } => assert_eq!(kind, TlsFailure::UnknownCa),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alert_inside_a_decoding_error_is_found() {
        // Seen with mosquitto refusing an expired client certificate: the
        // alert arrives while rumqttc reads the CONNACK.
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
        );
        let e = ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::v5::mqttbytes::Error::Io(io),
        ));
        match classify(&e) {
            LinkError::Tls { kind, .. } => assert_eq!(kind, TlsFailure::ClientCertRejected),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alerts_mean_client_certificate_rejected() {
        let e = rustls::Error::AlertReceived(AlertDescription::CertificateExpired);
        assert_eq!(tls_failure(&e), TlsFailure::ClientCertRejected);
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(tls_failure(&e), TlsFailure::ServerNameMismatch);
        let e = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(tls_failure(&e), TlsFailure::ServerCertExpired);
    }

    #[test]
    fn plain_io_error_is_a_connection_error() {
        let e = ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(&e), LinkError::Connection { .. }));
    }
}
