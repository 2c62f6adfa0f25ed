//! The daemon's own tables of the configuration: devices, the store, the
//! control socket, the screen and the daemon's timers. Every key is
//! documented in `config/cart.toml`.

use std::path::PathBuf;

use hal::scanner::{DecoderConfig, SerialScannerConfig, WedgeScannerConfig};
use serde::{Deserialize, Serialize};

use crate::basket::TaxTable;

/// Which scanner the cart has (`[scanner]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScannerSettings {
    /// `serial`, `wedge` (a keyboard-wedge scanner on evdev) or `none`.
    pub kind: ScannerKind,
    /// The serial scanner.
    pub serial: SerialScannerConfig,
    /// The keyboard-wedge scanner.
    pub wedge: WedgeScannerConfig,
    /// Decoding: symbologies, variable-measure layouts.
    pub decoder: DecoderConfig,
}

impl Default for ScannerSettings {
    fn default() -> Self {
        ScannerSettings {
            kind: ScannerKind::Serial,
            serial: SerialScannerConfig::default(),
            wedge: WedgeScannerConfig::default(),
            decoder: DecoderConfig::default(),
        }
    }
}

/// The kind of scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// A serial (RS-232 or USB CDC) scanner.
    Serial,
    /// A USB keyboard-wedge scanner read through evdev.
    Wedge,
    /// No scanner (a bench setup): the UI shows the scanner as missing.
    None,
}

/// The card reader (`[reader]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReaderSettings {
    /// The reader's serial port (115200 8N1, docs/reader-protocol.md).
    pub port: String,
    /// How long the reader waits for a card, seconds.
    pub card_timeout_secs: u64,
    /// Every payment must be authorized online (no offline approval).
    pub online_required: bool,
}

impl Default for ReaderSettings {
    fn default() -> Self {
        ReaderSettings {
            port: "/dev/ttyS2".into(),
            card_timeout_secs: 60,
            online_required: false,
        }
    }
}

/// The store the cart belongs to (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// The currency of the cart's prices and payments (ISO 4217).
    pub currency: String,
    /// Tax rates per tax class of the catalog, in basis points (1900 = 19 %);
    /// prices include tax.
    pub tax_rates: TaxTable,
    /// The store's e-receipt page (an absolute http(s) URL): the receipt's
    /// QR code is this URL naming the payment and signed by the cart
    /// (`store_and_forward::wire::receipt`). Empty: the code carries the
    /// bare payment key.
    pub receipt_url: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            currency: "EUR".into(),
            tax_rates: TaxTable(
                [("standard".to_string(), 1900), ("reduced".to_string(), 700)].into(),
            ),
            receipt_url: String::new(),
        }
    }
}

/// The field technician's control socket (`[control]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// The Unix socket `cartctl` connects to. Its folder also holds the
    /// status snapshot (`status.json`) for when the daemon is down; on the
    /// cart it is `/run/cart-control`, setgid to `group` (tmpfiles.d).
    pub socket: PathBuf,
    /// Besides root, members of this group may connect (checked by the
    /// peer's credentials on every connection).
    pub group: String,
    /// Lets those users press on-screen buttons through the socket (test
    /// rigs and the demo; never on a cart in a store).
    pub allow_taps: bool,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            socket: "/run/cart-control/control.sock".into(),
            group: "cart-tech".into(),
            allow_taps: false,
        }
    }
}

/// The touchscreen (`[ui]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// `auto`: Slint's backend (linuxkms on the cart, `SLINT_BACKEND`
    /// chooses); `headless`: drawn into memory only (tests, benchmarks).
    pub backend: UiBackend,
    /// Size of the headless frame, pixels.
    pub headless_width: u32,
    /// Size of the headless frame, pixels.
    pub headless_height: u32,
    /// The receipt goes back to the welcome screen after this, seconds.
    pub receipt_timeout_secs: u64,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            backend: UiBackend::Auto,
            headless_width: 1280,
            headless_height: 800,
            receipt_timeout_secs: 60,
        }
    }
}

/// How the UI is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UiBackend {
    /// Slint's platform backend.
    Auto,
    /// The in-memory software renderer.
    Headless,
}

/// The daemon's timers (`[daemon]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonSettings {
    /// On SIGTERM, how long a payment in progress may take to finish before
    /// the daemon parks it (the ledger keeps it in doubt, resolved at the next
    /// start), seconds. Keep below the unit's TimeoutStopSec.
    pub stop_grace_secs: u64,
    /// How often the status line (systemd STATUS, cart status) is refreshed,
    /// seconds.
    pub status_interval_secs: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            stop_grace_secs: 20,
            status_interval_secs: 10,
        }
    }
}

/// Remote jobs that reach outside the broker (`[jobs]`): the diagnostic
/// upload (and the update bundle's download).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsSettings {
    /// The certificate authorities (PEM) an HTTPS URL in a job must chain
    /// to: the system's bundle (a pre-signed S3 URL is under a public CA).
    pub https_ca_file: PathBuf,
    /// Where the daemon reads its own journal for a diagnostic bundle (the
    /// `cart-journal.socket` unit); missing: the bundle says so.
    pub journal_socket: PathBuf,
    /// The whole upload (connect, TLS, body, answer) may take this long,
    /// seconds.
    pub upload_timeout_secs: u64,
}

impl Default for JobsSettings {
    fn default() -> Self {
        JobsSettings {
            https_ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            journal_socket: PathBuf::from("/run/cart-journal.sock"),
            upload_timeout_secs: 120,
        }
    }
}
