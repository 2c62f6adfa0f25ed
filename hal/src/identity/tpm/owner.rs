//! The one owner of the ESAPI context.
//!
//! tss-esapi's `Context` takes `&mut self` for every command and keeps
//! session and handle state that must not interleave, and a real TPM takes
//! tens of milliseconds per signature. So one dedicated thread owns the
//! context; everyone else sends it a job over a channel and waits for the
//! answer on a reply channel of its own. The thread ends when the last
//! [`super::Tpm`] handle is dropped, and that drop waits for it, so the
//! TPM connection is closed (transient objects flushed) when it returns.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::{Context, TctiNameConf};

use crate::identity::IdentityError;

/// The state the owner thread keeps next to the context.
pub(super) struct State {
    /// The ESAPI context (not shared: only this thread touches it).
    pub ctx: Context,
    /// The storage primary key, created on first need (transient: it is
    /// re-derived from the owner seed with the same template, so it is the
    /// same key every time).
    pub srk: Option<KeyHandle>,
    /// ESYS handles of persistent objects already opened, by TPM handle.
    pub opened: HashMap<u32, ObjectHandle>,
    /// The salted HMAC session (`session.rs`), started on first need.
    pub session: Option<AuthSession>,
    /// How many times the session was replaced after a failed command.
    pub session_restarts: u64,
}

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// The sending side of the owner thread's request channel.
#[derive(Debug)]
pub(super) struct Owner {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && t.thread().id() != thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl Owner {
    /// Opens the TCTI on a new thread and returns once the context exists.
    pub fn start(tcti: &str) -> Result<Owner, IdentityError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|source| IdentityError::Tcti {
            tcti: tcti.to_string(),
            source,
        })?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name("tpm-owner".into())
            .spawn(move || {
                let ctx = match Context::new(conf) {
                    Ok(ctx) => ctx,
                    Err(source) => {
                        let _ = ready_tx.send(Err(IdentityError::Tpm {
                            op: "open the TCTI",
                            source,
                        }));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut state = State {
                    ctx,
                    srk: None,
                    opened: HashMap::new(),
                    session: None,
                    session_restarts: 0,
                };
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
                if let Some(session) = state.session.take() {
                    let _ = state.ctx.flush_context(SessionHandle::from(session).into());
                }
                if let Some(srk) = state.srk.take() {
                    let _ = state.ctx.flush_context(srk.into());
                }
            })
            .map_err(IdentityError::OwnerStart)?;
        ready_rx.recv().map_err(|_| IdentityError::OwnerGone)??;
        Ok(Owner {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the owner thread and waits at most `timeout` for its
    /// result (the wait includes the jobs queued before it). A TPM that
    /// stops answering gives [`IdentityError::TpmTimeout`], not a caller
    /// blocked for ever; the job itself still runs when the TPM comes back,
    /// and its answer is dropped.
    pub fn call<T, F>(&self, timeout: Duration, op: &'static str, f: F) -> Result<T, IdentityError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T, IdentityError> + Send + 'static,
    {
        self.submit(timeout, op, f)?.wait()
    }

    /// Queues `f` on the owner thread and returns at once; the answer is
    /// waited for with [`Pending::wait`], within `timeout` of now.
    pub fn submit<T, F>(
        &self,
        timeout: Duration,
        op: &'static str,
        f: F,
    ) -> Result<Pending<T>, IdentityError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T, IdentityError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or(IdentityError::OwnerGone)?
            .send(Box::new(move |state| {
                let _ = reply.send(f(state));
            }))
            .map_err(|_| IdentityError::OwnerGone)?;
        Ok(Pending {
            answer,
            op,
            timeout,
            deadline: Instant::now() + timeout,
        })
    }
}

/// A job queued on the owner thread whose answer is still to come.
#[derive(Debug)]
pub struct Pending<T> {
    answer: mpsc::Receiver<Result<T, IdentityError>>,
    op: &'static str,
    timeout: Duration,
    deadline: Instant,
}

impl<T> Pending<T> {
    /// The job's answer, waited for until the deadline set when it was
    /// queued: past it, [`IdentityError::TpmTimeout`] (the job still runs
    /// when the TPM comes back, and its answer is dropped).
    pub fn wait(self) -> Result<T, IdentityError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.answer.recv_timeout(left) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(IdentityError::TpmTimeout {
                op: self.op,
                after_ms: self.timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(IdentityError::OwnerGone),
        }
    }
}
