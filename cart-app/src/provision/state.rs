//! The pipeline's records in the ledger's `cart_state` table, and the
//! status `cartctl status` shows. Every step writes its key before it
//! starts and after it ends, in fsynced transactions
//! (`Ledger::set_states_durable`), so a power cut never loses a step the
//! cart already acted on.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use store_and_forward::sync::SharedLedger;
use store_and_forward::{Ledger, Timestamp};

use super::ProvisionError;

/// The `cart_state` keys (docs/provisioning.md has the table).
pub mod keys {
    /// Current step: `network`, `key`, `register`, `first_publish`,
    /// `claim_cleanup`, then `provisioned`.
    pub const STATE: &str = "provision.state";
    /// Network onboarding: `started` (handed to NetworkManager), `done`
    /// (the connection came up), `skipped` (wired).
    pub const NETWORK: &str = "provision.network";
    /// The Wi-Fi network (SSID) being joined, for the screen after a restart.
    pub const NETWORK_SSID: &str = "provision.network.ssid";
    /// Key and CSR: `started`, `done`.
    pub const KEY: &str = "provision.key";
    /// Registration: `started`, `csr_sent`, `issued`, `done`.
    pub const REGISTER: &str = "provision.register";
    /// First publish: `started`, `done`.
    pub const FIRST_PUBLISH: &str = "provision.first_publish";
    /// Claim credentials: `deleting`, `deleted`, `kept`.
    pub const CLAIM: &str = "provision.claim";
    /// The issued, not yet registered certificate (JSON: id, PEM, token).
    pub const PENDING: &str = "provision.pending";
    /// Certificates issued to the cart and abandoned (JSON list of ids).
    pub const ORPHANS: &str = "provision.orphans";
    /// create-from-csr requests whose answer was never recorded.
    pub const UNANSWERED: &str = "provision.unanswered_requests";
    /// When the cart became provisioned (ms).
    pub const COMPLETED_MS: &str = "provision.completed_ms";
    /// The active certificate's id.
    pub const CERTIFICATE_ID: &str = "identity.certificate_id";
    /// Its validity (ms since the epoch).
    pub const NOT_BEFORE_MS: &str = "identity.not_before_ms";
    /// Its end of validity (ms since the epoch).
    pub const NOT_AFTER_MS: &str = "identity.not_after_ms";
    /// The TPM handle of the active device key (`0x81000100`).
    pub const ACTIVE_HANDLE: &str = "identity.active_handle";
}

/// The pipeline's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Nothing recorded yet.
    NotStarted,
    /// Joining the Wi-Fi.
    Network,
    /// Creating the device key in the TPM.
    Key,
    /// Fleet provisioning by claim: CSR, certificate, RegisterThing.
    Register,
    /// The first publish with the device certificate.
    FirstPublish,
    /// Deleting the claim credentials.
    ClaimCleanup,
    /// Done: the cart has its certificate.
    Provisioned,
}

impl Step {
    /// The name recorded in `provision.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::NotStarted => "not_started",
            Step::Network => "network",
            Step::Key => "key",
            Step::Register => "register",
            Step::FirstPublish => "first_publish",
            Step::ClaimCleanup => "claim_cleanup",
            Step::Provisioned => "provisioned",
        }
    }

    fn parse(s: &str) -> Step {
        [
            Step::Network,
            Step::Key,
            Step::Register,
            Step::FirstPublish,
            Step::ClaimCleanup,
            Step::Provisioned,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or(Step::NotStarted)
    }
}

/// What `cartctl status` shows about provisioning and the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningStatus {
    /// The current (or last) step.
    pub step: Step,
    /// Whether the cart is provisioned.
    pub provisioned: bool,
    /// The active certificate's id.
    pub certificate_id: Option<String>,
    /// Its end of validity.
    pub not_after: Option<Timestamp>,
    /// Days until then (negative: expired), at the time of the look.
    pub days_left: Option<i64>,
    /// The active key's TPM handle.
    pub active_handle: Option<String>,
    /// Abandoned certificates reported to the backend.
    pub orphans: Vec<String>,
    /// A certificate rotation in progress (its state), if any.
    pub rotation: Option<String>,
}

/// The status from `cart_state` values (`provision.`, `identity.`,
/// `rotation.` keys).
pub fn status_from(values: &BTreeMap<String, String>, now: Timestamp) -> ProvisioningStatus {
    let get = |k: &str| values.get(k).cloned();
    let step = get(keys::STATE).map_or(Step::NotStarted, |s| Step::parse(&s));
    let not_after = get(keys::NOT_AFTER_MS)
        .and_then(|s| s.parse().ok())
        .map(Timestamp);
    let rotation = get(super::rotation::keys::STATE).filter(|s| s != "done");
    ProvisioningStatus {
        step,
        provisioned: step == Step::Provisioned,
        certificate_id: get(keys::CERTIFICATE_ID),
        days_left: not_after.map(|t| super::cert::days_left(t, now)),
        not_after,
        active_handle: get(keys::ACTIVE_HANDLE),
        orphans: get(keys::ORPHANS)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        rotation,
    }
}

/// The status from an open ledger.
pub fn status(ledger: &Ledger, now: Timestamp) -> Result<ProvisioningStatus, ProvisionError> {
    let mut values = ledger.states_with_prefix("provision.")?;
    values.extend(ledger.states_with_prefix("identity.")?);
    values.extend(ledger.states_with_prefix("rotation.")?);
    Ok(status_from(&values, now))
}

/// The status from the ledger file, opened read-only (the daemon may be
/// down): for `cartctl status`.
pub fn read_only_status(
    ledger_path: &Path,
    now: Timestamp,
) -> Result<ProvisioningStatus, ProvisionError> {
    use store_and_forward::ledger::read_only_states;
    let mut values = read_only_states(ledger_path, "provision.")?;
    values.extend(read_only_states(ledger_path, "identity.")?);
    values.extend(read_only_states(ledger_path, "rotation.")?);
    Ok(status_from(&values, now))
}

/// Reads a value.
pub(crate) fn get(ledger: &SharedLedger, key: &str) -> Result<Option<String>, ProvisionError> {
    Ok(lock(ledger).state(key)?)
}

/// Writes (or, with `None`, deletes) values in one fsynced transaction.
pub(crate) fn record(
    ledger: &SharedLedger,
    entries: &[(&str, Option<&str>)],
) -> Result<(), ProvisionError> {
    Ok(lock(ledger).set_states_durable(entries, Timestamp::now())?)
}

/// A JSON list of ids.
pub(crate) fn id_list(ledger: &SharedLedger, key: &str) -> Result<Vec<String>, ProvisionError> {
    Ok(get(ledger, key)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

/// Appends an id to a JSON list (once).
pub(crate) fn list_push(mut list: Vec<String>, id: &str) -> String {
    if !list.iter().any(|x| x == id) {
        list.push(id.to_owned());
    }
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// A counter value.
pub(crate) fn count(ledger: &SharedLedger, key: &str) -> Result<u32, ProvisionError> {
    Ok(get(ledger, key)?.and_then(|s| s.parse().ok()).unwrap_or(0))
}

fn lock(l: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle as recorded (`0x81000100`).
pub(crate) fn handle_text(h: u32) -> String {
    format!("{h:#010x}")
}

/// A recorded handle.
pub(crate) fn parse_handle(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}
