//! The identity's life in the daemon: first-boot provisioning while the
//! cart is not provisioned, certificate rotation once it is.
//!
//! Provisioning runs [`provision::run`] until it succeeds (a missing
//! network waits for the provisioning QR code from the scanner; other
//! failures are retried with backoff), then stops the daemon so that it
//! starts again (systemd's `Restart=always`) with the device certificate.
//! Rotation checks [`rotation::due`] at start and every six hours, and runs
//! when due or when the backend asks, over the daemon's own link.

use std::sync::Arc;
use std::time::Duration;

use hal::scanner::WifiCredentials;
use store_and_forward::Timestamp;
use store_and_forward::sync::SharedLedger;
use store_and_forward::uplink::{Incoming, LinkHandle, SwappableClientCert};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use ui::{SetupStep, SetupView};

use crate::config::Config;
use crate::provision::fleet::FleetClient;
use crate::provision::network::JoinOutcome;
use crate::provision::rotation::{self, Trigger};
use crate::provision::{self, ProvisionError};
use crate::tpm::CartTpm;

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
