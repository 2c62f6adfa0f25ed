//! Older firmware reads what newer firmware writes: after a rollback, an
//! outbox record of a kind it does not know is kept and skipped (not
//! quarantined, not an error) and a payment in a state it does not know is
//! reported and left alone, while everything it understands still flows.

mod common;

use common::*;
use rusqlite::Connection;
use store_and_forward::PaymentState;
use store_and_forward::ledger::{OutboxBody, OutboxClass};

#[test]
fn a_ledger_with_a_newer_kind_and_state_opens_and_flows() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let good = attempt(eur(1_000), 1);
    ledger.record_card_read(&good, t0()).unwrap();
    assert!(ledger.decide_offline(&good.key, t0()).unwrap().approved);
    let newer = attempt(eur(2_000), 2);
    ledger.record_card_read(&newer, t0()).unwrap();
    drop(ledger);

    // What newer firmware wrote: a payment in a new state with a record of
    // a new kind, and a control message of a new kind. (Names this firmware
    // does not know: `reversal_pending` and `payment_reversal` were the
    // example here until this firmware learned them.)
    assert_eq!(PaymentState::parse("chargeback_pending"), None);
    {
        let c = Connection::open(fx.path()).unwrap();
        let seq: i64 = c
            .query_row(
                "SELECT seq FROM payments WHERE key = ?1",
                [newer.key.0.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        c.execute(
            "UPDATE payments SET state = 'chargeback_pending' WHERE seq = ?1",
            [seq],
        )
        .unwrap();
        c.execute(
            "INSERT INTO outbox (class, kind, payment_seq, size, created_ms) VALUES (0, 'payment_chargeback', ?1, 0, ?2)",
            rusqlite::params![seq, t0().0],
        )
        .unwrap();
        c.execute(
            "INSERT INTO outbox (class, kind, payload, size, created_ms) VALUES (1, 'staff_list_ack', x'7b7d', 2, ?1)",
            [t0().0],
        )
        .unwrap();
    }

    let (mut ledger, report) = fx.reopen();
    assert!(report.in_doubt.is_empty());
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
        .unwrap();
    assert_eq!(batch.len(), 2, "{batch:?}");
    assert!(
        matches!(&batch[0].body, OutboxBody::Payment(p) if p.key == good.key),
        "{:?}",
        batch[0]
    );
    assert!(
        matches!(&batch[1].body, OutboxBody::Unknown(what) if what.contains("chargeback_pending")),
        "{:?}",
        batch[1]
    );
    // The known one is delivered; the unknown ones stay as they are.
    ledger.mark_delivered(&[batch[0].id], t0()).unwrap();
    let status = ledger.status(t0()).unwrap();
    assert_eq!(
        status.payments.get("chargeback_pending"),
        Some(&1),
        "reported"
    );
    assert_eq!(status.payments.get("forwarded"), Some(&1));
    let depth = |class: &str| {
        status
            .outbox
            .iter()
            .find(|d| d.class == class)
            .map(|d| (d.pending, d.quarantined))
            .unwrap()
    };
    assert_eq!(depth("payment"), (1, 0), "kept, not quarantined");
    assert_eq!(depth("control"), (1, 0), "kept, not quarantined");
    // Reports leave it out instead of failing on it.
    let all = ledger.payments().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].key, good.key);
    let raw: String = Connection::open(fx.path())
        .unwrap()
        .query_row(
            "SELECT state FROM payments WHERE key = ?1",
            [newer.key.0.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, "chargeback_pending", "left alone");
}
