//! TPM command latency on swtpm through the owner thread: a device-key
//! signature (every TLS handshake with client authentication, every signed
//! receipt), the data key's unseal (every daemon start), an NV counter
//! increment (every offline approval), and a cold start (open the TPM and
//! sign once: the session set-up a start or a TPM reset pays).
//!
//! `cargo bench -p hal --bench tpm_sessions` (needs swtpm). Prints p50,
//! p99 and the mean per operation, in microseconds.

use std::time::Instant;

use hal::identity::DeviceIdentity;
use hal::identity::tpm::{COUNTER_NV_INDEX, DATA_KEY_HANDLE, DEVICE_KEY_HANDLE, Tpm};
use hdrhistogram::Histogram;
use swtpm_harness::Swtpm;

fn report(what: &str, h: &Histogram<u64>) {
    println!(
        "{what:<34} n={:<5} p50 {:>6} us  p99 {:>6} us  mean {:>8.1} us",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.mean()
    );
}

fn time<T>(h: &mut Histogram<u64>, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    h.record(start.elapsed().as_micros() as u64)
        .expect("record a latency");
    v
}

fn main() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open the TPM");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("device key");
    let counter = tpm.counter(COUNTER_NV_INDEX).expect("counter");
    tpm.sealed_data_key(DATA_KEY_HANDLE).expect("data key");
    // Warm-up.
    for i in 0..50u8 {
        id.sign_digest(&[i; 32]).expect("sign");
    }

    let mut sign = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..2_000u32 {
        time(&mut sign, || {
            id.sign_digest(&[(i % 251) as u8; 32]).expect("sign")
        });
    }
    report("sign (ECDSA P-256)", &sign);

    let mut unseal = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..300 {
        time(&mut unseal, || {
            tpm.sealed_data_key(DATA_KEY_HANDLE).expect("unseal")
        });
    }
    report("unseal the data key (open + unseal)", &unseal);

    let mut increment = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..500 {
        time(&mut increment, || counter.increment().expect("increment"));
    }
    report("NV counter increment (+ read)", &increment);

    drop((id, counter, tpm));
    let mut cold = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..20u8 {
        time(&mut cold, || {
            let tpm = Tpm::open(&sim.tcti()).expect("open");
            let id = tpm.identity(DEVICE_KEY_HANDLE).expect("reopen the key");
            id.sign_digest(&[i; 32]).expect("first sign")
        });
    }
    report("cold: open + reopen key + 1st sign", &cold);
}
