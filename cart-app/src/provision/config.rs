//! The `[provisioning]` table of the cart's config.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ProvisionError;

/// How the cart provisions itself and rotates its certificate.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// The AWS IoT fleet-provisioning template (RegisterThing).
    pub template: String,
    /// The claim certificate (PEM), on the factory/data area: deleted there
    /// once provisioned, so never on the read-only root file system.
    pub claim_cert: PathBuf,
    /// The claim certificate's private key (PEM).
    pub claim_key: PathBuf,
    /// Where the cart's own certificate is kept (PEM, 0644, beside the
    /// ledger). During a rotation the new one is written to `<this>.next`.
    pub certificate: PathBuf,
    /// Delete the claim credentials once provisioned.
    pub delete_claim: bool,
    /// How long to wait for an answer of the fleet-provisioning API, seconds.
    pub response_timeout_secs: u64,
    /// How long to wait for a connection to the broker, seconds.
    pub connect_timeout_secs: u64,
    /// Rotate when this fraction of the certificate's lifetime has passed
    /// (0 < fraction < 1).
    pub rotate_at_fraction: f64,
    /// Warn in the journal when the certificate expires in fewer days.
    pub expiry_warn_days: u64,
    /// Network onboarding.
    pub wifi: WifiConfig,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            template: "cart-fleet".into(),
            claim_cert: "/data/factory/claim/claim.pem".into(),
            claim_key: "/data/factory/claim/claim.key".into(),
            certificate: "/var/lib/cart/device.pem".into(),
            delete_claim: true,
            response_timeout_secs: 30,
            connect_timeout_secs: 60,
            rotate_at_fraction: 0.8,
            expiry_warn_days: 30,
            wifi: WifiConfig::default(),
        }
    }
}

impl fmt::Debug for ProvisioningConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningConfig")
            .field("template", &self.template)
            .field("claim_cert", &self.claim_cert)
            .field("certificate", &self.certificate)
            .field("rotate_at_fraction", &self.rotate_at_fraction)
            .field("wifi", &self.wifi)
            .finish_non_exhaustive()
    }
}

impl ProvisioningConfig {
    /// Checks the values the pipeline relies on.
    pub fn validate(&self) -> Result<(), ProvisionError> {
        let bad = |key: &'static str, why: &'static str| ProvisionError::Config { key, why };
        if !(self.rotate_at_fraction > 0.0 && self.rotate_at_fraction < 1.0) {
            return Err(bad(
                "provisioning.rotate_at_fraction",
                "must be between 0 and 1",
            ));
        }
        if self.template.is_empty() || self.template.contains(['/', '+', '#']) {
            return Err(bad("provisioning.template", "must be one topic level"));
        }
        if self.response_timeout_secs == 0
            || self.connect_timeout_secs == 0
            || self.wifi.join_timeout_secs == 0
        {
            return Err(bad("provisioning.*_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// The answer timeout.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// Where a rotation writes the new certificate before it is in use.
    pub fn next_certificate(&self) -> PathBuf {
        let mut p = self.certificate.clone().into_os_string();
        p.push(".next");
        p.into()
    }
}

/// Network onboarding: the cart's Wi-Fi connection in NetworkManager
/// (over D-Bus), from the provisioning QR code (or from these keys).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WifiConfig {
    /// `false` for a wired cart: the step is recorded as skipped.
    pub enabled: bool,
    /// The connection's name in NetworkManager (its UUID is derived from
    /// the cart id and this name).
    pub connection_name: String,
    /// The Wi-Fi interface to use; unset: the first Wi-Fi device.
    pub interface: Option<String>,
    /// How long a join may take (association, the passphrase, DHCP)
    /// before it counts as failed and is retried.
    pub join_timeout_secs: u64,
    /// A network from the config; a scanned QR code wins over it.
    pub ssid: Option<String>,
    /// Its passphrase. Never printed (`check-config` leaves it out).
    #[serde(skip_serializing)]
    pub password: Option<String>,
}

impl Default for WifiConfig {
    fn default() -> Self {
        WifiConfig {
            enabled: true,
            connection_name: "cart-wifi".into(),
            interface: None,
            join_timeout_secs: 90,
            ssid: None,
            password: None,
        }
    }
}

impl WifiConfig {
    /// The join timeout.
    pub fn join_timeout(&self) -> Duration {
        Duration::from_secs(self.join_timeout_secs)
    }
}

impl fmt::Debug for WifiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WifiConfig")
            .field("enabled", &self.enabled)
            .field("connection_name", &self.connection_name)
            .field("interface", &self.interface)
            .field("join_timeout_secs", &self.join_timeout_secs)
            .field("ssid", &self.ssid)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
