//! The device key in a real (simulated) TPM: attributes seen by tpm2-tools,
//! idempotent creation, persistence across a TPM restart, signatures, the
//! owner thread under concurrent callers, evict and replace.

use hal::identity::tpm::{DATA_KEY_HANDLE, DEVICE_KEY_HANDLE, NEXT_KEY_HANDLE, Tpm};
use hal::identity::{DeviceIdentity, IdentityError, verify_message};
use swtpm_harness::Swtpm;

fn handle_arg(h: u32) -> String {
    format!("{h:#010x}")
}

#[test]
fn device_key_attributes_seen_by_tpm2_tools() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("create");
    assert!(id.is_hardware_backed());
    drop(id);
    drop(tpm); // tpm2-tools needs the (single-client) swtpm to itself
    let out = sim.tpm2("tpm2_readpublic", &["-c", &handle_arg(DEVICE_KEY_HANDLE)]);
    let attrs = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("attributes:"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("value:"))
        .unwrap_or_else(|| panic!("no attributes in:\n{out}"));
    for must in [
        "fixedtpm",
        "fixedparent",
        "sensitivedataorigin",
        "userwithauth",
        "noda",
        "sign",
    ] {
        assert!(
            attrs.split('|').any(|a| a.trim() == must),
            "{must} missing: {attrs}"
        );
    }
    for must_not in ["decrypt", "restricted"] {
        assert!(
            !attrs.split('|').any(|a| a.trim() == must_not),
            "{must_not} set: {attrs}"
        );
    }
    assert!(out.contains("NIST p256"), "{out}");
    assert!(out.contains("ecdsa"), "{out}");
}

#[test]
fn creating_twice_reopens_the_same_key_also_after_a_tpm_restart() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let first = tpm.identity(DEVICE_KEY_HANDLE).expect("create");
    let again = tpm.identity(DEVICE_KEY_HANDLE).expect("reopen");
    assert_eq!(first.public_key_sec1(), again.public_key_sec1());
    assert_eq!(
        tpm.persistent_handles().unwrap(),
        vec![DEVICE_KEY_HANDLE],
        "no second key, no persisted SRK"
    );
    let sec1 = first.public_key_sec1().to_vec();
    drop((first, again, tpm));

    sim.restart();
    let tpm = Tpm::open(&sim.tcti()).expect("reopen after restart");
    let found = tpm
        .existing_identity(DEVICE_KEY_HANDLE)
        .unwrap()
        .expect("key survived the restart");
    assert_eq!(found.public_key_sec1(), &sec1[..]);
    let sig = found.sign_message(b"after restart").unwrap();
    assert!(verify_message(&sec1, b"after restart", &sig));
}

#[test]
fn signatures_verify_against_the_public_key_and_only_for_their_message() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("create");
    assert_eq!(id.public_key_sec1().len(), 65);
    assert_eq!(id.public_key_sec1()[0], 0x04);
    // Enough signatures that short r or s (leading zero bytes) show up.
    for i in 0..300u32 {
        let msg = i.to_be_bytes();
        let sig = id.sign_message(&msg).expect("sign");
        assert!(verify_message(id.public_key_sec1(), &msg, &sig), "sig {i}");
        assert!(!verify_message(id.public_key_sec1(), b"another", &sig));
    }
    let spki = id.public_key_spki_der().unwrap();
    assert_eq!(spki.len(), 91, "P-256 SPKI DER");
    assert!(id.describe().contains("0x81000100"), "{}", id.describe());
}

#[test]
fn concurrent_callers_share_the_one_owner_thread() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("create");
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let id = id.clone();
            std::thread::spawn(move || {
                for i in 0..20u8 {
                    let msg = [t, i];
                    let sig = id.sign_message(&msg).expect("sign");
                    assert!(verify_message(id.public_key_sec1(), &msg, &sig));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("signer thread");
    }
}

#[test]
fn evict_and_replace_for_rotation() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let current = tpm.identity(DEVICE_KEY_HANDLE).unwrap();
    let next = tpm.identity(NEXT_KEY_HANDLE).unwrap();
    assert_ne!(current.public_key_sec1(), next.public_key_sec1());
    assert_eq!(
        tpm.persistent_handles().unwrap(),
        vec![DEVICE_KEY_HANDLE, NEXT_KEY_HANDLE]
    );
    // An interrupted rotation's leftover is replaced by a fresh key.
    let fresh = tpm.replace(NEXT_KEY_HANDLE).unwrap();
    assert_ne!(fresh.public_key_sec1(), next.public_key_sec1());
    let sig = fresh.sign_message(b"m").unwrap();
    assert!(verify_message(fresh.public_key_sec1(), b"m", &sig));
    // The old key is gone: its handle now signs with the fresh key.
    let sig = next.sign_message(b"m").unwrap();
    assert!(!verify_message(next.public_key_sec1(), b"m", &sig));

    assert!(tpm.evict(DEVICE_KEY_HANDLE).unwrap());
    assert!(
        !tpm.evict(DEVICE_KEY_HANDLE).unwrap(),
        "second evict: nothing"
    );
    assert!(tpm.existing_identity(DEVICE_KEY_HANDLE).unwrap().is_none());
    assert!(matches!(
        current.sign_message(b"m"),
        Err(IdentityError::Tpm { .. })
    ));
    assert_eq!(tpm.persistent_handles().unwrap(), vec![NEXT_KEY_HANDLE]);
}

#[test]
fn foreign_object_at_the_key_handle_is_refused_not_overwritten() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    // A sealed data object where the device key belongs.
    let key = tpm.sealed_data_key(DEVICE_KEY_HANDLE).unwrap();
    let err = tpm.identity(DEVICE_KEY_HANDLE).unwrap_err();
    assert!(
        matches!(err, IdentityError::Unexpected { handle, .. } if handle == DEVICE_KEY_HANDLE),
        "{err}"
    );
    assert_eq!(tpm.sealed_data_key(DEVICE_KEY_HANDLE).unwrap(), key);
    assert!(tpm.sealed_data_key(DATA_KEY_HANDLE).is_ok());
}

#[test]
fn bad_tcti_and_absent_tpm_are_errors() {
    assert!(matches!(
        Tpm::open("nonsense:"),
        Err(IdentityError::Tcti { .. } | IdentityError::Tpm { .. })
    ));
    let sim = Swtpm::start();
    let tcti = sim.tcti();
    sim.stop();
    let err = Tpm::open(&tcti).unwrap_err();
    assert!(matches!(err, IdentityError::Tpm { .. }), "{err}");
    assert!(matches!(
        Tpm::open(&sim.tcti()).and_then(|t| t.identity(0x1234)),
        Err(IdentityError::Tpm { .. } | IdentityError::BadHandle { .. })
    ));
}

/// Power cuts while the key is in use (an unorderly shutdown after a
/// DA-protected use counts as a failed authorization): the key keeps
/// signing. With DA protection it was locked out after a few cuts.
#[test]
fn the_key_survives_power_cuts_while_in_use() {
    let sim = Swtpm::start();
    for cut in 0..12 {
        let tpm = Tpm::open(&sim.tcti()).expect("open");
        let id = tpm.identity(DEVICE_KEY_HANDLE).expect("create or reopen");
        id.sign_digest(&[cut as u8; 32])
            .unwrap_or_else(|e| panic!("sign after {cut} power cuts: {e}"));
        drop(id);
        drop(tpm);
        sim.restart(); // killed: no TPM2_Shutdown, as a power cut
    }
}
