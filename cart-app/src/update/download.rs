//! The bundle's download: HTTPS GET into `<dir>/<sha256>.part`, resumed
//! with `Range: bytes=N-` after a dropped connection or a restart, at most
//! the document's `size` bytes, then checked against its SHA-256 and moved
//! to `<dir>/<sha256>.raucb`. Before each request the space still needed
//! must fit in what the file system has free beyond what the ledger keeps
//! (its payment reserve and what its telemetry quota may still take) and
//! the update's own reserve: a bundle never takes a payment's room.
//!
//! One bundle at a time: other files in the folder are removed first.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Refusal;

/// Why a download did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The bundle cannot be taken (space, size, checksum): not retried.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The server answered with an error status.
    #[error("HTTP {0}")]
    Http(u16),
    /// The transfer failed every attempt (the part is kept for a resume).
    #[error("download failed after {attempts} attempts: {last}")]
    Transport {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The folder or the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// The bundle's URL (https).
    pub url: &'a str,
    /// Its size, bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: &'a str,
}

/// Free bytes on the file system holding `dir` (for an unprivileged user).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Downloads `wanted` into `dir`, keeping `keep_bytes` free; `progress`
/// is told (bytes so far, size) about every MiB. Returns the verified
/// bundle's path.
pub fn download(
    agent: &ureq::Agent,
    wanted: &Wanted<'_>,
    dir: &Path,
    keep_bytes: u64,
    attempts: u32,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PathBuf, DownloadError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let part = dir.join(format!("{}.part", wanted.sha256));
    let done = dir.join(format!("{}.raucb", wanted.sha256));
    // One bundle at a time: anything else here is an older one.
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let p = entry.path();
        if p != part && p != done {
            let _ = std::fs::remove_file(&p);
        }
    }
    if done.exists() && verify(&done, wanted).is_ok() {
        return Ok(done);
    }
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        let have = std::fs::metadata(&part).map_or(0, |m| m.len());
        if have > wanted.size {
            std::fs::remove_file(&part).map_err(io(&part))?;
            continue;
        }
        if have < wanted.size {
            let available = free_bytes(dir).map_err(io(dir))?.saturating_sub(keep_bytes);
            let needed = wanted.size - have;
            if needed > available {
                return Err(Refusal::NoSpace { needed, available }.into());
            }
            match fetch(agent, wanted, &part, have, progress) {
                Ok(()) => {}
                Err(FetchError::Status(s)) if (400..500).contains(&s) && s != 416 && s != 408 => {
                    return Err(DownloadError::Http(s));
                }
                Err(FetchError::Status(416)) => {
                    // The server has no such range: start again.
                    std::fs::remove_file(&part).map_err(io(&part))?;
                    last = "HTTP 416".into();
                    continue;
                }
                Err(FetchError::TooLong) => {
                    std::fs::remove_file(&part).map_err(io(&part))?;
                    return Err(Refusal::Integrity(format!(
                        "the server sent more than the job's size {}",
                        wanted.size
                    ))
                    .into());
                }
                Err(e) => {
                    last = e.to_string();
                    tracing::warn!(attempt, cause = %last, "bundle download interrupted: resumes");
                    std::thread::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)));
                    continue;
                }
            }
        }
        if std::fs::metadata(&part).map_or(0, |m| m.len()) < wanted.size {
            last = "the server closed before the end".into();
            continue;
        }
        return match verify(&part, wanted) {
            Ok(()) => {
                std::fs::rename(&part, &done).map_err(io(&done))?;
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(dir))?;
                Ok(done)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e.into())
            }
        };
    }
    Err(DownloadError::Transport {
        attempts: attempts.max(1),
        last,
    })
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("the server sent more than the size")]
    TooLong,
    #[error("the server answered a range from {got}, not {asked}")]
    WrongRange { asked: u64, got: u64 },
    #[error("{0}")]
    Transport(String),
    #[error("write: {0}")]
    Io(#[from] std::io::Error),
}

fn fetch(
    agent: &ureq::Agent,
    wanted: &Wanted<'_>,
    part: &Path,
    have: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), FetchError> {
    let mut req = agent.get(wanted.url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let answer = req
        .call()
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    let status = answer.status().as_u16();
    let from = match status {
        200 => 0,
        206 => {
            let start = answer
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            if start != have {
                return Err(FetchError::WrongRange {
                    asked: have,
                    got: start,
                });
            }
            have
        }
        s => return Err(FetchError::Status(s)),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(from > 0)
        .write(true)
        .truncate(from == 0)
        .open(part)?;
    let mut body = answer.into_body().into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = from;
    let mut told = got;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.sync_data()?;
                return Err(FetchError::Transport(e.to_string()));
            }
        };
        if got + n as u64 > wanted.size {
            return Err(FetchError::TooLong);
        }
        file.write_all(&buf[..n])?;
        got += n as u64;
        if got - told >= 1024 * 1024 {
            told = got;
            progress(got, wanted.size);
        }
    }
    file.sync_data()?;
    progress(got, wanted.size);
    Ok(())
}

fn verify(path: &Path, wanted: &Wanted<'_>) -> Result<(), Refusal> {
    let mut f =
        File::open(path).map_err(|e| Refusal::Integrity(format!("{}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Refusal::Integrity(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    let sum = hex::encode(h.finalize());
    if len != wanted.size {
        return Err(Refusal::Integrity(format!(
            "{len} bytes, the job says {}",
            wanted.size
        )));
    }
    if sum != wanted.sha256 {
        return Err(Refusal::Integrity(format!(
            "sha256 {sum} is not the job's {}",
            wanted.sha256
        )));
    }
    Ok(())
}
