//! First boot as a resumable pipeline, and certificate rotation.
//!
//! Four steps, each recorded in the ledger's `cart_state` before and after
//! it runs (fsynced), each idempotent, each resumed after a crash or a
//! power cut at any point (`docs/provisioning.md` has the failure table):
//!
//! 1. network onboarding: the Wi-Fi of the provisioning QR code (or of the
//!    config) added to NetworkManager over D-Bus, done once it is up;
//! 2. the device key in the TPM and a CSR signed by it (CN = cart id);
//! 3. AWS IoT fleet provisioning by claim: CreateCertificateFromCsr then
//!    RegisterThing over a connection with the claim certificate; the
//!    issued certificate is kept beside the ledger;
//! 4. the first publish with the device certificate (`provisioning_complete`,
//!    acknowledged by PUBACK, listing orphan certificates for deletion);
//!    then the cart is provisioned and the claim credentials are deleted.
//!
//! # Layout
//! - [`config`]: the `[provisioning]` table.
//! - [`state`]: the `cart_state` keys, [`ProvisioningStatus`] for `cartctl status`.
//! - [`network`]: step 1, the Wi-Fi connection's settings and how a join
//!   ends (sans-IO); [`nm`]: NetworkManager over D-Bus.
//! - [`key`]: step 2, the key and CSR; which TPM handle is active.
//! - [`fleet`]: the fleet-provisioning API client (CreateCertificateFromCsr, RegisterThing).
//! - [`register`]: step 3, a certificate from CSR to registered, resumable
//!   (shared with rotation).
//! - [`publish`]: step 4, the first publish and the claim's deletion.
//! - [`cert`]: certificate parsing, expiry, atomic files.
//! - [`rotation`]: certificate rotation and its crash recovery.
//!
//! The daemon calls [`run`] until it returns [`Provisioned`] (it retries
//! with backoff on [`ProvisionError`]s that say so), then [`load`] at every
//! start, [`rotation::due`] now and then and [`rotation::rotate`] when due
//! or asked.

pub mod cert;
pub mod config;
pub mod fleet;
pub mod key;
pub mod network;
pub mod nm;
pub mod publish;
pub mod register;
pub mod rotation;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hal::identity::{DeviceIdentity, IdentityError};
use hal::scanner::WifiCredentials;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use store_and_forward::sync::SharedLedger;
use store_and_forward::uplink::{LinkConfig, LinkError, TlsError};
use store_and_forward::{LedgerError, Timestamp};

pub use config::{ProvisioningConfig, WifiConfig};
pub use state::{ProvisioningStatus, Step, read_only_status, status};

use crate::tpm::{CartTpm, TpmAdapterError};
use state::keys;

/// Every failpoint of the provisioning pipeline, in order (crash tests).
pub const FAILPOINTS: &[&str] = &[
    "provision.network.started",
    "provision.network.written",
    "provision.key.started",
    "provision.key.created",
    "provision.register.started",
    "provision.register.csr_recorded",
    "provision.register.csr_sent",
    "provision.register.issued",
    "provision.register.pending_recorded",
    "provision.register.register_sent",
    "provision.register.registered",
    "provision.register.cert_written",
    "provision.first_publish.started",
    "provision.first_publish.acked",
    "provision.claim.started",
    "provision.claim.key_deleted",
];

/// Kills the process here when the crash test armed `name` (feature
/// `failpoints`; a no-op otherwise).
pub(crate) fn failpoint(name: &str) {
    store_and_forward::failpoint::hit(name);
}

/// Why provisioning or rotation stopped. Nothing is lost: the step is
/// recorded, and calling again resumes it.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A config value is invalid: the daemon refuses to start.
    #[error("config {key}: {why}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The ledger failed: the daemon stops (nothing else works without it).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The TPM failed: retried at the next start.
    #[error(transparent)]
    Tpm(#[from] TpmAdapterError),
    /// The TPM identity failed: retried at the next start.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The link could not start or publish: retried with backoff.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A client certificate could not be loaded (the claim's).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No connection to the broker: retried with backoff.
    #[error("broker unreachable: {0}")]
    Offline(String),
    /// No answer in time: retried with backoff (a certificate issued
    /// meanwhile becomes an orphan, reported when the cart finishes).
    #[error("no answer from the fleet-provisioning API within {0:?}")]
    NoAnswer(Duration),
    /// The API refused the request: retried later; persisting, a
    /// technician checks the template and the claim's policy.
    #[error("{call} rejected: {status_code} {error_code}: {message}")]
    Rejected {
        /// The call.
        call: &'static str,
        /// AWS's status code.
        status_code: u16,
        /// AWS's error code.
        error_code: String,
        /// AWS's message.
        message: String,
    },
    /// A certificate could not be read: provision or rotate again.
    #[error("certificate: {0}")]
    BadCertificate(&'static str),
    /// The certificate is not for the device key: provision again.
    #[error("the certificate does not match the TPM key at {0:#010x}")]
    CertificateMismatch(u32),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Wi-Fi settings are unusable (never with the passphrase): the
    /// UI asks for another provisioning code.
    #[error("Wi-Fi settings refused: {0}")]
    Wifi(&'static str),
    /// No Wi-Fi settings yet: the UI asks to scan the provisioning code;
    /// [`run`] is called again with it.
    #[error("no network settings: scan the provisioning QR code")]
    NeedNetwork,
    /// NetworkManager could not be asked (bus, polkit, no Wi-Fi device):
    /// retried with backoff.
    #[error(transparent)]
    NetworkManager(#[from] nm::NmError),
    /// The Wi-Fi did not come up: a refused passphrase waits for a new
    /// provisioning code; the others are retried (a new code replaces the
    /// network).
    #[error("Wi-Fi \"{ssid}\" not joined: {outcome:?}")]
    WifiJoin {
        /// The network.
        ssid: String,
        /// How the join ended.
        outcome: network::JoinOutcome,
    },
    /// The claim credentials are missing before registration finished:
    /// a technician installs them again.
    #[error("claim credentials missing: {0}")]
    ClaimMissing(PathBuf),
    /// The device key recorded as active is not in the TPM: the cart must
    /// be provisioned again.
    #[error("no device key at TPM handle {0:#010x}")]
    KeyMissing(u32),
    /// The new certificate did not connect: the old one stays in use;
    /// the rotation is retried later.
    #[error("the new certificate was not accepted by the broker: {0}")]
    NewCertificateRefused(String),
    /// A blocking TPM task panicked or was cancelled.
    #[error("TPM task failed: {0}")]
    Task(String),
}

/// What provisioning gives the daemon: the identity and its certificate.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The certificate's id (AWS IoT: SHA-256 of the DER, hex).
    pub certificate_id: String,
    /// The PEM file.
    pub certificate: PathBuf,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// The TPM handle of the device key.
    pub key_handle: u32,
    /// The device key.
    pub identity: Arc<dyn DeviceIdentity>,
    /// Identity and certificate, for `SwappableClientCert::new` / `swap`.
    pub certified_key: Arc<CertifiedKey>,
}

/// What the pipeline works with.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The `[provisioning]` config.
    pub config: &'a ProvisioningConfig,
    /// The cart id (CN, thing name, MQTT client id).
    pub cart_id: &'a str,
    /// The broker (host, port, CA); the client id is set here.
    pub link: &'a LinkConfig,
    /// The TPM with the configured handles.
    pub tpm: &'a CartTpm,
    /// The ledger (cart state).
    pub ledger: &'a SharedLedger,
}

impl Context<'_> {
    /// The link config with the cart's client id.
    pub(crate) fn link_config(&self) -> LinkConfig {
        LinkConfig {
            client_id: self.cart_id.to_owned(),
            ..self.link.clone()
        }
    }
}

/// Runs (or resumes) the pipeline to the end. `scanned_wifi`: the
/// provisioning QR code's settings, when one was scanned.
#[tracing::instrument(skip_all, fields(cart = ctx.cart_id))]
pub async fn run(
    ctx: &Context<'_>,
    scanned_wifi: Option<WifiCredentials>,
) -> Result<Provisioned, ProvisionError> {
    ctx.config.validate()?;
    let done = |k: &str| -> Result<bool, ProvisionError> {
        Ok(matches!(
            state::get(ctx.ledger, k)?.as_deref(),
            Some("done" | "skipped")
        ))
    };
    if state::get(ctx.ledger, keys::STATE)?.as_deref() != Some(Step::Provisioned.as_str()) {
        network(ctx, scanned_wifi).await?;
        if !done(keys::KEY)? {
            key::step(ctx).await?;
        }
        if !done(keys::REGISTER)? {
            register::provision_step(ctx).await?;
        }
        if !done(keys::FIRST_PUBLISH)? {
            publish::first_publish(ctx).await?;
        }
    }
    publish::claim_cleanup(ctx)?;
    load(ctx).await?.ok_or(ProvisionError::BadCertificate(
        "provisioned without a certificate",
    ))
}

/// Step 1 alone (the daemon runs it first, to show its progress): does
/// nothing once the step is done or skipped. A scanned code replaces the
/// network even while a join is retried; without one, a restart in the
/// middle of the step joins with the connection NetworkManager saved.
pub async fn network(
    ctx: &Context<'_>,
    scanned: Option<WifiCredentials>,
) -> Result<(), ProvisionError> {
    let wifi = &ctx.config.wifi;
    let step = state::get(ctx.ledger, keys::NETWORK)?;
    if matches!(step.as_deref(), Some("done" | "skipped")) {
        return Ok(());
    }
    if !wifi.enabled {
        return state::record(
            ctx.ledger,
            &[
                (keys::STATE, Some("network")),
                (keys::NETWORK, Some("skipped")),
            ],
        );
    }
    let (ssid, outcome) = match network::credentials(wifi, scanned) {
        Some(creds) => {
            network::check(&creds)?;
            state::record(
                ctx.ledger,
                &[
                    (keys::STATE, Some("network")),
                    (keys::NETWORK, Some("started")),
                    (keys::NETWORK_SSID, Some(creds.ssid.as_str())),
                ],
            )?;
            failpoint("provision.network.started");
            let outcome = network::join(wifi, ctx.cart_id, &creds).await?;
            (creds.ssid.clone(), outcome)
        }
        None if step.as_deref() == Some("started") => {
            match network::rejoin(wifi, ctx.cart_id).await? {
                Some(outcome) => (network_pending(ctx).unwrap_or_default(), outcome),
                None => return Err(ProvisionError::NeedNetwork),
            }
        }
        None => return Err(ProvisionError::NeedNetwork),
    };
    if outcome != network::JoinOutcome::Up {
        return Err(ProvisionError::WifiJoin { ssid, outcome });
    }
    failpoint("provision.network.written");
    tracing::info!(ssid = %ssid, "Wi-Fi up");
    state::record(ctx.ledger, &[(keys::NETWORK, Some("done"))])
}

/// The network being joined when step 1 has started and is not done.
pub fn network_pending(ctx: &Context<'_>) -> Option<String> {
    match state::get(ctx.ledger, keys::NETWORK) {
        Ok(Some(s)) if s == "started" => state::get(ctx.ledger, keys::NETWORK_SSID).ok().flatten(),
        _ => None,
    }
}

/// The cart's identity at start: `None` until provisioned. Finishes a
/// rotation interrupted after its switch (renames the new certificate
/// into place, evicts the old key) first.
pub async fn load(ctx: &Context<'_>) -> Result<Option<Provisioned>, ProvisionError> {
    if state::get(ctx.ledger, keys::STATE)?.as_deref() != Some(Step::Provisioned.as_str()) {
        return Ok(None);
    }
    rotation::recover(ctx).await?;
    let handle = key::active_handle(ctx)?;
    let p = identity_with_cert(ctx, handle, &ctx.config.certificate).await?;
    cert::expiry(p.not_after, Timestamp::now(), ctx.config.expiry_warn_days);
    Ok(Some(p))
}

/// The key at `handle` with the certificate in `path`, checked to match.
pub(crate) async fn identity_with_cert(
    ctx: &Context<'_>,
    handle: u32,
    path: &std::path::Path,
) -> Result<Provisioned, ProvisionError> {
    let identity = key::existing(ctx, handle).await?;
    let (_, info) = cert::read_file(path)?;
    let spki = identity.public_key_spki_der()?;
    if spki != info.spki {
        return Err(ProvisionError::CertificateMismatch(handle));
    }
    let certified_key = crate::tpm::certified_key(
        identity.clone(),
        vec![CertificateDer::from(info.der.clone())],
    )?;
    Ok(Provisioned {
        certificate_id: info.id,
        certificate: path.to_path_buf(),
        not_before: info.not_before,
        not_after: info.not_after,
        key_handle: handle,
        identity,
        certified_key,
    })
}

/// Runs a blocking TPM call off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ProvisionError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ProvisionError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProvisionError::Task(e.to_string()))?
}
