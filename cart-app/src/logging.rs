//! Where the daemon's log goes: under systemd (`JOURNAL_STREAM` set and the
//! journal's socket reachable), to the journal with structured fields a
//! technician filters on; elsewhere, readable text on stderr.
//!
//! Journal fields (no prefix, upper case, as `journalctl` expects):
//! `CART_ID` on every entry; `PAYMENT_KEY` on payment entries; `DEVICE`
//! (`scanner`, `reader`, `tpm`, `link`) on device entries; `JOB_ID` on a
//! remote job's entries. For example
//! `journalctl -u cart-app PAYMENT_KEY=0190...` follows one payment.
//! The log level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The field names the daemon logs with, shared so tests and docs agree.
pub mod fields {
    /// A payment's idempotency key.
    pub const PAYMENT_KEY: &str = "payment_key";
    /// The device an entry is about.
    pub const DEVICE: &str = "device";
    /// A remote job's id.
    pub const JOB_ID: &str = "job_id";
}

/// Where logging went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The systemd journal.
    Journal,
    /// Text on stderr.
    Text,
}

fn filter() -> EnvFilter {
    filter_or("info")
}

type Reload = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// The daemon's filter, changeable at run time ([`raise`]).
static RELOAD: std::sync::OnceLock<Reload> = std::sync::OnceLock::new();
/// Raises in force: a later one replaces an earlier one's restore.
static RAISES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the daemon's log level to `level` (`error` .. `trace`) for `for_`,
/// then back to what the environment (or the default) says: a remote job
/// for a technician chasing a fault. Needs the journal logging of
/// [`init_daemon`].
pub fn raise(level: &str, for_: std::time::Duration) -> Result<(), String> {
    let handle = RELOAD
        .get()
        .ok_or_else(|| "logging is not the daemon's (no journal)".to_owned())?;
    let wanted = EnvFilter::try_new(level).map_err(|e| format!("log level {level:?}: {e}"))?;
    handle
        .reload(wanted)
        .map_err(|e| format!("log level not changed: {e}"))?;
    let me = RAISES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let handle = handle.clone();
    std::thread::Builder::new()
        .name("log-level".into())
        .spawn(move || {
            std::thread::sleep(for_);
            if RAISES.load(std::sync::atomic::Ordering::SeqCst) == me {
                let _ = handle.reload(filter());
                tracing::warn!("log level back to its configured value");
            }
        })
        .map_err(|e| format!("timer thread: {e}"))?;
    Ok(())
}

fn filter_or(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Starts logging for the daemon of cart `cart_id`. Call once.
pub fn init_daemon(cart_id: &str) -> LogTarget {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("cart-app".into())
                    .with_custom_fields([("CART_ID", cart_id.as_bytes())]);
                let (filter, handle) = tracing_subscriber::reload::Layer::new(filter());
                if tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    let _ = RELOAD.set(handle);
                    return LogTarget::Journal;
                }
            }
            Err(e) => eprintln!("cart-app: journal unreachable ({e}), logging to stderr"),
        }
    }
    init_text();
    LogTarget::Text
}

/// Text logging on stderr (tools, tests, a developer's terminal).
pub fn init_text() {
    init_text_at("info");
}

/// Text logging on stderr at `default` unless `RUST_LOG` says otherwise
/// (the demo keeps its transcript readable with `warn`).
pub fn init_text_at(default: &str) {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter_or(default))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    /// Every crate logs a payment's key as `payment_key` (the journal's
    /// `PAYMENT_KEY`): a `payment = ...` field would hide entries from
    /// `journalctl PAYMENT_KEY=...`.
    #[test]
    fn no_crate_logs_the_payment_key_under_another_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut bad = Vec::new();
        let mut dirs = vec![
            root.join("cart-app/src"),
            root.join("store-and-forward/src"),
        ];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        let l = line.replace(' ', "");
                        if (l.contains("payment=%") || l.contains("payment=?"))
                            && (l.contains("info!(")
                                || l.contains("warn!(")
                                || l.contains("error!(")
                                || l.contains("debug!("))
                        {
                            bad.push(format!("{}:{}", p.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(
            bad.is_empty(),
            "log `payment_key = ...`, not `payment = ...`: {bad:?}"
        );
    }
}
