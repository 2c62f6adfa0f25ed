//! The diagnostic bundle: what `cartctl diag` writes to a file and a
//! `diagnostic_upload` job sends to a pre-signed HTTPS URL. One JSON
//! object: the cart id, who wrote it, the daemon's redacted view (status,
//! configuration without secrets, threads) and the daemon's journal. Never
//! card data (the ledger holds none in the clear, and the daemon's view
//! carries counters, not records).
//!
//! A bundle has a size cap (the job's `max_bytes`): the journal's oldest
//! lines go first until it fits, and the bundle says how many were left
//! out. A bundle that cannot fit even without its journal is an error.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use store_and_forward::Timestamp;

/// The most read from the journal socket (the unit sends at most 2,000
/// lines; this bounds a misbehaving server).
pub const MAX_JOURNAL_BYTES: u64 = 8 * 1024 * 1024;

/// A bundle ready to write or send.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The JSON bytes.
    pub bytes: Vec<u8>,
    /// Journal lines in it.
    pub journal_lines: usize,
    /// Journal lines left out to fit the cap (the oldest).
    pub journal_dropped: usize,
}

/// Why a bundle was not made or not sent.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// Even without its journal the bundle is larger than allowed.
    #[error("the bundle needs {needs} bytes without its journal; max_bytes is {max}")]
    TooLarge {
        /// Bytes without the journal.
        needs: u64,
        /// The cap.
        max: u64,
    },
    /// The trust store for HTTPS.
    #[error("https trust store {path}: {why}")]
    TrustStore {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The upload failed (connect, TLS, timeout, transport).
    #[error("upload: {0}")]
    Upload(String),
    /// The server answered with an error status.
    #[error("upload refused: HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
}

/// Assembles a bundle: `source` is who wrote it (`cartctl`, `job <id>`),
/// `daemon` the daemon's view, `journal` the journal's text (newest last).
pub fn compose(
    cart_id: &str,
    source: &str,
    daemon: Value,
    journal: &str,
    max_bytes: Option<u64>,
) -> Result<Bundle, DiagError> {
    let lines: Vec<&str> = journal.lines().collect();
    let make = |keep: usize| {
        let kept = &lines[lines.len() - keep..];
        let dropped = lines.len() - keep;
        serde_json::to_vec(&json!({
            "cart_id": cart_id,
            "written_by": source,
            "version": env!("CARGO_PKG_VERSION"),
            "written_at_ms": Timestamp::now().0,
            "daemon": daemon,
            "journal_dropped_lines": dropped,
            "journal": kept.join("\n"),
        }))
        .unwrap_or_default()
    };
    let Some(max) = max_bytes else {
        return Ok(Bundle {
            bytes: make(lines.len()),
            journal_lines: lines.len(),
            journal_dropped: 0,
        });
    };
    let bare = make(0);
    if bare.len() as u64 > max {
        return Err(DiagError::TooLarge {
            needs: bare.len() as u64,
            max,
        });
    }
    // The most lines that fit: the bundle's size grows with the lines
    // kept, so a binary search over how many of the newest to keep.
    let (mut lo, mut hi) = (0usize, lines.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if make(mid).len() as u64 <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(Bundle {
        bytes: make(lo),
        journal_lines: lo,
        journal_dropped: lines.len() - lo,
    })
}

/// Reads the daemon's journal from the `cart-journal.socket` unit: one
/// connection, the text until the server closes it.
pub fn journal_from_socket(path: &Path, timeout: Duration) -> std::io::Result<String> {
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut text = Vec::new();
    stream.take(MAX_JOURNAL_BYTES).read_to_end(&mut text)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// The journal for a bundle, or a line saying why there is none.
pub fn journal_or_reason(path: &Path) -> String {
    match journal_from_socket(path, Duration::from_secs(30)) {
        Ok(text) => text,
        Err(e) => format!("journal unavailable ({}): {e}", path.display()),
    }
}

/// The certificate authorities in a PEM file.
pub fn trust_store(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, DiagError> {
    let err = |why: String| DiagError::TrustStore {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(certs)
}

/// An HTTPS agent that trusts exactly `roots`, TLS by rustls with the ring
/// provider (as the uplink), no proxies, `timeout` for the whole request.
pub fn agent(roots: Vec<ureq::tls::Certificate<'static>>, timeout: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .https_only(true)
        .proxy(None)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// PUTs `body` to `url` (a pre-signed URL); blocking.
pub fn upload(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(), DiagError> {
    let answer = agent
        .put(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| DiagError::Upload(e.to_string()))?;
    let status = answer.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(DiagError::Refused { status });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(n: usize) -> String {
        (0..n)
            .map(|i| format!("2026-12-04T06:00:{i:02} cart-app[1]: line {i} \"quoted\""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_bundle_without_a_cap_keeps_every_line() {
        let b = compose("cart-1", "cartctl", json!({"a": 1}), &journal(50), None).unwrap();
        assert_eq!((b.journal_lines, b.journal_dropped), (50, 0));
        let v: Value = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(v["cart_id"], "cart-1");
        assert!(
            v["journal"]
                .as_str()
                .unwrap()
                .ends_with("line 49 \"quoted\"")
        );
    }

    #[test]
    fn a_cap_drops_the_oldest_lines_and_holds_exactly() {
        let full = compose("cart-1", "job j", json!({}), &journal(50), None).unwrap();
        for max in [400u64, 1_000, 2_500, full.bytes.len() as u64 - 1] {
            let b = compose("cart-1", "job j", json!({}), &journal(50), Some(max)).unwrap();
            assert!(b.bytes.len() as u64 <= max, "{} > {max}", b.bytes.len());
            assert_eq!(b.journal_lines + b.journal_dropped, 50);
            assert!(b.journal_dropped > 0);
            // One more line would not have fitted.
            let all = journal(50);
            let lines: Vec<&str> = all.lines().collect();
            let one_more = lines[lines.len() - b.journal_lines - 1..].join("\n");
            let more = compose("cart-1", "job j", json!({}), &one_more, None).unwrap();
            assert!(more.bytes.len() as u64 > max);
            let v: Value = serde_json::from_slice(&b.bytes).unwrap();
            assert_eq!(v["journal_dropped_lines"], b.journal_dropped);
            if b.journal_lines > 0 {
                assert!(
                    v["journal"]
                        .as_str()
                        .unwrap()
                        .ends_with("line 49 \"quoted\"")
                );
            }
        }
    }

    #[test]
    fn a_cap_below_the_bare_bundle_is_an_error() {
        let e = compose(
            "cart-1",
            "job j",
            json!({"big": "x".repeat(500)}),
            "",
            Some(100),
        )
        .unwrap_err();
        assert!(matches!(e, DiagError::TooLarge { max: 100, .. }), "{e}");
    }

    #[test]
    fn a_trust_store_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty.pem");
        std::fs::write(&f, "nothing here\n").unwrap();
        assert!(matches!(trust_store(&f), Err(DiagError::TrustStore { .. })));
        assert!(matches!(
            trust_store(&dir.path().join("missing.pem")),
            Err(DiagError::TrustStore { .. })
        ));
    }
}
