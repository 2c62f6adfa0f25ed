//! The staff list behind age checks: which badges may approve the sale of
//! an age-restricted item.
//!
//! The backend sends the whole list, versioned (`staff_list_update`,
//! docs/wire-format.md); revoking a badge is a new version without it. The
//! list holds no badge codes: each entry is
//! `HMAC-SHA256(key = the list's salt, message = the badge id)`, with a
//! random salt per list version. Badge ids are short, so the salt is what
//! stops one table of precomputed hashes from serving every cart and every
//! version; it does not stop someone holding one list (salt included) from
//! trying every short id against it. docs/wire-format.md says what that
//! means for the length of badge codes.
//!
//! Pure data here; the ledger keeps the list (`ledger/staff.rs`) and the
//! sale's approval.

use std::fmt;

use ring::hmac;
use serde::{Deserialize, Serialize};

/// Bytes of a badge hash (HMAC-SHA256).
pub const BADGE_HASH_LEN: usize = 32;
/// Shortest salt a list may carry.
pub const MIN_SALT_LEN: usize = 16;
/// Longest salt a list may carry.
pub const MAX_SALT_LEN: usize = 64;

/// A badge id hashed under one list's salt. Shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BadgeHash(pub [u8; BADGE_HASH_LEN]);

impl BadgeHash {
    /// The hash of `badge_id` (the code after the badge prefix, e.g. `0042`
    /// for `STAFF:0042`) under `salt`.
    pub fn of(salt: &[u8], badge_id: &str) -> BadgeHash {
        let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
        let tag = hmac::sign(&key, badge_id.as_bytes());
        let mut out = [0u8; BADGE_HASH_LEN];
        out.copy_from_slice(tag.as_ref());
        BadgeHash(out)
    }

    /// From stored or received bytes; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<BadgeHash> {
        <[u8; BADGE_HASH_LEN]>::try_from(bytes).ok().map(BadgeHash)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for BadgeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BadgeHash({})", self.to_hex())
    }
}

impl fmt::Display for BadgeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for BadgeHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::wire::b64::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for BadgeHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = crate::wire::b64::deserialize(d)?;
        BadgeHash::from_slice(&bytes).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "a badge hash is {BADGE_HASH_LEN} bytes, not {}",
                bytes.len()
            ))
        })
    }
}

/// Who approved an age check: the badge's hash and the list version it was
/// found in (the backend needs the version to know the salt). Recorded with
/// the sale and in its telemetry, never the badge code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffApproval {
    /// The badge, hashed under that version's salt.
    pub badge: BadgeHash,
    /// The staff list version.
    pub list_version: u64,
}

/// What the staff list says about a scanned badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadgeCheck {
    /// On the list: the age check is approved by this badge.
    Approved(StaffApproval),
    /// Not on the list held (never on it, or revoked): refused.
    NotOnList {
        /// The version held.
        list_version: u64,
    },
    /// The cart has received no staff list yet: nobody can approve, the
    /// shopper is sent to a till.
    NoList,
}

/// A staff list as the backend sends it (the body of `staff_list_update`,
/// envelope id: the version). Always the whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffList {
    /// Its version (newer replaces older; never 0).
    pub version: u64,
    /// The salt its badges are hashed with (base64 on the wire).
    #[serde(with = "crate::wire::b64")]
    pub salt: Vec<u8>,
    /// The badges, hashed (base64 each). Empty: nobody may approve.
    pub badges: Vec<BadgeHash>,
}

/// A staff list that cannot be stored: rejected whole (acknowledged as
/// `rejected` with this text); the list held stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffListError {
    /// Version 0 is the "no list" state, never a list.
    #[error("staff list version 0 is reserved for \"no list\"")]
    VersionZero,
    /// A salt too short to be a salt, or too long to be sane.
    #[error("staff list salt of {0} bytes (needs {MIN_SALT_LEN} to {MAX_SALT_LEN})")]
    Salt(usize),
}

impl StaffList {
    /// A list of `badge_ids` hashed under `salt` (the backend's side; the
    /// emulator and tests build lists with it).
    pub fn hashing(version: u64, salt: Vec<u8>, badge_ids: &[&str]) -> StaffList {
        let badges = badge_ids
            .iter()
            .map(|id| BadgeHash::of(&salt, id))
            .collect();
        StaffList {
            version,
            salt,
            badges,
        }
    }

    /// Checks what the wire cannot: the version and the salt's length.
    pub fn validate(&self) -> Result<(), StaffListError> {
        if self.version == 0 {
            return Err(StaffListError::VersionZero);
        }
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&self.salt.len()) {
            return Err(StaffListError::Salt(self.salt.len()));
        }
        Ok(())
    }

    /// Whether `badge_id` is on this list.
    pub fn check(&self, badge_id: &str) -> BadgeCheck {
        let hash = BadgeHash::of(&self.salt, badge_id);
        if self.badges.contains(&hash) {
            BadgeCheck::Approved(StaffApproval {
                badge: hash,
                list_version: self.version,
            })
        } else {
            BadgeCheck::NotOnList {
                list_version: self.version,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_hmac_sha256_keyed_by_the_salt() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let h = BadgeHash::of(b"Jefe", "what do ya want for nothing?");
        assert_eq!(
            h.to_hex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn another_salt_gives_another_hash() {
        let a = StaffList::hashing(1, vec![1; 16], &["0042"]);
        let b = StaffList::hashing(2, vec![2; 16], &["0042"]);
        assert_ne!(a.badges, b.badges);
        assert!(matches!(a.check("0042"), BadgeCheck::Approved(_)));
        assert_eq!(a.check("0043"), BadgeCheck::NotOnList { list_version: 1 });
    }

    #[test]
    fn bad_lists_are_refused() {
        let mut l = StaffList::hashing(0, vec![1; 16], &[]);
        assert_eq!(l.validate(), Err(StaffListError::VersionZero));
        l.version = 1;
        l.salt = vec![1; 8];
        assert_eq!(l.validate(), Err(StaffListError::Salt(8)));
        // An entry of the wrong length does not even decode.
        let json = r#"{"version":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA==","badges":["AAAA"]}"#;
        assert!(serde_json::from_str::<StaffList>(json).is_err());
    }
}
