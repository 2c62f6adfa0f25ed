//! TLS for the uplink: the rustls client configuration (ring provider),
//! server verification against a configured CA bundle, and the client
//! certificate source.
//!
//! The client identity comes through [`SwappableClientCert`], a rustls
//! [`ResolvesClientCert`] whose certificate and key can be replaced at
//! runtime (certificate rotation). Files give the identity today
//! ([`certified_key_from_pem_files`]); the TPM-backed identity plugs its own
//! `SigningKey` into the same [`CertifiedKey`] later.
//!
//! Swapping the identity also forgets the TLS session cache: a resumed TLS
//! 1.3 session skips client authentication, so without this the broker
//! would keep seeing the old certificate after a rotation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
    Tls12ClientSessionValue, Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Errors building the TLS identity or configuration. All of them are
/// configuration problems found at start: the link does not start, and the
/// caller reports the error (the cart stays offline-capable).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed: fix the path or the file.
    #[error("cannot read PEM file {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate: provision the identity again.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// The private key is of a type the ring provider cannot sign with, or
    /// does not match the certificate: provision the identity again.
    #[error("unusable client key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate of the bundle was rejected: fix the bundle.
    #[error("bad CA certificate in {path}: {source}")]
    Ca {
        /// The bundle.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The CA bundle holds no certificate: fix the configured `ca_file`.
    #[error("no CA certificate in {0}")]
    EmptyCa(PathBuf),
    /// The configured server name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// rustls refused the configuration (should not happen with ring's defaults).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The ring crypto provider, the only one compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem(path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads a certificate chain and its private key (PKCS#8, SEC1 or PKCS#1;
/// ECDSA P-256/P-384, RSA or Ed25519 as ring supports) and checks that
/// they belong together.
pub fn certified_key_from_pem_files(
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    let certified =
        CertifiedKey::from_der(chain, der, &provider()).map_err(|source| TlsError::Key {
            path: key.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(certified))
}

/// Reads every certificate of a PEM bundle into a root store.
pub fn root_store_from_pem_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    for c in certs {
        roots.add(c).map_err(|source| TlsError::Ca {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::EmptyCa(path.to_path_buf()));
    }
    Ok(roots)
}

/// The client identity the link presents, swappable at runtime.
///
/// New connections use the identity current at their handshake; an open
/// connection keeps the one it was made with (force a reconnect with
/// `LinkHandle::reconnect` to use a new one at once).
#[derive(Debug)]
pub struct SwappableClientCert {
    current: RwLock<Arc<CertifiedKey>>,
    sessions: Arc<ResettableSessionStore>,
}

impl SwappableClientCert {
    /// An identity source starting with `key`.
    pub fn new(key: Arc<CertifiedKey>) -> SwappableClientCert {
        SwappableClientCert {
            current: RwLock::new(key),
            sessions: Arc::new(ResettableSessionStore::default()),
        }
    }

    /// Replaces the identity (rotation) and forgets resumable TLS sessions,
    /// so the next handshake authenticates with the new certificate.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut g) => *g = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        self.sessions.reset();
        tracing::info!("client certificate swapped; TLS sessions forgotten");
    }

    /// The identity new connections present.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn session_store(&self) -> Arc<ResettableSessionStore> {
        self.sessions.clone()
    }
}

impl ResolvesClientCert for SwappableClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS session cache that can be emptied (on identity swap).
#[derive(Debug)]
pub(crate) struct ResettableSessionStore {
    inner: RwLock<Arc<ClientSessionMemoryCache>>,
}

const SESSION_CACHE_SIZE: usize = 32;

impl Default for ResettableSessionStore {
    fn default() -> Self {
        ResettableSessionStore {
            inner: RwLock::new(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE))),
        }
    }
}

impl ResettableSessionStore {
    fn reset(&self) {
        let fresh = Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SIZE));
        match self.inner.write() {
            Ok(mut g) => *g = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    fn get(&self) -> Arc<ClientSessionMemoryCache> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ClientSessionStore for ResettableSessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.get().set_kx_hint(server_name, group)
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.get().kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.get().set_tls12_session(server_name, value)
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.get().tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.get().remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.get().insert_tls13_ticket(server_name, value)
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.get().take_tls13_ticket(server_name)
    }
}

/// Verifies the server with webpki against the configured roots and the
/// configured server name, whatever name the MQTT client derived from the
/// host it dialled (rumqttc uses the host; the broker's certificate may
/// carry another name, e.g. when dialling an IP).
struct NameOverrideVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl fmt::Debug for NameOverrideVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameOverrideVerifier")
            .field("name", &self.name)
            .finish()
    }
}

impl ServerCertVerifier for NameOverrideVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the client configuration: ring provider, TLS 1.2 and 1.3, the
/// server verified against the CA bundle in `ca_file` under `server_name`,
/// the client identity from `cert` (none: no client authentication, which
/// a broker with `require_certificate` refuses).
pub fn client_config(
    ca_file: &Path,
    server_name: &str,
    cert: Option<&Arc<SwappableClientCert>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let roots = Arc::new(root_store_from_pem_file(ca_file)?);
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let verifier = Arc::new(NameOverrideVerifier { inner, name });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match cert {
        Some(c) => {
            let mut config = builder.with_client_cert_resolver(c.clone());
            config.resumption = Resumption::store(c.session_store());
            config
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = true;
    Ok(Arc::new(config))
}
