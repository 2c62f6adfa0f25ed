//! Checkouts first at the ledger's lock.
//!
//! The ledger sits behind one `std::sync::Mutex`, which is not fair: a
//! background task (the drain marking a window delivered part by part,
//! maintenance step by step) that unlocks and locks again at once gets the
//! lock back before a woken checkout runs, so the checkout waited for
//! several holds in a row. [`CheckoutFirst`] fixes the order without a
//! different lock: a checkout says it is waiting, and background work
//! about to take the lock lets it go first. A checkout then waits for at
//! most the one background hold under way when it came (a bounded part:
//! about a millisecond).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Ledger;

/// How long background work stands aside at most before it takes the lock
/// anyway (a checkout holds it for a few milliseconds; this only bounds a
/// steady stream of them).
const STAND_ASIDE_AT_MOST: Duration = Duration::from_millis(50);
/// The pause between looks while a checkout is waiting.
const LOOK_EVERY: Duration = Duration::from_micros(50);

/// Who goes first at a ledger's lock. One per ledger, shared by clones
/// ([`Ledger::checkout_first`]).
#[derive(Debug, Clone, Default)]
pub struct CheckoutFirst {
    /// Checkouts waiting for the lock now.
    waiting: Arc<AtomicUsize>,
}

impl CheckoutFirst {
    /// Takes the lock for a checkout (the attempt, the decision): ahead of
    /// any background work that has not got it yet.
    pub fn lock_checkout<'a, T>(&self, lock: &'a Mutex<T>) -> MutexGuard<'a, T> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Takes the lock for background work (telemetry, the drain,
    /// maintenance): after any checkout waiting for it.
    pub fn lock_background<'a, T>(&self, lock: &'a Mutex<T>) -> MutexGuard<'a, T> {
        self.lock_background_within(lock, STAND_ASIDE_AT_MOST)
    }

    fn lock_background_within<'a, T>(
        &self,
        lock: &'a Mutex<T>,
        at_most: Duration,
    ) -> MutexGuard<'a, T> {
        let start = Instant::now();
        while self.waiting.load(Ordering::SeqCst) > 0 && start.elapsed() < at_most {
            std::thread::sleep(LOOK_EVERY);
        }
        lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ledger {
    /// The order at this ledger's lock (see [`CheckoutFirst`]).
    pub fn checkout_first(&self) -> CheckoutFirst {
        self.checkout_first.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: impl Fn() -> bool) {
        while !what() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn background_work_that_unlocks_and_locks_again_lets_a_waiting_checkout_in_between() {
        let first = CheckoutFirst::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (holding_tx, holding_rx) = std::sync::mpsc::channel();
        // Background work in parts: hold, release, take the lock again at
        // once (a std Mutex would hand it straight back to this thread).
        let background = {
            let (first, order) = (first.clone(), order.clone());
            std::thread::spawn(move || {
                let mut part = first.lock_background(&order);
                part.push("background part 1");
                holding_tx.send(()).unwrap();
                wait_until(|| first.waiting.load(Ordering::SeqCst) == 1);
                // Past its spinning: the checkout sleeps on the lock.
                std::thread::sleep(Duration::from_millis(20));
                drop(part);
                first
                    .lock_background_within(&order, Duration::from_secs(600))
                    .push("background part 2");
            })
        };
        holding_rx.recv().unwrap();
        first.lock_checkout(&order).push("checkout");
        background.join().unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["background part 1", "checkout", "background part 2"]
        );
    }

    #[test]
    fn background_work_stands_aside_for_a_bounded_time_only() {
        let first = CheckoutFirst::default();
        // A checkout counted as waiting that never takes the lock.
        first.waiting.fetch_add(1, Ordering::SeqCst);
        let lock = Mutex::new(0);
        *first.lock_background_within(&lock, Duration::from_millis(5)) += 1;
        assert_eq!(*lock.lock().unwrap(), 1);
    }
}
