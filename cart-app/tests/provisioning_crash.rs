//! Kill test for provisioning and rotation, against real mosquitto, swtpm
//! and the backend emulator. A child process (`provision-crash-child`)
//! does what the daemon does and is SIGKILLed at every failpoint of the
//! pipeline (step boundaries and inside steps), and at random moments in
//! between; after every kill the TPM and the ledger are checked, and the
//! next child resumes. Every round ends provisioned with exactly one
//! active certificate in the emulator, the orphans reported and deleted,
//! no orphan persistent key in the TPM, the claim gone, and a mutual-TLS
//! session with the issued certificate and the TPM key. Then a rotation
//! is killed the same way; after every kill the cart still has a working
//! key and certificate (a real mutual-TLS session proves it).
//!
//! `PROVISION_CRASH_ROUNDS` sets the provisioning rounds (default 2, one
//! fresh cart and TPM each; the second lets an ownership token expire to
//! make an orphan the cart knows by id). Without a resource manager
//! (swtpm directly), a killed client's transient objects stay loaded;
//! the kernel's `/dev/tpmrm0` flushes them on the cart, and the test does
//! the same (`tpm2_flushcontext -t`) after every kill.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backend_emulator::{CertStatus, Emulator};
use cart_app::provision::{self, rotation};
use hal::identity::DeviceIdentity;
use hal::identity::tpm::Tpm;
use mqtt_harness::Broker;
use rand::Rng;
use store_and_forward::Timestamp;
use support::*;
use swtpm_harness::Swtpm;

const TOKEN_LIFETIME: Duration = Duration::from_secs(4);
const DATA_KEY: u32 = 0x8100_0102;
const KEY_A: u32 = 0x8100_0100;
const KEY_B: u32 = 0x8100_0101;

#[derive(Debug, PartialEq)]
enum Outcome {
    Killed,
    Done(String),
}

struct Cart {
    id: String,
    dir: CartDir,
    config_file: PathBuf,
    swtpm: Swtpm,
}

impl Cart {
    fn new(broker: &Broker, id: &str) -> Cart {
        let dir = CartDir::new(broker);
        let swtpm = Swtpm::start();
        let config_file = dir.path().join("child.json");
        let json = serde_json::json!({
            "cart_id": id,
            "tcti": swtpm.tcti(),
            "ledger": dir.ledger_path(),
            "link": link(broker, id),
            "provisioning": dir.config,
            "wifi_qr": WIFI_QR,
        });
        std::fs::write(&config_file, serde_json::to_vec(&json).unwrap()).unwrap();
        Cart {
            id: id.into(),
            dir,
            config_file,
            swtpm,
        }
    }

    fn run(&self, mode: &str, failpoint: Option<&str>, kill_after: Option<Duration>) -> Outcome {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision-crash-child"));
        cmd.arg(&self.config_file)
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(name) = failpoint {
            cmd.env("CART_FAILPOINT", name);
        }
        let mut child = cmd.spawn().expect("spawn the crash child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let mut stderr = child.stderr.take().unwrap();
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let started = Instant::now();
        if let Some(d) = kill_after {
            std::thread::sleep(d);
            let _ = child.kill();
        }
        // Hang guard only.
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if started.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                panic!("crash child hung (failpoint {failpoint:?})");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let lines = reader.join().unwrap();
        let errs = errs.join().unwrap();
        if status.signal() == Some(9) {
            // The cart's /dev/tpmrm0 flushes a dead process's handles.
            self.swtpm.flush_dead_process_handles();
            return Outcome::Killed;
        }
        assert!(status.success(), "crash child failed ({status}): {errs}");
        let done = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix("PROVISIONED ")
                    .or_else(|| l.strip_prefix("ROTATED "))
            })
            .unwrap_or_else(|| panic!("child ended without a result: {lines:?} {errs}"));
        Outcome::Done(done.to_owned())
    }

    /// What the kernel's resource manager does when a client dies.
    fn flush_transients(&self) {
        self.swtpm.tpm2("tpm2_flushcontext", &["-t"]);
    }

    fn persistent_handles(&self) -> BTreeSet<u32> {
        self.swtpm
            .tpm2("tpm2_getcap", &["handles-persistent"])
            .lines()
            .filter_map(|l| {
                let h = l.trim().trim_start_matches("- ").trim_start_matches("0x");
                u32::from_str_radix(h, 16).ok()
            })
            .collect()
    }

    fn states(&self) -> BTreeMap<String, String> {
        let path = self.dir.ledger_path();
        if !path.exists() {
            return BTreeMap::new();
        }
        let mut v = store_and_forward::ledger::read_only_states(&path, "provision.").unwrap();
        v.extend(store_and_forward::ledger::read_only_states(&path, "identity.").unwrap());
        v.extend(store_and_forward::ledger::read_only_states(&path, "rotation.").unwrap());
        v
    }

    /// After a kill during provisioning: only the first key handle and the
    /// data key may exist.
    fn check_provisioning_kill(&self) {
        self.flush_transients();
        let h = self.persistent_handles();
        assert!(
            h.is_subset(&[KEY_A, DATA_KEY].into()),
            "orphan persistent handle: {h:x?}"
        );
        // The ledger stays readable.
        let _ = self.states();
    }

    /// The pair the daemon would load now (after `rotation::recover`), used
    /// for a real mutual-TLS session.
    fn check_working_pair(&self, broker: &Broker, rt: &tokio::runtime::Runtime) {
        self.flush_transients();
        let st = self.states();
        let active = st
            .get("identity.active_handle")
            .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(KEY_A);
        let next_file = self.dir.config.next_certificate();
        let cert = if st.get("rotation.state").map(String::as_str) == Some("switched")
            && next_file.exists()
        {
            next_file
        } else {
            self.dir.config.certificate.clone()
        };
        let h = self.persistent_handles();
        assert!(
            h.contains(&active),
            "the active key {active:#x} is gone: {h:x?}"
        );
        assert!(
            h.is_subset(&[KEY_A, KEY_B, DATA_KEY].into()),
            "unexpected handle: {h:x?}"
        );
        let tpm = Tpm::open(&self.swtpm.tcti()).unwrap();
        let identity: std::sync::Arc<dyn DeviceIdentity> =
            std::sync::Arc::new(tpm.existing_identity(active).unwrap().unwrap());
        rt.block_on(mutual_tls_session(broker, &self.id, identity, &cert))
            .unwrap_or_else(|e| panic!("no working certificate after a kill ({st:?}): {e}"));
        drop(tpm);
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Tally {
    kills: u32,
    at_failpoint: BTreeMap<String, u32>,
    random: u32,
}

/// Runs `mode` to the end with no kill; returns its result and how long it took.
fn uninterrupted(cart: &Cart, mode: &str) -> (String, Duration) {
    let t = Instant::now();
    match cart.run(mode, None, None) {
        Outcome::Done(id) => (id, t.elapsed()),
        Outcome::Killed => panic!("killed without a failpoint"),
    }
}

/// The pipeline's failpoints a wired cart reaches: the network step's are
/// crossed in the QEMU suite's guest, which has NetworkManager and a radio
/// (its first boot is killed in the middle of joining and resumes).
fn wired_failpoints() -> impl Iterator<Item = &'static &'static str> {
    provision::FAILPOINTS
        .iter()
        .filter(|fp| !fp.starts_with("provision.network."))
}

/// Provisions a cart killing it at every failpoint in order; returns its
/// certificate id.
fn provisioning_at_failpoints(cart: &Cart, expire_a_token: bool, tally: &mut Tally) -> String {
    for fp in wired_failpoints() {
        match cart.run("provision", Some(fp), None) {
            Outcome::Killed => {
                tally.kills += 1;
                *tally.at_failpoint.entry(fp.to_string()).or_default() += 1;
                if expire_a_token && *fp == "provision.register.pending_recorded" {
                    // Resume only after the ownership token expired: the
                    // issued certificate can never be registered.
                    std::thread::sleep(TOKEN_LIFETIME + Duration::from_secs(1));
                }
            }
            Outcome::Done(id) => return id,
        }
        cart.check_provisioning_kill();
    }
    uninterrupted(cart, "provision").0
}

/// Kills `mode` at random moments until a run ends: in `[0, 1.5 *
/// typical)` first, the window growing by a quarter after every kill (a
/// resumed run spends most of a short window starting up).
fn at_random_moments(
    cart: &Cart,
    mode: &str,
    typical: Duration,
    tally: &mut Tally,
    after_kill: impl Fn(&Cart),
) -> String {
    let mut rng = rand::rng();
    let mut max = typical.as_micros() as u64 * 3 / 2 + 1;
    loop {
        let after = Duration::from_micros(rng.random_range(0..max));
        max += max / 4;
        match cart.run(mode, None, Some(after)) {
            Outcome::Killed => {
                tally.kills += 1;
                tally.random += 1;
                after_kill(cart);
            }
            Outcome::Done(id) => return id,
        }
    }
}

/// Everything a provisioned cart must be.
fn check_provisioned(
    cart: &Cart,
    id: &str,
    em: &Emulator,
    broker: &Broker,
    rt: &tokio::runtime::Runtime,
    expect_orphan: bool,
) {
    // A run after the end changes nothing.
    assert_eq!(
        cart.run("provision", None, None),
        Outcome::Done(id.to_owned())
    );
    let status = provision::read_only_status(&cart.dir.ledger_path(), Timestamp::now()).unwrap();
    assert!(status.provisioned, "{status:?}");
    assert_eq!(status.certificate_id.as_deref(), Some(id));
    let fleet = em.fleet().unwrap();
    // The emulator acts on provisioning_complete after its PUBACK.
    let certs = wait_for("the orphans' deletion", || {
        let c = fleet.certificates(&cart.id);
        (!c.iter().any(|c| c.status == CertStatus::PendingActivation)).then_some(c)
    });
    let active: Vec<_> = certs
        .iter()
        .filter(|c| c.status == CertStatus::Active)
        .collect();
    assert_eq!(
        active.len(),
        1,
        "exactly one active certificate: {certs:#?}"
    );
    assert_eq!(active[0].id, id);
    for c in &certs {
        assert!(
            c.status == CertStatus::Active || c.status == CertStatus::Deleted,
            "{c:?}"
        );
    }
    for orphan in &status.orphans {
        let c = certs
            .iter()
            .find(|c| &c.id == orphan)
            .expect("reported orphan exists");
        assert!(
            c.reported_orphan && c.status == CertStatus::Deleted,
            "{c:?}"
        );
    }
    if expect_orphan {
        assert!(
            !status.orphans.is_empty(),
            "the expired certificate was not reported"
        );
    }
    eprintln!(
        "{}: {} certificates issued, {} reported as orphans by id, {} deleted",
        cart.id,
        certs.len(),
        status.orphans.len(),
        certs
            .iter()
            .filter(|c| c.status == CertStatus::Deleted)
            .count()
    );
    // TPM: the device key and the data key, nothing else.
    cart.flush_transients();
    assert_eq!(cart.persistent_handles(), [KEY_A, DATA_KEY].into());
    // Claim gone.
    assert!(!cart.dir.config.claim_cert.exists() && !cart.dir.config.claim_key.exists());
    // Mutual TLS with the issued certificate and the TPM key.
    cart.check_working_pair(broker, rt);
}

/// Rotates a provisioned cart killing it at every rotation failpoint.
fn rotation_at_failpoints(
    cart: &Cart,
    mode: &str,
    broker: &Broker,
    rt: &tokio::runtime::Runtime,
    tally: &mut Tally,
) -> String {
    for fp in rotation::FAILPOINTS {
        match cart.run(mode, Some(fp), None) {
            Outcome::Killed => {
                tally.kills += 1;
                *tally.at_failpoint.entry(fp.to_string()).or_default() += 1;
            }
            Outcome::Done(id) => return id,
        }
        cart.check_working_pair(broker, rt);
    }
    uninterrupted(cart, mode).0
}

/// Everything a rotated cart must be.
fn check_rotated(
    cart: &Cart,
    old_id: &str,
    id: &str,
    em: &Emulator,
    broker: &Broker,
    rt: &tokio::runtime::Runtime,
) {
    assert_ne!(id, old_id);
    let fleet = em.fleet().unwrap();
    let certs = wait_for("the old certificate's deactivation", || {
        let c = fleet.certificates(&cart.id);
        c.iter()
            .any(|c| c.id == old_id && c.status == CertStatus::Inactive)
            .then_some(c)
    });
    let active: Vec<_> = certs
        .iter()
        .filter(|c| c.status == CertStatus::Active)
        .collect();
    assert_eq!(
        active.len(),
        1,
        "exactly one active certificate: {certs:#?}"
    );
    assert_eq!(active[0].id, id);
    assert!(
        !certs
            .iter()
            .any(|c| c.status == CertStatus::PendingActivation)
    );
    let st = cart.states();
    assert_eq!(st.get("rotation.state").map(String::as_str), Some("done"));
    let active_handle = st["identity.active_handle"].clone();
    cart.flush_transients();
    let h = cart.persistent_handles();
    assert_eq!(h.len(), 2, "one device key and the data key: {h:x?}");
    assert!(h.contains(&DATA_KEY));
    assert!(h.contains(&u32::from_str_radix(active_handle.trim_start_matches("0x"), 16).unwrap()));
    assert!(!cart.dir.config.next_certificate().exists());
    // The new key was made inside the TPM, as the first one.
    let public = cart.swtpm.tpm2("tpm2_readpublic", &["-c", &active_handle]);
    for attr in [
        "fixedtpm",
        "fixedparent",
        "sensitivedataorigin",
        "noda",
        "sign",
    ] {
        assert!(public.contains(attr), "{attr} missing: {public}");
    }
    cart.check_working_pair(broker, rt);
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn killed_at_every_step_provisioning_and_rotation_end_with_one_working_certificate() {
    let rounds = env_u32("PROVISION_CRASH_ROUNDS", 2);
    let random_kills = env_u32("PROVISION_CRASH_RANDOM", 24);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = Broker::start();
    let em = rt.block_on(emulator(&broker, TOKEN_LIFETIME));
    let mut tally = Tally {
        kills: 0,
        at_failpoint: BTreeMap::new(),
        random: 0,
    };

    // How long an uninterrupted provisioning and rotation take here
    // (scales the random kill moments; no timing is asserted).
    let cal = Cart::new(&broker, "cart-crash-cal");
    let (id, t_provision) = uninterrupted(&cal, "provision");
    check_provisioned(&cal, &id, &em, &broker, &rt, false);
    let (rotated, t_rotate) = uninterrupted(&cal, "rotate:rot-cal");
    check_rotated(&cal, &id, &rotated, &em, &broker, &rt);
    eprintln!("uninterrupted child runs: provisioning {t_provision:?}, rotation {t_rotate:?}");

    // Every failpoint, in order, on fresh carts.
    let mut first = None;
    for r in 0..rounds {
        let cart = Cart::new(&broker, &format!("cart-crash-{r}"));
        let expire = r % 2 == 1;
        let id = provisioning_at_failpoints(&cart, expire, &mut tally);
        check_provisioned(&cart, &id, &em, &broker, &rt, expire);
        first.get_or_insert((cart, id));
    }
    let (cart, id) = first.expect("at least one round");
    let mode = "rotate:rot-crash-0";
    let rotated = rotation_at_failpoints(&cart, mode, &broker, &rt, &mut tally);
    check_rotated(&cart, &id, &rotated, &em, &broker, &rt);
    // Asked again for the same request: nothing to do.
    assert_eq!(cart.run(mode, None, None), Outcome::Done(rotated));

    // Random moments: carts killed until they finish, until enough kills.
    let target = tally.random + random_kills;
    let mut n = 0;
    while tally.random < target {
        let cart = Cart::new(&broker, &format!("cart-random-{n}"));
        n += 1;
        let id = at_random_moments(&cart, "provision", t_provision, &mut tally, |c| {
            c.check_provisioning_kill()
        });
        check_provisioned(&cart, &id, &em, &broker, &rt, false);
        let mode = format!("rotate:rot-random-{n}");
        let rotated = at_random_moments(&cart, &mode, t_rotate, &mut tally, |c| {
            c.check_working_pair(&broker, &rt)
        });
        check_rotated(&cart, &id, &rotated, &em, &broker, &rt);
    }
    eprintln!(
        "{} kills ({} at failpoints, {} at random moments, {n} carts); per failpoint: {:?}",
        tally.kills,
        tally.kills - tally.random,
        tally.random,
        tally.at_failpoint
    );
    for fp in wired_failpoints().chain(rotation::FAILPOINTS) {
        assert!(
            tally.at_failpoint.contains_key(*fp),
            "failpoint {fp} was never reached"
        );
    }
    assert!(tally.kills >= 50, "only {} kills", tally.kills);
    rt.block_on(em.shutdown());
}
