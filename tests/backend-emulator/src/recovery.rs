//! The backend's side of a dead TPM: a cart's recovery export
//! (`cartctl recovery-export`) in, its payments forwarded exactly once.
//!
//! [`recover`] unwraps the ledger's data key with the fleet's recovery
//! private key, checks it against the ledger's key check, unseals each
//! record and sends it to the backend's ingest the way the cart would have
//! (a `payment_forward`, `payment_inquiry` or `payment_reversal` envelope under the payment's
//! own idempotency key, on the cart's upstream topic), then waits for each
//! result. The backend deduplicates by that key, so a second run (or a
//! record the cart had already forwarded before its TPM died) charges
//! nothing new. `cart-recover` is the command-line tool around it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hal::identity::recovery::{RecoveryKeyError, RecoveryPrivateKey};
use store_and_forward::Timestamp;
use store_and_forward::ledger::outbox_kinds::{KIND_PAYMENT_FORWARD, KIND_PAYMENT_REVERSAL};
use store_and_forward::ledger::{ExportError, RecoveryExport};
use store_and_forward::payment::BackendOutcome;
use store_and_forward::uplink::{Incoming, LinkError, LinkHandle, PublishProps, QoS};
use store_and_forward::wire::down::{Down, ReversalOutcome};
use store_and_forward::wire::up::{CardData, Forward, Inquiry, Reversal};
use store_and_forward::wire::{Kind, decode_down, encode, topics};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Why a recovery could not run. Nothing is forwarded after any of them.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The export has no copy of the data key for this recovery key: the
    /// cart had no (or another) recovery key configured.
    #[error("the export has no data key wrapped to recovery key {0}")]
    NoCopy(String),
    /// The wrapped key does not open with this recovery key.
    #[error(transparent)]
    Key(#[from] RecoveryKeyError),
    /// The export is damaged, or the key is not this ledger's.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The broker refused or dropped a publish.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// The backend's answer per payment sent (forwards and inquiries).
    pub outcomes: BTreeMap<String, BackendOutcome>,
    /// The backend's answer per reversal sent.
    pub reversals: BTreeMap<String, ReversalOutcome>,
    /// Records sent that got no answer within the timeout (run again:
    /// the backend deduplicates).
    pub unanswered: Vec<String>,
    /// Records whose card data did not unseal, with why (not sent).
    pub unreadable: Vec<(String, String)>,
}

/// The subscription [`recover`] needs on its link: what comes down for
/// the cart (its forward and reversal results; the rest is ignored).
pub fn subscription(cart: &str) -> (String, QoS) {
    (topics::down_filter(cart), QoS::AtLeastOnce)
}

/// Forwards the export's payments through `link` (subscribed to
/// [`subscription`]) and waits up to `timeout` for their results.
pub async fn recover(
    export: &RecoveryExport,
    key: &RecoveryPrivateKey,
    link: &LinkHandle,
    incoming: &mut mpsc::Receiver<Incoming>,
    timeout: Duration,
) -> Result<RecoveryReport, RecoverError> {
    let key_id = key.public().key_id().to_owned();
    let wrapped = export
        .wrapped_key(&key_id)?
        .ok_or_else(|| RecoverError::NoCopy(key_id.clone()))?;
    let data_key = key.unwrap(&wrapped, export.ledger_id.as_bytes())?;
    let records = export.open(&data_key)?;
    drop(data_key);
    let cart = export.cart_id.as_str();
    let mut report = RecoveryReport::default();
    let mut waiting = Vec::new();
    for (record, opened) in records {
        let id = record.key.to_string();
        let forward = match opened {
            Ok(f) => f,
            Err(e) => {
                warn!(cart, payment = %id, cause = %e, "record does not unseal: not sent");
                report.unreadable.push((id, e.to_string()));
                continue;
            }
        };
        let (kind, payload) = if record.kind == KIND_PAYMENT_FORWARD {
            let body = Forward {
                amount: forward.amount,
                card: CardData::from(&forward),
                created: forward.created,
                approved_offline_at: forward.offline_approved,
                counter: forward.counter_value,
            };
            let kind = Kind::PaymentForward;
            (kind, encode(kind, cart, &id, Timestamp::now(), &body))
        } else if record.kind == KIND_PAYMENT_REVERSAL {
            let body = Reversal {
                amount: forward.amount,
                created: forward.created,
            };
            let kind = Kind::PaymentReversal;
            (kind, encode(kind, cart, &id, Timestamp::now(), &body))
        } else {
            let body = Inquiry {
                amount: forward.amount,
                created: forward.created,
            };
            let kind = Kind::PaymentInquiry;
            (kind, encode(kind, cart, &id, Timestamp::now(), &body))
        };
        link.publish(
            &topics::up(cart, kind),
            Bytes::from(payload),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await?;
        info!(cart, payment = %id, kind = kind.as_str(), "recovered record sent");
        waiting.push(id);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while report.outcomes.len() + report.reversals.len() < waiting.len() {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, incoming.recv()).await else {
            break;
        };
        match decode_down(&msg.payload, cart) {
            Ok((header, Down::ForwardResult(r))) if waiting.contains(&header.id) => {
                report.outcomes.insert(header.id, r.outcome);
            }
            Ok((header, Down::ReversalResult(r))) if waiting.contains(&header.id) => {
                report.reversals.insert(header.id, r.result);
            }
            _ => {}
        }
    }
    report.unanswered = waiting
        .into_iter()
        .filter(|id| !report.outcomes.contains_key(id) && !report.reversals.contains_key(id))
        .collect();
    Ok(report)
}
