//! Per-run test certificates made with rcgen: a test CA, a server
//! certificate for the loopback broker (and the emulator's HTTPS object
//! store; also named 10.0.2.2, the host seen from a QEMU guest), client certificates per cart (CN = cart
//! id), an expired one, and a foreign CA that signed nothing the broker trusts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// A certificate authority of the test run, with the folder it writes into.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    foreign: CertifiedIssuer<'static, KeyPair>,
    serial: AtomicUsize,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
}

impl Pki {
    /// Makes the CA (and a foreign CA) and the broker's server certificate in `dir`.
    pub fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca: ca("cart test CA"),
            foreign: ca("foreign test CA"),
            serial: AtomicUsize::new(0),
        };
        fs::write(pki.ca_pem_path(), pki.ca.pem()).expect("write CA");
        fs::write(pki.foreign_ca_pem_path(), pki.foreign.pem()).expect("write foreign CA");

        let mut params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".into(),
            // The host as a QEMU guest's user networking shows it.
            "10.0.2.2".into(),
        ])
        .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mosquitto test broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &pki.ca).expect("server cert");
        fs::write(pki.server_cert_path(), cert.pem()).expect("write server cert");
        fs::write(pki.server_key_path(), key.serialize_pem()).expect("write server key");
        pki
    }

    /// The test CA, PEM: clients verify the broker with it; the broker verifies clients.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The test CA's certificate, PEM (what the backend emulator signs
    /// device certificates with, so the broker trusts them).
    pub fn ca_cert_pem(&self) -> String {
        self.ca.pem()
    }

    /// The test CA's private key, PKCS#8 PEM (TEST ONLY: the backend
    /// emulator's fleet-provisioning responder signs CSRs with it).
    pub fn ca_key_pem(&self) -> String {
        self.ca.key().serialize_pem()
    }

    /// A fleet-provisioning claim certificate (CN `claim`), signed by the
    /// test CA: (certificate PEM path, key PEM path).
    pub fn claim_cert(&self) -> (PathBuf, PathBuf) {
        self.issue(crate::CLAIM_IDENTITY, Validity::Current, false)
    }

    /// A CA that signed neither the broker nor any client the broker accepts.
    pub fn foreign_ca_pem_path(&self) -> PathBuf {
        self.dir.join("foreign-ca.pem")
    }

    /// The broker's certificate (SANs 127.0.0.1 and localhost).
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The broker's private key.
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A fresh client certificate with CN = `cart_id`, signed by the test CA:
    /// (certificate PEM path, PKCS#8 key PEM path).
    pub fn client_cert(&self, cart_id: &str) -> (PathBuf, PathBuf) {
        self.issue(cart_id, Validity::Current, false)
    }

    /// A client certificate with CN = `cart_id` that expired in 2020.
    pub fn expired_client_cert(&self, cart_id: &str) -> (PathBuf, PathBuf) {
        self.issue(cart_id, Validity::Expired, false)
    }

    /// A client certificate with CN = `cart_id` signed by the foreign CA.
    pub fn foreign_client_cert(&self, cart_id: &str) -> (PathBuf, PathBuf) {
        self.issue(cart_id, Validity::Current, true)
    }

    /// A client certificate with CN = `cn` for a key the caller brings
    /// (PKCS#8 PEM, e.g. RSA), signed by the test CA.
    pub fn client_cert_for_key(&self, cn: &str, key_pem: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::from_pem(key_pem).expect("parse the given key");
        self.issue_for(cn, Validity::Current, false, key, key_pem.to_string())
    }

    fn issue(&self, cn: &str, validity: Validity, foreign: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("client key");
        let pem = key.serialize_pem();
        self.issue_for(cn, validity, foreign, key, pem)
    }

    fn issue_for(
        &self,
        cn: &str,
        validity: Validity,
        foreign: bool,
        key: KeyPair,
        key_pem: String,
    ) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if let Validity::Expired = validity {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let issuer = if foreign { &self.foreign } else { &self.ca };
        let cert = params.signed_by(&key, issuer).expect("client cert");
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let safe: String = cn
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let cert_path = self.dir.join(format!("client-{safe}-{n}.pem"));
        let key_path = self.dir.join(format!("client-{safe}-{n}.key"));
        fs::write(&cert_path, cert.pem()).expect("write client cert");
        fs::write(&key_path, key_pem).expect("write client key");
        (cert_path, key_path)
    }
}

enum Validity {
    Current,
    Expired,
}
