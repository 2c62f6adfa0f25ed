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

/// A point on the cart's own clock that counts elapsed time within one
/// boot (`CLOCK_BOOTTIME`: it goes on through suspend, and no one sets
/// it), with the boot it belongs to: after a reboot it starts again. The
/// boot is the kernel's boot id where procfs shows it; under the unit's
/// `ProcSubset=pid` it does not, and the id is this process's own (random):
/// elapsed time then counts within one run of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonoPoint {
    /// The kernel's boot id.
    pub boot_id: String,
    /// Milliseconds since that boot.
    pub ms: i64,
}

impl MonoPoint {
    /// Now, from the kernel; `None` when the clock cannot be read.
    pub fn now() -> Option<MonoPoint> {
        static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let boot_id = BOOT_ID
            .get_or_init(|| {
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("run-{}", uuid::Uuid::new_v4()))
            })
            .clone();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the valid pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
            return None;
        }
        Some(MonoPoint {
            boot_id,
            ms: ts.tv_sec.saturating_mul(1000) + ts.tv_nsec / 1_000_000,
        })
    }
}

/// The last known-good time, and where on the cart's own clock it was
/// learnt (`None`: by older firmware, or without a kernel clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPoint {
    /// The known-good time.
    pub known_good: Timestamp,
    /// When, on the cart's own clock.
    pub at: Option<MonoPoint>,
}

/// What the cart makes of a time the backend sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeVerdict {
    /// Vouched for: the new known-good time.
    Advance(Timestamp),
    /// Not after the known-good time: nothing changes.
    Behind,
    /// Further ahead than the cart can vouch for (the backend's clock
    /// jumped, or a far-future time): ignored, the known-good time stays.
    Unvouched {
        /// The latest time the cart could have accepted.
        upper: Timestamp,
    },
}

/// The trusted-time rule for a backend timestamp: known-good time moves
/// forward only by what the cart can vouch for.
///
/// - Within one boot: up to the last known-good time plus the cart's own
///   elapsed time since it was learnt, plus `slack_secs` (the backend's
///   processing, the link, the two clocks' drift).
/// - After a reboot (the elapsed-time clock started again; a cart switched
///   off overnight) or from a point recorded without it: up to the later
///   of the last known-good time and the wall clock, plus the slack. A wall
///   clock that went backwards stays untrusted ([`clock_trust`]) until the
///   time sync sets it right; the backend cannot push it forward alone.
/// - The first time ever: up to the wall clock plus the slack; nothing when
///   the wall clock is unset.
pub fn judge_backend_time(
    prev: Option<&TrustPoint>,
    backend: Timestamp,
    wall: Timestamp,
    here: Option<&MonoPoint>,
    slack_secs: u64,
) -> TimeVerdict {
    let upper = match prev {
        Some(p) if backend <= p.known_good => return TimeVerdict::Behind,
        Some(TrustPoint {
            known_good,
            at: Some(at),
        }) if here.is_some_and(|h| h.boot_id == at.boot_id && h.ms >= at.ms) => {
            let elapsed = here.map_or(0, |h| h.ms - at.ms);
            Timestamp(known_good.0.saturating_add(elapsed)).plus_secs(slack_secs)
        }
        Some(p) => p.known_good.max(wall).plus_secs(slack_secs),
        None if wall < CLOCK_FLOOR => return TimeVerdict::Unvouched { upper: wall },
        None => wall.plus_secs(slack_secs),
    };
    if backend <= upper {
        TimeVerdict::Advance(backend)
    } else {
        TimeVerdict::Unvouched { upper }
    }
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

    fn at(boot: &str, ms: i64) -> MonoPoint {
        MonoPoint {
            boot_id: boot.into(),
            ms,
        }
    }

    #[test]
    fn backend_time_moves_known_good_only_as_far_as_the_cart_vouches() {
        let t0 = Timestamp(CLOCK_FLOOR.0 + 10_000_000);
        let prev = TrustPoint {
            known_good: t0,
            at: Some(at("boot-1", 5_000)),
        };
        let here = at("boot-1", 5_000 + 3_600_000); // an hour later
        let judge = |b: Timestamp, wall: Timestamp, here: &MonoPoint| {
            judge_backend_time(Some(&prev), b, wall, Some(here), 300)
        };
        // In step: accepted.
        let b = t0.plus_secs(3_600);
        assert_eq!(judge(b, b, &here), TimeVerdict::Advance(b));
        // A backend clock a little ahead: within the slack.
        assert_eq!(
            judge(b.plus_secs(299), b, &here),
            TimeVerdict::Advance(b.plus_secs(299))
        );
        // Jumping (a day ahead), or a far-future time: ignored, even with a
        // wall clock that went along with it.
        let ahead = b.plus_secs(86_400);
        assert_eq!(
            judge(ahead, ahead, &here),
            TimeVerdict::Unvouched {
                upper: b.plus_secs(300)
            }
        );
        // Behind: nothing changes.
        assert_eq!(judge(t0.minus_secs(10), b, &here), TimeVerdict::Behind);
        // Rebooted overnight: the elapsed time is gone; the wall clock (on
        // the real-time clock through the night) bounds it.
        let morning = t0.plus_secs(10 * 3_600);
        let rebooted = at("boot-2", 20_000);
        assert_eq!(
            judge(morning, morning, &rebooted),
            TimeVerdict::Advance(morning)
        );
        assert!(matches!(
            judge(morning.plus_secs(86_400), morning, &rebooted),
            TimeVerdict::Unvouched { .. }
        ));
        // A wall clock that lost the night (went back) cannot be carried
        // forward by the backend alone.
        assert!(matches!(
            judge(morning, t0.minus_secs(3_600), &rebooted),
            TimeVerdict::Unvouched { .. }
        ));
        // The first time ever: the wall clock bounds it; unset, nothing.
        assert_eq!(
            judge_backend_time(None, b, b, Some(&here), 300),
            TimeVerdict::Advance(b)
        );
        assert!(matches!(
            judge_backend_time(None, b, Timestamp(0), Some(&here), 300),
            TimeVerdict::Unvouched { .. }
        ));
    }

    #[test]
    fn the_kernel_clock_counts_within_a_boot() {
        let a = MonoPoint::now().expect("procfs and CLOCK_BOOTTIME");
        let b = MonoPoint::now().unwrap();
        assert_eq!(a.boot_id, b.boot_id);
        assert!(b.ms >= a.ms && a.ms > 0);
    }

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
