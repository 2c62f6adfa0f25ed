//! Sealing card data at rest. The ledger seals the reader's EMV data and
//! encrypted blob with AES-256-GCM under a data key that comes from a
//! [`DataKey`] source: sealed by the TPM on the cart (in `cart-app`), a file
//! here for tests and development.
//!
//! A [`KeyEscrow`] wraps the same key to a backend recovery key, so the
//! payments it seals outlive the TPM (`ledger::recovery`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

/// A data-key failure. The ledger refuses to open without its key: card data
/// it cannot unseal would be stranded.
#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    /// The key's backing store could not be read or written.
    #[error("data key I/O at {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The stored key has the wrong size or format.
    #[error("data key at {path} is corrupt: {detail}")]
    Corrupt {
        /// Where.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The device (TPM) refused to unseal.
    #[error("data key device: {0}")]
    Device(String),
    /// Wrapping the key to a recovery key failed: the ledger keeps no
    /// recovered copy for that key; the daemon logs it and sells on.
    #[error("data key escrow: {0}")]
    Escrow(String),
}

/// Where the 256-bit data key comes from.
pub trait DataKey: Send {
    /// Returns the key, creating and storing it on first use.
    fn load_or_create(&mut self) -> Result<Zeroizing<[u8; 32]>, DataKeyError>;
}

/// Wraps the data key to a recovery key held by the backend (ECIES on
/// P-256 in `cart-app`, with `hal`'s code): the ledger keeps the wrapped
/// copy, and the backend can unwrap it if the TPM that seals the key dies.
pub trait KeyEscrow {
    /// A stable id of the recovery key (which wrapped copy is whose).
    fn key_id(&self) -> String;
    /// Wraps `key`, bound to `context` (the ledger's id): the wrapped copy
    /// opens only for that ledger.
    fn wrap(&self, key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, DataKeyError>;
}

/// A data key kept in a 0600 file: for tests and development only (the key
/// sits in the clear next to the data it protects).
#[derive(Debug)]
pub struct FileDataKey {
    path: PathBuf,
}

impl FileDataKey {
    /// A key file at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileDataKey {
            path: path.as_ref().to_path_buf(),
        }
    }

    fn io(&self, source: std::io::Error) -> DataKeyError {
        DataKeyError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl DataKey for FileDataKey {
    fn load_or_create(&mut self) -> Result<Zeroizing<[u8; 32]>, DataKeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        match fs::read(&self.path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 32 {
                    return Err(DataKeyError::Corrupt {
                        path: self.path.display().to_string(),
                        detail: format!("{} bytes, expected 32", bytes.len()),
                    });
                }
                key.copy_from_slice(&bytes);
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                rand::rng().fill_bytes(key.as_mut());
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&self.path)
                    .map_err(|e| self.io(e))?;
                f.write_all(key.as_ref())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| self.io(e))?;
                Ok(key)
            }
            Err(e) => Err(self.io(e)),
        }
    }
}

/// Card data failed to unseal: wrong key or damaged bytes.
#[derive(Debug, thiserror::Error)]
#[error("sealed card data does not open with this ledger's data key")]
pub struct UnsealError;

/// AES-256-GCM sealing with a random 96-bit nonce; layout `nonce || ct+tag`.
pub(crate) struct Sealer {
    cipher: Aes256Gcm,
    /// The key itself, for [`KeyEscrow::wrap`] (zeroized on drop).
    key: Zeroizing<[u8; 32]>,
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Sealer {
            cipher: Aes256Gcm::new(key.into()),
            key: Zeroizing::new(*key),
        }
    }

    /// The data key (to wrap it for recovery).
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Seals `plain`, binding `aad` (the payment key) so a sealed blob cannot
    /// be moved to another row.
    pub(crate) fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            // Encryption only fails for plaintexts over 64 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub(crate) fn open(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
        if sealed.len() < 12 + 16 {
            return Err(UnsealError);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| UnsealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_key_is_created_0600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k1 = FileDataKey::new(&p).load_or_create().unwrap();
        let k2 = FileDataKey::new(&p).load_or_create().unwrap();
        assert_eq!(*k1, *k2);
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn seal_binds_aad() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal(b"secret", b"row-1");
        assert_eq!(&**s.open(&sealed, b"row-1").unwrap(), b"secret");
        assert!(s.open(&sealed, b"row-2").is_err());
        assert!(s.open(&sealed[..10], b"row-1").is_err());
        assert!(Sealer::new(&[8; 32]).open(&sealed, b"row-1").is_err());
    }
}
