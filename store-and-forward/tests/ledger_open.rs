//! Opening the ledger: pragmas, permissions, refusing foreign, damaged and
//! too-new files without touching them, additive migrations.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use rusqlite::Connection;
use store_and_forward::LedgerError;
use store_and_forward::ledger::schema::{APPLICATION_ID, SCHEMA_VERSION};

fn sha(path: &std::path::Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

#[test]
fn opened_ledger_is_wal_with_full_sync() {
    let fx = Fixture::new();
    let ledger = fx.open();
    drop(ledger);
    // The pragmas as a connection to the same file sees them, plus the
    // ledger's own connection settings checked through its behaviour below.
    let (ledger, report) = fx.reopen();
    assert!(!report.created);
    let conn = Connection::open(fx.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    drop(ledger);
}

#[test]
fn ledger_connection_uses_synchronous_full() {
    let fx = Fixture::new();
    let ledger = fx.open();
    assert_eq!(ledger.pragma_i64("synchronous").unwrap(), 2, "FULL is 2");
    assert_eq!(ledger.pragma_i64("wal_autocheckpoint").unwrap(), 0);
    assert_eq!(ledger.pragma_string("journal_mode").unwrap(), "wal");
}

#[test]
fn files_are_private() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(100), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", fx.path().display());
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p}");
    }
}

#[test]
fn garbage_file_is_refused_and_untouched() {
    let fx = Fixture::new();
    fs::write(
        fx.path(),
        b"this is not a database, it is a shopping list\n".repeat(100),
    )
    .unwrap();
    let before = sha(fx.path());
    let err = fx.try_open_at(t0()).unwrap_err();
    assert!(matches!(err, LedgerError::NotALedger { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("left untouched") && msg.contains("mv "),
        "{msg}"
    );
    assert_eq!(sha(fx.path()), before);
}

#[test]
fn foreign_sqlite_database_is_refused_and_untouched() {
    let fx = Fixture::new();
    {
        let c = Connection::open(fx.path()).unwrap();
        c.execute_batch("CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');")
            .unwrap();
    }
    let before = sha(fx.path());
    let err = fx.try_open_at(t0()).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Foreign {
                application_id: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(sha(fx.path()), before);
}

#[test]
fn damaged_ledger_is_refused_and_untouched() {
    let fx = Fixture::new();
    {
        let mut ledger = fx.open();
        for i in 0..200 {
            ledger
                .record_card_read(&attempt(eur(100 + i), 1), t0())
                .unwrap();
        }
        ledger.maintain(t0()).unwrap();
    }
    // Fold the WAL in, then scribble over the middle of the file.
    {
        let c = Connection::open(fx.path()).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = fs::read(fx.path()).unwrap();
    assert!(bytes.len() > 8192, "{}", bytes.len());
    let page = 4096;
    for b in &mut bytes[page + 100..page * 2] {
        *b = 0xA5;
    }
    fs::write(fx.path(), &bytes).unwrap();
    let before = sha(fx.path());
    let err = fx.try_open_at(t0()).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Corrupt { .. } | LedgerError::NotALedger { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("untouched"), "{err}");
    assert_eq!(sha(fx.path()), before);
}

#[test]
fn too_new_ledger_is_refused() {
    let fx = Fixture::new();
    drop(fx.open());
    {
        let c = Connection::open(fx.path()).unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'min_reader_version'",
            [(SCHEMA_VERSION + 1).to_string()],
        )
        .unwrap();
    }
    let err = fx.try_open_at(t0()).unwrap_err();
    assert!(matches!(err, LedgerError::TooNew { .. }), "{err:?}");
}

#[test]
fn newer_schema_still_readable_opens_without_downgrade() {
    // A newer firmware added a table (additive) and left min_reader_version
    // at ours: this (older) code must open it and keep the newer version.
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(700), 2);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    drop(ledger);
    {
        let c = Connection::open(fx.path()).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE future_feature (x INTEGER);
             ALTER TABLE payments ADD COLUMN future_column TEXT;
             PRAGMA user_version = {};",
            SCHEMA_VERSION + 1
        ))
        .unwrap();
    }
    let (ledger, report) = fx.reopen();
    assert_eq!(report.schema_now, SCHEMA_VERSION + 1);
    let p = ledger.payment(&a.key).unwrap().unwrap();
    assert_eq!(p.state, store_and_forward::PaymentState::OfflineApproved);
}

#[test]
fn a_creation_cut_short_leaves_only_a_side_file_which_the_next_open_replaces() {
    let fx = Fixture::new();
    let side = |suffix: &str| {
        let mut p = fx.path().as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    // What a power cut while creating leaves: the side file, half made,
    // with the hot journal of its switch to WAL.
    std::fs::write(side(".new"), b"SQLite format 3\0half").unwrap();
    std::fs::write(side(".new-journal"), vec![0xd9; 512]).unwrap();
    assert!(!fx.path().exists());
    let (_, report) = fx.try_open_at(t0()).unwrap();
    assert!(report.created);
    assert_eq!(report.schema_before, 0);
    assert_eq!(report.schema_now, SCHEMA_VERSION);
    for leftover in [".new", ".new-journal", ".new-wal", ".new-shm", "-journal"] {
        assert!(!side(leftover).exists(), "{leftover} left behind");
    }
    // A read-only reader (cartctl status) reads the new ledger at once.
    store_and_forward::ledger::read_only_states(fx.path(), "").unwrap();
}

#[test]
fn new_ledger_records_schema_and_min_reader() {
    let fx = Fixture::new();
    let (_, report) = fx.try_open_at(t0()).unwrap();
    assert!(report.created);
    assert_eq!(report.schema_before, 0);
    assert_eq!(report.schema_now, SCHEMA_VERSION);
    let c = Connection::open(fx.path()).unwrap();
    let min: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'min_reader_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(min, "1");
}

#[test]
fn ledger_whose_creation_was_interrupted_is_created_again() {
    // A crash after SQLite wrote its header but before the schema
    // committed leaves an empty database: it holds nothing, so the ledger
    // is created in it rather than refused as foreign.
    let fx = Fixture::new();
    {
        let c = Connection::open(fx.path()).unwrap();
        let _: String = c
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
    }
    assert!(fs::metadata(fx.path()).unwrap().len() > 0);
    let (_, report) = fx.try_open_at(t0()).unwrap();
    assert!(report.created);
    assert_eq!(report.schema_now, SCHEMA_VERSION);
}

#[test]
fn foreign_empty_looking_database_with_tables_is_still_refused() {
    let fx = Fixture::new();
    {
        let c = Connection::open(fx.path()).unwrap();
        c.execute_batch("CREATE TABLE notes (x TEXT);").unwrap();
    }
    assert!(matches!(
        fx.try_open_at(t0()),
        Err(LedgerError::Foreign { .. })
    ));
}

#[test]
fn ledger_opened_with_another_data_key_is_refused() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    ledger
        .record_card_read(&attempt(eur(100), 1), t0())
        .unwrap();
    drop(ledger);
    let before = sha(fx.path());
    // Another cart's key (or a lost one replaced by a new one).
    fs::remove_file(fx.dir.path().join("data.key")).unwrap();
    let err = fx.try_open_at(t0()).unwrap_err();
    assert!(matches!(err, LedgerError::WrongDataKey { .. }), "{err:?}");
    assert!(err.to_string().contains("untouched"));
    assert_eq!(sha(fx.path()), before);
}

#[test]
fn read_only_status_reads_without_writing() {
    let fx = Fixture::new();
    let mut ledger = fx.open();
    let a = attempt(eur(2_500), 1);
    ledger.record_card_read(&a, t0()).unwrap();
    ledger.decide_offline(&a.key, t0()).unwrap();
    let b = attempt(eur(100), 2);
    ledger.record_card_read(&b, t0()).unwrap(); // left undecided
    ledger.maintain(t0()).unwrap();
    drop(ledger);
    let before = sha(fx.path());
    let st = store_and_forward::ledger::read_only_status(fx.path(), t0()).unwrap();
    assert_eq!(st.integrity, None, "the counter is not read");
    assert_eq!(st.exposure.count, 1);
    assert_eq!(st.payments.get("card_read"), Some(&1), "no recovery runs");
    assert_eq!(st.limits.version, 1);
    assert_eq!(sha(fx.path()), before);
    let garbage = fx.dir.path().join("garbage");
    fs::write(&garbage, b"not a ledger at all, definitely not").unwrap();
    assert!(matches!(
        store_and_forward::ledger::read_only_status(&garbage, t0()),
        Err(LedgerError::NotALedger { .. })
    ));
}
