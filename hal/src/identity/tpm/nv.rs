//! The ledger's monotonic counter: a TPM NV counter index (owner read and
//! write, noDA). A TPM counter never goes down and does not start at zero;
//! it cannot be read before its first increment, so opening increments a
//! never-written counter once.

use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::constants::NvIndexType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{CapabilityData, NvPublicBuilder};

use super::owner::State;
use super::session::{self, Protect};
use super::{Tpm, tpm_err};
use crate::identity::IdentityError;

/// The NV counter at a TPM NV index.
#[derive(Debug, Clone)]
pub struct TpmCounter {
    tpm: Tpm,
    index: u32,
}

fn nv_handle(index: u32) -> Result<NvIndexTpmHandle, IdentityError> {
    NvIndexTpmHandle::new(index).map_err(|_| IdentityError::BadHandle {
        handle: index,
        kind: "NV index (0x01000000..0x01FFFFFF)",
    })
}

fn defined(s: &mut State, index: u32) -> Result<bool, IdentityError> {
    let (data, _) = s
        .ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, index, 1))
        .map_err(tpm_err("look up an NV index"))?;
    let CapabilityData::Handles(handles) = data else {
        return Err(IdentityError::Malformed("TPM answered another capability"));
    };
    Ok(handles.into_inner().first().map(|h| u32::from(*h)) == Some(index))
}

fn open(s: &mut State, index: u32) -> Result<NvIndexHandle, IdentityError> {
    if let Some(h) = s.opened.get(&index) {
        return Ok((*h).into());
    }
    let tpm_handle = TpmHandle::NvIndex(nv_handle(index)?);
    let object = s
        .ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(tpm_handle))
        .map_err(tpm_err("open an NV index"))?;
    s.opened.insert(index, object);
    Ok(object.into())
}

/// Reads the counter in the salted HMAC session: the value is not secret,
/// but the response is authenticated, so a bus interposer cannot replay an
/// older value to hide a rolled-back ledger. Used for the binding check at
/// start (once: an HMAC session command costs a few ms in tpm2-tss).
fn read_authenticated(s: &mut State, index: u32) -> Result<u64, IdentityError> {
    let nv = open(s, index)?;
    let data = session::run(s, Protect::Integrity, "read the NV counter", |ctx, _| {
        ctx.nv_read(NvAuth::Owner, nv, 8, 0)
    })?;
    decode(data.value())
}

/// Reads the counter with a password session (fast: after each increment,
/// on the checkout path). A faked answer here is caught by the next
/// authenticated read at start, which finds the counter behind the ledger.
fn read_fast(s: &mut State, index: u32) -> Result<u64, IdentityError> {
    let nv = open(s, index)?;
    let data = s
        .ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_read(NvAuth::Owner, nv, 8, 0)
        })
        .map_err(tpm_err("read the NV counter"))?;
    decode(data.value())
}

fn decode(value: &[u8]) -> Result<u64, IdentityError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| IdentityError::Malformed("NV counter is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Increments with a password session (the counter carries no secret, and
/// an offline approval must stay well under a millisecond: an HMAC session
/// command costs a few) and returns the new value. A TPM reset does not
/// break a password session, so nothing is retried: an increment must
/// never run twice.
fn increment(s: &mut State, index: u32) -> Result<u64, IdentityError> {
    let nv = open(s, index)?;
    s.ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_increment(NvAuth::Owner, nv)
        })
        .map_err(tpm_err("increment the NV counter"))?;
    read_fast(s, index)
}

fn open_or_define_on_owner(s: &mut State, index: u32) -> Result<bool, IdentityError> {
    let tpm_handle = nv_handle(index)?;
    let mut created = false;
    if !defined(s, index)? {
        let attributes = NvIndexAttributesBuilder::new()
            .with_nv_index_type(NvIndexType::Counter)
            .with_owner_read(true)
            .with_owner_write(true)
            .with_no_da(true)
            .build()
            .map_err(tpm_err("build the NV counter attributes"))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(tpm_handle)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(8)
            .build()
            .map_err(tpm_err("build the NV counter public area"))?;
        let handle = s
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_define_space(Provision::Owner, None, public)
            })
            .map_err(tpm_err("define the NV counter"))?;
        s.opened.insert(index, handle.into());
        created = true;
    }
    let nv = open(s, index)?;
    let (public, _) = s
        .ctx
        .execute_without_session(|ctx| ctx.nv_read_public(nv))
        .map_err(tpm_err("read the NV counter's public area"))?;
    let attributes = public.attributes();
    let index_type = attributes
        .index_type()
        .map_err(tpm_err("read the NV index type"))?;
    if index_type != NvIndexType::Counter || public.data_size() != 8 {
        return Err(IdentityError::Unexpected {
            handle: index,
            detail: "NV index is not an 8-byte counter",
        });
    }
    if !attributes.written() {
        // Cannot be read before this first increment.
        increment(s, index)?;
    }
    Ok(created)
}

pub(super) fn open_or_define(tpm: &Tpm, index: u32) -> Result<TpmCounter, IdentityError> {
    let created = tpm.call_create("open or define the counter", move |s| {
        open_or_define_on_owner(s, index)
    })?;
    if created {
        tracing::info!(
            index = format_args!("{index:#010x}"),
            "NV counter defined in the TPM"
        );
    }
    Ok(TpmCounter {
        tpm: tpm.clone(),
        index,
    })
}

/// An increment queued on the TPM ([`TpmCounter::start_increment`]).
#[derive(Debug)]
pub struct PendingIncrement(super::owner::Pending<u64>);

impl PendingIncrement {
    /// The counter's new value once the TPM has answered (within the
    /// command timeout counted from the start).
    pub fn wait(self) -> Result<u64, IdentityError> {
        self.0.wait()
    }
}

impl TpmCounter {
    /// The counter's current value, read in the salted HMAC session (an
    /// authenticated answer: for the ledger's binding check).
    pub fn read(&self) -> Result<u64, IdentityError> {
        let index = self.index;
        self.tpm
            .call("read the counter", move |s| read_authenticated(s, index))
    }

    /// Adds one (durably, inside the TPM) and returns the new value.
    pub fn increment(&self) -> Result<u64, IdentityError> {
        let index = self.index;
        self.tpm
            .call("increment the counter", move |s| increment(s, index))
    }

    /// Starts an increment on the TPM's owner thread and returns at once:
    /// the new value (or the failure) comes from [`PendingIncrement::wait`].
    /// The checkout shows its decision while the TPM works.
    pub fn start_increment(&self) -> Result<PendingIncrement, IdentityError> {
        let index = self.index;
        Ok(PendingIncrement(
            self.tpm
                .submit("increment the counter", move |s| increment(s, index))?,
        ))
    }

    /// The NV index.
    pub fn index(&self) -> u32 {
        self.index
    }
}
