//! Mutual TLS to a real mosquitto (`require_certificate`, ACL per CN) with
//! the device key in a real (simulated) TPM: CSR from the TPM, certificate
//! from a CA the broker trusts, the rustls signer on the TPM, presented
//! through the uplink's swappable client certificate.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cart_app::tpm::{CartTpm, TpmAdapterError, certified_key, certified_key_from_pem_file};
use hal::identity::tpm::TpmConfig;
use hal::identity::{DeviceIdentity, IdentityError, csr};
use mqtt_harness::Broker;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use store_and_forward::uplink::{
    LinkConfig, LinkError, PublishProps, QoS, SwappableClientCert, certified_key_from_pem_files,
    start,
};
use swtpm_harness::Swtpm;

const HANG: Duration = Duration::from_secs(30);

/// A device identity that counts its signatures (to see the TPM sign the
/// handshake).
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn DeviceIdentity>,
    signs: Arc<AtomicUsize>,
}

impl DeviceIdentity for Counting {
    fn public_key_sec1(&self) -> &[u8] {
        self.inner.public_key_sec1()
    }
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, IdentityError> {
        self.signs.fetch_add(1, Ordering::SeqCst);
        self.inner.sign_digest(digest)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn is_hardware_backed(&self) -> bool {
        self.inner.is_hardware_backed()
    }
}

/// A CA of this test whose certificate is added to the broker's trusted
/// CAs (the broker restarts to read it): it certifies the TPM's CSR, as
/// AWS IoT will.
struct DeviceCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl DeviceCa {
    fn trusted_by(broker: &Broker) -> DeviceCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "device test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("self-signed CA");
        let mut bundle = fs::read_to_string(broker.ca_pem_path()).expect("read CA bundle");
        bundle.push_str(&issuer.pem());
        fs::write(broker.ca_pem_path(), bundle).expect("write CA bundle");
        broker.restart();
        DeviceCa { issuer }
    }

    /// Certifies a CSR (verifying its signature first) for client auth.
    fn certify(&self, csr_der: &[u8]) -> CertificateDer<'static> {
        let mut csr = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(csr_der.to_vec()),
        )
        .expect("CSR parses and its signature verifies");
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        csr.signed_by(&self.issuer).expect("certify").der().clone()
    }
}

fn link_config(broker: &Broker, cart: &str) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: cart.into(),
        keep_alive_secs: 5,
        backoff_base_ms: 50,
        backoff_max_ms: 500,
        connect_timeout_secs: 5,
        tls: true,
        ca_file: Some(broker.ca_pem_path()),
        ..LinkConfig::default()
    }
}

/// The cart's TPM device key, counting its signatures, and its
/// certificate from `ca` with CN `cn` (the CSR signed in the TPM).
fn counted_tpm_key(
    cart: &CartTpm,
    ca: &DeviceCa,
    cn: &str,
) -> (
    Arc<dyn DeviceIdentity>,
    Arc<AtomicUsize>,
    CertificateDer<'static>,
) {
    let signs = Arc::new(AtomicUsize::new(0));
    let id: Arc<dyn DeviceIdentity> = Arc::new(Counting {
        inner: Arc::new(cart.identity().expect("device key")),
        signs: signs.clone(),
    });
    let request = csr::build(id.as_ref(), cn).expect("CSR");
    let cert = ca.certify(&request.der);
    (id, signs, cert)
}

fn tpm(sim: &Swtpm) -> CartTpm {
    CartTpm::open(TpmConfig {
        tcti: sim.tcti(),
        ..TpmConfig::default()
    })
    .expect("open TPM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_mosquitto_with_the_tpm_key() {
    let broker = Broker::start();
    let ca = DeviceCa::trusted_by(&broker);
    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let (id, signs, cert) = counted_tpm_key(&cart, &ca, "cart-7");
    let key = certified_key(id.clone(), vec![cert]).expect("certified key");
    let source = Arc::new(SwappableClientCert::new(key));

    let (link, _rx) = start(link_config(&broker, "cart-7"), Some(source), vec![]).expect("start");
    assert!(link.wait_up(HANG).await, "{:?}", *link.state().borrow());
    assert!(
        signs.load(Ordering::SeqCst) >= 2,
        "CSR and handshake signed in the TPM"
    );

    let ack = tokio::time::timeout(
        HANG,
        link.publish(
            "carts/cart-7/up/telemetry",
            Bytes::from_static(b"{}"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        ),
    )
    .await
    .expect("hang guard")
    .expect("PUBACK");
    assert!(
        matches!(ack.reason, 0 | 16),
        "success or no subscribers: {}",
        ack.reason
    );
    // The broker took the certificate's CN as the user name: another
    // cart's topic is refused.
    let other = tokio::time::timeout(
        HANG,
        link.publish(
            "carts/cart-8/up/telemetry",
            Bytes::from_static(b"{}"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        ),
    )
    .await
    .expect("hang guard");
    assert!(
        matches!(
            other,
            Err(LinkError::Rejected {
                reason_code: 135,
                ..
            })
        ),
        "{other:?}"
    );
    link.shutdown().await;
}

/// A TPM reset between handshakes (swtpm restarted under the running
/// owner thread: the salted session and the SRK are gone) costs a new
/// session, not a failed handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_reset_between_handshakes_fails_no_handshake() {
    let broker = Broker::start();
    let ca = DeviceCa::trusted_by(&broker);
    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let (id, signs, cert) = counted_tpm_key(&cart, &ca, "cart-7");
    let key = certified_key(id.clone(), vec![cert]).expect("certified key");
    let source = Arc::new(SwappableClientCert::new(key));
    for round in 0..2 {
        let before = signs.load(Ordering::SeqCst);
        let (link, _rx) =
            start(link_config(&broker, "cart-7"), Some(source.clone()), vec![]).expect("start");
        assert!(
            link.wait_up(HANG).await,
            "round {round}: {:?}",
            *link.state().borrow()
        );
        assert!(signs.load(Ordering::SeqCst) > before, "signed in the TPM");
        link.shutdown().await;
        sim.restart();
    }
    assert_eq!(cart.tpm().session_restarts().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_from_a_file_key_to_the_tpm_key() {
    let broker = Broker::start();
    let ca = DeviceCa::trusted_by(&broker);
    let (cert_file, key_file) = broker.client_cert("cart-7");
    let file_key = certified_key_from_pem_files(&cert_file, &key_file).expect("file key");
    let source = Arc::new(SwappableClientCert::new(file_key));
    let (link, _rx) =
        start(link_config(&broker, "cart-7"), Some(source.clone()), vec![]).expect("start");
    assert!(link.wait_up(HANG).await);

    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let (id, signs, cert) = counted_tpm_key(&cart, &ca, "cart-7");
    let cert_path = sim.state_dir().join("device.pem");
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        pem_body(&cert)
    );
    fs::write(&cert_path, pem).expect("write certificate");
    let tpm_key = certified_key_from_pem_file(id, &cert_path).expect("TPM certified key");
    let before = signs.load(Ordering::SeqCst);
    source.swap(tpm_key);
    link.reconnect();
    let mut state = link.state();
    tokio::time::timeout(HANG, state.wait_for(|s| s.up && s.connects >= 2))
        .await
        .expect("hang guard")
        .expect("link alive");
    assert!(
        signs.load(Ordering::SeqCst) > before,
        "the new handshake was signed in the TPM"
    );
    let ack = tokio::time::timeout(
        HANG,
        link.publish(
            "carts/cart-7/up/telemetry",
            Bytes::from_static(b"{}"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        ),
    )
    .await
    .expect("hang guard")
    .expect("PUBACK");
    assert!(
        matches!(ack.reason, 0 | 16),
        "success or no subscribers: {}",
        ack.reason
    );
    link.shutdown().await;
}

fn pem_body(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_certificate_for_another_key_is_refused() {
    let broker = Broker::start();
    let (cert_file, _) = broker.client_cert("cart-7");
    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let id: Arc<dyn DeviceIdentity> = Arc::new(cart.identity().expect("device key"));
    let err = certified_key_from_pem_file(id, &cert_file).unwrap_err();
    assert!(matches!(err, TpmAdapterError::KeyMismatch(_)), "{err}");
}

#[test]
fn identity_from_config_is_the_tpm_unless_a_software_key_is_allowed() {
    use cart_app::tpm::{IdentityConfig, open_identity};
    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let id = open_identity(&IdentityConfig::default(), Some(&cart)).expect("TPM identity");
    assert!(id.is_hardware_backed());
    assert!(matches!(
        open_identity(&IdentityConfig::default(), None),
        Err(TpmAdapterError::NoTpm)
    ));

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = IdentityConfig {
        software_key: Some(dir.path().join("dev.key")),
        allow_software_identity: false,
    };
    let refused = open_identity(&config, Some(&cart)).map(|_| ()).unwrap_err();
    assert!(
        matches!(
            refused,
            TpmAdapterError::Identity(IdentityError::SoftwareNotAllowed)
        ),
        "{refused}"
    );
    assert!(!dir.path().join("dev.key").exists());

    config.allow_software_identity = true;
    let allowed = open_identity(&config, None);
    if cfg!(feature = "demo") {
        let id = allowed.expect("software identity in a demo build");
        assert!(!id.is_hardware_backed());
    } else {
        assert!(matches!(
            allowed.map(|_| ()),
            Err(TpmAdapterError::SoftwareIdentityNotBuilt)
        ));
    }
}

/// TLS 1.2 only (AWS IoT still offers it): the TPM signer serves there too.
#[test]
fn tls12_connect_with_the_tpm_key() {
    use std::io::{Read, Write};
    use store_and_forward::uplink::tls::{provider, root_store_from_pem_file};
    let broker = Broker::start();
    let ca = DeviceCa::trusted_by(&broker);
    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let (id, signs, cert) = counted_tpm_key(&cart, &ca, "cart-7");
    let key = certified_key(id, vec![cert]).expect("certified key");
    let roots = root_store_from_pem_file(&broker.ca_pem_path()).expect("roots");
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SwappableClientCert::new(key)));
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", broker.port())).expect("connect");
    tcp.set_read_timeout(Some(HANG)).expect("timeout");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    // MQTT 3.1.1 CONNECT, client id cart-7, clean session, keep-alive 30 s.
    let mut packet = vec![0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 6];
    packet.extend_from_slice(b"cart-7");
    tls.write_all(&packet).expect("CONNECT");
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "accepted");
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(signs.load(Ordering::SeqCst), 2, "CSR and one handshake");
}

/// The receipt's QR code is signed in the TPM with the device key the
/// link presents, and the backend's check verifies it with the cart's
/// certificate.
#[test]
fn receipts_are_signed_in_the_tpm() {
    use cart_app::receipt::ReceiptSigner;
    use store_and_forward::{Currency, Money, PaymentKey};
    let broker = Broker::start();
    let ca = DeviceCa::trusted_by(&broker);
    let sim = Swtpm::start();
    let cart = tpm(&sim);
    let (id, signs, cert) = counted_tpm_key(&cart, &ca, "cart-7");
    let key = certified_key(id, vec![cert.clone()]).expect("certified key");
    let signer = ReceiptSigner::new(
        "https://receipts.example.com/r",
        "cart-7",
        Arc::new(SwappableClientCert::new(key)),
    );
    let before = signs.load(Ordering::SeqCst);
    let payment = PaymentKey::new();
    let amount = Money::new(1_999, Currency::new("EUR").unwrap());
    let url = signer.code(payment, amount, true);
    assert_eq!(
        signs.load(Ordering::SeqCst),
        before + 1,
        "signed in the TPM"
    );
    let verdict = backend_emulator::receipts::check(&url, &cert, &[]).expect("verifies");
    assert_eq!(verdict.claim, signer.claim(payment, amount, true));
    assert!(verdict.payment.is_none(), "not forwarded yet");
    // Another cart's certificate does not vouch for it.
    let (_, _, other) = counted_tpm_key(&cart, &ca, "cart-8");
    let e = backend_emulator::receipts::check(&url, &other, &[]).unwrap_err();
    assert!(e.to_string().contains("cart-8"), "{e}");
}
