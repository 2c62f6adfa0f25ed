//! RAUC over D-Bus (`de.pengutronix.rauc`, object `/`, interface
//! `de.pengutronix.rauc.Installer`), the calls both RAUC 1.8 (the QEMU
//! guest's Debian package) and 1.15 (the image's) have: `Info` (a bundle's
//! compatible and version; RAUC checks its signature to read them),
//! `InstallBundle` with the `Progress` property and the `Completed` signal,
//! `Mark`, `GetSlotStatus`, and the `Compatible` and `BootSlot`
//! properties. The system bus policy lets root and user `cart` call it
//! (docs/updates.md, "Who may call RAUC").

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

const SERVICE: &str = "de.pengutronix.rauc";
const INTERFACE: &str = "de.pengutronix.rauc.Installer";

/// A RAUC call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    /// D-Bus (no RAUC, refused by the bus policy, an error RAUC returned).
    #[error("{0}")]
    Bus(#[from] zbus::Error),
    /// The installation ended with an error.
    #[error("install failed: {0}")]
    Install(String),
}

/// One slot as RAUC reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// RAUC's name (`rootfs.0`).
    pub name: String,
    /// Every string or number RAUC gave (`bootname`, `state`, `boot-status`,
    /// `bundle.version`, `installed.timestamp`, ...).
    pub fields: BTreeMap<String, String>,
}

/// A connection to RAUC.
pub struct Rauc {
    proxy: zbus::Proxy<'static>,
}

fn text(v: &OwnedValue) -> Option<String> {
    match &**v {
        Value::Str(s) => Some(s.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::U8(n) => Some(n.to_string()),
        Value::I32(n) => Some(n.to_string()),
        Value::U32(n) => Some(n.to_string()),
        Value::I64(n) => Some(n.to_string()),
        Value::U64(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Rauc {
    /// Connects to RAUC on the system bus.
    pub async fn connect() -> Result<Rauc, RaucError> {
        let conn = zbus::Connection::system().await?;
        let proxy = zbus::Proxy::new_owned(conn, SERVICE, "/", INTERFACE).await?;
        Ok(Rauc { proxy })
    }

    /// The system's compatible string (system.conf).
    pub async fn compatible(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_property::<String>("Compatible").await?)
    }

    /// The slot's bootname the system booted from (`A`, `B`).
    pub async fn boot_slot(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_property::<String>("BootSlot").await?)
    }

    /// A bundle's compatible and version, as its signed manifest says
    /// (RAUC refuses a bundle whose signature does not verify).
    pub async fn info(&self, bundle: &str) -> Result<(String, String), RaucError> {
        Ok(self.proxy.call("Info", &(bundle,)).await?)
    }

    /// Installs `bundle` into the other slot; `progress` gets RAUC's
    /// (percent, message) as it goes. Returns once RAUC says it completed.
    pub async fn install(
        &self,
        bundle: &str,
        progress: &mut (dyn FnMut(i32, &str) + Send),
    ) -> Result<(), RaucError> {
        let mut completed = self.proxy.receive_signal("Completed").await?;
        let args: HashMap<&str, Value<'_>> = HashMap::new();
        self.proxy
            .call::<_, _, ()>("InstallBundle", &(bundle, args))
            .await?;
        let mut last = (-1, String::new());
        loop {
            tokio::select! {
                signal = completed.next() => {
                    let result: i32 = match signal {
                        Some(m) => m.body().deserialize()?,
                        None => return Err(RaucError::Install("RAUC left the bus".into())),
                    };
                    if result == 0 {
                        progress(100, "installed");
                        return Ok(());
                    }
                    let why = self
                        .proxy
                        .get_property::<String>("LastError")
                        .await
                        .unwrap_or_else(|_| format!("result {result}"));
                    return Err(RaucError::Install(why));
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Ok((pct, msg, _depth)) =
                        self.proxy.get_property::<(i32, String, i32)>("Progress").await
                        && (pct, &msg) != (last.0, &last.1)
                    {
                        progress(pct, &msg);
                        last = (pct, msg);
                    }
                }
            }
        }
    }

    /// Marks the booted slot good or bad (`Mark`), RAUC's answer.
    pub async fn mark_booted(&self, good: bool) -> Result<String, RaucError> {
        let state = if good { "good" } else { "bad" };
        let (slot, message): (String, String) = self.proxy.call("Mark", &(state, "booted")).await?;
        Ok(format!("{slot}: {message}"))
    }

    /// Every slot's status.
    pub async fn slots(&self) -> Result<Vec<Slot>, RaucError> {
        let raw: Vec<(String, HashMap<String, OwnedValue>)> =
            self.proxy.call("GetSlotStatus", &()).await?;
        Ok(raw
            .into_iter()
            .map(|(name, fields)| Slot {
                name,
                fields: fields
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                    .collect(),
            })
            .collect())
    }
}
