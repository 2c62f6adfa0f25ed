//! Step 1, network onboarding: the Wi-Fi settings of the provisioning QR
//! code (`WIFI:S:<ssid>;T:WPA;P:<password>;;`, parsed by hal's scanner into
//! a zeroized [`WifiCredentials`]) or of the config, written as a
//! NetworkManager keyfile: mode 0600 (it holds the passphrase), written
//! atomically into the configured folder, then NetworkManager reloads.
//!
//! The passphrase is never logged, never in an error, and lives only in
//! zeroized buffers on the way to the file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use hal::scanner::{WifiCredentials, WifiSecurity};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::config::WifiConfig;
use super::{ProvisionError, cert};

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

/// The keyfile's path.
pub fn keyfile_path(config: &WifiConfig) -> PathBuf {
    config
        .connections_dir
        .join(format!("{}.nmconnection", config.connection_name))
}

/// Escapes a keyfile (GKeyFile) string value; control characters are refused.
fn escape(value: &str, what: &'static str) -> Result<String, ProvisionError> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            c if c.is_control() => return Err(ProvisionError::Wifi(what)),
            c => out.push(c),
        }
    }
    if out.starts_with(' ') {
        out.replace_range(0..1, "\\s");
    }
    Ok(out)
}

/// The keyfile's text. The UUID is derived from the cart and the SSID, so
/// writing the same network again gives the same file.
pub fn keyfile(
    config: &WifiConfig,
    cart_id: &str,
    wifi: &WifiCredentials,
) -> Result<Zeroizing<String>, ProvisionError> {
    if wifi.ssid.is_empty() || wifi.ssid.len() > 32 {
        return Err(ProvisionError::Wifi("the SSID must be 1 to 32 bytes"));
    }
    let digest = Sha256::digest(format!("{cart_id}\0{}", wifi.ssid).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = Zeroizing::new(String::new());
    let t = &mut *text;
    let _ = write!(
        t,
        "[connection]\nid={}\nuuid={uuid}\ntype=wifi\nautoconnect=true\n\n[wifi]\nmode=infrastructure\nssid={}\n",
        escape(
            &config.connection_name,
            "the connection name has control characters"
        )?,
        escape(&wifi.ssid, "the SSID has control characters")?
    );
    if wifi.hidden {
        t.push_str("hidden=true\n");
    }
    match wifi.security {
        WifiSecurity::Open => {}
        WifiSecurity::Wep => {
            return Err(ProvisionError::Wifi(
                "WEP networks are refused: use WPA2 or WPA3",
            ));
        }
        WifiSecurity::Wpa => {
            let n = wifi.password.len();
            if !(8..=63).contains(&n) {
                return Err(ProvisionError::Wifi(
                    "a WPA passphrase has 8 to 63 characters",
                ));
            }
            let psk = Zeroizing::new(escape(
                &wifi.password,
                "the passphrase has control characters",
            )?);
            t.push_str("\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=");
            t.push_str(&psk);
            t.push('\n');
        }
    }
    t.push_str("\n[ipv4]\nmethod=auto\n\n[ipv6]\naddr-gen-mode=default\nmethod=auto\n");
    Ok(text)
}

/// Writes the keyfile (0600, atomic) and asks NetworkManager to reload.
pub fn apply(
    config: &WifiConfig,
    cart_id: &str,
    wifi: &WifiCredentials,
) -> Result<PathBuf, ProvisionError> {
    let text = keyfile(config, cart_id, wifi)?;
    let path = keyfile_path(config);
    std::fs::create_dir_all(&config.connections_dir).map_err(|source| ProvisionError::File {
        path: config.connections_dir.clone(),
        source,
    })?;
    cert::write_atomic(&path, text.as_bytes(), 0o600)?;
    tracing::info!(
        ssid = %wifi.ssid,
        security = ?wifi.security,
        file = %path.display(),
        "Wi-Fi connection written"
    );
    if let Some((program, args)) = config.reload_command.split_first() {
        match Command::new(program).args(args).status() {
            Ok(s) if s.success() => {}
            // The file is in place: NetworkManager reads it at its next
            // start at the latest. Not an error for the pipeline.
            Ok(s) => tracing::warn!(command = %program, status = %s, "network reload failed"),
            Err(e) => tracing::warn!(command = %program, cause = %e, "network reload not run"),
        }
    }
    Ok(path)
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
    fn keyfile_escapes_and_is_stable() {
        let c = WifiConfig::default();
        let a = keyfile(&c, "cart-1", &wpa("shop;net", "pass\\word1")).unwrap();
        assert!(a.contains("ssid=shop\\;net\n"), "{}", *a);
        assert!(a.contains("psk=pass\\\\word1\n"));
        let b = keyfile(&c, "cart-1", &wpa("shop;net", "pass\\word1")).unwrap();
        assert_eq!(*a, *b);
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
        let dir = tempfile::tempdir().unwrap();
        let c = WifiConfig {
            connections_dir: dir.path().join("nm"),
            reload_command: vec![],
            ..c
        };
        let path = apply(&c, "cart-1", &from_config).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("ssid=backroom\n") && text.contains("psk=configured-pw\n"));
    }

    #[test]
    fn bad_credentials_are_refused_without_the_password() {
        let c = WifiConfig::default();
        let e = keyfile(&c, "cart-1", &wpa("net", "short")).unwrap_err();
        assert!(!e.to_string().contains("short"));
        let e = keyfile(&c, "cart-1", &wpa("net", "line\nbreak-secret")).unwrap_err();
        assert!(!e.to_string().contains("secret"));
        let mut wep = wpa("net", "abcdefgh");
        wep.security = WifiSecurity::Wep;
        assert!(keyfile(&c, "cart-1", &wep).is_err());
    }
}
