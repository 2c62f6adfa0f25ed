//! A PKCS#10 certificate signing request signed by the device identity:
//! rcgen builds and encodes it, the identity (the TPM) signs it, so the
//! private key is never needed outside the TPM.

use rcgen::{CertificateParams, DnType, PublicKeyData, SignatureAlgorithm, SigningKey};

use super::{DeviceIdentity, IdentityError};

/// An identity seen by rcgen as a remote signer.
///
/// `der_bytes` is the raw SEC1 point (rcgen wraps it into the SPKI) and
/// `sign` returns the DER `ECDSA-Sig-Value` over SHA-256(message), as
/// X.509's `ecdsa-with-SHA256` wants.
#[derive(Debug, Clone, Copy)]
pub struct RcgenSigner<'a> {
    identity: &'a dyn DeviceIdentity,
}

impl<'a> RcgenSigner<'a> {
    /// Wraps an identity.
    pub fn new(identity: &'a dyn DeviceIdentity) -> Self {
        RcgenSigner { identity }
    }
}

impl PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.identity.public_key_sec1()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.identity.sign_message(msg).map_err(|e| {
            tracing::warn!(cause = %e, "identity could not sign the CSR");
            rcgen::Error::RemoteKeyError
        })
    }
}

/// A CSR, DER and PEM.
#[derive(Debug, Clone)]
pub struct Csr {
    /// DER (`CertificationRequest`).
    pub der: Vec<u8>,
    /// PEM (`CERTIFICATE REQUEST`), as AWS IoT's create-from-csr wants.
    pub pem: String,
}

/// A CSR with subject CN = `cart_id`, signed by `identity`.
pub fn build(identity: &dyn DeviceIdentity, cart_id: &str) -> Result<Csr, IdentityError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cart_id);
    let request = params.serialize_request(&RcgenSigner::new(identity))?;
    Ok(Csr {
        der: request.der().to_vec(),
        pem: request.pem()?,
    })
}
