//! The fleet's recovery key: a P-256 key pair whose private half the
//! backend keeps offline. Each cart wraps its ledger's data key to the
//! public half (ECIES, [`crate::ecies`]), so the offline payments sealed
//! under a TPM that dies can still be forwarded (`docs/identity.md`).
//!
//! Wrapped key, version 1: `0x01 || EPK (65) || nonce (12) || ct || tag`,
//! HKDF info `"cart ledger data key recovery v1"`, AAD `0x01 || key id
//! (ASCII) || context` (the ledger's id): a copy opens only for the ledger
//! and the recovery key it was made for.

use std::path::{Path, PathBuf};

use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ecies;

/// Wrapped-key layout version.
pub const WRAP_VERSION: u8 = 0x01;
/// HKDF info of version 1.
pub const HKDF_INFO: &[u8] = b"cart ledger data key recovery v1";

/// A recovery-key failure. None carries key material.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryKeyError {
    /// The key file could not be read: fix `[tpm] recovery_public_key`.
    #[error("recovery key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no P-256 key in PEM (SPKI `PUBLIC KEY` for the
    /// cart; PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY` for the backend).
    #[error("{0} is not a P-256 key in PEM")]
    NotAKey(String),
    /// The wrapped key is for another recovery key, another ledger, or
    /// damaged: nothing is unwrapped.
    #[error("the wrapped data key does not open with this recovery key for this ledger")]
    Unwrap,
    /// The wrapped key has a version this code does not know.
    #[error("wrapped data key version {0} not supported")]
    Version(u8),
    /// Wrapping failed (an invalid public key).
    #[error("wrapping the data key: {0}")]
    Wrap(#[from] ecies::EciesError),
}

/// The recovery key's id: the first 16 hex digits of SHA-256 over its
/// DER `SubjectPublicKeyInfo` (what `openssl pkey -pubin -outform DER |
/// sha256sum` shows).
fn key_id_of(key: &PublicKey) -> String {
    let der = key
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    hex::encode(&Sha256::digest(&der)[..8])
}

fn aad(key_id: &str, context: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + key_id.len() + context.len());
    v.push(WRAP_VERSION);
    v.extend_from_slice(key_id.as_bytes());
    v.extend_from_slice(context);
    v
}

fn read(path: &Path) -> Result<Zeroizing<String>, RecoveryKeyError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| RecoveryKeyError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The public half, configured on every cart of a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPublicKey {
    key: PublicKey,
    key_id: String,
}

impl RecoveryPublicKey {
    /// From a PEM `PUBLIC KEY` (SPKI) of a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, RecoveryKeyError> {
        let key = PublicKey::from_public_key_pem(pem.trim())
            .map_err(|_| RecoveryKeyError::NotAKey("the PEM text".into()))?;
        Ok(Self::from_key(key))
    }

    /// From a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, RecoveryKeyError> {
        Self::from_pem(&read(path)?)
            .map_err(|_| RecoveryKeyError::NotAKey(path.display().to_string()))
    }

    /// From a P-256 point.
    pub fn from_key(key: PublicKey) -> Self {
        let key_id = key_id_of(&key);
        RecoveryPublicKey { key, key_id }
    }

    /// The key's id (16 hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Wraps a data key, bound to `context` (the ledger's id).
    pub fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, RecoveryKeyError> {
        let sealed = ecies::seal(&self.key, HKDF_INFO, &aad(&self.key_id, context), data_key)?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// The private half (the backend's; never on a cart).
pub struct RecoveryPrivateKey {
    key: SecretKey,
}

impl std::fmt::Debug for RecoveryPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryPrivateKey({}, ..)", self.public().key_id())
    }
}

impl RecoveryPrivateKey {
    /// From a PEM `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1).
    pub fn from_pem(pem: &str) -> Result<Self, RecoveryKeyError> {
        let pem = pem.trim();
        SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| SecretKey::from_sec1_pem(pem))
            .map(|key| RecoveryPrivateKey { key })
            .map_err(|_| RecoveryKeyError::NotAKey("the PEM text".into()))
    }

    /// From a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Self, RecoveryKeyError> {
        Self::from_pem(&read(path)?)
            .map_err(|_| RecoveryKeyError::NotAKey(path.display().to_string()))
    }

    /// From a P-256 scalar.
    pub fn from_key(key: SecretKey) -> Self {
        RecoveryPrivateKey { key }
    }

    /// The matching public key.
    pub fn public(&self) -> RecoveryPublicKey {
        RecoveryPublicKey::from_key(self.key.public_key())
    }

    /// Unwraps a data key wrapped for `context` (the ledger's id).
    pub fn unwrap(
        &self,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, RecoveryKeyError> {
        let (&version, sealed) = wrapped.split_first().ok_or(RecoveryKeyError::Unwrap)?;
        if version != WRAP_VERSION {
            return Err(RecoveryKeyError::Version(version));
        }
        let id = self.public().key_id;
        let plain = ecies::open(&self.key, HKDF_INFO, &aad(&id, context), sealed)
            .map_err(|_| RecoveryKeyError::Unwrap)?;
        let mut key = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(RecoveryKeyError::Unwrap);
        }
        key.copy_from_slice(&plain);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    #[test]
    fn wraps_for_one_ledger_and_one_key_from_pem() {
        let private = SecretKey::random(&mut aes_gcm::aead::OsRng);
        let pub_pem = private
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let priv_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = RecoveryPublicKey::from_pem(&pub_pem).unwrap();
        let backend = RecoveryPrivateKey::from_pem(&priv_pem).unwrap();
        assert_eq!(public.key_id().len(), 16);
        assert_eq!(backend.public(), public);

        let data_key = [0x5a; 32];
        let wrapped = public.wrap(&data_key, b"ledger-1").unwrap();
        assert_eq!(*backend.unwrap(&wrapped, b"ledger-1").unwrap(), data_key);
        assert!(backend.unwrap(&wrapped, b"ledger-2").is_err());
        let other = RecoveryPrivateKey::from_key(SecretKey::random(&mut aes_gcm::aead::OsRng));
        assert!(other.unwrap(&wrapped, b"ledger-1").is_err());
        assert!(matches!(
            backend.unwrap(&[2, 0, 0], b"ledger-1"),
            Err(RecoveryKeyError::Version(2))
        ));
        assert!(RecoveryPublicKey::from_pem("not a key").is_err());
        assert!(RecoveryPrivateKey::from_pem(&pub_pem).is_err());
    }
}
