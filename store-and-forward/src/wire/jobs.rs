//! AWS IoT Jobs' device MQTT API: topics and JSON payloads with AWS's own
//! field names, the way fleet provisioning is in [`super::fleet`]. This is
//! AWS's contract, outside the `carts/{cart_id}/` layout and our envelope;
//! the cart and the backend emulator both speak it from these types.
//! Reference: <https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html>
//! and "Jobs notifications" (`jobs-comm-notifications.html`).
//!
//! | call | request topic | answers |
//! | --- | --- | --- |
//! | GetPendingJobExecutions | `$aws/things/{thing}/jobs/get` | `.../accepted`, `.../rejected` |
//! | StartNextPendingJobExecution | `$aws/things/{thing}/jobs/start-next` | `.../accepted`, `.../rejected` |
//! | DescribeJobExecution | `$aws/things/{thing}/jobs/{jobId or $next}/get` | `.../accepted`, `.../rejected` |
//! | UpdateJobExecution | `$aws/things/{thing}/jobs/{jobId}/update` | `.../accepted`, `.../rejected` |
//! | (notification) NextJobExecutionChanged | `$aws/things/{thing}/jobs/notify-next` | |
//! | (notification) JobExecutionsChanged | `$aws/things/{thing}/jobs/notify` | |
//!
//! Parsing is lenient to fields AWS adds and strict about the ones it
//! reads: a malformed payload is a [`JobsError`], never a panic. The job
//! documents the cart understands are in [`document`]; the topic builder
//! and parser in `jobs/topic.rs` ([`Topic`]).

pub mod document;
mod topic;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use document::{JobDocument, JobDocumentError, Update};
pub use topic::{
    Answer, BACKEND_FILTERS, Call, JobRef, Topic, device_subscriptions, valid_job_id,
    valid_thing_name,
};

/// AWS IoT's MQTT payload limit (128 KB); a larger payload is refused
/// before it is parsed.
pub const MAX_PAYLOAD: usize = 128 * 1024;

/// The job id AWS reserves for "the next pending execution" (Describe only).
pub const NEXT: &str = "$next";

/// A Jobs payload or topic that could not be read. The cart answers
/// nothing to a malformed message (it did not come from AWS's contract)
/// and logs it; the emulator answers `rejected` with `InvalidJson`.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// Larger than [`MAX_PAYLOAD`].
    #[error("jobs payload of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not JSON, or a field AWS defines has the wrong shape.
    #[error("jobs payload: {0}")]
    Json(#[from] serde_json::Error),
    /// The topic is not one of the Jobs API's.
    #[error("not a jobs topic: {0}")]
    Topic(String),
}

/// Reads a Jobs payload (any of the request, response or notification
/// types here), refusing oversized input first.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, JobsError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(JobsError::TooLarge(payload.len()));
    }
    Ok(serde_json::from_slice(payload)?)
}

/// Writes a Jobs payload.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these types cannot fail: string keys, no non-finite floats.
    serde_json::to_vec(value).unwrap_or_default()
}

// ---------------------------------------------------------------- types

/// A job execution's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobExecutionStatus {
    /// Waiting for the device.
    Queued,
    /// Started by the device.
    InProgress,
    /// Done (terminal).
    Succeeded,
    /// The device failed it (terminal).
    Failed,
    /// A step or in-progress timer expired (terminal).
    TimedOut,
    /// The device refused it (terminal).
    Rejected,
    /// The thing left the job's target (terminal).
    Removed,
    /// The job was canceled (terminal).
    Canceled,
}

impl JobExecutionStatus {
    /// Whether no further change is possible.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobExecutionStatus::Queued | JobExecutionStatus::InProgress
        )
    }

    /// The statuses a device may set with UpdateJobExecution.
    pub fn device_may_set(self) -> bool {
        matches!(
            self,
            JobExecutionStatus::InProgress
                | JobExecutionStatus::Succeeded
                | JobExecutionStatus::Failed
                | JobExecutionStatus::Rejected
        )
    }
}

/// `statusDetails`: name/value strings (AWS: keys `[a-zA-Z0-9:_-]+` up to
/// 128 characters, values up to 1,024).
pub type StatusDetails = BTreeMap<String, String>;

/// A job execution as AWS sends it (`JobExecutionData`). Times are as AWS
/// sends them (AWS's text says seconds since the epoch, its examples show
/// milliseconds); the cart only compares them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    /// The job.
    pub job_id: String,
    /// The thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    /// Status.
    pub status: JobExecutionStatus,
    /// What the device reported last.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_details: StatusDetails,
    /// When it was queued.
    #[serde(default)]
    pub queued_at: i64,
    /// When it went IN_PROGRESS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Last change.
    #[serde(default)]
    pub last_updated_at: i64,
    /// Seconds left before TIMED_OUT, when a timer runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_seconds_before_timed_out: Option<i64>,
    /// The version: +1 on every update; `expectedVersion` is checked against it.
    #[serde(default)]
    pub version_number: i64,
    /// Which execution of the job on this thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    /// The job document (see [`JobDocument::parse`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<serde_json::Value>,
}

/// A job execution in a list (`JobExecutionSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionSummary {
    /// The job.
    pub job_id: String,
    /// When it was queued.
    #[serde(default)]
    pub queued_at: i64,
    /// When it went IN_PROGRESS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Last change.
    #[serde(default)]
    pub last_updated_at: i64,
    /// Version.
    #[serde(default)]
    pub version_number: i64,
    /// Execution number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
}

/// An execution's state in an update's answer (`JobExecutionState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionState {
    /// Status.
    pub status: JobExecutionStatus,
    /// Details.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_details: StatusDetails,
    /// Version.
    #[serde(default)]
    pub version_number: i64,
}

/// GetPendingJobExecutions request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPendingRequest {
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// GetPendingJobExecutions accepted answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPendingResponse {
    /// IN_PROGRESS executions, oldest first.
    #[serde(default)]
    pub in_progress_jobs: Vec<JobExecutionSummary>,
    /// QUEUED executions, oldest first.
    #[serde(default)]
    pub queued_jobs: Vec<JobExecutionSummary>,
    /// When sent.
    #[serde(default)]
    pub timestamp: i64,
    /// The request's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// StartNextPendingJobExecution request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextRequest {
    /// Details set when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// Step timer, 1 to 10080 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// DescribeJobExecution request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRequest {
    /// A given execution (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    /// Whether to include the job document (AWS's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// The accepted answer of StartNext and Describe, and the notify-next
/// message: `execution` is absent when nothing is pending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResponse {
    /// The execution, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
    /// When sent.
    #[serde(default)]
    pub timestamp: i64,
    /// The request's token (absent on notify-next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// notify-next (`NextJobExecutionChanged`).
pub type NextJobExecutionChanged = ExecutionResponse;

/// notify (`JobExecutionsChanged`): pending executions by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionsChanged {
    /// Executions by status.
    #[serde(default)]
    pub jobs: BTreeMap<JobExecutionStatus, Vec<JobExecutionSummary>>,
    /// When sent.
    #[serde(default)]
    pub timestamp: i64,
}

/// UpdateJobExecution request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    /// The new status: IN_PROGRESS, SUCCEEDED, FAILED or REJECTED.
    pub status: JobExecutionStatus,
    /// Details (unchanged when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// The version the device last saw; a different one is a `VersionMismatch`.
    /// Read as a number or a numeric string (AWS's own example in "Jobs
    /// workflow" sends `"expectedVersion":"1"`); written as a number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_string"
    )]
    pub expected_version: Option<i64>,
    /// A given execution (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<i64>,
    /// Whether the answer carries `executionState`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_execution_state: Option<bool>,
    /// Whether the answer carries `jobDocument`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    /// A new step timer, 1 to 10080 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl UpdateRequest {
    /// An update to `status` expecting `version`.
    pub fn new(status: JobExecutionStatus, expected_version: i64) -> UpdateRequest {
        UpdateRequest {
            status,
            status_details: None,
            expected_version: Some(expected_version),
            execution_number: None,
            include_job_execution_state: None,
            include_job_document: None,
            step_timeout_in_minutes: None,
            client_token: None,
        }
    }
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Number(i64),
        Text(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::Number(n)) => Ok(Some(n)),
        Some(N::Text(t)) => t
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("not a version number: {t:?}"))),
    }
}

/// UpdateJobExecution accepted answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateResponse {
    /// When asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
    /// When asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<serde_json::Value>,
    /// When sent.
    #[serde(default)]
    pub timestamp: i64,
    /// The request's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// AWS's error codes on `.../rejected`. A code this build does not know
/// reads as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The topic maps to no API.
    InvalidTopic,
    /// Not UTF-8 JSON.
    InvalidJson,
    /// A field is invalid (the message says which).
    InvalidRequest,
    /// The status change is not allowed from the current status
    /// (`executionState` says which).
    InvalidStateTransition,
    /// No such execution.
    ResourceNotFound,
    /// `expectedVersion` is not the current version (`executionState`
    /// carries the current one).
    VersionMismatch,
    /// AWS failed.
    InternalError,
    /// Too many requests.
    RequestThrottled,
    /// Describe of an execution already terminal.
    TerminalStateReached,
    /// A code added after this build.
    #[serde(other)]
    Other,
}

/// A rejected answer (`ErrorResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// The code.
    pub code: ErrorCode,
    /// For people.
    #[serde(default)]
    pub message: String,
    /// The request's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// When sent.
    #[serde(default)]
    pub timestamp: i64,
    /// The current state (VersionMismatch, InvalidStateTransition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
}

#[cfg(test)]
mod tests;
