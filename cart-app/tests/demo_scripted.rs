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
    // The demo makes its own folder under TMPDIR and removes it at the end.
    let tmp = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_cart-app"))
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run cart-app demo (needs mosquitto: scripts/setup.sh installs it)");
    let transcript = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the demo failed ({}):\n{transcript}\n{errors}",
        out.status
    );
    let dir = transcript
        .lines()
        .find_map(|l| l.strip_prefix("Run folder: "))
        .and_then(|l| l.split(" (").next())
        .unwrap_or_else(|| panic!("the run folder is printed first:\n{transcript}"))
        .to_owned();
    assert!(
        dir.starts_with(&tmp.path().display().to_string()),
        "{dir} under TMPDIR"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the run folder is removed on exit: {left:?}"
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
    // Nothing else on the terminal: no developer warnings, no third-party
    // noise (RUST_LOG=warn shows them).
    assert!(
        errors.trim().is_empty(),
        "the demo printed on stderr:\n{errors}"
    );
    // The transcript as a person reads it, held by a golden file: the run's
    // folder and the counts that vary between runs (telemetry, messages)
    // masked. `UPDATE_GOLDEN=1` rewrites it after an intended change.
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo-transcript.txt");
    let got = normalize(&transcript, &dir);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("tests/golden/demo-transcript.txt");
    assert_eq!(
        got, want,
        "the transcript changed (UPDATE_GOLDEN=1 rewrites the golden file)"
    );
}

/// The run's folder as `<DIR>`; digits masked on the lines whose counts
/// depend on timing (telemetry readings, message counts).
fn normalize(transcript: &str, dir: &str) -> String {
    let varying = ["waiting to be sent", "uplink:", "telemetry events"];
    transcript
        .lines()
        .map(|l| {
            let l = l.replace(dir, "<DIR>");
            if varying.iter().any(|v| l.contains(v)) {
                l.chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect()
            } else {
                l
            }
        })
        .map(|l| l + "\n")
        .collect()
}
