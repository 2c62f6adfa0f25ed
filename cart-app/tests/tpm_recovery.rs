//! A dead TPM strands no offline payment: the ledger keeps its data key
//! wrapped to the fleet's recovery key; with the TPM gone (a fresh swtpm,
//! the old state destroyed) the ledger no longer opens, `cartctl
//! recovery-export` writes what it owes from the file alone, and the
//! backend's recovery tool forwards each payment so the backend emulator
//! charges it exactly once, with its amount, however often it runs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use cart_app::recovery::{RecoveryState, escrow_at_start};
use cart_app::tpm::CartTpm;
use hal::identity::recovery::RecoveryPrivateKey;
use hal::reader::card::{FingerprintKey, mask_pan};
use hal::reader::carddata::{Binding, ProcessorPublicKey};
use hal::reader::fixtures::{self, TestCards};
use hal::reader::message::{Currency as HalCurrency, EntryMode as HalEntryMode};
use mqtt_harness::Broker;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use store_and_forward::ledger::RecoveryExport;
use store_and_forward::payment::BackendOutcome;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::uplink::{self, SwappableClientCert};
use store_and_forward::{
    CardRead, Currency, EntryMode, Ledger, LedgerConfig, LedgerError, Money, NewAttempt,
    PaymentKey, Timestamp,
};
use swtpm_harness::Swtpm;

const CART: &str = "cart-0042";

/// The reader's side of a card read, with the real card-data encryption to
/// the test processor key (so the emulator can decide and charge).
struct Reader {
    cards: TestCards,
    processor: ProcessorPublicKey,
    fingerprint: FingerprintKey,
}

impl Reader {
    fn load() -> Reader {
        let dir = support::fixtures();
        Reader {
            cards: TestCards::load(&dir.join(fixtures::TEST_CARDS)).unwrap(),
            processor: fixtures::load_processor_public_key(&dir.join(fixtures::PROCESSOR_KEY))
                .unwrap(),
            fingerprint: fixtures::load_fingerprint_key(&dir.join(fixtures::FINGERPRINT_KEY))
                .unwrap(),
        }
    }

    fn read(&self, card: &str, key: &PaymentKey, amount: Money) -> CardRead {
        let card = self.cards.get(card).unwrap();
        let b = amount.currency.as_str().as_bytes();
        let binding = Binding {
            key: key.0,
            amount_minor: amount.minor as u64,
            currency: HalCurrency::from_bytes([b[0], b[1], b[2]]).unwrap(),
        };
        CardRead {
            masked_pan: mask_pan(&card.pan).unwrap().as_str().to_owned(),
            fingerprint: self.fingerprint.fingerprint(&card.pan).0.to_vec(),
            emv_data: vec![0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x42, 0x17],
            encrypted_blob: card.seal(&self.processor, &binding).unwrap(),
            entry_mode: match card.entry_mode {
                HalEntryMode::Contactless => EntryMode::Contactless,
                _ => EntryMode::Chip,
            },
        }
    }
}

fn open_ledger(tpm: &CartTpm, path: &Path) -> Result<Ledger, LedgerError> {
    let limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 100_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 1_000_000)].into(),
        max_outstanding_count: 100,
        velocity_max_per_card: 100,
        ..LimitsConfig::default()
    }
    .validate("offline")
    .unwrap();
    Ledger::open(
        LedgerConfig {
            path: path.to_path_buf(),
            payment_reserve_bytes: 0,
            ..LedgerConfig::default()
        },
        limits,
        Box::new(tpm.counter().unwrap()),
        &mut tpm.data_key(),
        Timestamp::now(),
    )
    .map(|(l, _)| l)
}

fn cartctl(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cartctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cartctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tpm_strands_no_offline_payment_each_is_charged_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    // The fleet's recovery key pair: the public half on the cart, the
    // private half with the backend.
    let private = p256::SecretKey::random(&mut rand_core_rng());
    let public_pem = dir.path().join("recovery-public.pem");
    std::fs::write(
        &public_pem,
        private
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let backend_key =
        RecoveryPrivateKey::from_pem(&private.to_pkcs8_pem(LineEnding::LF).unwrap()).unwrap();
    let key_id = backend_key.public().key_id().to_owned();

    // The cart: the ledger on the TPM, the recovery copy made at start.
    let sim = Swtpm::start();
    let mut tpm_config = support::tpm_config(sim.tcti());
    let tpm = CartTpm::open(tpm_config.clone()).unwrap();
    let mut ledger = open_ledger(&tpm, &ledger_path).unwrap();
    assert_eq!(
        escrow_at_start(&mut ledger, &tpm_config),
        RecoveryState::NotConfigured
    );
    tpm_config.recovery_public_key = Some(public_pem.clone());
    assert_eq!(
        escrow_at_start(&mut ledger, &tpm_config),
        RecoveryState::Escrowed {
            key_id: key_id.clone(),
            added: true
        }
    );
    assert_eq!(
        escrow_at_start(&mut ledger, &tpm_config),
        RecoveryState::Escrowed {
            key_id: key_id.clone(),
            added: false
        },
        "one copy per recovery key"
    );

    // Offline payments, and one attempt a crash left without a decision.
    ledger.record_backend_contact(Timestamp::now()).unwrap();
    let reader = Reader::load();
    let eur = Currency::new("EUR").unwrap();
    let sales = [
        ("chip-approve", 1_250),
        ("contactless-approve", 899),
        ("chip-pin-approve", 4_321),
        ("decline-when-forwarded", 1_500),
    ];
    let mut expected = Vec::new();
    for (card, minor) in sales {
        let key = PaymentKey::new();
        let amount = Money::new(minor, eur);
        let attempt = NewAttempt {
            key,
            amount,
            online_required: false,
            card: reader.read(card, &key, amount),
        };
        ledger.record_card_read(&attempt, Timestamp::now()).unwrap();
        assert!(
            ledger
                .decide_offline(&key, Timestamp::now())
                .unwrap()
                .approved
        );
        expected.push((key, amount, attempt.card));
    }
    let undecided = PaymentKey::new();
    let amount = Money::new(700, eur);
    ledger
        .record_card_read(
            &NewAttempt {
                key: undecided,
                amount,
                online_required: false,
                card: reader.read("chip-approve", &undecided, amount),
            },
            Timestamp::now(),
        )
        .unwrap();
    drop(ledger);
    drop(tpm);

    // The TPM dies: its state is gone; a new one sits in its place.
    drop(sim);
    let sim = Swtpm::start();
    let tpm = CartTpm::open(support::tpm_config(sim.tcti())).unwrap();
    let refused = open_ledger(&tpm, &ledger_path).unwrap_err();
    assert!(
        matches!(refused, LedgerError::WrongDataKey { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("cartctl recovery-export"));
    drop(tpm);

    // The technician: status shows the recovery copy, the export is 0600
    // and holds no card data in clear.
    let config = dir.path().join("cart.toml");
    std::fs::write(
        &config,
        format!(
            "cart_id = \"{CART}\"\n[ledger]\npath = \"{0}\"\n[control]\nsocket = \"{1}/control.sock\"\n[tpm]\nrecovery_public_key = \"{2}\"\n",
            ledger_path.display(),
            dir.path().display(),
            public_pem.display()
        ),
    )
    .unwrap();
    let (code, out, err) = cartctl(&config, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("data key wrapped to recovery key {key_id}")),
        "{out}"
    );
    let export_file = dir.path().join("export.json");
    let out_arg = export_file.to_str().unwrap();
    let (code, out, err) = cartctl(&config, &["recovery-export", "--out", out_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 forwards and 1 inquiries"), "{out}");
    let mode = std::fs::metadata(&export_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let (code, _, err) = cartctl(&config, &["recovery-export", "--out", out_arg]);
    assert_ne!(code, 0, "an export is never overwritten: {err}");
    let text = std::fs::read_to_string(&export_file).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (_, _, card) in &expected {
        for secret in [&card.emv_data, &card.encrypted_blob] {
            assert!(!text.contains(&b64.encode(secret)), "card data in clear");
            assert!(!text.contains(&hex::encode(secret)), "card data in clear");
        }
    }
    for pan in ["4111111111111111", "4242424242424242", "5555555555554444"] {
        assert!(!text.contains(pan));
    }
    let export: RecoveryExport = serde_json::from_str(&text).unwrap();
    assert_eq!(export.cart_id, CART);
    assert_eq!(export.records.len(), 5);

    // The backend: unwrap, unseal, forward; each payment charged once.
    let broker = Broker::start();
    let em = support::emulator(&broker, Duration::from_secs(3600)).await;
    let run = || async {
        let (cert, key) = broker.client_cert(mqtt_harness::BACKEND_IDENTITY);
        let swap = std::sync::Arc::new(SwappableClientCert::new(
            uplink::certified_key_from_pem_files(&cert, &key).unwrap(),
        ));
        let (link, mut incoming) = uplink::start(
            support::link(&broker, "recovery"),
            Some(swap),
            vec![backend_emulator::recovery::subscription(CART)],
        )
        .unwrap();
        assert!(link.wait_up(Duration::from_secs(20)).await);
        let report = backend_emulator::recovery::recover(
            &export,
            &backend_key,
            &link,
            &mut incoming,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        link.shutdown().await;
        report
    };
    for round in 0..2 {
        let report = run().await;
        assert!(report.unanswered.is_empty(), "round {round}: {report:?}");
        assert!(report.unreadable.is_empty(), "round {round}: {report:?}");
        assert_eq!(report.outcomes.len(), 5);
        for (i, (key, _, _)) in expected.iter().enumerate() {
            let outcome = &report.outcomes[&key.to_string()];
            if i < 3 {
                assert!(
                    matches!(outcome, BackendOutcome::Approved { .. }),
                    "{outcome:?}"
                );
            } else {
                assert!(
                    matches!(outcome, BackendOutcome::Declined { .. }),
                    "{outcome:?}"
                );
            }
        }
        assert_eq!(
            report.outcomes[&undecided.to_string()],
            BackendOutcome::Unknown,
            "an attempt without a decision is closed, never charged"
        );
        let counts = em.counts();
        assert_eq!(counts.charged, 3, "round {round}: charged once each");
        assert_eq!(counts.payments, 5, "round {round}");
        let seen = em.payments();
        for (key, amount, _) in &expected {
            let p = seen
                .iter()
                .find(|p| p.cart == CART && p.key == key.to_string())
                .unwrap();
            assert_eq!(p.amount, Some(*amount));
            assert_eq!(p.duplicates, round);
        }
    }

    // A recovery key the cart never wrapped to opens nothing.
    let stranger = RecoveryPrivateKey::from_key(p256::SecretKey::random(&mut rand_core_rng()));
    let (link, mut incoming) = uplink::start(
        support::link(&broker, "stranger"),
        None,
        vec![backend_emulator::recovery::subscription(CART)],
    )
    .unwrap();
    let refused = backend_emulator::recovery::recover(
        &export,
        &stranger,
        &link,
        &mut incoming,
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, backend_emulator::recovery::RecoverError::NoCopy(_)),
        "{refused}"
    );
    link.shutdown().await;
    em.shutdown().await;
}

fn rand_core_rng() -> p256::elliptic_curve::rand_core::OsRng {
    p256::elliptic_curve::rand_core::OsRng
}
