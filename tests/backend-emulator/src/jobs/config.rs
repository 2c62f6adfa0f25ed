//! A job as an operator creates it (AWS CreateJob's field names, so a job
//! can be written as AWS's JSON), and the clock the rules run on.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where the rules read the time: the system clock in the emulator, a
/// [`ManualClock`] in tests so a step timeout or a rollout minute passes
/// without waiting.
pub trait Clock: Send + Sync {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct ManualClock(Mutex<i64>);

impl ManualClock {
    /// Starts at `ms` since the epoch.
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(Mutex::new(ms))
    }

    /// Moves forward.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by.as_millis() as i64;
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new job: CreateJob's fields the emulator implements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConfig {
    /// `[a-zA-Z0-9_-]{1,64}`, unique.
    pub job_id: String,
    /// The things (cart ids): one cart, or a group as its list.
    pub targets: Vec<String>,
    /// The job document (`wire::jobs::JobDocument` for the cart's own).
    pub document: serde_json::Value,
    /// How fast executions are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_executions_rollout_config: Option<RolloutConfig>,
    /// When the job cancels itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_config: Option<AbortConfig>,
    /// The in-progress timer of every execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_config: Option<TimeoutConfig>,
}

impl JobConfig {
    /// A job for `targets` with no rollout limit, abort or timeout.
    pub fn new(job_id: &str, targets: &[&str], document: serde_json::Value) -> JobConfig {
        JobConfig {
            job_id: job_id.to_owned(),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            document,
            job_executions_rollout_config: None,
            abort_config: None,
            timeout_config: None,
        }
    }
}

/// `jobExecutionsRolloutConfig` (constant rate only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutConfig {
    /// Executions created per minute at most (AWS: 1 to 1000).
    pub maximum_per_minute: u32,
}

/// `abortConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortConfig {
    /// Any criterion met aborts the job.
    pub criteria_list: Vec<AbortCriteria>,
}

/// One abort criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortCriteria {
    /// Which terminal statuses count as failures.
    pub failure_type: FailureType,
    /// What to do (AWS: CANCEL only).
    pub action: AbortAction,
    /// The failure share, in percent, that aborts (met when reached).
    pub threshold_percentage: f64,
    /// Executions that must have finished before the share is judged.
    pub min_number_of_executed_things: u32,
}

/// `failureType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    /// FAILED.
    Failed,
    /// REJECTED.
    Rejected,
    /// TIMED_OUT.
    TimedOut,
    /// Any of the three.
    All,
}

/// `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortAction {
    /// Cancel the job.
    Cancel,
}

/// `timeoutConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutConfig {
    /// Minutes an execution may stay IN_PROGRESS (1 to 10080).
    pub in_progress_timeout_in_minutes: i64,
}

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Executions are being created or run.
    InProgress,
    /// Canceled by an operator or by its abort criteria.
    Canceled,
    /// Every execution reached a terminal status.
    Completed,
}

/// A job could not be created or canceled. The operator (a test, the
/// CLI) gets it back; nothing is published.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobAdminError {
    /// The id is taken.
    #[error("job {0} exists")]
    Exists(String),
    /// No such job.
    #[error("no job {0}")]
    NoSuchJob(String),
    /// A field is out of AWS's bounds (which, and why).
    #[error("invalid job: {0}")]
    Invalid(String),
    /// The job is completed.
    #[error("job {0} is completed and cannot be canceled")]
    Completed(String),
}

/// The minutes AWS accepts for step and in-progress timers.
pub const TIMEOUT_MINUTES: std::ops::RangeInclusive<i64> = 1..=10_080;

impl JobConfig {
    /// Checks the fields against AWS's bounds.
    pub fn check(&self) -> Result<(), JobAdminError> {
        let bad = |why: String| Err(JobAdminError::Invalid(why));
        if !store_and_forward::wire::jobs::valid_job_id(&self.job_id) {
            return bad(format!("jobId {:?}", self.job_id));
        }
        if self.targets.is_empty() {
            return bad("no targets".into());
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| !store_and_forward::wire::jobs::valid_thing_name(t))
        {
            return bad(format!("target {t:?}"));
        }
        if let Some(r) = self.job_executions_rollout_config
            && !(1..=1000).contains(&r.maximum_per_minute)
        {
            return bad("maximumPerMinute must be 1 to 1000".into());
        }
        if let Some(t) = self.timeout_config
            && !TIMEOUT_MINUTES.contains(&t.in_progress_timeout_in_minutes)
        {
            return bad("inProgressTimeoutInMinutes must be 1 to 10080".into());
        }
        for c in self.abort_config.iter().flat_map(|a| &a.criteria_list) {
            if !(0.0..=100.0).contains(&c.threshold_percentage)
                || c.min_number_of_executed_things < 1
            {
                return bad("thresholdPercentage 0 to 100, minNumberOfExecutedThings >= 1".into());
            }
        }
        Ok(())
    }
}

/// Milliseconds in `minutes`.
pub(crate) fn minutes_ms(minutes: i64) -> i64 {
    minutes * 60_000
}

/// A duration in whole seconds, for AWS's `approximateSecondsBeforeTimedOut`.
pub(crate) fn ms_to_secs(ms: i64) -> i64 {
    Duration::from_millis(ms.max(0) as u64).as_secs() as i64
}
