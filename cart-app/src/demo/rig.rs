//! The world around the daemon for the demo, tests and benchmarks: a local
//! mosquitto over mutual TLS reached through a fault proxy, the backend
//! emulator (which sends the cart its staff list), the reader simulator and
//! a scanner on pseudo-terminals, the demo catalog, and a config file for
//! `cart-app run` pointing at all of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use backend_emulator::{Emulator, EmulatorConfig};
use hal::reader::sim::{SimConfig as ReaderSimConfig, SimHandle, spawn_pty};
use mqtt_harness::{Broker, FaultProxy};
use store_and_forward::uplink::LinkConfig;

use crate::catalog::Catalog;
use crate::daemon::control_server::LinkControl;

/// The cart id the rig's certificate is made for.
pub const CART: &str = "cart-demo-0001";

/// The badge ids on the staff list the rig's backend sends the cart.
pub const STAFF_BADGES: &[&str] = &["0042"];

/// How the rig is set up.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// Folder for the ledger, catalog, config and control socket.
    pub dir: PathBuf,
    /// The TEST ONLY fixtures (processor key, test cards).
    pub fixtures: PathBuf,
    /// `headless` or `auto` (a window).
    pub ui_backend: &'static str,
}

/// Everything the daemon talks to, started.
pub struct Rig {
    /// The daemon's config file.
    pub config_path: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The backend emulator.
    pub emulator: Emulator,
    /// The reader simulator.
    pub reader: SimHandle,
    scanner: ScannerPty,
    proxy: Arc<FaultProxy>,
    rt: tokio::runtime::Runtime,
    _broker: Broker,
}

impl Rig {
    /// Starts mosquitto, the emulator and the simulators, and writes the
    /// config file.
    pub fn start(opts: &RigOptions) -> anyhow::Result<Rig> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let broker = Broker::start();
        let proxy = Arc::new(broker.fault_proxy());
        let link = |id: &str, port: u16| LinkConfig {
            host: "127.0.0.1".into(),
            port,
            client_id: id.into(),
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            connect_timeout_secs: 3,
            ca_file: Some(broker.ca_pem_path()),
            server_name: Some("localhost".into()),
            ..LinkConfig::default()
        };
        let (bc, bk) = broker.client_cert("backend");
        let emulator = rt.block_on(async {
            // With AWS IoT Jobs: operators' jobs (tests, `--job` files).
            let em = Emulator::start_with(
                EmulatorConfig {
                    link: link("backend", broker.port()),
                    identity: Some((bc, bk)),
                    fixtures: opts.fixtures.clone(),
                },
                None,
                Some(backend_emulator::JobsConfig::default()),
            )
            .await?;
            if !em.wait_up(Duration::from_secs(20)).await {
                bail!("the backend emulator could not reach mosquitto");
            }
            // The store's staff list (age checks), sent until the cart
            // acknowledges it: badge 0042 is the demo's staff member.
            em.keep_publishing_staff_list(CART, 1, STAFF_BADGES, Duration::from_millis(500));
            Ok(em)
        })?;
        let reader = spawn_pty(ReaderSimConfig::from_fixtures(&opts.fixtures)?)?;
        let scanner = ScannerPty::open()?;
        let mut catalog = Catalog::open(&opts.dir.join("catalog.sqlite"))?;
        catalog.import_csv(include_str!("../../config/demo-catalog.csv"))?;
        drop(catalog);
        let (cert, key) = broker.client_cert(CART);
        let config_path = opts.dir.join("cart.toml");
        let toml = config_text(
            opts,
            &link(CART, proxy.port()),
            &cert,
            &key,
            reader.path(),
            &scanner.path,
        )?;
        std::fs::write(&config_path, toml)?;
        Ok(Rig {
            config_path,
            socket: opts.dir.join("control.sock"),
            emulator,
            reader,
            scanner,
            proxy,
            rt,
            _broker: broker,
        })
    }

    /// Cuts (`false`) or restores the link at the proxy: a real outage as
    /// the cart sees it (connections dropped, new ones hanging).
    pub fn link_control(&self) -> LinkControl {
        let proxy = self.proxy.clone();
        Arc::new(move |up: bool| {
            if up {
                proxy.set_blackhole(false);
            } else {
                proxy.set_blackhole(true);
                proxy.cut_all();
            }
        })
    }

    /// The broker (its test PKI signs the emulator's HTTPS object store).
    pub fn broker(&self) -> &Broker {
        &self._broker
    }

    /// Runs `f` on the rig's runtime (the emulator's calls are async).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A writer into the scanner's line (`hal::scanner::sim::write_scan`).
    pub fn scanner_writer(&self) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::File::from(self.scanner.pty.master.try_clone()?))
    }

    /// Stops the emulator and the simulators.
    pub fn shutdown(self) {
        let _ = self.reader.stop();
        self.rt.block_on(self.emulator.shutdown());
    }
}

/// The scanner's pseudo-terminal: the daemon's serial scanner driver opens
/// the slave; the rig writes scans into the master.
struct ScannerPty {
    pty: nix::pty::OpenptyResult,
    path: PathBuf,
}

impl ScannerPty {
    fn open() -> anyhow::Result<ScannerPty> {
        let pty = nix::pty::openpty(None, None)?;
        let mut t = nix::sys::termios::tcgetattr(&pty.slave)?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)?;
        let path = nix::unistd::ttyname(&pty.slave)?;
        Ok(ScannerPty { pty, path })
    }
}

fn config_text(
    opts: &RigOptions,
    link: &LinkConfig,
    cert: &Path,
    key: &Path,
    reader: &Path,
    scanner: &Path,
) -> anyhow::Result<String> {
    let d = |p: &str| opts.dir.join(p).display().to_string();
    let ca = link
        .ca_file
        .as_ref()
        .context("the rig's link has a CA")?
        .display()
        .to_string();
    Ok(format!(
        r#"# Written by the demo rig for one run. DEMO ONLY: software identity.
cart_id = "{CART}"

[ledger]
path = "{ledger}"

[offline]
version = 1
[offline.per_payment_cap]
EUR = 10000
[offline.total_outstanding_cap]
EUR = 50000

[catalog]
path = "{catalog}"

[store]
receipt_url = "https://receipts.example.com/r"

[link]
host = "127.0.0.1"
port = {port}
backoff_base_ms = 100
backoff_max_ms = 1000
connect_timeout_secs = 3
ca_file = "{ca}"
server_name = "localhost"

[sync]
drain_interval_ms = 200
telemetry_linger_secs = 5

[identity]
software_key = "{key}"
allow_software_identity = true

[provisioning]
certificate = "{cert}"

[scanner]
kind = "serial"
[scanner.serial]
port = "{scanner}"
[[scanner.decoder.variable_measure.layouts]]
prefixes = ["21"]
pattern = "PPIIIIIVVVVVK"
measure = {{ kind = "weight", decimals = 3 }}

[reader]
port = "{reader}"
card_timeout_secs = 30

[ui]
backend = "{backend}"
receipt_timeout_secs = 600

[control]
socket = "{socket}"
allow_taps = true

[daemon]
status_interval_secs = 1
"#,
        ledger = d("ledger.sqlite"),
        catalog = d("catalog.sqlite"),
        port = link.port,
        key = key.display(),
        cert = cert.display(),
        scanner = scanner.display(),
        reader = reader.display(),
        backend = opts.ui_backend,
        socket = d("control.sock"),
    ))
}
