//! One drain pass over the outbox.
//!
//! Records are read in class order (payments, control, telemetry) with a
//! cursor, turned into messages and published pipelined (up to `window` in
//! flight). A PUBACK marks every record of its message delivered; a broker
//! rejection quarantines them with the reason; a lost link ends the pass
//! with nothing marked that was not acknowledged.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::{NoSubscribers, SyncError, Uplink};
use crate::Timestamp;
use crate::ledger::outbox_kinds::{
    KIND_PAYMENT_FORWARD, KIND_PAYMENT_INQUIRY, KIND_PAYMENT_REVERSAL,
};
use crate::ledger::{OutboxBody, OutboxClass, OutboxRecord};
use crate::uplink::link::permanent_refusal;
use crate::uplink::{LinkError, PubAck, PublishProps, QoS};
use crate::wire::telemetry::{METERING_UNIT, pack, validate};
use crate::wire::up::{Ack, AckBatch, CardData, Forward, Inquiry, Reversal};
use crate::wire::{self, Kind, encode, topics};

/// What one pass sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainPass {
    /// Messages acknowledged.
    pub messages: u64,
    /// Records delivered.
    pub records: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Why the pass stopped early (link lost), if it did.
    pub interrupted: Option<String>,
}

struct Outgoing {
    class: OutboxClass,
    topic: String,
    payload: Bytes,
    ids: Vec<i64>,
    records: usize,
}

type Done = (Outgoing, Result<PubAck, LinkError>);

/// Records read or marked in one hold of the ledger's lock (about half a
/// millisecond): a checkout waiting on the lock waits for one such part
/// (the drain takes the lock after waiting checkouts: `CheckoutFirst`).
const RECORDS_PER_HOLD: usize = 500;

/// Up to `limit` records of `class` after `cursor`, read in parts of
/// [`RECORDS_PER_HOLD`] with the lock released between them.
fn take(
    ledger: &crate::sync::SharedLedger,
    first: &crate::ledger::CheckoutFirst,
    class: OutboxClass,
    mut cursor: i64,
    limit: usize,
    now: Timestamp,
) -> Result<Vec<OutboxRecord>, crate::LedgerError> {
    let mut records = Vec::new();
    while records.len() < limit {
        let want = (limit - records.len()).min(RECORDS_PER_HOLD);
        let part =
            first
                .lock_background(ledger)
                .take_batch(class, cursor, want, usize::MAX, now)?;
        let Some(last) = part.last() else { break };
        cursor = last.id;
        let short = part.len() < want;
        records.extend(part);
        if short {
            break;
        }
    }
    Ok(records)
}

/// MQTT 5's PUBACK reason "no matching subscribers".
const NO_MATCHING_SUBSCRIBERS: u8 = 16;

impl Uplink {
    /// Drains everything due now. Returns when the outbox has nothing due,
    /// or the link is lost.
    pub async fn drain(&self) -> Result<DrainPass, SyncError> {
        let mut pass = DrainPass::default();
        let mut inflight: JoinSet<Done> = JoinSet::new();
        let window = self.config.window.max(1);
        let linger = if self.take_flush() {
            0
        } else {
            self.config.telemetry_linger_secs
        };
        'classes: for class in OutboxClass::ALL {
            let mut cursor = 0i64;
            let mut hint = 200usize;
            loop {
                let now = Timestamp::now();
                // Read (and unsealed) off the runtime's workers.
                let (ledger, first) = (self.ledger.clone(), self.first.clone());
                let limit = self.config.batch_records.max(1);
                let records = tokio::task::spawn_blocking(move || {
                    take(&ledger, &first, class, cursor, limit, now)
                })
                .await
                .map_err(|e| SyncError::Blocking(e.to_string()))??;
                let Some(last) = records.last() else { break };
                cursor = last.id;
                let full_batch = records.len() >= self.config.batch_records.max(1);
                let (messages, resume) =
                    self.build(class, &records, &mut hint, full_batch, linger, now)?;
                if let Some(c) = resume {
                    cursor = c;
                }
                if messages.is_empty() && !full_batch {
                    break;
                }
                for m in messages {
                    while inflight.len() >= window {
                        if let Some(done) = inflight.join_next().await {
                            let mut ready = vec![done];
                            while let Some(more) = inflight.try_join_next() {
                                ready.push(more);
                            }
                            self.settle(ready, &mut pass).await?;
                        }
                        if pass.interrupted.is_some() {
                            break 'classes;
                        }
                    }
                    let link = self.link.clone();
                    inflight.spawn(async move {
                        let r = link
                            .publish(
                                &m.topic,
                                m.payload.clone(),
                                QoS::AtLeastOnce,
                                PublishProps::default(),
                            )
                            .await;
                        (m, r)
                    });
                }
                let mut ready = Vec::new();
                while let Some(more) = inflight.try_join_next() {
                    ready.push(more);
                }
                self.settle(ready, &mut pass).await?;
                if pass.interrupted.is_some() {
                    break 'classes;
                }
            }
        }
        let mut ready = Vec::new();
        while let Some(done) = inflight.join_next().await {
            ready.push(done);
        }
        self.settle(ready, &mut pass).await?;
        Ok(pass)
    }

    /// Applies finished publishes to the ledger in as few transactions as
    /// possible.
    async fn settle(
        &self,
        ready: Vec<Result<Done, tokio::task::JoinError>>,
        pass: &mut DrainPass,
    ) -> Result<(), SyncError> {
        if ready.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let mut delivered = Vec::new();
        let mut retry = Vec::new();
        let mut quarantine = Vec::new();
        let mut report = Vec::new();
        let mut refused = 0u64;
        for done in ready {
            let (m, result) = match done {
                Ok(d) => d,
                Err(e) => {
                    // A publish task panicked: nothing was marked.
                    error!(cause = %e, "publish task failed");
                    continue;
                }
            };
            match result {
                Ok(ack)
                    if ack.reason == NO_MATCHING_SUBSCRIBERS
                        && self.config.no_subscribers == NoSubscribers::Retry =>
                {
                    warn!(
                        topic = %m.topic,
                        records = m.ids.len(),
                        "the broker has no subscriber for it (reason 16): will retry with backoff"
                    );
                    retry.push((m.ids, "broker: no matching subscribers (16)".to_owned()));
                }
                Ok(_) => {
                    pass.messages += 1;
                    pass.records += m.ids.len() as u64;
                    delivered.extend_from_slice(&m.ids);
                    report.push((m.class, m.topic.len(), m.payload.len(), m.records));
                }
                Err(e @ LinkError::Rejected { reason_code, .. })
                    if !permanent_refusal(reason_code) =>
                {
                    warn!(cause = %e, topic = %m.topic, "broker refused for now: will retry with backoff");
                    retry.push((m.ids, e.to_string()));
                }
                Err(LinkError::Rejected {
                    reason_code,
                    reason,
                }) => {
                    let why = format!("broker reason {reason_code}: {reason}");
                    warn!(topic = %m.topic, records = m.ids.len(), %why, "message rejected: quarantined");
                    pass.quarantined += m.ids.len() as u64;
                    refused += m.ids.len() as u64;
                    quarantine.push((m.ids, why));
                }
                Err(e @ (LinkError::Disconnected | LinkError::Shutdown)) => {
                    pass.interrupted.get_or_insert_with(|| e.to_string());
                }
                Err(
                    e @ (LinkError::InvalidTopic(_)
                    | LinkError::UnsupportedQos
                    | LinkError::TooLarge { .. }),
                ) => {
                    pass.quarantined += m.ids.len() as u64;
                    quarantine.push((m.ids, e.to_string()));
                }
                Err(e) => {
                    warn!(cause = %e, topic = %m.topic, "publish failed: will retry with backoff");
                    retry.push((m.ids, e.to_string()));
                }
            }
        }
        // The ledger's writes (and their fsync) off the runtime's workers:
        // the link's keep-alive and the other tasks go on meanwhile.
        let retried: u64 = retry.iter().map(|(ids, _)| ids.len() as u64).sum();
        let (ledger, first) = (self.ledger.clone(), self.first.clone());
        let policy = self.config.retry;
        tokio::task::spawn_blocking(move || -> Result<(), SyncError> {
            // The lock is taken per part, after any checkout waiting for
            // it: a checkout waits for one part at most, not for a whole
            // window of messages.
            for (ids, why) in &quarantine {
                first.lock_background(&ledger).quarantine(ids, why, now)?;
            }
            for part in delivered.chunks(RECORDS_PER_HOLD) {
                first.lock_background(&ledger).mark_delivered(part, now)?;
            }
            for (ids, why) in &retry {
                first
                    .lock_background(&ledger)
                    .mark_failed(ids, why, &policy, now)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| SyncError::Blocking(e.to_string()))??;
        self.with_report(|r| {
            r.quarantined += refused;
            r.retried += retried;
            for (class, topic, payload, records) in report {
                let cat = match class {
                    OutboxClass::Payment => &mut r.payments,
                    OutboxClass::Control => &mut r.control,
                    OutboxClass::Telemetry => &mut r.telemetry,
                };
                cat.add(topic, payload, records);
            }
        });
        Ok(())
    }

    /// Turns records into messages. Records that cannot become a message
    /// are quarantined here.
    fn build(
        &self,
        class: OutboxClass,
        records: &[OutboxRecord],
        hint: &mut usize,
        more_follow: bool,
        linger: u64,
        now: Timestamp,
    ) -> Result<(Vec<Outgoing>, Option<i64>), SyncError> {
        let cart = &self.config.cart_id;
        let mut out = Vec::new();
        let mut resume = None;
        let mut bad = Vec::new();
        match class {
            OutboxClass::Payment | OutboxClass::Control => {
                let mut acks: Vec<(i64, Ack)> = Vec::new();
                for r in records {
                    if let (OutboxBody::Bytes(b), "ack") = (&r.body, r.kind.as_str())
                        && let Ok((_, v)) = wire::decode(b)
                        && let Ok(ack) = serde_json::from_value::<Ack>(v)
                    {
                        acks.push((r.id, ack));
                        continue;
                    }
                    match (&r.body, r.kind.as_str()) {
                        (OutboxBody::Payment(p), KIND_PAYMENT_FORWARD) => {
                            let body = Forward {
                                amount: p.amount,
                                card: CardData::from(p.as_ref()),
                                created: p.created,
                                approved_offline_at: p.offline_approved,
                                counter: p.counter_value,
                            };
                            let key = p.key.to_string();
                            out.push(Outgoing {
                                class,
                                topic: topics::up(cart, Kind::PaymentForward),
                                payload: encode(Kind::PaymentForward, cart, &key, now, &body)
                                    .into(),
                                ids: vec![r.id],
                                records: 1,
                            });
                        }
                        (OutboxBody::Payment(p), KIND_PAYMENT_INQUIRY) => {
                            let body = Inquiry {
                                amount: p.amount,
                                created: p.created,
                            };
                            let key = p.key.to_string();
                            out.push(Outgoing {
                                class,
                                topic: topics::up(cart, Kind::PaymentInquiry),
                                payload: encode(Kind::PaymentInquiry, cart, &key, now, &body)
                                    .into(),
                                ids: vec![r.id],
                                records: 1,
                            });
                        }
                        (OutboxBody::Payment(p), KIND_PAYMENT_REVERSAL) => {
                            let body = Reversal {
                                amount: p.amount,
                                created: p.created,
                            };
                            let key = p.key.to_string();
                            out.push(Outgoing {
                                class,
                                topic: topics::up(cart, Kind::PaymentReversal),
                                payload: encode(Kind::PaymentReversal, cart, &key, now, &body)
                                    .into(),
                                ids: vec![r.id],
                                records: 1,
                            });
                        }
                        (OutboxBody::Bytes(b), kind) => {
                            match Kind::parse(kind).filter(|k| k.is_up()) {
                                Some(k) => out.push(Outgoing {
                                    class,
                                    topic: topics::up(cart, k),
                                    payload: Bytes::copy_from_slice(b),
                                    ids: vec![r.id],
                                    records: 1,
                                }),
                                // A kind of newer firmware (a rollback):
                                // kept and skipped, not an error.
                                None => {
                                    debug!(record = r.id, %kind, "outbox record of an unknown kind: skipped")
                                }
                            }
                        }
                        (OutboxBody::Unreadable(why), _) => bad.push((r.id, why.clone())),
                        (OutboxBody::Unknown(what), kind) => {
                            // Written by newer firmware (a rollback): kept
                            // as it is for that firmware or the backend.
                            debug!(record = r.id, %kind, %what, "outbox record of newer firmware: skipped");
                        }
                        (_, kind) => {
                            debug!(record = r.id, %kind, "outbox record of an unknown kind: skipped");
                        }
                    }
                }
                out.extend(ack_batches(cart, acks, now));
            }
            OutboxClass::Telemetry => {
                let ledger_id = super::blocking(|| self.ledger().ledger_id().to_owned());
                let topic = topics::up(cart, Kind::TelemetryBatch);
                let stored: Vec<(i64, &[u8])> = records
                    .iter()
                    .map(|r| match &r.body {
                        OutboxBody::Bytes(b) => (r.id, b.as_slice()),
                        _ => (r.id, &[][..]),
                    })
                    .collect();
                let created: std::collections::HashMap<i64, Timestamp> =
                    records.iter().map(|r| (r.id, r.created)).collect();
                // Records published before and sent back for a retry (a
                // PUBACK 16 while the backend's subscriber was away, a
                // transient refusal) were already released from the linger
                // (by a flush, the return after an outage, or their age):
                // they are not held again. Otherwise what waited through an
                // outage and met a broker still without the backend lingers
                // up to `telemetry_linger_secs` after the return, the flush
                // having been spent on the pass that got the 16.
                let retried: std::collections::HashSet<i64> = records
                    .iter()
                    .filter(|r| r.attempts > 0)
                    .map(|r| r.id)
                    .collect();
                // Validated once per batch; invalid records never leave the cart.
                let (valid, invalid) = validate(&stored);
                bad.extend(
                    invalid
                        .into_iter()
                        .map(|id| (id, "stored telemetry is not valid JSON".to_owned())),
                );
                let mut rest = &valid[..];
                while let Some(p) = pack(
                    cart,
                    &ledger_id,
                    topic.len(),
                    rest,
                    METERING_UNIT,
                    now,
                    hint,
                ) {
                    let consumed = p.ids.len();
                    let last_message = consumed >= rest.len();
                    let not_full = p.payload.len() + topic.len() < METERING_UNIT * 80 / 100;
                    let sent_before = valid.len() - rest.len();
                    if last_message && not_full {
                        if more_follow && sent_before > 0 {
                            // Read these again with the next batch, to fill the unit.
                            resume = Some(valid[sent_before - 1].0);
                            break;
                        }
                        let oldest = created.get(&rest[0].0).copied().unwrap_or(now);
                        let released = rest.iter().any(|(id, _)| retried.contains(id));
                        if !more_follow && !released && now.secs_since(oldest) < linger {
                            // Wait for more events to fill the unit.
                            break;
                        }
                    }
                    out.push(Outgoing {
                        class,
                        topic: topic.clone(),
                        payload: p.payload.into(),
                        records: p.ids.len(),
                        ids: p.ids,
                    });
                    rest = &rest[consumed..];
                }
            }
        }
        if !bad.is_empty() {
            super::blocking(|| -> Result<(), crate::LedgerError> {
                let mut ledger = self.ledger();
                for (id, why) in bad {
                    error!(record = id, %why, "outbox record cannot be sent: quarantined");
                    ledger.quarantine(&[id], &why, now)?;
                }
                Ok(())
            })?;
        }
        Ok((out, resume))
    }
}

/// Acks travel together: one message (one billable unit) for up to ~4.5 KB
/// of acks instead of one each.
fn ack_batches(cart: &str, acks: Vec<(i64, Ack)>, now: Timestamp) -> Vec<Outgoing> {
    const BUDGET: usize = 4_500;
    let topic = topics::up(cart, Kind::AckBatch);
    let mut out = Vec::new();
    let mut ids = Vec::new();
    let mut batch: Vec<Ack> = Vec::new();
    let mut size = 0usize;
    let flush = |ids: &mut Vec<i64>, batch: &mut Vec<Ack>, out: &mut Vec<Outgoing>| {
        if batch.is_empty() {
            return;
        }
        let id = format!("{}:{}", batch[0].of.as_str(), batch[0].of_id);
        let body = AckBatch {
            acks: std::mem::take(batch),
        };
        let payload = encode(Kind::AckBatch, cart, &id, now, &body);
        let records = body.acks.len();
        out.push(Outgoing {
            class: OutboxClass::Control,
            topic: topic.clone(),
            payload: payload.into(),
            ids: std::mem::take(ids),
            records,
        });
    };
    for (id, ack) in acks {
        let len = serde_json::to_vec(&ack).map_or(0, |v| v.len()) + 1;
        if size + len > BUDGET {
            flush(&mut ids, &mut batch, &mut out);
            size = 0;
        }
        size += len;
        ids.push(id);
        batch.push(ack);
    }
    flush(&mut ids, &mut batch, &mut out);
    out
}
