//! The emulator's MQTT side. It subscribes to every cart's upstream topics
//! with the `backend` identity, answers online authorizations on the
//! request's response topic, answers forwards and inquiries on the cart's
//! `down/forward_result` and reversals on `down/reversal_result`, ingests telemetry with dedupe, and publishes
//! downstream updates.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use store_and_forward::payment::BackendOutcome;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::uplink::{
    self, Incoming, LinkConfig, LinkError, LinkHandle, PublishProps, QoS, SwappableClientCert,
};
use store_and_forward::wire::down::{
    AuthResponse, CatalogDelta, DenyListUpdate, ForwardResult, PolicyUpdate, ReversalResult,
    RotationRequest,
};
use store_and_forward::wire::up::{Ack, CardData, CartStatus};
use store_and_forward::wire::{Kind, Up, decode_up, encode, topics};
use store_and_forward::{Money, Timestamp};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::counts::{Counts, PaymentView, Via};
use crate::fleet::{Fleet, FleetConfig, FleetError};
use crate::jobs::{JobsConfig, JobsService};
use crate::processor::{Decision, Processor};

/// How the emulator connects.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The broker (client id `backend`).
    pub link: LinkConfig,
    /// The backend's client certificate and key (PEM), with TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The folder with the TEST ONLY fixtures.
    pub fixtures: PathBuf,
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The fixtures could not be loaded.
    #[error(transparent)]
    Fixtures(#[from] hal::reader::fixtures::FixtureError),
    /// The identity could not be loaded.
    #[error(transparent)]
    Tls(#[from] uplink::TlsError),
    /// The link could not start or publish.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The fleet-provisioning responder could not start.
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// One payment key as the backend records it.
#[derive(Default)]
pub(crate) struct Payment {
    pub(crate) amount: Option<Money>,
    pub(crate) outcome: Option<BackendOutcome>,
    pub(crate) via: Option<Via>,
    pub(crate) card: Option<String>,
    pub(crate) duplicates: u64,
    /// Reversed: the charge was given back (once).
    pub(crate) reversed: bool,
}

#[derive(Default)]
struct State {
    counts: Counts,
    payments: HashMap<(String, String), Payment>,
    telemetry: HashSet<(String, String, i64)>,
    acks: Vec<(String, Ack)>,
    statuses: HashMap<String, CartStatus>,
    next_ref: u64,
    staff: crate::staff::StaffLists,
    streams: crate::streams::Streams,
}

/// A running emulator.
pub struct Emulator {
    link: LinkHandle,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    fleet: Option<Arc<Fleet>>,
    jobs: Option<Arc<JobsService>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Emulator {
    /// Connects and starts answering. Must be called inside a tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        Self::start_with_fleet(config, None).await
    }

    /// [`Emulator::start`] with the fleet-provisioning responder (`fleet.rs`).
    pub async fn start_with_fleet(
        config: EmulatorConfig,
        fleet: Option<FleetConfig>,
    ) -> Result<Emulator, EmulatorError> {
        Self::start_with(config, fleet, None).await
    }

    /// [`Emulator::start_with_fleet`] with AWS IoT Jobs (`jobs.rs`) too.
    pub async fn start_with(
        config: EmulatorConfig,
        fleet: Option<FleetConfig>,
        jobs: Option<JobsConfig>,
    ) -> Result<Emulator, EmulatorError> {
        let fleet = fleet.map(Fleet::new).transpose()?.map(Arc::new);
        let processor = Arc::new(Processor::load(&config.fixtures)?);
        let cert = match &config.identity {
            Some((c, k)) => Some(Arc::new(SwappableClientCert::new(
                uplink::certified_key_from_pem_files(c, k)?,
            ))),
            None => None,
        };
        let mut subs = vec![(topics::BACKEND_UP_FILTER.to_owned(), QoS::AtLeastOnce)];
        if fleet.is_some() {
            subs.extend(Fleet::subscriptions().map(|t| (t.to_owned(), QoS::AtLeastOnce)));
        }
        if jobs.is_some() {
            subs.extend(
                store_and_forward::wire::jobs::BACKEND_FILTERS
                    .map(|t| (t.to_owned(), QoS::AtLeastOnce)),
            );
        }
        let (link, incoming) = uplink::start(config.link, cert, subs)?;
        let state = Arc::new(Mutex::new(State::default()));
        let ticker = jobs.as_ref().and_then(|c| c.tick_every);
        let jobs = jobs.map(|c| Arc::new(JobsService::new(&c, link.clone())));
        let ticker = ticker.zip(jobs.clone()).map(|(every, jobs)| {
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                loop {
                    interval.tick().await;
                    if let Err(e) = jobs.tick().await {
                        warn!(cause = %e, "jobs tick not published");
                    }
                }
            })
        });
        let served = (link.clone(), state.clone(), fleet.clone(), jobs.clone());
        let task = tokio::spawn(serve(served, processor, incoming));
        Ok(Emulator {
            link,
            state,
            task,
            fleet,
            jobs,
            ticker,
        })
    }

    /// AWS IoT Jobs, when started with it.
    pub fn jobs(&self) -> Option<&JobsService> {
        self.jobs.as_deref()
    }

    /// The fleet-provisioning responder and its certificate registry.
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_deref()
    }

    /// Waits until connected.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        self.link.wait_up(timeout).await
    }

    /// The emulator's own link (its traffic is the backend's ingest).
    pub fn link(&self) -> &LinkHandle {
        &self.link
    }

    /// The totals.
    pub fn counts(&self) -> Counts {
        let mut counts = lock(&self.state).counts.clone();
        if let Some(j) = &self.jobs {
            counts.jobs = j.with(|j| j.counts());
        }
        counts
    }

    /// Every payment seen.
    pub fn payments(&self) -> Vec<PaymentView> {
        lock(&self.state)
            .payments
            .iter()
            .map(|((cart, key), p)| PaymentView {
                cart: cart.clone(),
                key: key.clone(),
                amount: p.amount,
                outcome: p.outcome.clone(),
                via: p.via,
                card: p.card.clone(),
                duplicates: p.duplicates,
                reversed: p.reversed,
            })
            .collect()
    }

    /// The e-receipt page's check of a receipt URL (a receipt's QR code),
    /// with the certificate of the cart it names (DER): see
    /// [`crate::receipts`].
    pub fn check_receipt(
        &self,
        url: &str,
        cart_certificate: &[u8],
    ) -> Result<crate::receipts::ReceiptVerdict, crate::receipts::ReceiptRefused> {
        crate::receipts::check(url, cart_certificate, &self.payments())
    }

    /// The e-receipt page's check of a receipt URL against the
    /// certificates this backend issued to the cart it names (fleet
    /// provisioning and rotations; an older key's receipts stay valid).
    pub fn verify_receipt(
        &self,
        url: &str,
    ) -> Result<crate::receipts::ReceiptVerdict, crate::receipts::ReceiptRefused> {
        let cart = store_and_forward::wire::receipt::SignedReceipt::parse(url)?
            .claim
            .cart_id;
        let certs = self
            .fleet()
            .map(|f| f.certificates(&cart))
            .unwrap_or_default();
        let mut last = crate::receipts::ReceiptRefused::NoCertificate(cart);
        for c in certs
            .iter()
            .filter(|c| c.status != crate::fleet::CertStatus::PendingActivation)
        {
            match self.check_receipt(url, &c.der) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Acks received, in order.
    pub fn acks(&self) -> Vec<(String, Ack)> {
        lock(&self.state).acks.clone()
    }

    /// The last status of a cart.
    pub fn status(&self, cart: &str) -> Option<CartStatus> {
        lock(&self.state).statuses.get(cart).cloned()
    }

    /// Publishes new offline limits to a cart.
    pub async fn publish_policy(&self, cart: &str, limits: LimitsConfig) -> Result<(), LinkError> {
        let id = limits.version.to_string();
        let body = PolicyUpdate { limits };
        self.down(
            cart,
            Kind::PolicyUpdate,
            encode(Kind::PolicyUpdate, cart, &id, Timestamp::now(), &body),
        )
        .await
    }

    /// Publishes a deny-list update to a cart.
    pub async fn publish_deny_list(
        &self,
        cart: &str,
        update: DenyListUpdate,
    ) -> Result<(), LinkError> {
        let id = update.version.to_string();
        lock(&self.state).streams.deny_list(cart, &update);
        self.down(
            cart,
            Kind::DenyListUpdate,
            encode(Kind::DenyListUpdate, cart, &id, Timestamp::now(), &update),
        )
        .await
    }

    /// Publishes a catalog delta to a cart.
    pub async fn publish_catalog(&self, cart: &str, delta: CatalogDelta) -> Result<(), LinkError> {
        let id = delta.version.to_string();
        lock(&self.state).streams.catalog(cart, &delta);
        self.down(
            cart,
            Kind::CatalogDelta,
            encode(Kind::CatalogDelta, cart, &id, Timestamp::now(), &delta),
        )
        .await
    }

    /// Asks a cart to rotate its certificate.
    pub async fn request_rotation(
        &self,
        cart: &str,
        id: &str,
        request: RotationRequest,
    ) -> Result<(), LinkError> {
        self.down(
            cart,
            Kind::RotationRequest,
            encode(Kind::RotationRequest, cart, id, Timestamp::now(), &request),
        )
        .await
    }

    /// The resync requests carts sent, in order.
    pub fn resync_requests(&self) -> Vec<(String, store_and_forward::wire::up::ResyncRequest)> {
        lock(&self.state).streams.resyncs.clone()
    }

    /// Publishes raw bytes (malformed-input tests).
    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>) -> Result<(), LinkError> {
        self.link
            .publish(
                topic,
                Bytes::from(payload),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, cart: &str, kind: Kind, payload: Vec<u8>) -> Result<(), LinkError> {
        publish_down(&self.link, cart, kind, payload).await
    }

    /// Publishes an encoded downstream message (for the other files).
    pub(crate) async fn down_raw(
        &self,
        cart: &str,
        kind: Kind,
        payload: Vec<u8>,
    ) -> Result<(), LinkError> {
        self.down(cart, kind, payload).await
    }

    /// The link (for tasks that publish on their own).
    pub(crate) fn link_handle(&self) -> LinkHandle {
        self.link.clone()
    }

    /// Whether `cart` has acknowledged the message (`kind`, `id`), any result.
    pub(crate) fn acked_probe(&self) -> impl Fn(&str, Kind, &str) -> bool + Send + 'static {
        let state = self.state.clone();
        move |cart, kind, id| {
            lock(&state)
                .acks
                .iter()
                .any(|(c, a)| c == cart && a.of == kind && a.of_id == id)
        }
    }

    /// Runs `f` on the staff lists published so far.
    pub(crate) fn with_staff<T>(&self, f: impl FnOnce(&mut crate::staff::StaffLists) -> T) -> T {
        f(&mut lock(&self.state).staff)
    }

    /// Disconnects.
    pub async fn shutdown(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.link.shutdown().await;
        self.task.abort();
    }
}

type Served = (
    LinkHandle,
    Arc<Mutex<State>>,
    Option<Arc<Fleet>>,
    Option<Arc<JobsService>>,
);

async fn serve(
    (link, state, fleet, jobs): Served,
    processor: Arc<Processor>,
    mut incoming: mpsc::Receiver<Incoming>,
) {
    // Each message is handled on its own task: a handler awaits its
    // publish's PUBACK, which the link can only read while this loop keeps
    // taking incoming messages (the link stops reading when the channel is
    // full). Awaiting inline would deadlock under load.
    while let Some(msg) = incoming.recv().await {
        let (link, state, processor) = (link.clone(), state.clone(), processor.clone());
        let (fleet, jobs) = (fleet.clone(), jobs.clone());
        tokio::spawn(async move {
            if let Some(f) = &fleet
                && f.handle(&link, &msg).await
            {
                return;
            }
            if let Some(j) = &jobs
                && j.handle(&msg).await
            {
                return;
            }
            handle(&link, &state, &processor, fleet.as_deref(), msg).await
        });
    }
}

async fn handle(
    link: &LinkHandle,
    state: &Arc<Mutex<State>>,
    processor: &Arc<Processor>,
    fleet: Option<&Fleet>,
    msg: Incoming,
) {
    let Some((topic_cart, "up", _)) = topics::parse(&msg.topic) else {
        return;
    };
    let (header, up) = match decode_up(&msg.payload) {
        Ok(d) => d,
        Err(e) => {
            warn!(topic = %msg.topic, cause = %e, "malformed upstream message");
            lock(state).counts.malformed += 1;
            return;
        }
    };
    if header.cart != topic_cart {
        warn!(topic = %msg.topic, cart = %header.cart, "envelope cart does not match its topic");
        lock(state).counts.malformed += 1;
        return;
    }
    let cart = header.cart.clone();
    let key = header.id.clone();
    match up {
        Up::AuthRequest(req) => {
            let decision = {
                let mut s = lock(state);
                s.counts.auth_requests += 1;
                decide_online(&mut s, processor, &cart, &key, req.amount, &req.card)
            };
            let Some(reply_to) = msg.response_topic.clone() else {
                return;
            };
            let answer = move |outcome: BackendOutcome| {
                let payload = encode(
                    Kind::AuthResponse,
                    &cart,
                    &key,
                    Timestamp::now(),
                    &AuthResponse { outcome },
                );
                let props = PublishProps {
                    correlation_data: msg.correlation_data.clone(),
                    ..PublishProps::default()
                };
                (reply_to.clone(), Bytes::from(payload), props)
            };
            match decision {
                Decision::Now(outcome) => {
                    let (t, p, props) = answer(outcome);
                    let _ = link.publish(&t, p, QoS::AtLeastOnce, props).await;
                    lock(state).counts.auth_answers += 1;
                }
                Decision::Later(outcome, delay) => {
                    let link = link.clone();
                    let state = state.clone();
                    let (t, p, props) = answer(outcome);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let _ = link.publish(&t, p, QoS::AtLeastOnce, props).await;
                        lock(&state).counts.auth_answers += 1;
                    });
                }
                Decision::Never => {}
            }
        }
        Up::PaymentForward(fwd) => {
            let outcome = {
                let mut s = lock(state);
                s.counts.forwards += 1;
                decide_forward(&mut s, processor, &cart, &key, fwd.amount, &fwd.card)
            };
            send_forward_result(link, &cart, &key, outcome).await;
        }
        Up::PaymentInquiry(inq) => {
            let outcome = {
                let mut s = lock(state);
                s.counts.inquiries += 1;
                let is_new = !s.payments.contains_key(&(cart.clone(), key.clone()));
                if is_new {
                    s.counts.payments += 1;
                }
                let p = s.payments.entry((cart.clone(), key.clone())).or_default();
                p.amount.get_or_insert(inq.amount);
                match &p.outcome {
                    Some(o) => {
                        p.duplicates += 1;
                        o.clone()
                    }
                    None => {
                        // Never seen online: nothing was charged; the key is
                        // closed so a later request cannot charge it.
                        p.outcome = Some(BackendOutcome::Unknown);
                        p.via = Some(Via::Inquiry);
                        BackendOutcome::Unknown
                    }
                }
            };
            send_forward_result(link, &cart, &key, outcome).await;
        }
        Up::PaymentReversal(rev) => {
            let result = {
                let mut s = lock(state);
                let id = (cart.clone(), key.clone());
                let is_new = !s.payments.contains_key(&id);
                let s = &mut *s;
                let p = s.payments.entry(id).or_default();
                p.amount.get_or_insert(rev.amount);
                let result = crate::reversals::reverse(p, is_new, &mut s.counts);
                info!(cart, payment = key, ?result, "reversal");
                result
            };
            let payload = encode(
                Kind::ReversalResult,
                &cart,
                &key,
                Timestamp::now(),
                &ReversalResult { result },
            );
            // A lost answer is not retried here: the cart sends the
            // reversal again when no result comes.
            let _ = publish_down(link, &cart, Kind::ReversalResult, payload).await;
        }
        Up::TelemetryBatch(batch) => {
            let mut s = lock(state);
            s.counts.telemetry_messages += 1;
            for seq in batch.sequences() {
                if s.telemetry
                    .insert((cart.clone(), batch.ledger.clone(), seq))
                {
                    s.counts.telemetry_events += 1;
                } else {
                    s.counts.telemetry_duplicates += 1;
                }
            }
        }
        Up::CartStatus(st) => {
            let mut s = lock(state);
            s.counts.statuses += 1;
            s.statuses.insert(cart, *st);
        }
        Up::Ack(ack) => {
            let mut s = lock(state);
            s.counts.acks += 1;
            s.acks.push((cart, ack));
        }
        Up::ProvisioningComplete(p) => fleet.map_or((), |f| f.provisioning_complete(&cart, &p)),
        Up::RotationComplete(r) => fleet.map_or((), |f| f.rotation_complete(&cart, &r)),
        Up::ResyncRequest(r) => {
            let whole = {
                let mut s = lock(state);
                s.counts.resync_requests += 1;
                let whole = s.streams.whole(&cart, r.of);
                s.streams.resyncs.push((cart.clone(), r));
                whole
            };
            if let Some((kind, payload)) = whole {
                let _ = publish_down(link, &cart, kind, payload).await;
            }
        }
        Up::AckBatch(batch) => {
            let mut s = lock(state);
            s.counts.acks += batch.acks.len() as u64;
            s.acks
                .extend(batch.acks.into_iter().map(|a| (cart.clone(), a)));
        }
    }
}

/// Publishes a downstream message on the cart's `down/{kind}` topic.
async fn publish_down(
    link: &LinkHandle,
    cart: &str,
    kind: Kind,
    payload: Vec<u8>,
) -> Result<(), LinkError> {
    link.publish(
        &topics::down(cart, kind),
        Bytes::from(payload),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await
    .map(|_| ())
}

/// Answers a forward or an inquiry. A lost publish is not retried here:
/// the cart sends the forward again when no result comes.
async fn send_forward_result(link: &LinkHandle, cart: &str, key: &str, outcome: BackendOutcome) {
    let payload = encode(
        Kind::ForwardResult,
        cart,
        key,
        Timestamp::now(),
        &ForwardResult { outcome },
    );
    let _ = publish_down(link, cart, Kind::ForwardResult, payload).await;
}

fn reference(s: &mut State, prefix: &str) -> String {
    s.next_ref += 1;
    format!("{prefix}-{:06}", s.next_ref)
}

fn decide_online(
    s: &mut State,
    processor: &Processor,
    cart: &str,
    key: &str,
    amount: Money,
    card: &CardData,
) -> Decision {
    let id = (cart.to_owned(), key.to_owned());
    if let Some(p) = s.payments.get_mut(&id) {
        p.duplicates += 1;
        s.counts.payment_duplicates += 1;
        return match &p.outcome {
            Some(o) => Decision::Now(o.clone()),
            None => Decision::Never,
        };
    }
    s.counts.payments += 1;
    let r = reference(s, "ONL");
    let Some((name, behaviour)) = processor.card(key, amount, &card.blob) else {
        s.counts.undecryptable += 1;
        let outcome = BackendOutcome::Declined {
            reason: "card data unreadable".into(),
        };
        s.payments.insert(
            id,
            Payment {
                amount: Some(amount),
                outcome: Some(outcome.clone()),
                via: Some(Via::Online),
                ..Payment::default()
            },
        );
        return Decision::Now(outcome);
    };
    let decision = processor.online(&behaviour, &r);
    let outcome = match &decision {
        Decision::Now(o) | Decision::Later(o, _) => Some(o.clone()),
        Decision::Never => None,
    };
    if matches!(outcome, Some(BackendOutcome::Approved { .. })) {
        s.counts.charged += 1;
    }
    info!(cart, payment = key, card = %name, ?outcome, "online authorization");
    s.payments.insert(
        id,
        Payment {
            amount: Some(amount),
            outcome,
            via: Some(Via::Online),
            card: Some(name),
            duplicates: 0,
            reversed: false,
        },
    );
    decision
}

fn decide_forward(
    s: &mut State,
    processor: &Processor,
    cart: &str,
    key: &str,
    amount: Money,
    card: &CardData,
) -> BackendOutcome {
    let id = (cart.to_owned(), key.to_owned());
    let known = s
        .payments
        .get(&id)
        .map(|p| (p.outcome.clone(), p.card.clone()));
    if let Some((Some(outcome), _)) = &known {
        // Decided already (an online answer the cart missed, or a repeat).
        s.counts.payment_duplicates += 1;
        if let Some(p) = s.payments.get_mut(&id) {
            p.duplicates += 1;
        }
        return outcome.clone();
    }
    if known.is_none() {
        s.counts.payments += 1;
    } else {
        // Seen online but never answered: decided now, once.
        s.counts.payment_duplicates += 1;
    }
    let r = reference(s, "FWD");
    let (outcome, name) = match processor.card(key, amount, &card.blob) {
        Some((name, behaviour)) => (processor.forwarded(&behaviour, &r), Some(name)),
        None => {
            s.counts.undecryptable += 1;
            (
                BackendOutcome::Declined {
                    reason: "card data unreadable".into(),
                },
                None,
            )
        }
    };
    if matches!(outcome, BackendOutcome::Approved { .. }) {
        s.counts.charged += 1;
    }
    let p = s.payments.entry(id).or_default();
    p.amount = Some(amount);
    p.outcome = Some(outcome.clone());
    p.via = Some(Via::Forward);
    if p.card.is_none() {
        p.card = name;
    }
    outcome
}
