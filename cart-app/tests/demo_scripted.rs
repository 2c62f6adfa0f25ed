//! The scripted demo (`cart-app demo`) as a person runs it: the binary, a
//! local mosquitto, the backend emulator and the simulators. It must end
//! with success, and it fails when any outcome is not the one the script
//! expects (online approval, offline approval, a refusal before the card
//! over the offline limit, a badge not on the staff list refused, an age
//! check by a badge on it then offline approval, the queue
//! drained when the link returns).

use std::process::Command;

#[test]
fn the_scripted_demo_runs_to_its_expected_outcomes() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_cart-app"))
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run cart-app demo (needs mosquitto: scripts/setup.sh installs it)");
    let transcript = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the demo failed ({}):\n{transcript}\n{errors}",
        out.status
    );
    for line in [
        "1. Online payment",
        "=> refused before the card was read",
        "4. An age-restricted item",
        "staff list version 1",
        "=> refused before the card was read: the badge is not on the staff list",
        "forwarded and confirmed by the backend",
    ] {
        assert!(transcript.contains(line), "{line:?} missing:\n{transcript}");
    }
    assert!(!transcript.contains("demo script failed"), "{transcript}");
}
