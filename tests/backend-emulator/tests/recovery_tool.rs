//! `cart-recover` as the backend runs it: a recovery export of a ledger
//! whose data key is wrapped to the fleet's recovery key, forwarded through
//! mosquitto to the emulator; every payment charged once, a second run
//! charges nothing new; the wrong recovery key is refused (exit 2).
//! (`cart-app/tests/tpm_recovery.rs` runs the whole story on swtpm.)

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use hal::identity::recovery::RecoveryPublicKey;
use mqtt_harness::Broker;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use store_and_forward::datakey::{DataKeyError, KeyEscrow};
use store_and_forward::ledger::export_read_only;
use store_and_forward::{Currency, Money, NewAttempt, PaymentKey, Timestamp};

struct Escrow(RecoveryPublicKey);

impl KeyEscrow for Escrow {
    fn key_id(&self) -> String {
        self.0.key_id().to_owned()
    }

    fn wrap(&self, key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, DataKeyError> {
        self.0
            .wrap(key, context)
            .map_err(|e| DataKeyError::Escrow(e.to_string()))
    }
}

fn cart_recover(broker: &Broker, export: &Path, key: &Path) -> (i32, String, String) {
    let (cert, client_key) = broker.client_cert(mqtt_harness::BACKEND_IDENTITY);
    let out = Command::new(env!("CARGO_BIN_EXE_cart-recover"))
        .arg("--export")
        .arg(export)
        .arg("--recovery-key")
        .arg(key)
        .args(["--port", &broker.port().to_string(), "--timeout", "30"])
        .arg("--ca")
        .arg(broker.ca_pem_path())
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(client_key)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cart-recover");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_recover_forwards_each_payment_once() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let rng = &mut p256::elliptic_curve::rand_core::OsRng;
    let private = p256::SecretKey::random(rng);
    let key_file = dir.path().join("recovery.key");
    std::fs::write(&key_file, private.to_pkcs8_pem(LineEnding::LF).unwrap()).unwrap();
    let public = RecoveryPublicKey::from_pem(
        &private
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();

    let ledger = open_ledger(dir.path(), roomy_limits());
    let reader = Reader::load();
    let eur = Currency::new("EUR").unwrap();
    let mut sold = Vec::new();
    {
        let mut l = ledger.lock().unwrap();
        l.escrow_data_key(&Escrow(public), Timestamp::now())
            .unwrap();
        for (card, minor) in [("chip-approve", 2_000), ("contactless-approve", 350)] {
            let key = PaymentKey::new();
            let amount = Money::new(minor, eur);
            let a = NewAttempt {
                key,
                amount,
                online_required: false,
                card: reader.read(reader.card(card), &key, amount),
            };
            l.record_card_read(&a, Timestamp::now()).unwrap();
            assert!(l.decide_offline(&key, Timestamp::now()).unwrap().approved);
            sold.push((key, amount));
        }
        // An approval the shopper never saw, its reversal not answered yet
        // when the TPM died: the export carries the reversal.
        let key = PaymentKey::new();
        let amount = Money::new(990, eur);
        let a = NewAttempt {
            key,
            amount,
            online_required: true,
            card: reader.read(reader.card("chip-approve"), &key, amount),
        };
        l.record_card_read(&a, Timestamp::now()).unwrap();
        assert!(!l.decide_offline(&key, Timestamp::now()).unwrap().approved);
        let late = store_and_forward::BackendOutcome::Approved {
            reference: "LATE".into(),
        };
        l.apply_backend_outcome(&key, &late, Timestamp::now())
            .unwrap();
    }
    let export = export_read_only(
        &dir.path().join("ledger.sqlite"),
        "cart-0077",
        Timestamp::now(),
    )
    .unwrap();
    let export_file = dir.path().join("export.json");
    std::fs::write(&export_file, serde_json::to_vec(&export).unwrap()).unwrap();

    let broker = Broker::start();
    let em = emulator(&broker).await;
    for round in 0..2u64 {
        let (code, out, err) = cart_recover(&broker, &export_file, &key_file);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        assert_eq!(out.matches("\"approved\"").count(), 2, "{out}");
        assert!(out.contains("\"answered\":3"), "{out}");
        assert!(out.contains("\"reversal\":\"unknown_payment\""), "{out}");
        assert_eq!(em.counts().charged, 2, "round {round}");
        assert_eq!(em.counts().reversals, round + 1, "round {round}");
        for (key, amount) in &sold {
            let p = em
                .payments()
                .into_iter()
                .find(|p| p.cart == "cart-0077" && p.key == key.to_string())
                .unwrap();
            assert_eq!(p.amount, Some(*amount));
            assert_eq!(p.duplicates, round);
        }
    }

    // Another recovery key: no copy for it, nothing sent.
    let other = dir.path().join("other.key");
    std::fs::write(
        &other,
        p256::SecretKey::random(rng)
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let (code, _, err) = cart_recover(&broker, &export_file, &other);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no data key wrapped to recovery key"), "{err}");
    assert_eq!(em.counts().charged, 2);
    em.shutdown().await;
}
