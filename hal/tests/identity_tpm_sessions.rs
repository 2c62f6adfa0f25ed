//! What crosses the TPM bus: signing, unsealing and creating the data key
//! run in a salted, parameter-encrypted HMAC session, so a bus interposer
//! (here a TCP proxy between tpm2-tss and swtpm that records every byte)
//! sees neither the digest signed nor the data key. The same commands with
//! a password session, as this code used to send them, show both in clear
//! through the same proxy: the proxy would catch a leak.
//!
//! And a TPM reset under a running owner thread (swtpm restarted: the
//! session and the SRK are gone) costs a new session, not a failed
//! signature or a double counter increment.

use std::str::FromStr;

use hal::identity::tpm::{COUNTER_NV_INDEX, DATA_KEY_HANDLE, DEVICE_KEY_HANDLE, Tpm};
use hal::identity::{DeviceIdentity, verify_message};
use sha2::{Digest as _, Sha256};
use swtpm_harness::{Swtpm, TpmProxy};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Digest, HashcheckTicket, SignatureScheme};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, TctiNameConf};

/// Whether any 8-byte piece of `secret` is in what the proxy recorded.
fn leaked(proxy: &TpmProxy, secret: &[u8]) -> bool {
    secret.windows(8).any(|w| proxy.saw(w))
}

/// The TPM messages in a recorded stream: commands and responses
/// alternate (the TPM answers one command at a time), each starting with
/// tag (2 bytes) and size (4 bytes, big-endian).
fn messages(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 10 <= stream.len() {
        let size = u32::from_be_bytes(stream[at + 2..at + 6].try_into().unwrap()) as usize;
        assert!(
            size >= 10 && at + size <= stream.len(),
            "torn stream at {at}"
        );
        out.push(&stream[at..at + size]);
        at += size;
    }
    assert_eq!(at, stream.len(), "trailing bytes");
    out
}

const TPM2_CC_START_AUTH_SESSION: u32 = 0x0000_0176;

#[test]
fn neither_the_digest_signed_nor_the_data_key_crosses_the_bus_in_clear() {
    let sim = Swtpm::start();
    let proxy = TpmProxy::start(&sim);
    let tpm = Tpm::open(&proxy.tcti()).expect("open through the proxy");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("device key");
    // Made here: random bytes out of the TPM, sealed data into it.
    let key = tpm.sealed_data_key(DATA_KEY_HANDLE).expect("data key");
    assert!(
        !leaked(&proxy, key.as_slice()),
        "the data key crossed the bus in clear when it was made"
    );

    // The session is salted to a TPM key: an encrypted salt in
    // TPM2_StartAuthSession, an HMAC session with AES-128-CFB.
    let stream = proxy.seen();
    let msgs = messages(&stream);
    let start = msgs
        .iter()
        .step_by(2)
        .find(|m| u32::from_be_bytes(m[6..10].try_into().unwrap()) == TPM2_CC_START_AUTH_SESSION)
        .expect("a TPM2_StartAuthSession command");
    let tpm_key = u32::from_be_bytes(start[10..14].try_into().unwrap());
    assert_ne!(tpm_key, TPM2_RH_NULL, "the session must be salted");
    let mut at = 18;
    let nonce_len = u16::from_be_bytes(start[at..at + 2].try_into().unwrap()) as usize;
    at += 2 + nonce_len;
    let salt_len = u16::from_be_bytes(start[at..at + 2].try_into().unwrap()) as usize;
    assert!(salt_len > 0, "no encrypted salt");
    at += 2 + salt_len;
    assert_eq!(start[at], 0x00, "session type HMAC");
    assert_eq!(
        &start[at + 1..at + 7],
        &[0x00, 0x06, 0x00, 0x80, 0x00, 0x43],
        "symmetric AES, 128 bits, CFB"
    );
    assert_eq!(&start[at + 7..at + 9], &[0x00, 0x0b], "SHA-256 HMACs");

    proxy.clear();
    let digest: [u8; 32] = Sha256::digest(b"receipt R-7F3A-19C2-00D1, EUR 12.34").into();
    for _ in 0..3 {
        let sig = id.sign_digest(&digest).expect("sign");
        assert!(p256_verifies(id.public_key_sec1(), &digest, &sig));
    }
    let again = tpm.sealed_data_key(DATA_KEY_HANDLE).expect("unseal");
    assert_eq!(*again, *key);
    assert!(!proxy.seen().is_empty(), "the proxy saw the commands");
    assert!(!leaked(&proxy, &digest), "the digest crossed in clear");
    assert!(
        !leaked(&proxy, key.as_slice()),
        "the data key crossed in clear"
    );
    assert_eq!(tpm.session_restarts().unwrap(), 0);
    drop((id, tpm));

    // The control: a password session, through the same proxy.
    proxy.clear();
    let mut ctx = Context::new(TctiNameConf::from_str(&proxy.tcti()).unwrap()).unwrap();
    let persistent = |h| TpmHandle::Persistent(PersistentTpmHandle::new(h).unwrap());
    let sealed = ctx.tr_from_tpm_public(persistent(DATA_KEY_HANDLE)).unwrap();
    let clear = ctx
        .execute_with_session(Some(AuthSession::Password), |c| c.unseal(sealed))
        .unwrap();
    assert_eq!(clear.value(), key.as_slice());
    let signer = ctx
        .tr_from_tpm_public(persistent(DEVICE_KEY_HANDLE))
        .unwrap();
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .unwrap();
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.sign(
            signer.into(),
            Digest::try_from(digest.to_vec()).unwrap(),
            SignatureScheme::Null,
            ticket,
        )
    })
    .unwrap();
    assert!(
        leaked(&proxy, key.as_slice()),
        "password session: key in clear"
    );
    assert!(leaked(&proxy, &digest), "password session: digest in clear");
}

fn p256_verifies(sec1: &[u8], digest: &[u8; 32], der: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1) else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::Signature::from_der(der) else {
        return false;
    };
    key.verify_prehash(digest, &sig).is_ok()
}

#[test]
fn a_tpm_reset_under_a_running_owner_costs_a_new_session_not_a_failure() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("device key");
    let counter = tpm.counter(COUNTER_NV_INDEX).expect("counter");
    let key = tpm.sealed_data_key(DATA_KEY_HANDLE).expect("data key");
    id.sign_message(b"before").expect("sign before the reset");
    let before = counter.increment().expect("increment");
    assert_eq!(tpm.session_restarts().unwrap(), 0);

    for round in 1..=3u64 {
        sim.restart(); // no TPM2_Shutdown: a reset; the session is gone
        let sig = id
            .sign_message(b"after")
            .unwrap_or_else(|e| panic!("sign after reset {round}: {e}"));
        assert!(verify_message(id.public_key_sec1(), b"after", &sig));
        assert_eq!(tpm.session_restarts().unwrap(), 2 * round - 1);
        assert_eq!(*tpm.sealed_data_key(DATA_KEY_HANDLE).unwrap(), *key);
        sim.restart();
        // The authenticated read restarts the session; the increment
        // (a password session) runs once, not twice.
        assert_eq!(counter.read().unwrap(), before + round - 1);
        assert_eq!(tpm.session_restarts().unwrap(), 2 * round);
        assert_eq!(counter.increment().expect("increment"), before + round);
        assert_eq!(counter.read().unwrap(), before + round);
    }
    assert_eq!(tpm.session_restarts().unwrap(), 6);
}
