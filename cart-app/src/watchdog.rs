//! The systemd watchdog, fed only by progress: each part of the daemon
//! that must keep working (the UI thread, the session loop, the ledger)
//! beats its own heart; the watchdog is petted only when every heart beat
//! since the last pet. A bare timer would keep a hung daemon alive.
//!
//! The notifications themselves go through `sd-notify` (`READY=1`,
//! `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`); outside systemd they are
//! no-ops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One component's heartbeat counter. Cheap to clone and to beat.
#[derive(Debug, Clone)]
pub struct Heart {
    name: &'static str,
    beats: Arc<AtomicU64>,
}

impl Heart {
    /// Records progress.
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// The component's name, for the journal.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Decides whether the watchdog may be petted.
#[derive(Debug, Default)]
pub struct Watchdog {
    hearts: Vec<(Heart, u64)>,
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every part made progress: pet the watchdog.
    Pet,
    /// These parts made no progress: do not pet (systemd restarts the
    /// daemon when the watchdog timeout passes).
    Stalled(Vec<&'static str>),
}

impl Watchdog {
    /// A watchdog with no parts yet.
    pub fn new() -> Watchdog {
        Watchdog::default()
    }

    /// Registers a part and returns its heart.
    pub fn heart(&mut self, name: &'static str) -> Heart {
        let heart = Heart {
            name,
            beats: Arc::new(AtomicU64::new(0)),
        };
        self.hearts.push((heart.clone(), 0));
        heart
    }

    /// Checks every part since the last check.
    pub fn check(&mut self) -> Verdict {
        let mut stalled = Vec::new();
        for (heart, seen) in &mut self.hearts {
            let now = heart.beats.load(Ordering::Relaxed);
            if now == *seen {
                stalled.push(heart.name);
            }
            *seen = now;
        }
        if stalled.is_empty() {
            Verdict::Pet
        } else {
            Verdict::Stalled(stalled)
        }
    }
}

/// How often to check: half the watchdog interval systemd set
/// (`WATCHDOG_USEC`), or `None` when no watchdog is configured.
pub fn check_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Tells systemd the daemon is ready, with a status line.
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Updates the status line systemd shows (`systemctl status`).
pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]);
}

/// Pets the watchdog.
pub fn notify_watchdog() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// Tells systemd the daemon is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pets_only_when_every_part_progressed() {
        let mut w = Watchdog::new();
        let ui = w.heart("ui");
        let ledger = w.heart("ledger");
        assert_eq!(w.check(), Verdict::Stalled(vec!["ui", "ledger"]));
        ui.beat();
        ledger.beat();
        assert_eq!(w.check(), Verdict::Pet);
        ui.beat();
        assert_eq!(w.check(), Verdict::Stalled(vec!["ledger"]));
        ledger.beat();
        ui.beat();
        ui.beat();
        assert_eq!(w.check(), Verdict::Pet);
    }

    #[test]
    fn notifications_outside_systemd_are_harmless() {
        // No NOTIFY_SOCKET in tests: nothing is sent, nothing fails.
        notify_ready("test");
        notify_status("test");
        notify_watchdog();
        notify_stopping();
        assert_eq!(check_interval(), None);
    }

    #[test]
    fn notifications_reach_a_notify_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // SAFETY (test): this test is the only one touching NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify_ready("ledger open, link down");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 256];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Another test may notify while the variable is set: read until ours.
        let msg = loop {
            let n = sock.recv(&mut buf).unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains("ledger open") {
                break msg;
            }
        };
        assert!(msg.contains("READY=1"), "{msg}");
        assert!(msg.contains("STATUS=ledger open, link down"), "{msg}");
    }
}
