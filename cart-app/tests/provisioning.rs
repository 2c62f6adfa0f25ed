//! Provisioning and rotation in-process against real mosquitto, swtpm and
//! the backend emulator's fleet-provisioning responder: the Wi-Fi keyfile
//! (and the password kept out of every log line), the certificate, the
//! emulator's registry, the claim deleted, the key's attributes; then a
//! rotation asked by the backend, a whole mutual-TLS session with the new
//! key, signatures that verify against the certificate's key, the old key
//! evicted and the old certificate deactivated.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backend_emulator::CertStatus;
use cart_app::provision::{
    self, Context, ProvisionError, ProvisioningConfig, Step, WifiConfig, cert, fleet, rotation,
};
use cart_app::tpm::CartTpm;
use hal::identity::verify_message;
use mqtt_harness::Broker;
use store_and_forward::Timestamp;
use store_and_forward::uplink::{self, SwappableClientCert};
use support::*;
use swtpm_harness::Swtpm;

/// Every log line of this test binary, at TRACE level, from every thread.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_by_claim_then_rotates_and_talks_with_the_new_key() {
    let logs = captured_logs();
    let broker = Broker::start();
    let swtpm = Swtpm::start();
    let em = emulator(&broker, Duration::from_secs(3600)).await;
    let cart_dir = CartDir::new(&broker);
    let cart = "cart-0101";
    let tpm = CartTpm::open(tpm_config(swtpm.tcti())).unwrap();
    let ledger = open_ledger(&tpm, &cart_dir.ledger_path());
    let link = link(&broker, cart);
    // A Wi-Fi cart: no QR code scanned and none configured, the UI must
    // ask for one; a WEP code is refused before NetworkManager is asked,
    // without its password in the error. (Joining runs in the QEMU guest.)
    let wifi_config = ProvisioningConfig {
        wifi: WifiConfig::default(),
        ..cart_dir.config.clone()
    };
    let wifi_ctx = Context {
        config: &wifi_config,
        cart_id: cart,
        link: &link,
        tpm: &tpm,
        ledger: &ledger,
    };
    assert!(matches!(
        provision::run(&wifi_ctx, None).await,
        Err(ProvisionError::NeedNetwork)
    ));
    let mut wep = hal::scanner::nonproduct::parse_wifi(WIFI_QR).unwrap();
    wep.security = hal::scanner::WifiSecurity::Wep;
    let refused = provision::run(&wifi_ctx, Some(wep)).await.unwrap_err();
    assert!(matches!(refused, ProvisionError::Wifi(_)), "{refused}");
    assert!(!refused.to_string().contains(WIFI_PASSWORD));

    // Wired from here on.
    let ctx = Context {
        config: &cart_dir.config,
        cart_id: cart,
        link: &link,
        tpm: &tpm,
        ledger: &ledger,
    };
    let p = provision::run(&ctx, None).await.expect("provisioned");

    // Steps 3 and 4: one active certificate, stored 0644, claim gone.
    let certs = em.fleet().unwrap().certificates(cart);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0].status, CertStatus::Active);
    assert_eq!(certs[0].id, p.certificate_id);
    assert_eq!(certs[0].thing.as_deref(), Some(cart));
    let mode = std::fs::metadata(&p.certificate)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
    assert!(!cart_dir.config.claim_cert.exists() && !cart_dir.config.claim_key.exists());
    let status = provision::status(&ledger.lock().unwrap(), Timestamp::now()).unwrap();
    assert_eq!(status.step, Step::Provisioned);
    assert_eq!(
        status.certificate_id.as_deref(),
        Some(p.certificate_id.as_str())
    );
    assert!(status.days_left.unwrap() > 300, "{status:?}");
    assert_eq!(status.active_handle.as_deref(), Some("0x81000100"));

    // Rotation by lifetime: not due now, due at 85 % of the validity
    // (rotate_at_fraction 0.8); the expiry is logged at WARN when close.
    assert_eq!(rotation::due(&ctx, Timestamp::now()).unwrap(), None);
    let late = Timestamp(p.not_before.0 + (p.not_after.0 - p.not_before.0) * 85 / 100);
    assert_eq!(
        rotation::due(&ctx, late).unwrap(),
        Some(rotation::Trigger::Lifetime)
    );
    let soon = cert::expiry(
        p.not_after,
        Timestamp(p.not_after.0 - 3 * 86_400_000 - 1),
        30,
    );
    assert_eq!(soon.days_left, 3);

    // Running it again changes nothing.
    let again = provision::run(&ctx, None).await.unwrap();
    assert_eq!(again.certificate_id, p.certificate_id);
    assert_eq!(em.fleet().unwrap().certificates(cart).len(), 1);

    // Rotation, asked by the backend, over the cart's own connection.
    let swap = Arc::new(SwappableClientCert::new(p.certified_key.clone()));
    let (dlink, incoming) = uplink::start(
        link.clone(),
        Some(swap.clone()),
        fleet::subscriptions(support::TEMPLATE),
    )
    .unwrap();
    assert!(dlink.wait_up(Duration::from_secs(20)).await);
    let mut client = fleet::FleetClient::over(
        dlink.clone(),
        incoming,
        support::TEMPLATE,
        Duration::from_secs(20),
    );
    let trigger = rotation::Trigger::Request { id: "rot-1".into() };
    let r = rotation::rotate(&ctx, &mut client, &dlink, &swap, trigger.clone())
        .await
        .expect("rotated");
    assert_ne!(r.certificate_id, p.certificate_id);
    assert_eq!(r.key_handle, 0x8100_0101);
    // The same request again is a no-op.
    let same = rotation::rotate(&ctx, &mut client, &dlink, &swap, trigger)
        .await
        .unwrap();
    assert_eq!(same.certificate_id, r.certificate_id);
    dlink.shutdown().await;
    // The emulator: new active, old inactive, exactly one active.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let old = em.fleet().unwrap().certificates(cart);
        if old.iter().any(|c| c.status == CertStatus::Inactive) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old certificate never deactivated: {old:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let active = em.fleet().unwrap().with_status(cart, CertStatus::Active);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, r.certificate_id);

    // The old key is gone, the new one active; its signatures verify
    // against the certificate's key; a whole mutual-TLS session works.
    let handles = tpm.tpm().persistent_handles().unwrap();
    assert!(!handles.contains(&0x8100_0100), "{handles:x?}");
    assert!(handles.contains(&0x8100_0101), "{handles:x?}");
    let loaded = provision::load(&ctx).await.unwrap().unwrap();
    assert_eq!(loaded.certificate_id, r.certificate_id);
    let (_, info) = cert::read_file(&cart_dir.config.certificate).unwrap();
    let spki = info.spki.clone();
    let point = {
        // The SEC1 point is the SPKI's last 65 bytes (P-256, uncompressed).
        spki[spki.len() - 65..].to_vec()
    };
    for msg in [&b"rotation"[..], b"another message"] {
        let sig = loaded.identity.sign_message(msg).unwrap();
        assert!(verify_message(&point, msg, &sig));
        assert!(!verify_message(&point, b"tampered", &sig));
    }
    mutual_tls_session(&broker, cart, loaded.identity.clone(), &loaded.certificate)
        .await
        .expect("mutual TLS with the rotated key");
    let status = provision::status(&ledger.lock().unwrap(), Timestamp::now()).unwrap();
    assert_eq!(status.active_handle.as_deref(), Some("0x81000101"));
    assert_eq!(status.rotation, None);
    assert!(!cart_dir.config.next_certificate().exists());

    // Not once in any log line of the whole run.
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("device key ready"), "logs were captured");
    assert!(
        !text.contains(WIFI_PASSWORD),
        "the Wi-Fi password was logged"
    );
    // rotation_complete reached the backend (PUBACK) before the old key
    // was evicted: until then the old pair is the fallback.
    let published = text.find("certificate rotation complete");
    let evicted = text.find("old device key evicted");
    assert!(
        matches!((published, evicted), (Some(p), Some(e)) if p < e),
        "rotation_complete before the eviction: {published:?} {evicted:?}"
    );
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_template_is_rejected_with_aws_error_fields_and_resumes_once_fixed() {
    let broker = Broker::start();
    let swtpm = Swtpm::start();
    let em = emulator(&broker, Duration::from_secs(3600)).await;
    let mut cart_dir = CartDir::new(&broker);
    cart_dir.config.wifi.enabled = false;
    cart_dir.config.template = "no-such-template".into();
    let cart = "cart-0102";
    let tpm = CartTpm::open(tpm_config(swtpm.tcti())).unwrap();
    let ledger = open_ledger(&tpm, &cart_dir.ledger_path());
    let link = link(&broker, cart);
    let ctx = Context {
        config: &cart_dir.config,
        cart_id: cart,
        link: &link,
        tpm: &tpm,
        ledger: &ledger,
    };
    match provision::run(&ctx, None).await {
        Err(ProvisionError::Rejected {
            call,
            status_code,
            error_code,
            ..
        }) => {
            assert_eq!(call, "RegisterThing");
            assert_eq!(status_code, 404);
            assert_eq!(error_code, "ResourceNotFound");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The issued certificate stays pending; the right template resumes
    // with the recorded token: no second certificate.
    let mut fixed = cart_dir.config.clone();
    fixed.template = support::TEMPLATE.into();
    let ctx = Context {
        config: &fixed,
        ..ctx
    };
    let p = provision::run(&ctx, None).await.unwrap();
    let certs = em.fleet().unwrap().certificates(cart);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0].id, p.certificate_id);
    let status = provision::status(&ledger.lock().unwrap(), Timestamp::now()).unwrap();
    assert!(status.provisioned);
    em.shutdown().await;
}
