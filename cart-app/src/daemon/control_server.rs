//! The control socket's server side: one task accepting connections, one
//! task per connection. Every connection is checked by the peer's
//! credentials: root, the daemon's own user, or a member of the configured
//! group (primary or supplementary, read from `/proc/<pid>/status`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hal::scanner::{DeviceState, StateHandle};
use store_and_forward::sync::{SharedLedger, Uplink};
use store_and_forward::{LedgerError, Timestamp};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::threads::SessionState;
use crate::config::Config;
use crate::control::{CartStatus, DeviceStatus, LinkStatus, Reply, Request};

/// The largest request read from an allowed peer (a catalog CSV).
const MAX_REQUEST: u64 = 32 * 1024 * 1024;

/// A demo hook: cuts (`false`) or restores (`true`) the link.
pub type LinkControl = Arc<dyn Fn(bool) + Send + Sync>;

/// A demo hook: delivers a tap as if on the touchscreen.
pub type TapControl = Arc<dyn Fn(ui::UiEvent) + Send + Sync>;

/// What the status and the commands read.
pub struct Context {
    /// The configuration in force.
    pub config: Config,
    /// When the daemon started.
    pub started: Instant,
    /// The ledger.
    pub ledger: SharedLedger,
    /// The uplink (absent before provisioning).
    pub uplink: Option<Arc<Uplink>>,
    /// The scanner's state (absent: no scanner configured).
    pub scanner: Option<StateHandle>,
    /// The session's shared flags.
    pub session: Arc<SessionState>,
    /// Where provisioning stands.
    pub provisioning: String,
    /// Demo builds: link control.
    pub demo_link: Option<LinkControl>,
    /// Demo builds: taps.
    pub demo_tap: Option<TapControl>,
    /// The root slots, once RAUC answered (the update health check).
    pub slots: std::sync::Mutex<Option<crate::control::SlotsView>>,
}

impl Context {
    /// The status now.
    pub fn status(&self) -> Result<CartStatus, LedgerError> {
        let now = Timestamp::now();
        let (ledger, provisioning_detail) = {
            let l = lock(&self.ledger);
            let detail = if self.config.identity.software_key.is_none() {
                crate::provision::status(&l, now).ok()
            } else {
                None
            };
            (l.status(now)?, detail)
        };
        let link = self.uplink.as_ref().map(|u| {
            let s = u.link().state().borrow().clone();
            LinkStatus {
                up: s.up,
                since: s.since,
                last_error: s.last_error,
                connects: s.connects,
                failures: s.failures,
                traffic: Some(u.link().traffic()),
            }
        });
        let mut devices = vec![DeviceStatus {
            device: "reader".into(),
            state: if self.session.reader_up.load(Ordering::SeqCst) {
                "connected".into()
            } else {
                "reconnecting".into()
            },
        }];
        devices.push(DeviceStatus {
            device: "scanner".into(),
            state: match self.scanner.as_ref().map(StateHandle::get) {
                None => "absent".into(),
                Some(DeviceState::Connected) => "connected".into(),
                Some(DeviceState::Reconnecting { attempts }) => {
                    format!("reconnecting ({attempts} attempts)")
                }
                Some(DeviceState::Gone) => "gone".into(),
            },
        });
        Ok(CartStatus {
            cart_id: self.config.cart_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            source: "daemon".into(),
            uptime_secs: Some(self.started.elapsed().as_secs()),
            provisioning: self.provisioning.clone(),
            provisioning_detail,
            certificate: super::parts::cert_status(&self.config.provisioning.certificate, now),
            link,
            devices,
            ledger,
            delivery: self.uplink.as_ref().map(|u| u.report()),
            slots: self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    /// Writes the status snapshot beside the control socket (see
    /// [`crate::control::Snapshot`]); `running` is false for the last one,
    /// written as the daemon stops. A failure is logged, never fatal.
    pub fn write_snapshot(&self, status: &Result<CartStatus, LedgerError>, running: bool) {
        let Ok(status) = status else { return };
        let path = crate::control::snapshot_path(&self.config.control.socket);
        let snapshot = crate::control::Snapshot {
            written_at: Timestamp::now(),
            daemon_running: running,
            status: status.clone(),
        };
        if let Err(e) = snapshot.write(&path) {
            warn!(cause = %e, "status snapshot not written");
        }
    }

    /// The one-line status systemd shows.
    pub fn status_line(&self) -> String {
        status_line(&self.status())
    }

    /// Imports a catalog CSV into the daemon's catalog file (a connection
    /// of its own: SQLite lets the session read on while this writes), in
    /// the store's currency.
    fn import_catalog(&self, csv: &str) -> Result<usize, crate::catalog::CatalogError> {
        let currency = store_and_forward::Currency::new(&self.config.store.currency)
            .map_err(|e| crate::catalog::CatalogError::StoreCurrency(e.to_string()))?;
        crate::catalog::Catalog::open(&self.config.catalog.path)?.import_csv_in(csv, currency)
    }

    /// The daemon's part of a diagnostic bundle: status, the configuration
    /// without secrets, the threads' flags.
    pub fn diag(&self) -> serde_json::Value {
        let config = redact(serde_json::to_value(&self.config).unwrap_or_default());
        serde_json::json!({
            "status": self.status().ok(),
            "config": config,
            "threads": {
                "paying": self.session.paying.load(Ordering::SeqCst),
            },
        })
    }
}

/// The one-line status systemd shows, from a status read.
pub fn status_line(status: &Result<CartStatus, LedgerError>) -> String {
    match status {
        Ok(st) => {
            let link = match &st.link {
                Some(l) if l.up => "link up",
                Some(_) => "link down",
                None => "not provisioned",
            };
            let queue: Vec<String> = st
                .pending()
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            format!(
                "{link}; queue {}; offline exposure {}",
                if queue.is_empty() {
                    "empty".into()
                } else {
                    queue.join(", ")
                },
                st.exposure_line()
            )
        }
        Err(e) => format!("ledger unreadable: {e}"),
    }
}

/// Replaces every value whose key names a secret.
pub fn redact(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    if ["password", "psk", "secret", "token", "passphrase"]
                        .iter()
                        .any(|s| k.contains(s))
                    {
                        *v = serde_json::Value::String("<redacted>".into());
                    } else {
                        walk(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The control socket, bound and ready.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    group: Option<u32>,
}

impl ControlServer {
    /// Binds `path` (a stale socket file is replaced), mode 0660, group
    /// `group` when it exists. On the cart the folder is setgid `group`
    /// (tmpfiles.d), so the socket has the group already: the daemon has no
    /// CAP_CHOWN and needs none. Elsewhere (root in tests and the demo) it
    /// hands the socket to the group itself.
    pub fn bind(path: &Path, group: &str) -> std::io::Result<ControlServer> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid);
        match gid {
            Some(gid) if std::fs::metadata(path)?.gid() != gid.as_raw() => {
                if let Err(e) = nix::unistd::chown(path, None, Some(gid)) {
                    warn!(cause = %e, %group, socket = %path.display(),
                        "control socket: not in the group and cannot hand it over; make its folder setgid {group} (tmpfiles.d/cart.conf)");
                }
            }
            Some(_) => {}
            None => info!(%group, "control socket: no such group; only root may connect"),
        }
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            group: gid.map(|g| g.as_raw()),
        })
    }

    /// Serves until `stop` turns true; removes the socket file then.
    pub async fn serve(self, ctx: Arc<Context>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let ctx = ctx.clone();
                        let group = self.group;
                        tokio::spawn(async move {
                            if let Err(e) = serve_one(stream, ctx, group).await {
                                info!(cause = %e, "control connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(cause = %e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the peer may use the socket: root, the daemon's own user, or a
/// user whose primary or supplementary groups (from the user database; the
/// unit's ProtectProc hides other users' /proc) include `group`.
fn allowed(uid: u32, gid: u32, group: Option<u32>) -> bool {
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    let Some(group) = group else { return false };
    if gid == group {
        return true;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    user.and_then(|u| {
        let name = std::ffi::CString::new(u.name).ok()?;
        nix::unistd::getgrouplist(&name, u.gid).ok()
    })
    .is_some_and(|groups| groups.iter().any(|g| g.as_raw() == group))
}

async fn send(stream: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn serve_one(
    stream: UnixStream,
    ctx: Arc<Context>,
    group: Option<u32>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    // Read the request first, so a refusal reaches a client still writing;
    // a large one (a catalog) only from those allowed.
    let allowed = allowed(cred.uid(), cred.gid(), group);
    let limit = if allowed { MAX_REQUEST } else { 64 * 1024 };
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(limit));
    tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    if !allowed {
        warn!(uid = cred.uid(), pid = ?cred.pid(), "control socket: connection refused (not root or the technicians' group)");
        return send(
            &mut write,
            &Reply::Error {
                message: "not allowed: root or the cart-tech group only".into(),
            },
        )
        .await;
    }
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            return send(
                &mut write,
                &Reply::Error {
                    message: format!("bad request: {e}"),
                },
            )
            .await;
        }
    };
    debug!(uid = cred.uid(), ?request, "control request");
    match request {
        Request::Status => {
            let reply = match tokio::task::block_in_place(|| ctx.status()) {
                Ok(st) => Reply::Status(Box::new(st)),
                Err(e) => Reply::Error {
                    message: format!("ledger: {e}"),
                },
            };
            send(&mut write, &reply).await
        }
        Request::Sync { timeout_secs } => {
            let Some(uplink) = ctx.uplink.clone() else {
                return send(
                    &mut write,
                    &Reply::Error {
                        message: "not provisioned: no uplink".into(),
                    },
                )
                .await;
            };
            let deadline = Instant::now() + Duration::from_secs(timeout_secs.max(1));
            loop {
                uplink.flush();
                let st = tokio::task::block_in_place(|| ctx.status());
                let pending = match st {
                    Ok(st) => st.pending(),
                    Err(e) => {
                        return send(
                            &mut write,
                            &Reply::Error {
                                message: format!("ledger: {e}"),
                            },
                        )
                        .await;
                    }
                };
                let total: u64 = pending.iter().map(|(_, n)| n).sum();
                if total == 0 || Instant::now() >= deadline {
                    return send(
                        &mut write,
                        &Reply::SyncDone {
                            drained: total == 0,
                            pending: total,
                        },
                    )
                    .await;
                }
                send(&mut write, &Reply::Progress { pending }).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Request::CatalogImport { csv } => {
            let reply = match tokio::task::block_in_place(|| ctx.import_catalog(&csv)) {
                Ok(items) => {
                    info!(
                        uid = cred.uid(),
                        items, "catalog imported through the control socket"
                    );
                    Reply::Imported {
                        items: items as u64,
                    }
                }
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            };
            send(&mut write, &reply).await
        }
        Request::Release { payment } => {
            let reply = match store_and_forward::PaymentKey::parse(&payment) {
                Err(_) => Reply::Error {
                    message: format!("not a payment key: {payment}"),
                },
                Ok(key) => {
                    let released = tokio::task::block_in_place(|| {
                        let mut l = ctx.ledger.lock().unwrap_or_else(|p| p.into_inner());
                        l.release_quarantined(&key, store_and_forward::Timestamp::now())
                    });
                    match released {
                        Ok(0) => Reply::Error {
                            message: format!("nothing quarantined for payment {key}"),
                        },
                        Ok(n) => {
                            tracing::warn!(uid = cred.uid(), payment_key = %key, records = n, "quarantined payment released by a technician");
                            if let Some(u) = &ctx.uplink {
                                u.kick();
                            }
                            Reply::Ok
                        }
                        Err(e) => Reply::Error {
                            message: format!("ledger: {e}"),
                        },
                    }
                }
            };
            send(&mut write, &reply).await
        }
        Request::Diag => {
            let v = tokio::task::block_in_place(|| ctx.diag());
            send(&mut write, &Reply::Diag(Box::new(v))).await
        }
        Request::DemoLink { up } => match &ctx.demo_link {
            Some(f) => {
                f(up);
                send(&mut write, &Reply::Ok).await
            }
            None => {
                send(
                    &mut write,
                    &Reply::Error {
                        message: "link control exists only in demo mode".into(),
                    },
                )
                .await
            }
        },
        Request::DemoTap { event } => {
            let ev = match event.as_str() {
                "checkout" => Some(ui::UiEvent::Checkout),
                "pay" => Some(ui::UiEvent::Pay),
                "cancel" => Some(ui::UiEvent::CancelPayment),
                "done" => Some(ui::UiEvent::Done),
                "back" => Some(ui::UiEvent::BackToCart),
                "try_again" => Some(ui::UiEvent::TryAgain),
                _ => None,
            };
            match (&ctx.demo_tap, ev) {
                (Some(f), Some(ev)) => {
                    f(ev);
                    send(&mut write, &Reply::Ok).await
                }
                (None, _) => {
                    send(
                        &mut write,
                        &Reply::Error {
                            message: "taps exist only in demo mode".into(),
                        },
                    )
                    .await
                }
                (_, None) => {
                    send(
                        &mut write,
                        &Reply::Error {
                            message: format!("unknown tap {event:?}"),
                        },
                    )
                    .await
                }
            }
        }
    }
}

fn lock(l: &SharedLedger) -> std::sync::MutexGuard<'_, store_and_forward::Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_secrets_at_any_depth() {
        let v = serde_json::json!({
            "provisioning": {"wifi": {"ssid": "store", "password": "hunter2"}},
            "list": [{"psk": "x"}],
            "cart_id": "cart-1"
        });
        let r = redact(v).to_string();
        assert!(!r.contains("hunter2") && !r.contains("\"x\""), "{r}");
        assert!(r.contains("store") && r.contains("cart-1"), "{r}");
    }

    #[test]
    fn only_root_own_user_or_the_group_may_connect() {
        assert!(allowed(0, 0, None));
        let me = nix::unistd::geteuid().as_raw();
        assert!(allowed(me, 12345, None));
        let stranger = if me == 4242 { 4243 } else { 4242 };
        assert!(!allowed(stranger, 4242, Some(999)));
        assert!(allowed(stranger, 999, Some(999)));
        assert!(!allowed(stranger, 4242, None));
    }
}
