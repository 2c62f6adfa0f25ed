//! Over-the-air updates, the cart's side (docs/updates.md): an `update`
//! job names a signed RAUC bundle; the cart checks it, downloads it, has
//! RAUC check its signature and install it into the other root slot at a
//! quiet moment, reboots into it, and after the boot decides by its own
//! health check whether to mark the slot good or bad.
//!
//! - this file: the settings (`[update]`), the running image's version,
//!   the version rule and the checks made before anything is downloaded;
//! - `download.rs`: the bundle over HTTPS with resume (`Range`), never
//!   into the space the ledger keeps, verified by size and SHA-256;
//! - `rauc.rs`: RAUC's D-Bus API (`de.pengutronix.rauc.Installer`):
//!   the bundle's own compatible and version (its signature checked),
//!   install with progress, mark good or bad, the slots.
//! - `pending.rs`: the update in flight across the reboot, in the ledger's
//!   cart state, and the health check that ends it.
//! - `power.rs`: a cart with a battery installs only on a charger.

pub mod download;
pub mod pending;
pub mod power;
pub mod rauc;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use store_and_forward::wire::jobs::Update;

/// `[update]`: where bundles go and how the cart guards its space and its
/// shoppers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateSettings {
    /// Where a bundle is downloaded (on the data partition, beside the
    /// ledger; one bundle at a time).
    pub dir: PathBuf,
    /// Free space kept besides what the ledger keeps (its payment reserve
    /// and what its telemetry quota may still take), bytes.
    pub reserve_bytes: u64,
    /// One download request may take this long, seconds (a resumed
    /// download goes on where it stopped).
    pub request_timeout_secs: u64,
    /// A download is tried this many times (resumed each time).
    pub download_attempts: u32,
    /// The store's maintenance window, `HH:MM-HH:MM` in UTC (may cross
    /// midnight); empty: any time the cart is quiet.
    pub window: String,
    /// Past this many hours waiting for a quiet moment in the window, the
    /// operator is told (the job's `statusDetails`, a warning in the
    /// journal); the cart keeps waiting.
    pub max_deferral_hours: u64,
    /// After booting a new slot, the health check must pass within this
    /// many seconds or the slot is marked bad and the cart reboots into the
    /// old one.
    pub health_deadline_secs: u64,
    /// The running image's `os-release` (its `IMAGE_VERSION`, else
    /// `VERSION_ID`, is the version an update is compared with).
    pub os_release: PathBuf,
    /// The kernel's power-supply class: a cart with a battery installs
    /// only while a charger is online (`power.rs`).
    pub power_supply_dir: PathBuf,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            dir: PathBuf::from("/var/lib/cart/update"),
            reserve_bytes: 64 * 1024 * 1024,
            request_timeout_secs: 600,
            download_attempts: 5,
            window: String::new(),
            max_deferral_hours: 72,
            health_deadline_secs: 300,
            os_release: PathBuf::from("/etc/os-release"),
            power_supply_dir: PathBuf::from("/sys/class/power_supply"),
        }
    }
}

/// Why an update is refused before anything is written to a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bundle is for another kind of cart.
    #[error("compatible {bundle:?} is not this cart's {system:?}")]
    Compatible {
        /// The bundle's (or the document's).
        bundle: String,
        /// RAUC's system compatible.
        system: String,
    },
    /// Not newer, and the document does not allow a downgrade.
    #[error(
        "version {offered} is not newer than the running {running} (allow_downgrade is not set)"
    )]
    NotNewer {
        /// The bundle's version.
        offered: String,
        /// The running image's.
        running: String,
    },
    /// The bundle says another version than the job.
    #[error("the bundle's version {bundle} is not the job's {job}")]
    VersionMismatch {
        /// The bundle's manifest.
        bundle: String,
        /// The job document.
        job: String,
    },
    /// Too big for the space the ledger leaves.
    #[error("{needed} bytes do not fit: {available} free beyond what the ledger keeps")]
    NoSpace {
        /// Still to download.
        needed: u64,
        /// Free beyond the reserve.
        available: u64,
    },
    /// The download does not match the document.
    #[error("{0}")]
    Integrity(String),
    /// RAUC refused the bundle (signature, format).
    #[error("RAUC refused the bundle: {0}")]
    Rauc(String),
}

/// The running image's version: `IMAGE_VERSION` of os-release, else
/// `VERSION_ID`.
pub fn running_version(os_release: &Path) -> Option<String> {
    let text = std::fs::read_to_string(os_release).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix('=')?;
            let v = v.trim().trim_matches('"').trim_matches('\'');
            (!v.is_empty()).then(|| v.to_owned())
        })
    };
    field("IMAGE_VERSION").or_else(|| field("VERSION_ID"))
}

/// Orders two image versions: dotted numbers compared as numbers, part by
/// part (`1.10.0` after `1.9.3`); a part that is not a number, or a
/// pre-release suffix after `-`, compares as text; build metadata after
/// `+` is ignored. `1.2` and `1.2.0` are equal.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (Vec<&str>, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        (core.split('.').collect(), pre)
    }
    let (ca, pa) = split(a.trim());
    let (cb, pb) = split(b.trim());
    for i in 0..ca.len().max(cb.len()) {
        let x = ca.get(i).copied().unwrap_or("0");
        let y = cb.get(i).copied().unwrap_or("0");
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    // A pre-release comes before its release (1.2.0-rc1 < 1.2.0).
    match (pa, pb) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    }
}

/// The checks made on the job's document before anything is downloaded:
/// this cart's compatible, and newer than what runs unless a downgrade is
/// allowed. The same rules hold for the bundle's own manifest after the
/// download ([`check_bundle`]).
pub fn check_document(doc: &Update, system_compatible: &str, running: &str) -> Result<(), Refusal> {
    if doc.compatible != system_compatible {
        return Err(Refusal::Compatible {
            bundle: doc.compatible.clone(),
            system: system_compatible.to_owned(),
        });
    }
    if !doc.allow_downgrade && compare_versions(&doc.version, running) != Ordering::Greater {
        return Err(Refusal::NotNewer {
            offered: doc.version.clone(),
            running: running.to_owned(),
        });
    }
    Ok(())
}

/// The bundle's manifest (as RAUC read it, its signature checked) against
/// the job and the system.
pub fn check_bundle(
    doc: &Update,
    bundle_compatible: &str,
    bundle_version: &str,
    system_compatible: &str,
) -> Result<(), Refusal> {
    if bundle_compatible != system_compatible {
        return Err(Refusal::Compatible {
            bundle: bundle_compatible.to_owned(),
            system: system_compatible.to_owned(),
        });
    }
    if bundle_version != doc.version {
        return Err(Refusal::VersionMismatch {
            bundle: bundle_version.to_owned(),
            job: doc.version.clone(),
        });
    }
    Ok(())
}

/// A maintenance window, `HH:MM-HH:MM` (UTC; it may cross midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    from_min: u32,
    to_min: u32,
}

impl Window {
    /// Reads `HH:MM-HH:MM`; empty means always.
    pub fn parse(text: &str) -> Result<Option<Window>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let minutes = |t: &str| -> Result<u32, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{t:?} is not HH:MM"))?;
            let h: u32 = h.parse().map_err(|_| format!("{t:?} is not HH:MM"))?;
            let m: u32 = m.parse().map_err(|_| format!("{t:?} is not HH:MM"))?;
            if h > 23 || m > 59 {
                return Err(format!("{t:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("window {text:?} is not HH:MM-HH:MM"))?;
        let (from_min, to_min) = (minutes(a)?, minutes(b)?);
        if from_min == to_min {
            return Err(format!("window {text:?} is empty"));
        }
        Ok(Some(Window { from_min, to_min }))
    }

    /// Whether `ms` (since the epoch) is inside the window.
    pub fn contains(&self, ms: i64) -> bool {
        let minute = (ms.div_euclid(60_000)).rem_euclid(24 * 60) as u32;
        if self.from_min < self.to_min {
            (self.from_min..self.to_min).contains(&minute)
        } else {
            minute >= self.from_min || minute < self.to_min
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: &str, compatible: &str, allow_downgrade: bool) -> Update {
        Update {
            version: version.into(),
            bundle_url: "https://updates.example.com/b.raucb".into(),
            size: 1,
            sha256: "0".repeat(64),
            compatible: compatible.into(),
            allow_downgrade,
        }
    }

    #[test]
    fn versions_compare_part_by_part_as_numbers() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.10.0", "1.9.3", Greater),
            ("1.2", "1.2.0", Equal),
            ("1.2.0+build7", "1.2.0", Equal),
            ("1.2.0-rc1", "1.2.0", Less),
            ("1.2.0-rc2", "1.2.0-rc1", Greater),
            ("2026.12.1", "2026.11.30", Greater),
            ("0.1.0", "0.1.1", Less),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn a_document_must_fit_the_cart_and_be_newer_unless_allowed() {
        let c = "cart-qemux86-64";
        assert_eq!(check_document(&doc("1.3.0", c, false), c, "1.2.9"), Ok(()));
        assert!(matches!(
            check_document(&doc("1.3.0", "cart-other", false), c, "1.2.9"),
            Err(Refusal::Compatible { .. })
        ));
        assert!(matches!(
            check_document(&doc("1.2.9", c, false), c, "1.2.9"),
            Err(Refusal::NotNewer { .. })
        ));
        assert!(matches!(
            check_document(&doc("1.1.0", c, false), c, "1.2.9"),
            Err(Refusal::NotNewer { .. })
        ));
        assert_eq!(check_document(&doc("1.1.0", c, true), c, "1.2.9"), Ok(()));
    }

    #[test]
    fn the_bundle_must_say_what_the_job_said() {
        let c = "cart-qemux86-64";
        let d = doc("1.3.0", c, false);
        assert_eq!(check_bundle(&d, c, "1.3.0", c), Ok(()));
        assert!(matches!(
            check_bundle(&d, "cart-other", "1.3.0", c),
            Err(Refusal::Compatible { .. })
        ));
        assert!(matches!(
            check_bundle(&d, c, "1.2.0", c),
            Err(Refusal::VersionMismatch { .. })
        ));
    }

    #[test]
    fn os_release_gives_the_image_version_first() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("os-release");
        std::fs::write(&f, "ID=cart\nVERSION_ID=\"5.0\"\nIMAGE_VERSION=\"1.4.2\"\n").unwrap();
        assert_eq!(running_version(&f).as_deref(), Some("1.4.2"));
        std::fs::write(&f, "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
        assert_eq!(running_version(&f).as_deref(), Some("12"));
        assert_eq!(running_version(&dir.path().join("none")), None);
    }

    #[test]
    fn windows_may_cross_midnight() {
        let at = |h: i64, m: i64| (h * 60 + m) * 60_000 + 20 * 86_400_000;
        let night = Window::parse("23:30-04:00").unwrap().unwrap();
        assert!(night.contains(at(23, 45)));
        assert!(night.contains(at(2, 0)));
        assert!(!night.contains(at(4, 0)));
        assert!(!night.contains(at(12, 0)));
        let day = Window::parse("02:00-05:00").unwrap().unwrap();
        assert!(day.contains(at(2, 0)) && day.contains(at(4, 59)));
        assert!(!day.contains(at(5, 0)) && !day.contains(at(1, 59)));
        assert_eq!(Window::parse("").unwrap(), None);
        for bad in ["2-5", "25:00-01:00", "02:00-02:00", "02:00"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
