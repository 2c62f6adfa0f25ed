//! Where the daemon's log goes: under systemd (`JOURNAL_STREAM` set and the
//! journal's socket reachable), to the journal with structured fields a
//! technician filters on; elsewhere, readable text on stderr.
//!
//! Journal fields (no prefix, upper case, as `journalctl` expects):
//! `CART_ID` on every entry; `PAYMENT_KEY` on payment entries; `DEVICE`
//! (`scanner`, `reader`, `tpm`, `link`) on device entries. For example
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
                if tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
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
