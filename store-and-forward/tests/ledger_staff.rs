//! The staff list in the ledger: versioned like the deny-list, replaced
//! whole, kept across restarts; the approving badge's hash recorded with
//! the sale and in its telemetry; a schema-2 ledger migrates additively.

mod common;

use common::*;
use rusqlite::Connection;
use store_and_forward::LedgerError;
use store_and_forward::ledger::{OutboxBody, OutboxClass, UpdateOutcome};
use store_and_forward::staff::{BadgeCheck, StaffList, StaffListError};
use store_and_forward::telemetry::TelemetryEvent;

fn list(version: u64, ids: &[&str]) -> StaffList {
    StaffList::hashing(version, vec![version as u8; 16], ids)
}

#[test]
fn no_list_until_one_arrives_then_badges_on_it_approve() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    assert_eq!(
        ledger.check_staff_badge("0042").unwrap(),
        BadgeCheck::NoList
    );
    assert_eq!(ledger.staff_list_version().unwrap(), 0);
    assert_eq!(
        ledger
            .apply_staff_list(&list(3, &["0042", "0077"]), t0())
            .unwrap(),
        UpdateOutcome::Applied
    );
    let BadgeCheck::Approved(a) = ledger.check_staff_badge("0042").unwrap() else {
        panic!("0042 is on list 3")
    };
    assert_eq!(a.list_version, 3);
    assert_eq!(a.badge, list(3, &["0042"]).badges[0]);
    assert_eq!(
        ledger.check_staff_badge("0043").unwrap(),
        BadgeCheck::NotOnList { list_version: 3 }
    );
    // Kept across a restart: age checks work offline.
    drop(ledger);
    let (ledger, _) = fx.reopen();
    assert!(matches!(
        ledger.check_staff_badge("0077").unwrap(),
        BadgeCheck::Approved(_)
    ));
}

#[test]
fn a_replay_or_an_older_list_changes_nothing_and_a_newer_one_revokes() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    ledger
        .apply_staff_list(&list(5, &["0042", "0077"]), t0())
        .unwrap();
    assert_eq!(
        ledger
            .apply_staff_list(&list(5, &["0042", "0077"]), t0())
            .unwrap(),
        UpdateOutcome::Ignored { current: 5 }
    );
    assert_eq!(
        ledger.apply_staff_list(&list(4, &["9999"]), t0()).unwrap(),
        UpdateOutcome::Ignored { current: 5 }
    );
    assert_eq!(
        ledger.check_staff_badge("9999").unwrap(),
        BadgeCheck::NotOnList { list_version: 5 }
    );
    // Version 6 drops 0077: revoked.
    ledger.apply_staff_list(&list(6, &["0042"]), t0()).unwrap();
    assert_eq!(
        ledger.check_staff_badge("0077").unwrap(),
        BadgeCheck::NotOnList { list_version: 6 }
    );
    assert!(matches!(
        ledger.check_staff_badge("0042").unwrap(),
        BadgeCheck::Approved(a) if a.list_version == 6
    ));
    // An empty list is a list: nobody may approve, and that is not "no list".
    ledger.apply_staff_list(&list(7, &[]), t0()).unwrap();
    assert_eq!(
        ledger.check_staff_badge("0042").unwrap(),
        BadgeCheck::NotOnList { list_version: 7 }
    );
}

#[test]
fn an_invalid_list_is_refused_whole_and_the_list_held_stays() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    ledger.apply_staff_list(&list(2, &["0042"]), t0()).unwrap();
    let mut short_salt = list(3, &[]);
    short_salt.salt = vec![1; 4];
    assert!(matches!(
        ledger.apply_staff_list(&short_salt, t0()),
        Err(LedgerError::StaffList(StaffListError::Salt(4)))
    ));
    assert!(matches!(
        ledger.apply_staff_list(&list(0, &[]), t0()),
        Err(LedgerError::StaffList(StaffListError::VersionZero))
    ));
    assert_eq!(ledger.staff_list_version().unwrap(), 2);
    assert!(matches!(
        ledger.check_staff_badge("0042").unwrap(),
        BadgeCheck::Approved(_)
    ));
}

#[test]
fn the_approving_badge_hash_is_recorded_with_the_sale_and_in_its_telemetry() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    ledger.apply_staff_list(&list(4, &["0042"]), t0()).unwrap();
    let BadgeCheck::Approved(approval) = ledger.check_staff_badge("0042").unwrap() else {
        panic!("on the list")
    };
    let checked = attempt(eur(2_999), 1);
    ledger
        .record_card_read_age_checked(&checked, Some(&approval), t0())
        .unwrap();
    assert!(ledger.decide_offline(&checked.key, t0()).unwrap().approved);
    let plain = attempt(eur(189), 2);
    ledger.record_card_read(&plain, t0()).unwrap();
    ledger.decide_offline(&plain.key, t0()).unwrap();
    assert_eq!(
        ledger.payment_age_check(&checked.key).unwrap(),
        Some(approval)
    );
    assert_eq!(ledger.payment_age_check(&plain.key).unwrap(), None);

    let events: Vec<TelemetryEvent> = ledger
        .take_batch(OutboxClass::Telemetry, 0, 100, 1 << 20, t0())
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.body {
            OutboxBody::Bytes(b) => serde_json::from_slice(&b).ok(),
            _ => None,
        })
        .collect();
    let outcome_of = |key| {
        events
            .iter()
            .find_map(|e| match e {
                TelemetryEvent::PaymentOutcome {
                    payment, age_check, ..
                } if *payment == key => Some(*age_check),
                _ => None,
            })
            .expect("a payment_outcome event")
    };
    assert_eq!(outcome_of(checked.key), Some(approval));
    assert_eq!(outcome_of(plain.key), None);
}

/// A ledger written by schema-2 firmware (no staff table, no age-check
/// columns) opens, migrates additively and keeps its payments; the file
/// stays openable by that firmware (`min_reader_version` 1).
#[test]
fn a_schema_2_ledger_migrates_and_stays_readable_by_older_firmware() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let old = attempt(eur(1_000), 1);
    ledger.record_card_read(&old, t0()).unwrap();
    ledger.decide_offline(&old.key, t0()).unwrap();
    drop(ledger);
    {
        // Back to what schema-2 firmware left behind.
        let c = Connection::open(fx.path()).unwrap();
        c.execute_batch(
            "DROP TABLE staff_list;
             DROP TABLE recovery_keys;
             DROP INDEX payment_log_payment;
             ALTER TABLE payments DROP COLUMN age_check_badge;
             ALTER TABLE payments DROP COLUMN age_check_list_version;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let (mut ledger, report) = fx.reopen();
    assert_eq!(
        (report.schema_before, report.schema_now),
        (2, store_and_forward::ledger::schema::SCHEMA_VERSION)
    );
    assert_eq!(ledger.payment_age_check(&old.key).unwrap(), None);
    assert_eq!(ledger.status(t0()).unwrap().exposure.count, 1);
    ledger.apply_staff_list(&list(1, &["0042"]), t0()).unwrap();
    drop(ledger);
    let c = Connection::open(fx.path()).unwrap();
    let min_reader: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'min_reader_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(min_reader, "1", "schema-1 and -2 firmware still open it");
    // Schema-2 firmware's own insert (no new columns) still works.
    c.execute(
        "INSERT INTO payments (key, created_ms, updated_ms, amount_minor, currency,
         online_required, state, masked_pan, fingerprint, entry_mode, card_sealed)
         VALUES (x'00', 1, 1, 100, 'EUR', 0, 'card_read', '4111', x'01', 'chip', x'02')",
        [],
    )
    .unwrap();
}
