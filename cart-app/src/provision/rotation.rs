//! Certificate rotation: when the configured fraction of the
//! certificate's lifetime has passed, or when the backend asks
//! (`rotation_request`). Crash-safe at every step: the cart always has one
//! working key and certificate pair, recorded in `cart_state`.
//!
//! | `rotation.state` | done so far | a crash here leaves | resume |
//! | --- | --- | --- | --- |
//! | `started` | intent recorded | old pair active | new key at the other handle (a leftover there is replaced), CSR |
//! | `key` | new key and CSR | old pair active | CSR through the certificate topics, RegisterThing (as provisioning, resumable) |
//! | `registered` | new certificate in `<certificate>.next` | old pair active | swap into the client identity, reconnect: the broker must accept it |
//! | `switched` | commit: the active handle is the new one | new pair active (the start renames `.next` into place) | rename, `rotation_complete` (PUBACK): the backend deactivates the old certificate |
//! | `published` | the backend knows the new pair | new pair active, old key still in the TPM | evict the old key |
//! | `done` | | new pair active | nothing |
//!
//! `rotation_complete` goes out before the old key is evicted: until the
//! backend has it, the old pair is the fallback if the new one is refused.
//!
//! The two key handles alternate (a TPM cannot move a persistent key to
//! another handle without its private blob, which never leaves the
//! chip): `identity.active_handle` says which one is in use.

use store_and_forward::Timestamp;
use store_and_forward::uplink::{LinkHandle, SwappableClientCert};
use store_and_forward::wire::up::RotationComplete;
use store_and_forward::wire::{Kind, encode};

use super::fleet::FleetClient;
use super::register::{self, Keys};
use super::state::{self, keys as pkeys};
use super::{
    Context, ProvisionError, Provisioned, blocking, cert, failpoint, identity_with_cert, key,
    publish,
};

/// The rotation's `cart_state` keys.
pub mod keys {
    /// `started`, `key`, `registered`, `switched`, `published`, `done`.
    pub const STATE: &str = "rotation.state";
    /// `lifetime`, `request` or `manual`.
    pub const REASON: &str = "rotation.reason";
    /// The backend's request id, when asked.
    pub const REQUEST_ID: &str = "rotation.request_id";
    /// The certificate being replaced.
    pub const OLD_CERTIFICATE_ID: &str = "rotation.old_certificate_id";
    /// The handle of the new key.
    pub const NEXT_HANDLE: &str = "rotation.next_handle";
    /// The new key's CSR.
    pub const CSR: &str = "rotation.csr";
    /// Registration progress (as `provision.register`).
    pub const REGISTER: &str = "rotation.register";
    /// The pending certificate.
    pub const PENDING: &str = "rotation.pending";
    /// Orphans of this rotation.
    pub const ORPHANS: &str = "rotation.orphans";
    /// Unanswered create-from-csr requests of this rotation.
    pub const UNANSWERED: &str = "rotation.unanswered_requests";
    /// When the last rotation finished (ms).
    pub const COMPLETED_MS: &str = "rotation.completed_ms";
}

const REGISTRATION: Keys = Keys {
    step: keys::REGISTER,
    pending: keys::PENDING,
    orphans: keys::ORPHANS,
    unanswered: keys::UNANSWERED,
    csr: keys::CSR,
    failpoints: "rotation.register",
};

/// Every failpoint of a rotation, in order (crash tests).
pub const FAILPOINTS: &[&str] = &[
    "rotation.started",
    "rotation.key_created",
    "rotation.register.csr_recorded",
    "rotation.register.csr_sent",
    "rotation.register.issued",
    "rotation.register.pending_recorded",
    "rotation.register.register_sent",
    "rotation.registered",
    "rotation.tested",
    "rotation.switched",
    "rotation.renamed",
    "rotation.complete_acked",
    "rotation.evicted",
];

/// Why a rotation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The configured fraction of the lifetime has passed.
    Lifetime,
    /// The backend asked (`rotation_request` with this id).
    Request {
        /// The request's id.
        id: String,
    },
    /// A technician asked.
    Manual,
}

impl Trigger {
    fn reason(&self) -> &'static str {
        match self {
            Trigger::Lifetime => "lifetime",
            Trigger::Request { .. } => "request",
            Trigger::Manual => "manual",
        }
    }
}

/// Whether a rotation is in progress (resume it with [`rotate`]).
pub fn in_progress(ctx: &Context<'_>) -> Result<bool, ProvisionError> {
    Ok(!matches!(
        state::get(ctx.ledger, keys::STATE)?.as_deref(),
        None | Some("done")
    ))
}

/// Whether a rotation should run now: one in progress, or the lifetime
/// fraction passed. Logs the expiry (WARN when close).
pub fn due(ctx: &Context<'_>, now: Timestamp) -> Result<Option<Trigger>, ProvisionError> {
    if in_progress(ctx)? {
        let reason = state::get(ctx.ledger, keys::REASON)?;
        let id = state::get(ctx.ledger, keys::REQUEST_ID)?;
        return Ok(Some(match (reason.as_deref(), id) {
            (Some("request"), Some(id)) => Trigger::Request { id },
            (Some("manual"), _) => Trigger::Manual,
            _ => Trigger::Lifetime,
        }));
    }
    let get = |k| -> Result<Option<i64>, ProvisionError> {
        Ok(state::get(ctx.ledger, k)?.and_then(|s| s.parse().ok()))
    };
    let (Some(nb), Some(na)) = (get(pkeys::NOT_BEFORE_MS)?, get(pkeys::NOT_AFTER_MS)?) else {
        return Ok(None);
    };
    cert::expiry(Timestamp(na), now, ctx.config.expiry_warn_days);
    Ok(cert::rotation_due(
        Timestamp(nb),
        Timestamp(na),
        now,
        ctx.config.rotate_at_fraction,
    )
    .then_some(Trigger::Lifetime))
}

/// Runs (or resumes) a rotation over the daemon's link: `client` calls the
/// certificate API (over the same link), `cert` is the link's client
/// identity (swapped to the new certificate), `link` is reconnected with
/// it. Returns the new identity. A request id already rotated for
/// returns the current identity at once.
#[tracing::instrument(skip_all, fields(cart = ctx.cart_id, trigger = ?trigger))]
pub async fn rotate(
    ctx: &Context<'_>,
    client: &mut FleetClient,
    link: &LinkHandle,
    cert: &SwappableClientCert,
    trigger: Trigger,
) -> Result<Provisioned, ProvisionError> {
    let current = state::get(ctx.ledger, keys::STATE)?;
    if matches!(current.as_deref(), None | Some("done")) {
        if let Trigger::Request { id } = &trigger
            && state::get(ctx.ledger, keys::REQUEST_ID)?.as_deref() == Some(id.as_str())
        {
            return active(ctx).await;
        }
        start(ctx, &trigger)?;
    }
    loop {
        let st = state::get(ctx.ledger, keys::STATE)?.unwrap_or_default();
        match st.as_str() {
            "started" => new_key(ctx).await?,
            "key" => new_certificate(ctx, client).await?,
            "registered" => test_and_switch(ctx, link, cert).await?,
            "switched" => {
                rename_next(ctx)?;
                complete(ctx, link).await?
            }
            "published" => evict_old(ctx).await?,
            // A rotation recorded by an older binary (evicted, then published).
            "evicted" => {
                complete(ctx, link).await?;
                state::record(ctx.ledger, &[(keys::STATE, Some("done"))])?
            }
            _ => return active(ctx).await,
        }
    }
}

async fn active(ctx: &Context<'_>) -> Result<Provisioned, ProvisionError> {
    let h = key::active_handle(ctx)?;
    identity_with_cert(ctx, h, &ctx.config.certificate).await
}

fn start(ctx: &Context<'_>, trigger: &Trigger) -> Result<(), ProvisionError> {
    let active = key::active_handle(ctx)?;
    let next = state::handle_text(key::other_handle(ctx, active));
    let old = state::get(ctx.ledger, pkeys::CERTIFICATE_ID)?.unwrap_or_default();
    let id = match trigger {
        Trigger::Request { id } => Some(id.as_str()),
        _ => None,
    };
    state::record(
        ctx.ledger,
        &[
            (keys::STATE, Some("started")),
            (keys::REASON, Some(trigger.reason())),
            (keys::REQUEST_ID, id),
            (keys::OLD_CERTIFICATE_ID, Some(&old)),
            (keys::NEXT_HANDLE, Some(&next)),
            (keys::CSR, None),
            (keys::REGISTER, None),
            (keys::PENDING, None),
            (keys::ORPHANS, None),
            (keys::UNANSWERED, None),
        ],
    )?;
    tracing::info!(reason = trigger.reason(), next_handle = %next, "certificate rotation started");
    failpoint("rotation.started");
    Ok(())
}

fn next_handle(ctx: &Context<'_>) -> Result<u32, ProvisionError> {
    state::get(ctx.ledger, keys::NEXT_HANDLE)?
        .and_then(|s| state::parse_handle(&s))
        .ok_or(ProvisionError::BadCertificate(
            "rotation without a next handle",
        ))
}

async fn new_key(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    let next = next_handle(ctx)?;
    // A key left at the next handle by an interrupted attempt has no
    // certificate yet: replace it.
    let csr = key::key_and_csr(ctx, next, true, "rotation.key_created").await?;
    state::record(
        ctx.ledger,
        &[(keys::CSR, Some(&csr)), (keys::STATE, Some("key"))],
    )
}

async fn new_certificate(
    ctx: &Context<'_>,
    client: &mut FleetClient,
) -> Result<(), ProvisionError> {
    let next = next_handle(ctx)?;
    let identity = key::existing(ctx, next).await?;
    let spki = identity.public_key_spki_der()?;
    let (pem, _info) = register::obtain(ctx, client, &REGISTRATION, &spki).await?;
    cert::write_atomic(&ctx.config.next_certificate(), pem.as_bytes(), 0o644)?;
    failpoint("rotation.registered");
    state::record(
        ctx.ledger,
        &[
            (keys::REGISTER, Some("done")),
            (keys::STATE, Some("registered")),
        ],
    )
}

async fn test_and_switch(
    ctx: &Context<'_>,
    link: &LinkHandle,
    cert: &SwappableClientCert,
) -> Result<(), ProvisionError> {
    let next = next_handle(ctx)?;
    let new = identity_with_cert(ctx, next, &ctx.config.next_certificate()).await?;
    let old = cert.current();
    let mut state_rx = link.state();
    let before = state_rx.borrow().connects;
    cert.swap(new.certified_key.clone());
    link.reconnect();
    let connected = tokio::time::timeout(
        ctx.config.connect_timeout(),
        state_rx.wait_for(|s| s.up && s.connects > before),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !connected {
        let last = link.state().borrow().last_error.clone();
        cert.swap(old);
        link.reconnect();
        return Err(ProvisionError::NewCertificateRefused(
            last.unwrap_or_else(|| "no connection".into()),
        ));
    }
    failpoint("rotation.tested");
    let (nb, na) = (new.not_before.0.to_string(), new.not_after.0.to_string());
    let h = state::handle_text(next);
    // The commit point: from here the new pair is the cart's identity.
    state::record(
        ctx.ledger,
        &[
            (pkeys::ACTIVE_HANDLE, Some(&h)),
            (pkeys::CERTIFICATE_ID, Some(&new.certificate_id)),
            (pkeys::NOT_BEFORE_MS, Some(&nb)),
            (pkeys::NOT_AFTER_MS, Some(&na)),
            (keys::STATE, Some("switched")),
        ],
    )?;
    tracing::info!(certificate = %new.certificate_id, handle = %h, "new certificate in use");
    failpoint("rotation.switched");
    Ok(())
}

/// After the switch: the new certificate into place.
fn rename_next(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    let next_file = ctx.config.next_certificate();
    if next_file.exists() {
        cert::rename(&next_file, &ctx.config.certificate)?;
    }
    failpoint("rotation.renamed");
    Ok(())
}

/// Once the backend has `rotation_complete`: the old key evicted.
async fn evict_old(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    let old = key::other_handle(ctx, key::active_handle(ctx)?);
    let tpm = ctx.tpm.tpm().clone();
    blocking(move || Ok(tpm.evict(old)?)).await?;
    failpoint("rotation.evicted");
    tracing::info!(handle = %state::handle_text(old), "old device key evicted");
    let now = Timestamp::now().0.to_string();
    state::record(
        ctx.ledger,
        &[
            (keys::STATE, Some("done")),
            (keys::COMPLETED_MS, Some(&now)),
        ],
    )
}

async fn complete(ctx: &Context<'_>, link: &LinkHandle) -> Result<(), ProvisionError> {
    let get = |k| state::get(ctx.ledger, k);
    let new_id = get(pkeys::CERTIFICATE_ID)?.unwrap_or_default();
    let not_after = get(pkeys::NOT_AFTER_MS)?
        .and_then(|s| s.parse().ok())
        .map_or(Timestamp(0), Timestamp);
    let body = RotationComplete {
        certificate_id: new_id.clone(),
        old_certificate_id: get(keys::OLD_CERTIFICATE_ID)?.unwrap_or_default(),
        request_id: get(keys::REQUEST_ID)?,
        reason: get(keys::REASON)?.unwrap_or_else(|| "manual".into()),
        not_after,
        orphans: state::id_list(ctx.ledger, keys::ORPHANS)?,
        unanswered_requests: state::count(ctx.ledger, keys::UNANSWERED)?,
    };
    if !link.wait_up(ctx.config.connect_timeout()).await {
        return Err(ProvisionError::Offline("link down".into()));
    }
    let payload = encode(
        Kind::RotationComplete,
        ctx.cart_id,
        &new_id,
        Timestamp::now(),
        &body,
    );
    publish::publish_up(link, ctx.cart_id, Kind::RotationComplete, payload).await?;
    failpoint("rotation.complete_acked");
    state::record(ctx.ledger, &[(keys::STATE, Some("published"))])?;
    tracing::info!(certificate = %new_id, old = %body.old_certificate_id, "certificate rotation complete");
    Ok(())
}

/// At start, before the identity is loaded: a rotation that crashed after
/// its switch gets the new certificate renamed into place, so the loaded
/// pair is the new one (`rotation_complete` and the eviction follow once
/// the link is up: [`due`] resumes it). Earlier states need nothing: the
/// old pair is still the active one.
pub async fn recover(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    if state::get(ctx.ledger, keys::STATE)?.as_deref() == Some("switched") {
        rename_next(ctx)?;
    }
    Ok(())
}
