//! One cart in QEMU and the cloud on the host: mosquitto (mutual TLS, ACL
//! per cart) with the backend emulator and its fleet-provisioning responder,
//! the reader simulator and the scanner on host ptys, the cart's disk with
//! its factory/data area written for this run, its TPM state.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use backend_emulator::{Emulator, EmulatorConfig, FleetConfig, JobsConfig, ObjectStore};
use hal::reader::sim::{SimConfig, SimHandle, spawn_pty};
use mqtt_harness::Broker;
use qemu_suite::artifacts::Artifacts;
use qemu_suite::disk::Disk;
use qemu_suite::guest::{Guest, GuestConfig};
use qemu_suite::image::Image;
use qemu_suite::pty::Pty;
use store_and_forward::uplink::LinkConfig;

/// The cart's serial number in these tests.
pub const CART: &str = "cart-qemu-0001";
/// The fleet-provisioning template.
pub const TEMPLATE: &str = "cart-fleet";

pub fn fixtures() -> PathBuf {
    qemu_suite::workspace_root().join("tests/fixtures")
}

/// The backend side: broker + emulator.
pub struct Cloud {
    pub rt: tokio::runtime::Runtime,
    pub broker: Broker,
    pub emulator: Emulator,
    /// The object store behind pre-signed HTTPS URLs (diagnostic uploads),
    /// reached from the guest as 10.0.2.2.
    pub objects: ObjectStore,
}

impl Cloud {
    pub fn start() -> Cloud {
        let broker = Broker::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (cert, key) = broker.client_cert(mqtt_harness::BACKEND_IDENTITY);
        let fleet = FleetConfig::new(
            broker.pki().ca_cert_pem(),
            broker.pki().ca_key_pem(),
            TEMPLATE,
        );
        let link = LinkConfig {
            host: "127.0.0.1".into(),
            port: broker.port(),
            client_id: "backend".into(),
            keep_alive_secs: 5,
            backoff_base_ms: 50,
            backoff_max_ms: 500,
            connect_timeout_secs: 10,
            ca_file: Some(broker.ca_pem_path()),
            server_name: Some("localhost".into()),
            ..LinkConfig::default()
        };
        let emulator = rt
            .block_on(Emulator::start_with(
                EmulatorConfig {
                    link,
                    identity: Some((cert, key)),
                    fixtures: fixtures(),
                },
                Some(fleet),
                Some(JobsConfig::default()),
            ))
            .expect("the backend emulator starts");
        assert!(
            rt.block_on(emulator.wait_up(Duration::from_secs(30))),
            "the emulator reaches mosquitto"
        );
        let objects = rt
            .block_on(ObjectStore::start(
                &broker.pki().server_cert_path(),
                &broker.pki().server_key_path(),
                "10.0.2.2",
            ))
            .expect("the object store starts");
        Cloud {
            rt,
            broker,
            emulator,
            objects,
        }
    }
}

/// The cart's own settings, as written at manufacturing into the data
/// partition's factory area (read after the image's /etc/cart/cart.toml).
/// The timeouts suit TCG on two shared cores.
pub fn factory_settings(broker_port: u16) -> String {
    format!(
        r#"# Written at manufacturing (here: by the QEMU suite, per run).
cart_id = "{CART}"

[link]
# The host's loopback, through QEMU's user networking.
host = "10.0.2.2"
port = {broker_port}
server_name = "localhost"
backoff_base_ms = 200
backoff_max_ms = 2000
connect_timeout_secs = 30
# A pulled cable is noticed within two keep-alives (scenario 4).
keep_alive_secs = 10

[store]
# The receipt's QR code: this page, the payment, the cart's TPM signature.
receipt_url = "https://receipts.example.com/r"

[sync]
auth_timeout_ms = 10000
status_interval_secs = 30

[provisioning]
template = "{TEMPLATE}"
response_timeout_secs = 60
connect_timeout_secs = 120

[provisioning.wifi]
# The store's Wi-Fi is inside the guest (two mac80211_hwsim radios, hostapd
# on wlan1): the first boot onboards on wlan0 (scenario 2). The broker stays
# on the wired link.
interface = "wlan0"
join_timeout_secs = 120

[daemon]
status_interval_secs = 2

[jobs]
# The test PKI signs the emulator's object store too (a cart in a store
# trusts the system's CA bundle, the default).
https_ca_file = "/data/factory/broker-ca.pem"
"#
    )
}

/// One cart: its disk, TPM, devices and the guest when it runs.
pub struct Cart {
    pub cloud: Cloud,
    pub art: Artifacts,
    pub image: Image,
    pub disk: Disk,
    pub scanner: Pty,
    pub reader: SimHandle,
    /// A second card reader's simulator, for the USB reader scenario (9).
    pub usb_reader: Option<SimHandle>,
    pub config: GuestConfig,
    pub guest: Option<Guest>,
    /// QEMU start to the first frame and to READY at the first boot.
    pub boots: Vec<String>,
    /// What the backend must have charged when the next scenario starts
    /// (a check deferred so that a wrong late charge has time to show).
    pub charged_expected: Option<u64>,
}

impl Cart {
    /// A new cart fresh from the factory: claim, CA and its settings in the
    /// data area, a fresh TPM.
    pub fn new(scenario: &str) -> Cart {
        let cloud = Cloud::start();
        let art = Artifacts::new(scenario);
        let image = Image::find();
        let disk = Disk::copy_of(&image.disk, &art.file("disk.img"));
        let stage = art.file("factory-stage");
        let factory = stage.join("factory");
        std::fs::create_dir_all(factory.join("claim")).expect("stage");
        std::fs::write(
            factory.join("cart.toml"),
            factory_settings(cloud.broker.port()),
        )
        .expect("factory cart.toml");
        std::fs::copy(cloud.broker.ca_pem_path(), factory.join("broker-ca.pem")).expect("CA");
        let (c, k) = cloud.broker.pki().claim_cert();
        std::fs::copy(c, factory.join("claim/claim.pem")).expect("claim");
        std::fs::copy(k, factory.join("claim/claim.key")).expect("claim key");
        disk.write_data(&stage);
        std::fs::remove_dir_all(&stage).ok();
        let scanner = Pty::open();
        let reader = spawn_pty(SimConfig::from_fixtures(&fixtures()).expect("fixtures"))
            .expect("reader simulator");
        let config = GuestConfig {
            image: image.clone(),
            disk: disk.path().to_owned(),
            tpm_state: art.file("tpm"),
            scanner_tty: scanner.path().to_owned(),
            reader_tty: reader.path().to_owned(),
            run_dir: art.path().to_owned(),
            display: (1280, 800),
            memory_mib: 1024,
        };
        Cart {
            cloud,
            art,
            image,
            disk,
            scanner,
            reader,
            usb_reader: None,
            config,
            guest: None,
            boots: Vec::new(),
            charged_expected: None,
        }
    }

    /// Powers the cart on; returns once the guest agent answers.
    pub fn boot(&mut self) -> &mut Guest {
        self.boot_with_cable(true)
    }

    /// Powers the cart on with the network cable in or out from the first
    /// instant (QEMU's link set before the guest's kernel runs); returns
    /// once the guest agent answers.
    pub fn boot_with_cable(&mut self, cable: bool) -> &mut Guest {
        assert!(self.guest.is_none(), "the cart is already on");
        let mut guest = Guest::start(&self.config);
        if !cable {
            guest
                .qmp
                .set_link(qemu_suite::guest::NIC, false)
                .expect("set_link off");
        }
        let up = guest.wait_agent(Duration::from_secs(300));
        let console = guest.console();
        self.guest = Some(guest);
        if !up {
            self.fail(&format!(
                "the guest agent never answered; console tail:\n{}",
                tail(&console, 40)
            ));
        }
        self.guest.as_mut().expect("guest")
    }

    pub fn guest(&mut self) -> &mut Guest {
        self.guest.as_mut().expect("the cart is off")
    }

    /// Cuts the power.
    pub fn power_cut(&mut self) {
        if let Some(g) = self.guest.take() {
            g.power_cut();
        }
    }

    /// A clean shutdown.
    pub fn shutdown(&mut self) {
        if let Some(g) = self.guest.take() {
            g.shutdown(Duration::from_secs(120));
        }
    }

    /// Saves the guest's journal and console into the run folder, then
    /// panics with `why` and the folder's name.
    pub fn fail(&mut self, why: &str) -> ! {
        self.art.keep();
        self.collect();
        panic!("{why}\n(run folder: {})", self.art.path().display());
    }

    /// Saves the journal export and a screendump (when the guest runs).
    pub fn collect(&mut self) {
        let dir = self.art.path().to_owned();
        if let Some(g) = self.guest.as_mut() {
            if let Ok(out) = g.agent.sh(
                "journalctl -b --no-pager -o export",
                Duration::from_secs(60),
            ) {
                let _ = std::fs::write(dir.join("journal.export"), out.stdout);
            }
            if let Ok(out) = g
                .agent
                .sh("journalctl -b --no-pager", Duration::from_secs(60))
            {
                let _ = std::fs::write(dir.join("journal.txt"), out.stdout);
            }
            let _ = g.qmp.screendump(&dir.join("last-screen.ppm"));
        }
    }

    /// Runs a shell command in the guest; fails the scenario when it does.
    pub fn must(&mut self, script: &str) -> String {
        let out = match self.guest().agent.sh(script, Duration::from_secs(180)) {
            Ok(o) => o,
            Err(e) => self.fail(&format!("guest: {script}: {e}")),
        };
        if !out.success() {
            self.fail(&format!(
                "guest: {script}: exit {}\n{}{}",
                out.code, out.stdout, out.stderr
            ));
        }
        out.stdout
    }

    /// Waits until a guest command succeeds.
    pub fn wait_guest(&mut self, script: &str, timeout: Duration) -> bool {
        let g = self.guest.as_ref().expect("the cart is off");
        qemu_suite::wait_for(timeout, || {
            g.agent
                .sh(script, Duration::from_secs(60))
                .is_ok_and(|o| o.success())
        })
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
