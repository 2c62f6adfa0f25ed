//! NetworkManager over D-Bus: the cart's Wi-Fi connection added (or
//! replaced) through `org.freedesktop.NetworkManager.Settings` and
//! activated on the Wi-Fi device, then followed until it is up or fails.
//!
//! NetworkManager keeps the connection (with its passphrase, root-owned
//! 0600) where its keyfile plugin is told to, on the image's data
//! partition; the daemon writes no file (the unit's root is read-only, and
//! NetworkManager ignores keyfiles that root does not own). polkit allows
//! user `cart` exactly the two actions this needs
//! (`settings.modify.system`, `network-control`: packaging/polkit).
//!
//! What to send and how to read the device's state changes is in
//! [`super::network`] (sans-IO); this file only talks to the bus.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::network::{self, DeviceEvent, JoinOutcome};

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager",
    gen_blocking = false
)]
trait NetworkManager {
    fn get_devices(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    fn activate_connection(
        &self,
        connection: &zbus::zvariant::ObjectPath<'_>,
        device: &zbus::zvariant::ObjectPath<'_>,
        specific_object: &zbus::zvariant::ObjectPath<'_>,
    ) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Settings",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager/Settings",
    gen_blocking = false
)]
trait Settings {
    fn add_connection(
        &self,
        connection: HashMap<&str, HashMap<&str, Value<'_>>>,
    ) -> zbus::Result<OwnedObjectPath>;

    fn get_connection_by_uuid(&self, uuid: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Settings.Connection",
    default_service = "org.freedesktop.NetworkManager",
    gen_blocking = false
)]
trait SettingsConnection {
    fn update(&self, properties: HashMap<&str, HashMap<&str, Value<'_>>>) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Device",
    default_service = "org.freedesktop.NetworkManager",
    gen_blocking = false
)]
trait Device {
    #[zbus(property)]
    fn device_type(&self) -> zbus::Result<u32>;

    #[zbus(property)]
    fn interface(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn state_changed(&self, new_state: u32, old_state: u32, reason: u32) -> zbus::Result<()>;
}

/// NetworkManager's device type for Wi-Fi (`NM_DEVICE_TYPE_WIFI`).
const DEVICE_TYPE_WIFI: u32 = 2;

/// Why NetworkManager could not be asked (not why a join failed: that is a
/// [`JoinOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum NmError {
    /// The system bus or NetworkManager is not there, or refused a call
    /// (polkit): retried with backoff.
    #[error("NetworkManager: {0}")]
    Bus(#[from] zbus::Error),
    /// No Wi-Fi device (or not the configured one): retried with backoff,
    /// a radio may still appear.
    #[error("no Wi-Fi device{}", .0.as_deref().map(|i| format!(" named {i}")).unwrap_or_default())]
    NoDevice(Option<String>),
}

/// The system bus's NetworkManager.
pub struct NetworkManagerClient {
    bus: zbus::Connection,
}

impl NetworkManagerClient {
    /// Connects to the system bus.
    pub async fn system() -> Result<Self, NmError> {
        Ok(NetworkManagerClient {
            bus: zbus::Connection::system().await?,
        })
    }

    /// The Wi-Fi device: the one named `interface`, or the first.
    async fn wifi_device(&self, interface: Option<&str>) -> Result<DeviceProxy<'_>, NmError> {
        let nm = NetworkManagerProxy::new(&self.bus).await?;
        for path in nm.get_devices().await? {
            let dev = DeviceProxy::builder(&self.bus)
                .path(path)?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            if dev.device_type().await? != DEVICE_TYPE_WIFI {
                continue;
            }
            match interface {
                None => return Ok(dev),
                Some(want) if dev.interface().await.is_ok_and(|i| i == want) => return Ok(dev),
                Some(_) => {}
            }
        }
        Err(NmError::NoDevice(interface.map(str::to_owned)))
    }

    /// The saved connection with this UUID, if NetworkManager has one.
    pub async fn connection(&self, uuid: &str) -> Result<Option<OwnedObjectPath>, NmError> {
        let settings = SettingsProxy::new(&self.bus).await?;
        match settings.get_connection_by_uuid(uuid).await {
            Ok(p) => Ok(Some(p)),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.NetworkManager.Settings.InvalidConnection" =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds the connection, or replaces the saved one with the same UUID
    /// (a new provisioning code replaces the old network); NetworkManager
    /// saves it. Returns its path.
    pub async fn save(
        &self,
        uuid: &str,
        settings: HashMap<&str, HashMap<&str, Value<'_>>>,
    ) -> Result<OwnedObjectPath, NmError> {
        match self.connection(uuid).await? {
            Some(path) => {
                SettingsConnectionProxy::builder(&self.bus)
                    .path(path.clone())?
                    .build()
                    .await?
                    .update(settings)
                    .await?;
                Ok(path)
            }
            None => Ok(SettingsProxy::new(&self.bus)
                .await?
                .add_connection(settings)
                .await?),
        }
    }

    /// Activates the saved connection on the Wi-Fi device and follows the
    /// device until the connection is up, fails, or `timeout` passes.
    pub async fn join(
        &self,
        connection: &OwnedObjectPath,
        interface: Option<&str>,
        timeout: Duration,
    ) -> Result<JoinOutcome, NmError> {
        let dev = self.wifi_device(interface).await?;
        // Subscribe before activating: no state change is missed.
        let mut changes = dev.receive_state_changed().await?;
        let nm = NetworkManagerProxy::new(&self.bus).await?;
        let root = zbus::zvariant::ObjectPath::from_static_str_unchecked("/");
        nm.activate_connection(connection, dev.inner().path(), &root)
            .await?;
        let mut follow = network::JoinFollower::default();
        let wait = async {
            while let Some(signal) = changes.next().await {
                let Ok(args) = signal.args() else { continue };
                let event = DeviceEvent {
                    new_state: args.new_state,
                    old_state: args.old_state,
                    reason: args.reason,
                };
                tracing::debug!(?event, "Wi-Fi device state");
                if let Some(outcome) = follow.on(event) {
                    return outcome;
                }
            }
            JoinOutcome::Failed { reason: 0 }
        };
        Ok(tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(JoinOutcome::TimedOut))
    }
}
