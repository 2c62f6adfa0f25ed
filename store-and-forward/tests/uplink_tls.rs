//! TLS against a real mosquitto: refused handshakes surface as typed,
//! clear errors and nothing is acknowledged; the client identity can be
//! swapped at runtime; RSA identities load through the ring provider.

mod uplink_support;

use std::sync::Arc;

use bytes::Bytes;
use mqtt_harness::Broker;
use store_and_forward::uplink::{
    LinkConfig, LinkError, LinkHandle, PublishProps, QoS, SwappableClientCert, TlsError,
    TlsFailure, certified_key_from_pem_files, start,
};
use uplink_support::*;

/// Starts a link that cannot connect, waits for its first TLS failures, and
/// checks that it never came up and that nothing is acknowledged.
async fn refused(
    config: LinkConfig,
    id: Arc<SwappableClientCert>,
) -> (LinkHandle, TlsFailure, String) {
    let (link, _rx) = start(config, Some(id), vec![]).expect("start");
    let mut st = link.state();
    tokio::time::timeout(HANG, st.wait_for(|s| s.failures >= 2))
        .await
        .expect("hang guard")
        .expect("alive");
    let s = st.borrow().clone();
    assert!(!s.up);
    assert_eq!(s.connects, 0, "the broker must never have accepted us");
    let r = link
        .publish(
            "carts/cart-1/up/payment",
            Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await;
    assert!(matches!(r, Err(LinkError::Disconnected)), "{r:?}");
    let kind = s
        .tls_failure
        .unwrap_or_else(|| panic!("a TLS failure, typed: {s:?}"));
    (link, kind, s.last_error.expect("a clear error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_refused_as_unknown_ca() {
    let broker = Broker::start();
    let mut cfg = config(&broker, "cart-1");
    cfg.ca_file = Some(broker.pki().foreign_ca_pem_path());
    let (_l, kind, text) = refused(cfg, identity(&broker, "cart-1")).await;
    assert_eq!(kind, TlsFailure::UnknownCa, "{text}");
    assert!(text.contains("TLS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_name_is_refused() {
    let broker = Broker::start();
    let mut cfg = config(&broker, "cart-1");
    cfg.server_name = Some("broker.example.invalid".into());
    let (_l, kind, text) = refused(cfg, identity(&broker, "cart-1")).await;
    assert_eq!(kind, TlsFailure::ServerNameMismatch, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_differing_from_the_host_is_verified_against_the_name() {
    let broker = Broker::start();
    let mut cfg = config(&broker, "cart-1");
    // Dial the IP, verify the certificate's DNS name.
    cfg.server_name = Some("localhost".into());
    let (link, _rx) = link_up_with(cfg, identity(&broker, "cart-1"), &[]).await;
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_certificate_is_refused_by_the_broker() {
    let broker = Broker::start();
    let (cert, key) = broker.pki().expired_client_cert("cart-1");
    let id = Arc::new(SwappableClientCert::new(
        certified_key_from_pem_files(&cert, &key).expect("load"),
    ));
    let (_l, kind, text) = refused(config(&broker, "cart-1"), id).await;
    assert_eq!(kind, TlsFailure::ClientCertRejected, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_a_foreign_ca_is_refused() {
    let broker = Broker::start();
    let (cert, key) = broker.pki().foreign_client_cert("cart-1");
    let id = Arc::new(SwappableClientCert::new(
        certified_key_from_pem_files(&cert, &key).expect("load"),
    ));
    let (_l, kind, text) = refused(config(&broker, "cart-1"), id).await;
    assert_eq!(kind, TlsFailure::ClientCertRejected, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_certificate_is_used_after_reconnect_not_a_resumed_session() {
    // Guards against TLS 1.3 resumption: a resumed session skips client
    // authentication, and mosquitto would keep the old CN as user name.
    let broker = Broker::start();
    let id = identity(&broker, "cart-1");
    let (link, _rx) = link_up_with(config(&broker, "cart-1"), id.clone(), &[]).await;
    let other = |link: LinkHandle| async move {
        link.publish(
            "carts/cart-2/up/t",
            Bytes::new(),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await
    };
    let r = other(link.clone()).await;
    assert!(
        matches!(
            r,
            Err(LinkError::Rejected {
                reason_code: 135,
                ..
            })
        ),
        "{r:?}"
    );
    // Rotation: the new certificate has CN cart-2 (another identity the ACL
    // knows), so the broker's answer tells which one the handshake used.
    let (cert, key) = broker.client_cert("cart-2");
    id.swap(certified_key_from_pem_files(&cert, &key).expect("load"));
    link.reconnect();
    wait_connects(&link, 2).await;
    let ack = other(link.clone())
        .await
        .expect("cart-2's topics now allowed");
    assert_eq!(ack.reason, 16);
    assert!(broker.log().contains("u'cart-2'"), "{}", broker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_identity_works_end_to_end() {
    let broker = Broker::start();
    let (cert, key) = broker.pki().client_cert_for_key("cart-rsa", RSA_TEST_KEY);
    let id = Arc::new(SwappableClientCert::new(
        certified_key_from_pem_files(&cert, &key).expect("RSA key loads"),
    ));
    let (link, _rx) = link_up_with(config(&broker, "cart-rsa"), id, &[]).await;
    link.publish(
        "carts/cart-rsa/up/t",
        Bytes::new(),
        QoS::AtLeastOnce,
        PublishProps::default(),
    )
    .await
    .expect("acknowledged");
}

#[tokio::test]
async fn unusable_identity_files_are_refused_at_load() {
    let broker = Broker::start();
    let (cert, key) = broker.client_cert("cart-1");
    let (_, other_key) = broker.client_cert("cart-1");
    let r = certified_key_from_pem_files(&cert, &other_key);
    assert!(
        matches!(r, Err(TlsError::Key { .. })),
        "mismatched key: {r:?}"
    );
    let r = certified_key_from_pem_files(&key, &key);
    assert!(
        matches!(r, Err(TlsError::NoCertificate(_))),
        "no cert: {r:?}"
    );
    let missing = std::path::Path::new("/nonexistent/cert.pem");
    let r = certified_key_from_pem_files(missing, &key);
    assert!(
        matches!(r, Err(TlsError::Pem { .. })),
        "missing file: {r:?}"
    );
    let mut cfg = config(&broker, "cart-1");
    cfg.ca_file = Some(key.clone());
    let r = start(cfg, None, vec![]);
    assert!(
        matches!(r, Err(LinkError::TlsSetup(TlsError::EmptyCa(_)))),
        "{:?}",
        r.err()
    );
}

/// TEST ONLY: an RSA-2048 key (PKCS#8) made for these tests, never used elsewhere.
const RSA_TEST_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCNQ6gir0DenubQ\n\
WWuWAQl5yUyTqNHEowWIAtb3/omP/5YgMo1K8IaFHX7DiXmplo7ItCyCOtpOj7v4\n\
ldxq8h5KD57afVWhqbZuWRtp9NusPQw0ZcMeSDYxLZ0Bw2WISnADzeGPo+T0xFu9\n\
vDVbTue+rFiKEaRUZ8mRGh+1vsayOKNX4t9Jdj5uweBfMFvvSgjQ5i3Cts38gbTU\n\
X38Hten2Ochq66W0WaE+ECZp+KNrzIckoeNNX70+q1lzUQ6LGxV2Dml1bs4ltx24\n\
lPKdafYkuEjm9xu3hPC19TeIKXp8WAk0D0tDIfXZdKRqx8mOLnFFdSqOp4CmREy9\n\
B5rZGusJAgMBAAECggEABe4P42AuIy+SRVnnmKz+TUDhvctm/i/mC3WruU5+Tvo9\n\
6VKYmKDRqMoE7aePoPVAv6nuj2CclD0s48HDYQWSYhismgPhDG+qczs62cm3+fo4\n\
ZlpaOeMdS+xcAacGlAAkmnLx88dqakr0MJoItwaa1v0hnK7NEjz8GrhOb0uXnYNl\n\
WAlCWpEFF4FxtxGNTG8uY9bqLtaZ2QJ0mrkjahA145SAo+3gHUrhs9OVjH0J2ESj\n\
o5ZhJxsk9HzqUbEHXje58s9NmImBHE16bDopl9Tsby4ftl29XZ+dZEZFzJu2My8P\n\
EBK3TjCVi1vjDJp4V4JbRLDjnMUNVGgZBqP4tebQ3QKBgQC+vpx137FLRunFCi2T\n\
Bai26EEzShZ6Ivraf71bTWQ4cSQZXvYlUh3fgJcVQGn0K/gQe8sym4AyQV8ZwRV9\n\
XKBuGtIbOUiSqYt0IFHddzVdiKFZFhcolHqPUd7/gDLAjkGDF1fx9PPsMcTBfJk2\n\
Cuhit20P5Yl/pFroC2zzgOl07QKBgQC9l5E05Hsas4nbzkw5iGXp1VqWUj75uWEb\n\
1vTeFMmJRyLciIitoZiSNXSI1MLlUPwDMGq9jZvTJAU+PHaisQx4RH/JVlupq+Yt\n\
L3Wis2ft+Dc0oWX5CwTTqAg5DN8R0GEtTYk2hwHqfLXL0qTSfzcQlv8qfQJ7TNO9\n\
wWpzLxOHDQKBgDxIMVpvX7DSsH69QLn+R9vGexSijYf8FhuH02hPhSTxXN9Hy7Lv\n\
yNEh6p2kxdeNLdDHzugnjNRVJKEXDJuZ8nnZsB06dV0kiBYjQLwlOJBe5d8pxBfn\n\
FPTGgxtsgJ2qV7n+XqTxLUWwVOZxYlpaCCdqoOUtPc9BOhmrwrsSOrXhAoGAPqbM\n\
lFcAm1VDNEDbDZQWYYxgsBYju3BYN9Pz/UOPSe8ZBRmVWRNykLZbeTAd65u0e/VP\n\
AK7AFKjtlqByb9bkEQZJ2CXSiqJEoR/y1r5ElO4WiCzhvse2Y58+gGPRf1iGFGtv\n\
8XXx2yQ1C1Ljpq/laXUMg2TmIgrEWguFeuTOpi0CgYEAjjUhV2UtsyZrFmnstrOH\n\
1ucShZPLV4164uTR9Xuc+jAmGIVe6PLmyC9df5bDDnW0l7XSFL2ITFYBWz0yOAN2\n\
LEfj+ekpGhR3DYY/JYiIxSSRQSzlGNu6lWTdoRpYa38++VXW6Y3ezFArZUdKMS8N\n\
/87ZHbPklfLV+jFhZBT7dts=\n\
-----END PRIVATE KEY-----\n\
";
