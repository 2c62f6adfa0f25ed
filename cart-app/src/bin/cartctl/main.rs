//! `cartctl`: the field technician's tool.
//!
//! Talks to the running daemon over its control socket (root and the
//! `cart-tech` group only). When the daemon is down, `status` shows the
//! status snapshot the daemon keeps beside its socket (marked as such,
//! with its age), or, where this user may read it (root), a read-only look
//! at the ledger (no recovery runs, nothing is written); `diag` bundles
//! what it can read itself.
//!
//! Exit codes: 0 done; 1 a runtime failure (with the reason); 2 bad usage
//! or configuration; 3 no ledger at the path; 4 the daemon is not running
//! (for commands that need it); 5 permission denied (not root and not in
//! the cart-tech group: the socket, the snapshot, or the daemon refused);
//! 6 the daemon is not running and there is no status snapshot to show.
//!
//! Layout: this file has the commands; `text.rs` writes `status` in words.

mod text;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cart_app::catalog::Catalog;
use cart_app::config::{Config, LoadOptions};
use cart_app::control::{self, CartStatus, ControlError, Reply, Request, Snapshot, SnapshotError};
use cart_app::daemon::control_server::redact;
use cart_app::daemon::parts::cert_status;
use clap::{Parser, Subcommand};
use store_and_forward::Timestamp;
use store_and_forward::ledger::read_only_status;
use text::{ago, human};

#[derive(Debug, Parser)]
#[command(
    name = "cartctl",
    version,
    about = "Field-technician tool for the payment cart"
)]
struct Cli {
    /// The cart's configuration file.
    #[arg(long, default_value = "/etc/cart/cart.toml")]
    config: PathBuf,
    /// The daemon's control socket (default: `control.socket` of the config).
    #[arg(long)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provisioning, link, queues, offline exposure against each limit,
    /// trusted time, certificate expiry, versions.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sends everything waiting now, showing progress.
    Sync {
        /// Stop waiting after this many seconds (the drain goes on).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Writes a redacted diagnostics bundle (config without secrets, recent
    /// journal, ledger statistics) as one JSON file.
    Diag {
        /// The file to write (default: cart-diag-<cart>-<time>.json here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Queues a quarantined payment (see `status`) for another attempt,
    /// once its cause is fixed.
    Release {
        /// The payment's key, as `status` shows it.
        payment: String,
    },
    /// With the cart's TPM dead: writes the payments the backend has not
    /// confirmed (sealed) and the data key wrapped to the fleet's recovery
    /// key to a 0600 file for the backend's recovery tool. Reads the
    /// ledger file read-only; needs neither the TPM nor the daemon.
    RecoveryExport {
        /// The file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// The update health deadline (run as root by
    /// cart-update-deadline.service at every boot): when an update is still
    /// waiting for its health check `[update] health_deadline_secs` after
    /// booting its new slot, marks that slot bad and reboots into the old
    /// one. Exits at once when no update is pending.
    UpdateDeadline,
    /// Catalog operations.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Imports items from a CSV file (header:
    /// gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight;
    /// quoted fields allowed), all or nothing, through the daemon (or, when
    /// it is down and this is root, as the catalog folder's owner).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

/// A failure with its exit code.
struct Failure(u8, String);

const EXIT_NO_LEDGER: u8 = 3;
const EXIT_NOT_RUNNING: u8 = 4;
const EXIT_DENIED: u8 = 5;
const EXIT_NO_SNAPSHOT: u8 = 6;

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::PermissionDenied { .. } => Failure(EXIT_DENIED, e.to_string()),
            ControlError::Unreachable { .. } => Failure(
                EXIT_NOT_RUNNING,
                format!(
                    "{e}; start it with `systemctl start cart-app`, see `journalctl -u cart-app`"
                ),
            ),
            ControlError::Refused(m) if m.starts_with("not allowed") => Failure(EXIT_DENIED, m),
            e => Failure(1, e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = if cli.config.exists() {
        // The daemon's layers; a technician who may not read the cart's own
        // settings still gets the image's defaults (the socket, the paths).
        let opts = LoadOptions {
            skip_unreadable_local: true,
            ..LoadOptions::default()
        };
        match Config::load_with(&cli.config, opts) {
            Ok(l) => l.config,
            Err(e) => {
                eprintln!("cartctl: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        Config::default()
    };
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| config.control.socket.clone());
    let result = match cli.command {
        Command::Status { json } => status(&config, &socket, json),
        Command::Sync { timeout } => sync(&socket, timeout),
        Command::Diag { out } => diag(&config, &socket, out),
        Command::Release { payment } => release(&socket, payment),
        Command::RecoveryExport { out } => recovery_export(&config, &out),
        Command::UpdateDeadline => update_deadline(&config),
        Command::Catalog {
            command: CatalogCommand::Import { file },
        } => catalog_import(&config, &socket, &file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("cartctl: {message}");
            ExitCode::from(code)
        }
    }
}

fn pending_update(config: &Config) -> Result<Option<cart_app::update::pending::Pending>, Failure> {
    use cart_app::update::pending::{PENDING_KEY, Pending};
    let status = read_only_status(&config.ledger.path, Timestamp::now())
        .map_err(|e| Failure(EXIT_NO_LEDGER, e.to_string()))?;
    Ok(status
        .jobs
        .get(PENDING_KEY)
        .and_then(|j| serde_json::from_str::<Pending>(j).ok()))
}

fn update_deadline(config: &Config) -> Result<(), Failure> {
    use cart_app::update::rauc::Rauc;
    if pending_update(config)?.is_none() {
        out("update-deadline: no update pending\n");
        return Ok(());
    }
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let deadline = config.update.health_deadline_secs as f64;
    if uptime < deadline {
        out(&format!(
            "update-deadline: an update is pending; its health check has until {deadline:.0} s after boot\n"
        ));
        std::thread::sleep(Duration::from_secs_f64(deadline - uptime));
    }
    // The daemon's verdict ends the pending record; still there: none came.
    let Some(p) = pending_update(config)? else {
        out("update-deadline: the update was decided in time\n");
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(1, e.to_string()))?;
    rt.block_on(async {
        let rauc = Rauc::connect()
            .await
            .map_err(|e| Failure(1, format!("RAUC: {e}")))?;
        let booted = rauc
            .boot_slot()
            .await
            .map_err(|e| Failure(1, format!("RAUC: {e}")))?;
        if booted == p.from_slot {
            // Back on the old slot: the daemon reports it when it runs.
            out(&format!(
                "update-deadline: running the old slot {booted}; the daemon reports the update\n"
            ));
            return Ok(());
        }
        eprintln!(
            "cartctl: update {} -> {} (job {}): no health verdict {deadline:.0} s after booting slot {booted}: marking it bad and rebooting into slot {}",
            p.from_version, p.to_version, p.job_id, p.from_slot
        );
        if let Err(e) = rauc.mark_booted(false).await {
            eprintln!("cartctl: slot {booted} not marked bad: {e} (the bootloader falls back anyway: it was never marked good)");
        }
        let status = std::process::Command::new("systemctl")
            .arg("reboot")
            .status()
            .map_err(|e| Failure(1, format!("systemctl reboot: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure(1, format!("systemctl reboot: {status}")))
        }
    })
}

/// A catalog CSV into the daemon's catalog: through the daemon, so the
/// files stay its user's; with the daemon down, root imports as the owner
/// of the catalog's folder (the daemon's user), never as root.
fn catalog_import(config: &Config, socket: &Path, file: &Path) -> Result<(), Failure> {
    let csv = std::fs::read_to_string(file).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
            EXIT_DENIED
        } else {
            1
        };
        Failure(code, format!("{}: {e}", file.display()))
    })?;
    let mut items = None;
    let through_daemon = control::call(
        socket,
        &Request::CatalogImport { csv: csv.clone() },
        Duration::from_secs(120),
        &mut |r| {
            if let Reply::Imported { items: n } = r {
                items = Some(n);
            }
        },
    );
    let catalog = &config.catalog.path;
    match through_daemon {
        Ok(()) => {
            let n = items.ok_or_else(|| Failure(1, "the daemon sent no result".into()))?;
            out(&format!(
                "imported {n} items into {} (through the daemon)\n",
                catalog.display()
            ));
            Ok(())
        }
        Err(ControlError::Refused(m)) if !m.starts_with("not allowed") => Err(Failure(1, m)),
        Err(e @ ControlError::Unreachable { .. }) if nix::unistd::geteuid().is_root() => {
            let owner = become_owner_of(catalog).map_err(|why| {
                Failure(
                    1,
                    format!("{e}; cannot import as the catalog's owner: {why}"),
                )
            })?;
            let currency = store_and_forward::Currency::new(&config.store.currency)
                .map_err(|e| Failure(2, format!("store.currency: {e}")))?;
            let n = Catalog::open(catalog)
                .and_then(|mut c| c.import_csv_in(&csv, currency))
                .map_err(|e| Failure(1, e.to_string()))?;
            out(&format!(
                "imported {n} items into {} (daemon not running: as uid {owner})\n",
                catalog.display()
            ));
            Ok(())
        }
        Err(e @ ControlError::Unreachable { .. }) => Err(Failure(
            EXIT_NOT_RUNNING,
            format!("{e}; start it, or import as root (then as the daemon's user)"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Drops root for the owner (uid and gid) of `file`'s folder, for good.
fn become_owner_of(file: &Path) -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(meta.uid()),
        nix::unistd::Gid::from_raw(meta.gid()),
    );
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(gid).map_err(|e| format!("setgid {gid}: {e}"))?;
    nix::unistd::setuid(uid).map_err(|e| format!("setuid {uid}: {e}"))?;
    Ok(uid.as_raw())
}

/// The status from the daemon; when the daemon is down, from its last
/// snapshot, else from the ledger where this user may read it.
fn fetch_status(config: &Config, socket: &Path) -> Result<CartStatus, Failure> {
    let down = match control::status(socket, Duration::from_secs(10)) {
        Ok(status) => return Ok(status),
        Err(e @ ControlError::Unreachable { .. }) => e,
        Err(e) => return Err(e.into()),
    };
    let snapshot_path = control::snapshot_path(socket);
    let no_snapshot = match Snapshot::read(&snapshot_path) {
        Ok(snap) => return Ok(from_snapshot(snap)),
        Err(SnapshotError::PermissionDenied(p)) => {
            return Err(Failure(
                EXIT_DENIED,
                format!(
                    "{down}; permission denied reading its status snapshot {p} (root or the cart-tech group only)"
                ),
            ));
        }
        Err(e) => e,
    };
    let path = &config.ledger.path;
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure(
                EXIT_NO_LEDGER,
                format!(
                    "{down}; {no_snapshot}; no ledger at {} (not provisioned yet, or ledger.path is wrong)",
                    path.display()
                ),
            ));
        }
        Err(_) => {
            // The ledger's folder is the daemon's own (0700): only the
            // snapshot is for technicians.
            return Err(Failure(
                EXIT_NO_SNAPSHOT,
                format!(
                    "{down}; {no_snapshot} (the daemon writes it while it runs and as it stops; none since boot?); the ledger itself is readable by root only"
                ),
            ));
        }
    }
    let now = Timestamp::now();
    let ledger = read_only_status(path, now).map_err(|e| Failure(1, e.to_string()))?;
    let certificate = cert_status(&config.provisioning.certificate, now);
    let provisioning_detail = if config.identity.software_key.is_none() {
        cart_app::provision::read_only_status(path, now).ok()
    } else {
        None
    };
    Ok(CartStatus {
        provisioning_detail: provisioning_detail.clone(),
        cart_id: config.cart_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        source: "ledger (daemon down)".into(),
        uptime_secs: None,
        provisioning: match (&provisioning_detail, &certificate) {
            (Some(d), _) if d.provisioned => "provisioned".into(),
            (Some(d), _) => format!("not provisioned (step: {:?})", d.step),
            (None, Some(_)) => "provisioned (software identity)".into(),
            (None, None) => "not provisioned (no certificate)".into(),
        },
        certificate,
        link: None,
        devices: Vec::new(),
        ledger,
        delivery: None,
        slots: None,
    })
}

/// The snapshot's status, its source saying it is one and how old.
fn from_snapshot(snap: Snapshot) -> CartStatus {
    let age = ago(Timestamp::now(), Some(snap.written_at));
    let mut status = snap.status;
    status.source = if snap.daemon_running {
        // Written while running, never updated since: the daemon was killed.
        format!("snapshot written {age}; daemon not running (it did not stop cleanly)")
    } else {
        format!("snapshot written {age} as the daemon stopped; daemon not running")
    };
    status.uptime_secs = None;
    status
}

fn status(config: &Config, socket: &Path, json: bool) -> Result<(), Failure> {
    let st = fetch_status(config, socket)?;
    if json {
        let s = serde_json::to_string_pretty(&st).map_err(|e| Failure(1, e.to_string()))?;
        out(&format!("{s}\n"));
    } else {
        let mut text = human(
            &st,
            &config.ledger.path.display().to_string(),
            config.provisioning.expiry_warn_days as i64,
        );
        text.push_str(&format!(
            "{:<16}{}\n",
            "recovery",
            cart_app::recovery::status_line(
                &st.ledger.recovery_keys,
                config.tpm.recovery_public_key.is_some()
            )
        ));
        out(&text);
    }
    Ok(())
}

fn recovery_export(config: &Config, out_file: &Path) -> Result<(), Failure> {
    let path = &config.ledger.path;
    if !path.exists() {
        return Err(Failure(
            EXIT_NO_LEDGER,
            format!("no ledger at {}", path.display()),
        ));
    }
    let (_, summary) =
        cart_app::recovery::export(path, &config.cart_id, out_file, Timestamp::now())
            .map_err(|e| Failure(1, e.to_string()))?;
    out(&format!("{}\n", summary.describe(out_file)));
    Ok(())
}

fn release(socket: &Path, payment: String) -> Result<(), Failure> {
    control::call(
        socket,
        &Request::Release {
            payment: payment.clone(),
        },
        Duration::from_secs(10),
        &mut |_| {},
    )?;
    out(&format!("payment {payment} queued again\n"));
    Ok(())
}

fn sync(socket: &Path, timeout: u64) -> Result<(), Failure> {
    let mut done = None;
    control::call(
        socket,
        &Request::Sync {
            timeout_secs: timeout,
        },
        Duration::from_secs(timeout + 10),
        &mut |r| match r {
            Reply::Progress { pending } => {
                let parts: Vec<String> = pending.iter().map(|(c, n)| format!("{n} {c}")).collect();
                out(&format!("waiting: {}\n", parts.join(", ")));
            }
            Reply::SyncDone { drained, pending } => done = Some((drained, pending)),
            _ => {}
        },
    )?;
    match done {
        Some((true, _)) => {
            out("synced: nothing waits\n");
            Ok(())
        }
        Some((false, pending)) => Err(Failure(
            1,
            format!(
                "{pending} records still waiting after {timeout} s (is the link up? see `cartctl status`)"
            ),
        )),
        None => Err(Failure(
            1,
            "the daemon ended the sync without a result".into(),
        )),
    }
}

fn diag(config: &Config, socket: &Path, path: Option<PathBuf>) -> Result<(), Failure> {
    let mut daemon = None;
    let reached = control::call(socket, &Request::Diag, Duration::from_secs(20), &mut |r| {
        if let Reply::Diag(v) = r {
            daemon = Some(*v);
        }
    });
    let daemon = match reached {
        Ok(()) => daemon.unwrap_or(serde_json::Value::Null),
        Err(ControlError::Unreachable { .. }) => serde_json::json!({
            "unreachable": true,
            "status": fetch_status(config, socket).ok(),
            "config": redact(serde_json::to_value(config).unwrap_or_default()),
        }),
        Err(e) => return Err(e.into()),
    };
    let journal = std::process::Command::new("journalctl")
        .args([
            "-u",
            "cart-app",
            "-n",
            "500",
            "--no-pager",
            "-o",
            "short-iso",
        ])
        .output();
    let journal = match journal {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!(
            "journalctl failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("journalctl not available: {e}"),
    };
    let bundle = cart_app::diag::compose(&config.cart_id, "cartctl", daemon, &journal, None)
        .map_err(|e| Failure(1, e.to_string()))?;
    let path = path.unwrap_or_else(|| {
        PathBuf::from(format!(
            "cart-diag-{}-{}.json",
            config.cart_id,
            Timestamp::now().0 / 1000
        ))
    });
    write_private(&path, &bundle.bytes)
        .map_err(|e| Failure(1, format!("{}: {e}", path.display())))?;
    out(&format!("diagnostics written to {}\n", path.display()));
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Writes to stdout; a closed pipe (`cartctl status | head`) is not an error.
fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}
