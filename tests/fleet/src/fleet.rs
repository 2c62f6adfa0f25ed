//! The fleet: a real mosquitto with mutual TLS and per-cart ACLs (or an
//! external MQTT 5 broker, [`Target::External`]), the backend emulator
//! behind it, and N [`SimCart`]s in this process.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_emulator::jobs::ManualClock;
use backend_emulator::{Emulator, EmulatorConfig, JobsConfig};
use mqtt_harness::{Broker, FaultProxy};
use serde::Serialize;
use store_and_forward::BackendOutcome;
use store_and_forward::sync::SyncConfig;
use store_and_forward::uplink::{LinkConfig, Traffic};

use crate::SimError;
use crate::cart::{Activity, CartSetup, Reader, SimCart, fixtures_dir};
use crate::external::{CartIssuer, ExternalBroker, Target};
use crate::probe;

/// Carts that share one sync configuration (a fleet may compare several).
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name in reports.
    pub name: String,
    /// The sync configuration of its carts.
    pub sync: SyncConfig,
}

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// How many carts.
    pub carts: usize,
    /// What each does once started (`None`: nothing but the link's own
    /// traffic, until the scenario drives it).
    pub activity: Option<Activity>,
    /// Carts are dealt round-robin to these groups (at least one).
    pub groups: Vec<Group>,
    /// The link's jittered backoff (off only to measure the storm).
    pub jitter: bool,
    /// Every `fail_jobs_every`-th cart fails remote jobs (0: none).
    pub fail_jobs_every: usize,
    /// The Jobs service's clock: a manual one the scenario advances
    /// (`None`: the wall clock).
    pub jobs_clock: Option<Arc<ManualClock>>,
    /// Carts started per second (their first connections spread so).
    pub start_per_sec: usize,
    /// Where the carts' folders go (`None`: a temporary folder, removed).
    pub dir: Option<PathBuf>,
    /// Carts reach the broker through a [`FaultProxy`] that can refuse
    /// them all (the fleet's outage) while the backend stays connected.
    pub via_proxy: bool,
    /// The broker: the local mosquitto (default) or an external one.
    pub target: Target,
    /// The emulator also plays AWS IoT Jobs (default true). Off, the
    /// carts' Jobs requests go unanswered by it: on AWS IoT Core the
    /// `$aws/things/...` topics belong to AWS's own Jobs service, so
    /// against an external broker only the rollout turns it on.
    pub jobs_service: bool,
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig {
            carts: 100,
            activity: None,
            groups: vec![Group {
                name: "shipped".into(),
                sync: SyncConfig::default(),
            }],
            jitter: true,
            fail_jobs_every: 0,
            jobs_clock: None,
            start_per_sec: 200,
            dir: None,
            via_proxy: false,
            target: Target::Local,
            jobs_service: true,
        }
    }
}

/// A running fleet.
pub struct Fleet {
    /// The local broker (`None`: an external one, `config.target`).
    pub broker: Option<Broker>,
    /// The backend (`None`: not run, an external broker's own backend
    /// answers).
    pub emulator: Option<Emulator>,
    /// The carts' way to the broker, when `via_proxy`.
    pub proxy: Option<FaultProxy>,
    /// The carts, in index order.
    pub carts: Vec<Arc<SimCart>>,
    /// Each cart's group (index into `config.groups`).
    pub group_of: Vec<usize>,
    /// How it was built.
    pub config: FleetConfig,
    /// The card reader's side.
    pub reader: Arc<Reader>,
    /// This process's memory before the carts started, bytes.
    pub rss_before_carts: u64,
    /// How long starting the carts took until every one was connected.
    pub start_time: Duration,
    _dir: Option<tempfile::TempDir>,
}

/// The link configuration of every simulated cart: the shipped defaults
/// except the address, the test CA, and no netlink watch (all carts share
/// this machine's one network).
pub fn cart_link(broker: &Broker, port: u16, jitter: bool) -> LinkConfig {
    link_to("127.0.0.1", port, broker.ca_pem_path(), "localhost", jitter)
}

/// [`cart_link`] for any broker: `host:port`, verified with `ca_file` as
/// `server_name`.
pub fn link_to(
    host: &str,
    port: u16,
    ca_file: PathBuf,
    server_name: &str,
    jitter: bool,
) -> LinkConfig {
    LinkConfig {
        host: host.into(),
        port,
        tls: true,
        ca_file: Some(ca_file),
        server_name: Some(server_name.into()),
        watch_network: false,
        backoff_jitter: jitter,
        ..LinkConfig::default()
    }
}

/// [`cart_link`] for an external broker: reached at `port` on `host`
/// (the broker itself, or a proxy in front of it), verified as the
/// broker's server name.
pub fn external_link(ext: &ExternalBroker, host: &str, port: u16, jitter: bool) -> LinkConfig {
    link_to(host, port, ext.ca_file.clone(), ext.server_name(), jitter)
}

/// The broker a fleet is starting against (one value, on the stack while
/// the fleet starts: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
enum Site {
    /// The local mosquitto; its test CA issues every certificate.
    Local(Broker),
    /// An external broker; the fleet's issuer signs the carts' certificates.
    External(ExternalBroker, CartIssuer),
}

/// The cart id of index `i`.
pub fn cart_id(i: usize) -> String {
    format!("cart-{i:05}")
}

impl Fleet {
    /// Starts the broker, the emulator and every cart, and waits until all
    /// are connected and subscribed.
    pub async fn start(config: FleetConfig) -> Result<Fleet, SimError> {
        if config.groups.is_empty() {
            return Err(SimError::Config("a fleet needs at least one group".into()));
        }
        // Per cart: its socket, its link thread's runtime, its ledger's
        // files; the broker has one socket per cart.
        let want = 16 * config.carts as u64 + 1_024;
        let got =
            probe::raise_open_files(want).map_err(|e| SimError::Io("RLIMIT_NOFILE".into(), e))?;
        if got < want {
            return Err(SimError::Config(format!(
                "{} carts need about {want} open files; the limit is {got} (raise `ulimit -n`)",
                config.carts
            )));
        }
        let (dir, tmp) = match &config.dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("fleet-")
                    .tempdir()
                    .map_err(|e| SimError::Io("temp dir".into(), e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let site = match config.target.external() {
            None => Site::Local(Broker::start()),
            Some(ext) => {
                ext.check()?;
                let issuer = CartIssuer::load(&ext.issuer_cert, &ext.issuer_key)?;
                Site::External(ext.clone(), issuer)
            }
        };
        // The backend's way to the broker and its identity (`None`: no
        // emulator).
        let (backend_link, backend_identity) = match &site {
            Site::Local(b) => (
                cart_link(b, b.port(), true),
                Some(b.client_cert(mqtt_harness::BACKEND_IDENTITY)),
            ),
            Site::External(ext, _) => (
                external_link(ext, &ext.host, ext.port, true),
                ext.backend.clone(),
            ),
        };
        let backend_link = LinkConfig {
            client_id: mqtt_harness::BACKEND_IDENTITY.into(),
            // The backend takes a whole fleet's traffic on one connection.
            receive_maximum: 1_000,
            incoming_capacity: 8_192,
            inflight: 1_000,
            max_pending: 10_000,
            ..backend_link
        };
        let jobs = JobsConfig {
            clock: match &config.jobs_clock {
                Some(c) => c.clone(),
                None => JobsConfig::default().clock,
            },
            tick_every: if config.jobs_clock.is_some() {
                None
            } else {
                Some(Duration::from_secs(1))
            },
        };
        let emulator = match backend_identity {
            Some(identity) => {
                let emulator = Emulator::start_with(
                    EmulatorConfig {
                        link: backend_link,
                        identity: Some(identity),
                        fixtures: fixtures_dir(),
                    },
                    None,
                    config.jobs_service.then_some(jobs),
                )
                .await?;
                if !emulator.wait_up(Duration::from_secs(30)).await {
                    return Err(SimError::Timeout("the emulator's connection".into()));
                }
                Some(emulator)
            }
            None => None,
        };
        let reader = Arc::new(Reader::load(&fixtures_dir())?);
        let rss_before_carts = probe::read(None).map_or(0, |r| r.rss_bytes);
        let started = Instant::now();
        let (proxy, link) = match &site {
            Site::Local(broker) => {
                let proxy = config.via_proxy.then(|| broker.fault_proxy());
                let port = proxy.as_ref().map_or(broker.port(), FaultProxy::port);
                (proxy, cart_link(broker, port, config.jitter))
            }
            Site::External(ext, _) => {
                // Behind the proxy, carts dial it on loopback and still
                // verify the broker's name (they send no SNI then).
                let proxy = config
                    .via_proxy
                    .then(|| FaultProxy::start_to(&ext.host, ext.port));
                let link = match &proxy {
                    Some(p) => external_link(ext, "127.0.0.1", p.port(), config.jitter),
                    None => external_link(ext, &ext.host, ext.port, config.jitter),
                };
                (proxy, link)
            }
        };
        let mut carts = Vec::with_capacity(config.carts);
        let mut group_of = Vec::with_capacity(config.carts);
        let batch = (config.start_per_sec / 10).max(1);
        for i in 0..config.carts {
            let id = cart_id(i);
            let group = i % config.groups.len();
            let identity = match &site {
                Site::Local(b) => b.client_cert(&id),
                Site::External(_, issuer) => issuer.issue(&id, &dir.join(&id))?,
            };
            let setup = CartSetup {
                identity,
                dir: dir.join(&id),
                id,
                link: link.clone(),
                sync: config.groups[group].sync.clone(),
                fail_jobs: config.fail_jobs_every > 0 && i % config.fail_jobs_every == 0,
            };
            carts.push(SimCart::start(setup)?);
            group_of.push(group);
            if (i + 1) % batch == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let broker = match site {
            Site::Local(b) => Some(b),
            Site::External(..) => None,
        };
        let fleet = Fleet {
            broker,
            emulator,
            proxy,
            carts,
            group_of,
            reader,
            rss_before_carts,
            start_time: Duration::ZERO,
            config,
            _dir: tmp,
        };
        fleet.wait_all_up(Duration::from_secs(120)).await?;
        let start_time = started.elapsed();
        if let Some(activity) = &fleet.config.activity {
            for (i, c) in fleet.carts.iter().enumerate() {
                c.start_activity(activity.clone(), fleet.reader.clone(), i as u64);
            }
        }
        Ok(Fleet {
            start_time,
            ..fleet
        })
    }

    /// The local broker; an error naming `scenario` against an external one.
    pub fn local_broker(&self, scenario: &'static str) -> Result<&Broker, SimError> {
        self.broker
            .as_ref()
            .ok_or(SimError::NeedsLocalBroker(scenario))
    }

    /// The backend emulator; an error naming `what` when it was not run.
    pub fn emulator(&self, what: &'static str) -> Result<&Emulator, SimError> {
        self.emulator.as_ref().ok_or(SimError::NeedsEmulator(what))
    }

    /// The local broker's process id while it runs (`None`: external, not
    /// measured).
    pub fn broker_pid(&self) -> Option<u32> {
        self.broker.as_ref().and_then(Broker::pid)
    }

    /// Carts connected and subscribed now.
    pub fn carts_up(&self) -> usize {
        self.carts
            .iter()
            .filter(|c| {
                let s = c.uplink.link().state();
                let s = s.borrow();
                s.up && s.subscribed
            })
            .count()
    }

    /// Waits until every cart is connected and subscribed.
    pub async fn wait_all_up(&self, timeout: Duration) -> Result<(), SimError> {
        let deadline = Instant::now() + timeout;
        loop {
            let up = self.carts_up();
            if up == self.carts.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SimError::Timeout(format!(
                    "{} of {} carts connected",
                    up,
                    self.carts.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every cart's traffic, in index order.
    pub fn traffic(&self) -> Vec<Traffic> {
        self.carts
            .iter()
            .map(|c| c.uplink.link().traffic())
            .collect()
    }

    /// Asks every cart to send everything now (`cartctl sync`).
    pub fn flush_all(&self) {
        for c in &self.carts {
            c.uplink.flush();
        }
    }

    /// Waits until no cart has a record waiting or a payment unconfirmed,
    /// flushing now and then; returns how long it took.
    pub async fn drain(&self, timeout: Duration) -> Result<Duration, SimError> {
        let t0 = Instant::now();
        let mut last_flush = Instant::now() - Duration::from_secs(10);
        // Carts seen empty are looked at again only in the final pass
        // (each look takes the cart's ledger lock, which its drain needs).
        let mut done = vec![false; self.carts.len()];
        loop {
            if last_flush.elapsed() >= Duration::from_secs(2) {
                self.flush_all();
                last_flush = Instant::now();
            }
            let mut waiting = 0u64;
            for (i, c) in self.carts.iter().enumerate() {
                if !done[i] {
                    let n = c.pending()? + c.unconfirmed()?;
                    done[i] = n == 0;
                    waiting += n;
                }
            }
            if waiting == 0 {
                let mut again = 0u64;
                for c in &self.carts {
                    again += c.pending()? + c.unconfirmed()?;
                }
                if again == 0 {
                    return Ok(t0.elapsed());
                }
                done.iter_mut().for_each(|d| *d = false);
                waiting = again;
            }
            if t0.elapsed() > timeout {
                return Err(SimError::Timeout(format!(
                    "{waiting} records or payments still waiting after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks, once drained, that the backend holds every payment the
    /// carts approved exactly once, approved, and nothing else; and every
    /// telemetry event the carts stored exactly once.
    pub fn verify_exactly_once(&self) -> Result<ExactlyOnce, SimError> {
        let mut approved: HashMap<String, String> = HashMap::new();
        let mut failures = Vec::new();
        let (mut online, mut offline) = (0u64, 0u64);
        for c in &self.carts {
            for (key, how) in c.approved() {
                match how {
                    crate::cart::Decided::Online => online += 1,
                    crate::cart::Decided::Offline => offline += 1,
                    crate::cart::Decided::Declined => {}
                }
                if approved.insert(key.to_string(), c.id.clone()).is_some() {
                    failures.push(format!("{key}: approved twice at the carts"));
                }
            }
            failures.extend(c.failures().into_iter().map(|f| format!("{}: {f}", c.id)));
        }
        let emulator = self.emulator("the exactly-once check")?;
        let backend = emulator.payments();
        let mut seen = HashSet::new();
        let mut charged = 0u64;
        for p in &backend {
            if !seen.insert(p.key.clone()) {
                failures.push(format!("{}: recorded twice at the backend", p.key));
            }
            let is_approved = matches!(p.outcome, Some(BackendOutcome::Approved { .. }));
            charged += u64::from(is_approved);
            match approved.get(&p.key) {
                Some(cart) if cart != &p.cart => failures.push(format!(
                    "{}: from {} at the backend, {cart} here",
                    p.key, p.cart
                )),
                Some(_) if !is_approved => failures.push(format!(
                    "{}: approved at the cart, {:?} at the backend",
                    p.key, p.outcome
                )),
                Some(_) => {}
                None => failures.push(format!("{}: at the backend, not approved by a cart", p.key)),
            }
        }
        for key in approved.keys() {
            if !seen.contains(key) {
                failures.push(format!(
                    "{key}: approved at a cart, never reached the backend"
                ));
            }
        }
        let counts = emulator.counts();
        let mut stored = 0u64;
        for c in &self.carts {
            stored += telemetry_rows(c)?;
        }
        if counts.telemetry_events != stored {
            failures.push(format!(
                "telemetry: {stored} events stored by the carts, {} distinct at the backend",
                counts.telemetry_events
            ));
        }
        failures.truncate(20);
        Ok(ExactlyOnce {
            payments: approved.len() as u64,
            online,
            offline,
            charged,
            duplicates_deduplicated: counts.payment_duplicates,
            telemetry_events: stored,
            telemetry_duplicates_deduplicated: counts.telemetry_duplicates,
            failures,
        })
    }

    /// Stops every cart's shopper (each after its current step).
    pub async fn stop_activity(&self) {
        for c in &self.carts {
            c.stop_activity().await;
        }
    }

    /// Stops every cart, then the emulator (a local broker stops when
    /// dropped).
    pub async fn stop(self) {
        for c in &self.carts {
            c.stop().await;
        }
        if let Some(e) = self.emulator {
            e.shutdown().await;
        }
    }
}

/// Telemetry rows the cart's ledger ever stored (the simulation runs no
/// retention, so delivered rows are still there), read from its file.
pub fn telemetry_rows(c: &SimCart) -> Result<u64, SimError> {
    let path = c.dir().join("ledger.sqlite");
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| SimError::Check(format!("{}: {e}", path.display())))?;
    conn.query_row("SELECT COUNT(*) FROM outbox WHERE class = 2", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .map_err(|e| SimError::Check(format!("{}: {e}", path.display())))
}

/// The exactly-once check's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExactlyOnce {
    /// Payments the carts approved.
    pub payments: u64,
    /// Of which online.
    pub online: u64,
    /// Of which offline (forwarded).
    pub offline: u64,
    /// Distinct payments the backend charged.
    pub charged: u64,
    /// Repeats the backend received and deduplicated.
    pub duplicates_deduplicated: u64,
    /// Telemetry events stored by the carts (each reached the backend once).
    pub telemetry_events: u64,
    /// Telemetry events the backend received again and deduplicated.
    pub telemetry_duplicates_deduplicated: u64,
    /// What did not hold (empty: it all did; at most 20 shown).
    pub failures: Vec<String>,
}

impl ExactlyOnce {
    /// Whether every payment and event arrived exactly once.
    pub fn holds(&self) -> bool {
        self.failures.is_empty() && self.charged == self.payments
    }
}
