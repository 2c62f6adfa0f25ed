//! The TPM behind the ledger and the uplink: adapters from `hal`'s TPM
//! identity to the traits `store-and-forward` defines (the two crates do
//! not know each other).
//!
//! - [`TpmMonotonicCounter`]: the ledger's [`MonotonicCounter`] on the TPM
//!   NV counter.
//! - [`TpmDataKey`]: the ledger's [`DataKey`] sealed by the TPM.
//! - [`IdentitySigningKey`]: a rustls [`SigningKey`] that signs TLS
//!   handshakes with the device identity (ECDSA P-256 SHA-256, the digest
//!   signed in the TPM); [`certified_key`] wraps it with its certificate
//!   chain into the [`CertifiedKey`] that
//!   `store_and_forward::uplink::SwappableClientCert` presents.
//! - [`IdentityConfig`] and [`open_identity`]: the TPM key, or the software
//!   key when the config allows it and the binary was built with the `demo`
//!   feature (the image never is).
//!
//! rustls calls the signer inside the handshake, on the uplink's own
//! thread; the TPM work itself runs on hal's TPM owner thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hal::identity::tpm::{Tpm, TpmConfig, TpmCounter, TpmIdentity};
use hal::identity::{DeviceIdentity, IdentityError};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use store_and_forward::counter::{CounterError, MonotonicCounter, PendingIncrement};
use store_and_forward::datakey::{DataKey, DataKeyError};
use zeroize::Zeroizing;

/// Errors wiring the TPM into the ledger and the uplink. The daemon logs
/// them and starts without the uplink (the cart keeps selling offline);
/// without a ledger counter or data key it does not start at all.
#[derive(Debug, thiserror::Error)]
pub enum TpmAdapterError {
    /// The TPM or the identity failed (see the cause).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The certificate file could not be read: provision again.
    #[error("certificate file {path}: {source}")]
    CertificateFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate: provision again.
    #[error("no certificate in {0}")]
    NoCertificate(std::path::PathBuf),
    /// The certificate is not for this identity's key (an old certificate
    /// after a key replacement): provision or rotate again.
    #[error("the certificate does not match the device key: {0}")]
    KeyMismatch(rustls::Error),
    /// A software key is configured but this binary was built without the
    /// `demo` feature: the daemon refuses to start; remove `software_key`.
    #[error("software identity configured, but this build has no software identity (feature demo)")]
    SoftwareIdentityNotBuilt,
    /// No TPM was opened and no software key is configured: the daemon
    /// refuses to start; configure `[tpm]`.
    #[error("no identity: no TPM and no software key configured")]
    NoTpm,
}

/// Which identity the cart uses (the `[identity]` table of the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// A key file for the software identity (development and the demo only).
    /// Unset (the default): the device key in the TPM.
    pub software_key: Option<PathBuf>,
    /// Must be `true` for `software_key` to be accepted; the software
    /// identity is not secure and says so loudly in the journal.
    pub allow_software_identity: bool,
}

/// Opens the cart's identity: the TPM's device key, or, when configured,
/// allowed and built in (`demo` feature), the software key (then `tpm` may
/// be `None`: a demo machine without a TPM).
pub fn open_identity(
    config: &IdentityConfig,
    tpm: Option<&CartTpm>,
) -> Result<Arc<dyn DeviceIdentity>, TpmAdapterError> {
    match (&config.software_key, tpm) {
        (Some(path), _) => software_identity(path, config.allow_software_identity),
        (None, Some(tpm)) => Ok(Arc::new(tpm.identity()?)),
        (None, None) => Err(TpmAdapterError::NoTpm),
    }
}

#[cfg(feature = "demo")]
fn software_identity(path: &Path, allow: bool) -> Result<Arc<dyn DeviceIdentity>, TpmAdapterError> {
    let id = hal::identity::software::SoftwareIdentity::open(path, allow)?;
    Ok(Arc::new(id))
}

#[cfg(not(feature = "demo"))]
fn software_identity(
    _path: &Path,
    allow: bool,
) -> Result<Arc<dyn DeviceIdentity>, TpmAdapterError> {
    hal::identity::software::require_allowed(allow)?;
    Err(TpmAdapterError::SoftwareIdentityNotBuilt)
}

/// The TPM opened from the cart's config, with the handles it names.
#[derive(Debug, Clone)]
pub struct CartTpm {
    tpm: Tpm,
    config: TpmConfig,
}

impl CartTpm {
    /// Opens the TPM at `config.tcti` (one owner thread for everything).
    pub fn open(config: TpmConfig) -> Result<CartTpm, TpmAdapterError> {
        let tpm = Tpm::open(&config.tcti)?.with_timeouts(config.timeouts());
        Ok(CartTpm { tpm, config })
    }

    /// The TPM handle (for provisioning and rotation).
    pub fn tpm(&self) -> &Tpm {
        &self.tpm
    }

    /// The handles in use.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    /// The ledger's counter (defined in the TPM on first use).
    pub fn counter(&self) -> Result<TpmMonotonicCounter, TpmAdapterError> {
        Ok(TpmMonotonicCounter::new(
            self.tpm.counter(self.config.counter_nv_index)?,
        ))
    }

    /// The ledger's data key source.
    pub fn data_key(&self) -> TpmDataKey {
        TpmDataKey::new(self.tpm.clone(), self.config.data_key_handle)
    }

    /// The active device key (created in the TPM on first use).
    pub fn identity(&self) -> Result<TpmIdentity, TpmAdapterError> {
        Ok(self.tpm.identity(self.config.device_key_handle)?)
    }
}

/// The ledger's monotonic counter on a TPM NV counter.
#[derive(Debug)]
pub struct TpmMonotonicCounter {
    inner: TpmCounter,
}

impl TpmMonotonicCounter {
    /// Wraps an opened NV counter.
    pub fn new(inner: TpmCounter) -> Self {
        TpmMonotonicCounter { inner }
    }
}

fn counter_err(e: IdentityError) -> CounterError {
    CounterError::Device(e.to_string())
}

impl MonotonicCounter for TpmMonotonicCounter {
    fn read(&mut self) -> Result<u64, CounterError> {
        self.inner.read().map_err(counter_err)
    }

    fn increment(&mut self) -> Result<u64, CounterError> {
        self.inner.increment().map_err(counter_err)
    }

    fn start_increment(&mut self) -> PendingIncrement {
        match self.inner.start_increment() {
            Ok(pending) => PendingIncrement::waiting(move || pending.wait().map_err(counter_err)),
            Err(e) => PendingIncrement::ready(Err(counter_err(e))),
        }
    }
}

/// The ledger's data key, sealed by the TPM at a persistent handle.
#[derive(Debug)]
pub struct TpmDataKey {
    tpm: Tpm,
    handle: u32,
}

impl TpmDataKey {
    /// The sealed key at `handle` of `tpm`.
    pub fn new(tpm: Tpm, handle: u32) -> Self {
        TpmDataKey { tpm, handle }
    }
}

impl DataKey for TpmDataKey {
    fn load_or_create(&mut self) -> Result<Zeroizing<[u8; 32]>, DataKeyError> {
        self.tpm
            .sealed_data_key(self.handle)
            .map_err(|e| DataKeyError::Device(e.to_string()))
    }
}

/// A rustls signing key backed by a device identity (the TPM).
#[derive(Debug)]
pub struct IdentitySigningKey {
    identity: Arc<dyn DeviceIdentity>,
    spki: Vec<u8>,
}

impl IdentitySigningKey {
    /// Wraps an identity.
    pub fn new(identity: Arc<dyn DeviceIdentity>) -> Result<Self, TpmAdapterError> {
        let spki = identity.public_key_spki_der()?;
        Ok(IdentitySigningKey { identity, spki })
    }
}

/// The one scheme a P-256 identity signs with.
const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

impl SigningKey for IdentitySigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SCHEME).then(|| {
            Box::new(IdentitySigner {
                identity: self.identity.clone(),
            }) as Box<dyn Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct IdentitySigner {
    identity: Arc<dyn DeviceIdentity>,
}

impl Signer for IdentitySigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        // SHA-256 here, the ECDSA in the TPM.
        self.identity.sign_message(message).map_err(|e| {
            tracing::error!(cause = %e, key = %self.identity.describe(), "TLS signature failed");
            rustls::Error::General(format!("device identity could not sign: {e}"))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        SCHEME
    }
}

/// The identity and its certificate chain (leaf first) as the client
/// identity the uplink presents. Refuses a chain whose leaf is for
/// another key.
pub fn certified_key(
    identity: Arc<dyn DeviceIdentity>,
    chain: Vec<CertificateDer<'static>>,
) -> Result<Arc<CertifiedKey>, TpmAdapterError> {
    let key = Arc::new(IdentitySigningKey::new(identity)?);
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(TpmAdapterError::KeyMismatch)?;
    Ok(Arc::new(certified))
}

/// [`certified_key`] with the chain read from a PEM file.
pub fn certified_key_from_pem_file(
    identity: Arc<dyn DeviceIdentity>,
    cert: &Path,
) -> Result<Arc<CertifiedKey>, TpmAdapterError> {
    let err = |source| TpmAdapterError::CertificateFile {
        path: cert.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if chain.is_empty() {
        return Err(TpmAdapterError::NoCertificate(cert.to_path_buf()));
    }
    certified_key(identity, chain)
}
