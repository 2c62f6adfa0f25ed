//! Time as the ledger sees it: wall-clock milliseconds passed in by the
//! caller (never read behind its back), and the trusted-time rule.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The wall clock now.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// From whole seconds.
    pub fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// `self + secs`.
    pub fn plus_secs(self, secs: u64) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000),
        )
    }

    /// `self - secs`.
    pub fn minus_secs(self, secs: u64) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000),
        )
    }

    /// Whole seconds from `earlier` to `self` (0 when `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> u64 {
        u64::try_from((self.0 - earlier.0) / 1000).unwrap_or(0)
    }
}

/// A wall clock before this (2025-01-01T00:00:00Z) is taken as unset: the
/// real-time clock lost its battery or was never set.
pub const CLOCK_FLOOR: Timestamp = Timestamp(1_735_689_600_000);

/// Whether the wall clock can be trusted for deadlines, velocity windows and
/// certificate validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ClockTrust {
    /// At or after the last known-good time.
    Trusted,
    /// Before [`CLOCK_FLOOR`]: never set.
    Unset,
    /// Earlier than the last time known to be good (by more than the
    /// tolerance): the clock went backwards.
    BehindKnownGood {
        /// The last known-good time.
        known_good: Timestamp,
    },
}

/// Applies the trusted-time rule.
pub fn clock_trust(
    now: Timestamp,
    known_good: Option<Timestamp>,
    tolerance_secs: u64,
) -> ClockTrust {
    if now < CLOCK_FLOOR {
        return ClockTrust::Unset;
    }
    match known_good {
        Some(good) if now < good.minus_secs(tolerance_secs) => {
            ClockTrust::BehindKnownGood { known_good: good }
        }
        _ => ClockTrust::Trusted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_backwards_clocks_are_untrusted() {
        let good = Timestamp(CLOCK_FLOOR.0 + 10_000_000);
        assert_eq!(clock_trust(Timestamp(0), None, 60), ClockTrust::Unset);
        assert_eq!(clock_trust(good, Some(good), 60), ClockTrust::Trusted);
        assert_eq!(
            clock_trust(good.minus_secs(30), Some(good), 60),
            ClockTrust::Trusted
        );
        assert_eq!(
            clock_trust(good.minus_secs(61), Some(good), 60),
            ClockTrust::BehindKnownGood { known_good: good }
        );
        assert_eq!(
            clock_trust(good.plus_secs(1), None, 60),
            ClockTrust::Trusted
        );
    }
}
