//! The ledger's error type: one enum for the crate's storage boundary.

use std::path::PathBuf;

use crate::counter::CounterError;
use crate::datakey::DataKeyError;
use crate::payment::{PaymentKey, PaymentState};
use crate::policy::PolicyError;
use crate::staff::StaffListError;

/// Everything the ledger can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file at the ledger path is not a SQLite database at all. The
    /// daemon stops and leaves the file untouched for a technician.
    #[error(
        "{path} is not a cart ledger ({detail}); it was left untouched. Move it aside \
         (e.g. `mv {path} {path}.bad`) and restart to start a new ledger, or restore \
         the ledger from a backup. Do not delete it: it may hold unforwarded payments."
    )]
    NotALedger {
        /// The ledger path.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A SQLite database that belongs to another application. Left untouched.
    #[error(
        "{path} is a SQLite database of another application (application_id {application_id:#x}); \
         it was left untouched. Point `ledger.path` at the cart's ledger, or move the file aside."
    )]
    Foreign {
        /// The ledger path.
        path: PathBuf,
        /// Its application id.
        application_id: i64,
    },
    /// The ledger fails SQLite's integrity check. Left untouched; offline
    /// payments in it must be recovered by a technician.
    #[error(
        "ledger {path} is damaged ({detail}); it was left untouched. Copy it off the cart \
         for recovery (`sqlite3 {path} .recover`), then move it aside and restart."
    )]
    Corrupt {
        /// The ledger path.
        path: PathBuf,
        /// SQLite's findings (first lines).
        detail: String,
    },
    /// The file was written by newer firmware whose schema this code cannot
    /// read. Update the firmware; the file is left untouched.
    #[error(
        "ledger {path} needs schema reader version {needed}, this firmware reads up to {ours}; \
         install newer firmware. The file was left untouched."
    )]
    TooNew {
        /// The ledger path.
        path: PathBuf,
        /// The oldest reader version the file accepts.
        needed: i64,
        /// This code's schema version.
        ours: i64,
    },
    /// A file-system operation on the ledger's folder failed.
    #[error("ledger I/O at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data key does not open this ledger's card data: the ledger was
    /// moved to another cart, or its key was lost. Refused, left untouched:
    /// its payments can only be recovered with the original key.
    #[error(
        "ledger {path} was sealed with another data key (another cart's TPM, or a lost key); \
         it was left untouched. Put it back on its own cart; if its TPM is dead, export what it \
         owes with `cartctl recovery-export` for the backend (docs/identity.md), then move it aside."
    )]
    WrongDataKey {
        /// The ledger path.
        path: PathBuf,
    },
    /// SQLite failed (disk full, I/O error). The operation was rolled back:
    /// nothing was half-written; the caller reports it and may retry.
    #[error("ledger database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data key could not be loaded: the ledger does not open.
    #[error(transparent)]
    DataKey(#[from] DataKeyError),
    /// The monotonic counter failed where the ledger cannot go on.
    #[error(transparent)]
    Counter(#[from] CounterError),
    /// Invalid limits in config or in a backend update.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A staff list that cannot be stored: refused whole (acknowledged as
    /// rejected); the list held stays in force.
    #[error(transparent)]
    StaffList(#[from] StaffListError),
    /// No attempt with this key.
    #[error("no payment attempt {0}")]
    UnknownPayment(PaymentKey),
    /// An attempt with this key exists already (a key is used once).
    #[error("payment attempt {0} exists already")]
    DuplicatePayment(PaymentKey),
    /// The event has no cell in the state machine (`lifecycle.rs`) for
    /// the payment's state; nothing was changed. A bug of the caller: the
    /// checkout reports it and shows no decision.
    #[error("payment {key}: illegal transition: {event} in state {from}")]
    IllegalTransition {
        /// The attempt.
        key: PaymentKey,
        /// Its state.
        from: PaymentState,
        /// The event refused.
        event: crate::lifecycle::PaymentEvent,
    },
    /// A backend outcome contradicts the one already recorded; the recorded
    /// one stays and the conflict is reported.
    #[error("payment {key}: outcome conflicts with recorded state {state}")]
    ConflictingOutcome {
        /// The attempt.
        key: PaymentKey,
        /// The recorded state.
        state: PaymentState,
    },
    /// An amount that is zero or negative.
    #[error("invalid amount {0}: a payment is positive")]
    InvalidAmount(i64),
    /// Sealed card data failed to open (wrong data key or damage).
    #[error("payment {0}: sealed card data does not open with this ledger's data key")]
    Unseal(PaymentKey),
    /// A stored value this code cannot interpret.
    #[error("ledger row {table}.{column}: unexpected value {value:?}")]
    BadValue {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// The value.
        value: String,
    },
}
