//! The cart's configuration: built-in defaults, then the TOML file. Every
//! key is documented in `config/cart.toml`.

use std::path::Path;

use hal::identity::tpm::TpmConfig;
use serde::{Deserialize, Serialize};
use store_and_forward::LedgerConfig;
use store_and_forward::policy::{Limits, LimitsConfig, PolicyError};
use store_and_forward::sync::SyncConfig;
use store_and_forward::uplink::LinkConfig;

use crate::daemon::settings::{
    ControlSettings, DaemonSettings, ReaderSettings, ScannerSettings, StoreSettings, UiSettings,
};
use crate::tpm::IdentityConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The cart's serial number.
    pub cart_id: String,
    /// The ledger.
    pub ledger: LedgerConfig,
    /// Offline limits.
    pub offline: LimitsConfig,
    /// The card deny-list shipped with the cart.
    pub deny_list: DenyListConfig,
    /// The catalog.
    pub catalog: CatalogConfig,
    /// The store: currency and tax rates.
    pub store: StoreSettings,
    /// The broker (the client id is the cart id).
    pub link: LinkConfig,
    /// Store-and-forward timing (the cart id comes from `cart_id`).
    pub sync: SyncConfig,
    /// The device identity and its certificate.
    pub identity: IdentityConfig,
    /// The TPM: TCTI and handles.
    pub tpm: TpmConfig,
    /// The barcode scanner.
    pub scanner: ScannerSettings,
    /// The card reader.
    pub reader: ReaderSettings,
    /// The touchscreen.
    pub ui: UiSettings,
    /// The field technician's control socket.
    pub control: ControlSettings,
    /// The daemon's timers.
    pub daemon: DaemonSettings,
    /// First-boot provisioning and certificate rotation.
    pub provisioning: crate::provision::ProvisioningConfig,
}

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// The catalog file (SQLite).
    pub path: std::path::PathBuf,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            path: "/var/lib/cart/catalog.sqlite".into(),
        }
    }
}

/// Card fingerprints refused offline, as configured; the backend's newer
/// versions replace it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DenyListConfig {
    /// Version of this list.
    pub version: u64,
    /// Card fingerprints, hex.
    pub fingerprints: Vec<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file's content with defaults filled in.
    pub config: Config,
    /// Validated offline limits.
    pub limits: Limits,
    /// Decoded deny-list fingerprints.
    pub deny_list: Vec<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cart_id: "cart-0000".into(),
            ledger: LedgerConfig::default(),
            offline: LimitsConfig::default(),
            deny_list: DenyListConfig::default(),
            catalog: CatalogConfig::default(),
            store: StoreSettings::default(),
            link: LinkConfig::default(),
            sync: SyncConfig::default(),
            identity: IdentityConfig::default(),
            tpm: TpmConfig::default(),
            scanner: ScannerSettings::default(),
            reader: ReaderSettings::default(),
            ui: UiSettings::default(),
            control: ControlSettings::default(),
            daemon: DaemonSettings::default(),
            provisioning: crate::provision::ProvisioningConfig::default(),
        }
    }
}

/// A configuration that cannot be used; the daemon refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a key with the wrong type or an unknown key (the
    /// message names the key and the line).
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value outside its valid range (the message names the key).
    #[error("config {path}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        #[source]
        source: PolicyError,
    },
}

impl Config {
    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Loaded, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(e),
        })?;
        let limits = config
            .offline
            .validate("offline")
            .map_err(|source| ConfigError::Invalid {
                path: origin.to_owned(),
                source,
            })?;
        let mut deny_list = Vec::with_capacity(config.deny_list.fingerprints.len());
        for (i, f) in config.deny_list.fingerprints.iter().enumerate() {
            let bytes = hex::decode(f)
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ConfigError::Invalid {
                    path: origin.to_owned(),
                    source: PolicyError {
                        key: format!("deny_list.fingerprints[{i}]"),
                        message: format!("{f:?} is not a hex fingerprint"),
                    },
                })?;
            deny_list.push(bytes);
        }
        Ok(Loaded {
            config,
            limits,
            deny_list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "cart.toml").unwrap_err().to_string()
    }

    #[test]
    fn reference_file_parses_to_the_defaults() {
        let text = include_str!("../config/cart.toml");
        let config = Config::parse(text, "cart.toml").unwrap().config;
        let defaults = Config::default();
        assert_eq!(config.offline, defaults.offline);
        assert_eq!(config.ledger.path, defaults.ledger.path);
        assert_eq!(config.ledger.retention_secs, defaults.ledger.retention_secs);
    }

    #[test]
    fn reference_file_documents_every_key() {
        let text = include_str!("../config/cart.toml");
        let json = serde_json::to_value(Config::default()).unwrap();
        fn walk(prefix: &str, v: &serde_json::Value, text: &str) {
            if let serde_json::Value::Object(map) = v {
                for (k, v) in map {
                    let full = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if v.is_object() {
                        assert!(
                            text.contains(&format!("[{full}]")),
                            "table [{full}] undocumented"
                        );
                        walk(&full, v, text);
                    } else {
                        assert!(
                            text.contains(&format!("# {k} = ")),
                            "key {full} undocumented"
                        );
                    }
                }
            }
        }
        walk("", &json, text);
    }

    #[test]
    fn negative_cap_is_rejected_naming_the_key() {
        let e = err(
            "[offline.per_payment_cap]\nEUR = -5\n[offline.total_outstanding_cap]\nEUR = 100\n",
        );
        assert!(
            e.contains("offline.per_payment_cap.EUR") && e.contains("negative"),
            "{e}"
        );
    }

    #[test]
    fn unknown_currency_is_rejected_naming_the_key() {
        let e =
            err("[offline.per_payment_cap]\nEUX = 5\n[offline.total_outstanding_cap]\nEUX = 100\n");
        assert!(
            e.contains("offline.per_payment_cap.EUX") && e.contains("unknown currency"),
            "{e}"
        );
    }

    #[test]
    fn per_payment_cap_above_total_is_rejected_naming_the_key() {
        let e = err(
            "[offline.per_payment_cap]\nEUR = 500\n[offline.total_outstanding_cap]\nEUR = 100\n",
        );
        assert!(
            e.contains("offline.per_payment_cap.EUR") && e.contains("above"),
            "{e}"
        );
    }

    #[test]
    fn bad_deny_list_entry_names_its_index() {
        let e = err("[deny_list]\nversion = 1\nfingerprints = [\"abcd\", \"xyz\"]\n");
        assert!(e.contains("deny_list.fingerprints[1]"), "{e}");
        let ok =
            Config::parse("[deny_list]\nversion = 1\nfingerprints = [\"abcd\"]\n", "t").unwrap();
        assert_eq!(ok.deny_list, vec![vec![0xab, 0xcd]]);
    }

    #[test]
    fn unknown_key_and_wrong_type_name_the_key() {
        let e = err("[offline]\nmax_outstanding = 5\n");
        assert!(e.contains("max_outstanding"), "{e}");
        let e = err("[offline]\nmax_outstanding_count = \"many\"\n");
        assert!(e.contains("max_outstanding_count"), "{e}");
        let e = err("[offline]\nmax_outstanding_count = -1\n");
        assert!(e.contains("max_outstanding_count"), "{e}");
    }
}
