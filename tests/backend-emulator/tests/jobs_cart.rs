//! The cart's Jobs client (`store_and_forward::sync::jobs`) against the
//! emulator's AWS IoT Jobs through a real mosquitto: a job runs once and
//! ends SUCCEEDED; an unknown operation is REJECTED with its reason; a job
//! in hand when the cart stops is resumed by the next start, not started
//! twice, and an outcome decided before a stop is sent again, not run
//! again; duplicated or stale notifications change nothing; a job cancelled while
//! in progress is dropped; a version conflict is reconciled; an outcome
//! decided before the IN_PROGRESS answer arrives still ends the job.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backend_emulator::jobs::JobConfig;
use backend_emulator::{Emulator, EmulatorConfig, JobsConfig};
use common::*;
use mqtt_harness::Broker;
use serde_json::json;
use store_and_forward::sync::jobs::{CURRENT_KEY, JobOutcome, JobPhase, LAST_KEY, details};
use store_and_forward::sync::{AppEvent, SyncConfig};
use store_and_forward::wire::jobs::{JobDocument, JobExecutionStatus};
use tokio::sync::mpsc;

const CART: &str = "cart-0700";

async fn emulator_with_jobs(broker: &Broker) -> Emulator {
    let (cert, key) = broker.client_cert("backend");
    let em = Emulator::start_with(
        EmulatorConfig {
            link: link_config(broker, broker.port(), "backend"),
            identity: Some((cert, key)),
            fixtures: fixtures_dir(),
        },
        None,
        Some(JobsConfig::default()),
    )
    .await
    .unwrap();
    assert!(em.wait_up(Duration::from_secs(20)).await);
    em
}

fn sync() -> SyncConfig {
    SyncConfig {
        drain_interval_ms: 100,
        telemetry_linger_secs: 0,
        ..SyncConfig::default()
    }
}

fn status(em: &Emulator, job: &str) -> Option<JobExecutionStatus> {
    em.jobs()
        .unwrap()
        .with(|j| j.execution(CART, job))
        .map(|e| e.status)
}

async fn wait_status(em: &Emulator, job: &str, want: JobExecutionStatus) {
    let what = format!("{job} {want:?}");
    eventually(20, &what, || status(em, job) == Some(want)).await;
}

async fn next_job(
    rx: &mut mpsc::Receiver<AppEvent>,
) -> (
    store_and_forward::sync::jobs::JobRun,
    store_and_forward::sync::jobs::JobDone,
) {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(AppEvent::Job { run, done })) => return (run, done),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("no job reached the application"),
        }
    }
}

fn start(
    broker: &Broker,
    ledger: Arc<std::sync::Mutex<store_and_forward::Ledger>>,
    dir: std::path::PathBuf,
) -> (Cart, mpsc::Receiver<AppEvent>) {
    let (tx, rx) = mpsc::channel(8);
    let cart = Cart::start_on_with_app(
        link_config(broker, broker.port(), CART),
        broker.client_cert(CART),
        CART,
        sync(),
        ledger,
        dir,
        tx,
    );
    (cart, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_once_across_restarts_and_cancellations() {
    init_logs();
    let broker = Broker::start();
    let em = emulator_with_jobs(&broker).await;
    let jobs = em.jobs().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path(), roomy_limits());
    let (cart, mut rx) = start(&broker, ledger.clone(), dir.path().to_owned());
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);

    // 1. A job the cart knows: handed to the application once, SUCCEEDED.
    jobs.create_job(JobConfig::new(
        "oos-1",
        &[CART],
        json!({"operation": "out_of_service", "reason": "cleaning"}),
    ))
    .await
    .unwrap();
    let (run, done) = next_job(&mut rx).await;
    assert_eq!(run.job_id, "oos-1");
    assert!(!run.resumed);
    assert_eq!(
        run.document,
        JobDocument::OutOfService {
            reason: Some("cleaning".into())
        }
    );
    wait_status(&em, "oos-1", JobExecutionStatus::InProgress).await;
    let rec = cart.uplink.job_record().expect("recorded while running");
    assert_eq!(rec.phase, JobPhase::Running);
    // Progress reaches the backend's statusDetails.
    done.progress(details("step", "waiting for an idle cart"));
    eventually(20, "progress", || {
        jobs.with(|j| j.execution(CART, "oos-1")).is_some_and(|e| {
            e.status_details.get("step").map(String::as_str) == Some("waiting for an idle cart")
        })
    })
    .await;
    done.finish(JobOutcome::Succeeded(details("service", "out")));
    wait_status(&em, "oos-1", JobExecutionStatus::Succeeded).await;
    eventually(20, "record cleared", || cart.uplink.job_record().is_none()).await;
    let last = ledger
        .lock()
        .unwrap()
        .state(LAST_KEY)
        .unwrap()
        .expect("last job");
    assert!(
        last.contains("oos-1") && last.contains("SUCCEEDED"),
        "{last}"
    );
    assert!(rx.try_recv().is_err(), "handed to the application once");

    // 2. An operation this firmware does not know: REJECTED, with why.
    jobs.create_job(JobConfig::new(
        "fly-1",
        &[CART],
        json!({"operation": "fly"}),
    ))
    .await
    .unwrap();
    wait_status(&em, "fly-1", JobExecutionStatus::Rejected).await;
    let why = jobs
        .with(|j| j.execution(CART, "fly-1"))
        .unwrap()
        .status_details["reason"]
        .clone();
    assert!(why.contains("fly"), "{why}");

    // 3. A job in hand when the cart stops: the next start resumes it (the
    // application is told so), it is not started a second time.
    jobs.create_job(JobConfig::new(
        "level-1",
        &[CART],
        json!({"operation": "log_level", "level": "debug", "minutes": 5}),
    ))
    .await
    .unwrap();
    let (run, done) = next_job(&mut rx).await;
    assert_eq!(run.job_id, "level-1");
    wait_status(&em, "level-1", JobExecutionStatus::InProgress).await;
    drop(done); // the cart stops before the job ends
    cart.stop().await;
    drop(rx);
    let (cart, mut rx) = start(&broker, ledger.clone(), dir.path().to_owned());
    let (run, done) = next_job(&mut rx).await;
    assert_eq!(run.job_id, "level-1");
    assert!(run.resumed, "resumed after the restart");
    // Duplicated notifications (a reconnect asks again): no second run.
    cart.uplink.link().reconnect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        rx.try_recv().is_err(),
        "a repeated $next/get runs nothing again"
    );
    // Notifications out of order: a stale "nothing next" and a "next" of
    // another job do not drop the job in hand; the cart asks for that job
    // itself, and it is still IN_PROGRESS.
    let notify = format!("$aws/things/{CART}/jobs/notify-next");
    let requests_before = jobs.with(|j| j.counts()).requests;
    em.publish_raw(&notify, br#"{"timestamp":1}"#.to_vec())
        .await
        .unwrap();
    em.publish_raw(
        &notify,
        json!({"timestamp": 2, "execution": {
            "jobId": "other-1", "thingName": CART, "status": "QUEUED",
            "queuedAt": 1, "lastUpdatedAt": 1, "versionNumber": 1, "executionNumber": 1,
            "jobDocument": {"operation": "catalog_resync"}}})
        .to_string()
        .into_bytes(),
    )
    .await
    .unwrap();
    // Each one is answered by a request of the cart (a describe of its
    // job), and the answers by nothing.
    eventually(20, "the cart asked", || {
        jobs.with(|j| j.counts()).requests >= requests_before + 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cart.uplink.job_record().map(|r| r.job_id).as_deref(),
        Some("level-1"),
        "a stale notification dropped the job in hand"
    );
    assert!(
        rx.try_recv().is_err(),
        "the stale notifications ran nothing"
    );
    done.finish(JobOutcome::Succeeded(details(
        "log_level",
        "debug for 5 min",
    )));
    wait_status(&em, "level-1", JobExecutionStatus::Succeeded).await;

    // 4. An outcome decided but not acknowledged before a stop is sent
    // again by the next start, never run again.
    jobs.create_job(JobConfig::new(
        "rot-1",
        &[CART],
        json!({"operation": "rotate_certificate"}),
    ))
    .await
    .unwrap();
    let (run, done) = next_job(&mut rx).await;
    assert_eq!(run.job_id, "rot-1");
    wait_status(&em, "rot-1", JobExecutionStatus::InProgress).await;
    // The link goes first, so the final update cannot leave.
    broker.stop();
    done.finish(JobOutcome::Succeeded(details("rotation", "started")));
    eventually(20, "outcome recorded", || {
        cart.uplink
            .job_record()
            .is_some_and(|r| matches!(r.phase, JobPhase::Finishing { .. }))
    })
    .await;
    cart.stop().await;
    drop(rx);
    broker.resume();
    assert!(em.wait_up(Duration::from_secs(30)).await);
    let (cart, mut rx) = start(&broker, ledger.clone(), dir.path().to_owned());
    wait_status(&em, "rot-1", JobExecutionStatus::Succeeded).await;
    eventually(20, "record cleared", || cart.uplink.job_record().is_none()).await;
    assert!(rx.try_recv().is_err(), "the decided job is not run again");

    // 5. Cancelled (force) while in progress: the cart's outcome is
    // refused by the backend and the job dropped.
    jobs.create_job(JobConfig::new(
        "rtn-1",
        &[CART],
        json!({"operation": "return_to_service"}),
    ))
    .await
    .unwrap();
    let (_run, done) = next_job(&mut rx).await;
    wait_status(&em, "rtn-1", JobExecutionStatus::InProgress).await;
    jobs.cancel_job("rtn-1", true).await.unwrap();
    wait_status(&em, "rtn-1", JobExecutionStatus::Canceled).await;
    done.finish(JobOutcome::Succeeded(details("service", "in")));
    eventually(20, "cancelled job dropped", || {
        cart.uplink.job_record().is_none()
    })
    .await;
    assert_eq!(status(&em, "rtn-1"), Some(JobExecutionStatus::Canceled));
    assert!(
        ledger.lock().unwrap().state(CURRENT_KEY).unwrap().is_none(),
        "nothing left in hand"
    );

    // 6. A version conflict (the record's version is stale): the cart asks
    // for the execution, takes its version and sends the outcome again.
    jobs.create_job(JobConfig::new(
        "oos-2",
        &[CART],
        json!({"operation": "out_of_service"}),
    ))
    .await
    .unwrap();
    let (_run, done) = next_job(&mut rx).await;
    wait_status(&em, "oos-2", JobExecutionStatus::InProgress).await;
    // The cart has taken the IN_PROGRESS answer's version.
    eventually(20, "version taken", || {
        let backend = jobs
            .with(|j| j.execution(CART, "oos-2"))
            .map(|e| e.version_number);
        cart.uplink.job_record().map(|r| r.version) == backend
    })
    .await;
    let refused_before = jobs.with(|j| j.counts()).rejected_requests;
    let mut stale = cart.uplink.job_record().unwrap();
    stale.version = 0;
    let stale = serde_json::to_string(&stale).unwrap();
    ledger
        .lock()
        .unwrap()
        .set_states_durable(
            &[(CURRENT_KEY, Some(&stale))],
            store_and_forward::Timestamp::now(),
        )
        .unwrap();
    done.finish(JobOutcome::Succeeded(details("service", "out")));
    wait_status(&em, "oos-2", JobExecutionStatus::Succeeded).await;
    eventually(20, "record cleared", || cart.uplink.job_record().is_none()).await;
    assert!(
        jobs.with(|j| j.counts()).rejected_requests > refused_before,
        "the stale update was refused first"
    );

    // 7. An outcome decided at once, before the IN_PROGRESS update is
    // answered: that answer is not the outcome's; the job ends SUCCEEDED.
    for n in 0..3 {
        let id = format!("oos-fast-{n}");
        jobs.create_job(JobConfig::new(
            &id,
            &[CART],
            json!({"operation": "out_of_service"}),
        ))
        .await
        .unwrap();
        let (run, done) = next_job(&mut rx).await;
        assert_eq!(run.job_id, id);
        done.finish(JobOutcome::Succeeded(details("service", "out")));
        wait_status(&em, &id, JobExecutionStatus::Succeeded).await;
        eventually(20, "record cleared", || cart.uplink.job_record().is_none()).await;
    }

    cart.stop().await;
    em.shutdown().await;
}
