//! The staff list for age checks, kept in the ledger so a cart checks
//! badges offline, and the approval recorded with a sale.
//!
//! The list is versioned like the deny-list: a version newer than the one
//! held replaces it whole (the wire sends whole lists; a revoked badge is a
//! new version without it), an older or equal one is ignored.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{Connection, OptionalExtension};
use tracing::info;

use super::Ledger;
use super::state::{UpdateOutcome, keys, read_state, read_state_i64, write_state};
use crate::error::LedgerError;
use crate::payment::{NewAttempt, PaymentKey};
use crate::staff::{BadgeCheck, BadgeHash, StaffApproval, StaffList};
use crate::time::Timestamp;

impl Ledger {
    /// Stores `list` when its version is newer than the one held: the old
    /// list goes whole, in the same transaction. A list that fails
    /// [`StaffList::validate`] is refused ([`LedgerError::StaffList`]) and
    /// the one held stays.
    pub fn apply_staff_list(
        &mut self,
        list: &StaffList,
        now: Timestamp,
    ) -> Result<UpdateOutcome, LedgerError> {
        list.validate()?;
        let tx = self.conn.transaction()?;
        let current = read_state_i64(&tx, keys::STAFF_LIST_VERSION)?.unwrap_or(0) as u64;
        if list.version <= current {
            return Ok(UpdateOutcome::Ignored { current });
        }
        tx.execute("DELETE FROM staff_list", [])?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO staff_list (badge_hash) VALUES (?1)")?;
            for b in &list.badges {
                insert.execute([b.0.as_slice()])?;
            }
        }
        write_state(
            &tx,
            keys::STAFF_LIST_SALT,
            &STANDARD.encode(&list.salt),
            now,
        )?;
        write_state(
            &tx,
            keys::STAFF_LIST_VERSION,
            &list.version.to_string(),
            now,
        )?;
        tx.commit()?;
        self.note_commit();
        info!(
            version = list.version,
            badges = list.badges.len(),
            "staff list updated"
        );
        Ok(UpdateOutcome::Applied)
    }

    /// The staff list version held (0: none yet).
    pub fn staff_list_version(&self) -> Result<u64, LedgerError> {
        Ok(read_state_i64(&self.conn, keys::STAFF_LIST_VERSION)?.unwrap_or(0) as u64)
    }

    /// Checks a scanned badge id (the code after the badge prefix) against
    /// the list held.
    pub fn check_staff_badge(&self, badge_id: &str) -> Result<BadgeCheck, LedgerError> {
        let version = self.staff_list_version()?;
        let salt = read_state(&self.conn, keys::STAFF_LIST_SALT)?;
        let (true, Some(salt)) = (version > 0, salt) else {
            return Ok(BadgeCheck::NoList);
        };
        let salt = STANDARD.decode(&salt).map_err(|_| LedgerError::BadValue {
            table: "cart_state",
            column: keys::STAFF_LIST_SALT,
            value: salt.clone(),
        })?;
        let hash = BadgeHash::of(&salt, badge_id);
        let found = self
            .conn
            .prepare_cached("SELECT 1 FROM staff_list WHERE badge_hash = ?1")?
            .query_row([hash.0.as_slice()], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(if found {
            BadgeCheck::Approved(StaffApproval {
                badge: hash,
                list_version: version,
            })
        } else {
            BadgeCheck::NotOnList {
                list_version: version,
            }
        })
    }

    /// [`Ledger::record_card_read`] for a sale whose age check `approval`
    /// cleared: the badge's hash is committed with the attempt (same
    /// transaction, same fsync) and rides on its `payment_outcome` events.
    pub fn record_card_read_age_checked(
        &mut self,
        attempt: &NewAttempt,
        approval: Option<&StaffApproval>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.record_attempt(attempt, approval, now)
    }

    /// The age check recorded with a payment, if any.
    pub fn payment_age_check(
        &self,
        key: &PaymentKey,
    ) -> Result<Option<StaffApproval>, LedgerError> {
        age_check_of(&self.conn, key)
    }
}

/// The age check stored with the payment `key` (`None`: none recorded, or
/// no such payment).
fn age_check_of(conn: &Connection, key: &PaymentKey) -> Result<Option<StaffApproval>, LedgerError> {
    let row: Option<(Option<Vec<u8>>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT age_check_badge, age_check_list_version FROM payments WHERE key = ?1",
        )?
        .query_row([key.0.as_bytes().as_slice()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match row {
        Some((badge, version)) => approval_from_columns(badge, version),
        None => Ok(None),
    }
}

/// The approval from a payment row's two columns (NULL: none recorded).
pub(super) fn approval_from_columns(
    badge: Option<Vec<u8>>,
    version: Option<i64>,
) -> Result<Option<StaffApproval>, LedgerError> {
    let Some(badge) = badge else {
        return Ok(None);
    };
    let badge = BadgeHash::from_slice(&badge).ok_or_else(|| LedgerError::BadValue {
        table: "payments",
        column: "age_check_badge",
        value: format!("<{} bytes>", badge.len()),
    })?;
    Ok(Some(StaffApproval {
        badge,
        list_version: version.unwrap_or(0) as u64,
    }))
}
