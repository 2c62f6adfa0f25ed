//! The ledger's data key, sealed by the TPM: a keyed-hash data object under
//! the SRK holding 32 random bytes, persisted at a handle, unsealed at start.
//! The key is in the clear only in this process's memory (zeroized on drop).

use tss_esapi::structures::{Public, SensitiveData};
use zeroize::Zeroizing;

use super::session::{self, Protect};
use super::{Tpm, objects, tpm_err};
use crate::identity::IdentityError;

fn check_sealed(handle: u32, public: &Public) -> Result<(), IdentityError> {
    match public {
        Public::KeyedHash {
            object_attributes: a,
            ..
        } if a.fixed_tpm() && a.fixed_parent() && !a.sign_encrypt() && !a.decrypt() => Ok(()),
        _ => Err(IdentityError::Unexpected {
            handle,
            detail: "not a sealed data object",
        }),
    }
}

pub(super) fn load_or_create(tpm: &Tpm, handle: u32) -> Result<Zeroizing<[u8; 32]>, IdentityError> {
    let (key, created) = tpm.call_create("unseal or create the data key", move |s| {
        let mut created = false;
        if !objects::exists(s, handle)? {
            // The random bytes come back encrypted, and go back into the
            // TPM encrypted (`create_persistent`): the key never crosses
            // the bus in clear.
            let random = session::run(
                s,
                Protect::Response,
                "get random bytes for the data key",
                |ctx, _| ctx.get_random(32),
            )?;
            if random.value().len() != 32 {
                return Err(IdentityError::Malformed("TPM gave fewer random bytes"));
            }
            let data = SensitiveData::try_from(random.value().to_vec())
                .map_err(tpm_err("wrap the data key"))?;
            let template =
                objects::sealed_template().map_err(tpm_err("build the seal template"))?;
            objects::create_persistent(s, handle, template, Some(data))?;
            created = true;
        }
        let public = objects::read_public(s, handle)?;
        check_sealed(handle, &public)?;
        let object = objects::open(s, handle)?;
        let unsealed = session::run(s, Protect::Response, "unseal the data key", |ctx, _| {
            ctx.unseal(object)
        })?;
        let mut key = Zeroizing::new([0u8; 32]);
        if unsealed.value().len() != 32 {
            return Err(IdentityError::Unexpected {
                handle,
                detail: "sealed data is not 32 bytes",
            });
        }
        key.copy_from_slice(unsealed.value());
        Ok((key, created))
    })?;
    if created {
        tracing::info!(
            handle = format_args!("{handle:#010x}"),
            "data key sealed in the TPM"
        );
    }
    Ok(key)
}
