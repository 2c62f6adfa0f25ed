//! The Jobs rules, one test each, on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use store_and_forward::wire::jobs::{
    self, Answer, Call, ErrorCode, ErrorResponse, ExecutionResponse, GetPendingResponse,
    JobExecutionStatus as S, JobExecutionsChanged, JobRef, Topic, UpdateResponse,
};

use super::*;

const T0: i64 = 1_795_000_000_000;

fn setup() -> (Arc<ManualClock>, Jobs) {
    let clock = Arc::new(ManualClock::new(T0));
    (clock.clone(), Jobs::new(clock))
}

fn doc() -> Value {
    json!({"operation": "reboot", "when": "quiet"})
}

fn job(id: &str, targets: &[&str]) -> JobConfig {
    JobConfig::new(id, targets, doc())
}

fn request(j: &mut Jobs, thing: &str, call: Call, body: Value) -> Vec<Outgoing> {
    j.handle(
        &Topic::Request(call).name(thing),
        &serde_json::to_vec(&body).unwrap(),
    )
    .expect("a jobs request topic")
}

/// The answer (first message): Ok(accepted body) or Err(rejected body).
fn answer(out: &[Outgoing], thing: &str, call: Call) -> Result<Value, ErrorResponse> {
    let first = out.first().expect("an answer");
    if first.topic == Topic::Answer(call.clone(), Answer::Accepted).name(thing) {
        Ok(serde_json::from_slice(&first.payload).unwrap())
    } else {
        assert_eq!(
            first.topic,
            Topic::Answer(call, Answer::Rejected).name(thing)
        );
        Err(jobs::decode(&first.payload).unwrap())
    }
}

fn start_next(j: &mut Jobs, thing: &str, body: Value) -> (ExecutionResponse, Vec<Outgoing>) {
    let out = request(j, thing, Call::StartNext, body);
    let a = answer(&out, thing, Call::StartNext).unwrap();
    (serde_json::from_value(a).unwrap(), out)
}

fn update(j: &mut Jobs, thing: &str, id: &str, body: Value) -> Result<Value, ErrorResponse> {
    let out = request(j, thing, Call::Update(id.into()), body);
    answer(&out, thing, Call::Update(id.into()))
}

/// The notify-next messages in `out` for `thing`: the next job id each names.
fn next_notes(out: &[Outgoing], thing: &str) -> Vec<Option<String>> {
    out.iter()
        .filter(|o| o.topic == Topic::NotifyNext.name(thing))
        .map(|o| {
            jobs::decode::<ExecutionResponse>(&o.payload)
                .unwrap()
                .execution
                .map(|e| e.job_id)
        })
        .collect()
}

fn status(j: &Jobs, thing: &str, id: &str) -> S {
    j.execution(thing, id).unwrap().status
}

#[test]
fn an_execution_goes_queued_in_progress_succeeded() {
    let (_, mut j) = setup();
    let out = j.create_job(job("j1", &["cart-a"])).unwrap();
    assert_eq!(next_notes(&out, "cart-a"), [Some("j1".to_owned())]);
    let note: ExecutionResponse = jobs::decode(&out[0].payload).unwrap();
    let e = note.execution.unwrap();
    assert_eq!((e.status, e.version_number), (S::Queued, 1));
    assert_eq!(e.job_document, Some(doc()));
    let list: JobExecutionsChanged = jobs::decode(&out[1].payload).unwrap();
    assert_eq!(list.jobs[&S::Queued][0].job_id, "j1");

    let (r, out) = start_next(
        &mut j,
        "cart-a",
        json!({"clientToken": "c1", "statusDetails": {"step": "accepted"}}),
    );
    assert_eq!(r.client_token.as_deref(), Some("c1"));
    let e = r.execution.unwrap();
    assert_eq!((e.status, e.version_number), (S::InProgress, 2));
    assert_eq!(e.status_details["step"], "accepted");
    assert_eq!(e.started_at, Some(T0 / 1000));
    assert_eq!(e.job_document, Some(doc()));
    // Still the next one: no notify-next.
    assert!(next_notes(&out, "cart-a").is_empty());

    let a = update(
        &mut j,
        "cart-a",
        "j1",
        json!({"status": "SUCCEEDED", "expectedVersion": 2, "includeJobExecutionState": true}),
    )
    .unwrap();
    let a: UpdateResponse = serde_json::from_value(a).unwrap();
    assert_eq!(a.execution_state.unwrap().version_number, 3);
    assert_eq!(status(&j, "cart-a", "j1"), S::Succeeded);
    assert_eq!(j.job_status("j1"), Some(JobStatus::Completed));
    let c = j.counts();
    assert_eq!(
        (c.jobs_created, c.executions, c.started, c.succeeded),
        (1, 1, 1, 1)
    );
}

#[test]
fn notify_next_says_when_nothing_is_left() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    start_next(&mut j, "cart-a", json!({}));
    let out = request(
        &mut j,
        "cart-a",
        Call::Update("j1".into()),
        json!({"status": "FAILED"}),
    );
    assert_eq!(next_notes(&out, "cart-a"), [None]);
    // The answer comes before the notification.
    assert!(out[0].topic.ends_with("/j1/update/accepted"));
    // Nothing pending: start-next and $next answer without an execution.
    let (r, _) = start_next(&mut j, "cart-a", json!({}));
    assert_eq!(r.execution, None);
    let out = request(&mut j, "cart-a", Call::Describe(JobRef::Next), json!({}));
    let r: ExecutionResponse =
        serde_json::from_value(answer(&out, "cart-a", Call::Describe(JobRef::Next)).unwrap())
            .unwrap();
    assert_eq!(r.execution, None);
}

#[test]
fn one_execution_per_cart_at_a_time_the_others_wait_queued() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    let out = j.create_job(job("j2", &["cart-a"])).unwrap();
    // j1 is still next: no notify-next for j2.
    assert!(next_notes(&out, "cart-a").is_empty());
    start_next(&mut j, "cart-a", json!({}));
    // Starting j2 beside j1 is refused.
    let e = update(&mut j, "cart-a", "j2", json!({"status": "IN_PROGRESS"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidStateTransition);
    assert_eq!(status(&j, "cart-a", "j2"), S::Queued);
    // start-next gives j1 again, details unchanged.
    let (r, _) = start_next(&mut j, "cart-a", json!({"statusDetails": {"x": "y"}}));
    let e = r.execution.unwrap();
    assert_eq!((e.job_id.as_str(), e.version_number), ("j1", 2));
    assert!(e.status_details.is_empty());
    // get pending lists both.
    let out = request(
        &mut j,
        "cart-a",
        Call::GetPending,
        json!({"clientToken": "g"}),
    );
    let p: GetPendingResponse =
        serde_json::from_value(answer(&out, "cart-a", Call::GetPending).unwrap()).unwrap();
    assert_eq!(p.in_progress_jobs[0].job_id, "j1");
    assert_eq!(p.queued_jobs[0].job_id, "j2");
    assert_eq!(p.client_token.as_deref(), Some("g"));
    // j1 done: notify-next names j2.
    let out = request(
        &mut j,
        "cart-a",
        Call::Update("j1".into()),
        json!({"status": "SUCCEEDED"}),
    );
    assert_eq!(next_notes(&out, "cart-a"), [Some("j2".to_owned())]);
}

#[test]
fn a_stale_expected_version_is_a_version_mismatch_with_the_current_state() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    start_next(&mut j, "cart-a", json!({}));
    let e = update(
        &mut j,
        "cart-a",
        "j1",
        json!({"status": "SUCCEEDED", "expectedVersion": 1, "clientToken": "t9"}),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    assert_eq!(e.client_token.as_deref(), Some("t9"));
    let state = e.execution_state.unwrap();
    assert_eq!((state.status, state.version_number), (S::InProgress, 2));
    assert_eq!(status(&j, "cart-a", "j1"), S::InProgress);
    assert_eq!(j.counts().rejected_requests, 1);
}

#[test]
fn progress_updates_do_not_notify_next() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    start_next(&mut j, "cart-a", json!({}));
    let out = request(
        &mut j,
        "cart-a",
        Call::Update("j1".into()),
        json!({"status": "IN_PROGRESS", "statusDetails": {"progress": "50%"}, "expectedVersion": 2}),
    );
    assert!(answer(&out, "cart-a", Call::Update("j1".into())).is_ok());
    assert!(next_notes(&out, "cart-a").is_empty());
    // Nor the pending list (a status change would): only the answer is sent.
    assert_eq!(out.len(), 1, "{out:?}");
    let e = j.execution("cart-a", "j1").unwrap();
    assert_eq!(
        (e.version_number, e.status_details["progress"].as_str()),
        (3, "50%")
    );
}

#[test]
fn bad_requests_get_aws_error_codes() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    let code = |r: Result<Value, ErrorResponse>| r.unwrap_err().code;
    assert_eq!(
        code(update(
            &mut j,
            "cart-a",
            "nope",
            json!({"status": "SUCCEEDED"})
        )),
        ErrorCode::ResourceNotFound
    );
    // Another cart's job is not found either.
    assert_eq!(
        code(update(
            &mut j,
            "cart-b",
            "j1",
            json!({"status": "SUCCEEDED"})
        )),
        ErrorCode::ResourceNotFound
    );
    assert_eq!(
        code(update(
            &mut j,
            "cart-a",
            "j1",
            json!({"status": "TIMED_OUT"})
        )),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(update(
            &mut j,
            "cart-a",
            "j1",
            json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 0})
        )),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(update(&mut j, "cart-a", "j1", json!({"statusDetails": {}}))),
        ErrorCode::InvalidJson
    );
    let out = j
        .handle(
            &Topic::Request(Call::StartNext).name("cart-a"),
            b"{not json",
        )
        .unwrap();
    assert_eq!(
        answer(&out, "cart-a", Call::StartNext).unwrap_err().code,
        ErrorCode::InvalidJson
    );
    // Rejected: the execution is REJECTED, and then cannot change.
    update(
        &mut j,
        "cart-a",
        "j1",
        json!({"status": "REJECTED", "statusDetails": {"reason": "unknown operation"}}),
    )
    .unwrap();
    let e = update(&mut j, "cart-a", "j1", json!({"status": "IN_PROGRESS"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidStateTransition);
    assert_eq!(e.execution_state.unwrap().status, S::Rejected);
    let out = request(
        &mut j,
        "cart-a",
        Call::Describe(JobRef::Id("j1".into())),
        json!({}),
    );
    assert_eq!(
        answer(&out, "cart-a", Call::Describe(JobRef::Id("j1".into())))
            .unwrap_err()
            .code,
        ErrorCode::TerminalStateReached
    );
    assert_eq!(j.counts().rejected, 1);
    // Answers and notifications are not requests.
    assert!(j.handle(&Topic::NotifyNext.name("cart-a"), b"{}").is_none());
    assert!(
        j.handle(
            &Topic::Answer(Call::StartNext, Answer::Accepted).name("cart-a"),
            b"{}"
        )
        .is_none()
    );
}

#[test]
fn the_step_timer_times_out_and_an_update_resets_it() {
    let (clock, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    let (r, _) = start_next(&mut j, "cart-a", json!({"stepTimeoutInMinutes": 5}));
    assert_eq!(
        r.execution.unwrap().approximate_seconds_before_timed_out,
        Some(300)
    );
    clock.advance(Duration::from_secs(4 * 60 + 59));
    assert!(j.tick().is_empty());
    assert_eq!(status(&j, "cart-a", "j1"), S::InProgress);
    // Reset: five minutes from now.
    update(
        &mut j,
        "cart-a",
        "j1",
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 5}),
    )
    .unwrap();
    clock.advance(Duration::from_secs(4 * 60));
    j.tick();
    assert_eq!(status(&j, "cart-a", "j1"), S::InProgress);
    clock.advance(Duration::from_secs(61));
    let out = j.tick();
    assert_eq!(status(&j, "cart-a", "j1"), S::TimedOut);
    assert_eq!(next_notes(&out, "cart-a"), [None]);
    assert_eq!(j.counts().timed_out, 1);
    let e = update(&mut j, "cart-a", "j1", json!({"status": "SUCCEEDED"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidStateTransition);
}

#[test]
fn the_in_progress_timer_of_the_job_times_out_without_a_tick() {
    let (clock, mut j) = setup();
    let mut c = job("j1", &["cart-a"]);
    c.timeout_config = Some(TimeoutConfig {
        in_progress_timeout_in_minutes: 10,
    });
    j.create_job(c).unwrap();
    // QUEUED executions never time out.
    clock.advance(Duration::from_secs(3600));
    j.tick();
    assert_eq!(status(&j, "cart-a", "j1"), S::Queued);
    start_next(&mut j, "cart-a", json!({}));
    clock.advance(Duration::from_secs(600));
    // A request applies the timers before it is answered.
    let e = update(&mut j, "cart-a", "j1", json!({"status": "SUCCEEDED"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidStateTransition);
    assert_eq!(status(&j, "cart-a", "j1"), S::TimedOut);
}

#[test]
fn cancel_leaves_in_progress_executions_running_unless_forced() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a", "cart-b"])).unwrap();
    start_next(&mut j, "cart-a", json!({}));
    let out = j.cancel_job("j1", false).unwrap();
    assert_eq!(status(&j, "cart-b", "j1"), S::Canceled);
    assert_eq!(next_notes(&out, "cart-b"), [None]);
    assert_eq!(status(&j, "cart-a", "j1"), S::InProgress);
    assert_eq!(j.job_status("j1"), Some(JobStatus::Canceled));
    // The device may still finish it.
    update(&mut j, "cart-a", "j1", json!({"status": "SUCCEEDED"})).unwrap();
    assert_eq!(status(&j, "cart-a", "j1"), S::Succeeded);

    j.create_job(job("j2", &["cart-a"])).unwrap();
    start_next(&mut j, "cart-a", json!({}));
    j.cancel_job("j2", true).unwrap();
    assert_eq!(status(&j, "cart-a", "j2"), S::Canceled);
    let e = update(&mut j, "cart-a", "j2", json!({"status": "SUCCEEDED"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidStateTransition);
    assert_eq!(j.counts().canceled, 2);
    assert_eq!(
        j.cancel_job("nope", false),
        Err(JobAdminError::NoSuchJob("nope".into()))
    );
}

#[test]
fn the_rollout_creates_at_most_maximum_per_minute() {
    let (clock, mut j) = setup();
    let mut c = job("j1", &["c1", "c2", "c3", "c4", "c5"]);
    c.job_executions_rollout_config = Some(RolloutConfig {
        maximum_per_minute: 2,
    });
    j.create_job(c).unwrap();
    let created = |j: &Jobs| j.executions("j1").len();
    assert_eq!(created(&j), 2);
    clock.advance(Duration::from_secs(59));
    j.tick();
    assert_eq!(created(&j), 2);
    clock.advance(Duration::from_secs(1));
    let out = j.tick();
    assert_eq!(created(&j), 4);
    assert_eq!(next_notes(&out, "c3"), [Some("j1".to_owned())]);
    clock.advance(Duration::from_secs(60));
    j.tick();
    assert_eq!(created(&j), 5);
    // Canceling drops targets not rolled out yet.
    let mut c = job("j2", &["c1", "c2", "c3"]);
    c.job_executions_rollout_config = Some(RolloutConfig {
        maximum_per_minute: 1,
    });
    j.create_job(c).unwrap();
    j.cancel_job("j2", false).unwrap();
    clock.advance(Duration::from_secs(600));
    j.tick();
    assert_eq!(j.executions("j2").len(), 1);
    assert_eq!(j.counts().executions, 6);
}

fn abort_job(id: &str, targets: &[&str], failure_type: FailureType) -> JobConfig {
    let mut c = job(id, targets);
    c.abort_config = Some(AbortConfig {
        criteria_list: vec![AbortCriteria {
            failure_type,
            action: AbortAction::Cancel,
            threshold_percentage: 50.0,
            min_number_of_executed_things: 2,
        }],
    });
    c
}

#[test]
fn the_job_aborts_when_the_failure_share_reaches_the_threshold() {
    let (_, mut j) = setup();
    j.create_job(abort_job("j1", &["c1", "c2", "c3", "c4"], FailureType::All))
        .unwrap();
    update(&mut j, "c1", "j1", json!({"status": "REJECTED"})).unwrap();
    // One finished: under minNumberOfExecutedThings.
    assert_eq!(j.job_status("j1"), Some(JobStatus::InProgress));
    start_next(&mut j, "c3", json!({}));
    update(&mut j, "c2", "j1", json!({"status": "SUCCEEDED"})).unwrap();
    // 1 failure of 2 finished = 50 %: aborted.
    assert_eq!(j.job_status("j1"), Some(JobStatus::Canceled));
    assert!(j.aborted("j1"));
    assert_eq!(status(&j, "c4", "j1"), S::Canceled);
    assert_eq!(status(&j, "c3", "j1"), S::InProgress);
    assert_eq!(j.counts().jobs_aborted, 1);
}

#[test]
fn only_the_failure_type_named_counts_toward_the_abort() {
    let (clock, mut j) = setup();
    j.create_job(abort_job("j1", &["c1", "c2", "c3"], FailureType::TimedOut))
        .unwrap();
    update(&mut j, "c1", "j1", json!({"status": "FAILED"})).unwrap();
    update(&mut j, "c2", "j1", json!({"status": "REJECTED"})).unwrap();
    assert_eq!(j.job_status("j1"), Some(JobStatus::InProgress));
    assert!(!j.aborted("j1"));
    // A timeout is: 1 of 3 finished is 33 %, under 50 %.
    start_next(&mut j, "c3", json!({"stepTimeoutInMinutes": 1}));
    clock.advance(Duration::from_secs(60));
    j.tick();
    assert_eq!(status(&j, "c3", "j1"), S::TimedOut);
    assert!(!j.aborted("j1"));
    assert_eq!(j.job_status("j1"), Some(JobStatus::Completed));

    j.create_job(abort_job("j2", &["c1", "c2", "c3"], FailureType::TimedOut))
        .unwrap();
    for c in ["c1", "c2"] {
        start_next(&mut j, c, json!({"stepTimeoutInMinutes": 1}));
    }
    clock.advance(Duration::from_secs(60));
    j.tick();
    assert!(j.aborted("j2"));
    assert_eq!(status(&j, "c3", "j2"), S::Canceled);
}

#[test]
fn jobs_outside_aws_bounds_are_refused() {
    let (_, mut j) = setup();
    j.create_job(job("j1", &["cart-a"])).unwrap();
    assert_eq!(
        j.create_job(job("j1", &["cart-a"])),
        Err(JobAdminError::Exists("j1".into()))
    );
    assert!(matches!(
        j.create_job(job("bad id", &["cart-a"])),
        Err(JobAdminError::Invalid(_))
    ));
    assert!(matches!(
        j.create_job(job("j2", &[])),
        Err(JobAdminError::Invalid(_))
    ));
    let mut c = job("j3", &["cart-a"]);
    c.job_executions_rollout_config = Some(RolloutConfig {
        maximum_per_minute: 0,
    });
    assert!(matches!(j.create_job(c), Err(JobAdminError::Invalid(_))));
    // A job as AWS's CreateJob JSON.
    let c: JobConfig = serde_json::from_value(json!({
        "jobId": "j4", "targets": ["cart-a"], "document": doc(),
        "jobExecutionsRolloutConfig": {"maximumPerMinute": 10},
        "abortConfig": {"criteriaList": [{"failureType": "ALL", "action": "CANCEL",
            "thresholdPercentage": 10.5, "minNumberOfExecutedThings": 3}]},
        "timeoutConfig": {"inProgressTimeoutInMinutes": 30}
    }))
    .unwrap();
    j.create_job(c).unwrap();
    assert_eq!(j.counts().jobs_created, 2);
}
