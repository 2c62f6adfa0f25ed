//! The ledger's schema and its additive migrations.
//!
//! `PRAGMA user_version` holds the schema version; `meta.min_reader_version`
//! holds the oldest schema version whose code can still open the file. A
//! migration only adds (tables, columns, indexes), so a firmware rollback can
//! still open a ledger holding unforwarded payments; a migration that cannot
//! stay readable by older code raises `min_reader_version`.

/// Marks the file as a cart ledger (`PRAGMA application_id`, "CART").
pub const APPLICATION_ID: i64 = 0x4341_5254;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 5;

/// Outbox `status` of the sequence mark: the row that keeps the highest id
/// ever handed out once the rows above it are deleted (see migration 2).
/// Every reader selects outbox rows by status 0, 1 or 2, so older firmware
/// never sees it.
pub const OUTBOX_STATUS_SEQUENCE_MARK: i64 = 3;

/// One migration: the schema version it produces, its SQL, and the oldest
/// reader version that can open the file afterwards.
pub(crate) struct Migration {
    pub version: i64,
    pub min_reader_version: i64,
    pub sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        min_reader_version: 1,
        sql: r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per payment attempt, keyed by its idempotency key.
CREATE TABLE payments (
    seq                 INTEGER PRIMARY KEY,
    key                 BLOB NOT NULL UNIQUE,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL,
    amount_minor        INTEGER NOT NULL CHECK (amount_minor > 0),
    currency            TEXT NOT NULL,
    online_required     INTEGER NOT NULL,
    state               TEXT NOT NULL,
    masked_pan          TEXT NOT NULL,
    fingerprint         BLOB NOT NULL,
    entry_mode          TEXT NOT NULL,
    card_sealed         BLOB NOT NULL,
    decided_ms          INTEGER,
    offline_approved_ms INTEGER,
    forwarded_ms        INTEGER,
    counter_value       INTEGER,
    decision            TEXT,
    backend_reference   TEXT,
    backend_reason      TEXT
);
CREATE INDEX payments_state ON payments (state);
CREATE INDEX payments_velocity ON payments (fingerprint, offline_approved_ms)
    WHERE offline_approved_ms IS NOT NULL;
-- The offline exposure, read by every offline decision: index-only.
CREATE INDEX payments_outstanding ON payments (currency, amount_minor)
    WHERE state IN ('offline_approved', 'forwarded');
CREATE INDEX payments_unforwarded ON payments (offline_approved_ms)
    WHERE state = 'offline_approved';

-- Every state change, for audits and the technician's diagnostics.
CREATE TABLE payment_log (
    id          INTEGER PRIMARY KEY,
    payment_seq INTEGER NOT NULL REFERENCES payments (seq),
    at_ms       INTEGER NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    detail      TEXT
);

-- The transactional outbox. class: 0 payment, 1 control, 2 telemetry.
-- status: 0 pending, 1 delivered, 2 quarantined.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    class           INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    payment_seq     INTEGER REFERENCES payments (seq),
    payload         BLOB,
    size            INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    status          INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_ms         INTEGER
);
CREATE INDEX outbox_pending ON outbox (class, id) WHERE status = 0;
CREATE INDEX outbox_done ON outbox (done_ms) WHERE status = 1;
CREATE INDEX outbox_payment ON outbox (payment_seq) WHERE payment_seq IS NOT NULL;

-- Cart-level state other parts persist through the ledger.
CREATE TABLE cart_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE deny_list (
    fingerprint BLOB PRIMARY KEY
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 2,
        // Additive: a trigger. Firmware of schema 1 still opens the file, and
        // its deletes fire the trigger too.
        min_reader_version: 1,
        sql: r#"
-- Outbox ids are the telemetry sequence the backend deduplicates on, and
-- SQLite hands out max(id) + 1: once the highest rows are deleted (purged,
-- shed over the quota) their ids would come again and the backend would
-- drop new events as duplicates. When a delete removes the highest row, a
-- sequence mark (status 3, no payload) takes its id, so max(id) never goes
-- down; only the newest mark is kept. Any firmware's deletes fire it.
CREATE TRIGGER outbox_sequence_mark AFTER DELETE ON outbox
WHEN old.id > COALESCE((SELECT MAX(id) FROM outbox), 0)
BEGIN
    INSERT INTO outbox (id, class, kind, size, created_ms, status)
        VALUES (old.id, 1, 'sequence_mark', 0, old.created_ms, 3);
    DELETE FROM outbox WHERE status = 3 AND id < old.id;
END;

-- Maintenance finds settled payments past retention without a scan.
CREATE INDEX payments_settled ON payments (updated_ms)
    WHERE state IN ('online_approved', 'online_declined', 'offline_declined',
        'cancelled', 'failed', 'confirmed', 'declined_after_forward');
"#,
    },
    Migration {
        version: 3,
        // Additive: a table and two nullable columns. Firmware of schema 1
        // and 2 still opens the file; its inserts leave the columns NULL (no
        // age check recorded), and it never reads the staff list.
        min_reader_version: 1,
        sql: r#"
-- The staff list for age checks: badge ids hashed with the list's salt
-- (HMAC-SHA256); the version and the salt are in cart_state
-- (staff.list_version, staff.list_salt). Replaced whole by a newer version.
CREATE TABLE staff_list (
    badge_hash BLOB PRIMARY KEY
) WITHOUT ROWID;

-- The badge that approved the sale's age check (its hash, never the code)
-- and the staff list version it was on (the backend's key to the salt).
ALTER TABLE payments ADD COLUMN age_check_badge BLOB;
ALTER TABLE payments ADD COLUMN age_check_list_version INTEGER;
"#,
    },
    Migration {
        version: 4,
        // Additive: a table older firmware never reads.
        min_reader_version: 1,
        sql: r#"
-- The data key wrapped to backend recovery keys (ECIES on P-256), one row
-- per recovery key: if the TPM that seals the data key dies, the backend
-- unwraps it and unseals the payments still waiting (docs/identity.md).
CREATE TABLE recovery_keys (
    key_id     TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 5,
        // Additive: an index. Older firmware uses it without knowing.
        min_reader_version: 1,
        sql: r#"
-- Maintenance deletes a purged payment's log by payment: without this
-- index each delete read the whole log, and a step held the ledger's lock
-- (and a checkout waiting on it) for milliseconds.
CREATE INDEX IF NOT EXISTS payment_log_payment ON payment_log (payment_seq);
"#,
    },
];
