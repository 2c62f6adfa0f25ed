//! Test harness: a real swtpm (Debian packages `swtpm`, `swtpm-tools`) on
//! ephemeral loopback ports, with its state in a temporary folder.
//!
//! - [`Swtpm::start`]: a fresh TPM 2.0 (already started up: `startup-clear`).
//! - [`Swtpm::tcti`]: the TCTI string for tss-esapi and tpm2-tools
//!   (`swtpm:host=127.0.0.1,port=P`).
//! - [`Swtpm::restart`]: stop and start again on the same ports with the
//!   same state folder (persistent keys and NV indices survive, as on a
//!   power cycle).
//! - [`Swtpm::stop`]; dropping the harness kills swtpm and removes its state.
//!
//! - [`TpmProxy`]: a TCP proxy in front of swtpm that records the TPM
//!   command stream, as a bus interposer would see it.
//!
//! A missing swtpm makes the test fail with what to install: never a skip.
//!
//! # Layout
//! - `lib.rs`: [`Swtpm`].
//! - `proxy.rs`: [`TpmProxy`].
#![deny(missing_docs)]

mod proxy;

pub use proxy::TpmProxy;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const MISSING: &str =
    "swtpm not found: install the Debian packages swtpm and swtpm-tools (scripts/setup.sh does)";

/// How long swtpm may take to listen (it takes ~0.06 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running swtpm; dropped, it is killed and its state removed.
pub struct Swtpm {
    state: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for Swtpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swtpm").field("port", &self.port).finish()
    }
}

fn swtpm_binary() -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("swtpm");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    for fixed in ["/usr/bin/swtpm", "/usr/local/bin/swtpm"] {
        if Path::new(fixed).exists() {
            return PathBuf::from(fixed);
        }
    }
    panic!("{MISSING}");
}

/// Two consecutive free loopback ports (server P, control P+1).
pub(crate) fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let p = l.local_addr().expect("local addr").port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free loopback ports");
}

impl Swtpm {
    /// Starts a fresh swtpm with an empty state folder.
    pub fn start() -> Swtpm {
        let binary = swtpm_binary();
        let state = tempfile::tempdir().expect("temp dir for the TPM state");
        let mut tpm = Swtpm {
            state,
            port: 0,
            child: Mutex::new(None),
        };
        // A probed port can be taken before swtpm binds it: try a few.
        for _ in 0..5 {
            tpm.port = free_port_pair();
            if tpm.spawn(&binary) {
                return tpm;
            }
        }
        panic!("swtpm did not start (5 attempts)");
    }

    fn spawn(&self, binary: &Path) -> bool {
        let state = format!("dir={}", self.state.path().display());
        let child = Command::new(binary)
            .args(["socket", "--tpm2", "--server"])
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!(
                "type=tcp,port={},bindaddr=127.0.0.1",
                self.port + 1
            ))
            .args(["--flags", "not-need-init,startup-clear", "--tpmstate"])
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
            Err(e) => panic!("cannot start swtpm: {e}"),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: port taken, most likely
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                *self.lock() = Some(child);
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        match self.child.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The TCTI string for tss-esapi (`TctiNameConf::from_str`) and for
    /// tpm2-tools (`TPM2TOOLS_TCTI`).
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM's command port on 127.0.0.1 (the control port is one above).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state folder (it survives [`Swtpm::restart`]).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Kills swtpm (its state folder is kept), as a power cut would.
    pub fn stop(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts swtpm on the same ports with the same state.
    pub fn restart(&self) {
        self.stop();
        let binary = swtpm_binary();
        // The old process released the port on exit; retry in case the
        // kernel still holds it briefly.
        for _ in 0..50 {
            if self.spawn(&binary) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("swtpm did not restart on port {}", self.port);
    }

    /// Freezes swtpm (SIGSTOP): it keeps its connections and answers
    /// nothing, as a hung TPM or resource manager does, until [`Swtpm::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen swtpm go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .lock()
            .as_ref()
            .map(|c| c.id())
            .expect("swtpm is not running");
        let status = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("kill(1) (procps)");
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Whether swtpm is running.
    pub fn is_running(&self) -> bool {
        matches!(self.lock().as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// What the kernel's resource manager (`/dev/tpmrm0`, which the cart
    /// uses) does when a process dies: flushes the transient objects and
    /// the sessions it left loaded. A test that kills a process talking to
    /// this TPM directly (no resource manager) calls it after the kill,
    /// or the TPM runs out of session and object slots.
    pub fn flush_dead_process_handles(&self) {
        self.tpm2("tpm2_flushcontext", &["--transient-object"]);
        self.tpm2("tpm2_flushcontext", &["--loaded-session"]);
    }

    /// Runs a tpm2-tools command against this TPM; returns stdout, panics
    /// with stderr on failure (or with what to install when missing).
    pub fn tpm2(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "{tool} not found: install the Debian package tpm2-tools (scripts/setup.sh does)"
                )
            }
            Err(e) => panic!("cannot run {tool}: {e}"),
        };
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_restarts_and_stops() {
        let tpm = Swtpm::start();
        assert!(tpm.is_running());
        assert!(tpm.tcti().starts_with("swtpm:host=127.0.0.1,port="));
        tpm.restart();
        assert!(tpm.is_running());
        let random = tpm.tpm2("tpm2_getrandom", &["--hex", "8"]);
        assert_eq!(random.trim().len(), 16, "{random}");
        tpm.stop();
        assert!(!tpm.is_running());
        assert!(TcpStream::connect(("127.0.0.1", tpm.port())).is_err());
    }
}
