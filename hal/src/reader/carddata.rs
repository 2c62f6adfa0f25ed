//! Card-data encryption (docs/reader-protocol.md, section 7.2): the reader
//! encrypts the card data to the payment processor's P-256 public key; only
//! the processor (in tests: the backend emulator) can decrypt it.
//!
//! Scheme, version 1:
//! - ephemeral ECDH on P-256 with the processor's public key; `Z` = the
//!   shared point's x-coordinate (32 bytes);
//! - HKDF-SHA256, salt = `EPK || PPK` (both SEC1 uncompressed, 65 bytes
//!   each), IKM = `Z`, info = `"cart-reader card data v1"`, 32 bytes of
//!   output = the AES-256-GCM key;
//! - AES-256-GCM with a random 96-bit nonce; AAD = `0x01 || key_id ||
//!   idempotency key || amount (u64 BE) || currency (3 ASCII)`, so a blob
//!   cannot be replayed under another payment or amount.
//!
//! Blob: `0x01 | key_id (u32 BE) | EPK (65) | nonce (12) | ciphertext || tag (16)`.
//!
//! The key agreement and derivation are `crate::ecies`'s (shared with the
//! ledger data key's recovery copy); the blob layout and AAD are this
//! module's.

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::message::{Currency, EntryMode};
use super::wire;

/// Blob layout version.
pub const BLOB_VERSION: u8 = 0x01;
/// HKDF info string of version 1.
pub const HKDF_INFO: &[u8] = b"cart-reader card data v1";
const EPK_LEN: usize = 65;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + 4 + EPK_LEN + NONCE_LEN;

/// Errors of the card-data encryption. None of them carries card data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CardDataError {
    /// The blob is shorter than its fixed parts: the processor rejects the
    /// payment's card data.
    #[error("card data blob too short")]
    TooShort,
    /// The blob's version byte is not one this code knows.
    #[error("card data blob version {0} not supported")]
    UnsupportedVersion(u8),
    /// The blob was made for another processor key: look the key up by id.
    #[error("card data blob is for key {blob}, this key is {ours}")]
    WrongKey {
        /// Key id in the blob.
        blob: u32,
        /// Key id of the key given.
        ours: u32,
    },
    /// A key or the blob's ephemeral key is not a valid P-256 key.
    #[error("invalid P-256 key")]
    BadKey,
    /// Authentication failed: the blob was altered, or the idempotency key,
    /// amount or currency differ from the ones it was made for.
    #[error("card data does not authenticate")]
    Authentication,
    /// The decrypted plaintext is malformed.
    #[error("card data plaintext malformed")]
    Malformed,
}

/// The payment a blob is bound to (its AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The payment attempt's idempotency key.
    pub key: Uuid,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Currency.
    pub currency: Currency,
}

/// The processor's public key, with the id the reader puts in each blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorPublicKey {
    /// Key id.
    pub key_id: u32,
    /// The P-256 point.
    pub key: PublicKey,
}

/// The processor's private key (held by the backend emulator in tests).
#[derive(Clone)]
pub struct ProcessorPrivateKey {
    /// Key id.
    pub key_id: u32,
    /// The P-256 scalar (zeroized on drop by `p256`).
    pub key: SecretKey,
}

impl std::fmt::Debug for ProcessorPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessorPrivateKey(key_id={}, ..)", self.key_id)
    }
}

impl ProcessorPrivateKey {
    /// The matching public key.
    pub fn public(&self) -> ProcessorPublicKey {
        ProcessorPublicKey {
            key_id: self.key_id,
            key: self.key.public_key(),
        }
    }
}

/// The card data inside a blob. Zeroized on drop; `Debug` prints none of it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct CardData {
    /// Primary account number, 12 to 19 digits.
    pub pan: String,
    /// Expiry, `YYMM`.
    pub expiry: [u8; 4],
    /// PAN sequence number (EMV tag 5F34), if the card has one.
    pub psn: Option<u8>,
    /// Chip or contactless.
    #[zeroize(skip)]
    pub entry_mode: EntryMode,
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardData(redacted)")
    }
}

impl CardData {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(32));
        // The PAN is at most 19 digits (checked by the reader before use).
        v.push(self.pan.len().min(255) as u8);
        v.extend_from_slice(self.pan.as_bytes());
        v.extend_from_slice(&self.expiry);
        v.push(self.psn.unwrap_or(0xFF));
        v.push(wire::entry_byte(self.entry_mode));
        v
    }

    fn decode(b: &[u8]) -> Result<Self, CardDataError> {
        let (&n, rest) = b.split_first().ok_or(CardDataError::Malformed)?;
        let n = usize::from(n);
        if rest.len() < n + 6 {
            return Err(CardDataError::Malformed);
        }
        let pan = std::str::from_utf8(&rest[..n])
            .map_err(|_| CardDataError::Malformed)?
            .to_owned();
        let mut expiry = [0u8; 4];
        expiry.copy_from_slice(&rest[n..n + 4]);
        let psn = Some(rest[n + 4]).filter(|&p| p != 0xFF);
        let entry_mode = wire::entry_from(rest[n + 5]).ok_or(CardDataError::Malformed)?;
        Ok(CardData {
            pan,
            expiry,
            psn,
            entry_mode,
        })
    }
}

fn aad(version: u8, key_id: u32, b: &Binding) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.push(version);
    v.extend_from_slice(&key_id.to_be_bytes());
    v.extend_from_slice(b.key.as_bytes());
    v.extend_from_slice(&b.amount_minor.to_be_bytes());
    v.extend_from_slice(&b.currency.bytes());
    v
}

fn derive_key(
    secret: &SecretKey,
    peer: &PublicKey,
    epk: &[u8],
    ppk: &[u8],
) -> Result<Aes256Gcm, CardDataError> {
    crate::ecies::cipher(secret, peer, epk, ppk, HKDF_INFO).map_err(|_| CardDataError::BadKey)
}

/// Encrypts card data to the processor with a fresh ephemeral key and nonce.
pub fn encrypt(
    to: &ProcessorPublicKey,
    binding: &Binding,
    data: &CardData,
) -> Result<Vec<u8>, CardDataError> {
    let eph = SecretKey::random(&mut OsRng);
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    encrypt_with(to, binding, data, &eph, nonce.into())
}

/// [`encrypt`] with a given ephemeral key and nonce: for known-answer tests
/// only; never reuse either in production.
pub fn encrypt_with(
    to: &ProcessorPublicKey,
    binding: &Binding,
    data: &CardData,
    ephemeral: &SecretKey,
    nonce: [u8; 12],
) -> Result<Vec<u8>, CardDataError> {
    let epk = ephemeral.public_key().to_encoded_point(false);
    let ppk = to.key.to_encoded_point(false);
    let cipher = derive_key(ephemeral, &to.key, epk.as_bytes(), ppk.as_bytes())?;
    let aad = aad(BLOB_VERSION, to.key_id, binding);
    let plain = data.encode();
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| CardDataError::Authentication)?;
    let mut blob = Vec::with_capacity(HEADER_LEN + ct.len());
    blob.push(BLOB_VERSION);
    blob.extend_from_slice(&to.key_id.to_be_bytes());
    blob.extend_from_slice(epk.as_bytes());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(blob)
}

/// Decrypts a blob with the processor's private key, checking it was made for
/// this payment (`binding`).
pub fn decrypt(
    with: &ProcessorPrivateKey,
    binding: &Binding,
    blob: &[u8],
) -> Result<CardData, CardDataError> {
    if blob.len() < HEADER_LEN + TAG_LEN {
        return Err(CardDataError::TooShort);
    }
    if blob[0] != BLOB_VERSION {
        return Err(CardDataError::UnsupportedVersion(blob[0]));
    }
    let key_id = u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]);
    if key_id != with.key_id {
        return Err(CardDataError::WrongKey {
            blob: key_id,
            ours: with.key_id,
        });
    }
    let epk_bytes = &blob[5..5 + EPK_LEN];
    let nonce = &blob[5 + EPK_LEN..HEADER_LEN];
    let epk = PublicKey::from_sec1_bytes(epk_bytes).map_err(|_| CardDataError::BadKey)?;
    let ppk = with.key.public_key().to_encoded_point(false);
    let cipher = derive_key(&with.key, &epk, epk_bytes, ppk.as_bytes())?;
    let aad = aad(BLOB_VERSION, key_id, binding);
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &blob[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CardDataError::Authentication)?,
    );
    CardData::decode(&plain)
}
