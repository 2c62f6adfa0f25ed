//! Remote jobs on the cart: AWS IoT Jobs' device MQTT API
//! ([`crate::wire::jobs`]), one job at a time, recorded durably so a crash
//! or power cut in the middle resumes or reports it and never runs it twice.
//!
//! The life of a job here:
//! 1. After every connect the cart asks `$next/get`; the backend also
//!    pushes `notify-next`. Both carry the next pending execution.
//! 2. A QUEUED execution whose document this firmware cannot run is
//!    answered REJECTED with the reason. Otherwise the cart writes
//!    `jobs.current` (the job, phase `running`) with synchronous=FULL, then
//!    sets IN_PROGRESS (`expectedVersion`), and hands the job to the
//!    application ([`AppEvent::Job`]); a catalog resync it runs itself.
//! 3. The application reports progress (e.g. "waiting for an idle cart")
//!    and an outcome through [`JobDone`]. The outcome is written first
//!    (phase `finishing`), then sent as the execution's final status.
//! 4. The update's `accepted` clears `jobs.current` and writes `jobs.last`.
//!
//! What the next connect (or a restart) finds decides the rest: a
//! `finishing` record is sent again, never run again; a `running` record
//! after a restart is resumed (every operation is idempotent, and a reboot
//! job found running after a restart is the reboot done); an execution
//! the backend no longer offers (cancelled, timed out) is dropped; a
//! version conflict is answered by asking for the execution and
//! reconciling; an IN_PROGRESS execution the cart has no record of is
//! reported FAILED, not guessed at.
//!
//! Messages may come out of order: a notification that does not name the
//! job in hand is answered by describing that job (its answer decides),
//! and an `accepted` is matched to the update it answers by the execution
//! state it carries.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{AppEvent, Uplink};
use crate::Timestamp;
use crate::uplink::{Incoming, PublishProps, QoS};
use crate::wire::Kind;
use crate::wire::jobs::{
    self, Answer, Call, DescribeRequest, ErrorCode, ErrorResponse, ExecutionResponse, JobDocument,
    JobExecution, JobExecutionStatus, JobRef, StatusDetails, Topic, UpdateRequest, UpdateResponse,
};

/// The ledger's cart-state key of the job in hand.
pub const CURRENT_KEY: &str = "jobs.current";
/// The ledger's cart-state key of the last job finished.
pub const LAST_KEY: &str = "jobs.last";

/// The job in hand, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub job_id: String,
    /// Its document's operation.
    pub operation: String,
    /// The `expectedVersion` of the cart's next update.
    pub version: i64,
    /// Where it stands.
    pub phase: JobPhase,
    /// When the cart took it (ms).
    pub started_ms: i64,
}

/// Where the job in hand stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum JobPhase {
    /// Handed to the application (or waiting for an idle cart).
    Running,
    /// The outcome is decided; its update is not acknowledged yet.
    Finishing {
        /// The final status.
        status: JobExecutionStatus,
        /// What it says.
        details: StatusDetails,
    },
}

/// The last job finished, for `cartctl status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastJob {
    /// The job's id.
    pub job_id: String,
    /// Its operation.
    pub operation: String,
    /// The final status the backend accepted.
    pub status: JobExecutionStatus,
    /// When (ms).
    pub at_ms: i64,
}

impl LastJob {
    /// `record` ended now with `status`.
    fn of(record: &JobRecord, status: JobExecutionStatus) -> LastJob {
        LastJob {
            job_id: record.job_id.clone(),
            operation: record.operation.clone(),
            status,
            at_ms: Timestamp::now().0,
        }
    }
}

/// A job for the application to run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// The job's id (log it as `job_id`: the journal's `JOB_ID`).
    pub job_id: String,
    /// What to do.
    pub document: JobDocument,
    /// Found running after a restart: the application resumes it (a
    /// reboot job resumed is a reboot done).
    pub resumed: bool,
}

/// How a job ended, as the application reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done, with what to say in `statusDetails`.
    Succeeded(StatusDetails),
    /// Tried and failed, with the reason.
    Failed(String),
    /// Tried and failed, with what to say in `statusDetails` (a `reason`
    /// among them).
    FailedWith(StatusDetails),
    /// Refused without trying (this cart cannot do it), with the reason.
    Rejected(String),
}

/// What the application says about a running job.
#[derive(Debug)]
pub(crate) enum JobReport {
    Progress(String, StatusDetails),
    Done(String, JobOutcome),
}

/// The application's way back for one [`JobRun`]. Dropped without an
/// outcome, the job stays running and is resumed at the next start.
#[derive(Debug)]
pub struct JobDone {
    job_id: String,
    tx: mpsc::Sender<JobReport>,
}

impl JobDone {
    /// Tells the backend where the job stands (an IN_PROGRESS update with
    /// these `statusDetails`; each is a billed message: only on changes).
    pub fn progress(&self, details: StatusDetails) {
        let _ = self
            .tx
            .try_send(JobReport::Progress(self.job_id.clone(), details));
    }

    /// A way to report progress from another thread (a download).
    pub fn progress_sender(&self) -> impl Fn(StatusDetails) + Send + Sync + 'static {
        let (job_id, tx) = (self.job_id.clone(), self.tx.clone());
        move |details| {
            let _ = tx.try_send(JobReport::Progress(job_id.clone(), details));
        }
    }

    /// Ends the job.
    pub fn finish(self, outcome: JobOutcome) {
        let _ = self.tx.try_send(JobReport::Done(self.job_id, outcome));
    }
}

/// `statusDetails` with one entry.
pub fn details(key: &str, value: &str) -> StatusDetails {
    [(key.to_owned(), value.to_owned())].into()
}

impl Uplink {
    /// The job in hand, from the ledger.
    pub fn job_record(&self) -> Option<JobRecord> {
        let raw = super::blocking(|| self.ledger().state(CURRENT_KEY).ok().flatten())?;
        match serde_json::from_str(&raw) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(cause = %e, "unreadable job record dropped");
                None
            }
        }
    }

    fn write_record(&self, record: Option<&JobRecord>, last: Option<&LastJob>) -> bool {
        let current = record.map(|r| serde_json::to_string(r).unwrap_or_default());
        let last = last.map(|l| serde_json::to_string(l).unwrap_or_default());
        let mut entries = vec![(CURRENT_KEY, current.as_deref())];
        if last.is_some() {
            entries.push((LAST_KEY, last.as_deref()));
        }
        match super::blocking(|| self.ledger().set_states_durable(&entries, Timestamp::now())) {
            Ok(()) => true,
            Err(e) => {
                warn!(cause = %e, "job record not written: the job waits for the next try");
                false
            }
        }
    }

    async fn jobs_publish(&self, call: Call, payload: Vec<u8>) {
        let topic = Topic::Request(call).name(&self.config.cart_id);
        if let Err(e) = self
            .link
            .publish(
                &topic,
                payload.into(),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
        {
            // Reconciled at the next connect ($next/get).
            warn!(%topic, cause = %e, "jobs request not sent");
        }
    }

    /// Asks for the next pending execution (after every connect).
    pub(crate) async fn jobs_on_connect(&self) {
        let req = DescribeRequest {
            include_job_document: Some(true),
            ..DescribeRequest::default()
        };
        self.jobs_publish(Call::Describe(JobRef::Next), jobs::encode(&req))
            .await;
    }

    async fn send_update(
        &self,
        job_id: &str,
        status: JobExecutionStatus,
        details: StatusDetails,
        version: i64,
    ) {
        let mut req = UpdateRequest::new(status, version);
        req.status_details = Some(details);
        req.include_job_execution_state = Some(true);
        self.jobs_publish(Call::Update(job_id.to_owned()), jobs::encode(&req))
            .await;
    }

    /// Whether `msg` is a Jobs message (handled here, not by the envelope
    /// decoder).
    pub(crate) fn is_jobs_topic(topic: &str) -> bool {
        topic.starts_with("$aws/things/")
    }

    /// One Jobs message from the backend.
    pub(crate) async fn handle_jobs(&self, msg: &Incoming) {
        let topic = match Topic::parse(&msg.topic) {
            Ok((thing, t)) if thing == self.config.cart_id => t,
            Ok(_) | Err(_) => {
                warn!(topic = %msg.topic, "jobs message for another thing or unknown topic ignored");
                return;
            }
        };
        match topic {
            Topic::NotifyNext | Topic::Answer(Call::Describe(_), Answer::Accepted) => {
                match jobs::decode::<ExecutionResponse>(&msg.payload) {
                    Ok(r) => self.on_execution(r.execution).await,
                    Err(e) => {
                        warn!(topic = %msg.topic, cause = %e, "malformed jobs message ignored")
                    }
                }
            }
            Topic::Answer(Call::Update(job_id), Answer::Accepted) => {
                match jobs::decode::<UpdateResponse>(&msg.payload) {
                    Ok(r) => self.on_update_accepted(&job_id, r),
                    Err(e) => {
                        warn!(topic = %msg.topic, cause = %e, "malformed jobs message ignored")
                    }
                }
            }
            Topic::Answer(call, Answer::Rejected) => {
                match jobs::decode::<ErrorResponse>(&msg.payload) {
                    Ok(err) => self.on_rejected(call, err).await,
                    Err(e) => {
                        warn!(topic = %msg.topic, cause = %e, "malformed jobs message ignored")
                    }
                }
            }
            _ => {}
        }
    }

    async fn on_execution(&self, execution: Option<JobExecution>) {
        let record = self.job_record();
        // Notifications may arrive out of order: one that does not name the
        // job in hand (none, or another job) is no proof it ended. Ask for
        // that job itself; its own answer decides.
        let other = match (&record, &execution) {
            (Some(r), None) => Some(r.job_id.clone()),
            (Some(r), Some(e)) if r.job_id != e.job_id => Some(r.job_id.clone()),
            _ => None,
        };
        if let Some(job_id) = other {
            self.describe(job_id).await;
            return;
        }
        let Some(e) = execution else { return };
        if record.is_none() && self.last_job_id().as_deref() == Some(e.job_id.as_str()) {
            // A late notification of the job just finished.
            return;
        }
        let record = record.filter(|r| r.job_id == e.job_id);
        if e.status.is_terminal() {
            if let Some(r) = record {
                // Our own final status, whose `accepted` was not seen, is
                // the job done; any other is the job ended there.
                let last = match &r.phase {
                    JobPhase::Finishing { status, .. } if *status == e.status => {
                        Some(LastJob::of(&r, *status))
                    }
                    _ => None,
                };
                if last.is_some() {
                    info!(job_id = %e.job_id, status = ?e.status, "job done at the backend");
                } else {
                    info!(job_id = %e.job_id, status = ?e.status, "job ended at the backend: dropped");
                }
                self.write_record(None, last.as_ref());
                *super::lock(&self.jobs_active) = None;
                // What comes next.
                self.jobs_on_connect().await;
            }
            return;
        }
        match (record, e.status) {
            (Some(mut r), _) => match r.phase.clone() {
                JobPhase::Finishing { status, details } => {
                    // Decided before: sent again, never run again.
                    r.version = e.version_number;
                    self.write_record(Some(&r), None);
                    self.send_update(&r.job_id, status, details, r.version)
                        .await;
                }
                JobPhase::Running => {
                    r.version = e.version_number;
                    self.write_record(Some(&r), None);
                    let active = super::lock(&self.jobs_active).clone();
                    if active.as_deref() != Some(r.job_id.as_str()) {
                        self.run_job(&e, true).await;
                    }
                }
            },
            (None, JobExecutionStatus::Queued) => self.start_job(e).await,
            (None, _) => {
                warn!(job_id = %e.job_id, "an execution in progress the cart has no record of: reported failed");
                self.send_update(
                    &e.job_id,
                    JobExecutionStatus::Failed,
                    details(
                        "reason",
                        "the cart has no record of this job (restored ledger?)",
                    ),
                    e.version_number,
                )
                .await;
            }
        }
    }

    async fn start_job(&self, e: JobExecution) {
        let refused = match JobDocument::parse(e.job_document.as_ref()) {
            Err(err) => Some(err.to_string()),
            Ok(JobDocument::Unknown { operation }) => {
                Some(format!("unknown operation: {operation}"))
            }
            Ok(_) => None,
        };
        if let Some(reason) = refused {
            warn!(job_id = %e.job_id, %reason, "job rejected");
            self.send_update(
                &e.job_id,
                JobExecutionStatus::Rejected,
                details("reason", &reason),
                e.version_number,
            )
            .await;
            return;
        }
        let operation = e
            .job_document
            .as_ref()
            .and_then(|d| d.get("operation"))
            .and_then(|o| o.as_str())
            .unwrap_or("")
            .to_owned();
        let record = JobRecord {
            job_id: e.job_id.clone(),
            operation: operation.clone(),
            version: e.version_number,
            phase: JobPhase::Running,
            started_ms: Timestamp::now().0,
        };
        // Durable before anything is done or said.
        if !self.write_record(Some(&record), None) {
            return;
        }
        info!(job_id = %e.job_id, %operation, "job started");
        self.send_update(
            &e.job_id,
            JobExecutionStatus::InProgress,
            details("step", "started"),
            e.version_number,
        )
        .await;
        self.run_job(&e, false).await;
    }

    async fn run_job(&self, e: &JobExecution, resumed: bool) {
        let document = match JobDocument::parse(e.job_document.as_ref()) {
            Ok(d) => d,
            Err(err) => {
                self.finish_job(&e.job_id, JobOutcome::Failed(err.to_string()))
                    .await;
                return;
            }
        };
        *super::lock(&self.jobs_active) = Some(e.job_id.clone());
        if resumed {
            info!(job_id = %e.job_id, "job resumed after a restart");
        }
        if matches!(document, JobDocument::CatalogResync {}) {
            let have = self
                .ledger()
                .state("downstream.catalog")
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            self.request_resync(Kind::CatalogDelta, have, 0, Timestamp::now());
            self.finish_job(
                &e.job_id,
                JobOutcome::Succeeded(details(
                    "catalog",
                    &format!("asked for whole (have {have})"),
                )),
            )
            .await;
            return;
        }
        let done = JobDone {
            job_id: e.job_id.clone(),
            tx: self.jobs_tx.clone(),
        };
        let run = JobRun {
            job_id: e.job_id.clone(),
            document,
            resumed,
        };
        if self.app.is_none() || !self.forward_to_app(AppEvent::Job { run, done }) {
            self.finish_job(
                &e.job_id,
                JobOutcome::Failed("no application to run it".to_owned()),
            )
            .await;
        }
    }

    /// Applies the application's report on a job.
    pub(crate) async fn on_job_report(&self, report: JobReport) {
        match report {
            JobReport::Progress(job_id, details) => {
                if self
                    .job_record()
                    .is_some_and(|r| r.job_id == job_id && r.phase == JobPhase::Running)
                {
                    // Progress carries no expectedVersion: it changes only
                    // statusDetails, and a conflict would lose it. The
                    // outcome does carry it.
                    let mut req = UpdateRequest::new(JobExecutionStatus::InProgress, 0);
                    req.expected_version = None;
                    req.status_details = Some(details);
                    req.include_job_execution_state = Some(true);
                    self.jobs_publish(Call::Update(job_id), jobs::encode(&req))
                        .await;
                }
            }
            JobReport::Done(job_id, outcome) => self.finish_job(&job_id, outcome).await,
        }
    }

    async fn finish_job(&self, job_id: &str, outcome: JobOutcome) {
        let Some(mut r) = self.job_record().filter(|r| r.job_id == job_id) else {
            warn!(%job_id, "outcome of a job no longer in hand dropped");
            return;
        };
        let (status, details) = match outcome {
            JobOutcome::Succeeded(d) => (JobExecutionStatus::Succeeded, d),
            JobOutcome::Failed(why) => (JobExecutionStatus::Failed, details("reason", &why)),
            JobOutcome::FailedWith(d) => (JobExecutionStatus::Failed, d),
            JobOutcome::Rejected(why) => (JobExecutionStatus::Rejected, details("reason", &why)),
        };
        info!(%job_id, ?status, ?details, "job finished");
        r.phase = JobPhase::Finishing {
            status,
            details: details.clone(),
        };
        if !self.write_record(Some(&r), None) {
            return;
        }
        *super::lock(&self.jobs_active) = None;
        self.send_update(job_id, status, details, r.version).await;
    }

    fn on_update_accepted(&self, job_id: &str, resp: UpdateResponse) {
        let Some(mut r) = self.job_record().filter(|r| r.job_id == job_id) else {
            return;
        };
        let version = resp
            .execution_state
            .as_ref()
            .map_or(r.version + 1, |s| s.version_number);
        // The answer to which update: an IN_PROGRESS answered after the
        // outcome was decided is not the outcome's (that one, sent with
        // the older version, is refused and sent again).
        let answered = resp.execution_state.as_ref().map(|s| s.status);
        match &r.phase {
            JobPhase::Finishing { status, .. } if answered.is_some_and(|a| a != *status) => {
                r.version = version;
                self.write_record(Some(&r), None);
            }
            JobPhase::Finishing { status, .. } => {
                let last = LastJob::of(&r, *status);
                if self.write_record(None, Some(&last)) {
                    info!(%job_id, status = ?status, "job done at the backend");
                }
            }
            JobPhase::Running => {
                r.version = version;
                self.write_record(Some(&r), None);
            }
        }
    }

    /// Asks for one execution (its answer goes to `on_execution`).
    async fn describe(&self, job_id: String) {
        let req = DescribeRequest {
            include_job_document: Some(true),
            ..DescribeRequest::default()
        };
        self.jobs_publish(Call::Describe(JobRef::Id(job_id)), jobs::encode(&req))
            .await;
    }

    fn last_job_id(&self) -> Option<String> {
        let raw = super::blocking(|| self.ledger().state(LAST_KEY).ok().flatten())?;
        serde_json::from_str::<LastJob>(&raw).ok().map(|l| l.job_id)
    }

    async fn on_rejected(&self, call: Call, err: ErrorResponse) {
        let job_id = match call {
            Call::Update(id) | Call::Describe(JobRef::Id(id)) => id,
            _ => {
                warn!(code = ?err.code, message = %err.message, "jobs request refused");
                return;
            }
        };
        match err.code {
            ErrorCode::VersionMismatch => {
                // Ask for the execution as it is, and reconcile.
                info!(%job_id, "job version conflict: asking for the execution");
                self.describe(job_id).await;
            }
            ErrorCode::InvalidStateTransition
            | ErrorCode::TerminalStateReached
            | ErrorCode::ResourceNotFound => {
                // Cancelled (or ended) at the backend.
                if self.job_record().is_some_and(|r| r.job_id == job_id) {
                    warn!(%job_id, code = ?err.code, message = %err.message, "job ended at the backend: dropped");
                    self.write_record(None, None);
                    *super::lock(&self.jobs_active) = None;
                    self.jobs_on_connect().await;
                }
            }
            _ => {
                warn!(%job_id, code = ?err.code, message = %err.message, "job update refused: retried at the next connect")
            }
        }
    }
}
