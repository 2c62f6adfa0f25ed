//! Step 1, network onboarding: the Wi-Fi settings of the provisioning QR
//! code (`WIFI:S:<ssid>;T:WPA;P:<password>;;`, parsed by hal's scanner into
//! a zeroized [`WifiCredentials`]) or of the config, handed to
//! NetworkManager over D-Bus ([`super::nm`]) as the cart's one Wi-Fi
//! connection, which a newer code replaces. The step is done only once the
//! connection is up; a refused passphrase asks for a new code.
//!
//! This file is sans-IO: the checks, the connection's settings, and
//! [`JoinFollower`], which reads the Wi-Fi device's state changes into a
//! [`JoinOutcome`]. The passphrase is never logged and never in an error;
//! it leaves zeroized memory only in the D-Bus message to NetworkManager.

use std::collections::HashMap;

use hal::scanner::{WifiCredentials, WifiSecurity};
use sha2::{Digest, Sha256};
use zbus::zvariant::Value;
use zeroize::Zeroizing;

use super::ProvisionError;
use super::config::WifiConfig;

/// Where the credentials come from: a scanned QR code wins over the config.
pub fn credentials(
    config: &WifiConfig,
    scanned: Option<WifiCredentials>,
) -> Option<WifiCredentials> {
    scanned.or_else(|| {
        let ssid = config.ssid.clone().filter(|s| !s.is_empty())?;
        let password = Zeroizing::new(config.password.clone().unwrap_or_default());
        Some(WifiCredentials {
            ssid,
            security: if password.is_empty() {
                WifiSecurity::Open
            } else {
                WifiSecurity::Wpa
            },
            password,
            hidden: false,
        })
    })
}

/// The connection's UUID: one per cart and connection name, so a new
/// provisioning code replaces the cart's network instead of adding one.
pub fn connection_uuid(config: &WifiConfig, cart_id: &str) -> String {
    let digest = Sha256::digest(format!("{cart_id}\0{}", config.connection_name).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Refuses settings NetworkManager would refuse or that are unsafe (WEP).
pub fn check(wifi: &WifiCredentials) -> Result<(), ProvisionError> {
    if wifi.ssid.is_empty() || wifi.ssid.len() > 32 {
        return Err(ProvisionError::Wifi("the SSID must be 1 to 32 bytes"));
    }
    match wifi.security {
        WifiSecurity::Open => Ok(()),
        WifiSecurity::Wep => Err(ProvisionError::Wifi(
            "WEP networks are refused: use WPA2 or WPA3",
        )),
        WifiSecurity::Wpa => {
            let n = wifi.password.len();
            if !(8..=63).contains(&n) {
                return Err(ProvisionError::Wifi(
                    "a WPA passphrase has 8 to 63 characters",
                ));
            }
            if wifi.password.chars().any(char::is_control) {
                return Err(ProvisionError::Wifi(
                    "the passphrase has control characters",
                ));
            }
            Ok(())
        }
    }
}

/// The connection's settings (`a{sa{sv}}`), as `AddConnection` and
/// `Update` take them: infrastructure mode, WPA-PSK (or open), DHCP and
/// IPv6 autoconfiguration, connecting by itself at every boot.
pub fn settings<'a>(
    config: &'a WifiConfig,
    uuid: &'a str,
    wifi: &'a WifiCredentials,
) -> Result<HashMap<&'static str, HashMap<&'static str, Value<'a>>>, ProvisionError> {
    check(wifi)?;
    let mut all = HashMap::new();
    all.insert(
        "connection",
        HashMap::from([
            ("id", Value::from(config.connection_name.as_str())),
            ("uuid", Value::from(uuid)),
            ("type", Value::from("802-11-wireless")),
            ("autoconnect", Value::from(true)),
        ]),
    );
    all.insert(
        "802-11-wireless",
        HashMap::from([
            ("ssid", Value::from(wifi.ssid.as_bytes())),
            ("mode", Value::from("infrastructure")),
            ("hidden", Value::from(wifi.hidden)),
        ]),
    );
    if wifi.security == WifiSecurity::Wpa {
        all.insert(
            "802-11-wireless-security",
            HashMap::from([
                ("key-mgmt", Value::from("wpa-psk")),
                ("psk", Value::from(wifi.password.as_str())),
            ]),
        );
    }
    all.insert("ipv4", HashMap::from([("method", Value::from("auto"))]));
    all.insert("ipv6", HashMap::from([("method", Value::from("auto"))]));
    Ok(all)
}

/// A `StateChanged` signal of the Wi-Fi device (NetworkManager's
/// `NMDeviceState` and `NMDeviceStateReason` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceEvent {
    /// The state entered.
    pub new_state: u32,
    /// The state left.
    pub old_state: u32,
    /// Why.
    pub reason: u32,
}

/// `NM_DEVICE_STATE_*` values the follower reads.
mod state {
    pub const DISCONNECTED: u32 = 30;
    pub const PREPARE: u32 = 40;
    pub const SECONDARIES: u32 = 90;
    pub const ACTIVATED: u32 = 100;
    pub const FAILED: u32 = 120;
}

/// `NM_DEVICE_STATE_REASON_*` values with their own outcome.
mod reason {
    pub const NONE: u32 = 0;
    pub const NO_SECRETS: u32 = 7;
    pub const NEW_ACTIVATION: u32 = 39;
    pub const SSID_NOT_FOUND: u32 = 53;
}

/// How a join ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The connection is up (addresses configured).
    Up,
    /// The network refused the passphrase (NetworkManager asked for new
    /// secrets and had none): a new provisioning code is needed.
    WrongPassword,
    /// No network with this SSID in range: retried; a new code replaces it.
    NotFound,
    /// Another failure, with NetworkManager's reason code: retried.
    Failed {
        /// `NMDeviceStateReason`.
        reason: u32,
    },
    /// Neither up nor failed within the join timeout: retried.
    TimedOut,
}

/// Follows the Wi-Fi device through one activation.
#[derive(Debug, Default)]
pub struct JoinFollower {
    started: bool,
}

impl JoinFollower {
    /// Reads one state change; `Some` once the join has ended.
    pub fn on(&mut self, e: DeviceEvent) -> Option<JoinOutcome> {
        let failure = |reason| match reason {
            reason::NO_SECRETS => JoinOutcome::WrongPassword,
            reason::SSID_NOT_FOUND => JoinOutcome::NotFound,
            reason => JoinOutcome::Failed { reason },
        };
        match e.new_state {
            state::ACTIVATED => Some(JoinOutcome::Up),
            state::FAILED => Some(failure(e.reason)),
            // Left our activation without FAILED (NetworkManager sometimes
            // skips it). The connection it replaces going down first
            // (deactivating, then disconnected for the new activation) is
            // no failure.
            state::DISCONNECTED
                if self.started && !matches!(e.reason, reason::NONE | reason::NEW_ACTIVATION) =>
            {
                Some(failure(e.reason))
            }
            s => {
                if (state::PREPARE..=state::SECONDARIES).contains(&s) {
                    self.started = true;
                }
                None
            }
        }
    }
}

/// Hands the connection to NetworkManager (added, or replacing the cart's
/// saved one) and waits until it is up or has failed. Recorded as started
/// in the ledger before this runs, so a restart resumes with the saved
/// connection ([`rejoin`]).
pub async fn join(
    config: &WifiConfig,
    cart_id: &str,
    wifi: &WifiCredentials,
) -> Result<JoinOutcome, ProvisionError> {
    let uuid = connection_uuid(config, cart_id);
    let settings = settings(config, &uuid, wifi)?;
    let nm = super::nm::NetworkManagerClient::system().await?;
    let path = nm.save(&uuid, settings).await?;
    tracing::info!(
        ssid = %wifi.ssid,
        security = ?wifi.security,
        connection = %config.connection_name,
        "Wi-Fi connection saved in NetworkManager; joining"
    );
    Ok(nm
        .join(&path, config.interface.as_deref(), config.join_timeout())
        .await?)
}

/// Joins with the connection NetworkManager already saved for the cart
/// (after a restart in the middle of the step); `None` when it has none.
pub async fn rejoin(
    config: &WifiConfig,
    cart_id: &str,
) -> Result<Option<JoinOutcome>, ProvisionError> {
    let nm = super::nm::NetworkManagerClient::system().await?;
    let Some(path) = nm.connection(&connection_uuid(config, cart_id)).await? else {
        return Ok(None);
    };
    Ok(Some(
        nm.join(&path, config.interface.as_deref(), config.join_timeout())
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wpa(ssid: &str, pw: &str) -> WifiCredentials {
        WifiCredentials {
            ssid: ssid.into(),
            security: WifiSecurity::Wpa,
            password: Zeroizing::new(pw.into()),
            hidden: false,
        }
    }

    #[test]
    fn settings_carry_the_network_and_one_uuid_per_cart() {
        let c = WifiConfig::default();
        let uuid = connection_uuid(&c, "cart-1");
        assert_eq!(uuid, connection_uuid(&c, "cart-1"), "stable");
        assert_ne!(uuid, connection_uuid(&c, "cart-2"));
        let w = wpa("shop;net", "pass\\word1");
        let s = settings(&c, &uuid, &w).unwrap();
        assert_eq!(s["connection"]["uuid"], Value::from(uuid.as_str()));
        assert_eq!(s["connection"]["type"], Value::from("802-11-wireless"));
        assert_eq!(s["802-11-wireless"]["ssid"], Value::from(&b"shop;net"[..]));
        assert_eq!(
            s["802-11-wireless-security"]["psk"],
            Value::from("pass\\word1")
        );
        let open = WifiCredentials {
            security: WifiSecurity::Open,
            password: Zeroizing::new(String::new()),
            ..wpa("guest", "")
        };
        assert!(
            !settings(&c, &uuid, &open)
                .unwrap()
                .contains_key("802-11-wireless-security")
        );
    }

    #[test]
    fn config_credentials_are_used_unless_a_code_was_scanned() {
        let c = WifiConfig {
            ssid: Some("backroom".into()),
            password: Some("configured-pw".into()),
            ..WifiConfig::default()
        };
        let from_config = credentials(&c, None).unwrap();
        assert_eq!(from_config.ssid, "backroom");
        assert_eq!(from_config.security, WifiSecurity::Wpa);
        let scanned = credentials(&c, Some(wpa("shop", "scanned-pw"))).unwrap();
        assert_eq!(scanned.ssid, "shop");
        assert!(credentials(&WifiConfig::default(), None).is_none());
    }

    #[test]
    fn bad_credentials_are_refused_without_the_password() {
        let e = check(&wpa("net", "short")).unwrap_err();
        assert!(!e.to_string().contains("short"));
        let e = check(&wpa("net", "line\nbreak-secret")).unwrap_err();
        assert!(!e.to_string().contains("secret"));
        let mut wep = wpa("net", "abcdefgh");
        wep.security = WifiSecurity::Wep;
        assert!(check(&wep).is_err());
        assert!(check(&wpa(&"x".repeat(33), "abcdefgh")).is_err());
    }

    fn ev(new_state: u32, old_state: u32, reason: u32) -> DeviceEvent {
        DeviceEvent {
            new_state,
            old_state,
            reason,
        }
    }

    #[test]
    fn the_follower_reads_nm_state_changes() {
        // Up: disconnected -> prepare -> config -> ip-config -> activated.
        let mut f = JoinFollower::default();
        for (n, o) in [(40, 30), (50, 40), (70, 50), (90, 70)] {
            assert_eq!(f.on(ev(n, o, 0)), None);
        }
        assert_eq!(f.on(ev(100, 90, 0)), Some(JoinOutcome::Up));
        // A wrong passphrase: need-auth, then failed with no-secrets.
        let mut f = JoinFollower::default();
        assert_eq!(f.on(ev(50, 40, 0)), None);
        assert_eq!(f.on(ev(60, 50, 8)), None);
        assert_eq!(f.on(ev(120, 60, 7)), Some(JoinOutcome::WrongPassword));
        assert_eq!(
            JoinFollower::default().on(ev(120, 50, 53)),
            Some(JoinOutcome::NotFound)
        );
        assert_eq!(
            JoinFollower::default().on(ev(120, 50, 10)),
            Some(JoinOutcome::Failed { reason: 10 })
        );
        // The old connection going down before ours starts is no failure.
        let mut f = JoinFollower::default();
        assert_eq!(f.on(ev(110, 100, 39)), None);
        assert_eq!(f.on(ev(30, 110, 39)), None);
        assert_eq!(f.on(ev(40, 30, 0)), None);
        assert_eq!(f.on(ev(30, 40, 7)), Some(JoinOutcome::WrongPassword));
    }
}
