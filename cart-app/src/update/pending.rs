//! The update across its reboot. Before RAUC writes the other slot, the
//! cart records in the ledger's cart state (synchronous=FULL) what it is
//! installing and from what (`update.pending`); after the boot the health
//! check reads it, decides, and leaves the result in `update.last`, which
//! `cartctl status` shows and the resumed job reports.

use serde::{Deserialize, Serialize};
use store_and_forward::policy::LedgerIntegrity;

/// The cart-state key of the update in flight.
pub const PENDING_KEY: &str = "update.pending";
/// The cart-state key of the last update's result.
pub const LAST_KEY: &str = "update.last";

/// An update installed (or being installed) and not yet judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The job.
    pub job_id: String,
    /// The version that ran before.
    pub from_version: String,
    /// The version installed.
    pub to_version: String,
    /// The slot (bootname) booted before the install.
    pub from_slot: String,
    /// Whether the ledger's counter binding held before the install (if
    /// it did not, the new slot is not blamed for it).
    pub bound_before: bool,
    /// When the install started (ms).
    pub started_ms: i64,
    /// A health check that failed on the new slot, kept across the
    /// reboot back into the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_health: Option<String>,
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    /// The new slot passed its health check and is marked good.
    Succeeded,
    /// The new slot failed its health check: marked bad, the old one runs.
    Failed,
    /// The cart came back on the old slot without a verdict (the new one
    /// did not boot, or a power cut before the switch).
    RolledBack,
}

/// The last update's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Last {
    /// The job.
    pub job_id: String,
    /// From.
    pub from_version: String,
    /// To.
    pub to_version: String,
    /// How it ended.
    pub result: Result,
    /// Why, in words.
    pub detail: String,
    /// When it was decided (ms).
    pub at_ms: i64,
}

/// What the health check sees after a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot<'a> {
    /// The slot booted (`BootSlot`).
    pub slot: &'a str,
    /// The ledger's counter binding now.
    pub integrity: &'a LedgerIntegrity,
    /// READY=1 was sent: the UI's event loop turned with its window up.
    pub ready: bool,
}

/// The health check's verdict on a pending update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Mark the booted slot good; the update succeeded.
    Good,
    /// Mark the booted slot bad and reboot into the old one.
    Bad(String),
    /// Running the old slot again: the update did not take.
    BackOnOld(String),
}

/// Judges a boot with an update pending.
pub fn judge(p: &Pending, boot: &Boot<'_>) -> Verdict {
    if boot.slot == p.from_slot {
        return Verdict::BackOnOld(match &p.failed_health {
            Some(why) => format!(
                "the new slot failed its health check ({why}); back on slot {}",
                p.from_slot
            ),
            None => format!(
                "the cart came back on slot {} running {} (the new slot did not boot, or the install did not finish)",
                p.from_slot, p.from_version
            ),
        });
    }
    if p.bound_before && *boot.integrity != LedgerIntegrity::Bound {
        return Verdict::Bad(format!(
            "the ledger's counter binding does not hold on the new slot: {:?}",
            boot.integrity
        ));
    }
    if !boot.ready {
        return Verdict::Bad("the daemon did not become ready".into());
    }
    Verdict::Good
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            job_id: "u1".into(),
            from_version: "1.0.0".into(),
            to_version: "1.1.0".into(),
            from_slot: "A".into(),
            bound_before: true,
            started_ms: 0,
            failed_health: None,
        }
    }

    #[test]
    fn a_ready_new_slot_with_its_binding_is_good() {
        let b = Boot {
            slot: "B",
            integrity: &LedgerIntegrity::Bound,
            ready: true,
        };
        assert_eq!(judge(&pending(), &b), Verdict::Good);
    }

    #[test]
    fn a_broken_binding_or_no_ready_is_bad_and_the_old_slot_is_back() {
        let broken = LedgerIntegrity::CounterMismatch { detail: "x".into() };
        let b = Boot {
            slot: "B",
            integrity: &broken,
            ready: true,
        };
        assert!(matches!(judge(&pending(), &b), Verdict::Bad(_)));
        // Broken before the update too: not the new slot's fault.
        let mut p = pending();
        p.bound_before = false;
        assert_eq!(judge(&p, &b), Verdict::Good);
        let b = Boot {
            slot: "B",
            integrity: &LedgerIntegrity::Bound,
            ready: false,
        };
        assert!(matches!(judge(&pending(), &b), Verdict::Bad(_)));
        // Back on A: the reason kept from the new slot is reported.
        let mut p = pending();
        p.failed_health = Some("no READY".into());
        let b = Boot {
            slot: "A",
            integrity: &LedgerIntegrity::Bound,
            ready: true,
        };
        match judge(&p, &b) {
            Verdict::BackOnOld(why) => assert!(why.contains("no READY"), "{why}"),
            v => panic!("{v:?}"),
        }
    }
}
