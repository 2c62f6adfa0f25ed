//! The software identity (refused unless allowed, key file private, same
//! key on reopen) and CSRs signed by an identity, TPM or software: they
//! parse, their self-signature verifies, and a CA certifies their key.

use std::os::unix::fs::PermissionsExt;

use hal::identity::software::{INSECURE_WARNING, SoftwareIdentity, require_allowed};
use hal::identity::tpm::{DEVICE_KEY_HANDLE, Tpm};
use hal::identity::{DeviceIdentity, IdentityError, csr, verify_message};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, KeyPair,
};
use rustls_pki_types::CertificateSigningRequestDer;
use swtpm_harness::Swtpm;

#[test]
fn software_identity_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    assert!(matches!(
        SoftwareIdentity::open(&path, false),
        Err(IdentityError::SoftwareNotAllowed)
    ));
    assert!(!path.exists(), "nothing written when refused");
    assert!(matches!(
        require_allowed(false),
        Err(IdentityError::SoftwareNotAllowed)
    ));
    assert!(require_allowed(true).is_ok());
    assert!(INSECURE_WARNING.contains("NOT protected"));
}

#[test]
fn software_identity_keeps_its_key_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let id = SoftwareIdentity::open(&path, true).expect("create");
    assert!(!id.is_hardware_backed());
    assert!(id.describe().contains("INSECURE"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let sig = id.sign_message(b"hello").unwrap();
    assert!(verify_message(id.public_key_sec1(), b"hello", &sig));
    let again = SoftwareIdentity::open(&path, true).expect("reopen");
    assert_eq!(id.public_key_sec1(), again.public_key_sec1());

    std::fs::write(&path, "not a key").unwrap();
    assert!(matches!(
        SoftwareIdentity::open(&path, true),
        Err(IdentityError::KeyFile { .. })
    ));
}

fn test_ca() -> rcgen::CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Parses (and so verifies) the CSR, checks its subject and key, has the
/// test CA certify it, and checks the certificate carries the identity's key.
fn check_csr(id: &dyn DeviceIdentity, cart_id: &str) {
    let request = csr::build(id, cart_id).expect("CSR");
    assert!(
        request
            .pem
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
    );
    let der = CertificateSigningRequestDer::from(request.der.clone());
    // from_der verifies the CSR's self-signature.
    let parsed = CertificateSigningRequestParams::from_der(&der).expect("CSR parses and verifies");
    let cn = parsed
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .expect("CN");
    assert_eq!(cn, &rcgen::DnValue::Utf8String(cart_id.into()));
    assert_eq!(
        rcgen::PublicKeyData::der_bytes(&parsed.public_key),
        id.public_key_sec1()
    );

    // A CSR whose signature is broken must not verify.
    let mut tampered = request.der.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0x55;
    assert!(
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(tampered))
            .is_err()
    );

    let ca = test_ca();
    let cert = parsed.signed_by(&ca).expect("certify");
    let spki = id.public_key_spki_der().unwrap();
    assert!(
        cert.der().windows(spki.len()).any(|w| w == &spki[..]),
        "certificate carries the identity's key"
    );
}

#[test]
fn csr_from_the_tpm_key_parses_verifies_and_is_certified() {
    let sim = Swtpm::start();
    let tpm = Tpm::open(&sim.tcti()).expect("open");
    let id = tpm.identity(DEVICE_KEY_HANDLE).expect("create");
    check_csr(&id, "cart-0042");
}

#[test]
fn csr_from_the_software_key_parses_verifies_and_is_certified() {
    let dir = tempfile::tempdir().unwrap();
    let id = SoftwareIdentity::open(dir.path().join("k"), true).unwrap();
    check_csr(&id, "cart-dev");
}
