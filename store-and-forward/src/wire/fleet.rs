//! AWS IoT fleet provisioning's MQTT API: topics and JSON payloads, with
//! AWS's own field names. This is AWS's contract, not ours: it lives
//! outside the `carts/{cart_id}/` layout and the versioned envelope, and
//! the cart and the backend emulator both speak it from these types.
//!
//! | call | request topic | answers |
//! | --- | --- | --- |
//! | CreateCertificateFromCsr | `$aws/certificates/create-from-csr/json` | `.../accepted`, `.../rejected` |
//! | RegisterThing | `$aws/provisioning-templates/{template}/provision/json` | `.../accepted`, `.../rejected` |
//!
//! AWS answers on the connection that asked; mosquitto delivers the
//! answers to every client subscribed to them (see docs/provisioning.md),
//! so a client matches answers by content: the certificate's public key,
//! the thing name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// CreateCertificateFromCsr's request topic.
pub const CREATE_FROM_CSR: &str = "$aws/certificates/create-from-csr/json";
/// Its accepted topic.
pub const CREATE_FROM_CSR_ACCEPTED: &str = "$aws/certificates/create-from-csr/json/accepted";
/// Its rejected topic.
pub const CREATE_FROM_CSR_REJECTED: &str = "$aws/certificates/create-from-csr/json/rejected";
/// The backend's filter for RegisterThing requests of every template.
pub const PROVISION_FILTER: &str = "$aws/provisioning-templates/+/provision/json";

/// RegisterThing's request topic for `template`.
pub fn provision(template: &str) -> String {
    format!("$aws/provisioning-templates/{template}/provision/json")
}

/// RegisterThing's accepted topic for `template`.
pub fn provision_accepted(template: &str) -> String {
    format!("{}/accepted", provision(template))
}

/// RegisterThing's rejected topic for `template`.
pub fn provision_rejected(template: &str) -> String {
    format!("{}/rejected", provision(template))
}

/// The template name of a RegisterThing request topic.
pub fn template_of(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("$aws/provisioning-templates/")?
        .strip_suffix("/provision/json")
        .filter(|t| !t.is_empty() && !t.contains('/'))
}

/// The topics a fleet-provisioning client subscribes to before its first
/// request: both calls' accepted and rejected topics.
pub fn response_topics(template: &str) -> Vec<String> {
    vec![
        CREATE_FROM_CSR_ACCEPTED.to_owned(),
        CREATE_FROM_CSR_REJECTED.to_owned(),
        provision_accepted(template),
        provision_rejected(template),
    ]
}

/// CreateCertificateFromCsr request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCertificateFromCsrRequest {
    /// The CSR, PEM.
    pub certificate_signing_request: String,
}

/// CreateCertificateFromCsr accepted answer. The certificate is
/// `PENDING_ACTIVATION` until RegisterThing activates it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCertificateFromCsrResponse {
    /// The certificate id (SHA-256 of its DER, hex).
    pub certificate_id: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The token RegisterThing needs (AWS: valid one hour). A credential:
    /// never logged.
    pub certificate_ownership_token: String,
}

impl std::fmt::Debug for CreateCertificateFromCsrResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateCertificateFromCsrResponse")
            .field("certificate_id", &self.certificate_id)
            .field("certificate_ownership_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// RegisterThing request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterThingRequest {
    /// The token from CreateCertificateFromCsr.
    pub certificate_ownership_token: String,
    /// The template's parameters (`SerialNumber`: the cart id).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

impl std::fmt::Debug for RegisterThingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterThingRequest")
            .field("certificate_ownership_token", &"<redacted>")
            .field("parameters", &self.parameters)
            .finish()
    }
}

/// The template parameter carrying the cart id (the thing name).
pub const SERIAL_NUMBER: &str = "SerialNumber";

/// RegisterThing accepted answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterThingResponse {
    /// The device configuration of the template.
    #[serde(default)]
    pub device_configuration: BTreeMap<String, String>,
    /// The thing's name (the cart id).
    pub thing_name: String,
}

/// A rejected answer to either call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// An HTTP-like status (400, 403, 404, 500...).
    pub status_code: u16,
    /// AWS's error code (`InvalidParameters`, `ResourceNotFound`...).
    pub error_code: String,
    /// The reason, for people.
    pub error_message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_aws_ones() {
        let r = RegisterThingRequest {
            certificate_ownership_token: "t".into(),
            parameters: [(SERIAL_NUMBER.to_string(), "cart-1".to_string())].into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"certificateOwnershipToken":"t","parameters":{"SerialNumber":"cart-1"}}"#
        );
        let e: ErrorResponse = serde_json::from_str(
            r#"{"statusCode":400,"errorCode":"InvalidParameters","errorMessage":"no"}"#,
        )
        .unwrap();
        assert_eq!(e.status_code, 400);
        let a: CreateCertificateFromCsrResponse = serde_json::from_str(
            r#"{"certificateId":"i","certificatePem":"p","certificateOwnershipToken":"secret"}"#,
        )
        .unwrap();
        assert!(!format!("{a:?}").contains("secret"));
        assert_eq!(
            template_of("$aws/provisioning-templates/cart-fleet/provision/json"),
            Some("cart-fleet")
        );
        assert_eq!(
            template_of("$aws/provisioning-templates//provision/json"),
            None
        );
    }
}
