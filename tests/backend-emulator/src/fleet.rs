//! The fleet-provisioning responder: AWS IoT's CreateCertificateFromCsr
//! and RegisterThing over MQTT, with AWS's semantics, and the certificate
//! registry the cart's `provisioning_complete` and `rotation_complete`
//! messages act on.
//!
//! - Every create-from-csr issues a new certificate (signed by the test CA
//!   the broker trusts), `PENDING_ACTIVATION`, with an ownership token.
//! - RegisterThing with a valid token activates it and names the thing
//!   (the template's `SerialNumber` parameter, which must equal the CSR's
//!   CN, as a pre-provisioning hook would check). The same token again for
//!   the same thing answers accepted again (a cart resuming after a crash).
//! - An unknown template, a bad or expired token, a deleted certificate or
//!   a thing name that is not the CSR's CN: rejected with AWS's
//!   `statusCode`, `errorCode`, `errorMessage`.
//! - A pending certificate whose token expired (one hour, as AWS) is
//!   deleted. `provisioning_complete` and `rotation_complete` delete the
//!   certificates the cart lists as orphans (never an active one) and every
//!   other certificate still pending for that cart; `rotation_complete`
//!   also deactivates the old certificate.
//!
//! The registry is bookkeeping: mosquitto trusts every certificate of the
//! test CA whatever its status here (AWS IoT refuses an inactive one at
//! the TLS handshake).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rcgen::{
    CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use store_and_forward::Timestamp;
use store_and_forward::uplink::{Incoming, LinkHandle, PublishProps, QoS};
use store_and_forward::wire::fleet::{
    self, CreateCertificateFromCsrRequest, CreateCertificateFromCsrResponse, ErrorResponse,
    RegisterThingRequest, RegisterThingResponse,
};
use store_and_forward::wire::up::{ProvisioningComplete, RotationComplete};
use tracing::{info, warn};

/// How the responder issues certificates.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The CA certificate (PEM) the broker trusts.
    pub ca_cert_pem: String,
    /// Its private key (PKCS#8 PEM). TEST ONLY.
    pub ca_key_pem: String,
    /// Provisioning templates that exist.
    pub templates: Vec<String>,
    /// Validity of issued certificates (from one minute before issuance).
    pub validity: Duration,
    /// Lifetime of an ownership token (AWS: one hour).
    pub token_lifetime: Duration,
}

impl FleetConfig {
    /// A config with one template, one-year certificates, one-hour tokens.
    pub fn new(ca_cert_pem: String, ca_key_pem: String, template: &str) -> FleetConfig {
        FleetConfig {
            ca_cert_pem,
            ca_key_pem,
            templates: vec![template.to_owned()],
            validity: Duration::from_secs(365 * 86_400),
            token_lifetime: Duration::from_secs(3_600),
        }
    }
}

/// The responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The CA certificate or key could not be read.
    #[error("fleet CA: {0}")]
    Ca(#[from] rcgen::Error),
}

/// A certificate's status, as AWS IoT names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertStatus {
    /// Issued, not registered yet.
    PendingActivation,
    /// Registered: the cart's certificate.
    Active,
    /// Deactivated (replaced by a rotation).
    Inactive,
    /// Deleted (an orphan, or its token expired).
    Deleted,
}

/// One issued certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertView {
    /// AWS-style id: SHA-256 of the DER, hex.
    pub id: String,
    /// The CSR's CN (the cart it was issued to).
    pub cart: String,
    /// Status.
    pub status: CertStatus,
    /// The thing it is attached to.
    pub thing: Option<String>,
    /// End of validity.
    pub not_after: Timestamp,
    /// Whether the cart listed it as an orphan.
    pub reported_orphan: bool,
    /// Why it was deleted or deactivated.
    pub because: Option<String>,
    /// The certificate (DER), to check what the cart signed with it.
    #[serde(skip)]
    pub der: Vec<u8>,
}

struct Cert {
    view: CertView,
    token: String,
    issued: SystemTime,
}

#[derive(Default)]
struct State {
    certs: BTreeMap<String, Cert>,
    tokens: HashMap<String, String>,
}

/// The responder and the certificate registry.
pub struct Fleet {
    issuer: Issuer<'static, KeyPair>,
    config: FleetConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("templates", &self.config.templates)
            .finish_non_exhaustive()
    }
}

fn error(status_code: u16, error_code: &str, error_message: String) -> ErrorResponse {
    ErrorResponse {
        status_code,
        error_code: error_code.to_owned(),
        error_message,
    }
}

impl Fleet {
    /// A responder signing with the configured CA.
    pub fn new(config: FleetConfig) -> Result<Fleet, FleetError> {
        let key = KeyPair::from_pem(&config.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&config.ca_cert_pem, key)?;
        Ok(Fleet {
            issuer,
            config,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The topics the backend subscribes to.
    pub fn subscriptions() -> [&'static str; 2] {
        [fleet::CREATE_FROM_CSR, fleet::PROVISION_FILTER]
    }

    /// Every certificate issued to `cart`.
    pub fn certificates(&self, cart: &str) -> Vec<CertView> {
        let mut s = self.lock();
        self.expire(&mut s);
        s.certs
            .values()
            .filter(|c| c.view.cart == cart)
            .map(|c| c.view.clone())
            .collect()
    }

    /// The certificates of `cart` with `status`.
    pub fn with_status(&self, cart: &str, status: CertStatus) -> Vec<CertView> {
        self.certificates(cart)
            .into_iter()
            .filter(|c| c.status == status)
            .collect()
    }

    /// Answers a message on a fleet-provisioning topic; false when the
    /// topic is not one.
    pub(crate) async fn handle(&self, link: &LinkHandle, msg: &Incoming) -> bool {
        let (answer_to, answer) = if msg.topic == fleet::CREATE_FROM_CSR {
            let answer = self.create_from_csr(&msg.payload);
            (
                (
                    fleet::CREATE_FROM_CSR_ACCEPTED.to_owned(),
                    fleet::CREATE_FROM_CSR_REJECTED.to_owned(),
                ),
                answer.map(|r| serde_json::to_vec(&r)),
            )
        } else if let Some(template) = fleet::template_of(&msg.topic) {
            let answer = self.register_thing(template, &msg.payload);
            (
                (
                    fleet::provision_accepted(template),
                    fleet::provision_rejected(template),
                ),
                answer.map(|r| serde_json::to_vec(&r)),
            )
        } else {
            return false;
        };
        let (topic, payload) = match answer {
            Ok(Ok(bytes)) => (answer_to.0, bytes),
            Ok(Err(e)) => (
                answer_to.1,
                serde_json::to_vec(&error(500, "InternalFailure", e.to_string()))
                    .unwrap_or_default(),
            ),
            Err(e) => {
                warn!(topic = %msg.topic, code = %e.error_code, message = %e.error_message, "fleet request rejected");
                (answer_to.1, serde_json::to_vec(&e).unwrap_or_default())
            }
        };
        let _ = link
            .publish(
                &topic,
                Bytes::from(payload),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await;
        true
    }

    fn create_from_csr(
        &self,
        payload: &[u8],
    ) -> Result<CreateCertificateFromCsrResponse, ErrorResponse> {
        let req: CreateCertificateFromCsrRequest = serde_json::from_slice(payload)
            .map_err(|e| error(400, "InvalidPayload", e.to_string()))?;
        let mut csr = CertificateSigningRequestParams::from_pem(&req.certificate_signing_request)
            .map_err(|e| error(400, "InvalidCsr", e.to_string()))?;
        let cart = match csr.params.distinguished_name.get(&DnType::CommonName) {
            Some(v) => {
                dn_text(v).ok_or_else(|| error(400, "InvalidCsr", "CN unreadable".into()))?
            }
            None => return Err(error(400, "InvalidCsr", "the CSR has no CN".into())),
        };
        let now = SystemTime::now();
        let p = &mut csr.params;
        p.not_before = (now - Duration::from_secs(60)).into();
        p.not_after = (now + self.config.validity).into();
        p.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| error(500, "InternalFailure", e.to_string()))?;
        let id = hex::encode(Sha256::digest(cert.der()));
        let token = hex::encode(rand::random::<[u8; 32]>());
        let not_after = Timestamp(
            (now + self.config.validity)
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        );
        info!(%cart, certificate = %id, "certificate issued (pending activation)");
        let mut s = self.lock();
        s.tokens.insert(token.clone(), id.clone());
        s.certs.insert(
            id.clone(),
            Cert {
                view: CertView {
                    id: id.clone(),
                    cart,
                    status: CertStatus::PendingActivation,
                    thing: None,
                    not_after,
                    reported_orphan: false,
                    because: None,
                    der: cert.der().to_vec(),
                },
                token: token.clone(),
                issued: now,
            },
        );
        Ok(CreateCertificateFromCsrResponse {
            certificate_id: id,
            certificate_pem: cert.pem(),
            certificate_ownership_token: token,
        })
    }

    fn register_thing(
        &self,
        template: &str,
        payload: &[u8],
    ) -> Result<RegisterThingResponse, ErrorResponse> {
        if !self.config.templates.iter().any(|t| t == template) {
            return Err(error(
                404,
                "ResourceNotFound",
                format!("provisioning template {template} does not exist"),
            ));
        }
        let req: RegisterThingRequest = serde_json::from_slice(payload)
            .map_err(|e| error(400, "InvalidPayload", e.to_string()))?;
        let serial = req
            .parameters
            .get(fleet::SERIAL_NUMBER)
            .cloned()
            .ok_or_else(|| error(400, "InvalidParameters", "SerialNumber missing".into()))?;
        let mut s = self.lock();
        self.expire(&mut s);
        let bad_token = || {
            error(
                400,
                "InvalidCertificateOwnershipToken",
                "certificate ownership token is invalid or expired".into(),
            )
        };
        let id = s
            .tokens
            .get(&req.certificate_ownership_token)
            .cloned()
            .ok_or_else(bad_token)?;
        let cert = s.certs.get_mut(&id).ok_or_else(bad_token)?;
        if cert.view.cart != serial {
            return Err(error(
                403,
                "AccessDenied",
                format!(
                    "thing name {serial} does not match the certificate's CN {}",
                    cert.view.cart
                ),
            ));
        }
        match cert.view.status {
            CertStatus::PendingActivation => {
                cert.view.status = CertStatus::Active;
                cert.view.thing = Some(serial.clone());
                info!(thing = %serial, certificate = %id, "thing registered, certificate active");
            }
            CertStatus::Active if cert.view.thing.as_deref() == Some(serial.as_str()) => {
                info!(thing = %serial, certificate = %id, "thing registered again (same token)");
            }
            _ => return Err(bad_token()),
        }
        Ok(RegisterThingResponse {
            device_configuration: [("topicPrefix".to_string(), format!("carts/{serial}"))].into(),
            thing_name: serial,
        })
    }

    /// Deletes pending certificates whose token expired (AWS semantics).
    fn expire(&self, s: &mut State) {
        let now = SystemTime::now();
        for c in s.certs.values_mut() {
            if c.view.status == CertStatus::PendingActivation
                && now
                    .duration_since(c.issued)
                    .is_ok_and(|age| age > self.config.token_lifetime)
            {
                c.view.status = CertStatus::Deleted;
                c.view.because = Some("ownership token expired".into());
            }
        }
        let dead: Vec<String> = s
            .certs
            .values()
            .filter(|c| c.view.status == CertStatus::Deleted)
            .map(|c| c.token.clone())
            .collect();
        for t in dead {
            s.tokens.remove(&t);
        }
    }

    /// Deletes the listed orphans of `cart` (never an active certificate,
    /// never another cart's) and every certificate still pending for it.
    fn clean_up(s: &mut State, cart: &str, orphans: &[String], keep: &str) {
        for id in orphans {
            match s.certs.get_mut(id) {
                Some(c) if c.view.cart == cart => {
                    c.view.reported_orphan = true;
                    if c.view.status == CertStatus::PendingActivation {
                        c.view.status = CertStatus::Deleted;
                        c.view.because = Some("reported orphan".into());
                    }
                }
                Some(_) => {
                    warn!(cart, certificate = %id, "orphan report for another cart's certificate ignored")
                }
                None => warn!(cart, certificate = %id, "orphan report for an unknown certificate"),
            }
        }
        for c in s.certs.values_mut() {
            if c.view.cart == cart
                && c.view.id != keep
                && c.view.status == CertStatus::PendingActivation
            {
                c.view.status = CertStatus::Deleted;
                c.view.because = Some("pending when the cart finished".into());
                info!(cart, certificate = %c.view.id, "pending certificate deleted");
            }
        }
    }

    pub(crate) fn provisioning_complete(&self, cart: &str, body: &ProvisioningComplete) {
        let mut s = self.lock();
        match s.certs.get(&body.certificate_id) {
            Some(c)
                if c.view.status == CertStatus::Active && c.view.thing.as_deref() == Some(cart) =>
            {
                info!(cart, certificate = %body.certificate_id, orphans = body.orphans.len(), "cart provisioned");
            }
            _ => {
                warn!(cart, certificate = %body.certificate_id, "provisioning_complete for a certificate that is not the cart's active one")
            }
        }
        Self::clean_up(&mut s, cart, &body.orphans, &body.certificate_id);
    }

    pub(crate) fn rotation_complete(&self, cart: &str, body: &RotationComplete) {
        let mut s = self.lock();
        let new_ok = s.certs.get(&body.certificate_id).is_some_and(|c| {
            c.view.status == CertStatus::Active && c.view.thing.as_deref() == Some(cart)
        });
        if !new_ok {
            warn!(cart, certificate = %body.certificate_id, "rotation_complete for a certificate that is not active for the cart: old one kept");
        } else if body.old_certificate_id != body.certificate_id
            && let Some(old) = s.certs.get_mut(&body.old_certificate_id)
            && old.view.thing.as_deref() == Some(cart)
            && old.view.status == CertStatus::Active
        {
            old.view.status = CertStatus::Inactive;
            old.view.because = Some("replaced by a rotation".into());
            info!(cart, old = %body.old_certificate_id, new = %body.certificate_id, "certificate rotated, old one deactivated");
        }
        Self::clean_up(&mut s, cart, &body.orphans, &body.certificate_id);
    }
}

fn dn_text(v: &DnValue) -> Option<String> {
    match v {
        DnValue::Utf8String(s) => Some(s.clone()),
        DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
        DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
        DnValue::TeletexString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
