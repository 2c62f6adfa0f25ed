//! The fleet-provisioning responder's AWS semantics, spoken as a client
//! would over mosquitto with the claim certificate: every
//! create-from-csr issues a new pending certificate; RegisterThing with a
//! bad token, for a thing other than the CSR's CN, or for an unknown
//! template is rejected with AWS's fields; a valid one activates the
//! certificate (again accepted with the same token); `provisioning_complete`
//! deletes the listed orphans and the cart's other pending certificates,
//! never another cart's.

use std::time::Duration;

use backend_emulator::{CertStatus, Emulator, EmulatorConfig, FleetConfig};
use bytes::Bytes;
use mqtt_harness::Broker;
use rcgen::{CertificateParams, DnType, KeyPair};
use store_and_forward::Timestamp;
use store_and_forward::uplink::{
    self, Incoming, LinkConfig, LinkHandle, PublishProps, QoS, SwappableClientCert,
};
use store_and_forward::wire::fleet::{
    self, CreateCertificateFromCsrResponse, ErrorResponse, RegisterThingResponse,
};
use store_and_forward::wire::up::ProvisioningComplete;
use store_and_forward::wire::{Kind, encode, topics};
use tokio::sync::mpsc;

const TEMPLATE: &str = "cart-fleet";

fn link(broker: &Broker, id: &str) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: id.into(),
        backoff_base_ms: 50,
        backoff_max_ms: 500,
        ca_file: Some(broker.ca_pem_path()),
        server_name: Some("localhost".into()),
        ..LinkConfig::default()
    }
}

struct Client {
    link: LinkHandle,
    rx: mpsc::Receiver<Incoming>,
}

impl Client {
    async fn connect(
        broker: &Broker,
        id: &str,
        cert: (std::path::PathBuf, std::path::PathBuf),
    ) -> Client {
        let key = uplink::certified_key_from_pem_files(&cert.0, &cert.1).unwrap();
        // AWS answers on the topics of the template asked for: "other" too.
        let mut subs: Vec<_> = fleet::response_topics(TEMPLATE)
            .into_iter()
            .map(|t| (t, QoS::AtLeastOnce))
            .collect();
        subs.push((fleet::provision_rejected("other"), QoS::AtLeastOnce));
        let (link, rx) = uplink::start(
            link(broker, id),
            Some(SwappableClientCert::new(key).into()),
            subs,
        )
        .unwrap();
        assert!(link.wait_up(Duration::from_secs(20)).await);
        Client { link, rx }
    }

    async fn call(&mut self, topic: &str, body: serde_json::Value) -> Incoming {
        self.link
            .publish(
                topic,
                Bytes::from(serde_json::to_vec(&body).unwrap()),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("an answer")
            .expect("link open")
    }

    async fn csr(&mut self, cn: &str, key: &KeyPair) -> CreateCertificateFromCsrResponse {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let csr = params.serialize_request(key).unwrap().pem().unwrap();
        let m = self
            .call(
                fleet::CREATE_FROM_CSR,
                serde_json::json!({ "certificateSigningRequest": csr }),
            )
            .await;
        assert_eq!(m.topic, fleet::CREATE_FROM_CSR_ACCEPTED);
        serde_json::from_slice(&m.payload).unwrap()
    }

    async fn register(
        &mut self,
        template: &str,
        token: &str,
        serial: &str,
    ) -> Result<RegisterThingResponse, ErrorResponse> {
        let m = self
            .call(
                &fleet::provision(template),
                serde_json::json!({
                    "certificateOwnershipToken": token,
                    "parameters": { "SerialNumber": serial },
                }),
            )
            .await;
        if m.topic.ends_with("/accepted") {
            Ok(serde_json::from_slice(&m.payload).unwrap())
        } else {
            Err(serde_json::from_slice(&m.payload).unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_provisioning_has_aws_semantics() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let broker = Broker::start();
    let (cert, key) = broker.client_cert(mqtt_harness::BACKEND_IDENTITY);
    let em = Emulator::start_with_fleet(
        EmulatorConfig {
            link: link(&broker, "backend"),
            identity: Some((cert, key)),
            fixtures: std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures")),
        },
        Some(FleetConfig::new(
            broker.pki().ca_cert_pem(),
            broker.pki().ca_key_pem(),
            TEMPLATE,
        )),
    )
    .await
    .unwrap();
    assert!(em.wait_up(Duration::from_secs(20)).await);
    let fleet = em.fleet().unwrap();
    let mut claim = Client::connect(&broker, "cart-a", broker.pki().claim_cert()).await;

    // A bad token.
    let e = claim
        .register(TEMPLATE, "not-a-token", "cart-a")
        .await
        .unwrap_err();
    assert_eq!(
        (e.status_code, e.error_code.as_str()),
        (400, "InvalidCertificateOwnershipToken")
    );

    // Two CSRs: two pending certificates, different ids.
    let key = KeyPair::generate().unwrap();
    let first = claim.csr("cart-a", &key).await;
    let second = claim.csr("cart-a", &key).await;
    assert_ne!(first.certificate_id, second.certificate_id);
    assert_eq!(
        fleet
            .with_status("cart-a", CertStatus::PendingActivation)
            .len(),
        2
    );

    // Unknown template, another thing name: rejected, still pending.
    let e = claim
        .register("other", &first.certificate_ownership_token, "cart-a")
        .await
        .unwrap_err();
    assert_eq!(
        (e.status_code, e.error_code.as_str()),
        (404, "ResourceNotFound")
    );
    let e = claim
        .register(TEMPLATE, &first.certificate_ownership_token, "cart-b")
        .await
        .unwrap_err();
    assert_eq!(
        (e.status_code, e.error_code.as_str()),
        (403, "AccessDenied")
    );
    assert_eq!(
        fleet
            .with_status("cart-a", CertStatus::PendingActivation)
            .len(),
        2
    );

    // Registered, and again with the same token.
    for _ in 0..2 {
        let r = claim
            .register(TEMPLATE, &first.certificate_ownership_token, "cart-a")
            .await
            .unwrap();
        assert_eq!(r.thing_name, "cart-a");
        assert_eq!(r.device_configuration["topicPrefix"], "carts/cart-a");
    }
    let active = fleet.with_status("cart-a", CertStatus::Active);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, first.certificate_id);
    claim.link.shutdown().await;

    // Another cart's pending certificate is not touched by cart-a's report.
    let mut other = Client::connect(&broker, "cart-b", broker.pki().claim_cert()).await;
    let theirs = other.csr("cart-b", &KeyPair::generate().unwrap()).await;
    other.link.shutdown().await;

    // The first publish with the issued certificate: orphans deleted.
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, &first.certificate_pem).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let device = Client::connect(&broker, "cart-a", (c, k)).await;
    let body = ProvisioningComplete {
        certificate_id: first.certificate_id.clone(),
        orphans: vec![second.certificate_id.clone(), theirs.certificate_id.clone()],
        unanswered_requests: 0,
    };
    device
        .link
        .publish(
            &topics::up("cart-a", Kind::ProvisioningComplete),
            Bytes::from(encode(
                Kind::ProvisioningComplete,
                "cart-a",
                &first.certificate_id,
                Timestamp::now(),
                &body,
            )),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !fleet
        .with_status("cart-a", CertStatus::PendingActivation)
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphans never deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let certs = fleet.certificates("cart-a");
    let orphan = certs
        .iter()
        .find(|c| c.id == second.certificate_id)
        .unwrap();
    assert_eq!(orphan.status, CertStatus::Deleted);
    assert!(orphan.reported_orphan);
    assert_eq!(fleet.with_status("cart-a", CertStatus::Active).len(), 1);
    let b = fleet.certificates("cart-b");
    assert_eq!(
        b[0].status,
        CertStatus::PendingActivation,
        "another cart's certificate"
    );
    assert!(!b[0].reported_orphan);
    device.link.shutdown().await;
    em.shutdown().await;
}
