//! The cart's device identity: one ECDSA P-256 key per cart whose private
//! half never leaves its TPM.
//!
//! - [`DeviceIdentity`]: the trait the rest of the cart signs through.
//! - [`tpm`]: [`tpm::Tpm`], the one owner of the TPM context (a dedicated
//!   thread with a request channel), the device key ([`tpm::TpmIdentity`]),
//!   the ledger's NV counter ([`tpm::TpmCounter`]) and the sealed data key.
//! - [`software`]: [`software::SoftwareIdentity`], a key in a file for
//!   development and the demo only; refused unless the config allows it.
//! - [`csr`]: a PKCS#10 certificate signing request signed by any identity
//!   (rcgen with the identity as its signer).
//! - [`recovery`]: the fleet's recovery key, to which the ledger's data key
//!   is wrapped so a dead TPM does not strand offline payments.
//!
//! See `docs/identity.md` for the handles, the key template and how to
//! inspect a cart's TPM with tpm2-tools.

pub mod csr;
pub mod recovery;
pub mod software;
pub mod tpm;

use std::fmt;
use std::path::PathBuf;

use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};

/// An identity failure. None of them is recoverable by retrying blindly:
/// the daemon reports the error and stays offline-capable without the
/// uplink (payments are still taken and stored).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The configured TCTI string is not one tpm2-tss understands: fix the
    /// `tcti` setting (`device:/dev/tpmrm0` on the cart).
    #[error("invalid TCTI {tcti:?}: {source}")]
    Tcti {
        /// The configured string.
        tcti: String,
        /// tss-esapi's reason.
        #[source]
        source: tss_esapi::Error,
    },
    /// A TPM command failed (no TPM, resource manager down, object missing,
    /// refused authorization). Reported with the operation; the caller
    /// retries at its next start or reconnect.
    #[error("TPM {op}: {source}")]
    Tpm {
        /// What we were doing.
        op: &'static str,
        /// tss-esapi's error (a TPM response code or a wrapper error).
        #[source]
        source: tss_esapi::Error,
    },
    /// The object at a documented handle is not what we put there (another
    /// program used the handle): the cart refuses to use or overwrite it;
    /// a technician inspects it with tpm2-tools.
    #[error("TPM handle {handle:#010x} holds an unexpected object: {detail}")]
    Unexpected {
        /// The persistent handle or NV index.
        handle: u32,
        /// What is wrong.
        detail: &'static str,
    },
    /// A handle outside the TPM's persistent or NV range was configured:
    /// fix the config.
    #[error("{handle:#010x} is not a valid {kind}")]
    BadHandle {
        /// The configured value.
        handle: u32,
        /// Persistent handle or NV index.
        kind: &'static str,
    },
    /// The TPM did not answer in time (a hung TPM or resource manager):
    /// the operation is reported failed and the caller goes on (a TLS
    /// handshake fails and is retried with backoff; a counter increment
    /// pauses offline approval until the counter is repaired).
    #[error("TPM {op}: no answer within {after_ms} ms")]
    TpmTimeout {
        /// What we were doing.
        op: &'static str,
        /// How long the caller waited.
        after_ms: u64,
    },
    /// The TPM owner thread is gone (it panicked or could not start): the
    /// daemon restarts the identity with a new [`tpm::Tpm`].
    #[error("the TPM owner thread has stopped")]
    OwnerGone,
    /// The TPM owner thread could not be started (out of threads or
    /// memory): the daemon exits and systemd restarts it.
    #[error("cannot start the TPM owner thread: {0}")]
    OwnerStart(#[source] std::io::Error),
    /// The software key file could not be read or written.
    #[error("identity key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The software key file holds no usable P-256 key: delete it to make a
    /// new one (development only).
    #[error("identity key file {path} is not a P-256 PKCS#8 key")]
    KeyFile {
        /// The file.
        path: PathBuf,
    },
    /// The software identity was asked for without the config allowing it:
    /// the daemon refuses to start (set `allow_software_identity` only on
    /// development and demo machines).
    #[error(
        "software identity refused: it is not secure; set allow_software_identity = true only for development or the demo"
    )]
    SoftwareNotAllowed,
    /// The key or signature has a shape we cannot encode (a TPM answering
    /// with another curve or scheme): the key is unusable; replace it.
    #[error("malformed key material: {0}")]
    Malformed(&'static str),
    /// Building the CSR failed.
    #[error("certificate signing request: {0}")]
    Csr(#[from] rcgen::Error),
}

/// The cart's device identity: an ECDSA P-256 key that signs SHA-256
/// digests. Implemented by the TPM ([`tpm::TpmIdentity`]) and, for
/// development only, by a key file ([`software::SoftwareIdentity`]).
///
/// Signing may take tens of milliseconds on a discrete TPM and blocks the
/// calling thread until the TPM answers: call it from a thread that may
/// block (the uplink's own thread, `spawn_blocking`), never from an async
/// task others wait on.
pub trait DeviceIdentity: Send + Sync + fmt::Debug {
    /// The public key as an uncompressed SEC1 point: `04 || X || Y`, 65 bytes.
    fn public_key_sec1(&self) -> &[u8];

    /// Signs a SHA-256 digest; returns a DER `ECDSA-Sig-Value`.
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, IdentityError>;

    /// Where the key lives, for logs and the status page (never secret).
    fn describe(&self) -> String;

    /// Whether the private key is protected by hardware (false for the
    /// software identity).
    fn is_hardware_backed(&self) -> bool;

    /// The public key as a DER `SubjectPublicKeyInfo`.
    fn public_key_spki_der(&self) -> Result<Vec<u8>, IdentityError> {
        spki_der_from_sec1(self.public_key_sec1())
    }

    /// Signs SHA-256(`message`); returns a DER `ECDSA-Sig-Value`.
    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        self.sign_digest(&digest)
    }
}

/// A P-256 SEC1 point to a DER `SubjectPublicKeyInfo`.
pub fn spki_der_from_sec1(sec1: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let key = p256::PublicKey::from_sec1_bytes(sec1)
        .map_err(|_| IdentityError::Malformed("public key is not a P-256 point"))?;
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| IdentityError::Malformed("public key does not encode as SPKI"))
}

/// Left-pads a big-endian integer to 32 bytes (the TPM strips leading zeros).
pub(crate) fn pad32(bytes: &[u8]) -> Result<[u8; 32], IdentityError> {
    let trimmed = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => &[][..],
    };
    if trimmed.len() > 32 {
        return Err(IdentityError::Malformed("integer longer than 32 bytes"));
    }
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(trimmed);
    Ok(out)
}

/// An ECDSA P-256 signature's r and s (big-endian) to a DER `ECDSA-Sig-Value`.
pub fn der_signature_from_rs(r: &[u8], s: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let sig = p256::ecdsa::Signature::from_scalars(pad32(r)?, pad32(s)?)
        .map_err(|_| IdentityError::Malformed("signature scalars out of range"))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

/// An uncompressed SEC1 point from affine X and Y (big-endian).
pub(crate) fn sec1_from_xy(x: &[u8], y: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let mut out = Vec::with_capacity(65);
    out.push(0x04);
    out.extend_from_slice(&pad32(x)?);
    out.extend_from_slice(&pad32(y)?);
    // Refuse a point that is not on the curve now rather than at first use.
    p256::PublicKey::from_sec1_bytes(&out)
        .map_err(|_| IdentityError::Malformed("TPM public key is not a P-256 point"))?;
    Ok(out)
}

/// Verifies a DER ECDSA P-256 signature over SHA-256(`message`) against a
/// SEC1 public key (tests, and checking a key after creating it).
pub fn verify_message(sec1: &[u8], message: &[u8], der_sig: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1) else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::Signature::from_der(der_sig) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad32_left_pads_and_strips_leading_zeros() {
        assert_eq!(pad32(&[1, 2]).unwrap()[30..], [1, 2]);
        let mut long = vec![0u8; 3];
        long.extend_from_slice(&[7u8; 32]);
        assert_eq!(pad32(&long).unwrap(), [7u8; 32]);
        assert!(pad32(&[1u8; 33]).is_err());
    }

    #[test]
    fn signature_with_short_r_encodes_and_verifies() {
        use p256::ecdsa::{SigningKey, signature::Signer};
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let sec1 = key.verifying_key().to_encoded_point(false);
        for i in 0..64u8 {
            let msg = [i; 5];
            let sig: p256::ecdsa::Signature = key.sign(&msg);
            let (r, s) = sig.split_bytes();
            // As a TPM would hand them over: leading zeros stripped.
            let strip = |b: &[u8]| b[b.iter().position(|&x| x != 0).unwrap_or(0)..].to_vec();
            let der = der_signature_from_rs(&strip(&r), &strip(&s)).unwrap();
            assert!(verify_message(sec1.as_bytes(), &msg, &der));
            assert!(!verify_message(sec1.as_bytes(), b"other", &der));
        }
    }
}
