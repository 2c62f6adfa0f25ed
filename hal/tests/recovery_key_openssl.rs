//! The fleet's recovery key as an operator makes it with the openssl CLI
//! (the commands in docs/identity.md): both halves parse, a wrapped data
//! key unwraps, and the key id is SHA-256 over the public key's DER.

use std::process::{Command, Stdio};

use hal::identity::recovery::{RecoveryPrivateKey, RecoveryPublicKey};
use sha2::{Digest, Sha256};

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl not found ({e}): install the Debian package openssl"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_recovery_key_made_with_openssl_wraps_and_unwraps() {
    let sec1 = openssl(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        None,
    );
    let pkcs8 = openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&sec1));
    let public_pem = openssl(&["pkey", "-pubout"], Some(&pkcs8));
    let public_der = openssl(&["pkey", "-pubin", "-outform", "DER"], Some(&public_pem));

    let public = RecoveryPublicKey::from_pem(std::str::from_utf8(&public_pem).unwrap()).unwrap();
    let private = RecoveryPrivateKey::from_pem(std::str::from_utf8(&pkcs8).unwrap()).unwrap();
    let from_sec1 = RecoveryPrivateKey::from_pem(std::str::from_utf8(&sec1).unwrap()).unwrap();
    assert_eq!(private.public(), public);
    assert_eq!(from_sec1.public(), public);
    assert_eq!(
        public.key_id(),
        &hex::encode(Sha256::digest(&public_der))[..16]
    );
    let data_key = [0xA5; 32];
    let wrapped = public.wrap(&data_key, b"ledger-7").unwrap();
    assert_eq!(*private.unwrap(&wrapped, b"ledger-7").unwrap(), data_key);
}
