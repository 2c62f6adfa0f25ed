//! The data key's recovery copy and the read-only recovery export: one copy
//! per recovery key, an additive schema, the export holds what the backend
//! still needs (and nothing settled), no card data in clear, and it opens
//! only with the ledger's own data key.

mod common;

use common::*;
use rusqlite::Connection;
use store_and_forward::datakey::{DataKeyError, KeyEscrow};
use store_and_forward::ledger::{
    Escrowed, ExportError, OutboxClass, RecoveryExport, export_read_only,
};
use store_and_forward::payment::BackendOutcome;
use zeroize::Zeroizing;

/// A stand-in for the ECIES escrow of `cart-app`: "wraps" by appending the
/// context, so the test can read the key back.
struct PlainEscrow(&'static str);

impl KeyEscrow for PlainEscrow {
    fn key_id(&self) -> String {
        self.0.to_owned()
    }

    fn wrap(&self, key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, DataKeyError> {
        let mut v = key.to_vec();
        v.extend_from_slice(context);
        Ok(v)
    }
}

#[test]
fn the_export_holds_what_the_backend_still_needs_sealed_and_opens_with_the_key() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    assert!(ledger.recovery_key_ids().unwrap().is_empty());
    let status = ledger.status(t0()).unwrap();
    assert!(status.recovery_keys.is_empty());

    assert_eq!(
        ledger.escrow_data_key(&PlainEscrow("k1"), t0()).unwrap(),
        Escrowed::Added
    );
    assert_eq!(
        ledger.escrow_data_key(&PlainEscrow("k1"), t0()).unwrap(),
        Escrowed::Present
    );
    assert_eq!(
        ledger.escrow_data_key(&PlainEscrow("k2"), t0()).unwrap(),
        Escrowed::Added
    );
    assert_eq!(ledger.recovery_key_ids().unwrap(), ["k1", "k2"]);

    // Offline approvals (one of them forwarded), an online approval
    // (settled: not exported), and an attempt without a decision.
    let mut forwards = Vec::new();
    for i in 0..3u8 {
        let a = attempt(eur(1_000 + i64::from(i)), i);
        ledger.record_card_read(&a, t0()).unwrap();
        assert!(ledger.decide_offline(&a.key, t0()).unwrap().approved);
        forwards.push(a);
    }
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 1, 1 << 20, t0())
        .unwrap();
    ledger.mark_delivered(&[batch[0].id], t0()).unwrap();
    let online = attempt(eur(555), 9);
    ledger.record_card_read(&online, t0()).unwrap();
    ledger
        .apply_backend_outcome(
            &online.key,
            &BackendOutcome::Approved {
                reference: "ONL-1".into(),
            },
            t0(),
        )
        .unwrap();
    let undecided = attempt(eur(777), 7);
    ledger.record_card_read(&undecided, t0()).unwrap();
    drop(ledger);

    // The file's schema: 4 or later, still readable by schema-1 firmware.
    let conn = Connection::open(fx.path()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 4, "schema {version}");
    let min: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'min_reader_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(min, "1");
    drop(conn);

    let before = std::fs::read(fx.path()).unwrap();
    let export = export_read_only(fx.path(), "cart-9", t0()).unwrap();
    assert_eq!(std::fs::read(fx.path()).unwrap(), before, "read-only");
    assert_eq!(export.cart_id, "cart-9");
    let kinds: Vec<(String, String, String)> = export
        .records
        .iter()
        .map(|r| (r.key.to_string(), r.kind.clone(), r.state.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                forwards[0].key.to_string(),
                "payment_forward".into(),
                "forwarded".into()
            ),
            (
                forwards[1].key.to_string(),
                "payment_forward".into(),
                "offline_approved".into()
            ),
            (
                forwards[2].key.to_string(),
                "payment_forward".into(),
                "offline_approved".into()
            ),
            (
                undecided.key.to_string(),
                "payment_inquiry".into(),
                "card_read".into()
            ),
        ]
    );
    let text = serde_json::to_string(&export).unwrap();
    assert!(!text.contains(TEST_PAN), "card data in clear");
    let back: RecoveryExport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, export);

    // The "wrapped" copy is the key plus the ledger id: open with it.
    let wrapped = export.wrapped_key("k1").unwrap().unwrap();
    assert_eq!(&wrapped[32..], export.ledger_id.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&wrapped[..32]);
    assert_eq!(
        &*key,
        std::fs::read(fx.dir.path().join("data.key"))
            .unwrap()
            .as_slice()
    );
    let opened = export.open(&key).unwrap();
    assert_eq!(opened.len(), 4);
    for ((record, forward), original) in opened
        .iter()
        .zip(forwards.iter().chain(std::iter::once(&undecided)))
    {
        let forward = forward.as_ref().unwrap();
        assert_eq!(record.key, original.key);
        assert_eq!(forward.amount, original.amount);
        assert_eq!(&forward.emv_data[..], &original.card.emv_data[..]);
        assert_eq!(forward.encrypted_blob, original.card.encrypted_blob);
    }
    assert!(matches!(
        export.open(&Zeroizing::new([9u8; 32])),
        Err(ExportError::WrongKey)
    ));
    // One damaged record does not keep the others from opening.
    let mut damaged = export.clone();
    damaged.records[1].card_sealed = damaged.records[0].card_sealed.clone();
    let opened = damaged.open(&key).unwrap();
    assert!(opened[0].1.is_ok() && opened[2].1.is_ok());
    assert!(opened[1].1.is_err());
    assert!(export.wrapped_key("nope").unwrap().is_none());
}
