//! TPM figures on swtpm: ECDSA P-256 signatures per second through the
//! owner thread, and a full mutual-TLS connect to mosquitto (TCP, TLS
//! handshake with client authentication, MQTT CONNECT/CONNACK) with the
//! TPM key against a file key. Session resumption is off (a fresh rustls
//! `ClientConfig` per connect, `Resumption::disabled()`), so every connect
//! signs in the TPM.
//!
//! `cargo bench -p cart-app --bench tpm` (needs mosquitto and swtpm).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cart_app::tpm::{CartTpm, certified_key};
use hal::identity::tpm::TpmConfig;
use hal::identity::{DeviceIdentity, csr};
use hdrhistogram::Histogram;
use mqtt_harness::Broker;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::Resumption;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::{CertificateSigningRequestDer, ServerName};
use store_and_forward::uplink::tls::{provider, root_store_from_pem_file};
use store_and_forward::uplink::{SwappableClientCert, certified_key_from_pem_files};
use swtpm_harness::Swtpm;

const SIGNS: u32 = 1_000;
const CONNECTS: usize = 200;

fn main() {
    let sim = Swtpm::start();
    let tpm = CartTpm::open(TpmConfig {
        tcti: sim.tcti(),
        ..TpmConfig::default()
    })
    .expect("open TPM");
    let id = tpm.identity().expect("device key");

    // Signatures per second, one caller.
    let start = Instant::now();
    for i in 0..SIGNS {
        id.sign_digest(&[(i % 251) as u8; 32]).expect("sign");
    }
    let per_sec = f64::from(SIGNS) / start.elapsed().as_secs_f64();
    println!("tpm_sign: {SIGNS} ECDSA P-256 signatures on swtpm: {per_sec:.0}/s");

    // Mutual TLS connects: a CA of ours the broker trusts certifies the TPM key.
    let broker = Broker::start();
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "device bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let mut bundle = fs::read_to_string(broker.ca_pem_path()).expect("CA bundle");
    bundle.push_str(&ca.pem());
    fs::write(broker.ca_pem_path(), bundle).expect("write CA bundle");
    broker.restart();

    let request = csr::build(&id, "cart-7").expect("CSR");
    let mut csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
        request.der.clone(),
    ))
    .expect("CSR");
    csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = csr.signed_by(&ca).expect("certify").der().clone();
    let tpm_key = certified_key(Arc::new(id), vec![cert]).expect("TPM key");
    let (cert_file, key_file) = broker.client_cert("cart-7");
    let file_key = certified_key_from_pem_files(&cert_file, &key_file).expect("file key");

    let mut file_h = Histogram::<u64>::new(3).expect("histogram");
    let mut tpm_h = Histogram::<u64>::new(3).expect("histogram");
    // Warm-up, then alternate so both see the same machine load.
    connect(&broker, &file_key);
    connect(&broker, &tpm_key);
    for _ in 0..CONNECTS {
        file_h
            .record(connect(&broker, &file_key).as_micros() as u64)
            .expect("record");
        tpm_h
            .record(connect(&broker, &tpm_key).as_micros() as u64)
            .expect("record");
    }
    for (name, h) in [("file key", &file_h), ("TPM key (swtpm)", &tpm_h)] {
        println!(
            "mtls_connect {name}: n={} p50={:.2} ms p99={:.2} ms mean={:.2} ms (TCP+TLS full handshake+CONNACK, no resumption)",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.mean() / 1000.0,
        );
    }
}

/// One full connect: TCP, TLS with client auth (fresh config: no
/// resumption), MQTT 3.1.1 CONNECT, CONNACK accepted.
fn connect(broker: &Broker, key: &Arc<CertifiedKey>) -> Duration {
    let roots = root_store_from_pem_file(&broker.ca_pem_path()).expect("roots");
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SwappableClientCert::new(key.clone())));
    config.resumption = Resumption::disabled();
    let config = Arc::new(config);
    let name = ServerName::try_from("localhost").expect("name");

    let start = Instant::now();
    let mut tcp = TcpStream::connect(("127.0.0.1", broker.port())).expect("TCP connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut conn = ClientConnection::new(config, name).expect("TLS client");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let client_id = b"cart-7";
    let mut packet = vec![0x10, (10 + 2 + client_id.len()) as u8];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30]);
    packet.extend_from_slice(&[0, client_id.len() as u8]);
    packet.extend_from_slice(client_id);
    tls.write_all(&packet).expect("CONNECT");
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack).expect("CONNACK");
    let took = start.elapsed();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "connection accepted");
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    took
}
