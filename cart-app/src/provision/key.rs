//! Step 2: the device key in the TPM and a CSR signed by it (CN = cart
//! id), and which of the two key handles is active.
//!
//! The key is created inside the TPM (`Tpm::identity`: reopened when it
//! exists, so the step is idempotent); the CSR is kept in `cart_state`
//! (public data) and sent as is by every create-from-csr attempt.

use std::sync::Arc;

use hal::identity::{DeviceIdentity, csr};

use super::state::{self, keys};
use super::{Context, ProvisionError, blocking, failpoint};

/// The active key's handle: recorded in `identity.active_handle` (a
/// rotation alternates between the two configured handles), else the
/// configured device-key handle.
pub fn active_handle(ctx: &Context<'_>) -> Result<u32, ProvisionError> {
    Ok(state::get(ctx.ledger, keys::ACTIVE_HANDLE)?
        .and_then(|s| state::parse_handle(&s))
        .unwrap_or(ctx.tpm.config().device_key_handle))
}

/// The other of the two key handles (where a rotation puts its new key).
pub fn other_handle(ctx: &Context<'_>, handle: u32) -> u32 {
    let c = ctx.tpm.config();
    if handle == c.device_key_handle {
        c.next_key_handle
    } else {
        c.device_key_handle
    }
}

/// The key at `handle`; an error when there is none (never creates).
pub async fn existing(
    ctx: &Context<'_>,
    handle: u32,
) -> Result<Arc<dyn DeviceIdentity>, ProvisionError> {
    let tpm = ctx.tpm.tpm().clone();
    blocking(move || {
        tpm.existing_identity(handle)?
            .map(|i| Arc::new(i) as Arc<dyn DeviceIdentity>)
            .ok_or(ProvisionError::KeyMissing(handle))
    })
    .await
}

/// Creates (or reopens) the key at `handle` and builds its CSR.
pub(crate) async fn key_and_csr(
    ctx: &Context<'_>,
    handle: u32,
    replace: bool,
    created_failpoint: &'static str,
) -> Result<String, ProvisionError> {
    let tpm = ctx.tpm.tpm().clone();
    let cart = ctx.cart_id.to_owned();
    blocking(move || {
        let identity = if replace {
            tpm.replace(handle)?
        } else {
            tpm.identity(handle)?
        };
        failpoint(created_failpoint);
        Ok(csr::build(&identity, &cart)?.pem)
    })
    .await
}

/// Step 2 of provisioning.
pub(crate) async fn step(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    let handle = active_handle(ctx)?;
    state::record(
        ctx.ledger,
        &[(keys::STATE, Some("key")), (keys::KEY, Some("started"))],
    )?;
    failpoint("provision.key.started");
    let csr = key_and_csr(ctx, handle, false, "provision.key.created").await?;
    tracing::info!(handle = %state::handle_text(handle), "device key ready in the TPM");
    let h = state::handle_text(handle);
    state::record(
        ctx.ledger,
        &[
            (keys::KEY, Some("done")),
            (keys::ACTIVE_HANDLE, Some(&h)),
            (CSR, Some(&csr)),
        ],
    )
}

/// The provisioning CSR (PEM).
pub const CSR: &str = "provision.csr";
