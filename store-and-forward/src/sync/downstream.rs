//! What comes down: decoded, applied, acknowledged. Every message is keyed
//! or versioned, so receiving it twice changes nothing; a malformed one is
//! rejected whole, logged, and acknowledged as rejected when it can be
//! identified. A message the ledger could not store is not acknowledged:
//! the backend sends it again.

use tracing::{info, warn};

use super::{AppEvent, CatalogDone, CatalogOutcome, Uplink};
use crate::Timestamp;
use crate::error::LedgerError;
use crate::ledger::{Applied, OutboxClass, UpdateOutcome};
use crate::payment::PaymentKey;
use crate::uplink::Incoming;
use crate::wire::down::{AuthResponse, ForwardResult, ReversalResult};
use crate::wire::up::{Ack, AckResult, ResyncRequest};
use crate::wire::{self, Down, Header, Kind, decode_down, encode};

/// What happened to one incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Applied (and acknowledged).
    Applied(Kind),
    /// Already known or older (acknowledged as ignored).
    Ignored(Kind),
    /// Rejected: malformed, another cart's, invalid content.
    Rejected {
        /// Its type, when it could be read.
        kind: Option<Kind>,
        /// Why.
        reason: String,
    },
    /// Not stored (ledger failure): not acknowledged, the backend resends.
    Deferred(Kind),
}

impl Uplink {
    /// Decodes, applies and acknowledges one incoming message. The ack is
    /// queued only once the update is applied and durable (a catalog delta:
    /// once the application's catalog took it).
    pub async fn handle_incoming(&self, msg: &Incoming) -> Handled {
        let cart = &self.config.cart_id;
        let now = Timestamp::now();
        let (header, down) = match decode_down(&msg.payload, cart) {
            Ok(d) => d,
            Err(e) => {
                warn!(topic = %msg.topic, bytes = msg.payload.len(), cause = %e, "downstream message rejected");
                let kind = match wire::decode(&msg.payload) {
                    Ok((h, _)) if h.cart == *cart && !h.kind.is_up() => {
                        super::blocking(|| {
                            self.ack(&h, AckResult::Rejected, None, Some(e.to_string()), now)
                        });
                        Some(h.kind)
                    }
                    _ => None,
                };
                return Handled::Rejected {
                    kind,
                    reason: e.to_string(),
                };
            }
        };
        super::blocking(|| self.note_contact(header.ts, now));
        let kind = header.kind;
        let result = match down {
            Down::AuthResponse(AuthResponse { outcome })
            | Down::ForwardResult(ForwardResult { outcome }) => self
                .apply_outcome(&header, |ledger, key| {
                    ledger.apply_backend_outcome(key, &outcome, now)
                }),
            // Acknowledged only once `reversed` is committed; a second
            // result is a replay (ignored).
            Down::ReversalResult(ReversalResult { result }) => self
                .apply_outcome(&header, |ledger, key| {
                    ledger.apply_reversal_result(key, result.as_str(), now)
                }),
            Down::PolicyUpdate(p) => {
                let r = super::blocking(|| self.ledger().apply_limits_update(&p.limits, now));
                versioned(r, p.limits.version, kind)
            }
            Down::DenyListUpdate(d) => {
                let r = super::blocking(|| {
                    self.ledger().apply_deny_list(
                        d.version,
                        d.base_version,
                        d.replace,
                        &d.add,
                        &d.remove,
                        now,
                    )
                });
                if let Ok(UpdateOutcome::BaseMismatch { current }) = r {
                    super::blocking(|| self.request_resync(kind, current, d.version, now));
                }
                versioned(r, d.version, kind)
            }
            Down::StaffListUpdate(list) => {
                let r = super::blocking(|| self.ledger().apply_staff_list(&list, now));
                versioned(r, list.version, kind)
            }
            Down::CatalogDelta(c) => {
                let version = c.version;
                let current = super::blocking(|| {
                    self.ledger()
                        .state("downstream.catalog")
                        .ok()
                        .flatten()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                });
                if version <= current {
                    Ok((AckResult::Ignored, Some(current), None))
                } else {
                    match self.catalog_to_app(c).await {
                        Some(CatalogOutcome::Applied) => {
                            let r = super::blocking(|| {
                                self.ledger()
                                    .accept_downstream_version("catalog", version, now)
                            });
                            versioned(r, version, kind)
                        }
                        // Applied before, its ack lost (a crash between the
                        // two): the version is recorded now.
                        Some(CatalogOutcome::Unchanged { current }) => {
                            let r = super::blocking(|| {
                                self.ledger()
                                    .accept_downstream_version("catalog", current, now)
                            });
                            match r {
                                Ok(_) => Ok((AckResult::Ignored, Some(current), None)),
                                Err(e) => versioned(Err(e), version, kind),
                            }
                        }
                        Some(CatalogOutcome::BaseMismatch { have }) => {
                            super::blocking(|| self.request_resync(kind, have, version, now));
                            versioned(
                                Ok(UpdateOutcome::BaseMismatch { current: have }),
                                version,
                                kind,
                            )
                        }
                        Some(CatalogOutcome::Failed(e)) => {
                            warn!(version, cause = %e, "catalog delta not applied: not acknowledged");
                            Err(kind)
                        }
                        None => Err(kind),
                    }
                }
            }
            Down::RotationRequest(request) => {
                let key = format!("rotation.request.{}", header.id);
                let seen = super::blocking(|| self.ledger().state(&key).ok().flatten().is_some());
                if seen {
                    Ok((AckResult::Ignored, None, None))
                } else if self.forward_to_app(AppEvent::Rotation {
                    id: header.id.clone(),
                    request,
                }) {
                    match super::blocking(|| {
                        self.ledger()
                            .set_states_durable(&[(key.as_str(), Some("received"))], now)
                    }) {
                        Ok(()) => Ok((AckResult::Applied, None, None)),
                        Err(e) => {
                            warn!(cause = %e, "rotation request not recorded");
                            Err(kind)
                        }
                    }
                } else {
                    Err(kind)
                }
            }
        };
        match result {
            Ok((ack, version, reason)) => {
                // The crash tests kill the cart between applying an update
                // and queueing its ack, and between queueing and sending.
                crate::failpoint::hit("downstream.applied");
                super::blocking(|| self.ack(&header, ack, version, reason.clone(), now));
                crate::failpoint::hit("downstream.ack_queued");
                match ack {
                    AckResult::Applied => {
                        info!(kind = kind.as_str(), id = %header.id, "downstream applied");
                        Handled::Applied(kind)
                    }
                    AckResult::Ignored => Handled::Ignored(kind),
                    AckResult::Rejected => Handled::Rejected {
                        kind: Some(kind),
                        reason: reason.unwrap_or_default(),
                    },
                }
            }
            Err(kind) => Handled::Deferred(kind),
        }
    }

    /// Applies what the backend said about one payment (`apply`, on the
    /// ledger) and says how to acknowledge it.
    fn apply_outcome(
        &self,
        header: &Header,
        apply: impl FnOnce(&mut crate::Ledger, &PaymentKey) -> Result<Applied, LedgerError>,
    ) -> Result<(AckResult, Option<u64>, Option<String>), Kind> {
        let Ok(key) = PaymentKey::parse(&header.id) else {
            return Ok((
                AckResult::Rejected,
                None,
                Some(format!("not a payment key: {:?}", header.id)),
            ));
        };
        let applied = super::blocking(|| apply(&mut self.ledger(), &key));
        match applied {
            Ok(Applied::Changed { .. }) => Ok((AckResult::Applied, None, None)),
            Ok(Applied::Unchanged { .. }) => Ok((AckResult::Ignored, None, None)),
            Err(e @ (LedgerError::UnknownPayment(_) | LedgerError::ConflictingOutcome { .. })) => {
                warn!(payment_key = %key, cause = %e, "backend outcome not applied");
                Ok((AckResult::Rejected, None, Some(e.to_string())))
            }
            Err(e) => {
                warn!(payment_key = %key, cause = %e, "backend outcome not stored: not acknowledged");
                Err(header.kind)
            }
        }
    }

    /// Hands a catalog delta to the application and waits until it says
    /// how it took it; `None` when it could not (gone, busy, no answer
    /// within a minute): not acknowledged, the backend sends it again.
    /// Without an application (a cart that keeps no catalog), it counts as
    /// applied.
    async fn catalog_to_app(
        &self,
        delta: crate::wire::down::CatalogDelta,
    ) -> Option<CatalogOutcome> {
        let Some(tx) = &self.app else {
            return Some(CatalogOutcome::Applied);
        };
        let (done, answer) = CatalogDone::new();
        tx.try_send(AppEvent::Catalog { delta, done }).ok()?;
        match tokio::time::timeout(std::time::Duration::from_secs(60), answer).await {
            Ok(Ok(outcome)) => Some(outcome),
            _ => None,
        }
    }

    /// Asks the backend for a stream whole: a delta did not fit the
    /// version held. One request per gap (the envelope id names the
    /// version held).
    pub(crate) fn request_resync(
        &self,
        of: Kind,
        have_version: u64,
        rejected_version: u64,
        now: Timestamp,
    ) {
        let body = ResyncRequest {
            of,
            have_version,
            rejected_version,
        };
        let id = format!("{}:{have_version}", of.as_str());
        let payload = encode(Kind::ResyncRequest, &self.config.cart_id, &id, now, &body);
        match self.ledger().enqueue(
            OutboxClass::Control,
            Kind::ResyncRequest.as_str(),
            &payload,
            now,
        ) {
            Ok(_) => info!(
                stream = of.as_str(),
                have_version,
                rejected_version,
                "delta on another version: the whole stream asked for"
            ),
            Err(e) => warn!(cause = %e, "resync request not queued: the next delta asks again"),
        }
    }

    pub(crate) fn forward_to_app(&self, ev: AppEvent) -> bool {
        match &self.app {
            Some(tx) => tx.try_send(ev).is_ok(),
            // Nobody consumes it on this cart: record the version only.
            None => true,
        }
    }

    /// Queues an ack in the outbox (durable; delivered by the next drain).
    fn ack(
        &self,
        of: &Header,
        result: AckResult,
        current_version: Option<u64>,
        reason: Option<String>,
        now: Timestamp,
    ) {
        let body = Ack {
            of: of.kind,
            of_id: of.id.clone(),
            result,
            current_version,
            reason,
        };
        let id = format!("{}:{}", of.kind.as_str(), of.id);
        let payload = encode(Kind::Ack, &self.config.cart_id, &id, now, &body);
        if let Err(e) =
            self.ledger()
                .enqueue(OutboxClass::Control, Kind::Ack.as_str(), &payload, now)
        {
            warn!(cause = %e, "ack not queued: the backend will resend");
        }
    }

    /// Queues the cart's status.
    pub fn enqueue_status(&self, now: Timestamp) -> Result<(), LedgerError> {
        let mut ledger = self.ledger();
        let st = ledger.status(now)?;
        let version = |k: &str| {
            ledger
                .state(k)
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let body = wire::up::CartStatus {
            firmware: self.config.firmware.clone(),
            integrity: match st.integrity {
                Some(crate::policy::LedgerIntegrity::Bound) => "bound",
                Some(crate::policy::LedgerIntegrity::RolledBack { .. }) => "rolled_back",
                Some(crate::policy::LedgerIntegrity::CounterMismatch { .. }) => "counter_mismatch",
                None => "unknown",
            }
            .to_owned(),
            exposure: st.exposure,
            outbox: st.outbox,
            versions: wire::up::Versions {
                limits: st.limits.version,
                deny_list: version("policy.deny_list_version"),
                catalog: version("downstream.catalog"),
                staff_list: version(crate::ledger::keys::STAFF_LIST_VERSION),
            },
            telemetry_dropped: st.telemetry_dropped,
        };
        let id = now.0.to_string();
        let payload = encode(Kind::CartStatus, &self.config.cart_id, &id, now, &body);
        // Only the newest status matters: an offline cart does not pile up
        // one per interval.
        ledger.enqueue_replacing(
            OutboxClass::Control,
            Kind::CartStatus.as_str(),
            &payload,
            now,
        )?;
        Ok(())
    }
}

type Outcome = Result<(AckResult, Option<u64>, Option<String>), Kind>;

fn versioned(r: Result<UpdateOutcome, LedgerError>, offered: u64, kind: Kind) -> Outcome {
    match r {
        Ok(UpdateOutcome::Applied) => Ok((AckResult::Applied, Some(offered), None)),
        Ok(UpdateOutcome::Ignored { current }) => Ok((AckResult::Ignored, Some(current), None)),
        Ok(UpdateOutcome::BaseMismatch { current }) => Ok((
            AckResult::Rejected,
            Some(current),
            Some("base_mismatch".into()),
        )),
        Err(e @ (LedgerError::Policy(_) | LedgerError::StaffList(_))) => {
            Ok((AckResult::Rejected, None, Some(e.to_string())))
        }
        Err(e) => {
            warn!(cause = %e, "downstream update not stored: not acknowledged");
            Err(kind)
        }
    }
}
