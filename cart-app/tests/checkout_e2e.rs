//! A whole checkout end to end: the reader simulator on a real
//! pseudo-terminal (encrypting to the test processor key), the ledger on a
//! real file, the uplink over mutual TLS to a real mosquitto, and the
//! backend emulator deciding by the test cards.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backend_emulator::{Emulator, EmulatorConfig};
use cart_app::checkout::{Checkout, PayEvent, Shown};
use cart_app::receipt::ReceiptSigner;
use hal::reader::driver::{DriverConfig, SerialReader};
use hal::reader::message::UiEvent;
use hal::reader::sim::{SimConfig, SimHandle, spawn_pty};
use mqtt_harness::Broker;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::policy::{LimitsConfig, OfflineReason};
use store_and_forward::sync::{SyncConfig, Uplink};
use store_and_forward::uplink::{self, LinkConfig, SwappableClientCert};
use store_and_forward::{Currency, Ledger, LedgerConfig, Money, PaymentState, Timestamp};

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

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

struct Rig {
    _broker: Broker,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    emulator: Emulator,
    ledger: Arc<Mutex<Ledger>>,
    checkout: Checkout,
    /// The cart's certificate (DER), for the receipts' check.
    cert_der: Vec<u8>,
    sim: SimHandle,
    reader: SerialReader<serialport::TTYPort>,
}

fn rig() -> Rig {
    let broker = Broker::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cert, key) = broker.client_cert("backend");
    let emulator = rt.block_on(async {
        let em = Emulator::start(EmulatorConfig {
            link: link(&broker, "backend"),
            identity: Some((cert, key)),
            fixtures: fixtures(),
        })
        .await
        .unwrap();
        assert!(em.wait_up(Duration::from_secs(20)).await);
        em
    });
    let dir = tempfile::tempdir().unwrap();
    let limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 5_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 50_000)].into(),
        ..LimitsConfig::default()
    }
    .validate("offline")
    .unwrap();
    let (mut l, _) = Ledger::open(
        LedgerConfig {
            path: dir.path().join("ledger.sqlite"),
            payment_reserve_bytes: 0,
            ..LedgerConfig::default()
        },
        limits,
        Box::new(FileCounter::open(dir.path().join("counter"), 4_242).unwrap()),
        &mut FileDataKey::new(dir.path().join("data.key")),
        Timestamp::now(),
    )
    .unwrap();
    l.record_backend_contact(Timestamp::now()).unwrap();
    let ledger = Arc::new(Mutex::new(l));
    let id = "cart-0300";
    let (c, k) = broker.client_cert(id);
    let cert = Arc::new(SwappableClientCert::new(
        uplink::certified_key_from_pem_files(&c, &k).unwrap(),
    ));
    let cert_der = CertificateDer::from_pem_file(&c).unwrap().to_vec();
    let receipts = ReceiptSigner::new(RECEIPTS, id, cert.clone());
    let uplink = {
        let _g = rt.enter();
        let (link, incoming) =
            uplink::start(link(&broker, id), Some(cert), Uplink::subscriptions(id)).unwrap();
        let sync = SyncConfig {
            cart_id: id.into(),
            drain_interval_ms: 100,
            telemetry_linger_secs: 0,
            ..SyncConfig::default()
        };
        let u = Uplink::new(sync, ledger.clone(), link, None);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(_tx);
        rt.spawn(u.clone().run(incoming, rx));
        u
    };
    assert!(rt.block_on(uplink.link().wait_up(Duration::from_secs(20))));
    let checkout =
        Checkout::new(ledger.clone(), Some((uplink, rt.handle().clone()))).with_receipts(receipts);
    let sim = spawn_pty(SimConfig::from_fixtures(&fixtures()).unwrap()).unwrap();
    let reader = SerialReader::open(sim.path().to_str().unwrap(), DriverConfig::default()).unwrap();
    Rig {
        _broker: broker,
        _dir: dir,
        rt,
        emulator,
        ledger,
        checkout,
        cert_der,
        sim,
        reader,
    }
}

const RECEIPTS: &str = "https://receipts.example.com/r";

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::new("EUR").unwrap())
}

fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn online_offline_over_limit_and_declined_checkouts() {
    let mut r = rig();
    let never = || false;

    // Online approval, with the reader's prompts mirrored.
    r.sim.queue_card("chip-approve");
    let mut prompts = Vec::new();
    let res = r
        .checkout
        .pay(
            &mut r.reader,
            eur(2_340),
            false,
            &mut |e| prompts.push(e),
            &never,
        )
        .unwrap();
    assert!(matches!(res.shown, Shown::ApprovedOnline { .. }), "{res:?}");
    assert_eq!(res.state, Some(PaymentState::OnlineApproved));
    assert!(
        prompts.contains(&PayEvent::Prompt(UiEvent::PresentCard)),
        "{prompts:?}"
    );
    assert_eq!(res.masked_pan.as_deref(), Some("411111******1111"));
    // Its receipt: signed by the cart, the payment charged at the backend.
    let online_receipt = res.receipt_code.clone().expect("an approval has a receipt");
    assert!(online_receipt.starts_with(RECEIPTS), "{online_receipt}");
    let verdict = r
        .emulator
        .check_receipt(&online_receipt, &r.cert_der)
        .expect("the receipt verifies");
    assert!(verdict.charged && !verdict.claim.offline, "{verdict:?}");
    assert_eq!(verdict.claim.key, res.key);
    assert_eq!(verdict.claim.amount, eur(2_340));
    // Changed on the way, it is refused.
    let forged = online_receipt.replace("a=2340", "a=234");
    assert!(
        r.emulator.check_receipt(&forged, &r.cert_der).is_err(),
        "{forged}"
    );

    // Declined online by the processor.
    r.sim.queue_card("decline-insufficient-funds");
    let res = r
        .checkout
        .pay(&mut r.reader, eur(1_000), false, &mut |_| {}, &never)
        .unwrap();
    assert!(matches!(res.shown, Shown::DeclinedOnline { .. }), "{res:?}");
    assert_eq!(res.receipt_code, None, "no receipt for a decline");

    // Link cut: approved offline within limits, declined over the cap.
    r.checkout
        .online_switch()
        .store(false, std::sync::atomic::Ordering::SeqCst);
    r.sim.queue_card("contactless-approve");
    let offline = r
        .checkout
        .pay(&mut r.reader, eur(4_500), false, &mut |_| {}, &never)
        .unwrap();
    assert_eq!(offline.shown, Shown::ApprovedOffline);
    // Signed offline: genuine, not known at the backend yet.
    let offline_receipt = offline.receipt_code.clone().expect("a receipt");
    let verdict = r
        .emulator
        .check_receipt(&offline_receipt, &r.cert_der)
        .expect("the offline receipt verifies");
    assert!(
        verdict.claim.offline && verdict.payment.is_none(),
        "{verdict:?}"
    );
    // Over the per-payment cap while the link is known to be down: refused
    // before the reader is started (no card is asked for, nothing recorded).
    let mut over_prompts = Vec::new();
    let over = r
        .checkout
        .pay(
            &mut r.reader,
            eur(9_999),
            false,
            &mut |e| over_prompts.push(e),
            &never,
        )
        .unwrap();
    let Shown::RefusedBeforeCard { reasons } = &over.shown else {
        panic!("{over:?}")
    };
    assert!(over_prompts.is_empty(), "{over_prompts:?}");
    assert!(
        r.ledger
            .lock()
            .unwrap()
            .payment(&over.key)
            .unwrap()
            .is_none()
    );
    assert!(
        reasons
            .iter()
            .any(|x| matches!(x, OfflineReason::PerPaymentCap { cap: 5_000, .. })),
        "{reasons:?}"
    );

    // The link returns: the offline approval is forwarded and confirmed.
    r.checkout
        .online_switch()
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(30, "offline approval confirmed", || {
        r.ledger
            .lock()
            .unwrap()
            .payment(&offline.key)
            .unwrap()
            .map(|p| p.state)
            == Some(PaymentState::Confirmed)
    });
    let counts = r.emulator.counts();
    assert_eq!(counts.charged, 2, "{counts:?}");
    let verdict = r
        .emulator
        .check_receipt(&offline_receipt, &r.cert_der)
        .unwrap();
    assert!(verdict.charged, "forwarded and charged: {verdict:?}");
    assert_eq!(
        counts.undecryptable, 0,
        "the reader's ciphertext reached the processor"
    );

    // A card that cannot be read: nothing committed.
    r.sim.queue_card("unreadable");
    let res = r
        .checkout
        .pay(&mut r.reader, eur(100), false, &mut |_| {}, &never)
        .unwrap();
    assert!(matches!(res.shown, Shown::NoCard { .. }), "{res:?}");
    assert!(
        r.ledger
            .lock()
            .unwrap()
            .payment(&res.key)
            .unwrap()
            .is_none()
    );
    r.rt.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
}
