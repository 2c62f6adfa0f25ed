//! Opening a ledger: refuse foreign or damaged files without touching them,
//! create or migrate, bind to the monotonic counter, recover in-doubt
//! attempts.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tracing::{info, warn};

use super::schema::{APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
use super::state::{keys, read_meta, write_meta};
use super::{Ledger, LedgerConfig};
use crate::counter::MonotonicCounter;
use crate::datakey::{DataKey, Sealer};
use crate::error::LedgerError;
use crate::payment::{PaymentKey, PaymentState};
use crate::policy::{LedgerIntegrity, Limits};
use crate::time::Timestamp;

/// What happened while opening, for the journal and the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// A new ledger was created.
    pub created: bool,
    /// The file's schema version before this open.
    pub schema_before: i64,
    /// The file's schema version now.
    pub schema_now: i64,
    /// Attempts found between their commit and their decision (a crash):
    /// now in-doubt, to be resolved with the backend by key.
    pub in_doubt: Vec<PaymentKey>,
    /// The binding to the monotonic counter.
    pub integrity: LedgerIntegrity,
    /// The counter was one behind (a crash between an offline approval's
    /// commit and the increment) and was brought level.
    pub counter_repaired: bool,
}

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

impl Ledger {
    /// Opens (or creates) the ledger at `config.path`.
    ///
    /// A file that is not a ledger, belongs to another application, fails
    /// SQLite's quick check or needs newer firmware is refused with an error
    /// that says how to recover, and is left untouched.
    ///
    /// `limits` come from the config file; limits persisted from a newer
    /// backend update win over them, an older version never replaces a newer.
    pub fn open(
        config: LedgerConfig,
        limits: Limits,
        counter: Box<dyn MonotonicCounter>,
        data_key: &mut dyn DataKey,
        now: Timestamp,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        let path = config.path.clone();
        let created = prepare_file(&path)?;
        let conn = open_read_write(&path).map_err(|e| refuse(&path, e))?;
        let created = created || !check_existing(&conn, &path)?;
        switch_to_wal(&conn)?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA busy_timeout = 5000;",
        )?;
        // Freed pages stay on the free list and are reused (auto_vacuum
        // stays as the file was made: switching it needs a full VACUUM,
        // which a cart never runs).
        set_journal_size_limit(&conn, config.journal_size_limit_bytes)?;
        // A ledger created just now came with the schema (`create_atomically`).
        let schema_before: i64 = if created {
            0
        } else {
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))?
        };
        migrate(&conn, created)?;
        let schema_now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;

        let key = data_key.load_or_create()?;
        let sealer = Sealer::new(&key);
        check_data_key(&conn, &path, &sealer)?;

        let checkpointer =
            super::checkpoint::Checkpointer::open(&path, config.journal_size_limit_bytes)?;
        let mut ledger = Ledger {
            conn,
            checkpointer,
            checkout_first: super::CheckoutFirst::default(),
            config,
            sealer,
            counter,
            integrity: LedgerIntegrity::Bound,
            limits,
            ledger_id: String::new(),
            telemetry_bytes: 0,
            delivered_telemetry_bytes: 0,
            commits_since_checkpoint: 0,
            pending_increment: None,
        };

        ledger.ledger_id = match read_meta(&ledger.conn, keys::LEDGER_ID)? {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                write_meta(&ledger.conn, keys::LEDGER_ID, &id)?;
                id
            }
        };
        let counter_repaired = ledger.check_binding(now)?;
        let in_doubt = ledger.recover_in_doubt(now)?;
        ledger.load_persisted_limits(now)?;
        ledger.telemetry_bytes = ledger.conn.query_row(
            "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE class = 2 AND status = 0",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        ledger.delivered_telemetry_bytes = ledger.conn.query_row(
            "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE class = 2 AND status = 1",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;

        let report = OpenReport {
            created,
            schema_before,
            schema_now,
            in_doubt,
            integrity: ledger.integrity.clone(),
            counter_repaired,
        };
        info!(
            path = %ledger.config.path.display(),
            created,
            schema = schema_now,
            in_doubt = report.in_doubt.len(),
            integrity = ?report.integrity,
            "ledger open"
        );
        Ok((ledger, report))
    }

    /// Compares the ledger with the monotonic counter (the brief's start-up
    /// rule) and binds a new ledger. Returns whether a lagging counter was
    /// repaired.
    pub(crate) fn check_binding(&mut self, now: Timestamp) -> Result<bool, LedgerError> {
        self.settle_counter();
        let expected =
            read_meta(&self.conn, keys::COUNTER_EXPECTED)?.and_then(|s| s.parse::<u64>().ok());
        let value = match self.counter.read() {
            Ok(v) => v,
            Err(e) => {
                warn!(cause = %e, "monotonic counter unreadable: offline approval off");
                self.integrity = LedgerIntegrity::CounterMismatch {
                    detail: e.to_string(),
                };
                return Ok(false);
            }
        };
        let Some(expected) = expected else {
            self.bind_to(value, now)?;
            info!(counter = value, "ledger bound to the monotonic counter");
            return Ok(false);
        };
        let mut repaired = false;
        self.integrity = if value == expected {
            LedgerIntegrity::Bound
        } else if value + 1 == expected {
            // Committed an offline approval, then stopped before the increment.
            match self.counter.increment() {
                Ok(v) if v == expected => {
                    info!(counter = v, "monotonic counter repaired after a crash");
                    repaired = true;
                    LedgerIntegrity::Bound
                }
                Ok(v) => LedgerIntegrity::CounterMismatch {
                    detail: format!("counter went to {v} on repair, ledger expects {expected}"),
                },
                Err(e) => LedgerIntegrity::CounterMismatch {
                    detail: e.to_string(),
                },
            }
        } else if value > expected {
            warn!(
                ledger = expected,
                counter = value,
                "ledger is behind the monotonic counter: a restored older copy; offline approval off"
            );
            LedgerIntegrity::RolledBack {
                ledger: expected,
                counter: value,
            }
        } else {
            LedgerIntegrity::CounterMismatch {
                detail: format!(
                    "counter {value} is {} behind the ledger ({expected}): counter replaced or reset",
                    expected - value
                ),
            }
        };
        Ok(repaired)
    }

    /// Re-binds the ledger to the counter's current value. For a technician,
    /// after the backend has reconciled a rolled-back ledger.
    pub fn rebind_counter(&mut self, now: Timestamp) -> Result<(), LedgerError> {
        self.settle_counter();
        let value = self.counter.read()?;
        self.bind_to(value, now)?;
        warn!(counter = value, "ledger re-bound to the monotonic counter");
        Ok(())
    }

    /// Records `value` as the counter's value the ledger is bound to.
    fn bind_to(&mut self, value: u64, now: Timestamp) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        write_meta(&tx, keys::COUNTER_EXPECTED, &value.to_string())?;
        write_meta(&tx, keys::COUNTER_BOUND_AT, &value.to_string())?;
        write_meta(&tx, keys::COUNTER_BOUND_MS, &now.0.to_string())?;
        tx.commit()?;
        self.integrity = LedgerIntegrity::Bound;
        Ok(())
    }

    /// Attempts left in `card_read` by a crash become in-doubt, each with an
    /// inquiry in the outbox so the backend resolves it by key.
    fn recover_in_doubt(&mut self, now: Timestamp) -> Result<Vec<PaymentKey>, LedgerError> {
        let tx = self.conn.transaction()?;
        let rows: Vec<(i64, Vec<u8>)> = tx
            .prepare("SELECT seq, key FROM payments WHERE state = ?1")?
            .query_map([PaymentState::CardRead.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut keys = Vec::with_capacity(rows.len());
        for (seq, raw) in rows {
            let key = super::payments::key_from_blob(&raw)?;
            super::payments::transition(
                &tx,
                &key,
                seq,
                PaymentState::CardRead,
                crate::lifecycle::PaymentEvent::CrashedUndecided,
                now,
                Some("restart before decision"),
            )?;
            super::outbox::insert(
                &tx,
                super::OutboxClass::Payment,
                super::outbox::KIND_PAYMENT_INQUIRY,
                Some(seq),
                None,
                now,
            )?;
            warn!(payment_key = %key, "attempt in doubt after restart: will ask the backend");
            keys.push(key);
        }
        tx.commit()?;
        Ok(keys)
    }
}

/// A known value sealed with the data key when the ledger is made: a ledger
/// opened with another key (moved to another cart's TPM, a lost key file)
/// is refused instead of failing later on each payment's card data.
pub(crate) const KEY_CHECK: &[u8] = b"cart ledger data key check";
/// The key check's AAD.
pub(crate) const KEY_CHECK_AAD: &[u8] = b"key-check";

fn check_data_key(conn: &Connection, path: &Path, sealer: &Sealer) -> Result<(), LedgerError> {
    match read_meta(conn, keys::DATA_KEY_CHECK)? {
        Some(hex) => {
            let sealed = decode_hex(&hex).ok_or_else(|| LedgerError::BadValue {
                table: "meta",
                column: "data_key_check",
                value: hex.chars().take(16).collect(),
            })?;
            match sealer.open(&sealed, KEY_CHECK_AAD) {
                Ok(v) if &v[..] == KEY_CHECK => Ok(()),
                _ => Err(LedgerError::WrongDataKey {
                    path: path.to_path_buf(),
                }),
            }
        }
        None => {
            let sealed = sealer.seal(KEY_CHECK, KEY_CHECK_AAD);
            write_meta(conn, keys::DATA_KEY_CHECK, &encode_hex(&sealed))
        }
    }
}

fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Creates a new 0600 file when none exists. Returns whether it did.
fn prepare_file(path: &Path) -> Result<bool, LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            if fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false) {
                return Err(LedgerError::NotALedger {
                    path: path.to_path_buf(),
                    detail: "empty main file beside a non-empty WAL".into(),
                });
            }
            create_atomically(path)?;
            Ok(true)
        }
        Ok(_) => {
            let mut header = [0u8; 16];
            let mut f = fs::File::open(path).map_err(io)?;
            let n = read_up_to(&mut f, &mut header).map_err(io)?;
            if n < 16 || &header != SQLITE_HEADER {
                return Err(LedgerError::NotALedger {
                    path: path.to_path_buf(),
                    detail: "no SQLite header".into(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_atomically(path)?;
            Ok(true)
        }
        Err(e) => Err(io(e)),
    }
}

/// A read-write connection to the ledger at `path` (the ledger's own, the
/// checkpoint connection, a ledger being created).
pub(super) fn open_read_write(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Switches the file to WAL (persistent: a no-op once it is).
fn switch_to_wal(conn: &Connection) -> Result<(), LedgerError> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        warn!(%mode, "ledger could not switch to WAL");
    }
    Ok(())
}

/// Caps what the WAL file keeps after a checkpoint. Not persistent: set
/// on every connection that checkpoints.
pub(super) fn set_journal_size_limit(conn: &Connection, bytes: u64) -> Result<(), LedgerError> {
    let _: i64 = conn.query_row(
        &format!("PRAGMA journal_size_limit = {}", bytes.min(i64::MAX as u64)),
        [],
        |r| r.get(0),
    )?;
    Ok(())
}

/// Creates a new ledger beside `path` and renames it into place: in WAL
/// mode, with the schema and the application id, fsynced. A power cut
/// while creating leaves at most the side file (made again next time),
/// never a half-made ledger at `path`: switching a new file to WAL goes
/// through a rollback journal, and a cut there left a hot journal that a
/// read-only reader (`cartctl status`) cannot roll back.
fn create_atomically(path: &Path) -> Result<(), LedgerError> {
    let io = |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let new = side(".new");
    for leftover in [".new", ".new-journal", ".new-wal", ".new-shm"] {
        match fs::remove_file(side(leftover)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)
        .map_err(io)?;
    let conn = open_read_write(&new)?;
    switch_to_wal(&conn)?;
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    migrate(&conn, true)?;
    // The last connection's close folds the WAL into the file and removes it.
    conn.close().map_err(|(_, e)| e)?;
    fs::File::open(&new)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    fs::rename(&new, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

fn read_up_to(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub(crate) fn refuse(path: &Path, e: rusqlite::Error) -> LedgerError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => LedgerError::NotALedger {
            path: path.to_path_buf(),
            detail: "SQLite says: file is not a database".into(),
        },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => LedgerError::Sqlite(e),
    }
}

/// Opens the ledger at `path` read-only for a reader that must not write
/// (`cartctl` while the daemon is down, the update deadline unit): nothing
/// is written and no recovery runs. In WAL mode SQLite reads through the
/// `-shm` index, which it makes beside the file; a reader that may not
/// write that folder (a sandboxed unit, ProtectSystem=strict; `cart-tech`)
/// cannot. When no `-wal` file is there (the daemon closed the ledger
/// cleanly: every commit is in the main file) the file is then read as
/// immutable; with a `-wal` and no `-shm` it cannot be read without
/// writing, and the error says so.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, LedgerError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| refuse(path, e))?;
    let err = match conn.query_row("PRAGMA application_id", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => return Ok(conn),
        Err(e) => e,
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let cannot_open = err.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen);
    if !cannot_open || Path::new(&wal).exists() || !path.exists() {
        return Err(refuse(path, err));
    }
    drop(conn);
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            '%' => uri.push_str("%25"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
        .map_err(|e| refuse(path, e))
}

/// Read-only checks on an existing file before anything is written to it.
/// Returns `false` for an empty database: a ledger whose creation was
/// interrupted (it holds nothing yet) and is created again.
pub(crate) fn check_existing(conn: &Connection, path: &Path) -> Result<bool, LedgerError> {
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| refuse(path, e))?;
    if app_id == 0 {
        let objects: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| refuse(path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| refuse(path, e))?;
        if objects == 0 && version == 0 {
            warn!(path = %path.display(), "empty ledger file (creation interrupted): creating it again");
            return Ok(false);
        }
    }
    if app_id != APPLICATION_ID {
        return Err(LedgerError::Foreign {
            path: path.to_path_buf(),
            application_id: app_id,
        });
    }
    let findings: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| refuse(path, e))?;
    if findings != ["ok"] {
        return Err(LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: findings.join("; "),
        });
    }
    let min_reader: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'min_reader_version'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(|e| refuse(path, e))?
        .and_then(|s| s.parse().ok());
    if let Some(needed) = min_reader
        && needed > SCHEMA_VERSION
    {
        return Err(LedgerError::TooNew {
            path: path.to_path_buf(),
            needed,
            ours: SCHEMA_VERSION,
        });
    }
    Ok(true)
}

fn migrate(conn: &Connection, created: bool) -> Result<(), LedgerError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current >= SCHEMA_VERSION {
        // Same schema, or a newer one still readable by this code (checked
        // above): never downgrade it.
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), LedgerError> {
        if created {
            conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.execute_batch(m.sql)?;
            let old_min: i64 = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'min_reader_version'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('min_reader_version', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![old_min.max(m.min_reader_version).to_string()],
            )?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", m.version))?;
            info!(version = m.version, "ledger schema migrated");
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
