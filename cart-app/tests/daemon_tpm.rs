//! The daemon with a TPM (swtpm), from a fresh cart to a rotated
//! certificate: `cart-app run` provisions itself by claim against the
//! backend emulator's fleet-provisioning responder on mosquitto, restarts
//! with its device certificate, sells online, then rotates its certificate
//! when the backend asks, over its own link.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use backend_emulator::CertStatus;
use mqtt_harness::Broker;
use store_and_forward::wire::down::RotationRequest;
use support::{CartDir, Daemon, wait_until};
use swtpm_harness::Swtpm;

const CART: &str = "cart-tpm-0042";

fn start(config: &Path, notify: &Path, log: &Path) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_cart-app"))
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", notify)
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start cart-app run"),
    )
}

fn status(config: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cartctl"))
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn active(em: &backend_emulator::Emulator) -> Vec<String> {
    em.fleet()
        .unwrap()
        .with_status(CART, CertStatus::Active)
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[test]
fn a_fresh_cart_provisions_itself_restarts_and_rotates_when_asked() {
    let broker = Broker::start();
    let tpm = Swtpm::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let em = rt.block_on(support::emulator(&broker, Duration::from_secs(3600)));
    let cart = CartDir::new(&broker);
    let dir = cart.path();
    let notify = dir.join("notify.sock");
    let notify_sock = UnixDatagram::bind(&notify).unwrap();
    notify_sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let d = |p: &str| dir.join(p).display().to_string();
    let p = &cart.config;
    let config: PathBuf = dir.join("cart.toml");
    std::fs::write(
        &config,
        format!(
            r#"cart_id = "{CART}"
[ledger]
path = "{ledger}"
[catalog]
path = "{catalog}"
[link]
host = "127.0.0.1"
port = {port}
backoff_base_ms = 100
backoff_max_ms = 1000
ca_file = "{ca}"
server_name = "localhost"
[tpm]
tcti = "{tcti}"
[provisioning]
template = "{template}"
claim_cert = "{claim_cert}"
claim_key = "{claim_key}"
certificate = "{certificate}"
response_timeout_secs = 20
connect_timeout_secs = 20
[provisioning.wifi]
enabled = false
[scanner]
kind = "none"
[reader]
port = "{reader}"
[ui]
backend = "headless"
[control]
socket = "{socket}"
[daemon]
status_interval_secs = 1
"#,
            ledger = d("ledger.sqlite"),
            catalog = d("catalog.sqlite"),
            port = broker.port(),
            ca = broker.ca_pem_path().display(),
            tcti = tpm.tcti(),
            template = support::TEMPLATE,
            claim_cert = p.claim_cert.display(),
            claim_key = p.claim_key.display(),
            certificate = p.certificate.display(),
            reader = d("no-reader"),
            socket = d("control.sock"),
        ),
    )
    .unwrap();

    // First boot: not provisioned; the daemon provisions itself and stops
    // so that systemd starts it again with the device certificate.
    let log1 = dir.join("first.log");
    let mut first = start(&config, &notify, &log1);
    let read_log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        wait_until(90, || first.0.try_wait().unwrap().is_some()),
        "the first boot did not finish provisioning: {}",
        read_log(&log1)
    );
    let code = first.0.wait().unwrap();
    assert!(code.success(), "{code:?}: {}", read_log(&log1));
    assert!(
        read_log(&log1).contains("provisioned: restarting"),
        "{}",
        read_log(&log1)
    );
    let first_cert = active(&em);
    assert_eq!(first_cert.len(), 1, "one active certificate");
    assert!(
        !p.claim_cert.exists() && !p.claim_key.exists(),
        "claim deleted"
    );
    while notify_sock.recv(&mut [0u8; 512]).is_ok() {}

    // The restart: provisioned, online.
    let log2 = dir.join("second.log");
    let daemon = start(&config, &notify, &log2);
    let mut buf = [0u8; 4096];
    assert!(
        wait_until(60, || notify_sock.recv(&mut buf).is_ok_and(|n| {
            String::from_utf8_lossy(&buf[..n]).contains("STATUS=link up")
        })),
        "never online: {}",
        read_log(&log2)
    );
    let st = status(&config);
    assert_eq!(st["source"], "daemon");
    let detail = &st["provisioning_detail"];
    assert_eq!(detail["provisioned"], true, "{st}");
    assert_eq!(detail["certificate_id"], first_cert[0].as_str(), "{st}");
    assert!(st["certificate"]["days_left"].as_i64().unwrap() > 0, "{st}");

    // The backend asks for a rotation: a new key and certificate, over the
    // daemon's own link; the old certificate is deactivated.
    rt.block_on(em.request_rotation(
        CART,
        "rot-1",
        RotationRequest {
            reason: "policy".into(),
            deadline: None,
        },
    ))
    .unwrap();
    assert!(
        wait_until(60, || {
            let a = active(&em);
            a.len() == 1 && a != first_cert
        }),
        "no rotation: {}",
        read_log(&log2)
    );
    assert!(
        wait_until(30, || {
            let st = status(&config);
            st["provisioning_detail"]["certificate_id"] != first_cert[0].as_str()
                && st["provisioning_detail"]["rotation"].is_null()
                && st["link"]["up"] == true
        }),
        "the daemon does not run on the new certificate: {}\n{}",
        status(&config),
        read_log(&log2)
    );
    let old: Vec<_> = em
        .fleet()
        .unwrap()
        .with_status(CART, CertStatus::Inactive)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(old, first_cert, "the old certificate is inactive");

    // A clean stop.
    let mut daemon = daemon;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        wait_until(30, || daemon.0.try_wait().unwrap().is_some()),
        "no stop"
    );
    rt.block_on(em.shutdown());
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{}\n----\n{}", read_log(&log1), read_log(&log2));
    }
}
