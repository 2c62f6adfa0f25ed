//! The salted HMAC session that secret-bearing and integrity-bearing TPM
//! commands run in, so that what crosses the TPM bus is neither readable
//! nor forgeable by an interposer.
//!
//! One session per owner thread, started at first need and reused
//! (`continueSession`): starting a salted session costs an ECDH in the TPM
//! and on the host, several times a signature. It is salted to the storage
//! primary key (the TPM decrypts the salt with the SRK's private key, which
//! never leaves it), unbound, with AES-128-CFB parameter encryption and
//! SHA-256 HMACs. The session key derives from the salt, so a bus observer
//! who sees every byte cannot compute it; objects with an empty auth value
//! accept the session as their authorization.
//!
//! Which parameter is encrypted depends on the command ([`Protect`]): the
//! TPM refuses a session with `decrypt` on a command whose first parameter
//! is not a sized buffer (TPM2_Unseal has none), and `encrypt` likewise for
//! the response (TPM2_Sign answers a signature structure). The attributes
//! are set per command; that is a local ESYS call, no TPM round trip.
//!
//! A TPM reset (power cycle, swtpm restarted, a resource manager that
//! dropped the session) loses the session and the transient SRK. A command
//! that fails is tried once more on a fresh session and SRK ([`run`]):
//! only idempotent commands go through here.
//!
//! Cost: tpm2-tss (3.2 here, 4.x on the image) makes a new OpenSSL library
//! context for every hash, HMAC and random number of a session command;
//! with OpenSSL 3.0 that is ~3 ms per command on this machine, against
//! ~0.6 ms for a password-session signature on swtpm. So the hot path that
//! carries no secret (the counter increment of each offline approval)
//! stays on a password session; see `docs/identity.md`.

use tss_esapi::Context;
use tss_esapi::attributes::{SessionAttributes, SessionAttributesBuilder, SessionAttributesMask};
use tss_esapi::constants::SessionType;
use tss_esapi::constants::response_code::Tss2ResponseCode;
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::SymmetricDefinition;

use super::objects;
use super::owner::State;
use crate::identity::IdentityError;

/// Which of a command's parameters the session encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protect {
    /// The command's first parameter travels encrypted (`decrypt`): the
    /// digest to sign, the sensitive data of a new sealed object.
    Command,
    /// The response's first parameter travels encrypted (`encrypt`): the
    /// unsealed data key, random bytes for a new data key.
    Response,
    /// Nothing to hide, only integrity (HMAC over command and response):
    /// the NV counter's value read at start, not secret but not to be faked.
    Integrity,
}

impl Protect {
    fn attributes(self) -> (SessionAttributes, SessionAttributesMask) {
        SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(self == Protect::Command)
            .with_encrypt(self == Protect::Response)
            .build()
    }
}

/// The session, started (with the SRK as its salt key) when missing.
fn ensure(s: &mut State) -> Result<AuthSession, IdentityError> {
    if let Some(session) = s.session {
        return Ok(session);
    }
    let srk = objects::srk(s)?;
    let session = s
        .ctx
        .start_auth_session(
            Some(srk),
            None,
            None,
            SessionType::Hmac,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(super::tpm_err("start a salted session"))?
        .ok_or(IdentityError::Malformed("TPM started no session"))?;
    s.session = Some(session);
    Ok(session)
}

fn attempt<T>(
    s: &mut State,
    protect: Protect,
    op: &'static str,
    f: &mut impl FnMut(&mut Context, KeyHandle) -> tss_esapi::Result<T>,
) -> Result<T, IdentityError> {
    let session = ensure(s)?;
    let srk = objects::srk(s)?;
    let (attributes, mask) = protect.attributes();
    s.ctx
        .tr_sess_set_attributes(session, attributes, mask)
        .map_err(super::tpm_err("set the session attributes"))?;
    s.ctx
        .execute_with_session(Some(session), |ctx| f(ctx, srk))
        .map_err(super::tpm_err(op))
}

/// Runs `f` (given the context and the SRK) in the session with `protect`.
/// On failure the session and the SRK are replaced and `f` runs once more:
/// only for commands that may safely run twice (sign, unseal, read).
pub(super) fn run<T>(
    s: &mut State,
    protect: Protect,
    op: &'static str,
    mut f: impl FnMut(&mut Context, KeyHandle) -> tss_esapi::Result<T>,
) -> Result<T, IdentityError> {
    match attempt(s, protect, op, &mut f) {
        Ok(v) => Ok(v),
        Err(first) => {
            restart(s, op, &first);
            attempt(s, protect, op, &mut f)
        }
    }
}

/// Forgets the session and the SRK so the next command starts new ones.
/// After a TPM reset both are gone from the TPM: only ESYS's records are
/// released (a flush would fail, or hit an object loaded since at the same
/// handle). Otherwise they are flushed.
fn restart(s: &mut State, op: &'static str, cause: &IdentityError) {
    let reset = session_lost(cause);
    tracing::warn!(op, cause = %cause, reset, "TPM command failed: starting a new session");
    if let Some(session) = s.session.take() {
        forget(&mut s.ctx, SessionHandle::from(session).into(), reset);
    }
    if let Some(srk) = s.srk.take() {
        forget(&mut s.ctx, srk.into(), reset);
    }
    s.session_restarts += 1;
}

/// `TPM_RC_REFERENCE_S0` to `_S6`: a session the command names is not
/// loaded in the TPM (it was reset, or a resource manager dropped it).
fn session_lost(cause: &IdentityError) -> bool {
    let IdentityError::Tpm {
        source: tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)),
        ..
    } = cause
    else {
        return false;
    };
    // tss-esapi 7.7 keeps the code's bits private; its Display is
    // "Response code value: 0x918".
    let text = rc.to_string();
    let code = text
        .rsplit("0x")
        .next()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok());
    // TPM_RC_WARN (0x900) + TPM_RC_REFERENCE_S0 (0x018) .. _S6.
    matches!(code, Some(0x918..=0x91e))
}

fn forget(ctx: &mut Context, mut handle: ObjectHandle, gone: bool) {
    if gone || ctx.flush_context(handle).is_err() {
        let _ = ctx.tr_close(&mut handle);
    }
}
