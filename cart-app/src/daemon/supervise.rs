//! Device threads that survive a panic: a panic in a decoder or a driver
//! costs the step it happened in (one scan, or one device reopen), is
//! logged with its cause, and the thread goes on. A thread that panics more
//! than [`RestartPolicy::max_restarts`] times within
//! [`RestartPolicy::window`] gives up: its loop ends, so its watchdog heart
//! stops beating and systemd restarts the whole daemon (WatchdogSec).

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use tracing::error;

/// How many panics a device thread survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; one more gives up.
    pub max_restarts: usize,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// Five in a minute: a bad label scanned again and again still sells;
    /// a driver that panics on every read does not spin for ever.
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// The panics of one thread, as a state machine (no clock of its own).
#[derive(Debug)]
pub struct Supervisor {
    policy: RestartPolicy,
    panics: VecDeque<Instant>,
}

impl Supervisor {
    /// No panics yet.
    pub fn new(policy: RestartPolicy) -> Supervisor {
        Supervisor {
            policy,
            panics: VecDeque::new(),
        }
    }

    /// Records a panic at `now`: `true` restarts the step, `false` gives up
    /// (more than `max_restarts` within `window`).
    pub fn panicked(&mut self, now: Instant) -> bool {
        while self
            .panics
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            self.panics.pop_front();
        }
        self.panics.push_back(now);
        self.panics.len() <= self.policy.max_restarts
    }
}

/// The panic's message, for the journal.
pub fn panic_cause(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `step` until it returns `false` (stop asked). A panic in a step is
/// logged (with `device` and its cause) and the next step runs, until the
/// policy gives up: then this returns `false`, `true` on a normal stop.
pub fn run(device: &'static str, policy: RestartPolicy, mut step: impl FnMut() -> bool) -> bool {
    let mut supervisor = Supervisor::new(policy);
    loop {
        // The step's state may be half-updated after a panic; every device
        // step starts from its driver's own state (a scanner reopens when
        // its port failed), which is what "restarted" means here.
        match catch_unwind(AssertUnwindSafe(&mut step)) {
            Ok(true) => {}
            Ok(false) => return true,
            Err(payload) => {
                let cause = panic_cause(payload.as_ref());
                if supervisor.panicked(Instant::now()) {
                    error!(device, %cause, "device thread panicked: restarted");
                } else {
                    error!(
                        device,
                        %cause,
                        max_restarts = policy.max_restarts,
                        window_secs = policy.window.as_secs(),
                        "device thread panicked too often: stopped (the watchdog restarts the daemon)"
                    );
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_the_limit_and_gives_up_beyond_it() {
        let policy = RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(10),
        };
        let mut s = Supervisor::new(policy);
        let t0 = Instant::now();
        assert!(s.panicked(t0));
        assert!(s.panicked(t0 + Duration::from_secs(1)));
        assert!(s.panicked(t0 + Duration::from_secs(2)));
        assert!(!s.panicked(t0 + Duration::from_secs(3)), "a fourth in 10 s");
        // Spread out, panics never add up.
        let mut s = Supervisor::new(policy);
        for i in 0..20 {
            assert!(s.panicked(t0 + Duration::from_secs(4 * i)), "{i}");
        }
    }

    #[test]
    fn a_panicking_step_is_logged_and_run_again() {
        let mut calls = 0;
        let done = run("test", RestartPolicy::default(), || {
            calls += 1;
            match calls {
                1 => panic!("bad bytes"),
                2 => std::panic::panic_any(String::from("again")),
                3 => true,
                _ => false,
            }
        });
        assert!(done, "a normal stop");
        assert_eq!(calls, 4);
    }

    #[test]
    fn too_many_panics_end_the_loop() {
        let mut calls = 0;
        let policy = RestartPolicy {
            max_restarts: 2,
            window: Duration::from_secs(3600),
        };
        let done = run("test", policy, || {
            calls += 1;
            panic!("always")
        });
        assert!(!done, "gave up");
        assert_eq!(calls, 3, "two restarts, then the third panic gives up");
    }

    #[test]
    fn causes_are_read_from_str_and_string_payloads() {
        let p = catch_unwind(|| panic!("x {}", 1)).unwrap_err();
        assert_eq!(panic_cause(p.as_ref()), "x 1");
        let p = catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_cause(p.as_ref()), "plain");
        let p = catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_cause(p.as_ref()), "a panic without a message");
    }
}

/// The scanner thread itself, with a scanner whose decoder panics.
#[cfg(test)]
mod scanner_thread_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use hal::scanner::{DeviceState, Scan, Scanner, ScannerError, StateHandle};

    use crate::daemon::threads::{Msg, spawn_scanner};
    use crate::watchdog::{Verdict, Watchdog};

    /// Panics on the reads listed, reports nothing otherwise.
    struct Panicky {
        reads: Arc<AtomicUsize>,
        panic_on: fn(usize) -> bool,
        state: StateHandle,
    }

    impl Scanner for Panicky {
        fn next_scan(&mut self, _timeout: Duration) -> Result<Option<Scan>, ScannerError> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            if (self.panic_on)(n) {
                panic!("decoder: index out of range at read {n}");
            }
            std::thread::sleep(Duration::from_millis(5));
            Ok(None)
        }
        fn state(&self) -> DeviceState {
            self.state.get()
        }
        fn state_handle(&self) -> StateHandle {
            self.state.clone()
        }
    }

    fn start(
        panic_on: fn(usize) -> bool,
    ) -> (
        Arc<AtomicUsize>,
        Arc<AtomicBool>,
        std::thread::JoinHandle<()>,
        Watchdog,
    ) {
        let reads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut dog = Watchdog::new();
        let (tx, _rx) = std::sync::mpsc::channel::<Msg>();
        let scanner = Panicky {
            reads: reads.clone(),
            panic_on,
            state: StateHandle::new(DeviceState::Connected),
        };
        let (h, _) =
            spawn_scanner(Box::new(scanner), tx, stop.clone(), dog.heart("scanner")).unwrap();
        (reads, stop, h, dog)
    }

    #[test]
    fn a_decoder_panic_costs_one_read_and_the_thread_goes_on() {
        let (reads, stop, h, mut dog) = start(|n| n == 2 || n == 5);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while reads.load(Ordering::SeqCst) < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread stopped reading"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!h.is_finished(), "still running after two panics");
        let _ = dog.check();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(dog.check(), Verdict::Pet, "its heart beats");
        stop.store(true, Ordering::SeqCst);
        h.join().unwrap();
    }

    #[test]
    fn a_thread_that_keeps_panicking_stops_its_heart() {
        let (reads, _stop, h, mut dog) = start(|_| true);
        h.join().expect("the thread ends without a panic escaping");
        assert_eq!(
            reads.load(Ordering::SeqCst),
            super::RestartPolicy::default().max_restarts + 1
        );
        let _ = dog.check();
        assert_eq!(
            dog.check(),
            Verdict::Stalled(vec!["scanner"]),
            "no beat: the watchdog will bite"
        );
    }
}
