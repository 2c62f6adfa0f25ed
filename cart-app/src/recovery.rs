//! A dead TPM must not strand the offline payments sealed under it.
//!
//! Besides the TPM-sealed copy, the ledger keeps its data key wrapped to the
//! fleet's recovery public key (`[tpm] recovery_public_key`, ECIES on
//! P-256 with `hal`'s code): [`escrow_at_start`] makes that copy once per
//! ledger and recovery key. With the TPM gone, [`export`] (`cartctl
//! recovery-export`) reads the ledger file read-only, without the TPM, and
//! writes the payments still owed, sealed, with the wrapped key, to a 0600
//! file for the backend, whose tool unwraps the key with the recovery
//! private key and forwards them (`tests/backend-emulator`,
//! `docs/identity.md`).
//!
//! No recovery key configured is not a failure: the daemon warns in the
//! journal at every start, and `cartctl status` says so.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hal::identity::recovery::RecoveryPublicKey;
use hal::identity::tpm::TpmConfig;
use store_and_forward::datakey::{DataKeyError, KeyEscrow};
use store_and_forward::ledger::{Escrowed, RecoveryExport, export_read_only};
use store_and_forward::{Ledger, LedgerError, Timestamp};
use tracing::{error, info, warn};

/// The recovery key as the ledger's [`KeyEscrow`].
#[derive(Debug, Clone)]
pub struct RecoveryEscrow(pub RecoveryPublicKey);

impl KeyEscrow for RecoveryEscrow {
    fn key_id(&self) -> String {
        self.0.key_id().to_owned()
    }

    fn wrap(&self, key: &[u8; 32], context: &[u8]) -> Result<Vec<u8>, DataKeyError> {
        self.0
            .wrap(key, context)
            .map_err(|e| DataKeyError::Escrow(e.to_string()))
    }
}

/// What the start found about the data key's recovery copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryState {
    /// The ledger holds a copy for the configured key.
    Escrowed {
        /// The recovery key's id.
        key_id: String,
        /// Made at this start (else found from an earlier one).
        added: bool,
    },
    /// No recovery key configured: a dead TPM would strand the offline
    /// payments it seals (warned at every start).
    NotConfigured,
    /// The configured key could not be used (unreadable, not a P-256
    /// key, the ledger refused the write): logged as an error; the cart
    /// sells on, and the next start tries again.
    Failed(String),
}

/// At start, after the ledger is open: wraps the data key to the configured
/// recovery key unless the ledger has that copy already. Never fails the
/// start; logs what it found.
pub fn escrow_at_start(ledger: &mut Ledger, tpm: &TpmConfig) -> RecoveryState {
    let Some(path) = &tpm.recovery_public_key else {
        warn!(
            device = "tpm",
            "no recovery key configured ([tpm] recovery_public_key): if this cart's TPM dies, the offline payments it seals cannot be recovered"
        );
        return RecoveryState::NotConfigured;
    };
    let key = match RecoveryPublicKey::from_pem_file(path) {
        Ok(k) => k,
        Err(e) => {
            error!(device = "tpm", cause = %e, path = %path.display(), "recovery key unusable: the data key has no recovery copy for it");
            return RecoveryState::Failed(e.to_string());
        }
    };
    let key_id = key.key_id().to_owned();
    match ledger.escrow_data_key(&RecoveryEscrow(key), Timestamp::now()) {
        Ok(done) => {
            let added = done == Escrowed::Added;
            info!(device = "tpm", recovery_key = %key_id, added, "data key recovery copy in the ledger");
            RecoveryState::Escrowed { key_id, added }
        }
        Err(e) => {
            error!(device = "tpm", cause = %e, recovery_key = %key_id, "could not keep the data key's recovery copy");
            RecoveryState::Failed(e.to_string())
        }
    }
}

/// A recovery export failure.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The ledger could not be read (see the cause; nothing was written).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The output file could not be written (it is never overwritten).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The export could not be encoded.
    #[error("encoding the export: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Forwards (offline approvals the backend has not confirmed).
    pub forwards: usize,
    /// Inquiries (attempts without a decision).
    pub inquiries: usize,
    /// Recovery keys the data key is wrapped to (none: the backend cannot
    /// open the records).
    pub recovery_keys: Vec<String>,
}

impl ExportSummary {
    /// One line for the technician.
    pub fn describe(&self, out: &Path) -> String {
        format!(
            "{} forwards and {} inquiries written to {} (mode 0600); data key wrapped to recovery key(s): {}",
            self.forwards,
            self.inquiries,
            out.display(),
            if self.recovery_keys.is_empty() {
                "NONE: the backend cannot open these records".to_owned()
            } else {
                self.recovery_keys.join(", ")
            }
        )
    }
}

/// The status page's line on the data key's recovery copies: their keys,
/// or a warning that there are none.
pub fn status_line(keys: &[String], configured: bool) -> String {
    match (keys.is_empty(), configured) {
        (false, _) => format!("data key wrapped to recovery key {}", keys.join(", ")),
        (true, true) => "WARNING: recovery key configured but no copy in the ledger yet (the daemon makes it at start; see the journal)".into(),
        (true, false) => "WARNING: no recovery key configured ([tpm] recovery_public_key): if the TPM dies, its offline payments cannot be recovered".into(),
    }
}

/// Exports what the ledger at `ledger_path` still owes the backend to
/// `out` (created with mode 0600; an existing file is never overwritten),
/// read-only and without the TPM.
pub fn export(
    ledger_path: &Path,
    cart_id: &str,
    out: &Path,
    now: Timestamp,
) -> Result<(RecoveryExport, ExportSummary), RecoveryError> {
    let export = export_read_only(ledger_path, cart_id, now)?;
    let text = serde_json::to_vec_pretty(&export)?;
    let io = |source| RecoveryError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io)?;
    f.write_all(&text).and_then(|_| f.sync_all()).map_err(io)?;
    let forwards = export
        .records
        .iter()
        .filter(|r| r.kind == store_and_forward::ledger::outbox_kinds::KIND_PAYMENT_FORWARD)
        .count();
    let summary = ExportSummary {
        forwards,
        inquiries: export.records.len() - forwards,
        recovery_keys: export
            .wrapped_keys
            .iter()
            .map(|w| w.key_id.clone())
            .collect(),
    };
    info!(out = %out.display(), forwards, inquiries = summary.inquiries, "recovery export written");
    Ok((export, summary))
}
