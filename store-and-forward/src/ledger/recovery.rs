//! The data key's recovery copies: the key wrapped to backend recovery keys
//! ([`KeyEscrow`]), one row per recovery key in `recovery_keys` (schema 4).
//! If the TPM that seals the data key dies, the backend unwraps a copy and
//! unseals the payments still waiting (`export.rs`, `docs/identity.md`).

use rusqlite::{Connection, OptionalExtension, params};
use tracing::info;

use super::Ledger;
use crate::datakey::KeyEscrow;
use crate::error::LedgerError;
use crate::time::Timestamp;

/// What [`Ledger::escrow_data_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escrowed {
    /// A copy for this recovery key was made now.
    Added,
    /// The ledger had one already (made at an earlier start).
    Present,
}

/// Whether the file has the `recovery_keys` table (schema 4 and later).
pub(crate) fn has_table(conn: &Connection) -> Result<bool, LedgerError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recovery_keys'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The ids of the recovery keys the data key is wrapped to, oldest first
/// (none in a file older than schema 4).
pub(crate) fn key_ids(conn: &Connection) -> Result<Vec<String>, LedgerError> {
    if !has_table(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare("SELECT key_id FROM recovery_keys ORDER BY created_ms, key_id")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// Every wrapped copy: (recovery key id, wrapped key).
pub(crate) fn wrapped(conn: &Connection) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
    if !has_table(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt =
        conn.prepare("SELECT key_id, wrapped FROM recovery_keys ORDER BY created_ms, key_id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

impl Ledger {
    /// Keeps a copy of the data key wrapped to `escrow`'s recovery key,
    /// bound to this ledger's id, unless one is there already. One
    /// fsynced commit when it adds one (at start, not on a checkout).
    pub fn escrow_data_key(
        &mut self,
        escrow: &dyn KeyEscrow,
        now: Timestamp,
    ) -> Result<Escrowed, LedgerError> {
        let key_id = escrow.key_id();
        let present = self
            .conn
            .query_row(
                "SELECT 1 FROM recovery_keys WHERE key_id = ?1",
                [&key_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if present {
            return Ok(Escrowed::Present);
        }
        let wrapped = escrow.wrap(self.sealer.key(), self.ledger_id.as_bytes())?;
        self.ensure_durable()?;
        self.conn.execute(
            "INSERT INTO recovery_keys (key_id, wrapped, created_ms) VALUES (?1, ?2, ?3)",
            params![key_id, wrapped, now.0],
        )?;
        self.note_commit();
        info!(recovery_key = %key_id, "data key wrapped to the recovery key");
        Ok(Escrowed::Added)
    }

    /// The ids of the recovery keys the data key is wrapped to.
    pub fn recovery_key_ids(&self) -> Result<Vec<String>, LedgerError> {
        key_ids(&self.conn)
    }
}
