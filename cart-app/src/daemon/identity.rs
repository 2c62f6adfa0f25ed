//! The identity's life in the daemon: [`start`] starts the uplink (and
//! rotation) for a provisioned cart, first-boot provisioning for one that
//! is not; certificate rotation once it is.
//!
//! Provisioning runs [`provision::run`] until it succeeds (a missing
//! network waits for the provisioning QR code from the scanner; other
//! failures are retried with backoff), then stops the daemon so that it
//! starts again (systemd's `Restart=always`) with the device certificate.
//! Rotation checks [`rotation::due`] at start and every six hours, and runs
//! when due or when the backend asks, over the daemon's own link.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hal::scanner::WifiCredentials;
use store_and_forward::Timestamp;
use store_and_forward::sync::{AppEvent, SharedLedger, SyncConfig, Uplink};
use store_and_forward::uplink::{Incoming, LinkHandle, SwappableClientCert};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use ui::{SetupStep, SetupView};

use super::parts::{self, Anchors};
use super::threads::Msg;
use super::{DaemonError, lock};
use crate::config::{Config, Loaded};
use crate::provision::fleet::FleetClient;
use crate::provision::network::JoinOutcome;
use crate::provision::rotation::{self, Trigger};
use crate::provision::{self, ProvisionError};
use crate::receipt::ReceiptSigner;
use crate::session::Input;
use crate::tpm::CartTpm;

/// What the daemon starts with, besides the ledger: the uplink when the
/// cart is provisioned, provisioning otherwise.
pub(super) struct Started {
    /// The uplink (a provisioned cart).
    pub uplink: Option<Arc<Uplink>>,
    /// How the cart is provisioned, or why it is not (for the status).
    pub provisioning: String,
    /// Signs receipts (a provisioned cart with a receipt URL).
    pub receipts: Option<ReceiptSigner>,
    /// Provisioning codes from the scanner (a cart that is provisioning).
    pub wifi_tx: Option<mpsc::Sender<WifiCredentials>>,
}

/// The channels [`start`] hands to what it starts.
pub(super) struct Channels {
    /// The uplink's events for the application.
    pub app_tx: mpsc::Sender<AppEvent>,
    /// Stops the uplink.
    pub uplink_stop: watch::Receiver<bool>,
    /// Rotation triggers (the backend's requests).
    pub rotation: mpsc::Receiver<Trigger>,
    /// Stops the daemon (provisioning done).
    pub stop_tx: watch::Sender<bool>,
    /// The daemon's stop.
    pub stop: watch::Receiver<bool>,
    /// The session thread (the setup screen while provisioning).
    pub session_tx: std::sync::mpsc::Sender<Msg>,
}

/// Starts the uplink and the rotation when the cart is provisioned, or
/// provisioning when it is not (the cart cannot sell then).
pub(super) fn start(
    loaded: &Loaded,
    anchors: &Anchors,
    ledger: &SharedLedger,
    rt: &tokio::runtime::Runtime,
    ch: Channels,
) -> Result<Started, DaemonError> {
    let config = &loaded.config;
    let shared_config = Arc::new(config.clone());
    let mut wifi_tx = None;
    let mut receipts = None;
    let (uplink, provisioning) = match parts::load_identity(loaded, anchors, ledger, rt)? {
        parts::Identity::Ready { cert, summary } => {
            let _guard = rt.enter();
            if !config.store.receipt_url.is_empty() {
                receipts = Some(crate::receipt::ReceiptSigner::new(
                    &config.store.receipt_url,
                    &config.cart_id,
                    cert.clone(),
                ));
            }
            let fleet_api = anchors.tpm.is_some();
            let (link, mut incoming) = parts::start_link(loaded, cert.clone(), fleet_api)?;
            // The certificate API's answers go to the rotation, the rest to the sync.
            let (sync_tx, sync_rx) =
                tokio::sync::mpsc::channel(config.link.incoming_capacity.max(1));
            let (answers_tx, answers_rx) = tokio::sync::mpsc::channel(16);
            rt.spawn(async move {
                while let Some(m) = incoming.recv().await {
                    if provision::fleet::is_answer(&m.topic) {
                        let _ = answers_tx.try_send(m);
                    } else if sync_tx.send(m).await.is_err() {
                        break;
                    }
                }
            });
            let sync = SyncConfig {
                cart_id: config.cart_id.clone(),
                ..config.sync.clone()
            };
            let u = Uplink::new(sync, ledger.clone(), link.clone(), Some(ch.app_tx));
            rt.spawn(u.clone().run(sync_rx, ch.uplink_stop));
            if let Some(tpm) = &anchors.tpm {
                rt.spawn(rotate_when_due(
                    Rotation {
                        config: shared_config.clone(),
                        tpm: tpm.clone(),
                        ledger: ledger.clone(),
                        link,
                        cert,
                        answers: answers_rx,
                    },
                    ch.rotation,
                    ch.stop,
                ));
            }
            (Some(u), summary)
        }
        parts::Identity::NotProvisioned { why } => {
            error!(%why, "the cart is not provisioned: it cannot sell");
            if let Some(tpm) = &anchors.tpm {
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                wifi_tx = Some(tx);
                let setup = Mutex::new(ch.session_tx);
                rt.spawn(provision_until_done(
                    shared_config.clone(),
                    tpm.clone(),
                    ledger.clone(),
                    rx,
                    ch.stop_tx,
                    move |view| {
                        let _ = lock(&setup).send(Msg::Input(Input::Setup(view)));
                    },
                ));
            }
            (None, why)
        }
    };
    Ok(Started {
        uplink,
        provisioning,
        receipts,
        wifi_tx,
    })
}

/// Runs provisioning until the cart is provisioned, then asks the daemon
/// to stop (it restarts with the new identity). `wifi` brings scanned
/// provisioning codes; `show` puts where the setup stands on the screen.
pub async fn provision_until_done(
    config: Arc<Config>,
    tpm: CartTpm,
    ledger: SharedLedger,
    mut wifi: mpsc::Receiver<WifiCredentials>,
    stop: watch::Sender<bool>,
    show: impl Fn(SetupView) + Send,
) {
    let ctx = provision::Context {
        config: &config.provisioning,
        cart_id: &config.cart_id,
        link: &config.link,
        tpm: &tpm,
        ledger: &ledger,
    };
    let mut stopping = stop.subscribe();
    let mut scanned: Option<WifiCredentials> = None;
    let mut backoff = Duration::from_secs(5);
    let step = |step: SetupStep, network: &str| {
        show(SetupView {
            step,
            network: network.to_owned(),
        })
    };
    loop {
        // Step 1 first, so the screen can say where it stands.
        let network = provision::network_pending(&ctx);
        if let Some(ssid) = scanned.as_ref().map(|c| c.ssid.clone()).or(network.clone()) {
            step(SetupStep::Joining, &ssid);
        }
        // A newer code scanned while joining replaces the network at once.
        let joined = tokio::select! {
            r = provision::network(&ctx, scanned.take()) => r,
            c = wifi.recv() => match c {
                Some(c) => {
                    info!(ssid = %c.ssid, "a new provisioning code replaces the network being joined");
                    scanned = Some(c);
                    continue;
                }
                None => return,
            },
            _ = stopping.wait_for(|s| *s) => return,
        };
        let result = match joined {
            Ok(()) => {
                step(SetupStep::Registering, "");
                provision::run(&ctx, None).await
            }
            Err(e) => Err(e),
        };
        let wait_for_code = match &result {
            Err(ProvisionError::NeedNetwork) => {
                step(SetupStep::ScanNetworkCode, "");
                true
            }
            Err(e @ ProvisionError::Wifi(_)) => {
                warn!(cause = %e, "provisioning code refused: scan another");
                step(SetupStep::CodeRefused, "");
                true
            }
            Err(ProvisionError::WifiJoin { ssid, outcome }) => {
                let ssid = if ssid.is_empty() {
                    network.unwrap_or_default()
                } else {
                    ssid.clone()
                };
                match outcome {
                    JoinOutcome::WrongPassword => {
                        warn!(%ssid, "the Wi-Fi refused the password: scan a new provisioning code");
                        step(SetupStep::WrongPassword, &ssid);
                        true
                    }
                    JoinOutcome::NotFound => {
                        step(SetupStep::NetworkNotFound, &ssid);
                        false
                    }
                    _ => {
                        step(SetupStep::NetworkFailed, &ssid);
                        false
                    }
                }
            }
            Err(ProvisionError::NetworkManager(_)) => {
                step(SetupStep::NetworkFailed, &network.unwrap_or_default());
                false
            }
            _ => false,
        };
        if wait_for_code {
            tokio::select! {
                c = wifi.recv() => match c {
                    Some(c) => scanned = Some(c),
                    None => return,
                },
                _ = stopping.wait_for(|s| *s) => return,
            }
            continue;
        }
        match result {
            Ok(p) => {
                info!(
                    certificate_id = %p.certificate_id,
                    not_after_ms = p.not_after.0,
                    "provisioned: restarting with the device certificate"
                );
                super::RESTART.store(true, std::sync::atomic::Ordering::SeqCst);
                stop.send_replace(true);
                return;
            }
            Err(e @ ProvisionError::Config { .. }) => {
                error!(cause = %e, "provisioning cannot run with this configuration");
                return;
            }
            Err(e) => {
                warn!(cause = %e, retry_in_secs = backoff.as_secs(), "provisioning step failed; it resumes");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    c = wifi.recv() => if let Some(c) = c { scanned = Some(c) },
                    _ = stopping.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// What the rotation task works with.
pub struct Rotation {
    /// The configuration.
    pub config: Arc<Config>,
    /// The TPM.
    pub tpm: CartTpm,
    /// The ledger.
    pub ledger: SharedLedger,
    /// The daemon's link.
    pub link: LinkHandle,
    /// The link's client identity, swapped by a rotation.
    pub cert: Arc<SwappableClientCert>,
    /// Answers of the certificate API, split from the link's messages.
    pub answers: mpsc::Receiver<Incoming>,
}

/// Rotates when due (checked at start and every six hours) or when asked
/// (`requests`), until the daemon stops.
pub async fn rotate_when_due(
    r: Rotation,
    mut requests: mpsc::Receiver<Trigger>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = provision::Context {
        config: &r.config.provisioning,
        cart_id: &r.config.cart_id,
        link: &r.config.link,
        tpm: &r.tpm,
        ledger: &r.ledger,
    };
    let timeout = Duration::from_secs(r.config.provisioning.response_timeout_secs);
    let mut client = FleetClient::over(
        r.link.clone(),
        r.answers,
        &r.config.provisioning.template,
        timeout,
    );
    let mut check = tokio::time::interval(Duration::from_secs(6 * 3600));
    loop {
        let trigger = tokio::select! {
            t = requests.recv() => match t {
                Some(t) => Some(t),
                None => return,
            },
            _ = check.tick() => match rotation::due(&ctx, Timestamp::now()) {
                Ok(t) => t,
                Err(e) => {
                    warn!(cause = %e, "rotation check failed");
                    None
                }
            },
            _ = stop.changed() => return,
        };
        let Some(trigger) = trigger else { continue };
        if !r.link.wait_up(Duration::from_secs(60)).await {
            warn!(?trigger, "certificate rotation waits for the link");
            continue;
        }
        match rotation::rotate(&ctx, &mut client, &r.link, &r.cert, trigger).await {
            Ok(p) => info!(
                certificate_id = %p.certificate_id,
                key_handle = p.key_handle,
                not_after_ms = p.not_after.0,
                "certificate rotated"
            ),
            Err(e) => {
                warn!(cause = %e, "certificate rotation failed; the current certificate stays; it resumes at the next check")
            }
        }
    }
}
