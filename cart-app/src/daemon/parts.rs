//! Opening what the daemon runs on: the identity and the ledger bound to
//! it (TPM, or the software identity with file-backed counter and key for
//! development and the demo), the device certificate, the uplink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hal::identity::DeviceIdentity;
use store_and_forward::counter::{FileCounter, MonotonicCounter};
use store_and_forward::datakey::{DataKey, FileDataKey};
use store_and_forward::sync::SharedLedger;
use store_and_forward::uplink::{self, SwappableClientCert};
use store_and_forward::{Ledger, Timestamp};
use tracing::{error, info, warn};

use super::DaemonError;
use crate::config::Loaded;
use crate::control::CertStatus;
use crate::provision;
use crate::tpm::{self, CartTpm};

/// What the ledger and the uplink are anchored in.
pub struct Anchors {
    /// The TPM, when the cart uses one (the device key, the NV counter,
    /// the sealed data key).
    pub tpm: Option<CartTpm>,
    /// The software identity (development and demo builds only).
    pub software: Option<Arc<dyn DeviceIdentity>>,
}

/// Opens the TPM, or the software identity when configured and allowed.
/// The TPM's device key is not touched here: provisioning makes it, and
/// [`load_identity`] finds the active one.
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
            software: Some(identity),
        });
    }
    let cart_tpm = CartTpm::open(config.tpm.clone())?;
    info!(device = "tpm", tcti = %config.tpm.tcti, "TPM opened");
    Ok(Anchors {
        tpm: Some(cart_tpm),
        software: None,
    })
}

/// The cart's identity at start.
pub enum Identity {
    /// Provisioned: the client certificate source for the uplink.
    Ready {
        /// The certificate and key the link presents.
        cert: Arc<SwappableClientCert>,
        /// For the status: how the cart is provisioned.
        summary: String,
    },
    /// Not (or no longer) provisioned: the cart cannot sell.
    NotProvisioned {
        /// Why, for the status and the journal.
        why: String,
    },
}

/// The identity the cart runs with: the provisioned TPM key and its
/// certificate ([`provision::load`], which also finishes an interrupted
/// rotation), or the software key with the configured certificate file.
pub fn load_identity(
    loaded: &Loaded,
    anchors: &Anchors,
    ledger: &SharedLedger,
    rt: &tokio::runtime::Runtime,
) -> Result<Identity, DaemonError> {
    let config = &loaded.config;
    let path = &config.provisioning.certificate;
    if let Some(identity) = &anchors.software {
        if !path.exists() {
            return Ok(Identity::NotProvisioned {
                why: format!("no certificate at {} (software identity)", path.display()),
            });
        }
        let key = tpm::certified_key_from_pem_file(identity.clone(), path)?;
        return Ok(Identity::Ready {
            cert: Arc::new(SwappableClientCert::new(key)),
            summary: "provisioned (software identity: development or demo)".into(),
        });
    }
    let Some(cart_tpm) = &anchors.tpm else {
        return Err(DaemonError::Identity(tpm::TpmAdapterError::NoTpm));
    };
    let ctx = provision::Context {
        config: &config.provisioning,
        cart_id: &config.cart_id,
        link: &config.link,
        tpm: cart_tpm,
        ledger,
    };
    Ok(match rt.block_on(provision::load(&ctx)) {
        Ok(Some(p)) => Identity::Ready {
            cert: Arc::new(SwappableClientCert::new(p.certified_key)),
            summary: format!(
                "provisioned (certificate {}, TPM key {:#010x})",
                &p.certificate_id[..p.certificate_id.len().min(12)],
                p.key_handle
            ),
        },
        Ok(None) => {
            let step = provision::status(&lock(ledger), Timestamp::now())
                .map(|s| format!("{:?}", s.step))
                .unwrap_or_else(|e| e.to_string());
            Identity::NotProvisioned {
                why: format!("not provisioned (step: {step})"),
            }
        }
        Err(e) => {
            error!(cause = %e, "the provisioned identity cannot be used");
            Identity::NotProvisioned {
                why: format!("identity unusable: {e}"),
            }
        }
    })
}

fn lock(l: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
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
    crate::recovery::escrow_at_start(&mut ledger, &config.tpm);
    if !loaded.deny_list.is_empty() || config.deny_list.version > 0 {
        ledger.apply_deny_list(
            config.deny_list.version,
            None,
            true,
            &loaded.deny_list,
            &[],
            Timestamp::now(),
        )?;
    }
    Ok(ledger)
}

/// The device certificate's subject and expiry, from the PEM file (`None`
/// when there is none, or it cannot be read).
pub fn cert_status(path: &Path, now: Timestamp) -> Option<CertStatus> {
    let (_, info) = provision::cert::read_file(path).ok()?;
    Some(CertStatus {
        subject: info.common_name.unwrap_or_default(),
        not_after: info.not_after,
        days_left: provision::cert::days_left(info.not_after, now),
    })
}

/// Starts the link; the caller builds the sync on it.
pub fn start_link(
    loaded: &Loaded,
    cert: Arc<SwappableClientCert>,
    fleet_api: bool,
) -> Result<
    (
        uplink::LinkHandle,
        tokio::sync::mpsc::Receiver<uplink::Incoming>,
    ),
    DaemonError,
> {
    let mut link = loaded.config.link.clone();
    link.client_id = loaded.config.cart_id.clone();
    let mut subscriptions = store_and_forward::sync::Uplink::subscriptions(&loaded.config.cart_id);
    if fleet_api {
        // Rotation calls the certificate API over this same connection.
        subscriptions.extend(provision::fleet::subscriptions(
            &loaded.config.provisioning.template,
        ));
    }
    Ok(uplink::start(link, Some(cert), subscriptions)?)
}
