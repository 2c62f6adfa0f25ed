//! `cart-app run` as systemd runs it: a child process with a notify socket
//! and a watchdog, a real mosquitto over mutual TLS with the backend
//! emulator, the reader simulator and a scanner on pseudo-terminals, the
//! headless UI, and `cartctl` on the control socket.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use cart_app::demo::rig;
use support::rig::Rig;
use support::{Daemon, wait_until};

const CART: &str = rig::CART;

fn payments(st: &serde_json::Value, state: &str) -> u64 {
    st["ledger"]["payments"][state].as_u64().unwrap_or(0)
}

#[test]
fn daemon_under_systemd_notify_sells_and_stops_on_sigterm_without_losing_a_payment() {
    let mut rig = Rig::new();
    let (mut child, log) = rig.start();
    let mut seen = Vec::new();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("READY=1"), 30),
        "no READY=1: {seen:?}\n{}",
        log.lock().unwrap()
    );
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("STATUS=link up"), 20),
        "status never said link up: {seen:?}"
    );
    // The watchdog is petted while every part makes progress.
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("WATCHDOG=1"), 10),
        "no WATCHDOG=1: {seen:?}"
    );

    // cartctl talks to the daemon.
    let (code, out, err) = rig.cartctl(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{CART} (daemon)")), "{out}");
    assert!(
        out.contains("provisioned") && out.contains("expires in"),
        "{out}"
    );
    assert!(out.contains("reader") && out.contains("connected"), "{out}");

    // A catalog delta from the backend reaches the cart's catalog.
    let world = rig.world.as_ref().unwrap();
    world
        .block_on(world.emulator.publish_catalog(
            CART,
            store_and_forward::wire::down::CatalogDelta {
                version: 7,
                base_version: Some(0),
                upserts: vec![store_and_forward::wire::down::CatalogItem {
                    gtin: "04012345000030".into(),
                    name: "Oat milk 1 l".into(),
                    price: store_and_forward::Money::new(
                        219,
                        store_and_forward::Currency::new("EUR").unwrap(),
                    ),
                    tax_class: "reduced".into(),
                    min_age: None,
                    sold_by_weight: false,
                }],
                removals: vec![],
            },
        ))
        .unwrap();
    let catalog_path = rig.dir.path().join("catalog.sqlite");
    assert!(
        wait_until(20, || cart_app::catalog::Catalog::open(&catalog_path)
            .and_then(|c| c.version())
            .is_ok_and(|v| v == 7)),
        "the catalog delta was not applied: {}",
        log.lock().unwrap()
    );

    // An online payment through the scanner, the touchscreen and the reader.
    rig.pay_online("4006381333931");
    assert!(
        wait_until(30, || payments(&rig.status(), "online_approved") == 1),
        "no online approval: {}",
        log.lock().unwrap()
    );
    rig.tap("done");

    // A technician drains the queue and takes a diagnostics bundle.
    let (code, out, err) = rig.cartctl(&["sync", "--timeout", "30"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("synced"), "{out}");
    // The link's meter: what the broker bills, since the daemon started.
    let status = rig.status();
    let traffic = &status["link"]["traffic"];
    assert!(traffic["publishes_out"].as_u64() > Some(0), "{status}");
    assert!(
        traffic["publish_out_steps"].as_u64() >= traffic["publishes_out"].as_u64(),
        "{status}"
    );
    let (_, text, _) = rig.cartctl(&["status"]);
    assert!(
        text.contains("since start:") && text.contains("metered"),
        "{text}"
    );
    let bundle = rig.dir.path().join("diag.json");
    let (code, out, err) = rig.cartctl(&["diag", "--out", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["daemon"]["config"]["cart_id"], CART, "{text}");
    assert!(
        v["daemon"]["status"]["ledger"]["payments"].is_object(),
        "{text}"
    );
    assert!(v["journal"].is_string(), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // SIGHUP: newer offline limits from the file take effect.
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let text = text.replacen(
        "version = 1\n[offline.per_payment_cap]\nEUR = 10000",
        "version = 2\n[offline.per_payment_cap]\nEUR = 5000",
        1,
    );
    assert!(
        text.contains("version = 2"),
        "the rig's config changed shape"
    );
    std::fs::write(&rig.config, text).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("RELOADING=1"), 10),
        "no RELOADING=1: {seen:?}"
    );
    assert!(
        wait_until(10, || {
            let st = rig.status();
            st["ledger"]["limits"]["version"] == 2
                && st["ledger"]["limits"]["per_payment_cap"]["EUR"] == 5000
        }),
        "limits not reloaded: {}",
        rig.status()
    );

    // A payment whose online answer is slow: SIGTERM arrives while it runs.
    rig.scan("4012345000023");
    std::thread::sleep(Duration::from_millis(500));
    rig.card("slow-online");
    rig.tap("pay");
    assert!(
        wait_until(30, || payments(&rig.status(), "card_read") == 1),
        "the card was never read: {}",
        log.lock().unwrap()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("STOPPING=1"), 10),
        "no STOPPING=1: {seen:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "exit {status:?}\n{log}");

    // The payment finished (decided offline after the online timeout) and
    // is in the ledger with its forward queued: nothing lost.
    // The last snapshot says the daemon stopped; the ledger itself is the
    // truth checked here.
    let snapshot = rig.dir.path().join("status.json");
    let st = rig.status();
    assert!(
        st["source"]
            .as_str()
            .is_some_and(|s| s.contains("as the daemon stopped")),
        "{st}"
    );
    std::fs::remove_file(&snapshot).unwrap();
    let st = rig.status();
    assert_eq!(st["source"], "ledger (daemon down)");
    assert_eq!(payments(&st, "card_read"), 0, "{st}");
    assert_eq!(payments(&st, "in_doubt"), 0, "{st}");
    let decided = payments(&st, "offline_approved")
        + payments(&st, "online_approved")
        + payments(&st, "forwarded")
        + payments(&st, "confirmed");
    assert_eq!(decided, 2, "{st}");

    // The log carries the fields a technician filters on.
    let decided_line = log
        .lines()
        .find(|l| l.contains("payment decided"))
        .expect("a payment decided line");
    assert!(decided_line.contains("payment_key="), "{decided_line}");
    assert!(
        log.lines()
            .any(|l| l.contains("card reader connected") && l.contains("device=\"reader\"")),
        "{log}"
    );
    assert!(log.contains("SIGTERM"), "{log}");
    let world = rig.world.take().unwrap();
    assert!(world.emulator.counts().charged >= 1, "the online payment");
    world.shutdown();
}

#[test]
fn a_bad_config_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cart.toml");
    std::fs::write(&config, "[reader]\nprot = \"/dev/ttyS2\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cart-app"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prot"), "{err}");
}

#[test]
fn the_control_socket_refuses_users_outside_root_and_the_group() {
    // Switching to another user needs root (CI runs the tests as root).
    // libtest has no "skipped": without root this fails and says why.
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches to another user and needs root: run the cart-app tests as root, as CI does"
    );
    let rig = Rig::new();
    let (mut child, log) = rig.start();
    let mut seen = Vec::new();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("READY=1"), 30),
        "no READY=1: {}",
        log.lock().unwrap()
    );
    // Open the folder and the socket to everyone, so only the credential
    // check stands between `nobody` and the daemon.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(rig.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        rig.dir.path().join("cart.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        rig.dir.path().join("control.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    use std::os::unix::process::CommandExt;
    let out = Command::new(env!("CARGO_BIN_EXE_cartctl"))
        .arg("--config")
        .arg(&rig.config)
        .arg("status")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("not allowed"), "{err}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// One journal entry: its fields in order.
type JournalEntry = Vec<(String, String)>;

/// Parses journald's native protocol: `KEY=value` lines, or `KEY`, a
/// little-endian u64 length, the bytes and a newline for binary values.
fn journal_fields(mut d: &[u8]) -> JournalEntry {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|b| *b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push((key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned()));
            d = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

#[test]
fn under_systemd_the_journal_gets_cart_payment_and_device_fields() {
    // A private mount namespace for the journal's socket needs root (CI
    // runs the tests as root). Without root this fails and says why.
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a private journal socket and needs root: run the cart-app tests as root, as CI does"
    );
    let mut rig = Rig::new();
    // The daemon's /run is a private tmpfs in its own mount namespace, where
    // /run/systemd/journal is this folder: its journal socket is ours.
    let journal_dir = rig.dir.path().join("journal");
    std::fs::create_dir(&journal_dir).unwrap();
    let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cart-app"));
    cmd.args(["run", "--config"])
        .arg(&rig.config)
        .env("NOTIFY_SOCKET", rig.dir.path().join("notify.sock"))
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let source = std::ffi::CString::new(journal_dir.as_os_str().as_encoded_bytes()).unwrap();
    unsafe {
        use std::os::unix::process::CommandExt;
        // SAFETY: only syscalls between fork and exec.
        cmd.pre_exec(move || {
            use nix::mount::{MsFlags, mount};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            mount(
                Some("tmpfs"),
                "/run",
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )?;
            nix::unistd::mkdir(
                "/run/systemd",
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            )?;
            nix::unistd::mkdir(
                "/run/systemd/journal",
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            )?;
            mount(
                Some(source.as_c_str()),
                "/run/systemd/journal",
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        });
    }
    let mut child = Daemon(cmd.spawn().expect("start cart-app run"));
    // Read the journal as journald does, all the time: a unix datagram
    // socket holds only a few messages before the sender blocks.
    let entries: Arc<Mutex<Vec<JournalEntry>>> = Arc::default();
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (entries, reading) = (entries.clone(), reading.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while reading.load(std::sync::atomic::Ordering::SeqCst) {
                // tracing-journald probes the socket with an empty datagram.
                if let Ok(n) = journal.recv(&mut buf)
                    && n > 0
                {
                    entries.lock().unwrap().push(journal_fields(&buf[..n]));
                }
            }
        })
    };
    let mut seen = Vec::new();
    if !rig.wait_notify(&mut seen, |m| m.contains("READY=1"), 30) {
        let _ = child.kill();
        let status = child.wait();
        panic!(
            "no READY=1: {seen:?}; {status:?}; journal: {:?}",
            entries.lock().unwrap()
        );
    }
    rig.pay_online("4006381333931");
    assert!(
        wait_until(30, || payments(&rig.status(), "online_approved") == 1),
        "no payment"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    std::thread::sleep(Duration::from_millis(300));
    reading.store(false, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    let entries = entries.lock().unwrap().clone();
    let get =
        |e: &JournalEntry, k: &str| e.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert!(
        entries.len() > 5,
        "journal entries: {entries:?}\nstderr: {stderr}"
    );
    assert!(
        entries
            .iter()
            .all(|e| get(e, "CART_ID").as_deref() == Some(CART) && get(e, "PRIORITY").is_some()),
        "every entry has CART_ID and PRIORITY: {entries:?}"
    );
    let decided = entries
        .iter()
        .find(|e| get(e, "MESSAGE").is_some_and(|m| m.contains("payment decided")))
        .expect("a payment decided entry");
    let key = get(decided, "PAYMENT_KEY");
    assert!(key.as_ref().is_some_and(|k| k.len() == 36), "{decided:?}");
    // One field name for the payment key in every crate (the ledger and
    // the sync log it too): no entry carries it under another name.
    assert!(
        entries.iter().all(|e| get(e, "PAYMENT").is_none()),
        "an entry with PAYMENT= instead of PAYMENT_KEY=: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .filter(|e| get(e, "PAYMENT_KEY") == key)
            .count()
            >= 2,
        "the payment's entries under PAYMENT_KEY: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| get(e, "DEVICE").as_deref() == Some("reader")),
        "a reader entry with DEVICE=reader"
    );
    assert!(
        entries
            .iter()
            .any(|e| get(e, "SYSLOG_IDENTIFIER").as_deref() == Some("cart-app")),
        "SYSLOG_IDENTIFIER"
    );
    assert!(
        stderr.is_empty(),
        "under systemd nothing goes to stderr: {stderr}"
    );
}

#[test]
fn a_notify_socket_nobody_reads_does_not_stall_the_daemon() {
    let rig = Rig::new();
    let (mut child, log) = rig.start();
    let mut seen = Vec::new();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("READY=1"), 30),
        "no READY=1: {}",
        log.lock().unwrap()
    );
    // STATUS and WATCHDOG come every second; the socket's queue holds ten.
    std::thread::sleep(Duration::from_secs(15));
    let (code, out, err) = rig.cartctl(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(daemon)"), "{out}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        wait_until(30, || child.try_wait().unwrap().is_some()),
        "the daemon did not stop: {}",
        log.lock().unwrap()
    );
}

/// The reader is watched while idle: unplugged with no payment running, the
/// cart reports it missing (and the session shows the fault screen) within
/// 5 seconds, not at the next payment. The status request the idle payment
/// thread sends every second is what notices it.
#[test]
fn a_reader_unplugged_while_idle_is_reported_within_five_seconds() {
    let rig = Rig::new();
    let (_child, log) = rig.start();
    let mut seen = Vec::new();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("READY=1"), 30),
        "no READY=1: {seen:?}\n{}",
        log.lock().unwrap()
    );
    let reader_state = |st: &serde_json::Value| {
        st["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["device"] == "reader"))
            .and_then(|x| x["state"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let guard = Instant::now() + Duration::from_secs(20);
    while reader_state(&rig.status()) != "connected" {
        assert!(Instant::now() < guard, "the reader never connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = rig
        .world
        .as_ref()
        .unwrap()
        .reader
        .commands()
        .send(hal::reader::sim::SimCommand::Unplug);
    let unplugged = Instant::now();
    while reader_state(&rig.status()) == "connected" {
        assert!(
            unplugged.elapsed() < Duration::from_secs(5),
            "the reader was unplugged {:?} ago and is still reported connected\n{}",
            unplugged.elapsed(),
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        log.lock().unwrap().contains("card reader"),
        "{}",
        log.lock().unwrap()
    );
}
