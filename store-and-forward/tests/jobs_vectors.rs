//! Golden vectors of AWS IoT Jobs' device MQTT API (`vectors/v1/jobs/`,
//! sources in `vectors/v1/jobs/SOURCES.md`), the way `wire_vectors.rs`
//! holds our envelope: every vector is frozen in `vectors/MANIFEST.sha256`
//! (`wire_vectors.rs` checks the hashes), decodes into its type, and
//! encodes back to the same JSON: no field is lost or renamed.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use store_and_forward::wire::jobs::{
    self, DescribeRequest, ErrorCode, ErrorResponse, ExecutionResponse, GetPendingRequest,
    GetPendingResponse, JobDocument, JobDocumentError, JobExecutionStatus, JobExecutionsChanged,
    StartNextRequest, UpdateRequest, UpdateResponse,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v1/jobs")
}

fn vectors() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    out.sort();
    out
}

fn read(name: &str) -> (Vec<u8>, Value) {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    (bytes, value)
}

/// Decodes `name` as `T`, encodes it again, and compares the JSON values.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let (bytes, mut original) = read(name);
    let decoded: T = jobs::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again: Value = serde_json::from_slice(&jobs::encode(&decoded)).unwrap();
    // AWS's own example sends expectedVersion as a string; we send a number.
    if let Some(v) = original.get_mut("expectedVersion")
        && let Some(n) = v.as_str().and_then(|s| s.parse::<i64>().ok())
    {
        *v = n.into();
    }
    assert_eq!(again, original, "{name} does not round-trip");
    decoded
}

#[test]
fn every_jobs_vector_is_in_the_manifest() {
    let manifest = std::fs::read_to_string(dir().join("../../MANIFEST.sha256")).unwrap_or_default();
    let names = vectors();
    assert!(names.len() >= 20, "{names:?}");
    for n in names {
        assert!(
            manifest.contains(&format!("  v1/jobs/{n}\n")),
            "v1/jobs/{n} is not frozen in MANIFEST.sha256"
        );
    }
}

#[test]
fn every_jobs_vector_round_trips_through_its_type() {
    for name in vectors() {
        let kind = name.split('.').next().unwrap();
        let last = name.trim_end_matches(".json").rsplit('.').next().unwrap();
        match (kind, name.split('.').nth(1).unwrap_or("")) {
            ("notify", _) => {
                round_trip::<JobExecutionsChanged>(&name);
            }
            ("notify-next", _) | ("start-next" | "describe", "accepted") => {
                round_trip::<ExecutionResponse>(&name);
            }
            ("get", "request") => {
                round_trip::<GetPendingRequest>(&name);
            }
            ("get", "accepted") => {
                round_trip::<GetPendingResponse>(&name);
            }
            ("start-next", "request") => {
                round_trip::<StartNextRequest>(&name);
            }
            ("describe", "request") => {
                round_trip::<DescribeRequest>(&name);
            }
            ("update", "request") => {
                round_trip::<UpdateRequest>(&name);
            }
            ("update", "accepted") => {
                round_trip::<UpdateResponse>(&name);
            }
            (_, "rejected") => {
                let e = round_trip::<ErrorResponse>(&name);
                assert_ne!(e.code, ErrorCode::Other, "{name}");
            }
            ("document", _) => {
                let (_, v) = read(&name);
                let d = JobDocument::parse(Some(&v)).unwrap_or_else(|e| panic!("{name}: {e}"));
                if last == "unknown" {
                    assert!(matches!(d, JobDocument::Unknown { .. }), "{name}");
                } else {
                    assert_eq!(d.operation(), last, "{name}");
                    assert_eq!(d.to_value(), v, "{name} does not round-trip");
                }
            }
            _ => panic!(
                "vector {name}: no type for it; name it <call>.<request|accepted|rejected>[.x].json"
            ),
        }
    }
}

#[test]
fn the_vectors_carry_what_the_cart_reads() {
    // notify-next: the job, its status and version, and its document.
    let n = round_trip::<ExecutionResponse>("notify-next.json");
    let e = n.execution.unwrap();
    assert_eq!(
        (
            e.job_id.as_str(),
            e.status,
            e.version_number,
            e.execution_number
        ),
        ("other-job", JobExecutionStatus::InProgress, 1, Some(1))
    );
    assert_eq!(e.job_document, Some(serde_json::json!({"c": "d"})));
    // AWS's example document is not one of ours: the cart rejects it.
    assert_eq!(
        JobDocument::parse(e.job_document.as_ref()),
        Err(JobDocumentError::NoOperation)
    );
    assert_eq!(
        round_trip::<ExecutionResponse>("notify-next.empty.json").execution,
        None
    );
    // start-next: IN_PROGRESS, with our diagnostic upload.
    let s = round_trip::<ExecutionResponse>("start-next.accepted.json");
    assert_eq!(s.client_token.as_deref(), Some("client-001"));
    let e = s.execution.unwrap();
    assert_eq!(e.status, JobExecutionStatus::InProgress);
    assert_eq!(e.approximate_seconds_before_timed_out, Some(600));
    assert!(matches!(
        JobDocument::parse(e.job_document.as_ref()),
        Ok(JobDocument::DiagnosticUpload {
            max_bytes: 5_242_880,
            ..
        })
    ));
    // The update AWS shows, with its string expectedVersion.
    let u = round_trip::<UpdateRequest>("update.request.json");
    assert_eq!(u.expected_version, Some(1));
    assert_eq!(u.status_details.unwrap()["progress"], "50%");
    // VersionMismatch carries the current version.
    let r = round_trip::<ErrorResponse>("update.rejected.json");
    assert_eq!(r.code, ErrorCode::VersionMismatch);
    assert_eq!(r.execution_state.unwrap().version_number, 2);
    let notify = round_trip::<JobExecutionsChanged>("notify.json");
    assert_eq!(
        notify.jobs[&JobExecutionStatus::Queued][0].job_id,
        "this-job"
    );
}
