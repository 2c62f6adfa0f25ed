//! The Jobs state machine, sans-IO: requests and operator actions in,
//! messages to publish out. Time comes from the [`Clock`]; nothing here
//! waits or touches a socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use store_and_forward::wire::jobs::{
    self, ErrorCode, ErrorResponse, ExecutionResponse, JobExecution, JobExecutionState,
    JobExecutionStatus, JobExecutionSummary, JobExecutionsChanged, StatusDetails, Topic,
};

use super::config::{
    Clock, FailureType, JobAdminError, JobConfig, JobStatus, TIMEOUT_MINUTES, ms_to_secs,
};
use crate::counts::JobCounts;

/// A message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// JSON payload.
    pub payload: Vec<u8>,
}

/// One execution as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionView {
    /// The thing.
    pub thing: String,
    /// The job.
    pub job_id: String,
    /// Status.
    pub status: JobExecutionStatus,
    /// The device's last details.
    pub status_details: StatusDetails,
    /// Version (+1 on every change).
    pub version_number: i64,
    /// Queued, started, last change (ms since the epoch).
    pub queued_at: i64,
    /// When it went IN_PROGRESS.
    pub started_at: Option<i64>,
    /// Last change.
    pub last_updated_at: i64,
    #[serde(skip)]
    pub(super) step_deadline: Option<i64>,
    #[serde(skip)]
    pub(super) in_progress_deadline: Option<i64>,
    #[serde(skip)]
    pub(super) seq: u64,
}

pub(super) struct Job {
    pub(super) config: JobConfig,
    status: JobStatus,
    /// Targets not rolled out yet, in order.
    waiting: Vec<String>,
    /// When executions were created (rollout window).
    released: Vec<i64>,
    aborted: bool,
}

/// The Jobs service's state.
pub struct Jobs {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) jobs: BTreeMap<String, Job>,
    pub(super) execs: BTreeMap<(String, String), ExecutionView>,
    /// The next execution each thing was last told about.
    told_next: HashMap<String, Option<String>>,
    seq: u64,
    pub(super) counts: JobCounts,
}

pub(super) type Reply = Result<Vec<u8>, ErrorResponse>;

pub(super) fn err(code: ErrorCode, message: impl Into<String>) -> ErrorResponse {
    ErrorResponse {
        code,
        message: message.into(),
        client_token: None,
        timestamp: 0,
        execution_state: None,
    }
}

pub(super) fn state_of(e: &ExecutionView) -> JobExecutionState {
    JobExecutionState {
        status: e.status,
        status_details: e.status_details.clone(),
        version_number: e.version_number,
    }
}

pub(super) fn secs(ms: i64) -> i64 {
    ms / 1000
}

pub(super) fn summary(e: &ExecutionView) -> JobExecutionSummary {
    JobExecutionSummary {
        job_id: e.job_id.clone(),
        queued_at: secs(e.queued_at),
        started_at: e.started_at.map(secs),
        last_updated_at: secs(e.last_updated_at),
        version_number: e.version_number,
        execution_number: Some(1),
    }
}

pub(super) fn step_minutes(m: Option<i64>) -> Result<Option<i64>, ErrorResponse> {
    match m {
        Some(m) if !TIMEOUT_MINUTES.contains(&m) => Err(err(
            ErrorCode::InvalidRequest,
            format!("stepTimeoutInMinutes {m} is not within 1 to 10080"),
        )),
        m => Ok(m),
    }
}

impl Jobs {
    /// An empty service on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Jobs {
        Jobs {
            clock,
            jobs: BTreeMap::new(),
            execs: BTreeMap::new(),
            told_next: HashMap::new(),
            seq: 0,
            counts: JobCounts::default(),
        }
    }

    /// What happened so far.
    pub fn counts(&self) -> JobCounts {
        self.counts.clone()
    }

    /// A job's status.
    pub fn job_status(&self, job_id: &str) -> Option<JobStatus> {
        self.jobs.get(job_id).map(|j| j.status)
    }

    /// Whether a job was canceled by its abort criteria.
    pub fn aborted(&self, job_id: &str) -> bool {
        self.jobs.get(job_id).is_some_and(|j| j.aborted)
    }

    /// One execution.
    pub fn execution(&self, thing: &str, job_id: &str) -> Option<ExecutionView> {
        self.execs
            .get(&(thing.to_owned(), job_id.to_owned()))
            .cloned()
    }

    /// Every execution of a job.
    pub fn executions(&self, job_id: &str) -> Vec<ExecutionView> {
        self.execs
            .values()
            .filter(|e| e.job_id == job_id)
            .cloned()
            .collect()
    }

    /// Creates a job; its executions are created now, or at the rollout
    /// rate by [`Jobs::tick`].
    pub fn create_job(&mut self, config: JobConfig) -> Result<Vec<Outgoing>, JobAdminError> {
        config.check()?;
        if self.jobs.contains_key(&config.job_id) {
            return Err(JobAdminError::Exists(config.job_id));
        }
        let mut waiting = Vec::new();
        for t in &config.targets {
            if !waiting.contains(t) {
                waiting.push(t.clone());
            }
        }
        self.counts.jobs_created += 1;
        let id = config.job_id.clone();
        self.jobs.insert(
            id,
            Job {
                config,
                status: JobStatus::InProgress,
                waiting,
                released: Vec::new(),
                aborted: false,
            },
        );
        Ok(self.tick())
    }

    /// CancelJob: QUEUED executions (and targets not rolled out yet) are
    /// CANCELED; IN_PROGRESS ones only with `force`, otherwise they run on
    /// and the device may still finish them (AWS's rule).
    pub fn cancel_job(
        &mut self,
        job_id: &str,
        force: bool,
    ) -> Result<Vec<Outgoing>, JobAdminError> {
        let job = self
            .jobs
            .get(job_id)
            .ok_or_else(|| JobAdminError::NoSuchJob(job_id.to_owned()))?;
        if job.status == JobStatus::Completed {
            return Err(JobAdminError::Completed(job_id.to_owned()));
        }
        let mut out = self.cancel(job_id, force);
        out.extend(self.tick());
        Ok(out)
    }

    fn cancel(&mut self, job_id: &str, force: bool) -> Vec<Outgoing> {
        let now = self.clock.now_ms();
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.status = JobStatus::Canceled;
            job.waiting.clear();
        }
        let mut touched = Vec::new();
        for e in self.execs.values_mut().filter(|e| e.job_id == job_id) {
            let cancel = match e.status {
                JobExecutionStatus::Queued => true,
                JobExecutionStatus::InProgress => force,
                _ => false,
            };
            if cancel {
                e.status = JobExecutionStatus::Canceled;
                e.version_number += 1;
                e.last_updated_at = now;
                self.counts.canceled += 1;
                touched.push(e.thing.clone());
            }
        }
        touched
            .iter()
            .flat_map(|t| self.notifications(t, true))
            .collect()
    }

    /// Applies what time did: rollout releases, timeouts (and the aborts
    /// they cause), job completion.
    pub fn tick(&mut self) -> Vec<Outgoing> {
        let now = self.clock.now_ms();
        let mut touched = Vec::new();
        // Rollout.
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in &ids {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            if job.status != JobStatus::InProgress {
                continue;
            }
            job.released.retain(|t| now - t < 60_000);
            let room = match job.config.job_executions_rollout_config {
                Some(r) => (r.maximum_per_minute as usize).saturating_sub(job.released.len()),
                None => usize::MAX,
            };
            let n = room.min(job.waiting.len());
            let things: Vec<String> = job.waiting.drain(..n).collect();
            job.released.extend(std::iter::repeat_n(now, n));
            for thing in things {
                self.seq += 1;
                self.counts.executions += 1;
                self.execs.insert(
                    (thing.clone(), id.clone()),
                    ExecutionView {
                        thing: thing.clone(),
                        job_id: id.clone(),
                        status: JobExecutionStatus::Queued,
                        status_details: StatusDetails::new(),
                        version_number: 1,
                        queued_at: now,
                        started_at: None,
                        last_updated_at: now,
                        step_deadline: None,
                        in_progress_deadline: None,
                        seq: self.seq,
                    },
                );
                touched.push(thing);
            }
        }
        // Timeouts.
        let expired: Vec<(String, String)> = self
            .execs
            .iter()
            .filter(|(_, e)| {
                e.status == JobExecutionStatus::InProgress
                    && [e.step_deadline, e.in_progress_deadline]
                        .iter()
                        .flatten()
                        .any(|d| *d <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in expired {
            if let Some(e) = self.execs.get_mut(&key) {
                e.status = JobExecutionStatus::TimedOut;
                e.version_number += 1;
                e.last_updated_at = now;
                self.counts.timed_out += 1;
            }
            touched.push(key.0.clone());
            out.extend(self.check_abort(&key.1));
        }
        for id in &ids {
            self.complete_if_done(id);
        }
        touched.sort();
        touched.dedup();
        for t in touched {
            out.extend(self.notifications(&t, true));
        }
        out
    }

    pub(super) fn complete_if_done(&mut self, job_id: &str) {
        let done = self
            .jobs
            .get(job_id)
            .is_some_and(|j| j.status == JobStatus::InProgress && j.waiting.is_empty())
            && self
                .execs
                .values()
                .filter(|e| e.job_id == job_id)
                .all(|e| e.status.is_terminal());
        if done && let Some(j) = self.jobs.get_mut(job_id) {
            j.status = JobStatus::Completed;
        }
    }

    /// Aborts `job_id` when a criterion is met: executed = executions that
    /// finished (SUCCEEDED, FAILED, REJECTED, TIMED_OUT); the job is then
    /// canceled as CancelJob without force.
    pub(super) fn check_abort(&mut self, job_id: &str) -> Vec<Outgoing> {
        let Some(job) = self.jobs.get(job_id) else {
            return Vec::new();
        };
        if job.status != JobStatus::InProgress {
            return Vec::new();
        }
        let Some(abort) = &job.config.abort_config else {
            return Vec::new();
        };
        use JobExecutionStatus as S;
        let finished: Vec<S> = self
            .execs
            .values()
            .filter(|e| e.job_id == job_id)
            .map(|e| e.status)
            .filter(|s| matches!(s, S::Succeeded | S::Failed | S::Rejected | S::TimedOut))
            .collect();
        let met = abort.criteria_list.iter().any(|c| {
            let failures = finished
                .iter()
                .filter(|s| match c.failure_type {
                    FailureType::Failed => **s == S::Failed,
                    FailureType::Rejected => **s == S::Rejected,
                    FailureType::TimedOut => **s == S::TimedOut,
                    FailureType::All => **s != S::Succeeded,
                })
                .count();
            finished.len() >= c.min_number_of_executed_things as usize
                && failures as f64 * 100.0 >= c.threshold_percentage * finished.len() as f64
        });
        if !met {
            return Vec::new();
        }
        if let Some(j) = self.jobs.get_mut(job_id) {
            j.aborted = true;
        }
        self.counts.jobs_aborted += 1;
        self.cancel(job_id, false)
    }

    /// The thing's next pending execution: the oldest IN_PROGRESS, else
    /// the oldest QUEUED.
    pub(super) fn next_of(&self, thing: &str) -> Option<&ExecutionView> {
        let mine = || self.execs.values().filter(|e| e.thing == thing);
        mine()
            .filter(|e| e.status == JobExecutionStatus::InProgress)
            .min_by_key(|e| e.seq)
            .or_else(|| {
                mine()
                    .filter(|e| e.status == JobExecutionStatus::Queued)
                    .min_by_key(|e| e.seq)
            })
    }

    pub(super) fn execution_data(&self, e: &ExecutionView, with_document: bool) -> JobExecution {
        let now = self.clock.now_ms();
        let deadline = [e.step_deadline, e.in_progress_deadline]
            .into_iter()
            .flatten()
            .min()
            .filter(|_| e.status == JobExecutionStatus::InProgress);
        JobExecution {
            job_id: e.job_id.clone(),
            thing_name: Some(e.thing.clone()),
            status: e.status,
            status_details: e.status_details.clone(),
            queued_at: secs(e.queued_at),
            started_at: e.started_at.map(secs),
            last_updated_at: secs(e.last_updated_at),
            approximate_seconds_before_timed_out: deadline.map(|d| ms_to_secs(d - now)),
            version_number: e.version_number,
            execution_number: Some(1),
            job_document: with_document
                .then(|| self.jobs.get(&e.job_id).map(|j| j.config.document.clone()))
                .flatten(),
        }
    }

    /// notify-next when the thing's next execution changed since it was
    /// last told, and notify (the pending list) when `list_changed` (an
    /// execution was queued or changed status; not on progress updates).
    pub(super) fn notifications(&mut self, thing: &str, list_changed: bool) -> Vec<Outgoing> {
        let now = secs(self.clock.now_ms());
        let mut out = Vec::new();
        let next = self.next_of(thing).map(|e| e.job_id.clone());
        if self.told_next.get(thing) != Some(&next) {
            let execution = self.next_of(thing).map(|e| self.execution_data(e, true));
            out.push(Outgoing {
                topic: Topic::NotifyNext.name(thing),
                payload: jobs::encode(&ExecutionResponse {
                    execution,
                    timestamp: now,
                    client_token: None,
                }),
            });
            self.told_next.insert(thing.to_owned(), next);
            self.counts.notifications += 1;
        }
        if !list_changed {
            return out;
        }
        let mut list = JobExecutionsChanged {
            jobs: BTreeMap::new(),
            timestamp: now,
        };
        let mut mine: Vec<&ExecutionView> = self
            .execs
            .values()
            .filter(|e| e.thing == thing && !e.status.is_terminal())
            .collect();
        mine.sort_by_key(|e| e.seq);
        for e in mine {
            list.jobs.entry(e.status).or_default().push(summary(e));
        }
        out.push(Outgoing {
            topic: Topic::Notify.name(thing),
            payload: jobs::encode(&list),
        });
        out
    }
}
