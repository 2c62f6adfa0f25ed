//! The device key: ECC P-256, sign only, made inside the TPM and kept at a
//! persistent handle. Its private half never leaves the TPM.

use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{Digest, HashcheckTicket, Public, Signature, SignatureScheme};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use super::session::{self, Protect};
use super::{Tpm, objects, tpm_err};
use crate::identity::{DeviceIdentity, IdentityError, der_signature_from_rs, sec1_from_xy};

/// The device key at a persistent handle of the TPM.
#[derive(Debug, Clone)]
pub struct TpmIdentity {
    tpm: Tpm,
    handle: u32,
    sec1: Vec<u8>,
}

impl TpmIdentity {
    /// The persistent handle the key lives at.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The TPM this key lives in.
    pub fn tpm(&self) -> &Tpm {
        &self.tpm
    }
}

/// Checks that a public area is our kind of device key and returns its
/// SEC1 point. Anything else at our handle is refused, never overwritten.
fn device_public(handle: u32, public: &Public) -> Result<Vec<u8>, IdentityError> {
    let Public::Ecc {
        object_attributes: a,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err(IdentityError::Unexpected {
            handle,
            detail: "not an ECC key",
        });
    };
    if parameters.ecc_curve() != EccCurve::NistP256 {
        return Err(IdentityError::Unexpected {
            handle,
            detail: "not on curve P-256",
        });
    }
    if !(a.sign_encrypt() && !a.decrypt() && !a.restricted()) {
        return Err(IdentityError::Unexpected {
            handle,
            detail: "not an unrestricted sign-only key",
        });
    }
    if !(a.fixed_tpm() && a.fixed_parent() && a.sensitive_data_origin()) {
        return Err(IdentityError::Unexpected {
            handle,
            detail: "key may have been made or kept outside the TPM",
        });
    }
    sec1_from_xy(unique.x().value(), unique.y().value())
}

pub(super) fn load(tpm: &Tpm, handle: u32) -> Result<Option<TpmIdentity>, IdentityError> {
    let sec1 = tpm.call("read the device key", move |s| {
        if !objects::exists(s, handle)? {
            return Ok(None);
        }
        let public = objects::read_public(s, handle)?;
        device_public(handle, &public).map(Some)
    })?;
    Ok(sec1.map(|sec1| TpmIdentity {
        tpm: tpm.clone(),
        handle,
        sec1,
    }))
}

pub(super) fn load_or_create(tpm: &Tpm, handle: u32) -> Result<TpmIdentity, IdentityError> {
    let (sec1, created) = tpm.call_create("open or create the device key", move |s| {
        if objects::exists(s, handle)? {
            let public = objects::read_public(s, handle)?;
            return Ok((device_public(handle, &public)?, false));
        }
        let template = objects::device_key_template().map_err(tpm_err("build the key template"))?;
        objects::create_persistent(s, handle, template, None)?;
        let public = objects::read_public(s, handle)?;
        Ok((device_public(handle, &public)?, true))
    })?;
    if created {
        tracing::info!(
            handle = format_args!("{handle:#010x}"),
            "device key created in the TPM"
        );
    }
    Ok(TpmIdentity {
        tpm: tpm.clone(),
        handle,
        sec1,
    })
}

fn sign(
    s: &mut super::owner::State,
    handle: u32,
    digest: [u8; 32],
) -> Result<Vec<u8>, IdentityError> {
    let object = objects::open(s, handle)?;
    let digest = Digest::try_from(digest.to_vec()).map_err(tpm_err("wrap the digest"))?;
    // An unrestricted key needs no proof that the TPM hashed the message:
    // the null ticket.
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(tpm_err("build the null hashcheck ticket"))?;
    // The digest goes to the TPM encrypted: what is signed stays private.
    let signature = session::run(s, Protect::Command, "sign", |ctx, _| {
        // The key's scheme (ECDSA-SHA256) is fixed in its template.
        ctx.sign(
            object.into(),
            digest.clone(),
            SignatureScheme::Null,
            ticket.clone(),
        )
    })?;
    let Signature::EcDsa(sig) = signature else {
        return Err(IdentityError::Malformed(
            "TPM answered a non-ECDSA signature",
        ));
    };
    der_signature_from_rs(sig.signature_r().value(), sig.signature_s().value())
}

impl DeviceIdentity for TpmIdentity {
    fn public_key_sec1(&self) -> &[u8] {
        &self.sec1
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, IdentityError> {
        let handle = self.handle;
        let digest = *digest;
        self.tpm.call("sign", move |s| sign(s, handle, digest))
    }

    fn describe(&self) -> String {
        format!(
            "TPM persistent key {:#010x} ({})",
            self.handle,
            self.tpm.tcti()
        )
    }

    fn is_hardware_backed(&self) -> bool {
        true
    }
}
