//! A device identity in a file, for development and the demo only.
//!
//! The private key sits on disk (PKCS#8 PEM, mode 0600): anyone who copies
//! the file is the cart. Opening it logs a loud warning every time, and it
//! is refused unless the daemon's config says `allow_software_identity`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{DeviceIdentity, IdentityError};

/// The warning logged whenever a software identity is opened.
pub const INSECURE_WARNING: &str = "SOFTWARE IDENTITY IN USE: the device key is a file on disk, NOT protected by a TPM; development and demo only, never on a cart in the field";

/// Refuses unless the config explicitly allows a software identity.
pub fn require_allowed(allow_software_identity: bool) -> Result<(), IdentityError> {
    if allow_software_identity {
        Ok(())
    } else {
        Err(IdentityError::SoftwareNotAllowed)
    }
}

/// A P-256 key in a file. See the module docs: not secure.
pub struct SoftwareIdentity {
    path: PathBuf,
    key: p256::ecdsa::SigningKey,
    sec1: Vec<u8>,
}

impl std::fmt::Debug for SoftwareIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareIdentity")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SoftwareIdentity {
    /// Opens the key at `path`, creating it (mode 0600) when missing.
    /// Refused with [`IdentityError::SoftwareNotAllowed`] unless
    /// `allow_software_identity` is set; logs [`INSECURE_WARNING`].
    pub fn open(
        path: impl AsRef<Path>,
        allow_software_identity: bool,
    ) -> Result<SoftwareIdentity, IdentityError> {
        require_allowed(allow_software_identity)?;
        let path = path.as_ref().to_path_buf();
        tracing::warn!(path = %path.display(), "{INSECURE_WARNING}");
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let key = if path.exists() {
            let pem = Zeroizing::new(fs::read_to_string(&path).map_err(io)?);
            p256::ecdsa::SigningKey::from_pkcs8_pem(&pem)
                .map_err(|_| IdentityError::KeyFile { path: path.clone() })?
        } else {
            let key = generate();
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| IdentityError::Malformed("key does not encode as PKCS#8"))?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            f.write_all(pem.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(io)?;
            key
        };
        let sec1 = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Ok(SoftwareIdentity { path, key, sec1 })
    }
}

fn generate() -> p256::ecdsa::SigningKey {
    let mut rng = rand::rng();
    loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        // Out of range (zero or >= n) has probability ~2^-32: draw again.
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(bytes.as_ref()) {
            return key;
        }
    }
}

impl DeviceIdentity for SoftwareIdentity {
    fn public_key_sec1(&self) -> &[u8] {
        &self.sec1
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, IdentityError> {
        let sig: p256::ecdsa::Signature = self
            .key
            .sign_prehash(digest)
            .map_err(|_| IdentityError::Malformed("digest refused"))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn describe(&self) -> String {
        format!("INSECURE software key file {}", self.path.display())
    }

    fn is_hardware_backed(&self) -> bool {
        false
    }
}
