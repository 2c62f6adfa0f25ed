//! The control socket's protocol between the daemon and `cartctl`: one JSON
//! request per connection, answered by JSON lines (a `sync` streams its
//! progress, then the final answer). Only root and members of the
//! configured group may connect; the daemon checks the peer's credentials
//! (`SO_PEERCRED`) on every connection.
//!
//! The socket lives in a folder of its own (`/run/cart-control` on the
//! cart: made by tmpfiles.d, `2750 cart:cart-tech`, so it outlives the
//! daemon and everything the daemon makes there belongs to the group).
//! Beside the socket the daemon keeps a [`Snapshot`] of its status
//! ([`SNAPSHOT_FILE`]), rewritten atomically while it runs and once more
//! when it stops, which `cartctl status` shows when the daemon is down (the
//! ledger itself is readable by the daemon's user only).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store_and_forward::Timestamp;
use store_and_forward::ledger::LedgerStatus;
use store_and_forward::sync::DeliveryReport;

/// What `cartctl` asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The whole status.
    Status,
    /// Drain the outbox now; progress lines until empty or `timeout_secs`.
    Sync {
        /// Give up waiting after this long (the drain itself goes on).
        timeout_secs: u64,
    },
    /// The daemon's part of a diagnostics bundle.
    Diag,
    /// Import a catalog CSV (all or nothing) into the daemon's catalog, so
    /// its files stay the daemon's user's whoever runs `cartctl`.
    CatalogImport {
        /// The CSV text.
        csv: String,
    },
    /// Queues a quarantined payment record again (after its cause was
    /// fixed), by payment key.
    Release {
        /// The payment's idempotency key.
        payment: String,
    },
    /// Demo builds only: cut (`up = false`) or restore the link.
    #[serde(rename = "demo_link")]
    DemoLink {
        /// Link wanted up.
        up: bool,
    },
    /// Demo builds only: a tap on the touchscreen, by its event name
    /// (`checkout`, `pay`, `cancel`, `done`, `back`, `try_again`).
    #[serde(rename = "demo_tap")]
    DemoTap {
        /// The event.
        event: String,
    },
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// The status.
    Status(Box<CartStatus>),
    /// Sync progress: records still waiting per class.
    Progress {
        /// Pending payments, control and telemetry records.
        pending: Vec<(String, u64)>,
    },
    /// Sync finished: nothing waits (or the timeout passed).
    SyncDone {
        /// Everything delivered.
        drained: bool,
        /// Records still waiting.
        pending: u64,
    },
    /// The daemon's diagnostics.
    Diag(Box<serde_json::Value>),
    /// A catalog import is done.
    Imported {
        /// Items imported.
        items: u64,
    },
    /// Done, nothing to report.
    Ok,
    /// The request was refused or failed.
    Error {
        /// Why.
        message: String,
    },
}

/// The link as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Connected to the broker.
    pub up: bool,
    /// Since when (ms since the epoch).
    pub since: Timestamp,
    /// The last error seen.
    pub last_error: Option<String>,
    /// Connections and failures so far.
    pub connects: u64,
    /// Failed attempts and lost connections so far.
    pub failures: u64,
    /// What crossed the link since the daemon started (what the broker
    /// meters; docs/uplink.md). Absent in an older daemon's snapshot.
    #[serde(default)]
    pub traffic: Option<store_and_forward::uplink::Traffic>,
}

/// The device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStatus {
    /// The subject's CN.
    pub subject: String,
    /// Valid until (ms since the epoch).
    pub not_after: Timestamp,
    /// Whole days left (negative: expired).
    pub days_left: i64,
}

/// A device's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// `scanner` or `reader`.
    pub device: String,
    /// `connected`, `reconnecting` (with attempts), `gone`, `absent`.
    pub state: String,
}

/// Everything `cartctl status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartStatus {
    /// The cart's id.
    pub cart_id: String,
    /// The daemon's version.
    pub version: String,
    /// Where the answer came from: `daemon`, or `ledger (daemon down)`.
    pub source: String,
    /// Seconds since the daemon started (absent when read from the ledger).
    pub uptime_secs: Option<u64>,
    /// The provisioning step (`provisioned`, or the step it is at).
    pub provisioning: String,
    /// The pipeline's recorded state (TPM carts): step, certificate id and
    /// expiry, active key handle, orphans reported, a rotation in progress.
    pub provisioning_detail: Option<crate::provision::ProvisioningStatus>,
    /// The device certificate, when one is installed.
    pub certificate: Option<CertStatus>,
    /// The link (absent when read from the ledger).
    pub link: Option<LinkStatus>,
    /// Devices (absent when read from the ledger).
    pub devices: Vec<DeviceStatus>,
    /// The ledger: exposure, queues, clock, limits.
    pub ledger: LedgerStatus,
    /// What the uplink delivered since start.
    pub delivery: Option<DeliveryReport>,
    /// The root slots as RAUC reported them at the daemon's start (absent:
    /// no RAUC, or an older daemon).
    #[serde(default)]
    pub slots: Option<SlotsView>,
}

/// The A/B root slots (RAUC's `GetSlotStatus`, `BootSlot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotsView {
    /// The bootname booted (`A`, `B`).
    pub booted: String,
    /// Every slot.
    pub slots: Vec<crate::update::rauc::Slot>,
}

impl CartStatus {
    /// Offline exposure per currency against each limit, as one line.
    pub fn exposure_line(&self) -> String {
        let st = &self.ledger;
        let mut s = format!(
            "{} of {} payments",
            st.exposure.count, st.limits.max_outstanding_count
        );
        for (cur, amount) in &st.exposure.amount {
            let cap = st
                .limits
                .total_outstanding_cap
                .get(cur)
                .copied()
                .unwrap_or(0);
            s.push_str(&format!(
                ", {} of {}",
                store_and_forward::Money::new(*amount, *cur),
                store_and_forward::Money::new(cap, *cur)
            ));
        }
        s
    }

    /// Pending records per outbox class.
    pub fn pending(&self) -> Vec<(String, u64)> {
        self.ledger
            .outbox
            .iter()
            .map(|d| (d.class.to_string(), d.pending))
            .collect()
    }
}

/// The status file beside the control socket.
pub const SNAPSHOT_FILE: &str = "status.json";

/// The status snapshot's path for a control socket: beside it.
pub fn snapshot_path(socket: &Path) -> PathBuf {
    socket.with_file_name(SNAPSHOT_FILE)
}

/// The daemon's status as last written to [`SNAPSHOT_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was written (ms since the epoch).
    pub written_at: Timestamp,
    /// `false` in the snapshot the daemon writes as it stops.
    pub daemon_running: bool,
    /// The status at that moment.
    pub status: CartStatus,
}

/// A failure reading or writing the status snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot (the daemon never ran since boot, or the path is wrong).
    #[error("no status snapshot at {0}")]
    Missing(String),
    /// The snapshot (or its folder) may not be read by this user.
    #[error("permission denied reading {0} (root or the cart-tech group only)")]
    PermissionDenied(String),
    /// Reading or writing failed otherwise.
    #[error("status snapshot {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a snapshot (written by another version?).
    #[error("status snapshot {path}: unreadable: {source}")]
    Decode {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl Snapshot {
    /// Writes `self` to `path` atomically (a temporary file in the same
    /// folder, synced, then renamed over it), mode 0640: readable by the
    /// folder's group (the setgid folder gives the file its group).
    pub fn write(&self, path: &Path) -> Result<(), SnapshotError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |source| SnapshotError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = serde_json::to_vec(self).map_err(|source| SnapshotError::Decode {
            path: path.display().to_string(),
            source,
        })?;
        let tmp = path.with_file_name(format!(".{SNAPSHOT_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(err)?;
        // The unit's UMask=0077 would leave 0600: set the mode explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o640))
            .map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Reads the snapshot at `path`, naming the cause when it cannot.
    pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SnapshotError::Missing(name.clone()),
            std::io::ErrorKind::PermissionDenied => SnapshotError::PermissionDenied(name.clone()),
            _ => SnapshotError::Io {
                path: name.clone(),
                source,
            },
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|source| SnapshotError::Decode { path: name, source })
    }
}

/// A failure talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket (or its folder) may not be opened by this user: not root
    /// and not in the technicians' group. Nothing about the daemon is known.
    #[error("permission denied on the control socket {path} (root or the cart-tech group only)")]
    PermissionDenied {
        /// The socket.
        path: String,
    },
    /// No daemon listens (not running, or another socket path): `cartctl`
    /// falls back to the status snapshot where it can.
    #[error("the daemon is not running (nothing answers at {path}: {source})")]
    Unreachable {
        /// The socket.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or timed out.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something that is not a reply.
    #[error("control socket: unreadable reply: {0}")]
    Decode(#[from] serde_json::Error),
    /// The daemon refused (the message says why, e.g. not allowed).
    #[error("the daemon refused: {0}")]
    Refused(String),
}

/// Sends `request` to the daemon at `socket` and hands each reply line to
/// `on_reply` until the daemon closes the connection.
pub fn call(
    socket: &Path,
    request: &Request,
    timeout: Duration,
    on_reply: &mut dyn FnMut(Reply),
) -> Result<(), ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| {
        let path = socket.display().to_string();
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ControlError::PermissionDenied { path }
        } else {
            ControlError::Unreachable { path, source }
        }
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Reply>(&line)? {
            Reply::Error { message } => return Err(ControlError::Refused(message)),
            r => on_reply(r),
        }
    }
    Ok(())
}

/// The daemon's status (a [`Request::Status`] round trip).
pub fn status(socket: &Path, timeout: Duration) -> Result<CartStatus, ControlError> {
    let mut status = None;
    call(socket, &Request::Status, timeout, &mut |r| {
        if let Reply::Status(s) = r {
            status = Some(*s);
        }
    })?;
    status.ok_or_else(|| ControlError::Refused("the daemon sent no status".into()))
}
