//! A TPM that stops answering (swtpm frozen with SIGSTOP: connections open,
//! no answers, as a hung TPM or resource manager) gives callers a typed
//! timeout within the configured bound instead of blocking them for ever:
//! a TLS handshake or a checkout waiting on the TPM fails and goes on. The
//! commands already sent still run when the TPM comes back (their answers
//! are dropped), and the TPM is usable again.

use std::time::{Duration, Instant};

use hal::identity::tpm::{COUNTER_NV_INDEX, DEVICE_KEY_HANDLE, Tpm, TpmTimeouts};
use hal::identity::{DeviceIdentity, IdentityError};
use swtpm_harness::Swtpm;

#[test]
fn a_hung_tpm_times_out_and_recovers() {
    let sim = Swtpm::start();
    let command = Duration::from_millis(400);
    let tpm = Tpm::open(&sim.tcti())
        .expect("open")
        .with_timeouts(TpmTimeouts {
            command,
            create: Duration::from_secs(60),
        });
    let key = tpm.identity(DEVICE_KEY_HANDLE).expect("device key");
    let counter = tpm.counter(COUNTER_NV_INDEX).expect("counter");
    key.sign_digest(&[7; 32])
        .expect("sign while the TPM answers");
    let before = counter.read().expect("read");

    sim.freeze();
    let t = Instant::now();
    let err = key.sign_digest(&[8; 32]).expect_err("no answer");
    assert!(
        matches!(
            err,
            IdentityError::TpmTimeout {
                op: "sign",
                after_ms: 400
            }
        ),
        "{err:?}"
    );
    assert!(
        t.elapsed() >= command,
        "waited the bound: {:?}",
        t.elapsed()
    );
    // A hang guard, not a timing check: far above the bound.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let err = counter.increment().expect_err("no answer");
    assert!(
        matches!(
            err,
            IdentityError::TpmTimeout {
                op: "increment the counter",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no answer within 400 ms"), "{err}");

    sim.thaw();
    // The queued commands run first (the timed-out sign and increment),
    // then ours.
    let sig = key.sign_message(b"back").expect("the TPM answers again");
    assert!(hal::identity::verify_message(
        key.public_key_sec1(),
        b"back",
        &sig
    ));
    assert_eq!(
        counter.read().expect("read"),
        before + 1,
        "the increment that timed out still happened once (the ledger repairs a counter that is ahead)"
    );
}
