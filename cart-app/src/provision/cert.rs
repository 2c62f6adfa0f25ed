//! Certificates as the cart sees them: parsing the PEM AWS hands over,
//! matching it to the TPM key, its validity (expiry warnings, when to
//! rotate), and atomic file writes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use store_and_forward::Timestamp;

use super::ProvisionError;

/// What the cart needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The leaf, DER.
    pub der: Vec<u8>,
    /// SHA-256 of the DER, hex (AWS IoT's certificate id).
    pub id: String,
    /// The subject's CN.
    pub common_name: Option<String>,
    /// The subject public key, DER `SubjectPublicKeyInfo`.
    pub spki: Vec<u8>,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
}

/// Parses the first certificate of a PEM text.
pub fn parse_pem(pem: &str) -> Result<CertInfo, ProvisionError> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or(ProvisionError::BadCertificate("no certificate in the PEM"))?
        .map_err(|_| ProvisionError::BadCertificate("PEM unreadable"))?;
    parse_der(der.as_ref())
}

/// Parses a DER certificate.
pub fn parse_der(der: &[u8]) -> Result<CertInfo, ProvisionError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| ProvisionError::BadCertificate("not an X.509 certificate"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let validity = cert.validity();
    Ok(CertInfo {
        der: der.to_vec(),
        id: hex::encode(Sha256::digest(der)),
        common_name,
        spki: cert.public_key().raw.to_vec(),
        not_before: Timestamp(validity.not_before.timestamp() * 1000),
        not_after: Timestamp(validity.not_after.timestamp() * 1000),
    })
}

/// Reads and parses a PEM certificate file.
pub fn read_file(path: &Path) -> Result<(String, CertInfo), ProvisionError> {
    let pem = fs::read_to_string(path).map_err(|source| ProvisionError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let info = parse_pem(&pem)?;
    Ok((pem, info))
}

/// Whole days from `now` until `not_after` (negative once expired).
pub fn days_left(not_after: Timestamp, now: Timestamp) -> i64 {
    (not_after.0 - now.0).div_euclid(86_400_000)
}

/// The certificate's expiry, for the status page and the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// End of validity.
    pub not_after: Timestamp,
    /// Whole days left (negative: expired).
    pub days_left: i64,
}

/// The expiry at `now`; logged at ERROR once expired, at WARN when fewer
/// than `warn_days` are left (the journal shows it well ahead of time), at
/// INFO otherwise.
pub fn expiry(not_after: Timestamp, now: Timestamp, warn_days: u64) -> Expiry {
    let e = Expiry {
        not_after,
        days_left: days_left(not_after, now),
    };
    if e.days_left < 0 {
        tracing::error!(
            not_after_ms = not_after.0,
            days_left = e.days_left,
            "device certificate EXPIRED: the broker refuses it; rotate or provision again"
        );
    } else if e.days_left < warn_days as i64 {
        tracing::warn!(
            not_after_ms = not_after.0,
            days_left = e.days_left,
            "device certificate expires soon: rotation needed"
        );
    } else {
        tracing::info!(
            not_after_ms = not_after.0,
            days_left = e.days_left,
            "device certificate valid"
        );
    }
    e
}

/// Whether `fraction` of the validity `[not_before, not_after]` has passed.
pub fn rotation_due(
    not_before: Timestamp,
    not_after: Timestamp,
    now: Timestamp,
    fraction: f64,
) -> bool {
    let life = (not_after.0 - not_before.0).max(0) as f64;
    now.0 as f64 >= not_before.0 as f64 + life * fraction
}

/// Writes `bytes` to `path` atomically (a temporary file in the same
/// folder, fsynced, renamed over, the folder fsynced) with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProvisionError> {
    let err = |source| ProvisionError::File {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err)?;
        // The umask may have narrowed the mode: set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    sync_dir(dir).map_err(err)
}

/// Removes a file (absent is fine) and fsyncs its folder.
pub fn remove(path: &Path) -> Result<bool, ProvisionError> {
    match fs::remove_file(path) {
        Ok(()) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            sync_dir(dir).map_err(|source| ProvisionError::File {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ProvisionError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Renames `from` over `to` and fsyncs the folder.
pub fn rename(from: &Path, to: &Path) -> Result<(), ProvisionError> {
    let err = |source| ProvisionError::File {
        path: to.to_path_buf(),
        source,
    };
    fs::rename(from, to).map_err(err)?;
    sync_dir(to.parent().unwrap_or(Path::new("."))).map_err(err)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_due_at_the_fraction() {
        let nb = Timestamp(0);
        let na = Timestamp(1000);
        assert!(!rotation_due(nb, na, Timestamp(799), 0.8));
        assert!(rotation_due(nb, na, Timestamp(800), 0.8));
        assert_eq!(days_left(Timestamp(86_400_000 * 3), Timestamp(1)), 2);
        assert_eq!(days_left(Timestamp(0), Timestamp(1)), -1);
    }

    #[test]
    fn atomic_write_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(remove(&p).unwrap());
        assert!(!remove(&p).unwrap());
    }
}
