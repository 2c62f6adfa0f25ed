//! Persistent objects: templates, the storage primary key, creating an
//! object under it and persisting it with `evict_control`, opening,
//! listing and evicting persistent handles.

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::constants::tss::TPM2_PERSISTENT_FIRST;
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Digest, EccParameter, EccPoint, EccScheme, HashScheme, KeyedHashScheme, Public,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
    SymmetricDefinitionObject,
};

use super::owner::State;
use super::session::{self, Protect};
use super::tpm_err;
use crate::identity::IdentityError;

/// The storage primary key's template: the TCG "SRK" ECC P-256 template
/// (restricted decryption, AES-128-CFB, noDA, unique X and Y of 32 zeros).
pub(super) fn srk_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::new(
            EccParameter::try_from(vec![0u8; 32])?,
            EccParameter::try_from(vec![0u8; 32])?,
        ))
        .build()
}

/// The device key's template: ECC P-256, sign only, ECDSA with SHA-256,
/// fixedTPM, fixedParent, sensitiveDataOrigin (made inside the TPM),
/// userWithAuth with an empty auth value, and noDA.
///
/// noDA because a TPM counts an unorderly shutdown after a DA-protected
/// use as a failed authorization: a cart that loses power a few times
/// while its key is in use (every TLS handshake, every signed receipt)
/// locked its own device key out (`TPM_RC_LOCKOUT`, seen in the QEMU
/// suite's power cuts) and could not reach the cloud until the lockout
/// recovery time passed. With an empty auth value there is nothing for a
/// dictionary attack to guess; the key's protection is fixedTPM.
pub(super) fn device_key_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_decrypt(false)
        .with_sign_encrypt(true)
        .with_restricted(false)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// The sealed data object's template: a keyed-hash object with no scheme
/// holding caller data (so no sensitiveDataOrigin), fixedTPM, fixedParent,
/// userWithAuth, noDA.
pub(super) fn sealed_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

pub(super) fn persistent(handle: u32) -> Result<PersistentTpmHandle, IdentityError> {
    PersistentTpmHandle::new(handle).map_err(|_| IdentityError::BadHandle {
        handle,
        kind: "persistent handle (0x81000000..0x81FFFFFF)",
    })
}

/// The storage primary key, created on first need (the parent of our
/// objects and the salt key of the session).
pub(super) fn srk(state: &mut State) -> Result<KeyHandle, IdentityError> {
    if let Some(srk) = state.srk {
        return Ok(srk);
    }
    let template = srk_template().map_err(tpm_err("build the SRK template"))?;
    let created = state
        .ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(tpm_err("create the storage primary key"))?;
    state.srk = Some(created.key_handle);
    Ok(created.key_handle)
}

/// Every persistent handle in use, ascending.
pub(super) fn list_persistent(state: &mut State) -> Result<Vec<u32>, IdentityError> {
    let mut out = Vec::new();
    let mut next = TPM2_PERSISTENT_FIRST;
    loop {
        let (data, more) = state
            .ctx
            .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, next, 64))
            .map_err(tpm_err("list persistent handles"))?;
        let CapabilityData::Handles(handles) = data else {
            return Err(IdentityError::Malformed("TPM answered another capability"));
        };
        let handles: Vec<u32> = handles.into_inner().into_iter().map(u32::from).collect();
        let Some(&last) = handles.last() else {
            break;
        };
        out.extend(handles.into_iter().filter(|h| h >> 24 == 0x81));
        if !more || last >> 24 != 0x81 {
            break;
        }
        next = last + 1;
    }
    Ok(out)
}

/// Whether a persistent handle holds an object (asks the TPM's handle
/// list, so a missing handle prints no ESYS error).
pub(super) fn exists(state: &mut State, handle: u32) -> Result<bool, IdentityError> {
    persistent(handle)?;
    let (data, _) = state
        .ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))
        .map_err(tpm_err("look up a persistent handle"))?;
    let CapabilityData::Handles(handles) = data else {
        return Err(IdentityError::Malformed("TPM answered another capability"));
    };
    Ok(handles.into_inner().first().map(|h| u32::from(*h)) == Some(handle))
}

/// The ESYS handle of an existing persistent object (opened once, cached).
pub(super) fn open(state: &mut State, handle: u32) -> Result<ObjectHandle, IdentityError> {
    if let Some(h) = state.opened.get(&handle) {
        return Ok(*h);
    }
    let tpm_handle = TpmHandle::Persistent(persistent(handle)?);
    let object = state
        .ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(tpm_handle))
        .map_err(tpm_err("open a persistent object"))?;
    state.opened.insert(handle, object);
    Ok(object)
}

/// The public area of a persistent object.
pub(super) fn read_public(state: &mut State, handle: u32) -> Result<Public, IdentityError> {
    let object = open(state, handle)?;
    let (public, _, _) = state
        .ctx
        .execute_without_session(|ctx| ctx.read_public(object.into()))
        .map_err(tpm_err("read a public area"))?;
    Ok(public)
}

/// Creates an object from `template` under the SRK and persists it at
/// `handle`. The transient copy is flushed whatever happens.
pub(super) fn create_persistent(
    state: &mut State,
    handle: u32,
    template: Public,
    data: Option<SensitiveData>,
) -> Result<ObjectHandle, IdentityError> {
    let target = persistent(handle)?;
    // The sensitive data (a data key) goes to the TPM encrypted.
    let (created, parent) = session::run(
        state,
        Protect::Command,
        "create an object under the SRK",
        |ctx, srk| {
            ctx.create(srk, template.clone(), None, data.clone(), None, None)
                .map(|c| (c, srk))
        },
    )?;
    let loaded = state
        .ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.load(parent, created.out_private, created.out_public)
        })
        .map_err(tpm_err("load the new object"))?;
    let persisted = state
        .ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.evict_control(
                Provision::Owner,
                loaded.into(),
                Persistent::Persistent(target),
            )
        });
    let _ = state.ctx.flush_context(loaded.into());
    let object = persisted.map_err(tpm_err("persist the new object"))?;
    state.opened.insert(handle, object);
    Ok(object)
}

/// Removes the object at a persistent handle; false when there was none.
pub(super) fn evict(state: &mut State, handle: u32) -> Result<bool, IdentityError> {
    let target = persistent(handle)?;
    if !exists(state, handle)? {
        state.opened.remove(&handle);
        return Ok(false);
    }
    let object = open(state, handle)?;
    state
        .ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.evict_control(Provision::Owner, object, Persistent::Persistent(target))
        })
        .map_err(tpm_err("evict a persistent object"))?;
    state.opened.remove(&handle);
    Ok(true)
}
