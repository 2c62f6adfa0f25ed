use super::document::RebootWhen;
use super::*;
use serde_json::json;

#[test]
fn topics_round_trip() {
    let cases = [
        (Topic::NotifyNext, "$aws/things/cart-7/jobs/notify-next"),
        (Topic::Notify, "$aws/things/cart-7/jobs/notify"),
        (
            Topic::Request(Call::GetPending),
            "$aws/things/cart-7/jobs/get",
        ),
        (
            Topic::Answer(Call::GetPending, Answer::Accepted),
            "$aws/things/cart-7/jobs/get/accepted",
        ),
        (
            Topic::Request(Call::StartNext),
            "$aws/things/cart-7/jobs/start-next",
        ),
        (
            Topic::Answer(Call::StartNext, Answer::Rejected),
            "$aws/things/cart-7/jobs/start-next/rejected",
        ),
        (
            Topic::Request(Call::Describe(JobRef::Next)),
            "$aws/things/cart-7/jobs/$next/get",
        ),
        (
            Topic::Answer(Call::Describe(JobRef::Next), Answer::Accepted),
            "$aws/things/cart-7/jobs/$next/get/accepted",
        ),
        (
            Topic::Request(Call::Describe(JobRef::Id("job-1".into()))),
            "$aws/things/cart-7/jobs/job-1/get",
        ),
        (
            Topic::Request(Call::Update("job-1".into())),
            "$aws/things/cart-7/jobs/job-1/update",
        ),
        (
            Topic::Answer(Call::Update("job-1".into()), Answer::Rejected),
            "$aws/things/cart-7/jobs/job-1/update/rejected",
        ),
    ];
    for (topic, name) in cases {
        assert_eq!(topic.name("cart-7"), name);
        assert_eq!(
            Topic::parse(name).unwrap(),
            ("cart-7".to_owned(), topic),
            "{name}"
        );
    }
}

#[test]
fn topics_that_are_not_the_jobs_api_are_refused() {
    for bad in [
        "carts/cart-7/down/x",
        "$aws/things/cart-7/shadow/get",
        "$aws/things//jobs/get",
        "$aws/things/cart 7/jobs/get",
        "$aws/things/cart-7/jobs/",
        "$aws/things/cart-7/jobs/$next/update",
        "$aws/things/cart-7/jobs/job.1/get",
        "$aws/things/cart-7/jobs/job-1/update/accepted/x",
        "$aws/things/cart-7/jobs/job-1/update/maybe",
        "$aws/things/cart-7/jobs/job-1/delete",
        "$aws/things/cart-7/jobs/notify-next/accepted",
    ] {
        assert!(
            matches!(Topic::parse(bad), Err(JobsError::Topic(_))),
            "{bad}"
        );
    }
    let long = "j".repeat(65);
    assert!(Topic::parse(&format!("$aws/things/c/jobs/{long}/get")).is_err());
}

#[test]
fn device_subscriptions_match_every_answer_topic() {
    let subs = device_subscriptions("cart-7");
    let matches = |filter: &str, topic: &str| {
        let f: Vec<_> = filter.split('/').collect();
        let t: Vec<_> = topic.split('/').collect();
        f.len() == t.len() && f.iter().zip(&t).all(|(a, b)| *a == "+" || a == b)
    };
    for call in [
        Call::GetPending,
        Call::StartNext,
        Call::Describe(JobRef::Next),
        Call::Describe(JobRef::Id("j".into())),
        Call::Update("j".into()),
    ] {
        for a in [Answer::Accepted, Answer::Rejected] {
            let t = Topic::Answer(call.clone(), a).name("cart-7");
            assert!(subs.iter().any(|f| matches(f, &t)), "{t}");
            assert!(!BACKEND_FILTERS.iter().any(|f| matches(f, &t)), "{t}");
        }
        let req = Topic::Request(call).name("cart-7");
        assert!(BACKEND_FILTERS.iter().any(|f| matches(f, &req)), "{req}");
        assert!(!subs.iter().any(|f| matches(f, &req)), "{req}");
    }
}

#[test]
fn field_names_are_aws_ones() {
    let mut u = UpdateRequest::new(JobExecutionStatus::Rejected, 3);
    u.status_details = Some([("reason".to_owned(), "unknown operation".to_owned())].into());
    u.step_timeout_in_minutes = Some(5);
    u.client_token = Some("t1".into());
    assert_eq!(
        String::from_utf8(encode(&u)).unwrap(),
        r#"{"status":"REJECTED","statusDetails":{"reason":"unknown operation"},"expectedVersion":3,"stepTimeoutInMinutes":5,"clientToken":"t1"}"#
    );
    let e: ErrorResponse = decode(
        br#"{"code":"VersionMismatch","message":"no","clientToken":"t1","timestamp":5,
            "executionState":{"status":"IN_PROGRESS","versionNumber":4}}"#,
    )
    .unwrap();
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    assert_eq!(e.execution_state.unwrap().version_number, 4);
}

#[test]
fn unknown_fields_and_codes_are_tolerated() {
    let n: NextJobExecutionChanged = decode(
        br#"{"timestamp":1,"newField":[1,2],"execution":{"jobId":"j","status":"QUEUED",
            "queuedAt":1,"lastUpdatedAt":1,"versionNumber":1,"executionNumber":1,"extra":{}}}"#,
    )
    .unwrap();
    assert_eq!(n.execution.unwrap().job_id, "j");
    let e: ErrorResponse = decode(br#"{"code":"SomethingNew","message":"m"}"#).unwrap();
    assert_eq!(e.code, ErrorCode::Other);
    // Nothing pending: no execution.
    let n: NextJobExecutionChanged = decode(br#"{"timestamp":9}"#).unwrap();
    assert_eq!(n.execution, None);
}

#[test]
fn malformed_payloads_are_typed_errors() {
    let bad: [&[u8]; 6] = [
        b"",
        b"not json",
        br#"{"execution":{"jobId":"j","status":"DONE"}}"#,
        br#"{"execution":{"status":"QUEUED"}}"#,
        br#"{"execution":{"jobId":7,"status":"QUEUED"}}"#,
        br#"[1,2]"#,
    ];
    for b in bad {
        assert!(
            matches!(decode::<ExecutionResponse>(b), Err(JobsError::Json(_))),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
    assert!(matches!(
        decode::<UpdateRequest>(br#"{"expectedVersion":1}"#),
        Err(JobsError::Json(_))
    ));
    let u: UpdateRequest = decode(br#"{"status":"FAILED","expectedVersion":"7"}"#).unwrap();
    assert_eq!(u.expected_version, Some(7));
    assert!(decode::<UpdateRequest>(br#"{"status":"FAILED","expectedVersion":"x"}"#).is_err());
    assert!(decode::<UpdateRequest>(br#"{"status":"FAILED","expectedVersion":1.5}"#).is_err());
    let huge = vec![b' '; MAX_PAYLOAD + 1];
    assert!(matches!(
        decode::<ExecutionResponse>(&huge),
        Err(JobsError::TooLarge(_))
    ));
}

#[test]
fn statuses() {
    use JobExecutionStatus::*;
    for s in [Queued, InProgress] {
        assert!(!s.is_terminal());
    }
    for s in [Succeeded, Failed, TimedOut, Rejected, Removed, Canceled] {
        assert!(s.is_terminal());
    }
    assert!(InProgress.device_may_set() && Rejected.device_may_set());
    assert!(!TimedOut.device_may_set() && !Canceled.device_may_set() && !Queued.device_may_set());
    assert_eq!(serde_json::to_string(&TimedOut).unwrap(), "\"TIMED_OUT\"");
}

#[test]
fn job_documents() {
    let ok = [
        json!({"operation":"out_of_service"}),
        json!({"operation":"out_of_service","reason":"wheel broken"}),
        json!({"operation":"return_to_service"}),
        json!({"operation":"catalog_resync"}),
        json!({"operation":"diagnostic_upload","url":"https://diag.example/u?sig=1","max_bytes":1000}),
        json!({"operation":"rotate_certificate"}),
        json!({"operation":"log_level","level":"debug","minutes":30}),
        json!({"operation":"reboot","when":"quiet"}),
        json!({"operation":"update","version":"1.2.0","bundle_url":"https://u.example/b.raucb",
               "size":1024,"sha256":"ab".repeat(32),"compatible":"cart-x86","allow_downgrade":false}),
    ];
    for v in ok {
        let d = JobDocument::parse(Some(&v)).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(d.operation(), v["operation"]);
        assert_eq!(JobDocument::parse(Some(&d.to_value())).unwrap(), d);
    }
    // Extra fields (a newer backend) are ignored.
    let d = JobDocument::parse(Some(
        &json!({"operation":"reboot","when":"quiet","note":"x"}),
    ));
    assert_eq!(
        d.unwrap(),
        JobDocument::Reboot {
            when: RebootWhen::Quiet
        }
    );
    let u = JobDocument::parse(Some(&json!({"operation":"factory_reset","now":true}))).unwrap();
    assert_eq!(
        u,
        JobDocument::Unknown {
            operation: "factory_reset".into()
        }
    );
    assert_eq!(u.to_value(), json!({"operation":"factory_reset"}));
}

#[test]
fn bad_job_documents_say_why() {
    assert_eq!(JobDocument::parse(None), Err(JobDocumentError::NoOperation));
    assert_eq!(
        JobDocument::parse(Some(&json!({"operation": 3}))),
        Err(JobDocumentError::NoOperation)
    );
    assert_eq!(
        JobDocument::parse(Some(&json!("reboot"))),
        Err(JobDocumentError::NoOperation)
    );
    for (v, needle) in [
        (
            json!({"operation":"diagnostic_upload","url":"http://diag.example/u","max_bytes":10}),
            "not https",
        ),
        (
            json!({"operation":"diagnostic_upload","url":"file:///etc/passwd","max_bytes":10}),
            "not https",
        ),
        (
            json!({"operation":"diagnostic_upload","url":"https://d.example/u","max_bytes":0}),
            "max_bytes",
        ),
        (
            json!({"operation":"diagnostic_upload","url":"https://d.example/u"}),
            "max_bytes",
        ),
        (
            json!({"operation":"log_level","level":"loud","minutes":5}),
            "loud",
        ),
        (
            json!({"operation":"log_level","level":"info","minutes":100000}),
            "minutes",
        ),
        (json!({"operation":"reboot","when":"now"}), "now"),
        (json!({"operation":"reboot"}), "when"),
        (
            json!({"operation":"update","version":"1","bundle_url":"https://u.example/b",
                   "size":1,"sha256":"xyz","compatible":"c"}),
            "sha256",
        ),
    ] {
        match JobDocument::parse(Some(&v)) {
            Err(JobDocumentError::Invalid { operation, reason }) => {
                assert_eq!(operation, v["operation"]);
                assert!(reason.contains(needle), "{v}: {reason}");
            }
            other => panic!("{v}: {other:?}"),
        }
    }
}

const VECTORS: [&[u8]; 4] = [
    include_bytes!("../../../tests/vectors/v1/jobs/start-next.accepted.json"),
    include_bytes!("../../../tests/vectors/v1/jobs/update.request.json"),
    include_bytes!("../../../tests/vectors/v1/jobs/update.rejected.json"),
    include_bytes!("../../../tests/vectors/v1/jobs/notify.json"),
];

proptest::proptest! {
    /// A vector with one byte changed, or a topic with one character
    /// changed, is read or refused: never a panic.
    #[test]
    fn mutated_input_never_panics(
        v in 0..VECTORS.len(),
        at in proptest::prelude::any::<proptest::sample::Index>(),
        byte in proptest::prelude::any::<u8>(),
        topic_at in 0usize..48,
    ) {
        let mut bytes = VECTORS[v].to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode::<ExecutionResponse>(&bytes);
        let _ = decode::<UpdateRequest>(&bytes);
        let _ = decode::<ErrorResponse>(&bytes);
        let _ = decode::<JobExecutionsChanged>(&bytes);
        if let Ok(value) = decode::<ExecutionResponse>(&bytes)
            && let Some(e) = value.execution
        {
            let _ = JobDocument::parse(e.job_document.as_ref());
        }
        let mut topic = Topic::Answer(Call::Update("job-1".into()), Answer::Accepted)
            .name("cart-7")
            .into_bytes();
        let t = topic_at % topic.len();
        topic[t] = byte;
        if let Ok(topic) = String::from_utf8(topic) {
            let _ = Topic::parse(&topic);
        }
    }
}
