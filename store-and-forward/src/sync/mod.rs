//! The sync between the ledger and the backend, over the [`uplink`] link:
//! it drains the outbox (payments first, then control messages, then
//! telemetry packed into 5 KB units), asks for online authorization, and
//! applies what comes down, acknowledging every downstream message.
//!
//! - `drain.rs`: one pass over the outbox, publishes pipelined, PUBACKs
//!   marking records delivered, rejections quarantined.
//! - `online.rs`: online authorization by MQTT 5 request/response.
//! - `downstream.rs`: decoding, applying and acknowledging what comes down.
//! - `jobs.rs`: remote jobs (AWS IoT Jobs), one at a time, recorded durably.
//! - `report.rs`: the delivery report.
//!
//! [`uplink`]: crate::uplink

mod downstream;
mod drain;
pub mod jobs;
mod online;
pub mod report;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, warn};

use crate::ledger::{Ledger, RetryPolicy};
use crate::uplink::{Incoming, LinkError, LinkHandle, QoS};
use crate::wire::down::{CatalogDelta, RotationRequest};
use crate::wire::topics;
use crate::{LedgerError, Timestamp};

pub use downstream::Handled;
pub use drain::DrainPass;
pub use online::OnlineError;
pub use report::DeliveryReport;

/// The ledger as the checkout and the sync share it. Every call under the
/// lock is short (one SQLite transaction).
pub type SharedLedger = Arc<Mutex<Ledger>>;

/// How the sync behaves (the `[sync]` table of the cart's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// The cart id (topics, envelopes).
    pub cart_id: String,
    /// Firmware version reported in the cart's status.
    pub firmware: String,
    /// Online authorization timeout, ms: past it the offline policy decides.
    pub auth_timeout_ms: u64,
    /// Drain the outbox at least this often while the link is up, ms.
    pub drain_interval_ms: u64,
    /// Publish the cart's status this often, seconds.
    pub status_interval_secs: u64,
    /// Records read from the ledger per step.
    pub batch_records: usize,
    /// Publishes in flight during a drain.
    pub window: usize,
    /// A telemetry message that does not fill its 5 KB unit waits until its
    /// oldest event is this old, seconds (0: send at once; a flush, as
    /// `cartctl sync` asks for, does not wait).
    pub telemetry_linger_secs: u64,
    /// Backoff for records whose publish failed.
    pub retry: RetryPolicy,
    /// A forward or inquiry the broker took but the backend has not
    /// answered after this many seconds is sent again.
    pub resend_unanswered_secs: u64,
    /// How far ahead of what the cart can vouch for (the last known-good
    /// time plus its own elapsed time) a backend time may be and still be
    /// trusted, seconds (1 to 3,600): `time::judge_backend_time`.
    pub time_slack_secs: u64,
    /// What a PUBACK with reason 16 (no matching subscribers) means.
    pub no_subscribers: NoSubscribers,
}

/// What the cart makes of a PUBACK with MQTT 5 reason 16, "no matching
/// subscribers": the broker took the message and handed it to nobody.
/// AWS IoT Core never answers 16 (its rules consume the message); a
/// self-hosted broker does while the backend's subscriber is not connected
/// (after a broker restart, before the backend is back), and counting that
/// as delivered loses the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoSubscribers {
    /// Not delivered: sent again with the retry backoff (the backend
    /// deduplicates a message that reached it after all).
    #[default]
    Retry,
    /// Delivered: for a broker whose own rule engine consumes messages and
    /// still answers 16.
    Delivered,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            cart_id: String::new(),
            firmware: env!("CARGO_PKG_VERSION").to_owned(),
            auth_timeout_ms: 3_000,
            drain_interval_ms: 1_000,
            status_interval_secs: 3_600,
            batch_records: 4_000,
            window: 64,
            telemetry_linger_secs: 600,
            retry: RetryPolicy::default(),
            resend_unanswered_secs: 300,
            time_slack_secs: 300,
            no_subscribers: NoSubscribers::Retry,
        }
    }
}

/// What the sync hands the application (it owns the catalog and the
/// certificate).
#[derive(Debug)]
pub enum AppEvent {
    /// A catalog delta newer than the version the ledger recorded. The
    /// application applies it and says how through `done`; only then is
    /// it acknowledged (a delta that fits no version is rejected and the
    /// catalog asked for whole).
    Catalog {
        /// The delta (or a whole catalog: no base version).
        delta: CatalogDelta,
        /// Where the application reports the outcome.
        done: CatalogDone,
    },
    /// A remote job for the application (out of service, reboot, ...).
    /// Its outcome goes back through `done`.
    Job {
        /// The job.
        run: jobs::JobRun,
        /// Where the application reports progress and the outcome.
        done: jobs::JobDone,
    },
    /// The backend asks for a certificate rotation.
    Rotation {
        /// The request id.
        id: String,
        /// The request.
        request: RotationRequest,
    },
}

/// How the application's catalog took a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogOutcome {
    /// Applied and committed.
    Applied,
    /// The catalog already holds this version or a newer one.
    Unchanged {
        /// The catalog's version.
        current: u64,
    },
    /// The delta's base is not the catalog's version: not applied.
    BaseMismatch {
        /// The catalog's version.
        have: u64,
    },
    /// The catalog could not store it (not acknowledged; the backend
    /// sends it again).
    Failed(String),
}

/// The application's answer to one [`AppEvent::Catalog`]. Dropped without
/// an answer counts as [`CatalogOutcome::Failed`].
#[derive(Debug)]
pub struct CatalogDone(tokio::sync::oneshot::Sender<CatalogOutcome>);

impl CatalogDone {
    /// A pair: the answer and where it arrives.
    pub fn new() -> (CatalogDone, tokio::sync::oneshot::Receiver<CatalogOutcome>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (CatalogDone(tx), rx)
    }

    /// Reports how the delta was taken.
    pub fn report(self, outcome: CatalogOutcome) {
        let _ = self.0.send(outcome);
    }
}

/// A sync failure that stops a drain pass. The pass is retried later;
/// nothing is marked delivered that was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The ledger failed (see [`LedgerError`]).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A ledger task off the runtime's workers did not finish (it
    /// panicked, or the runtime is shutting down).
    #[error("ledger task: {0}")]
    Blocking(String),
}

/// The sync: the ledger, the link and the delivery report.
pub struct Uplink {
    config: SyncConfig,
    ledger: SharedLedger,
    link: LinkHandle,
    report: Mutex<DeliveryReport>,
    kick: Notify,
    /// Set by [`Uplink::flush`]: the next drain pass sends telemetry
    /// without lingering.
    flush: std::sync::atomic::AtomicBool,
    app: Option<mpsc::Sender<AppEvent>>,
    /// When backend contact was last written to the ledger (ms): written
    /// at most once a second.
    contact_noted: std::sync::atomic::AtomicI64,
    /// The application's reports on jobs, and their receiver (taken by
    /// [`Uplink::run`]).
    jobs_tx: mpsc::Sender<jobs::JobReport>,
    jobs_rx: Mutex<Option<mpsc::Receiver<jobs::JobReport>>>,
    /// The job this process handed to the application.
    jobs_active: Mutex<Option<String>>,
    /// The drain's holds of the ledger's lock go after waiting checkouts.
    first: crate::ledger::CheckoutFirst,
}

impl Uplink {
    /// The subscriptions the link must hold for the sync (pass them to
    /// [`crate::uplink::start`]).
    pub fn subscriptions(cart_id: &str) -> Vec<(String, QoS)> {
        let mut subs = vec![
            (topics::down_filter(cart_id), QoS::AtLeastOnce),
            (topics::rpc_filter(cart_id), QoS::AtLeastOnce),
        ];
        subs.extend(
            crate::wire::jobs::device_subscriptions(cart_id)
                .into_iter()
                .map(|t| (t, QoS::AtLeastOnce)),
        );
        subs
    }

    /// A sync over `ledger` and `link`; catalog deltas and rotation
    /// requests go to `app`.
    pub fn new(
        config: SyncConfig,
        ledger: SharedLedger,
        link: LinkHandle,
        app: Option<mpsc::Sender<AppEvent>>,
    ) -> Arc<Uplink> {
        let (jobs_tx, jobs_rx) = mpsc::channel(16);
        let first = lock(&ledger).checkout_first();
        Arc::new(Uplink {
            first,
            config,
            ledger,
            link,
            report: Mutex::new(DeliveryReport::default()),
            kick: Notify::new(),
            flush: std::sync::atomic::AtomicBool::new(false),
            app,
            contact_noted: std::sync::atomic::AtomicI64::new(0),
            jobs_tx,
            jobs_rx: Mutex::new(Some(jobs_rx)),
            jobs_active: Mutex::new(None),
        })
    }

    /// The link handle.
    pub fn link(&self) -> &LinkHandle {
        &self.link
    }

    /// The delivery report so far.
    pub fn report(&self) -> DeliveryReport {
        *lock(&self.report)
    }

    /// Asks for a drain now (new records, or `cartctl sync`).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Asks for a drain now that sends everything due, telemetry too
    /// without waiting `telemetry_linger_secs` to fill its unit (an
    /// operator's `cartctl sync`: "send it all now").
    pub fn flush(&self) {
        self.flush.store(true, std::sync::atomic::Ordering::Relaxed);
        self.kick.notify_one();
    }

    /// Whether a flush was asked for since the last drain pass began.
    pub(crate) fn take_flush(&self) -> bool {
        self.flush.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// Records a contact with the backend (at most once a second) and the
    /// backend's timestamp as a known-good time.
    pub(crate) fn note_contact(&self, backend_ts: Timestamp, now: Timestamp) {
        use std::sync::atomic::Ordering;
        let last = self.contact_noted.load(Ordering::Relaxed);
        if now.0 - last < 1_000 {
            return;
        }
        self.contact_noted.store(now.0, Ordering::Relaxed);
        let mut ledger = self.ledger();
        let here = crate::time::MonoPoint::now();
        let noted = ledger.record_backend_contact(now).and_then(|_| {
            ledger.record_backend_time(backend_ts, now, here.as_ref(), self.config.time_slack_secs)
        });
        if let Err(e) = noted {
            warn!(cause = %e, "backend contact not recorded");
        }
    }

    pub(crate) fn with_report(&self, f: impl FnOnce(&mut DeliveryReport)) {
        f(&mut lock(&self.report));
    }

    /// Runs until `shutdown` turns true: drains whenever the link is up (on
    /// connect, on a kick, and every `drain_interval_ms`), applies incoming
    /// messages, and publishes the cart's status periodically.
    pub async fn run(
        self: Arc<Self>,
        mut incoming: mpsc::Receiver<Incoming>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let me = self.clone();
        let mut stop = shutdown.clone();
        let mut job_reports = lock(&self.jobs_rx).take();
        let mut link_state = self.link.state();
        let downstream = tokio::spawn(async move {
            // Jobs: asked for after every connect, including the first.
            let mut asked = false;
            loop {
                let up = link_state.borrow_and_update().up;
                if up && !asked {
                    me.jobs_on_connect().await;
                }
                asked = up;
                tokio::select! {
                    msg = incoming.recv() => match msg {
                        Some(msg) if Uplink::is_jobs_topic(&msg.topic) => {
                            me.handle_jobs(&msg).await;
                            me.kick();
                        }
                        Some(msg) => {
                            me.handle_incoming(&msg).await;
                            me.kick();
                        }
                        None => break,
                    },
                    Some(report) = async {
                        match job_reports.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => me.on_job_report(report).await,
                    r = link_state.changed() => if r.is_err() { break },
                    _ = stop.changed() => if *stop.borrow() { break },
                }
            }
        });
        let mut state = self.link.state();
        // A connection at start that came at the first try is no return
        // from an outage; one that came after failed tries is (a cart
        // started while its network or the cloud was away).
        let mut was_up = self.link.state().borrow().up;
        let mut connected_before = was_up;
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.drain_interval_ms.max(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status =
            tokio::time::interval(Duration::from_secs(self.config.status_interval_secs.max(1)));
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => if *shutdown.borrow() { break },
                _ = state.changed() => {
                    // Back online: what waited through the outage goes at
                    // once, telemetry too (its linger counts from when it
                    // was queued, not from the reconnect).
                    let (up, failed_before) = {
                        let s = state.borrow();
                        (s.up, s.failures > 0)
                    };
                    if up && !was_up && (connected_before || failed_before) {
                        self.flush.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    connected_before |= up;
                    was_up = up;
                }
                _ = self.kick.notified() => {}
                _ = tick.tick() => {}
                _ = status.tick() => {
                    if let Err(e) = self.enqueue_status(Timestamp::now()) {
                        warn!(cause = %e, "cart status not queued");
                    }
                }
            }
            if !state.borrow().up {
                continue;
            }
            let requeued = self
                .ledger()
                .requeue_unanswered(self.config.resend_unanswered_secs, Timestamp::now());
            if let Err(e) = requeued {
                warn!(cause = %e, "unanswered payments not requeued");
            }
            match self.drain().await {
                Ok(r) if r.messages > 0 => {
                    debug!(messages = r.messages, records = r.records, "drained")
                }
                Ok(_) => {}
                Err(e) => warn!(cause = %e, "drain stopped; retrying later"),
            }
        }
        downstream.abort();
    }
}

/// Runs blocking ledger work (the ledger's lock, SQLite, fsync) without
/// holding up the runtime's other tasks (the link's keep-alive, PUBACKs):
/// on a multi-thread runtime (the daemon's) the worker hands its other
/// tasks on first (`block_in_place`); on a current-thread runtime (tests)
/// it runs in place.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the ledger half-written
    // (SQLite transactions roll back); go on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
