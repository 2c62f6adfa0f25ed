//! A panic on any of the demo's threads stops the demo loudly: the panic's
//! message, a line saying the demo stops, a failed exit, and no folder left
//! behind (a panicked session thread used to leave a frozen window and a
//! demo that never ended).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_panicking_session_thread_stops_the_demo_with_a_failure() {
    let tmp = tempfile::tempdir().expect("dir");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cart-app"))
        .arg("demo")
        .env("TMPDIR", tmp.path())
        // The session thread panics at the first scan.
        .env("CART_FAILPOINT", "session.scan")
        .output()
        .expect("run cart-app demo (needs mosquitto: scripts/setup.sh installs it)");
    let transcript = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a panic must fail the demo:\n{transcript}\n{errors}"
    );
    assert!(
        errors.contains("failpoint session.scan: a panic on purpose"),
        "the panic's message is shown:\n{errors}"
    );
    assert!(
        errors.contains("stopping the demo"),
        "and what happens next:\n{errors}"
    );
    assert!(
        errors.contains("a thread of the demo panicked"),
        "the exit says why:\n{errors}"
    );
    // It stopped at the panic, not at the end of the script's waits (a
    // hang guard, far above the few seconds it takes).
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the run folder is removed: {left:?}");
}
