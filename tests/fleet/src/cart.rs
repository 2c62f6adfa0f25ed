//! One simulated cart: the project's real ledger (its own SQLite file),
//! real link (MQTT 5, mutual TLS with its own certificate) and real sync,
//! driven by a shopper stand-in that checks out and reports telemetry at a
//! configured rate, and an application stand-in that answers remote jobs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hal::reader::card::{FingerprintKey, mask_pan};
use hal::reader::carddata::{Binding, ProcessorPublicKey};
use hal::reader::fixtures::{self, TestCard, TestCards};
use hal::reader::message::{Currency as HalCurrency, EntryMode as HalEntryMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::ledger::OutboxClass;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::sync::jobs::{JobOutcome, details};
use store_and_forward::sync::{AppEvent, CatalogOutcome, SharedLedger, SyncConfig, Uplink};
use store_and_forward::telemetry::{ReadingWalk, TelemetryBuffer, TelemetryEvent};
use store_and_forward::uplink::{self, LinkConfig, SwappableClientCert};
use store_and_forward::{
    BackendOutcome, CardRead, Currency, EntryMode, Ledger, LedgerConfig, Money, NewAttempt,
    PaymentKey, PaymentState, Timestamp,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::SimError;

/// The test card every simulated shopper pays with (approved by the
/// emulator's processor, online or forwarded).
pub const CARD: &str = "chip-approve";

/// The workspace's `tests/fixtures` (test cards, processor key).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The card reader's side of a payment: the test card's data encrypted to
/// the processor's key and bound to the payment, as the real reader does.
pub struct Reader {
    card: TestCard,
    processor: ProcessorPublicKey,
    fingerprint: FingerprintKey,
}

impl Reader {
    /// Loads the fixtures.
    pub fn load(dir: &Path) -> Result<Reader, SimError> {
        let fixture = |e: fixtures::FixtureError| SimError::Fixtures(e.to_string());
        let cards = TestCards::load(&dir.join(fixtures::TEST_CARDS)).map_err(fixture)?;
        let card = cards
            .get(CARD)
            .cloned()
            .ok_or_else(|| SimError::Fixtures(format!("no test card {CARD}")))?;
        Ok(Reader {
            card,
            processor: fixtures::load_processor_public_key(&dir.join(fixtures::PROCESSOR_KEY))
                .map_err(fixture)?,
            fingerprint: fixtures::load_fingerprint_key(&dir.join(fixtures::FINGERPRINT_KEY))
                .map_err(fixture)?,
        })
    }

    /// What the reader hands the cart for the card paying `amount` under `key`.
    pub fn read(&self, key: &PaymentKey, amount: Money) -> Result<CardRead, SimError> {
        let card = &self.card;
        let c = amount.currency.as_str().as_bytes();
        let binding = Binding {
            key: key.0,
            amount_minor: amount.minor as u64,
            currency: HalCurrency::from_bytes([c[0], c[1], c[2]])
                .map_err(|e| SimError::Fixtures(format!("currency: {e:?}")))?,
        };
        let blob = card
            .seal(&self.processor, &binding)
            .map_err(|e| SimError::Fixtures(format!("card data: {e}")))?;
        Ok(CardRead {
            masked_pan: mask_pan(&card.pan)
                .ok_or_else(|| SimError::Fixtures("the test card's PAN".into()))?
                .as_str()
                .to_owned(),
            fingerprint: self.fingerprint.fingerprint(&card.pan).0.to_vec(),
            emv_data: vec![0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x10, 0x00],
            encrypted_blob: blob,
            entry_mode: match card.entry_mode {
                HalEntryMode::Contactless => EntryMode::Contactless,
                _ => EntryMode::Chip,
            },
        })
    }
}

/// Offline limits roomy enough that the simulation's own rate never hits
/// them (the policy itself is tested elsewhere).
pub fn sim_limits() -> LimitsConfig {
    LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 100_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 1_000_000_000)].into(),
        max_outstanding_count: 1_000_000,
        velocity_max_per_card: 1_000_000,
        ..LimitsConfig::default()
    }
}

/// What a simulated cart does.
#[derive(Debug, Clone)]
pub struct Activity {
    /// Telemetry readings per second (the brief's cart: 1).
    pub readings_per_sec: f64,
    /// A checkout every this many seconds on average (0: none).
    pub checkout_every_secs: f64,
    /// Readings are committed in groups after this long, ms (the daemon:
    /// 2,000; a time-scaled run divides it too).
    pub commit_every_ms: u64,
}

/// How a checkout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Approved by the backend while the shopper waited.
    Online,
    /// Approved by the offline policy; forwarded later.
    Offline,
    /// Declined (the simulation's card never is: a failure to report).
    Declined,
}

/// One cart.
pub struct SimCart {
    /// Its id (certificate CN, MQTT client id, topics).
    pub id: String,
    /// The ledger.
    pub ledger: SharedLedger,
    /// The sync (and its link).
    pub uplink: Arc<Uplink>,
    /// Payments this cart approved, and how.
    approved: Mutex<Vec<(PaymentKey, Decided)>>,
    /// Declines and failed checkouts (the card never declines).
    failures: Mutex<Vec<String>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The shopper stand-in, and how to stop it between two steps.
    shopper: Mutex<Option<JoinHandle<()>>>,
    stop_shopping: watch::Sender<bool>,
    dir: PathBuf,
}

/// What a cart needs to start.
pub struct CartSetup {
    /// Its id.
    pub id: String,
    /// Its folder (ledger, counter, data key).
    pub dir: PathBuf,
    /// Its certificate and key (PEM files).
    pub identity: (PathBuf, PathBuf),
    /// The link's configuration (client id set from `id`).
    pub link: LinkConfig,
    /// The sync's configuration (cart id set from `id`).
    pub sync: SyncConfig,
    /// Fail remote jobs on purpose (a rollout's bad carts).
    pub fail_jobs: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens the cart's ledger in `dir` with a file counter and data key.
pub fn open_ledger(dir: &Path) -> Result<SharedLedger, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::Io(dir.display().to_string(), e))?;
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        payment_reserve_bytes: 0,
        telemetry_quota_bytes: 1 << 32,
        ..LedgerConfig::default()
    };
    let counter = FileCounter::open(dir.join("counter"), 1)
        .map_err(|e| SimError::Check(format!("counter: {e}")))?;
    let mut key = FileDataKey::new(dir.join("data.key"));
    let limits = sim_limits()
        .validate("offline")
        .map_err(|e| SimError::Fixtures(format!("limits: {e:?}")))?;
    let (mut ledger, _) = Ledger::open(
        config,
        limits,
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )?;
    ledger.record_backend_contact(Timestamp::now())?;
    Ok(Arc::new(Mutex::new(ledger)))
}

impl SimCart {
    /// Opens the ledger, starts the link and the sync, and the
    /// application stand-in (jobs, catalog). Activity starts with
    /// [`SimCart::start_activity`].
    pub fn start(setup: CartSetup) -> Result<Arc<SimCart>, SimError> {
        let ledger = open_ledger(&setup.dir)?;
        let (cert, key) = &setup.identity;
        let cert = Arc::new(SwappableClientCert::new(
            uplink::certified_key_from_pem_files(cert, key)?,
        ));
        let link = LinkConfig {
            client_id: setup.id.clone(),
            ..setup.link
        };
        let (link, incoming) = uplink::start(link, Some(cert), Uplink::subscriptions(&setup.id))?;
        let sync = SyncConfig {
            cart_id: setup.id.clone(),
            ..setup.sync
        };
        let (app_tx, app_rx) = mpsc::channel(16);
        let uplink = Uplink::new(sync, ledger.clone(), link, Some(app_tx));
        let (shutdown, rx) = watch::channel(false);
        let cart = Arc::new(SimCart {
            id: setup.id,
            ledger,
            uplink: uplink.clone(),
            approved: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            shopper: Mutex::new(None),
            stop_shopping: watch::channel(false).0,
            dir: setup.dir,
        });
        let run = tokio::spawn(uplink.run(incoming, rx));
        let app = tokio::spawn(application(app_rx, setup.fail_jobs));
        lock(&cart.tasks).extend([run, app]);
        Ok(cart)
    }

    /// Starts the shopper and the application stand-ins.
    pub fn start_activity(self: &Arc<Self>, activity: Activity, reader: Arc<Reader>, seed: u64) {
        let me = self.clone();
        let stop = self.stop_shopping.subscribe();
        let shopper = tokio::spawn(async move { me.shop(activity, reader, seed, stop).await });
        *lock(&self.shopper) = Some(shopper);
    }

    /// Stops the shopper stand-in after its current step (a checkout
    /// finishes; buffered readings are committed).
    pub async fn stop_activity(&self) {
        let _ = self.stop_shopping.send(true);
        let task = lock(&self.shopper).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// The cart's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Payments approved so far.
    pub fn approved(&self) -> Vec<(PaymentKey, Decided)> {
        lock(&self.approved).clone()
    }

    /// Checkouts that did not approve (each a reason).
    pub fn failures(&self) -> Vec<String> {
        lock(&self.failures).clone()
    }

    /// Records (payments, telemetry, control) still waiting to leave.
    pub fn pending(&self) -> Result<u64, SimError> {
        let depth = lock(&self.ledger).outbox_depth()?;
        Ok(depth.iter().map(|d| d.pending).sum())
    }

    /// Whether a record created before `t` is still waiting to leave.
    pub fn waiting_since_before(&self, t: Timestamp) -> Result<bool, SimError> {
        let depth = lock(&self.ledger).outbox_depth()?;
        Ok(depth
            .iter()
            .any(|d| d.pending > 0 && d.oldest_pending.is_some_and(|o| o.0 < t.0)))
    }

    /// Payments not yet confirmed by the backend (forwarded and answered).
    pub fn unconfirmed(&self) -> Result<u64, SimError> {
        let l = lock(&self.ledger);
        let pending = l
            .outbox_depth()?
            .iter()
            .filter(|d| d.class == OutboxClass::Payment.as_str())
            .map(|d| d.pending)
            .sum::<u64>();
        let open = l
            .payments()?
            .iter()
            .filter(|p| {
                // Still owed an answer by the backend.
                matches!(
                    p.state,
                    PaymentState::CardRead
                        | PaymentState::OfflineApproved
                        | PaymentState::Forwarded
                        | PaymentState::InDoubt
                        | PaymentState::ReversalPending
                )
            })
            .count() as u64;
        Ok(pending.max(open))
    }

    /// Stops the activity, the sync and the link.
    pub async fn stop(&self) {
        self.stop_activity().await;
        let _ = self.shutdown.send(true);
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.uplink.link().shutdown().await;
    }

    /// One checkout as the daemon runs it: the card read committed, online
    /// authorization while the link is up, else the offline policy; the
    /// outcome committed and the sync kicked.
    pub async fn checkout(&self, reader: &Reader, amount: Money) -> Result<Decided, SimError> {
        let key = PaymentKey::new();
        let card = reader.read(&key, amount)?;
        let attempt = NewAttempt {
            key,
            amount,
            online_required: false,
            card: card.clone(),
        };
        let created = Timestamp::now();
        lock(&self.ledger).record_card_read(&attempt, created)?;
        let online = self.uplink.link().state().borrow().up;
        let answer = if online {
            self.uplink
                .authorize_online(&key, amount, &card, created)
                .await
                .ok()
                .filter(|o| !matches!(o, BackendOutcome::Unknown))
        } else {
            None
        };
        let decided = match answer {
            Some(outcome) => {
                let approved = matches!(outcome, BackendOutcome::Approved { .. });
                lock(&self.ledger).apply_backend_outcome(&key, &outcome, Timestamp::now())?;
                if approved {
                    Decided::Online
                } else {
                    Decided::Declined
                }
            }
            None => {
                let d = lock(&self.ledger).decide_offline(&key, Timestamp::now())?;
                if d.approved {
                    Decided::Offline
                } else {
                    Decided::Declined
                }
            }
        };
        // The ledger queued the outcome's telemetry event itself.
        if decided == Decided::Declined {
            let state = lock(&self.ledger).payment(&key)?.map(|p| p.state);
            lock(&self.failures).push(format!("{key}: declined ({state:?})"));
        } else {
            lock(&self.approved).push((key, decided));
        }
        self.uplink.kick();
        Ok(decided)
    }

    /// Commits `events` as one group (the daemon's group commit).
    pub fn commit_telemetry(&self, events: &[TelemetryEvent]) -> Result<(), SimError> {
        lock(&self.ledger).enqueue_telemetry(events, Timestamp::now())?;
        Ok(())
    }

    /// The shopper stand-in: readings at the configured rate (committed in
    /// groups every `commit_every_ms` or 200 events, as the daemon does) and checkouts
    /// at random intervals around the configured mean.
    async fn shop(
        self: Arc<Self>,
        activity: Activity,
        reader: Arc<Reader>,
        seed: u64,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let eur = Currency::new("EUR").expect("EUR is a currency");
        let period = Duration::from_secs_f64(1.0 / activity.readings_per_sec.max(1e-3));
        // Carts do not tick in step: each starts at a random phase.
        tokio::select! {
            _ = tokio::time::sleep(period.mul_f64(rng.random::<f64>())) => {}
            _ = stop.changed() => return,
        }
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buffer = TelemetryBuffer::new(200, activity.commit_every_ms);
        let mut walk = ReadingWalk::new(seed);
        let next_checkout = |rng: &mut StdRng| {
            (activity.checkout_every_secs > 0.0).then(|| {
                // Exponential inter-arrival times (a Poisson stream).
                let u: f64 = rng.random_range(1e-6..1.0);
                tokio::time::Instant::now()
                    + Duration::from_secs_f64(-u.ln() * activity.checkout_every_secs)
            })
        };
        let mut checkout_at = next_checkout(&mut rng);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {
                    let events = buffer.take();
                    if let Err(e) = self.commit_telemetry(&events) {
                        lock(&self.failures).push(format!("telemetry: {e}"));
                    }
                    return;
                }
            }
            let now = Timestamp::now();
            let reading = walk.next_at(now);
            if buffer.push(reading, now) {
                let events = buffer.take();
                let me = self.clone();
                let done = tokio::task::spawn_blocking(move || me.commit_telemetry(&events)).await;
                if let Ok(Err(e)) = done {
                    lock(&self.failures).push(format!("telemetry: {e}"));
                }
            }
            if let Some(at) = checkout_at
                && tokio::time::Instant::now() >= at
            {
                let amount = Money::new(rng.random_range(100..20_000), eur);
                if let Err(e) = self.checkout(&reader, amount).await {
                    lock(&self.failures).push(format!("checkout: {e}"));
                }
                checkout_at = next_checkout(&mut rng);
            }
        }
    }
}

/// The application stand-in: answers jobs (succeeds, or fails on
/// purpose), takes catalog deltas as unchanged, ignores rotations.
pub async fn application(mut rx: mpsc::Receiver<AppEvent>, fail_jobs: bool) {
    while let Some(ev) = rx.recv().await {
        match ev {
            AppEvent::Job { run, done } => {
                if fail_jobs {
                    done.finish(JobOutcome::Failed(format!(
                        "{}: failed on purpose (fleet simulation)",
                        run.document.operation()
                    )));
                } else {
                    done.finish(JobOutcome::Succeeded(details("simulated", "done")));
                }
            }
            AppEvent::Catalog { delta, done } => done.report(CatalogOutcome::Unchanged {
                current: delta.version,
            }),
            AppEvent::Rotation { .. } => {}
        }
    }
}
