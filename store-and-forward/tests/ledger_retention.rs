//! Retention and sequences: maintenance deletes in bounded steps, delivered
//! telemetry gives way to the quota first, and outbox ids (the telemetry
//! sequence the backend deduplicates on) never come again, also when older
//! firmware writes the file after a rollback.

mod common;

use common::*;
use rusqlite::Connection;
use store_and_forward::ledger::OutboxClass;
use store_and_forward::telemetry::TelemetryEvent;

fn reading(i: u64) -> TelemetryEvent {
    TelemetryEvent::Reading {
        at: t0(),
        seq: i,
        temperature_c: 21.5,
        battery_pct: 80,
        rssi_dbm: -60,
        state: "idle".into(),
        position: None,
    }
}

fn deliver_all(ledger: &mut store_and_forward::Ledger, class: OutboxClass) -> Vec<i64> {
    let mut all = Vec::new();
    loop {
        let b = ledger.take_batch(class, 0, 1_000, 1 << 22, t0()).unwrap();
        if b.is_empty() {
            return all;
        }
        let ids: Vec<i64> = b.iter().map(|r| r.id).collect();
        ledger.mark_delivered(&ids, t0()).unwrap();
        all.extend(ids);
    }
}

#[test]
fn purging_the_newest_records_never_hands_their_ids_out_again() {
    let mut fx = Fixture::new();
    fx.config.retention_secs = 60;
    let mut ledger = fx.open();
    let events: Vec<_> = (0..10).map(reading).collect();
    ledger.enqueue_telemetry(&events, t0()).unwrap();
    let first = deliver_all(&mut ledger, OutboxClass::Telemetry);
    let highest = *first.iter().max().unwrap();
    let report = ledger.maintain(t0().plus_secs(120)).unwrap();
    assert_eq!(report.totals.purged_delivered, 10, "{report:?}");
    ledger.enqueue_telemetry(&[reading(10)], t0()).unwrap();
    let second = deliver_all(&mut ledger, OutboxClass::Telemetry);
    assert_eq!(second.len(), 1);
    assert!(
        second[0] > highest,
        "id {} handed out again (highest was {highest})",
        second[0]
    );
    // One sequence mark at most, and nothing reads it as a record.
    let marks: i64 = Connection::open(fx.path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM outbox WHERE status = 3", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(marks <= 1, "{marks} sequence marks");
    let depth = ledger.outbox_depth().unwrap();
    assert!(depth.iter().all(|d| d.pending == 0 && d.quarantined == 0));
}

/// Firmware of schema 1 (today's code before this change) inserts with
/// `max(id) + 1` and deletes with its own statements: after a rollback the
/// sequence still only goes up, and it still opens the file.
#[test]
fn older_firmware_after_a_rollback_continues_the_sequence() {
    let mut fx = Fixture::new();
    fx.config.retention_secs = 60;
    let mut ledger = fx.open();
    let events: Vec<_> = (0..20).map(reading).collect();
    ledger.enqueue_telemetry(&events, t0()).unwrap();
    let ids = deliver_all(&mut ledger, OutboxClass::Telemetry);
    let highest = *ids.iter().max().unwrap();
    drop(ledger);

    let old = Connection::open(fx.path()).unwrap();
    let min_reader: String = old
        .query_row(
            "SELECT value FROM meta WHERE key = 'min_reader_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(min_reader, "1", "schema-1 firmware must still open it");
    // The old purge statement, verbatim.
    let purged = old
        .execute(
            "DELETE FROM outbox WHERE status = 1 AND done_ms < ?1",
            [t0().plus_secs(120).0],
        )
        .unwrap();
    assert_eq!(purged, 20);
    // The old insert: no id given, SQLite picks max(id) + 1.
    old.execute(
        "INSERT INTO outbox (class, kind, payment_seq, payload, size, created_ms)
         VALUES (2, 'telemetry', NULL, x'7b7d', 2, ?1)",
        [t0().0],
    )
    .unwrap();
    let id = old.last_insert_rowid();
    assert!(id > highest, "old firmware got id {id} again");
    // The old quota shedding deletes the newest pending rows too.
    old.execute(
        "DELETE FROM outbox WHERE class = 2 AND status = 0 AND id <= ?1",
        [id],
    )
    .unwrap();
    old.execute(
        "INSERT INTO outbox (class, kind, payment_seq, payload, size, created_ms)
         VALUES (2, 'telemetry', NULL, x'7b7d', 2, ?1)",
        [t0().0],
    )
    .unwrap();
    assert!(old.last_insert_rowid() > id);
    drop(old);

    // And the new firmware opens what the old one wrote.
    let (ledger, _) = fx.reopen();
    let pending = ledger
        .take_batch(OutboxClass::Telemetry, 0, 10, 1 << 20, t0())
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].id > id);
}

#[test]
fn maintenance_steps_are_bounded_and_resume() {
    let mut fx = Fixture::new();
    fx.config.retention_secs = 60;
    let mut ledger = fx.open();
    for chunk in 0..4 {
        let events: Vec<_> = (chunk * 500..chunk * 500 + 500).map(reading).collect();
        ledger.enqueue_telemetry(&events, t0()).unwrap();
    }
    assert_eq!(
        deliver_all(&mut ledger, OutboxClass::Telemetry).len(),
        2_000
    );
    let later = t0().plus_secs(120);
    let mut steps = 0;
    let mut purged = 0;
    loop {
        let s = ledger.maintain_step(later, 300).unwrap();
        assert!(s.purged_delivered <= 300, "{s:?}");
        purged += s.purged_delivered;
        steps += 1;
        if !s.more {
            break;
        }
        assert!(steps < 100, "maintenance never ends");
    }
    assert_eq!(purged, 2_000);
    assert!(steps >= 7, "2,000 rows in steps of 300 took {steps} steps");
    assert_eq!(ledger.delivered_telemetry_bytes(), 0);
}

#[test]
fn delivered_telemetry_gives_way_to_the_quota_before_undelivered() {
    let mut fx = Fixture::new();
    fx.config.telemetry_quota_bytes = 20_000;
    let mut ledger = fx.open();
    let events: Vec<_> = (0..100).map(reading).collect();
    ledger.enqueue_telemetry(&events, t0()).unwrap();
    let delivered = deliver_all(&mut ledger, OutboxClass::Telemetry);
    assert_eq!(delivered.len(), 100);
    let delivered_bytes = ledger.delivered_telemetry_bytes();
    assert!(delivered_bytes > 10_000, "{delivered_bytes}");
    let events: Vec<_> = (100..180).map(reading).collect();
    ledger.enqueue_telemetry(&events, t0()).unwrap();
    let pending = ledger.telemetry_bytes();
    assert!(pending < 20_000 && pending + delivered_bytes > 20_000);
    // Retention (7 days) is far away: only the quota purges here.
    let report = ledger.maintain(t0().plus_secs(10)).unwrap();
    assert!(report.totals.purged_over_quota > 0, "{report:?}");
    assert_eq!(report.totals.dropped_undelivered, 0, "{report:?}");
    assert_eq!(ledger.telemetry_bytes(), pending, "undelivered kept");
    assert!(ledger.telemetry_bytes() + ledger.delivered_telemetry_bytes() <= 20_000);
    assert!(report.checkpoint.truncated, "{report:?}");
}
