//! What the ledger gets from the TPM: the NV counter (defined once, only
//! goes up, survives a TPM restart) and the sealed data key (made once,
//! the same after a restart, different in another TPM).

use hal::identity::tpm::{COUNTER_NV_INDEX, DATA_KEY_HANDLE, Tpm};
use swtpm_harness::Swtpm;

#[test]
fn nv_counter_is_defined_once_increments_and_survives_a_restart() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let counter = tpm.counter(COUNTER_NV_INDEX).expect("define");
    let start = counter.read().expect("readable right after definition");
    assert_eq!(counter.increment().unwrap(), start + 1);
    assert_eq!(counter.increment().unwrap(), start + 2);
    // Opening again neither redefines nor increments.
    let again = tpm.counter(COUNTER_NV_INDEX).unwrap();
    assert_eq!(again.read().unwrap(), start + 2);
    drop((counter, again, tpm));

    sim.restart();
    let tpm = Tpm::open(&sim.tcti()).expect("reopen");
    let counter = tpm.counter(COUNTER_NV_INDEX).unwrap();
    assert_eq!(counter.read().unwrap(), start + 2, "value kept by the TPM");
    assert_eq!(counter.increment().unwrap(), start + 3);
    drop((counter, tpm));

    let out = sim.tpm2("tpm2_nvreadpublic", &[&format!("{COUNTER_NV_INDEX:#010x}")]);
    assert!(out.contains("nt=0x1"), "a counter index: {out}");
    for attr in ["ownerwrite", "ownerread", "no_da", "written"] {
        assert!(out.contains(attr), "{attr} missing: {out}");
    }
}

#[test]
fn a_counter_defined_by_someone_else_with_another_type_is_refused() {
    let sim = Swtpm::start();
    // An ordinary 8-byte index where our counter belongs.
    let index = format!("{COUNTER_NV_INDEX:#010x}");
    sim.tpm2(
        "tpm2_nvdefine",
        &[&index, "-C", "o", "-s", "8", "-a", "ownerread|ownerwrite"],
    );
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let err = tpm.counter(COUNTER_NV_INDEX).unwrap_err();
    assert!(
        matches!(err, hal::identity::IdentityError::Unexpected { .. }),
        "{err}"
    );
}

#[test]
fn sealed_data_key_is_made_once_and_unsealed_after_a_restart() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let key = tpm.sealed_data_key(DATA_KEY_HANDLE).expect("seal");
    assert_ne!(*key, [0u8; 32]);
    assert_eq!(tpm.sealed_data_key(DATA_KEY_HANDLE).unwrap(), key);
    drop(tpm);

    sim.restart();
    let tpm = Tpm::open(&sim.tcti()).expect("reopen");
    assert_eq!(tpm.sealed_data_key(DATA_KEY_HANDLE).unwrap(), key);
    assert_eq!(tpm.persistent_handles().unwrap(), vec![DATA_KEY_HANDLE]);
    drop(tpm);

    // The sealed object's public area says it holds data bound to this TPM.
    let out = sim.tpm2(
        "tpm2_readpublic",
        &["-c", &format!("{DATA_KEY_HANDLE:#010x}")],
    );
    assert!(out.contains("keyedhash"), "{out}");
    assert!(out.contains("fixedtpm|fixedparent"), "{out}");

    let other = Swtpm::start();
    let tpm = Tpm::open(&other.tcti()).expect("open another TPM");
    assert_ne!(
        tpm.sealed_data_key(DATA_KEY_HANDLE).unwrap(),
        key,
        "another cart, another key"
    );
}
