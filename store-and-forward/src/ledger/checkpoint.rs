//! WAL checkpoints on a second connection, outside the ledger's lock.
//!
//! In WAL mode a PASSIVE checkpoint does not block the writer: it copies
//! committed frames into the database file and fsyncs it while the
//! ledger's own connection goes on committing to the WAL. Run on the
//! ledger's connection, the same checkpoint held the ledger's lock (and so
//! a waiting checkout) for its copying and its fsync. So the ledger opens a
//! second connection to the same file for checkpoints only:
//!
//! - the ledger's every-N-commits checkpoint is a request to this module's
//!   thread, which never makes the writer wait ([`Checkpointer::request`]);
//! - maintenance's checkpoint at the end of a run goes through a
//!   [`CheckpointHandle`], which the daemon calls without holding the
//!   ledger's lock. A TRUNCATE checkpoint still blocks writers while it
//!   runs (SQLite's rule): the daemon asks for one only while no payment
//!   is in progress.

use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tracing::warn;

use crate::error::LedgerError;

use super::maintenance::WalCheckpoint;

/// A handle on the checkpoint connection: runs a checkpoint now, on the
/// calling thread, without the ledger's lock. Cheap to clone.
#[derive(Clone)]
pub struct CheckpointHandle {
    /// The checkpoint connection. A rusqlite connection is used by one
    /// thread at a time: the Mutex keeps the ledger's background thread
    /// and a maintenance run from using it together.
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for CheckpointHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointHandle").finish_non_exhaustive()
    }
}

impl CheckpointHandle {
    /// Checkpoints the WAL: PASSIVE (never waits for the writer), or
    /// TRUNCATE (waits for the writer, blocks new writes while it runs,
    /// then empties the WAL file: call it when no payment is in progress).
    pub fn checkpoint(&self, truncate: bool) -> Result<WalCheckpoint, LedgerError> {
        let mode = if truncate { "TRUNCATE" } else { "PASSIVE" };
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let (busy, log, done): (i64, i64, i64) =
            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        Ok(WalCheckpoint {
            truncated: truncate && busy == 0,
            wal_frames: log,
            checkpointed_frames: done,
        })
    }
}

/// The ledger's checkpoint connection and the thread that runs the
/// requested PASSIVE checkpoints. Dropping it ends the thread.
pub(crate) struct Checkpointer {
    handle: CheckpointHandle,
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the second connection to the ledger at `path` (already open,
    /// in WAL mode) and starts the thread.
    pub(crate) fn open(path: &Path, journal_size_limit: u64) -> Result<Self, LedgerError> {
        let conn = super::open::open_read_write(path)?;
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             PRAGMA busy_timeout = 5000;",
        )?;
        super::open::set_journal_size_limit(&conn, journal_size_limit)?;
        let handle = CheckpointHandle {
            conn: Arc::new(Mutex::new(conn)),
        };
        // One request waiting is enough: a checkpoint copies everything
        // committed before it starts.
        let (wake, requests) = sync_channel::<()>(1);
        let background = handle.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    if let Err(e) = background.checkpoint(false) {
                        // The next request tries again; the WAL only grows
                        // meanwhile.
                        warn!(cause = %e, "ledger WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| LedgerError::Io {
                path: path.to_owned(),
                source: e,
            })?;
        Ok(Checkpointer {
            handle,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks the thread for a PASSIVE checkpoint; returns at once.
    pub(crate) fn request(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    warn!(
                        "ledger checkpoint thread is gone; the WAL is checkpointed by maintenance only"
                    )
                }
            }
        }
    }

    /// The handle for checkpoints run by the caller.
    pub(crate) fn handle(&self) -> &CheckpointHandle {
        &self.handle
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Ends the thread after the checkpoint it may be running.
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
