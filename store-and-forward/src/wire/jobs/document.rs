//! The job documents the cart understands: JSON objects tagged by
//! `operation` (schema in docs/wire-format.md, "Jobs"). An operation this
//! build does not know parses as [`JobDocument::Unknown`] so the cart can
//! answer REJECTED with a reason; a known operation with bad fields is a
//! [`JobDocumentError`], also answered REJECTED with its text.

use serde::{Deserialize, Serialize};

/// The longest diagnostic upload the cart accepts (64 MiB).
pub const MAX_DIAGNOSTIC_BYTES: u64 = 64 * 1024 * 1024;
/// The longest raised log level (one day).
pub const MAX_LOG_LEVEL_MINUTES: u32 = 24 * 60;

/// A job document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum JobDocument {
    /// Stop selling (the screen says out of service); payments already
    /// taken keep forwarding.
    OutOfService {
        /// Shown to staff, not to shoppers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Sell again.
    ReturnToService {},
    /// Ask the backend for the whole catalog again.
    CatalogResync {},
    /// Upload a diagnostic bundle (journal, ledger counters; never card
    /// data) with an HTTPS PUT to a pre-signed URL.
    DiagnosticUpload {
        /// The pre-signed URL (https only).
        url: String,
        /// The most the cart may send.
        max_bytes: u64,
    },
    /// Rotate the device certificate now.
    RotateCertificate {},
    /// Raise (or lower) the log level for a while.
    LogLevel {
        /// The level.
        level: LogLevel,
        /// For how long, 1 to [`MAX_LOG_LEVEL_MINUTES`].
        minutes: u32,
    },
    /// Reboot.
    Reboot {
        /// When.
        when: RebootWhen,
    },
    /// Install a firmware bundle (RAUC) and reboot into it.
    Update(Update),
    /// An operation this build does not know (never serialized).
    #[serde(skip)]
    Unknown {
        /// Its `operation`.
        operation: String,
    },
}

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// error
    Error,
    /// warn
    Warn,
    /// info
    Info,
    /// debug
    Debug,
    /// trace
    Trace,
}

/// When to reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebootWhen {
    /// When no shopping session or checkout is under way.
    Quiet,
}

/// A firmware update: a signed RAUC bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The version the bundle installs.
    pub version: String,
    /// Where to fetch it (https only).
    pub bundle_url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// RAUC's `compatible` string the bundle must carry.
    pub compatible: String,
    /// Whether an older version may be installed.
    #[serde(default)]
    pub allow_downgrade: bool,
}

/// A job document the cart cannot act on. Its text is the reason in the
/// REJECTED update's `statusDetails`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobDocumentError {
    /// Absent, not an object, or no string `operation`.
    #[error("job document has no operation")]
    NoOperation,
    /// A known operation whose fields do not fit its schema.
    #[error("{operation}: {reason}")]
    Invalid {
        /// The operation.
        operation: String,
        /// What is wrong.
        reason: String,
    },
}

const KNOWN: [&str; 8] = [
    "out_of_service",
    "return_to_service",
    "catalog_resync",
    "diagnostic_upload",
    "rotate_certificate",
    "log_level",
    "reboot",
    "update",
];

fn https(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(u) => Err(format!("url scheme {} is not https", u.scheme())),
        Err(e) => Err(format!("url: {e}")),
    }
}

impl JobDocument {
    /// Reads a job document (an execution's `jobDocument`).
    pub fn parse(doc: Option<&serde_json::Value>) -> Result<JobDocument, JobDocumentError> {
        let operation = doc
            .and_then(|d| d.get("operation"))
            .and_then(|o| o.as_str())
            .ok_or(JobDocumentError::NoOperation)?;
        let invalid = |reason: String| JobDocumentError::Invalid {
            operation: operation.to_owned(),
            reason,
        };
        if !KNOWN.contains(&operation) {
            return Ok(JobDocument::Unknown {
                operation: operation.to_owned(),
            });
        }
        let doc = doc.cloned().unwrap_or_default();
        let parsed: JobDocument =
            serde_json::from_value(doc).map_err(|e| invalid(e.to_string()))?;
        parsed.check().map_err(invalid)?;
        Ok(parsed)
    }

    /// The operation's name.
    pub fn operation(&self) -> &str {
        match self {
            JobDocument::OutOfService { .. } => "out_of_service",
            JobDocument::ReturnToService {} => "return_to_service",
            JobDocument::CatalogResync {} => "catalog_resync",
            JobDocument::DiagnosticUpload { .. } => "diagnostic_upload",
            JobDocument::RotateCertificate {} => "rotate_certificate",
            JobDocument::LogLevel { .. } => "log_level",
            JobDocument::Reboot { .. } => "reboot",
            JobDocument::Update(_) => "update",
            JobDocument::Unknown { operation } => operation,
        }
    }

    /// The document as JSON (an unknown one as `{"operation": ...}`).
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            JobDocument::Unknown { operation } => serde_json::json!({ "operation": operation }),
            known => serde_json::to_value(known).unwrap_or_default(),
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            JobDocument::DiagnosticUpload { url, max_bytes } => {
                https(url)?;
                if *max_bytes == 0 || *max_bytes > MAX_DIAGNOSTIC_BYTES {
                    return Err(format!(
                        "max_bytes {max_bytes} is not within 1..={MAX_DIAGNOSTIC_BYTES}"
                    ));
                }
            }
            JobDocument::LogLevel { minutes, .. }
                if *minutes == 0 || *minutes > MAX_LOG_LEVEL_MINUTES =>
            {
                return Err(format!(
                    "minutes {minutes} is not within 1..={MAX_LOG_LEVEL_MINUTES}"
                ));
            }
            JobDocument::Update(u) => {
                https(&u.bundle_url)?;
                let hex = u.sha256.len() == 64
                    && u.sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex {
                    return Err("sha256 is not 64 lowercase hex digits".into());
                }
                if u.size == 0 || u.version.is_empty() || u.compatible.is_empty() {
                    return Err("version, compatible and size are required".into());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
