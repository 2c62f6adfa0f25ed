//! The daemon as a child process in the demo's world (mosquitto, the
//! backend emulator, the reader simulator, a scanner on a pseudo-terminal):
//! the tests that run `cart-app run` as systemd would share it.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cart_app::demo::rig::{self, RigOptions};
use hal::scanner::sim::{SimConfig as ScanSim, write_scan};

use super::Daemon;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub world: Option<rig::Rig>,
    pub scanner: std::fs::File,
    pub notify: UnixDatagram,
    pub config: PathBuf,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let world = rig::Rig::start(&RigOptions {
            dir: dir.path().to_path_buf(),
            fixtures: cart_app::demo::default_fixtures(),
            ui_backend: "headless",
        })
        .expect("start mosquitto, the emulator and the simulators");
        let notify = UnixDatagram::bind(dir.path().join("notify.sock")).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Rig {
            scanner: world.scanner_writer().unwrap(),
            config: world.config_path.clone(),
            world: Some(world),
            notify,
            dir,
        }
    }

    /// Starts the daemon as systemd would (notify socket, 2 s watchdog),
    /// logging text to a buffer the test reads.
    pub fn start(&self) -> (Daemon, Arc<Mutex<String>>) {
        self.start_with(&[])
    }

    /// [`Rig::start`] with more environment (a failpoint).
    pub fn start_with(&self, env: &[(&str, &str)]) -> (Daemon, Arc<Mutex<String>>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cart-app"))
            .args(["run", "--config"])
            .arg(&self.config)
            .envs(env.iter().copied())
            .env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"))
            .env("WATCHDOG_USEC", "2000000")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start cart-app run");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        (Daemon(child), log)
    }

    /// Notify messages until `pred` matches one (or the time runs out).
    pub fn wait_notify(
        &self,
        seen: &mut Vec<String>,
        pred: impl Fn(&str) -> bool,
        secs: u64,
    ) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = pred(&msg);
                seen.push(msg);
                if hit {
                    return true;
                }
            }
        }
        false
    }

    pub fn cartctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_cartctl"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run cartctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, out, err) = self.cartctl(&["status", "--json"]);
        assert_eq!(code, 0, "cartctl status: {err}");
        serde_json::from_str(&out).unwrap()
    }

    pub fn scan(&mut self, code: &str) {
        write_scan(&mut self.scanner, code.as_bytes(), &ScanSim::default()).unwrap();
    }

    pub fn tap(&self, event: &str) {
        let mut reply = String::new();
        let mut s =
            std::os::unix::net::UnixStream::connect(self.dir.path().join("control.sock")).unwrap();
        use std::io::Write;
        writeln!(s, "{{\"cmd\":\"demo_tap\",\"event\":\"{event}\"}}").unwrap();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.contains("\"ok\""), "{reply}");
    }

    /// Scans `code` and pays with a card the backend approves.
    pub fn pay_online(&mut self, code: &str) {
        self.scan(code);
        std::thread::sleep(Duration::from_millis(500));
        self.card("chip-approve");
        self.tap("pay");
    }

    pub fn card(&self, name: &str) {
        self.world.as_ref().unwrap().reader.queue_card(name);
    }
}
