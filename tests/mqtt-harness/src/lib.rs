//! Test harness: a real mosquitto (the Debian package) on an ephemeral
//! loopback port.
//!
//! TLS mode (the default) uses certificates made for this run ([`Pki`]):
//! `require_certificate true` and `use_identity_as_username true`, so a
//! client's certificate CN is its user name; the ACL confines each cart to
//! `carts/<CN>/#`, and the `backend` identity may read and write `carts/#`.
//! Plain mode (no TLS, anonymous, no ACL) exists only to compare costs.
//!
//! - [`Broker`]: start, stop, restart on the same port with the same
//!   certificates, the broker's log; dropping it kills the broker.
//! - [`Pki`]: the test CA, client certificates per cart, an expired one,
//!   a foreign CA.
//! - [`FaultProxy`]: a loopback TCP proxy that cuts connections or goes
//!   silent (half-open), for faults a broker restart cannot produce.
//!
//! Everything listens on 127.0.0.1 only.

mod pki;
mod proxy;

pub use pki::Pki;
pub use proxy::FaultProxy;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The identity the backend (emulator, responders in tests) connects with:
/// the ACL lets it read and write every cart's topics.
pub const BACKEND_IDENTITY: &str = "backend";

/// How clients talk to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mutual TLS with the run's CA, ACL per certificate CN.
    Tls,
    /// Plain TCP, anonymous, no ACL: only to measure what TLS costs.
    Plain,
}

/// A running mosquitto; dropped, it is killed.
pub struct Broker {
    dir: tempfile::TempDir,
    pki: Pki,
    port: u16,
    mode: Mode,
    child: Mutex<Option<Child>>,
}

const MISSING: &str =
    "mosquitto not found: install the Debian package mosquitto (scripts/setup.sh does)";

fn mosquitto_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    if sbin.exists() {
        return sbin;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("mosquitto");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    panic!("{MISSING}");
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Broker {
    /// Starts a mutual-TLS broker with a fresh PKI.
    pub fn start() -> Broker {
        Broker::start_mode(Mode::Tls)
    }

    /// Starts a plain-TCP anonymous broker (benchmarks' comparison only).
    pub fn start_plain() -> Broker {
        Broker::start_mode(Mode::Plain)
    }

    fn start_mode(mode: Mode) -> Broker {
        let binary = mosquitto_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path());
        let mut broker = Broker {
            dir,
            pki,
            port: 0,
            mode,
            child: Mutex::new(None),
        };
        // An ephemeral port can be taken by someone else between our probe
        // and mosquitto's bind: try a few.
        for _ in 0..5 {
            broker.port = free_port();
            broker.write_config();
            if broker.try_spawn(&binary, Duration::from_secs(5)) {
                return broker;
            }
        }
        panic!("mosquitto did not start; its log:\n{}", broker.log());
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// TLS or plain.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The test CA (PEM file) that signed the broker's certificate.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.pki.ca_pem_path()
    }

    /// The run's certificates, for the unusual ones (expired, foreign CA).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// A fresh client certificate with CN = `cart_id`: (cert PEM path, key PEM path).
    pub fn client_cert(&self, cart_id: &str) -> (PathBuf, PathBuf) {
        self.pki.client_cert(cart_id)
    }

    /// The broker's log so far (connections with their user names, refusals).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the broker (as a crash or a power cut would); connections drop.
    pub fn stop(&self) {
        let mut child = self.child.lock().expect("broker lock");
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port with the same certificates
    /// and ACL (a no-op when it runs).
    pub fn resume(&self) {
        if self.is_running() {
            return;
        }
        self.spawn(&mosquitto_binary());
    }

    /// Stops then starts the broker on the same port.
    pub fn restart(&self) {
        self.stop();
        self.resume();
    }

    /// The broker's process id while it runs (to sample its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        let child = self.child.lock().expect("broker lock");
        child.as_ref().map(Child::id)
    }

    /// Whether the broker process is alive.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().expect("broker lock");
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts a [`FaultProxy`] in front of this broker.
    pub fn fault_proxy(&self) -> FaultProxy {
        FaultProxy::start(self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn write_config(&self) {
        let mut conf = String::new();
        conf.push_str("per_listener_settings false\npersistence false\n");
        conf.push_str(&format!(
            "log_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n",
            self.log_path().display()
        ));
        conf.push_str(
            "set_tcp_nodelay true\nmax_inflight_messages 1000\nmax_queued_messages 100000\n",
        );
        if running_as_root() {
            // Dropping to the mosquitto user would make the private temp
            // folder's certificates unreadable.
            conf.push_str("user root\n");
        }
        conf.push_str(&format!("listener {} 127.0.0.1\n", self.port));
        match self.mode {
            Mode::Tls => {
                let acl = self.dir.path().join("acl");
                fs::write(&acl, acl_text()).expect("write ACL");
                conf.push_str(&format!(
                    "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nacl_file {}\n",
                    path(&self.pki.ca_pem_path()),
                    path(&self.pki.server_cert_path()),
                    path(&self.pki.server_key_path()),
                    path(&acl)
                ));
            }
            Mode::Plain => conf.push_str("allow_anonymous true\n"),
        }
        fs::write(self.config_path(), conf).expect("write mosquitto.conf");
    }

    /// Starts mosquitto on the configured port, retrying while the port is
    /// still held (restart); panics after 20 s.
    fn spawn(&self, binary: &Path) {
        if !self.try_spawn(binary, Duration::from_secs(20)) {
            panic!(
                "mosquitto did not start on port {}; its log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    fn try_spawn(&self, binary: &Path, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            let mut child = Command::new(binary)
                .arg("-c")
                .arg(self.config_path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
            // Ready when the port accepts; an exit means the port was not
            // free (yet) or a config error: retry until the deadline.
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    *self.child.lock().expect("broker lock") = Some(child);
                    return true;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
                thread::sleep(Duration::from_millis(10));
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The identity (certificate CN) of the fleet-provisioning claim
/// certificate: it may only use AWS IoT's certificate and provisioning
/// topics (and, as every identity, `carts/claim/#`, where no cart lives).
pub const CLAIM_IDENTITY: &str = "claim";

/// The ACL: the backend reads and writes every cart's topics and AWS IoT's
/// fleet-provisioning and Jobs topics; every identity (a cart, the claim)
/// may call the fleet-provisioning API (request topics) and read its
/// answers. Under mosquitto those answers reach every subscriber (AWS IoT
/// sends them to the requesting connection only): clients match answers by
/// content. A cart reaches the Jobs API of its own thing only
/// (`$aws/things/{cart}/jobs/#`, as AWS's example policy with
/// `${iot:Connection.Thing.ThingName}`).
fn acl_text() -> String {
    format!(
        "user {BACKEND_IDENTITY}\n\
         topic readwrite carts/#\n\
         topic readwrite $aws/certificates/#\n\
         topic readwrite $aws/provisioning-templates/#\n\
         topic readwrite $aws/things/#\n\
         \n\
         pattern readwrite carts/%u/#\n\
         pattern readwrite $aws/things/%u/jobs/#\n\
         pattern write $aws/certificates/create-from-csr/json\n\
         pattern read $aws/certificates/create-from-csr/json/accepted\n\
         pattern read $aws/certificates/create-from-csr/json/rejected\n\
         pattern write $aws/provisioning-templates/+/provision/json\n\
         pattern read $aws/provisioning-templates/+/provision/json/accepted\n\
         pattern read $aws/provisioning-templates/+/provision/json/rejected\n"
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
