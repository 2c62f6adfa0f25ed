//! The e-receipt page's check of a receipt URL, as the backend runs it
//! when a shopper opens the receipt's QR code: the signature against the
//! certificate of the cart the receipt names, then the payment it names as
//! the backend knows it (same cart, same amount). An offline approval the
//! cart has not forwarded yet is genuine but not known yet.

use store_and_forward::payment::BackendOutcome;
use store_and_forward::wire::receipt::{ReceiptClaim, ReceiptError, SignedReceipt};

use crate::counts::PaymentView;

/// A receipt that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptVerdict {
    /// What it says.
    pub claim: ReceiptClaim,
    /// The backend's view of its payment: `None` until the cart forwards
    /// an offline approval.
    pub payment: Option<PaymentView>,
    /// The backend charged it.
    pub charged: bool,
}

/// Why a receipt was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptRefused {
    /// The URL or its signature (see the cause).
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// This backend issued no certificate to the cart the receipt names.
    #[error("no certificate issued to cart {0}")]
    NoCertificate(String),
    /// The certificate does not parse.
    #[error("the cart's certificate: {0}")]
    Certificate(String),
    /// The certificate is another cart's.
    #[error("the receipt names cart {claimed}, the certificate is {certificate}'s")]
    OtherCart {
        /// On the receipt.
        claimed: String,
        /// The certificate's CN.
        certificate: String,
    },
    /// The backend knows the payment with another amount.
    #[error("the receipt says {claimed}, the backend has {known}")]
    Amount {
        /// On the receipt.
        claimed: String,
        /// At the backend.
        known: String,
    },
}

/// Checks `url` against the cart's certificate (DER) and `payments`.
pub fn check(
    url: &str,
    certificate: &[u8],
    payments: &[PaymentView],
) -> Result<ReceiptVerdict, ReceiptRefused> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|e| ReceiptRefused::Certificate(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let receipt = SignedReceipt::parse(url)?;
    let claim = receipt
        .verified(&cert.public_key().subject_public_key.data)?
        .clone();
    if claim.cart_id != cn {
        return Err(ReceiptRefused::OtherCart {
            claimed: claim.cart_id,
            certificate: cn,
        });
    }
    let key = claim.key.to_string();
    let payment = payments
        .iter()
        .find(|p| p.cart == claim.cart_id && p.key == key)
        .cloned();
    if let Some(known) = payment.as_ref().and_then(|p| p.amount)
        && known != claim.amount
    {
        return Err(ReceiptRefused::Amount {
            claimed: claim.amount.to_string(),
            known: known.to_string(),
        });
    }
    let charged = payment
        .as_ref()
        .is_some_and(|p| matches!(p.outcome, Some(BackendOutcome::Approved { .. })));
    Ok(ReceiptVerdict {
        claim,
        payment,
        charged,
    })
}
