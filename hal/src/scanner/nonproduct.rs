//! Codes that are not products but that the cart acts on: the provisioning
//! QR code (`WIFI:` form, network settings only) and staff badges.

use std::fmt;

use zeroize::Zeroizing;

use super::reject::RejectReason;

/// The security of a Wi-Fi network from a `WIFI:` code's `T:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WifiSecurity {
    /// WPA/WPA2/WPA3 personal (`T:WPA`, `T:WPA2`, `T:WPA3`, `T:SAE`).
    Wpa,
    /// WEP (`T:WEP`), accepted so the UI can refuse it with a reason.
    Wep,
    /// An open network (`T:nopass` or no `T:` field).
    Open,
}

/// Network settings from a provisioning QR code. The password is zeroized
/// when dropped and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct WifiCredentials {
    /// The network name.
    pub ssid: String,
    /// The security type.
    pub security: WifiSecurity,
    /// The passphrase (empty for an open network).
    pub password: Zeroizing<String>,
    /// Whether the network does not broadcast its SSID (`H:true`).
    pub hidden: bool,
}

impl fmt::Debug for WifiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WifiCredentials")
            .field("ssid", &self.ssid)
            .field("security", &self.security)
            .field("password", &"<redacted>")
            .field("hidden", &self.hidden)
            .finish()
    }
}

/// A staff badge: the configured prefix followed by the staff id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffBadge {
    /// The id after the prefix.
    pub id: String,
}

/// Reads a `WIFI:S:<ssid>;T:<type>;P:<password>;H:<hidden>;;` code. Fields
/// come in any order; `\` escapes `; , : \ "`; unknown fields are ignored.
pub fn parse_wifi(text: &str) -> Result<WifiCredentials, RejectReason> {
    let body = text.strip_prefix("WIFI:").ok_or(RejectReason::BadWifi {
        problem: "no WIFI: prefix",
    })?;
    let mut ssid: Option<String> = None;
    let mut security = None;
    let mut password = Zeroizing::new(String::new());
    let mut hidden = false;
    let mut chars = body.chars();
    loop {
        // A field: key ':' value ';'. An empty field (";;") ends the code.
        let mut key = String::new();
        let mut value = Zeroizing::new(String::new());
        let mut in_value = false;
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let escaped = chars.next().ok_or(RejectReason::BadWifi {
                        problem: "dangling escape",
                    })?;
                    if in_value {
                        value.push(escaped)
                    } else {
                        key.push(escaped)
                    }
                }
                ':' if !in_value => in_value = true,
                ';' => {
                    closed = true;
                    break;
                }
                _ if in_value => value.push(c),
                _ => key.push(c),
            }
        }
        let empty_field = key.is_empty() && !in_value;
        if !closed && !empty_field {
            return Err(RejectReason::BadWifi {
                problem: "not terminated",
            });
        }
        if empty_field {
            // ";;" or the end of the data right after a ';'.
            break;
        }
        match key.as_str() {
            "S" => ssid = Some(value.to_string()),
            "T" => {
                security = Some(match value.to_ascii_uppercase().as_str() {
                    "WPA" | "WPA2" | "WPA3" | "SAE" => WifiSecurity::Wpa,
                    "WEP" => WifiSecurity::Wep,
                    "NOPASS" | "" => WifiSecurity::Open,
                    _ => {
                        return Err(RejectReason::BadWifi {
                            problem: "unknown security type",
                        });
                    }
                })
            }
            "P" => password = value,
            "H" => hidden = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    if chars.as_str().chars().any(|c| !c.is_whitespace()) {
        return Err(RejectReason::BadWifi {
            problem: "data after the end",
        });
    }
    let ssid = ssid
        .filter(|s| !s.is_empty())
        .ok_or(RejectReason::BadWifi {
            problem: "no network name",
        })?;
    let security = security.unwrap_or(WifiSecurity::Open);
    if security != WifiSecurity::Open && password.is_empty() {
        return Err(RejectReason::BadWifi {
            problem: "no password",
        });
    }
    Ok(WifiCredentials {
        ssid,
        security,
        password,
        hidden,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wpa_code_parses_and_hides_its_password() {
        let w = parse_wifi("WIFI:S:cart-net;T:WPA;P:s3cret\\;pw;;").expect("valid");
        assert_eq!(w.ssid, "cart-net");
        assert_eq!(w.security, WifiSecurity::Wpa);
        assert_eq!(w.password.as_str(), "s3cret;pw");
        let shown = format!("{w:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("cart-net"));
    }

    #[test]
    fn any_field_order_hidden_and_open() {
        let w = parse_wifi("WIFI:T:WPA;P:pw;S:My\\:Net;H:true;;").expect("valid");
        assert_eq!((w.ssid.as_str(), w.hidden), ("My:Net", true));
        let w = parse_wifi("WIFI:S:guest;;").expect("valid");
        assert_eq!(w.security, WifiSecurity::Open);
    }

    #[test]
    fn malformed_codes_are_rejected() {
        for bad in [
            "WIFI:T:WPA;P:pw;;",
            "WIFI:S:x;T:WPA;;",
            "WIFI:S:x;T:FOO;P:y;;",
            "WIFI:S:x;T:WPA;P:y",
            "WIFI:S:x;P:y\\",
            "WIFI:S:x;;garbage",
            "WIFI:",
        ] {
            assert!(
                matches!(parse_wifi(bad), Err(RejectReason::BadWifi { .. })),
                "{bad}"
            );
        }
    }
}
