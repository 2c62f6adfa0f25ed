//! AWS IoT Jobs, the backend side of the device MQTT API
//! (`store_and_forward::wire::jobs`), with AWS's rules:
//!
//! - A job targets one cart or a group (a list of things). Its executions
//!   are created at once, or at most `maximumPerMinute` per minute
//!   (`jobExecutionsRolloutConfig`).
//! - An execution goes QUEUED, IN_PROGRESS, then a terminal status. A cart
//!   runs one at a time: the others stay QUEUED behind it (start-next and
//!   `$next` give the oldest IN_PROGRESS, else the oldest QUEUED; moving a
//!   second one to IN_PROGRESS is an `InvalidStateTransition`, a rule of
//!   ours stricter than AWS).
//! - Every change bumps `versionNumber`; an update with another
//!   `expectedVersion` is a `VersionMismatch` carrying `executionState`; a
//!   terminal execution cannot change (`InvalidStateTransition`); Describe
//!   of a terminal one is `TerminalStateReached`; an unknown one
//!   `ResourceNotFound`; a bad field `InvalidRequest`; bad JSON
//!   `InvalidJson`. Answers go to `.../accepted` or `.../rejected` with
//!   the request's `clientToken`.
//! - notify-next is published when a thing's next execution changes (not
//!   when its details do), without `execution` when none is left; notify
//!   (the pending list) when one of the thing's executions is queued or
//!   changes status (not on progress updates: every message is billed).
//! - The step timer (`stepTimeoutInMinutes` of start-next or an update,
//!   1 to 10080) and the job's `timeoutConfig.inProgressTimeoutInMinutes`
//!   run from IN_PROGRESS; either expiring makes the execution TIMED_OUT.
//! - CancelJob: QUEUED executions and targets not rolled out yet are
//!   CANCELED; IN_PROGRESS ones only with `force`, otherwise the device may
//!   still finish them.
//! - `abortConfig`: after an execution finishes, when at least
//!   `minNumberOfExecutedThings` have finished (SUCCEEDED, FAILED,
//!   REJECTED, TIMED_OUT) and the share of `failureType` among them
//!   reaches `thresholdPercentage`, the job is canceled (without force).
//!
//! Time comes from a [`Clock`]: tests use a [`ManualClock`] and
//! [`JobsService::tick`]; the emulator ticks every second by default.
//!
//! - `jobs/config.rs`: the job as created (CreateJob's field names), the clock.
//! - `jobs/state.rs`: the sans-IO state machine ([`Jobs`]): jobs,
//!   executions, rollout, timers, cancel, abort, notifications.
//! - `jobs/device.rs`: the device MQTT API on that state (`Jobs::handle`).

mod config;
mod device;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use store_and_forward::uplink::{Incoming, LinkError, LinkHandle, PublishProps, QoS};

pub use config::{
    AbortAction, AbortConfig, AbortCriteria, Clock, FailureType, JobAdminError, JobConfig,
    JobStatus, ManualClock, RolloutConfig, SystemClock, TimeoutConfig,
};
pub use state::{ExecutionView, Jobs, Outgoing};

/// How the emulator runs Jobs.
#[derive(Clone)]
pub struct JobsConfig {
    /// The clock the rules read.
    pub clock: Arc<dyn Clock>,
    /// How often timers and the rollout are applied on their own (`None`:
    /// only on requests and [`JobsService::tick`]).
    pub tick_every: Option<Duration>,
}

impl Default for JobsConfig {
    fn default() -> JobsConfig {
        JobsConfig {
            clock: Arc::new(SystemClock),
            tick_every: Some(Duration::from_secs(1)),
        }
    }
}

impl std::fmt::Debug for JobsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsConfig")
            .field("tick_every", &self.tick_every)
            .finish_non_exhaustive()
    }
}

/// An operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsServiceError {
    /// Refused by the rules; nothing changed.
    #[error(transparent)]
    Admin(#[from] JobAdminError),
    /// A message could not be published (the state changed; the device
    /// learns it on its next request).
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// The Jobs service on the emulator's link.
pub struct JobsService {
    state: Mutex<Jobs>,
    link: LinkHandle,
}

impl std::fmt::Debug for JobsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsService").finish_non_exhaustive()
    }
}

impl JobsService {
    pub(crate) fn new(config: &JobsConfig, link: LinkHandle) -> JobsService {
        JobsService {
            state: Mutex::new(Jobs::new(config.clock.clone())),
            link,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&Jobs) -> T) -> T {
        f(&self.lock())
    }

    /// CreateJob.
    pub async fn create_job(&self, config: JobConfig) -> Result<(), JobsServiceError> {
        let out = self.lock().create_job(config)?;
        Ok(self.publish(out).await?)
    }

    /// CancelJob.
    pub async fn cancel_job(&self, job_id: &str, force: bool) -> Result<(), JobsServiceError> {
        let out = self.lock().cancel_job(job_id, force)?;
        Ok(self.publish(out).await?)
    }

    /// Applies timers and the rollout now.
    pub async fn tick(&self) -> Result<(), LinkError> {
        let out = self.lock().tick();
        self.publish(out).await
    }

    /// Answers a Jobs request; false when the topic is not one.
    pub(crate) async fn handle(&self, msg: &Incoming) -> bool {
        let Some(out) = self.lock().handle(&msg.topic, &msg.payload) else {
            return false;
        };
        if let Err(e) = self.publish(out).await {
            tracing::warn!(cause = %e, topic = %msg.topic, "jobs answer not published");
        }
        true
    }

    async fn publish(&self, out: Vec<Outgoing>) -> Result<(), LinkError> {
        for o in out {
            self.link
                .publish(
                    &o.topic,
                    Bytes::from(o.payload),
                    QoS::AtLeastOnce,
                    PublishProps::default(),
                )
                .await?;
        }
        Ok(())
    }
}
