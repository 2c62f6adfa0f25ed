//! Step 3: a certificate from CSR to registered, resumable at any point.
//! Provisioning runs it over the claim connection; rotation over the
//! cart's own.
//!
//! | recorded | on resume |
//! | --- | --- |
//! | nothing / `started` | send the CSR |
//! | `csr_sent` | the answer was never recorded: count an unanswered request (its certificate, if issued, is an orphan the backend deletes), send again |
//! | `issued` (pending: id, PEM, token) | RegisterThing with the recorded token; accepted again if it was already registered; the token refused (expired): the certificate becomes a reported orphan, start over; any other refusal: an error, the certificate stays pending |
//! | `done` | nothing |

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store_and_forward::uplink::{SwappableClientCert, certified_key_from_pem_files};

use super::cert::{self, CertInfo};
use super::fleet::FleetClient;
use super::state::{self, keys};
use super::{Context, ProvisionError, failpoint, key};

/// The cart-state keys one registration uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    /// Progress: `started`, `csr_sent`, `issued`, `done`.
    pub step: &'static str,
    /// The pending certificate (JSON).
    pub pending: &'static str,
    /// Orphans (JSON list).
    pub orphans: &'static str,
    /// Unanswered requests.
    pub unanswered: &'static str,
    /// The CSR (PEM).
    pub csr: &'static str,
    /// Failpoint prefix.
    pub failpoints: &'static str,
}

/// Provisioning's keys.
pub(crate) const PROVISION: Keys = Keys {
    step: keys::REGISTER,
    pending: keys::PENDING,
    orphans: keys::ORPHANS,
    unanswered: keys::UNANSWERED,
    csr: key::CSR,
    failpoints: "provision.register",
};

#[derive(Serialize, Deserialize)]
struct Pending {
    certificate_id: String,
    certificate_pem: String,
    token: String,
}

fn fp(keys: &Keys, what: &str) {
    failpoint(&format!("{}.{what}", keys.failpoints));
}

/// Obtains a registered certificate for the key whose public key is
/// `spki` (DER), resuming from what `keys` recorded. Returns the PEM.
pub(crate) async fn obtain(
    ctx: &Context<'_>,
    client: &mut FleetClient,
    keys: &Keys,
    spki: &[u8],
) -> Result<(String, CertInfo), ProvisionError> {
    let cart = ctx.cart_id;
    loop {
        let pending = state::get(ctx.ledger, keys.pending)?
            .and_then(|s| serde_json::from_str::<Pending>(&s).ok());
        if let Some(p) = pending {
            client.send_register(&p.token, cart).await?;
            fp(keys, "register_sent");
            match client.await_registered(cart).await {
                Ok(_) => {
                    let info = cert::parse_pem(&p.certificate_pem)?;
                    return Ok((p.certificate_pem, info));
                }
                // The token is no longer valid (expired: AWS gives it one
                // hour): the certificate can never be registered. Other
                // refusals (no such template, access denied) keep it
                // pending for the next attempt.
                Err(e @ ProvisionError::Rejected { .. }) if token_refused(&e) => {
                    tracing::warn!(
                        certificate = %p.certificate_id,
                        cause = %e,
                        "issued certificate could not be registered: orphan, reported for deletion"
                    );
                    let orphans = state::id_list(ctx.ledger, keys.orphans)?;
                    let list = state::list_push(orphans, &p.certificate_id);
                    state::record(
                        ctx.ledger,
                        &[
                            (keys.orphans, Some(&list)),
                            (keys.pending, None),
                            (keys.step, Some("started")),
                        ],
                    )?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let csr = state::get(ctx.ledger, keys.csr)?
            .ok_or(ProvisionError::BadCertificate("no CSR recorded"))?;
        let mut unanswered = state::count(ctx.ledger, keys.unanswered)?;
        if state::get(ctx.ledger, keys.step)?.as_deref() == Some("csr_sent") {
            unanswered += 1;
        }
        let n = unanswered.to_string();
        state::record(
            ctx.ledger,
            &[(keys.step, Some("csr_sent")), (keys.unanswered, Some(&n))],
        )?;
        fp(keys, "csr_recorded");
        client.send_csr(&csr).await?;
        fp(keys, "csr_sent");
        let issued = client.await_certificate(spki, cart).await?;
        fp(keys, "issued");
        let p = Pending {
            certificate_id: issued.certificate_id.clone(),
            certificate_pem: issued.certificate_pem.clone(),
            token: issued.certificate_ownership_token.clone(),
        };
        let json = serde_json::to_string(&p).unwrap_or_default();
        state::record(
            ctx.ledger,
            &[(keys.pending, Some(&json)), (keys.step, Some("issued"))],
        )?;
        tracing::info!(certificate = %p.certificate_id, "certificate issued, registering");
        fp(keys, "pending_recorded");
    }
}

fn token_refused(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Rejected { error_code, .. }
        if error_code.to_ascii_lowercase().contains("token"))
}

/// Step 3 of provisioning: over a connection with the claim certificate.
pub(crate) async fn provision_step(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    let c = ctx.config;
    if state::get(ctx.ledger, keys::REGISTER)?.is_none() {
        state::record(
            ctx.ledger,
            &[
                (keys::STATE, Some("register")),
                (keys::REGISTER, Some("started")),
            ],
        )?;
    } else {
        state::record(ctx.ledger, &[(keys::STATE, Some("register"))])?;
    }
    failpoint("provision.register.started");
    for p in [&c.claim_cert, &c.claim_key] {
        if !p.exists() {
            return Err(ProvisionError::ClaimMissing(p.clone()));
        }
    }
    let claim = Arc::new(SwappableClientCert::new(certified_key_from_pem_files(
        &c.claim_cert,
        &c.claim_key,
    )?));
    let handle = key::active_handle(ctx)?;
    let identity = key::existing(ctx, handle).await?;
    let spki = identity.public_key_spki_der()?;
    let mut client = FleetClient::connect(
        ctx.link_config(),
        claim,
        &c.template,
        c.response_timeout(),
        c.connect_timeout(),
    )
    .await?;
    let result = obtain(ctx, &mut client, &PROVISION, &spki).await;
    client.close().await;
    let (pem, info) = result?;
    failpoint("provision.register.registered");
    cert::write_atomic(&c.certificate, pem.as_bytes(), 0o644)?;
    failpoint("provision.register.cert_written");
    let (nb, na) = (info.not_before.0.to_string(), info.not_after.0.to_string());
    state::record(
        ctx.ledger,
        &[
            (keys::REGISTER, Some("done")),
            (keys::PENDING, None),
            (keys::CERTIFICATE_ID, Some(&info.id)),
            (keys::NOT_BEFORE_MS, Some(&nb)),
            (keys::NOT_AFTER_MS, Some(&na)),
        ],
    )?;
    tracing::info!(certificate = %info.id, not_after_ms = info.not_after.0, "thing registered, certificate stored");
    Ok(())
}
