//! The daemon and `cartctl` under a host stand-in for the unit's sandbox
//! (bubblewrap + setpriv, see `support::sandbox`): a read-only root, the
//! daemon as an unprivileged user with no capabilities, the technicians'
//! control folder made as tmpfiles.d makes it (2750 cart:cart-tech).
//! The QEMU guest runs the same checks under the real unit.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::Signal;
use support::sandbox::{As, CART_UID, Sandbox, Sandboxed, TECH_GID};
use support::wait_until;
use swtpm_harness::Swtpm;

const CART: &str = "cart-sandbox-0007";

/// A cart's folders on the host, as the image lays them out: the config
/// (read-only inside), the daemon's state (0700 cart), the control folder
/// (2750 cart:cart-tech).
struct Cart {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
}

impl Cart {
    fn new() -> Cart {
        let dir = tempfile::Builder::new()
            .prefix("cart-sandbox")
            .tempdir()
            .unwrap();
        let mut sandbox = Sandbox::new();
        for (name, mode, gid, writable) in [
            ("etc", 0o755, 0, false),
            ("state", 0o700, CART_UID, true),
            ("control", 0o2750, TECH_GID, true),
        ] {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            let owner = if name == "etc" { 0 } else { CART_UID };
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(owner)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .unwrap();
            // chown clears setgid: the mode last.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            sandbox.bind(&p, writable);
        }
        Cart { dir, sandbox }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn write_config(&self, extra: &str) -> PathBuf {
        let config = self.path("etc/cart.toml");
        std::fs::write(
            &config,
            format!(
                r#"cart_id = "{CART}"
[ledger]
path = "{state}/ledger.sqlite"
[catalog]
path = "{state}/catalog.sqlite"
[scanner]
kind = "none"
[reader]
port = "{state}/no-reader"
[ui]
backend = "headless"
[control]
socket = "{control}/control.sock"
[daemon]
status_interval_secs = 1
{extra}"#,
                state = self.path("state").display(),
                control = self.path("control").display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        config
    }

    fn daemon(&self, log: &Path) -> Sandboxed {
        let mut c = self
            .sandbox
            .command(As::Cart, Path::new(env!("CARGO_BIN_EXE_cart-app")));
        c.args(["run", "--config"])
            .arg(self.path("etc/cart.toml"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        Sandboxed(c.spawn().expect("start bwrap"))
    }

    fn cartctl(&self, who: As, args: &[&str]) -> (i32, String, String) {
        self.cartctl_in(&self.sandbox, who, args)
    }

    /// `cartctl` with this cart's config in `sandbox` (another view of its
    /// folders): exit code, stdout, stderr.
    fn cartctl_in(&self, sandbox: &Sandbox, who: As, args: &[&str]) -> (i32, String, String) {
        let out = sandbox
            .command(who, Path::new(env!("CARGO_BIN_EXE_cartctl")))
            .arg("--config")
            .arg(self.path("etc/cart.toml"))
            .args(args)
            .output()
            .expect("run cartctl in the sandbox");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The config of a cart that is not provisioned and has no broker: the
    /// daemon runs (out of service) and keeps retrying provisioning.
    fn write_offline_config(&self, tpm: &Swtpm, extra: &str) -> PathBuf {
        self.write_config(&format!(
            "[tpm]\ntcti = \"{}\"\n[link]\nhost = \"127.0.0.1\"\nport = 9\n[provisioning.wifi]\nenabled = false\n{extra}",
            tpm.tcti()
        ))
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The daemon runs as `cart` without CAP_CHOWN: the socket and the status
/// snapshot get the group from the setgid folder; a technician reaches the
/// daemon, then its snapshot once it stops; anyone else is told
/// "permission denied"; each cause has its exit code.
#[test]
fn field_technicians_reach_the_daemon_and_its_snapshot_under_the_sandbox() {
    let tpm = Swtpm::start();
    let cart = Cart::new();
    cart.write_offline_config(&tpm, "");
    let log = cart.path("daemon.log");
    let socket = cart.path("control/control.sock");
    let snapshot = cart.path("control/status.json");
    let mut daemon = cart.daemon(&log);
    assert!(
        wait_until(60, || socket.exists() && snapshot.exists()),
        "no socket or snapshot: {}",
        read(&log)
    );

    // What the daemon made, without privileges: group cart-tech by the
    // folder, modes 0660 and 0640 despite the unit's UMask=0077.
    for (p, mode) in [(&socket, 0o660), (&snapshot, 0o640)] {
        let m = std::fs::metadata(p).unwrap();
        assert_eq!((m.uid(), m.gid()), (CART_UID, TECH_GID), "{}", p.display());
        assert_eq!(m.mode() & 0o777, mode, "{}", p.display());
    }

    // A technician: the daemon answers.
    let (code, out, err) = cart.cartctl(As::Tech, &["status", "--json"]);
    assert_eq!(code, 0, "{err}\n{}", read(&log));
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["source"], "daemon", "{st}");
    assert_eq!(st["cart_id"], CART);
    // Anyone else: permission denied, exit 5, for the daemon and the
    // snapshot alike (the folder keeps them out).
    let (code, _, err) = cart.cartctl(As::Other, &["status"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("permission denied"), "{err}");
    let (code, _, err) = cart.cartctl(As::Other, &["sync", "--timeout", "1"]);
    assert_eq!(code, 5, "{err}");

    // A clean stop: the socket goes, the last snapshot stays.
    daemon.signal(Signal::SIGTERM);
    assert!(
        wait_until(30, || daemon.exited()),
        "no stop: {}",
        read(&log)
    );
    assert!(!socket.exists(), "the socket is removed at stop");
    let (code, out, err) = cart.cartctl(As::Tech, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("snapshot written") && out.contains("as the daemon stopped"),
        "{out}"
    );
    assert!(out.contains(CART), "{out}");
    let (code, out, _) = cart.cartctl(As::Tech, &["status", "--json"]);
    assert_eq!(code, 0);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(st["uptime_secs"].is_null(), "{st}");
    // Commands that need the daemon say it is not running: exit 4.
    let (code, _, err) = cart.cartctl(As::Tech, &["sync", "--timeout", "1"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("the daemon is not running"), "{err}");
    let (code, _, err) = cart.cartctl(As::Other, &["status"]);
    assert_eq!(code, 5, "{err}");

    // A killed daemon: a stale socket, a snapshot that says it did not
    // stop cleanly.
    let mut daemon = cart.daemon(&log);
    std::fs::remove_file(&snapshot).unwrap();
    assert!(
        wait_until(60, || snapshot.exists()),
        "no snapshot: {}",
        read(&log)
    );
    daemon.signal(Signal::SIGKILL);
    assert!(wait_until(30, || daemon.exited()));
    assert!(socket.exists(), "a killed daemon leaves its socket");
    let (code, out, err) = cart.cartctl(As::Tech, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("did not stop cleanly"), "{out}");

    // No snapshot: the technician cannot read the ledger (0700 cart), so
    // exit 6 says there is nothing to show and why.
    std::fs::remove_file(&snapshot).unwrap();
    let (code, _, err) = cart.cartctl(As::Tech, &["status"]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("not running") && err.contains("no status snapshot"),
        "{err}"
    );
    // Root still gets the read-only look at the ledger.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartctl"))
        .arg("--config")
        .arg(cart.path("etc/cart.toml"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["source"], "ledger (daemon down)", "{st}");
}

/// `cartctl catalog import` never leaves files the daemon cannot open: run
/// as root it imports through the daemon (the daemon's user writes), and
/// with the daemon down as the catalog folder's owner. A technician
/// imports through the daemon; anyone else is refused.
#[test]
fn catalog_import_writes_as_the_daemon_user_never_root() {
    let tpm = Swtpm::start();
    let cart = Cart::new();
    cart.write_offline_config(&tpm, "[store]\ncurrency = \"EUR\"\n");
    let log = cart.path("daemon.log");
    let socket = cart.path("control/control.sock");
    let _daemon = cart.daemon(&log);
    assert!(
        wait_until(60, || socket.exists()),
        "no socket: {}",
        read(&log)
    );
    let csv = cart.path("etc/items.csv");
    std::fs::write(
        &csv,
        "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight\n\
         4006381333931,\"Pens, blue \"\"fine\"\"\",189,EUR,standard,,false\n\
         5000267024202,Whisky 70 cl,2999,EUR,standard,18,false\n",
    )
    .unwrap();
    std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o644)).unwrap();
    let root = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartctl"))
            .arg("--config")
            .arg(cart.path("etc/cart.toml"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let owners = || {
        std::fs::read_dir(cart.path("state"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("catalog"))
            .map(|e| (e.file_name(), e.metadata().unwrap().uid()))
            .collect::<Vec<_>>()
    };
    let csv_arg = csv.to_str().unwrap();

    // Root, daemon running: through the daemon.
    let (code, out, err) = root(&["catalog", "import", csv_arg]);
    assert_eq!(code, 0, "{err}\n{}", read(&log));
    assert!(
        out.contains("imported 2 items") && out.contains("through the daemon"),
        "{out}"
    );
    let files = owners();
    assert!(!files.is_empty());
    assert!(files.iter().all(|(_, uid)| *uid == CART_UID), "{files:?}");
    // A technician too; anyone else is refused (exit 5).
    let (code, out, err) = cart.cartctl(As::Tech, &["catalog", "import", csv_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("through the daemon"), "{out}");
    let (code, _, err) = cart.cartctl(As::Other, &["catalog", "import", csv_arg]);
    assert_eq!(code, 5, "{err}");
    // A price in another currency: refused whole, naming line and column.
    std::fs::write(
        &csv,
        "gtin,name,price_minor,currency,tax_class\n96385074,Milk,99,EUR,reduced\n4006381333931,Pens,189,USD,standard\n",
    )
    .unwrap();
    let (code, _, err) = cart.cartctl(As::Tech, &["catalog", "import", csv_arg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 3, column 4 (currency)") && err.contains("store's currency EUR"),
        "{err}"
    );

    // Root with the daemon down: imports as the folder's owner.
    drop(_daemon);
    std::fs::write(
        &csv,
        "gtin,name,price_minor,currency,tax_class\n96385074,Milk,99,EUR,reduced\n",
    )
    .unwrap();
    let (code, out, err) = root(&["catalog", "import", csv_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("as uid {CART_UID}")), "{out}");
    let files = owners();
    assert!(files.iter().all(|(_, uid)| *uid == CART_UID), "{files:?}");
    let c = cart_app::catalog::Catalog::open(&cart.path("state/catalog.sqlite")).unwrap();
    assert_eq!(c.get("00000096385074").unwrap().unwrap().name, "Milk");
    assert_eq!(
        c.get("04006381333931").unwrap().unwrap().name,
        "Pens, blue \"fine\""
    );
}

/// The whole provisioning pipeline as the unit runs it: the config folder
/// read-only, the claim in a writable folder of its own on the data area
/// (deleted there once provisioned), the daemon as `cart` with no
/// capabilities; then a restart with the device certificate goes online.
#[test]
fn provisioning_under_the_sandbox_deletes_the_claim_from_the_data_area() {
    use backend_emulator::CertStatus;
    let broker = mqtt_harness::Broker::start();
    let tpm = Swtpm::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let em = rt.block_on(support::emulator(
        &broker,
        std::time::Duration::from_secs(3600),
    ));
    let mut cart = Cart::new();
    // The claim's folder (the image's /data/factory/claim): the cart's.
    let claim = cart.path("claim");
    std::fs::create_dir(&claim).unwrap();
    let (c, k) = broker.pki().claim_cert();
    std::fs::copy(c, claim.join("claim.pem")).unwrap();
    std::fs::copy(k, claim.join("claim.key")).unwrap();
    for p in [
        claim.clone(),
        claim.join("claim.pem"),
        claim.join("claim.key"),
    ] {
        nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(CART_UID)), None).unwrap();
    }
    cart.sandbox.bind(&claim, true);
    // The broker's CA with the read-only config.
    let ca = cart.path("etc/broker-ca.pem");
    std::fs::copy(broker.ca_pem_path(), &ca).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    cart.write_config(&format!(
        r#"[tpm]
tcti = "{tcti}"
[link]
host = "127.0.0.1"
port = {port}
backoff_base_ms = 100
backoff_max_ms = 1000
ca_file = "{ca}"
server_name = "localhost"
[provisioning]
template = "{template}"
claim_cert = "{claim}/claim.pem"
claim_key = "{claim}/claim.key"
certificate = "{state}/device.pem"
response_timeout_secs = 20
connect_timeout_secs = 20
[provisioning.wifi]
enabled = false
"#,
        tcti = tpm.tcti(),
        port = broker.port(),
        ca = ca.display(),
        template = support::TEMPLATE,
        claim = claim.display(),
        state = cart.path("state").display(),
    ));
    // The config folder is read-only inside: the daemon cannot write there.
    let log1 = cart.path("first.log");
    let mut first = cart.daemon(&log1);
    assert!(
        wait_until(90, || first.exited()),
        "the first boot did not finish provisioning: {}",
        read(&log1)
    );
    let code = first.0.wait().unwrap();
    assert!(code.success(), "{code:?}: {}", read(&log1));
    assert!(
        read(&log1).contains("provisioned: restarting"),
        "{}",
        read(&log1)
    );
    assert!(
        !claim.join("claim.pem").exists() && !claim.join("claim.key").exists(),
        "the claim is deleted from its folder: {}",
        read(&log1)
    );
    let active = em.fleet().unwrap().with_status(CART, CertStatus::Active);
    assert_eq!(active.len(), 1, "one active certificate");
    let device = std::fs::metadata(cart.path("state/device.pem")).unwrap();
    assert_eq!(device.uid(), CART_UID);

    // The restart: provisioned, online, seen by a technician.
    let log2 = cart.path("second.log");
    let _second = cart.daemon(&log2);
    assert!(
        wait_until(60, || {
            let (code, out, _) = cart.cartctl(As::Tech, &["status", "--json"]);
            code == 0
                && serde_json::from_str::<serde_json::Value>(&out)
                    .is_ok_and(|st| st["source"] == "daemon" && st["link"]["up"] == true)
        }),
        "never online: {}",
        read(&log2)
    );
    let (_, out, _) = cart.cartctl(As::Tech, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["provisioning_detail"]["provisioned"], true, "{st}");
    assert_eq!(
        st["provisioning_detail"]["certificate_id"],
        active[0].id.as_str(),
        "{st}"
    );
    rt.block_on(em.shutdown());
}

/// The update deadline (`cart-update-deadline.service`: root, but
/// ProtectSystem=strict makes the ledger's folder read-only) and `cartctl
/// status` with the daemon down read the ledger from a folder they cannot
/// write. SQLite reads a WAL-mode file through a `-shm` index it makes
/// beside it; a ledger closed cleanly (no `-wal`) is read as immutable
/// instead. (The QEMU update scenario 14 found the deadline unit failing
/// with "unable to open database file", never rolling back.)
#[test]
fn the_ledger_is_read_from_a_folder_the_reader_cannot_write() {
    let tpm = Swtpm::start();
    let cart = Cart::new();
    cart.write_offline_config(&tpm, "");
    let log = cart.path("daemon.log");
    let snapshot = cart.path("control/status.json");
    let mut daemon = cart.daemon(&log);
    assert!(
        wait_until(60, || snapshot.exists()),
        "no snapshot: {}",
        read(&log)
    );
    daemon.signal(Signal::SIGTERM);
    assert!(
        wait_until(30, || daemon.exited()),
        "no stop: {}",
        read(&log)
    );
    assert!(cart.path("state/ledger.sqlite").exists());
    assert!(
        !cart.path("state/ledger.sqlite-wal").exists(),
        "a clean stop leaves no -wal"
    );
    std::fs::remove_file(&snapshot).unwrap();

    // Every folder read-only, as the deadline unit sees them.
    let mut ro = Sandbox::new();
    for folder in ["etc", "state", "control"] {
        ro.bind(&cart.path(folder), false);
    }
    let cartctl = |args: &[&str]| cart.cartctl_in(&ro, As::Cart, args);
    let (code, out, err) = cartctl(&["update-deadline"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no update pending"), "{out}");
    let (code, out, err) = cartctl(&["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["source"], "ledger (daemon down)", "{st}");
    assert_eq!(st["cart_id"], CART, "{st}");
    assert!(
        !cart.path("state/ledger.sqlite-shm").exists(),
        "nothing written beside the ledger"
    );
}
