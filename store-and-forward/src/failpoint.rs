//! Failpoints for the crash tests: with the `failpoints` feature, the
//! process kills itself with SIGKILL at a named point when the environment
//! says so. Without the feature every call compiles to nothing.
//!
//! `CART_FAILPOINT=<name>` arms one point; `CART_FAILPOINT_SKIP=<n>` lets
//! it pass `n` times first. [`panic_at`] panics instead of killing (a bug in
//! a thread).

/// Every failpoint in the ledger's decision path, in order.
pub const DECISION_PATH: &[&str] = &[
    "attempt.before_commit",
    "attempt.after_commit",
    "decision.before_commit",
    "decision.after_commit",
    "decision.before_counter_increment",
    "decision.after_counter_increment",
];

/// The downstream path: an update applied (and durable) but its ack not
/// queued; the ack queued but not sent.
pub const DOWNSTREAM_PATH: &[&str] = &["downstream.applied", "downstream.ack_queued"];

/// Kills the process here if this point is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if armed(name) {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Panics here if this point is armed: a bug in a thread, for the tests
/// that check a panic is loud and stops the process.
#[cfg(feature = "failpoints")]
pub fn panic_at(name: &str) {
    if armed(name) {
        panic!("failpoint {name}: a panic on purpose");
    }
}

/// Whether `name` is armed and its passes are used up.
#[cfg(feature = "failpoints")]
fn armed(name: &str) -> bool {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let name = std::env::var("CART_FAILPOINT").ok()?;
        let skip = std::env::var("CART_FAILPOINT_SKIP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Some((name, skip))
    });
    matches!(armed, Some((armed, skip)) if armed == name && PASSES.fetch_add(1, Ordering::SeqCst) >= *skip)
}

/// Kills the process here if this point is armed (disabled build: no-op).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Panics here if this point is armed (disabled build: no-op).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn panic_at(_name: &str) {}
