//! The monotonic counter that binds the ledger: a restored older copy of the
//! database must not reset the offline exposure.
//!
//! On the cart the counter is a TPM NV counter (implemented in `cart-app`);
//! [`FileCounter`] serves tests and development.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A counter failure. The ledger answers any of these by turning offline
/// approval off with the reason surfaced; it never guesses a value.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The counter's backing store could not be read or written.
    #[error("monotonic counter I/O at {path}: {source}")]
    Io {
        /// The file or device.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The counter holds something that is not a counter value.
    #[error("monotonic counter at {path} is corrupt: {detail}")]
    Corrupt {
        /// The file or device.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The device (TPM) refused or failed.
    #[error("monotonic counter device: {0}")]
    Device(String),
}

/// A counter that only goes up, and survives power loss.
///
/// It need not start at zero (a TPM NV counter does not): the ledger records
/// the value it finds when it binds.
pub trait MonotonicCounter: Send {
    /// The current value.
    fn read(&mut self) -> Result<u64, CounterError>;
    /// Adds one, durably, and returns the new value.
    fn increment(&mut self) -> Result<u64, CounterError>;

    /// Starts adding one and returns at once when the counter works on its
    /// own (a TPM on its owner thread): the checkout shows its decision
    /// while the counter moves. The default increments before returning.
    fn start_increment(&mut self) -> PendingIncrement {
        PendingIncrement::ready(self.increment())
    }
}

/// An increment started by [`MonotonicCounter::start_increment`]: its new
/// value, or its failure, once the counter has answered.
pub struct PendingIncrement(Box<dyn FnOnce() -> Result<u64, CounterError> + Send>);

impl PendingIncrement {
    /// An increment already done.
    pub fn ready(result: Result<u64, CounterError>) -> Self {
        PendingIncrement(Box::new(move || result))
    }

    /// An increment whose answer `wait` gives (blocking at most as long as
    /// the counter's own timeout).
    pub fn waiting(wait: impl FnOnce() -> Result<u64, CounterError> + Send + 'static) -> Self {
        PendingIncrement(Box::new(wait))
    }

    /// The new value, waiting for the counter if it has not answered yet.
    pub fn wait(self) -> Result<u64, CounterError> {
        (self.0)()
    }
}

impl std::fmt::Debug for PendingIncrement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingIncrement")
    }
}

/// A file-backed counter for tests and development. Not tamper-resistant:
/// anyone who can write the file can roll it back.
#[derive(Debug)]
pub struct FileCounter {
    path: PathBuf,
}

impl FileCounter {
    /// Opens the counter at `path`, creating it with `initial` when missing
    /// (pass a random value to mimic a TPM counter, which never starts at 0).
    pub fn open(path: impl AsRef<Path>, initial: u64) -> Result<Self, CounterError> {
        let path = path.as_ref().to_path_buf();
        let c = FileCounter { path };
        if !c.path.exists() {
            c.write(initial)?;
        }
        Ok(c)
    }

    fn io(&self, source: std::io::Error) -> CounterError {
        CounterError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn write(&self, value: u64) -> Result<(), CounterError> {
        let tmp = self.path.with_extension("tmp");
        let mut f = fs::File::create(&tmp).map_err(|e| self.io(e))?;
        f.write_all(value.to_string().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| self.io(e))?;
        fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

impl MonotonicCounter for FileCounter {
    fn read(&mut self) -> Result<u64, CounterError> {
        let s = fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        s.trim().parse().map_err(|_| CounterError::Corrupt {
            path: self.path.display().to_string(),
            detail: format!("not a number: {:?}", s.chars().take(32).collect::<String>()),
        })
    }

    fn increment(&mut self) -> Result<u64, CounterError> {
        let v = self
            .read()?
            .checked_add(1)
            .ok_or_else(|| CounterError::Corrupt {
                path: self.path.display().to_string(),
                detail: "counter at its maximum".into(),
            })?;
        self.write(v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_initial_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("counter");
        let mut c = FileCounter::open(&p, 41).unwrap();
        assert_eq!(c.read().unwrap(), 41);
        assert_eq!(c.increment().unwrap(), 42);
        let mut c = FileCounter::open(&p, 0).unwrap();
        assert_eq!(c.read().unwrap(), 42);
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("counter");
        fs::write(&p, "garbage").unwrap();
        let mut c = FileCounter::open(&p, 0).unwrap();
        assert!(matches!(c.read(), Err(CounterError::Corrupt { .. })));
    }
}
