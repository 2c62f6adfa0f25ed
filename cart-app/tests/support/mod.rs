//! What the provisioning tests share: mosquitto with the claim ACL, the
//! backend emulator with its fleet-provisioning responder (signing with
//! the broker's test CA), a cart's folder with its claim credentials, and
//! the config pointing at all of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backend_emulator::{Emulator, EmulatorConfig, FleetConfig};
use bytes::Bytes;
use cart_app::provision::{ProvisioningConfig, WifiConfig};
use cart_app::tpm::{CartTpm, certified_key_from_pem_file};
use hal::identity::DeviceIdentity;
use hal::identity::tpm::TpmConfig;
use mqtt_harness::Broker;
use store_and_forward::policy::Limits;
use store_and_forward::sync::SharedLedger;
use store_and_forward::uplink::{self, LinkConfig, PublishProps, QoS, SwappableClientCert};
use store_and_forward::{Ledger, LedgerConfig, Timestamp};

pub const TEMPLATE: &str = "cart-fleet";
pub const WIFI_PASSWORD: &str = "Corr3ct-Horse-Battery";
pub const WIFI_QR: &str = "WIFI:S:shop-carts;T:WPA;P:Corr3ct-Horse-Battery;;";

pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

pub fn link(broker: &Broker, id: &str) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: id.into(),
        keep_alive_secs: 5,
        backoff_base_ms: 50,
        backoff_max_ms: 500,
        connect_timeout_secs: 10,
        ca_file: Some(broker.ca_pem_path()),
        server_name: Some("localhost".into()),
        ..LinkConfig::default()
    }
}

/// The emulator with the fleet responder; `token_lifetime` as AWS's hour
/// unless a test needs orphans by expiry.
pub async fn emulator(broker: &Broker, token_lifetime: Duration) -> Emulator {
    let (cert, key) = broker.client_cert(mqtt_harness::BACKEND_IDENTITY);
    let mut fleet = FleetConfig::new(
        broker.pki().ca_cert_pem(),
        broker.pki().ca_key_pem(),
        TEMPLATE,
    );
    fleet.token_lifetime = token_lifetime;
    let em = Emulator::start_with_fleet(
        EmulatorConfig {
            link: link(broker, "backend"),
            identity: Some((cert, key)),
            fixtures: fixtures(),
        },
        Some(fleet),
    )
    .await
    .expect("emulator starts");
    assert!(
        em.wait_up(Duration::from_secs(30)).await,
        "emulator connects"
    );
    em
}

/// A cart's folder: claim credentials copied in (the image's), the Wi-Fi
/// folder, the ledger and certificate paths.
pub struct CartDir {
    pub dir: tempfile::TempDir,
    pub config: ProvisioningConfig,
}

impl CartDir {
    pub fn new(broker: &Broker) -> CartDir {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = broker.pki().claim_cert();
        let claim = dir.path().join("claim");
        std::fs::create_dir_all(&claim).unwrap();
        std::fs::copy(c, claim.join("claim.pem")).unwrap();
        std::fs::copy(k, claim.join("claim.key")).unwrap();
        let config = ProvisioningConfig {
            template: TEMPLATE.into(),
            claim_cert: claim.join("claim.pem"),
            claim_key: claim.join("claim.key"),
            certificate: dir.path().join("device.pem"),
            response_timeout_secs: 20,
            connect_timeout_secs: 20,
            // Wired: joining a Wi-Fi needs NetworkManager and a radio, which
            // the QEMU suite's guest has (mac80211_hwsim and hostapd; its
            // first boot onboards over Wi-Fi), this machine not.
            wifi: WifiConfig {
                enabled: false,
                ..WifiConfig::default()
            },
            ..ProvisioningConfig::default()
        };
        CartDir { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger.sqlite")
    }
}

/// Opens the cart's ledger on the TPM's counter and sealed key.
pub fn open_ledger(tpm: &CartTpm, path: &Path) -> SharedLedger {
    let counter = tpm.counter().unwrap();
    let mut key = tpm.data_key();
    let (ledger, _) = Ledger::open(
        LedgerConfig {
            path: path.to_path_buf(),
            ..LedgerConfig::default()
        },
        Limits::none(),
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )
    .unwrap();
    Arc::new(Mutex::new(ledger))
}

pub fn tpm_config(tcti: String) -> TpmConfig {
    TpmConfig {
        tcti,
        ..TpmConfig::default()
    }
}

/// A whole mutual-TLS session to mosquitto with `identity` and the
/// certificate file: connect, publish on the cart's own topic, PUBACK.
pub async fn mutual_tls_session(
    broker: &Broker,
    cart: &str,
    identity: Arc<dyn DeviceIdentity>,
    cert: &Path,
) -> Result<(), String> {
    let key = certified_key_from_pem_file(identity, cert).map_err(|e| e.to_string())?;
    let swap = Arc::new(SwappableClientCert::new(key));
    let (l, _rx) =
        uplink::start(link(broker, cart), Some(swap), vec![]).map_err(|e| e.to_string())?;
    let up = l.wait_up(Duration::from_secs(20)).await;
    let r = if up {
        l.publish(
            &format!("carts/{cart}/up/test"),
            Bytes::from_static(b"hello"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    } else {
        Err(format!(
            "no connection: {:?}",
            l.state().borrow().last_error
        ))
    };
    l.shutdown().await;
    r
}

/// A `cart-app run` child process, killed if the test ends early (a
/// failed assert) so no daemon outlives its test.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Daemon {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

/// Polls `f` every 100 ms until it holds or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
#[cfg(feature = "demo")]
pub mod rig;
pub mod sandbox;
