//! A whole cart's uplink side (ledger, link, sync) and the backend emulator
//! against a real mosquitto, for the system tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backend_emulator::{Emulator, EmulatorConfig};
use hal::reader::card::{FingerprintKey, mask_pan};
use hal::reader::carddata::{Binding, ProcessorPublicKey};
use hal::reader::fixtures::{self, TestCard, TestCards};
use hal::reader::message::{Currency as HalCurrency, EntryMode as HalEntryMode};
use mqtt_harness::Broker;
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::sync::{SyncConfig, Uplink};
use store_and_forward::uplink::{self, LinkConfig, SwappableClientCert};
use store_and_forward::{CardRead, EntryMode, Ledger, LedgerConfig, Money, PaymentKey, Timestamp};
use tokio::sync::watch;

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The workspace's `tests/fixtures`, from this crate or from another
/// workspace member that includes this module (cart-app's system test).
pub fn fixtures_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let here = manifest.join("../fixtures");
    if here.join(fixtures::TEST_CARDS).is_file() {
        here
    } else {
        manifest.join("../tests/fixtures")
    }
}

/// The reader's side of a card read, done with the real encryption.
pub struct Reader {
    pub cards: TestCards,
    processor: ProcessorPublicKey,
    fingerprint: FingerprintKey,
}

impl Reader {
    pub fn load() -> Reader {
        let dir = fixtures_dir();
        Reader {
            cards: TestCards::load(&dir.join(fixtures::TEST_CARDS)).unwrap(),
            processor: fixtures::load_processor_public_key(&dir.join(fixtures::PROCESSOR_KEY))
                .unwrap(),
            fingerprint: fixtures::load_fingerprint_key(&dir.join(fixtures::FINGERPRINT_KEY))
                .unwrap(),
        }
    }

    pub fn card(&self, name: &str) -> &TestCard {
        self.cards
            .get(name)
            .unwrap_or_else(|| panic!("no test card {name}"))
    }

    /// What the reader hands the cart for `card` paying `amount` under `key`.
    pub fn read(&self, card: &TestCard, key: &PaymentKey, amount: Money) -> CardRead {
        let b = amount.currency.as_str().as_bytes();
        let binding = Binding {
            key: key.0,
            amount_minor: amount.minor as u64,
            currency: HalCurrency::from_bytes([b[0], b[1], b[2]]).unwrap(),
        };
        let blob = card.seal(&self.processor, &binding).unwrap();
        CardRead {
            masked_pan: mask_pan(&card.pan).unwrap().as_str().to_owned(),
            fingerprint: self.fingerprint.fingerprint(&card.pan).0.to_vec(),
            emv_data: vec![0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x10, 0x00],
            encrypted_blob: blob,
            entry_mode: match card.entry_mode {
                HalEntryMode::Contactless => EntryMode::Contactless,
                _ => EntryMode::Chip,
            },
        }
    }

    /// A checkout approved offline in `ledger` with the test card
    /// `chip-approve` (card read committed, then the offline decision).
    pub fn approve_offline(&self, ledger: &Mutex<Ledger>, amount: Money) -> PaymentKey {
        let key = PaymentKey::new();
        let card = self.read(self.card("chip-approve"), &key, amount);
        let a = store_and_forward::NewAttempt {
            key,
            amount,
            online_required: false,
            card,
        };
        let mut l = ledger.lock().unwrap();
        l.record_card_read(&a, Timestamp::now()).unwrap();
        assert!(l.decide_offline(&key, Timestamp::now()).unwrap().approved);
        key
    }
}

pub fn link_config(broker: &Broker, port: u16, client_id: &str) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port,
        client_id: client_id.into(),
        keep_alive_secs: 5,
        backoff_base_ms: 50,
        backoff_max_ms: 1_000,
        connect_timeout_secs: 5,
        tls: true,
        ca_file: Some(broker.ca_pem_path()),
        server_name: Some("localhost".into()),
        ..LinkConfig::default()
    }
}

pub async fn emulator(broker: &Broker) -> Emulator {
    let (cert, key) = broker.client_cert("backend");
    let em = Emulator::start(EmulatorConfig {
        link: link_config(broker, broker.port(), "backend"),
        identity: Some((cert, key)),
        fixtures: fixtures_dir(),
    })
    .await
    .unwrap();
    assert!(
        em.wait_up(Duration::from_secs(20)).await,
        "emulator connects"
    );
    em
}

pub fn roomy_limits() -> LimitsConfig {
    LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 100_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 1_000_000_000)].into(),
        max_outstanding_count: 100_000,
        velocity_max_per_card: 100_000,
        ..LimitsConfig::default()
    }
}

/// Opens a ledger in `dir` with a file counter and data key, and records a
/// backend contact so the offline policy is usable.
pub fn open_ledger(dir: &std::path::Path, limits: LimitsConfig) -> Arc<Mutex<Ledger>> {
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        payment_reserve_bytes: 0,
        telemetry_quota_bytes: 1 << 32,
        ..LedgerConfig::default()
    };
    let counter = FileCounter::open(dir.join("counter"), 90_001).unwrap();
    let mut key = FileDataKey::new(dir.join("data.key"));
    let limits = limits.validate("offline").unwrap();
    let (mut ledger, _) = Ledger::open(
        config,
        limits,
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )
    .unwrap();
    ledger.record_backend_contact(Timestamp::now()).unwrap();
    Arc::new(Mutex::new(ledger))
}

/// The cart's folder: a temporary one it owns, or one kept by the caller.
pub enum Holder {
    /// Removed on drop.
    Temp(tempfile::TempDir),
    /// Left alone.
    Kept(PathBuf),
}

impl Holder {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Holder::Temp(t) => t.path(),
            Holder::Kept(p) => p,
        }
    }
}

pub struct Cart {
    pub id: String,
    pub dir: Holder,
    pub ledger: Arc<Mutex<Ledger>>,
    pub uplink: Arc<Uplink>,
    pub shutdown: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Cart {
    /// A cart whose link goes to `port` (the broker, or a fault proxy).
    pub fn start(
        broker: &Broker,
        port: u16,
        id: &str,
        sync: SyncConfig,
        limits: LimitsConfig,
    ) -> Cart {
        let identity = broker.client_cert(id);
        Cart::start_with(
            link_config(broker, port, id),
            identity,
            id,
            sync,
            limits,
            None,
        )
    }

    /// A cart with a given link configuration and identity, whose sync
    /// writes topics for `sync_cart` (normally its own id).
    pub fn start_with(
        link: LinkConfig,
        identity: (PathBuf, PathBuf),
        sync_cart: &str,
        sync: SyncConfig,
        limits: LimitsConfig,
        app: Option<tokio::sync::mpsc::Sender<store_and_forward::sync::AppEvent>>,
    ) -> Cart {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open_ledger(dir.path(), limits);
        Cart::start_on_with(
            link,
            identity,
            sync_cart,
            sync,
            ledger,
            Holder::Temp(dir),
            app,
        )
    }

    /// A cart on an existing ledger (already open in `ledger`).
    pub fn start_on(
        link: LinkConfig,
        identity: (PathBuf, PathBuf),
        sync_cart: &str,
        sync: SyncConfig,
        ledger: Arc<Mutex<Ledger>>,
        dir: PathBuf,
    ) -> Cart {
        Cart::start_on_with(
            link,
            identity,
            sync_cart,
            sync,
            ledger,
            Holder::Kept(dir),
            None,
        )
    }

    /// [`Cart::start_on`] with the application's events going to `app`.
    pub fn start_on_with_app(
        link: LinkConfig,
        identity: (PathBuf, PathBuf),
        sync_cart: &str,
        sync: SyncConfig,
        ledger: Arc<Mutex<Ledger>>,
        dir: PathBuf,
        app: tokio::sync::mpsc::Sender<store_and_forward::sync::AppEvent>,
    ) -> Cart {
        Cart::start_on_with(
            link,
            identity,
            sync_cart,
            sync,
            ledger,
            Holder::Kept(dir),
            Some(app),
        )
    }

    fn start_on_with(
        link: LinkConfig,
        identity: (PathBuf, PathBuf),
        sync_cart: &str,
        sync: SyncConfig,
        ledger: Arc<Mutex<Ledger>>,
        dir: Holder,
        app: Option<tokio::sync::mpsc::Sender<store_and_forward::sync::AppEvent>>,
    ) -> Cart {
        let id = link.client_id.clone();
        let (cert, keyf) = identity;
        let cert = Arc::new(SwappableClientCert::new(
            uplink::certified_key_from_pem_files(&cert, &keyf).unwrap(),
        ));
        let (link, incoming) = uplink::start(link, Some(cert), Uplink::subscriptions(&id)).unwrap();
        let sync = SyncConfig {
            cart_id: sync_cart.into(),
            ..sync
        };
        let uplink = Uplink::new(sync, ledger.clone(), link, app);
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(uplink.clone().run(incoming, rx));
        Cart {
            id,
            dir,
            ledger,
            uplink,
            shutdown,
            task,
        }
    }

    /// Telemetry records waiting in the cart's outbox.
    pub fn telemetry_pending(&self) -> u64 {
        self.ledger
            .lock()
            .unwrap()
            .outbox_depth()
            .unwrap()
            .iter()
            .find(|d| d.class == "telemetry")
            .map_or(0, |d| d.pending)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.uplink.link().shutdown().await;
    }
}

/// Polls `f` until it holds or `secs` pass (a hang guard, not a timing
/// assertion).
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
