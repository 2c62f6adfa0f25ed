//! Step 4: the first publish with the device certificate, then the claim
//! credentials' deletion.

use std::sync::Arc;

use bytes::Bytes;
use store_and_forward::Timestamp;
use store_and_forward::uplink::{self, LinkHandle, PublishProps, QoS, SwappableClientCert};
use store_and_forward::wire::up::ProvisioningComplete;
use store_and_forward::wire::{Kind, encode, topics};

use super::state::{self, keys};
use super::{Context, ProvisionError, Step, cert, failpoint, identity_with_cert, key};

/// Publishes `payload` as `kind` on the cart's up topic and waits for
/// the PUBACK.
pub(crate) async fn publish_up(
    link: &LinkHandle,
    cart: &str,
    kind: Kind,
    payload: Vec<u8>,
) -> Result<(), ProvisionError> {
    link.publish(
        &topics::up(cart, kind),
        Bytes::from(payload),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await?;
    Ok(())
}

/// Step 4: connects with the new certificate and the TPM key, publishes
/// `provisioning_complete` (the orphans to delete), and on its PUBACK
/// records the cart provisioned.
pub(crate) async fn first_publish(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    state::record(
        ctx.ledger,
        &[
            (keys::STATE, Some(Step::FirstPublish.as_str())),
            (keys::FIRST_PUBLISH, Some("started")),
        ],
    )?;
    failpoint("provision.first_publish.started");
    let handle = key::active_handle(ctx)?;
    let p = identity_with_cert(ctx, handle, &ctx.config.certificate).await?;
    let body = ProvisioningComplete {
        certificate_id: p.certificate_id.clone(),
        orphans: state::id_list(ctx.ledger, keys::ORPHANS)?,
        unanswered_requests: state::count(ctx.ledger, keys::UNANSWERED)?,
    };
    let cert = Arc::new(SwappableClientCert::new(p.certified_key.clone()));
    let (link, _incoming) = uplink::start(ctx.link_config(), Some(cert), vec![])?;
    let sent = async {
        if !link.wait_up(ctx.config.connect_timeout()).await {
            let last = link.state().borrow().last_error.clone();
            return Err(ProvisionError::Offline(
                last.unwrap_or_else(|| "no connection".into()),
            ));
        }
        let payload = encode(
            Kind::ProvisioningComplete,
            ctx.cart_id,
            &p.certificate_id,
            Timestamp::now(),
            &body,
        );
        publish_up(&link, ctx.cart_id, Kind::ProvisioningComplete, payload).await
    }
    .await;
    link.shutdown().await;
    sent?;
    failpoint("provision.first_publish.acked");
    let now = Timestamp::now().0.to_string();
    state::record(
        ctx.ledger,
        &[
            (keys::FIRST_PUBLISH, Some("done")),
            (keys::STATE, Some(Step::Provisioned.as_str())),
            (keys::COMPLETED_MS, Some(&now)),
        ],
    )?;
    tracing::info!(
        certificate = %p.certificate_id,
        orphans = body.orphans.len(),
        unanswered = body.unanswered_requests,
        "cart provisioned"
    );
    Ok(())
}

/// Deletes the claim credentials once provisioned (or records that they
/// are kept). Idempotent.
pub(crate) fn claim_cleanup(ctx: &Context<'_>) -> Result<(), ProvisionError> {
    if matches!(
        state::get(ctx.ledger, keys::CLAIM)?.as_deref(),
        Some("deleted" | "kept")
    ) {
        return Ok(());
    }
    let c = ctx.config;
    if !c.delete_claim {
        return state::record(ctx.ledger, &[(keys::CLAIM, Some("kept"))]);
    }
    state::record(ctx.ledger, &[(keys::CLAIM, Some("deleting"))])?;
    failpoint("provision.claim.started");
    cert::remove(&c.claim_key)?;
    failpoint("provision.claim.key_deleted");
    cert::remove(&c.claim_cert)?;
    state::record(ctx.ledger, &[(keys::CLAIM, Some("deleted"))])?;
    tracing::info!("claim credentials deleted");
    Ok(())
}
