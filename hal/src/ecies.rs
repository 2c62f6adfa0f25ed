//! ECIES on P-256: ephemeral ECDH, HKDF-SHA256, AES-256-GCM. Two users:
//! the reader's card data encrypted to the payment processor
//! (`reader::carddata`, its own blob layout and known-answer vectors) and
//! the ledger's data key wrapped to the backend's recovery key
//! (`identity::recovery`).
//!
//! The AES key is HKDF-SHA256 with salt = `EPK || RPK` (both SEC1
//! uncompressed, 65 bytes each), IKM = the shared point's x-coordinate,
//! info = the caller's label, 32 bytes of output.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;
use zeroize::Zeroizing;

/// SEC1 uncompressed point length.
pub const EPK_LEN: usize = 65;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// An ECIES failure; it carries nothing of the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EciesError {
    /// A key, or the ephemeral key in a message, is not a valid P-256 key.
    #[error("invalid P-256 key")]
    BadKey,
    /// The ciphertext does not authenticate (altered, or another AAD).
    #[error("ciphertext does not authenticate")]
    Authentication,
}

/// The AES-256-GCM cipher for `secret` and `peer` (one of them ephemeral).
pub fn cipher(
    secret: &SecretKey,
    peer: &PublicKey,
    epk: &[u8],
    rpk: &[u8],
    info: &[u8],
) -> Result<Aes256Gcm, EciesError> {
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    let mut salt = Vec::with_capacity(2 * EPK_LEN);
    salt.extend_from_slice(epk);
    salt.extend_from_slice(rpk);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(info, okm.as_mut_slice())
        .map_err(|_| EciesError::BadKey)?;
    Aes256Gcm::new_from_slice(okm.as_slice()).map_err(|_| EciesError::BadKey)
}

/// Encrypts `plain` to `to` with a fresh ephemeral key and nonce; returns
/// `EPK (65) || nonce (12) || ciphertext || tag (16)`.
pub fn seal(to: &PublicKey, info: &[u8], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, EciesError> {
    let eph = SecretKey::random(&mut OsRng);
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let epk = eph.public_key().to_encoded_point(false);
    let rpk = to.to_encoded_point(false);
    let ct = cipher(&eph, to, epk.as_bytes(), rpk.as_bytes(), info)?
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| EciesError::Authentication)?;
    let mut out = Vec::with_capacity(EPK_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(epk.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts what [`seal`] made, with the recipient's private key.
pub fn open(
    with: &SecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EciesError> {
    if sealed.len() < EPK_LEN + NONCE_LEN + TAG_LEN {
        return Err(EciesError::Authentication);
    }
    let (epk_bytes, rest) = sealed.split_at(EPK_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let epk = PublicKey::from_sec1_bytes(epk_bytes).map_err(|_| EciesError::BadKey)?;
    let rpk = with.public_key().to_encoded_point(false);
    cipher(with, &epk, epk_bytes, rpk.as_bytes(), info)?
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| EciesError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_to_the_key_and_binds_info_and_aad() {
        let key = SecretKey::random(&mut OsRng);
        let sealed = seal(&key.public_key(), b"label", b"aad", b"secret").unwrap();
        assert_eq!(&**open(&key, b"label", b"aad", &sealed).unwrap(), b"secret");
        assert!(open(&key, b"other", b"aad", &sealed).is_err());
        assert!(open(&key, b"label", b"other", &sealed).is_err());
        assert!(open(&SecretKey::random(&mut OsRng), b"label", b"aad", &sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&key, b"label", b"aad", &bad).is_err());
        assert!(open(&key, b"label", b"aad", &sealed[..40]).is_err());
    }
}
