//! AWS IoT Jobs through a real mosquitto: the emulator answers a cart that
//! speaks the device MQTT API from `wire::jobs` with its own certificate,
//! and the ACL confines each cart to `$aws/things/{its id}/jobs/#`. The
//! clock is manual, so the step timeout passes without waiting.

use std::sync::Arc;
use std::time::Duration;

use backend_emulator::jobs::{JobConfig, ManualClock};
use backend_emulator::{Emulator, EmulatorConfig, JobsConfig};
use bytes::Bytes;
use mqtt_harness::Broker;
use serde_json::json;
use store_and_forward::uplink::{
    self, Incoming, LinkConfig, LinkError, LinkHandle, PublishProps, QoS, SwappableClientCert,
};
use store_and_forward::wire::jobs::{
    self, Answer, Call, ErrorCode, ErrorResponse, ExecutionResponse, JobDocument,
    JobExecutionStatus, JobRef, Topic, UpdateResponse,
};
use tokio::sync::mpsc;

fn link(broker: &Broker, id: &str) -> LinkConfig {
    LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: id.into(),
        backoff_base_ms: 50,
        backoff_max_ms: 500,
        ca_file: Some(broker.ca_pem_path()),
        server_name: Some("localhost".into()),
        ..LinkConfig::default()
    }
}

/// A cart's Jobs client: its own certificate, AWS's topics.
struct Cart {
    id: String,
    link: LinkHandle,
    rx: mpsc::Receiver<Incoming>,
}

impl Cart {
    async fn connect(broker: &Broker, id: &str, extra: &[String]) -> Cart {
        let (c, k) = broker.client_cert(id);
        let key = uplink::certified_key_from_pem_files(&c, &k).unwrap();
        let subs = jobs::device_subscriptions(id)
            .into_iter()
            .chain(extra.iter().cloned())
            .map(|t| (t, QoS::AtLeastOnce))
            .collect();
        let (link, rx) = uplink::start(
            link(broker, id),
            Some(SwappableClientCert::new(key).into()),
            subs,
        )
        .unwrap();
        assert!(link.wait_up(Duration::from_secs(20)).await);
        Cart {
            id: id.to_owned(),
            link,
            rx,
        }
    }

    async fn publish(&self, topic: &str, body: serde_json::Value) {
        self.link
            .publish(
                topic,
                Bytes::from(serde_json::to_vec(&body).unwrap()),
                QoS::AtLeastOnce,
                PublishProps::default(),
            )
            .await
            .unwrap();
    }

    /// The next message on `topic`, skipping others.
    async fn next_on(&mut self, topic: &str) -> Incoming {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing on {topic}", self.id))
                .expect("link open");
            if m.topic == topic {
                return m;
            }
        }
    }

    /// Calls the API and waits for the answer.
    async fn call(
        &mut self,
        call: Call,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ErrorResponse> {
        self.publish(&Topic::Request(call.clone()).name(&self.id), body)
            .await;
        let accepted = Topic::Answer(call.clone(), Answer::Accepted).name(&self.id);
        let rejected = Topic::Answer(call, Answer::Rejected).name(&self.id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .expect("an answer")
                .expect("link open");
            if m.topic == accepted {
                return Ok(serde_json::from_slice(&m.payload).unwrap());
            }
            if m.topic == rejected {
                return Err(jobs::decode(&m.payload).unwrap());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_runs_its_jobs_through_mosquitto_and_only_its_own() {
    let broker = Broker::start();
    let clock = Arc::new(ManualClock::new(1_795_000_000_000));
    let (cert, key) = broker.client_cert(mqtt_harness::BACKEND_IDENTITY);
    let em = Emulator::start_with(
        EmulatorConfig {
            link: link(&broker, "backend"),
            identity: Some((cert, key)),
            fixtures: std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures")),
        },
        None,
        Some(JobsConfig {
            clock: clock.clone(),
            tick_every: None,
        }),
    )
    .await
    .unwrap();
    assert!(em.wait_up(Duration::from_secs(20)).await);
    let service = em.jobs().unwrap();

    // cart-b also tries to listen to cart-a's notifications.
    let mut a = Cart::connect(&broker, "cart-a", &[]).await;
    let mut b = Cart::connect(&broker, "cart-b", &[Topic::NotifyNext.name("cart-a")]).await;

    let document = json!({
        "operation": "diagnostic_upload",
        "url": "https://diagnostics.example.com/u?sig=1",
        "max_bytes": 1_048_576
    });
    service
        .create_job(JobConfig::new("diag-1", &["cart-a", "cart-b"], document))
        .await
        .unwrap();
    let note = a.next_on(&Topic::NotifyNext.name("cart-a")).await;
    let note: ExecutionResponse = jobs::decode(&note.payload).unwrap();
    assert_eq!(note.execution.unwrap().job_id, "diag-1");

    // cart-b cannot start cart-a's execution: the broker refuses the publish.
    let refused = b
        .link
        .publish(
            &Topic::Request(Call::StartNext).name("cart-a"),
            Bytes::from_static(b"{}"),
            QoS::AtLeastOnce,
            PublishProps::default(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(LinkError::Rejected {
                reason_code: 135,
                ..
            })
        ),
        "{refused:?}"
    );
    b.next_on(&Topic::NotifyNext.name("cart-b")).await;

    let started: ExecutionResponse = serde_json::from_value(
        a.call(Call::StartNext, json!({"clientToken": "a-1"}))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(started.client_token.as_deref(), Some("a-1"));
    let e = started.execution.unwrap();
    // Version 2: started once, by cart-a, not also by cart-b's attempt.
    assert_eq!(
        (e.status, e.version_number),
        (JobExecutionStatus::InProgress, 2)
    );
    assert!(matches!(
        JobDocument::parse(e.job_document.as_ref()),
        Ok(JobDocument::DiagnosticUpload {
            max_bytes: 1_048_576,
            ..
        })
    ));

    // A stale version is refused with the current state.
    let stale = a
        .call(
            Call::Update("diag-1".into()),
            json!({"status": "SUCCEEDED", "expectedVersion": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::VersionMismatch);
    assert_eq!(stale.execution_state.unwrap().version_number, 2);
    let done: UpdateResponse = serde_json::from_value(
        a.call(
            Call::Update("diag-1".into()),
            json!({"status": "SUCCEEDED", "expectedVersion": 2,
                   "statusDetails": {"uploaded": "5120"}, "includeJobExecutionState": true}),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        done.execution_state.unwrap().status,
        JobExecutionStatus::Succeeded
    );
    let note = a.next_on(&Topic::NotifyNext.name("cart-a")).await;
    assert_eq!(
        jobs::decode::<ExecutionResponse>(&note.payload)
            .unwrap()
            .execution,
        None
    );

    // cart-b starts with a one-minute step timer and goes quiet.
    b.call(Call::StartNext, json!({"stepTimeoutInMinutes": 1}))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    service.tick().await.unwrap();
    let note = b.next_on(&Topic::NotifyNext.name("cart-b")).await;
    assert_eq!(
        jobs::decode::<ExecutionResponse>(&note.payload)
            .unwrap()
            .execution,
        None
    );
    let e = b
        .call(Call::Describe(JobRef::Id("diag-1".into())), json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TerminalStateReached);
    assert_eq!(
        service.with(|j| j.execution("cart-b", "diag-1").unwrap().status),
        JobExecutionStatus::TimedOut
    );

    // cart-b never heard cart-a's notifications.
    while let Ok(m) = b.rx.try_recv() {
        assert!(!m.topic.contains("/cart-a/"), "cart-b got {}", m.topic);
    }
    let c = em.counts().jobs;
    assert_eq!(
        (c.executions, c.started, c.succeeded, c.timed_out),
        (2, 2, 1, 1)
    );
    // cart-a's start-next, two updates; cart-b's start-next and describe.
    assert_eq!(c.requests, 5);
    assert_eq!(c.rejected_requests, 2);
    a.link.shutdown().await;
    b.link.shutdown().await;
    em.shutdown().await;
}
