//! Who may clear an age check: the staff list the backend sends, kept in
//! the ledger (`store_and_forward::staff`), behind one small trait so the
//! shopping session asks it without knowing where it lives.
//!
//! The daemon's session asks the ledger (the list survives restarts and
//! works offline); tests give the session a list in memory. With no list
//! yet, nobody can approve: the session refuses every badge and sends the
//! shopper to a till (docs/ui.md).

use std::sync::Mutex;

use store_and_forward::Ledger;
use store_and_forward::staff::{BadgeCheck, StaffList};
use tracing::error;

/// Looks a scanned badge id (the code after the badge prefix) up in the
/// staff list.
pub trait StaffCheck: Send + Sync {
    /// What the list says about `badge_id`.
    fn check(&self, badge_id: &str) -> BadgeCheck;
}

/// The ledger's list. A ledger that cannot be read approves nobody (the
/// error is logged): an age check is never cleared by a failure.
impl StaffCheck for Mutex<Ledger> {
    fn check(&self, badge_id: &str) -> BadgeCheck {
        let ledger = self.lock().unwrap_or_else(|p| p.into_inner());
        match ledger.check_staff_badge(badge_id) {
            Ok(c) => c,
            Err(e) => {
                error!(cause = %e, "staff list unreadable: badge refused");
                BadgeCheck::NoList
            }
        }
    }
}

/// A list in memory (tests, tools).
impl StaffCheck for StaffList {
    fn check(&self, badge_id: &str) -> BadgeCheck {
        StaffList::check(self, badge_id)
    }
}

/// No list at all: every badge is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStaffList;

impl StaffCheck for NoStaffList {
    fn check(&self, _badge_id: &str) -> BadgeCheck {
        BadgeCheck::NoList
    }
}
