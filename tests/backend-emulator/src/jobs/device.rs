//! The device MQTT API on the [`Jobs`] state: each request answered on
//! its accepted or rejected topic, with AWS's error codes.

use store_and_forward::wire::jobs::{
    self, Answer, Call, DescribeRequest, ErrorCode, ErrorResponse, ExecutionResponse,
    GetPendingRequest, GetPendingResponse, JobExecutionStatus, JobRef, StartNextRequest,
    StatusDetails, Topic, UpdateRequest, UpdateResponse,
};

use super::config::minutes_ms;
use super::state::{
    ExecutionView, Jobs, Outgoing, Reply, err, secs, state_of, step_minutes, summary,
};

impl Jobs {
    /// Answers a request published on `topic`; `None` when the topic is
    /// not a Jobs request. The answer comes first, notifications after.
    pub fn handle(&mut self, topic: &str, payload: &[u8]) -> Option<Vec<Outgoing>> {
        let (thing, Topic::Request(call)) = Topic::parse(topic).ok()? else {
            return None;
        };
        let mut out = self.tick();
        let before = self.statuses_of(&thing);
        self.counts.requests += 1;
        // An empty payload is `{}` (every field of every request is optional
        // but UpdateJobExecution's status).
        let payload: &[u8] = if payload.is_empty() { b"{}" } else { payload };
        let token = jobs::decode::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("clientToken")?.as_str().map(str::to_owned));
        let reply = match &call {
            Call::GetPending => self.get_pending(&thing, payload),
            Call::StartNext => self.start_next(&thing, payload),
            Call::Describe(job) => self.describe(&thing, job, payload),
            Call::Update(job) => self.update(&thing, job, payload),
        };
        let answer = match reply {
            Ok(body) => Outgoing {
                topic: Topic::Answer(call.clone(), Answer::Accepted).name(&thing),
                payload: body,
            },
            Err(mut e) => {
                self.counts.rejected_requests += 1;
                e.client_token = token;
                e.timestamp = secs(self.clock.now_ms());
                Outgoing {
                    topic: Topic::Answer(call.clone(), Answer::Rejected).name(&thing),
                    payload: jobs::encode(&e),
                }
            }
        };
        // The answer before the notifications it caused.
        let notes = std::mem::take(&mut out);
        out.push(answer);
        out.extend(notes);
        if matches!(call, Call::StartNext | Call::Update(_)) {
            if let Call::Update(job) = &call {
                out.extend(self.check_abort(job));
                self.complete_if_done(job);
            }
            let changed = self.statuses_of(&thing) != before;
            out.extend(self.notifications(&thing, changed));
        }
        Some(out)
    }

    fn statuses_of(&self, thing: &str) -> Vec<(String, JobExecutionStatus)> {
        self.execs
            .values()
            .filter(|e| e.thing == thing)
            .map(|e| (e.job_id.clone(), e.status))
            .collect()
    }

    fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, ErrorResponse> {
        jobs::decode(payload).map_err(|e| err(ErrorCode::InvalidJson, e.to_string()))
    }

    fn get_pending(&self, thing: &str, payload: &[u8]) -> Reply {
        let req: GetPendingRequest = Self::parse(payload)?;
        let mut mine: Vec<&ExecutionView> =
            self.execs.values().filter(|e| e.thing == thing).collect();
        mine.sort_by_key(|e| e.seq);
        let of = |s| {
            mine.iter()
                .filter(|e| e.status == s)
                .map(|e| summary(e))
                .collect()
        };
        Ok(jobs::encode(&GetPendingResponse {
            in_progress_jobs: of(JobExecutionStatus::InProgress),
            queued_jobs: of(JobExecutionStatus::Queued),
            timestamp: secs(self.clock.now_ms()),
            client_token: req.client_token,
        }))
    }

    fn start_next(&mut self, thing: &str, payload: &[u8]) -> Reply {
        let req: StartNextRequest = Self::parse(payload)?;
        let step = step_minutes(req.step_timeout_in_minutes)?;
        let now = self.clock.now_ms();
        let key = self
            .next_of(thing)
            .map(|e| (e.thing.clone(), e.job_id.clone()));
        if let Some(key) = &key {
            let timeout = self.in_progress_timeout(&key.1);
            if let Some(e) = self.execs.get_mut(key)
                && e.status == JobExecutionStatus::Queued
            {
                self.counts.started += 1;
                start(e, now, step, timeout, req.status_details);
            }
        }
        let execution = key
            .and_then(|k| self.execs.get(&k))
            .map(|e| self.execution_data(e, true));
        Ok(jobs::encode(&ExecutionResponse {
            execution,
            timestamp: secs(now),
            client_token: req.client_token,
        }))
    }

    fn in_progress_timeout(&self, job_id: &str) -> Option<i64> {
        self.jobs
            .get(job_id)?
            .config
            .timeout_config
            .map(|t| t.in_progress_timeout_in_minutes)
    }

    fn describe(&self, thing: &str, job: &JobRef, payload: &[u8]) -> Reply {
        let req: DescribeRequest = Self::parse(payload)?;
        let e = match job {
            JobRef::Next => self.next_of(thing),
            JobRef::Id(id) => {
                let e = self
                    .execs
                    .get(&(thing.to_owned(), id.clone()))
                    .filter(|_| req.execution_number.is_none_or(|n| n == 1))
                    .ok_or_else(|| {
                        err(ErrorCode::ResourceNotFound, format!("no execution of {id}"))
                    })?;
                if e.status.is_terminal() {
                    return Err(err(
                        ErrorCode::TerminalStateReached,
                        format!("{id} is {:?}", e.status),
                    ));
                }
                Some(e)
            }
        };
        let with_document = req.include_job_document.unwrap_or(true);
        Ok(jobs::encode(&ExecutionResponse {
            execution: e.map(|e| self.execution_data(e, with_document)),
            timestamp: secs(self.clock.now_ms()),
            client_token: req.client_token,
        }))
    }

    fn update(&mut self, thing: &str, job_id: &str, payload: &[u8]) -> Reply {
        let req: UpdateRequest = Self::parse(payload)?;
        let now = self.clock.now_ms();
        let key = (thing.to_owned(), job_id.to_owned());
        let timeout = self.in_progress_timeout(job_id);
        let busy = self.execs.values().any(|e| {
            e.thing == thing && e.job_id != job_id && e.status == JobExecutionStatus::InProgress
        });
        let e = self
            .execs
            .get_mut(&key)
            .filter(|_| req.execution_number.is_none_or(|n| n == 1))
            .ok_or_else(|| {
                err(
                    ErrorCode::ResourceNotFound,
                    format!("no execution of {job_id}"),
                )
            })?;
        if !req.status.device_may_set() {
            return Err(err(
                ErrorCode::InvalidRequest,
                "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED",
            ));
        }
        let step = step_minutes(req.step_timeout_in_minutes)?;
        let with_state = |mut r: ErrorResponse, e: &ExecutionView| {
            r.execution_state = Some(state_of(e));
            r
        };
        if let Some(v) = req.expected_version
            && v != e.version_number
        {
            let msg = format!("expectedVersion {v}, current version {}", e.version_number);
            return Err(with_state(err(ErrorCode::VersionMismatch, msg), e));
        }
        if e.status.is_terminal() {
            let msg = format!("{:?} cannot become {:?}", e.status, req.status);
            return Err(with_state(err(ErrorCode::InvalidStateTransition, msg), e));
        }
        if e.status == JobExecutionStatus::Queued
            && req.status == JobExecutionStatus::InProgress
            && busy
        {
            let msg = "another execution is IN_PROGRESS on this thing (one at a time)";
            return Err(with_state(err(ErrorCode::InvalidStateTransition, msg), e));
        }
        if e.status == JobExecutionStatus::Queued && req.status == JobExecutionStatus::InProgress {
            self.counts.started += 1;
            start(e, now, step, timeout, req.status_details);
        } else {
            if let Some(d) = req.status_details {
                e.status_details = d;
            }
            if let Some(m) = step {
                e.step_deadline = Some(now + minutes_ms(m));
            }
            e.status = req.status;
            e.version_number += 1;
            e.last_updated_at = now;
        }
        match e.status {
            JobExecutionStatus::Succeeded => self.counts.succeeded += 1,
            JobExecutionStatus::Failed => self.counts.failed += 1,
            JobExecutionStatus::Rejected => self.counts.rejected += 1,
            _ => {}
        }
        let e = &self.execs[&key];
        let response = UpdateResponse {
            execution_state: req
                .include_job_execution_state
                .unwrap_or(false)
                .then(|| state_of(e)),
            job_document: req
                .include_job_document
                .unwrap_or(false)
                .then(|| self.jobs.get(job_id).map(|j| j.config.document.clone()))
                .flatten(),
            timestamp: secs(now),
            client_token: req.client_token,
        };
        Ok(jobs::encode(&response))
    }
}

/// QUEUED to IN_PROGRESS: the step timer (when asked) and the job's
/// in-progress timer start now.
fn start(
    e: &mut ExecutionView,
    now: i64,
    step: Option<i64>,
    in_progress_timeout: Option<i64>,
    details: Option<StatusDetails>,
) {
    e.status = JobExecutionStatus::InProgress;
    e.started_at = Some(now);
    e.last_updated_at = now;
    e.version_number += 1;
    e.step_deadline = step.map(|m| now + minutes_ms(m));
    e.in_progress_deadline = in_progress_timeout.map(|m| now + minutes_ms(m));
    if let Some(d) = details {
        e.status_details = d;
    }
}
