//! The cart's configuration: built-in defaults, then the main TOML file
//! (on a cart the image's `/etc/cart/cart.toml`), then the cart's own
//! settings file it names in `local_settings` (on the data partition; see
//! [`local`]). Every key is documented in `config/cart.toml`.

mod local;

use std::path::{Path, PathBuf};

pub use local::LayerNote;

use hal::identity::tpm::TpmConfig;
use serde::{Deserialize, Serialize};
use store_and_forward::LedgerConfig;
use store_and_forward::policy::{Limits, LimitsConfig, PolicyError};
use store_and_forward::sync::SyncConfig;
use store_and_forward::uplink::LinkConfig;

use crate::daemon::settings::{
    ControlSettings, DaemonSettings, JobsSettings, ReaderSettings, ScannerSettings, StoreSettings,
    UiSettings,
};
use crate::tpm::IdentityConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The cart's own settings, read after this file and overriding it key
    /// by key; empty: none.
    pub local_settings: PathBuf,
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
    /// Remote jobs over HTTPS (diagnostic upload).
    pub jobs: JobsSettings,
    /// Over-the-air updates.
    pub update: crate::update::UpdateSettings,
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
    /// What reading the layers noticed (the local file missing, keys
    /// ignored), for the log.
    pub notes: Vec<LayerNote>,
}

impl Loaded {
    /// Logs the notes (call once logging runs).
    pub fn log_notes(&self) {
        for note in &self.notes {
            note.log();
        }
    }
}

/// How the cart's own settings file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// An unknown key in the local file is an error (`check-config`), not
    /// a warning (the daemon, cartctl).
    pub strict_local: bool,
    /// A local file this user may not read is skipped with a note (cartctl
    /// run by a technician), not an error (the daemon).
    pub skip_unreadable_local: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            local_settings: PathBuf::new(),
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
            jobs: JobsSettings::default(),
            update: crate::update::UpdateSettings::default(),
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
    /// A key of the cart's own settings file (`local_settings`) with the
    /// wrong type or value, or unknown where unknown keys are refused
    /// (`check-config`).
    #[error("config {path}: {key}: {message}")]
    Local {
        /// The local file.
        path: String,
        /// The key, dotted.
        key: String,
        /// The parser's message.
        message: String,
    },
}

impl Config {
    /// Loads and validates `path` and the local file it names, as the
    /// daemon does: unknown keys of the local file are warnings.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        Self::load_with(path, LoadOptions::default())
    }

    /// Loads and validates `path` strictly, then the local file it names
    /// under `opts`, merged over it, and validates the result.
    pub fn load_with(path: &Path, opts: LoadOptions) -> Result<Loaded, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        let parse_error = |origin: &str, e: toml::de::Error| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(e),
        };
        // The main file alone, strictly: its errors name its own key and line.
        let config: Config = toml::from_str(&text).map_err(|e| parse_error(&origin, e))?;
        let mut notes = Vec::new();
        if config.local_settings.as_os_str().is_empty() {
            return Self::validate(config, &origin, notes);
        }
        let local_path = config.local_settings.clone();
        let local_origin = local_path.display().to_string();
        let local_text = match std::fs::read_to_string(&local_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                notes.push(LayerNote::LocalMissing { path: local_origin });
                return Self::validate(config, &origin, notes);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    && opts.skip_unreadable_local =>
            {
                notes.push(LayerNote::LocalUnreadable { path: local_origin });
                return Self::validate(config, &origin, notes);
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: local_origin,
                    source,
                });
            }
        };
        let main: toml::Table = text.parse().map_err(|e| parse_error(&origin, e))?;
        let local: toml::Table = local_text
            .parse()
            .map_err(|e| parse_error(&local_origin, e))?;
        notes.push(LayerNote::LocalApplied {
            path: local_origin.clone(),
        });
        let merged = local::apply(&main, local, &local_origin, opts.strict_local, &mut notes)?;
        Self::validate(merged, &format!("{origin} + {local_origin}"), notes)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    /// The text alone: a `local_settings` key in it is not followed.
    pub fn parse(text: &str, origin: &str) -> Result<Loaded, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(e),
        })?;
        Self::validate(config, origin, Vec::new())
    }

    /// Checks the values serde cannot: the offline limits, the deny-list.
    fn validate(
        config: Config,
        origin: &str,
        notes: Vec<LayerNote>,
    ) -> Result<Loaded, ConfigError> {
        let limits = config
            .offline
            .validate("offline")
            .map_err(|source| ConfigError::Invalid {
                path: origin.to_owned(),
                source,
            })?;
        if !(1..=3_600).contains(&config.sync.time_slack_secs) {
            return Err(ConfigError::Invalid {
                path: origin.to_owned(),
                source: PolicyError {
                    key: "sync.time_slack_secs".into(),
                    message: format!("{} is outside 1..=3600", config.sync.time_slack_secs),
                },
            });
        }
        if !config.store.receipt_url.is_empty() {
            store_and_forward::wire::receipt::check_base(&config.store.receipt_url).map_err(
                |e| ConfigError::Invalid {
                    path: origin.to_owned(),
                    source: PolicyError {
                        key: "store.receipt_url".into(),
                        message: e.to_string(),
                    },
                },
            )?;
        }
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
            notes,
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

    /// Every `# key = value` line of the reference file, uncommented in
    /// its table, gives exactly the code's defaults: a documented default
    /// that drifted from the code fails here, naming the key. A line
    /// ending in `# example` shows a value for a key without a default
    /// (caps, the CA file, Wi-Fi) and stays out.
    #[test]
    fn reference_file_defaults_are_the_codes_defaults() {
        let text = include_str!("../config/cart.toml");
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if !rest.ends_with("# example")
                        && rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty()
                                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        }) =>
                {
                    rest
                }
                _ => line,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let documented: toml::Value =
            toml::from_str(&uncommented).expect("the uncommented reference parses");
        let documented = serde_json::to_value(documented).unwrap();
        let code = serde_json::to_value(Config::default()).unwrap();
        let mut drift = Vec::new();
        fn compare(
            path: &str,
            doc: &serde_json::Value,
            code: &serde_json::Value,
            drift: &mut Vec<String>,
        ) {
            match (doc, code) {
                (serde_json::Value::Object(d), serde_json::Value::Object(c)) => {
                    for (k, dv) in d {
                        let full = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        match c.get(k) {
                            Some(cv) => compare(&full, dv, cv, drift),
                            None => drift.push(format!(
                                "{full}: documented {dv}, not in the code's defaults"
                            )),
                        }
                    }
                    // A key whose default is "unset" has an example line, or none.
                    for k in c
                        .iter()
                        .filter(|(k, v)| !d.contains_key(*k) && !v.is_null())
                        .map(|(k, _)| k)
                    {
                        let full = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        drift.push(format!("{full}: no documented default"));
                    }
                }
                (serde_json::Value::Number(a), serde_json::Value::Number(b))
                    if a.as_f64() == b.as_f64() => {}
                _ if doc == code => {}
                _ => drift.push(format!("{path}: documented {doc}, the code says {code}")),
            }
        }
        compare("", &documented, &code, &mut drift);
        assert!(
            drift.is_empty(),
            "the reference file's defaults drifted:\n{}",
            drift.join("\n")
        );
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
    fn a_receipt_url_that_is_no_web_address_is_rejected_naming_the_key() {
        let e = err("[store]\nreceipt_url = \"receipts.example.com\"\n");
        assert!(
            e.contains("store.receipt_url") && e.contains("not an absolute URL"),
            "{e}"
        );
        Config::parse(
            "[store]\nreceipt_url = \"https://receipts.example.com/r\"\n",
            "cart.toml",
        )
        .expect("an https URL is fine");
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

    fn layers(main: &str, local: Option<&str>, opts: LoadOptions) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let local_path = dir.path().join("local.toml");
        if let Some(l) = local {
            std::fs::write(&local_path, l).unwrap();
        }
        let main_path = dir.path().join("cart.toml");
        let main = format!(
            "local_settings = {:?}\n{main}",
            local_path.display().to_string()
        );
        std::fs::write(&main_path, main).unwrap();
        Config::load_with(&main_path, opts)
    }

    #[test]
    fn local_settings_override_the_main_file_key_by_key() {
        let l = layers(
            "cart_id = \"cart-image\"\n[link]\nhost = \"image.example\"\nport = 8883\n",
            Some("cart_id = \"cart-0042\"\n[link]\nhost = \"broker.example\"\n"),
            LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(l.config.cart_id, "cart-0042");
        assert_eq!(l.config.link.host, "broker.example");
        assert_eq!(
            l.config.link.port, 8883,
            "a key the local file leaves alone stays"
        );
        assert!(
            matches!(l.notes[..], [LayerNote::LocalApplied { .. }]),
            "{:?}",
            l.notes
        );
    }

    #[test]
    fn missing_local_file_leaves_the_main_file_and_a_note() {
        let l = layers("cart_id = \"cart-image\"\n", None, LoadOptions::default()).unwrap();
        assert_eq!(l.config.cart_id, "cart-image");
        assert!(
            matches!(l.notes[..], [LayerNote::LocalMissing { .. }]),
            "{:?}",
            l.notes
        );
    }

    #[test]
    fn unknown_local_key_is_a_warning_for_the_daemon_and_an_error_for_check_config() {
        let local = "cart_id = \"cart-0042\"\n[link]\nkey_from_a_newer_release = true\n";
        let l = layers("", Some(local), LoadOptions::default()).unwrap();
        assert_eq!(l.config.cart_id, "cart-0042");
        assert!(
            l.notes.iter().any(|n| matches!(n, LayerNote::UnknownLocalKey { key, .. } if key == "link.key_from_a_newer_release")),
            "{:?}",
            l.notes
        );
        let strict = LoadOptions {
            strict_local: true,
            ..LoadOptions::default()
        };
        let e = layers("", Some(local), strict).unwrap_err().to_string();
        assert!(e.contains("link.key_from_a_newer_release"), "{e}");
    }

    #[test]
    fn unknown_key_in_the_main_file_stays_an_error_with_a_local_file() {
        let e = layers(
            "[link]\nhots = \"x\"\n",
            Some("cart_id = \"c\"\n"),
            LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hots") && e.contains("cart.toml"), "{e}");
    }

    #[test]
    fn limits_set_by_the_local_file_are_validated() {
        let e = layers(
            "[offline.total_outstanding_cap]\nEUR = 100\n",
            Some("[offline.per_payment_cap]\nEUR = 500\n"),
            LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("offline.per_payment_cap.EUR") && e.contains("local.toml"),
            "{e}"
        );
    }

    #[test]
    fn local_file_with_bad_toml_is_an_error_naming_it() {
        let e = layers("", Some("cart_id = \n"), LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("local.toml"), "{e}");
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
