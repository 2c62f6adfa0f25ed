//! Whether the cart may install on its current power: a cart with a
//! battery installs only on a charger (an install and its reboot must not
//! run a battery flat halfway); a cart without one (mains powered, as the
//! QEMU guest) always may. Read from the kernel's power-supply class
//! (`/sys/class/power_supply/<name>/{type,online,present}`), which the
//! unit's sandbox leaves readable.

use std::path::Path;

/// What the power supplies say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Power {
    /// No battery: nothing to wait for.
    NoBattery,
    /// A battery, and a charger (a mains, USB or wireless supply) online.
    OnCharger,
    /// A battery and no charger online.
    OnBattery,
}

impl Power {
    /// May an install start?
    pub fn may_install(&self) -> bool {
        !matches!(self, Power::OnBattery)
    }
}

/// Reads the power-supply class at `dir` (normally
/// `/sys/class/power_supply`). A missing folder is a cart without
/// batteries; an unreadable attribute counts as absent.
pub fn read(dir: &Path) -> Power {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Power::NoBattery;
    };
    let attr = |supply: &Path, name: &str| {
        std::fs::read_to_string(supply.join(name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let mut battery = false;
    let mut charger = false;
    for e in entries.flatten() {
        let supply = e.path();
        match attr(&supply, "type").as_str() {
            // A battery slot without a battery in it does not count.
            "Battery" => battery |= attr(&supply, "present") != "0",
            "Mains" | "USB" | "Wireless" => charger |= attr(&supply, "online") == "1",
            _ => {}
        }
    }
    match (battery, charger) {
        (false, _) => Power::NoBattery,
        (true, true) => Power::OnCharger,
        (true, false) => Power::OnBattery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(dir: &Path, name: &str, attrs: &[(&str, &str)]) {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        for (k, v) in attrs {
            std::fs::write(p.join(k), format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn a_cart_without_a_battery_may_always_install() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(&d.path().join("missing")), Power::NoBattery);
        assert_eq!(read(d.path()), Power::NoBattery);
        supply(d.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        assert_eq!(read(d.path()), Power::NoBattery);
        supply(d.path(), "BAT0", &[("type", "Battery"), ("present", "0")]);
        assert_eq!(read(d.path()), Power::NoBattery, "an empty battery slot");
        assert!(read(d.path()).may_install());
    }

    #[test]
    fn a_cart_on_battery_waits_for_a_charger() {
        let d = tempfile::tempdir().unwrap();
        supply(
            d.path(),
            "BAT0",
            &[("type", "Battery"), ("present", "1"), ("capacity", "80")],
        );
        supply(d.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        assert_eq!(read(d.path()), Power::OnBattery);
        assert!(!read(d.path()).may_install());
        supply(d.path(), "usb-charger", &[("type", "USB"), ("online", "1")]);
        assert_eq!(read(d.path()), Power::OnCharger);
        assert!(read(d.path()).may_install());
        // A battery without a `present` attribute is there.
        let e = tempfile::tempdir().unwrap();
        supply(e.path(), "BAT1", &[("type", "Battery")]);
        assert_eq!(read(e.path()), Power::OnBattery);
    }
}
