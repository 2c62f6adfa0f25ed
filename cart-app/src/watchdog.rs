//! The systemd watchdog, fed only by progress: each part of the daemon
//! that must keep working (the UI thread, the session loop, the ledger)
//! beats its own heart; the watchdog is petted only when every heart beat
//! since the last pet. A bare timer would keep a hung daemon alive.
//!
//! The notifications themselves go through `sd-notify` (`READY=1`,
//! `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`, `RELOADING=1`); outside
//! systemd they are no-ops. They are sent by one `sd-notify` thread from a
//! small queue: a notify socket nobody reads (a unix datagram socket holds
//! only a few messages) must never block the daemon's runtime; when the
//! queue is full a notification is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
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

/// One notification for the sender thread.
enum Note {
    Ready(String),
    Status(String),
    Watchdog,
    Stopping,
    Reloading,
}

/// Queues a notification; dropped when systemd is absent or the queue is
/// full.
fn post(note: Note) {
    static SENDER: OnceLock<Option<SyncSender<Note>>> = OnceLock::new();
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let sender = SENDER.get_or_init(|| {
        let (tx, rx) = sync_channel::<Note>(32);
        std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for note in rx {
                    let _ = match &note {
                        Note::Ready(s) => sd_notify::notify(&[
                            sd_notify::NotifyState::Ready,
                            sd_notify::NotifyState::Status(s),
                        ]),
                        Note::Status(s) => sd_notify::notify(&[sd_notify::NotifyState::Status(s)]),
                        Note::Watchdog => sd_notify::notify(&[sd_notify::NotifyState::Watchdog]),
                        Note::Stopping => sd_notify::notify(&[sd_notify::NotifyState::Stopping]),
                        Note::Reloading => sd_notify::notify(&[sd_notify::NotifyState::Reloading]),
                    };
                }
            })
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = sender {
        let _ = tx.try_send(note);
    }
}

/// Tells systemd the daemon is ready, with a status line.
pub fn notify_ready(status: &str) {
    post(Note::Ready(status.to_owned()));
}

/// Updates the status line systemd shows (`systemctl status`).
pub fn notify_status(status: &str) {
    post(Note::Status(status.to_owned()));
}

/// Pets the watchdog.
pub fn notify_watchdog() {
    post(Note::Watchdog);
}

/// Tells systemd the daemon is stopping.
pub fn notify_stopping() {
    post(Note::Stopping);
}

/// Tells systemd the daemon reloads its configuration (`READY=1` follows).
pub fn notify_reloading() {
    post(Note::Reloading);
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
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(msg.contains("READY=1"), "{msg}");
        assert!(msg.contains("STATUS=ledger open, link down"), "{msg}");
    }
}
