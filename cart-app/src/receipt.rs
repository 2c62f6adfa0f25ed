//! The receipt's QR code: the store's e-receipt URL naming the payment
//! (cart, key, amount, offline or online), signed with the cart's device
//! key (the TPM's, through the client certificate the uplink presents, so a
//! rotated key signs from its rotation on) after the decision was
//! committed. The format is `store_and_forward::wire::receipt`'s.
//!
//! Without a configured URL (`[store] receipt_url`), the code carries the
//! bare payment key, as the backend's receipt lookup takes it.

use std::sync::Arc;

use rustls::SignatureScheme;
use store_and_forward::uplink::SwappableClientCert;
use store_and_forward::wire::receipt::ReceiptClaim;
use store_and_forward::{Money, PaymentKey};
use tracing::{error, info, warn};

/// Signs receipts with the cart's current device key.
#[derive(Clone)]
pub struct ReceiptSigner {
    base_url: String,
    cart_id: String,
    cert: Arc<SwappableClientCert>,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("base_url", &self.base_url)
            .field("cart_id", &self.cart_id)
            .finish_non_exhaustive()
    }
}

/// Why a receipt could not be signed (the receipt goes unsigned; logged).
#[derive(Debug, thiserror::Error)]
pub enum ReceiptSignError {
    /// The key offers no ECDSA P-256 SHA-256 signer.
    #[error("the device key cannot sign ECDSA P-256 SHA-256")]
    NoScheme,
    /// The key failed to sign (the TPM's error).
    #[error("the device key failed to sign: {0}")]
    Sign(rustls::Error),
    /// The signature is not a DER ECDSA signature.
    #[error("the device key's signature is not DER ECDSA: {0}")]
    Der(p256::ecdsa::Error),
}

impl ReceiptSigner {
    /// Receipts under `base_url` (validated with the config) for `cart_id`,
    /// signed by whatever key `cert` holds when the receipt is made.
    pub fn new(base_url: &str, cart_id: &str, cert: Arc<SwappableClientCert>) -> ReceiptSigner {
        ReceiptSigner {
            base_url: base_url.to_owned(),
            cart_id: cart_id.to_owned(),
            cert,
        }
    }

    /// The claim for an approved payment.
    pub fn claim(&self, key: PaymentKey, amount: Money, offline: bool) -> ReceiptClaim {
        ReceiptClaim {
            cart_id: self.cart_id.clone(),
            key,
            amount,
            offline,
        }
    }

    /// Signs `claim` with the device key: `r || s`.
    pub fn sign(&self, claim: &ReceiptClaim) -> Result<[u8; 64], ReceiptSignError> {
        let current = self.cert.current();
        let signer = current
            .key
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .ok_or(ReceiptSignError::NoScheme)?;
        let der = signer
            .sign(&claim.signed_message())
            .map_err(ReceiptSignError::Sign)?;
        let sig = p256::ecdsa::Signature::from_der(&der).map_err(ReceiptSignError::Der)?;
        Ok(sig.to_bytes().into())
    }

    /// The QR code's text for an approved payment: the URL with the
    /// cart's signature, or without it when the key could not sign (an
    /// ERROR in the journal; the receipt still names the payment).
    pub fn code(&self, key: PaymentKey, amount: Money, offline: bool) -> String {
        let claim = self.claim(key, amount, offline);
        let signature = match self.sign(&claim) {
            Ok(s) => Some(s),
            Err(e) => {
                error!(payment_key = %key, cause = %e, "receipt not signed");
                None
            }
        };
        // The base was validated with the config; should it fail anyway,
        // the bare key still finds the receipt.
        let code = claim
            .url(&self.base_url, signature.as_ref())
            .unwrap_or_else(|e| {
                warn!(payment_key = %key, cause = %e, "receipt URL not made");
                key.to_string()
            });
        // What the QR code says (public: the shopper carries it away), for
        // support: the journal's RECEIPT field.
        info!(payment_key = %key, receipt = %code, signed = signature.is_some(), "receipt made");
        code
    }
}
