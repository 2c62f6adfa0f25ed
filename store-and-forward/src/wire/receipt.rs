//! The receipt a shopper keeps: the QR code on the receipt screen is an
//! e-receipt URL (the store's, from the cart's config) naming the payment
//! and carrying the cart's signature over it, made with the device key
//! after the payment was committed. The backend (or anyone with the cart's
//! certificate) checks the signature, so a receipt cannot be made up for a
//! payment the cart never approved, nor its amount changed.
//!
//! ```text
//! https://receipts.example.com/r?v=1&c=cart-0001&k=<payment key>&a=1234&cur=EUR&m=off&s=<signature>
//! ```
//!
//! The signed message is the claim's fields, one per line (see
//! [`ReceiptClaim::signed_message`]); the signature is ECDSA P-256 over its
//! SHA-256, as 64 raw bytes (`r || s`) in unpadded base64url. Without a
//! signature (the key could not sign), `s` is left out: the receipt still
//! names the payment, and the backend shows it as unverified.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Currency, Money, PaymentKey};

/// The version of the receipt URL and its signed message.
pub const RECEIPT_VERSION: u32 = 1;

/// Why a receipt URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    /// The configured base is not an absolute URL.
    #[error("receipt URL base {0:?} is not an absolute URL")]
    BadBase(String),
    /// Not a URL.
    #[error("not a URL: {0}")]
    NotAUrl(String),
    /// A field is missing.
    #[error("receipt URL without {0}")]
    Missing(&'static str),
    /// A field does not parse.
    #[error("receipt URL field {field}: {value:?} is not valid")]
    Invalid {
        /// The query parameter.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// Another version of the format.
    #[error("receipt URL version {0} is not {RECEIPT_VERSION}")]
    Version(String),
    /// The URL carries no signature.
    #[error("the receipt is not signed")]
    Unsigned,
    /// The signature does not match the claim and the cart's key.
    #[error("the receipt's signature does not verify")]
    BadSignature,
}

/// What a receipt says: which cart took which payment, for how much, and
/// whether it was approved offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptClaim {
    /// The cart (its certificate's CN).
    pub cart_id: String,
    /// The payment's key.
    pub key: PaymentKey,
    /// The amount paid.
    pub amount: Money,
    /// Approved offline by the cart's policy (the backend learns it later).
    pub offline: bool,
}

/// A receipt URL read back: the claim and its signature, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// What the receipt says.
    pub claim: ReceiptClaim,
    /// `r || s`, when signed.
    pub signature: Option<[u8; 64]>,
}

/// Checks a configured base: an absolute URL a query can be added to.
pub fn check_base(base: &str) -> Result<(), ReceiptError> {
    base_url(base).map(drop)
}

fn base_url(base: &str) -> Result<url::Url, ReceiptError> {
    match url::Url::parse(base) {
        Ok(u) if !u.cannot_be_a_base() && matches!(u.scheme(), "https" | "http") => Ok(u),
        _ => Err(ReceiptError::BadBase(base.to_owned())),
    }
}

impl ReceiptClaim {
    /// The bytes the cart signs: the format's name and version, then each
    /// field on its own line.
    pub fn signed_message(&self) -> Vec<u8> {
        format!(
            "cart-receipt/{RECEIPT_VERSION}\n{}\n{}\n{}\n{}\n{}",
            self.cart_id,
            self.key,
            self.amount.minor,
            self.amount.currency.as_str(),
            if self.offline { "offline" } else { "online" },
        )
        .into_bytes()
    }

    /// The receipt URL under `base` (an absolute URL, its own query kept),
    /// with `signature` (`r || s`) when there is one.
    pub fn url(&self, base: &str, signature: Option<&[u8; 64]>) -> Result<String, ReceiptError> {
        let mut url = base_url(base)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("v", &RECEIPT_VERSION.to_string())
                .append_pair("c", &self.cart_id)
                .append_pair("k", &self.key.to_string())
                .append_pair("a", &self.amount.minor.to_string())
                .append_pair("cur", self.amount.currency.as_str())
                .append_pair("m", if self.offline { "off" } else { "on" });
            if let Some(sig) = signature {
                q.append_pair("s", &URL_SAFE_NO_PAD.encode(sig));
            }
        }
        Ok(url.into())
    }

    /// Whether `signature` (`r || s`) is this claim's, made by the key
    /// whose public point (SEC1, uncompressed) is `public_key`.
    pub fn verify(&self, signature: &[u8; 64], public_key: &[u8]) -> Result<(), ReceiptError> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            public_key,
        )
        .verify(&self.signed_message(), signature)
        .map_err(|_| ReceiptError::BadSignature)
    }
}

impl SignedReceipt {
    /// Reads a receipt URL back (the backend's side).
    pub fn parse(text: &str) -> Result<SignedReceipt, ReceiptError> {
        let url = url::Url::parse(text).map_err(|_| ReceiptError::NotAUrl(text.to_owned()))?;
        let get = |name: &'static str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let need = |name: &'static str| get(name).ok_or(ReceiptError::Missing(name));
        let invalid = |field: &'static str, value: &str| ReceiptError::Invalid {
            field,
            value: value.to_owned(),
        };
        let version = need("v")?;
        if version != RECEIPT_VERSION.to_string() {
            return Err(ReceiptError::Version(version));
        }
        let cart_id = need("c")?;
        let key = need("k")?;
        let key = PaymentKey::parse(&key).map_err(|_| invalid("k", &key))?;
        let minor = need("a")?;
        let minor: i64 = minor.parse().map_err(|_| invalid("a", &minor))?;
        let currency = need("cur")?;
        let currency: Currency = currency.parse().map_err(|_| invalid("cur", &currency))?;
        let offline = match need("m")?.as_str() {
            "off" => true,
            "on" => false,
            other => return Err(invalid("m", other)),
        };
        let signature = match get("s") {
            None => None,
            Some(s) => Some(
                URL_SAFE_NO_PAD
                    .decode(s.as_bytes())
                    .ok()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .ok_or_else(|| invalid("s", &s))?,
            ),
        };
        Ok(SignedReceipt {
            claim: ReceiptClaim {
                cart_id,
                key,
                amount: Money::new(minor, currency),
                offline,
            },
            signature,
        })
    }

    /// The claim, when its signature verifies against `public_key` (SEC1).
    pub fn verified(&self, public_key: &[u8]) -> Result<&ReceiptClaim, ReceiptError> {
        let sig = self.signature.as_ref().ok_or(ReceiptError::Unsigned)?;
        self.claim.verify(sig, public_key)?;
        Ok(&self.claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn claim() -> ReceiptClaim {
        ReceiptClaim {
            cart_id: "cart-0001".into(),
            key: PaymentKey::parse("01a2385e-2640-761f-9ab1-6c2d0e4f5a6b").unwrap(),
            amount: Money::new(1234, "EUR".parse().unwrap()),
            offline: true,
        }
    }

    fn key_pair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn sign(kp: &EcdsaKeyPair, c: &ReceiptClaim) -> [u8; 64] {
        let sig = kp.sign(&SystemRandom::new(), &c.signed_message()).unwrap();
        sig.as_ref().try_into().unwrap()
    }

    #[test]
    fn the_signed_message_is_frozen() {
        assert_eq!(
            String::from_utf8(claim().signed_message()).unwrap(),
            "cart-receipt/1\ncart-0001\n01a2385e-2640-761f-9ab1-6c2d0e4f5a6b\n1234\nEUR\noffline"
        );
    }

    #[test]
    fn a_signed_url_reads_back_and_verifies() {
        let kp = key_pair();
        let sig = sign(&kp, &claim());
        let url = claim()
            .url("https://receipts.example.com/r?store=12", Some(&sig))
            .unwrap();
        assert!(
            url.starts_with("https://receipts.example.com/r?store=12&v=1&c=cart-0001&k=01a2385e-2640-761f-9ab1-6c2d0e4f5a6b&a=1234&cur=EUR&m=off&s="),
            "{url}"
        );
        let back = SignedReceipt::parse(&url).unwrap();
        assert_eq!(back.claim, claim());
        assert_eq!(back.verified(kp.public_key().as_ref()), Ok(&claim()));
    }

    #[test]
    fn a_changed_amount_or_another_key_does_not_verify() {
        let kp = key_pair();
        let sig = sign(&kp, &claim());
        let url = claim().url("https://r.example/", Some(&sig)).unwrap();
        let forged = url.replace("a=1234", "a=12");
        let back = SignedReceipt::parse(&forged).unwrap();
        assert_eq!(
            back.verified(kp.public_key().as_ref()),
            Err(ReceiptError::BadSignature)
        );
        let other = key_pair();
        let back = SignedReceipt::parse(&url).unwrap();
        assert_eq!(
            back.verified(other.public_key().as_ref()),
            Err(ReceiptError::BadSignature)
        );
        let unsigned = claim().url("https://r.example/", None).unwrap();
        assert_eq!(
            SignedReceipt::parse(&unsigned)
                .unwrap()
                .verified(kp.public_key().as_ref()),
            Err(ReceiptError::Unsigned)
        );
    }

    #[test]
    fn bad_urls_are_typed_errors() {
        for base in ["receipts", "mailto:shop@example.com", "ftp://r.example/"] {
            assert!(
                matches!(claim().url(base, None), Err(ReceiptError::BadBase(_))),
                "{base}"
            );
        }
        assert!(matches!(
            SignedReceipt::parse("not a url"),
            Err(ReceiptError::NotAUrl(_))
        ));
        let good = claim().url("https://r.example/", None).unwrap();
        for (from, to, want) in [
            ("v=1", "v=2", "version"),
            ("a=1234", "a=x", "field a"),
            ("cur=EUR", "cur=EU", "field cur"),
            ("m=off", "m=maybe", "field m"),
            ("&k=", "&kk=", "without k"),
        ] {
            let e = SignedReceipt::parse(&good.replace(from, to)).unwrap_err();
            assert!(e.to_string().contains(want), "{from}: {e}");
        }
        let e = SignedReceipt::parse(&format!("{good}&s=abc")).unwrap_err();
        assert!(e.to_string().contains("field s"), "{e}");
    }
}
