//! Opening what the daemon runs on: the identity and the ledger bound to
//! it (TPM, or the software identity with file-backed counter and key for
//! development and the demo), the device certificate, the uplink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hal::identity::DeviceIdentity;
use store_and_forward::counter::{FileCounter, MonotonicCounter};
use store_and_forward::datakey::{DataKey, FileDataKey};
use store_and_forward::uplink::{self, SwappableClientCert};
use store_and_forward::{Ledger, Timestamp};
use tracing::{info, warn};

use super::DaemonError;
use crate::config::Loaded;
use crate::control::CertStatus;
use crate::tpm::{self, CartTpm};

/// The identity and the ledger's anchors.
pub struct Anchors {
    /// The TPM, when the cart uses one.
    pub tpm: Option<CartTpm>,
    /// The device identity (TPM key, or the software key).
    pub identity: Arc<dyn DeviceIdentity>,
    /// `tpm` or `software`.
    pub kind: &'static str,
}

/// Opens the TPM (unless the software identity is configured and allowed)
/// and the identity.
pub fn open_anchors(loaded: &Loaded) -> Result<Anchors, DaemonError> {
    let config = &loaded.config;
    if config.identity.software_key.is_some() {
        let identity = tpm::open_identity(&config.identity, None)?;
        warn!(
            device = "tpm",
            "SOFTWARE IDENTITY IN USE: the device key is a file, not in a TPM. Development and demo only."
        );
        return Ok(Anchors {
            tpm: None,
            identity,
            kind: "software",
        });
    }
    let cart_tpm = CartTpm::open(config.tpm.clone())?;
    let identity = tpm::open_identity(&config.identity, Some(&cart_tpm))?;
    info!(device = "tpm", tcti = %config.tpm.tcti, "TPM opened");
    Ok(Anchors {
        tpm: Some(cart_tpm),
        identity,
        kind: "tpm",
    })
}

/// Opens the ledger bound to the TPM's counter and sealed key, or to files
/// beside the ledger with the software identity.
pub fn open_ledger(loaded: &Loaded, anchors: &Anchors) -> Result<Ledger, DaemonError> {
    let config = &loaded.config;
    let (counter, mut key): (Box<dyn MonotonicCounter>, Box<dyn DataKey>) = match &anchors.tpm {
        Some(t) => (Box::new(t.counter()?), Box::new(t.data_key())),
        None => {
            let dir = config
                .ledger
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (
                Box::new(FileCounter::open(
                    dir.join("counter"),
                    rand::random::<u32>() as u64,
                )?),
                Box::new(FileDataKey::new(dir.join("data.key"))),
            )
        }
    };
    let (mut ledger, report) = Ledger::open(
        config.ledger.clone(),
        loaded.limits.clone(),
        counter,
        key.as_mut(),
        Timestamp::now(),
    )?;
    info!(
        path = %config.ledger.path.display(),
        integrity = ?ledger.integrity(),
        report = ?report,
        "ledger open"
    );
    if !loaded.deny_list.is_empty() || config.deny_list.version > 0 {
        ledger.apply_deny_list(
            config.deny_list.version,
            true,
            &loaded.deny_list,
            &[],
            Timestamp::now(),
        )?;
    }
    Ok(ledger)
}

/// The device certificate's subject and expiry, from the PEM file.
pub fn cert_status(path: &Path, now: Timestamp) -> Option<CertStatus> {
    let pem = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let not_after = Timestamp(cert.validity().not_after.timestamp() * 1000);
    Some(CertStatus {
        subject,
        not_after,
        days_left: crate::control::days_until(now, not_after),
    })
}

/// The client certificate source for the uplink: the device certificate
/// with the identity's key. `None` when no certificate is installed (the
/// cart is not provisioned).
pub fn client_cert(
    loaded: &Loaded,
    anchors: &Anchors,
) -> Result<Option<Arc<SwappableClientCert>>, DaemonError> {
    let path = &loaded.config.identity.certificate;
    if !path.exists() {
        return Ok(None);
    }
    let key = tpm::certified_key_from_pem_file(anchors.identity.clone(), path)?;
    Ok(Some(Arc::new(SwappableClientCert::new(key))))
}

/// Starts the link; the caller builds the sync on it.
pub fn start_link(
    loaded: &Loaded,
    cert: Arc<SwappableClientCert>,
) -> Result<
    (
        uplink::LinkHandle,
        tokio::sync::mpsc::Receiver<uplink::Incoming>,
    ),
    DaemonError,
> {
    let mut link = loaded.config.link.clone();
    link.client_id = loaded.config.cart_id.clone();
    Ok(uplink::start(
        link,
        Some(cert),
        store_and_forward::sync::Uplink::subscriptions(&loaded.config.cart_id),
    )?)
}
