//! Remote jobs through the daemon itself (`cart-app run` as systemd starts
//! it, the demo's world: mosquitto, the emulator with AWS IoT Jobs, the
//! simulators): an operator takes the cart out of service; it refuses to
//! sell, also after a restart; back in service, it sells again. Each job
//! ends SUCCEEDED at the backend and the journal entries carry its id.

mod support;

use std::time::Duration;

use backend_emulator::jobs::JobConfig;
use cart_app::demo::rig::CART;
use serde_json::json;
use store_and_forward::wire::jobs::JobExecutionStatus;
use support::rig::Rig;
use support::wait_until;

fn run_job(rig: &Rig, id: &str, document: serde_json::Value) {
    run_job_to(rig, id, document, JobExecutionStatus::Succeeded);
}

fn run_job_to(rig: &Rig, id: &str, document: serde_json::Value, status: JobExecutionStatus) {
    let world = rig.world.as_ref().unwrap();
    let jobs = world
        .emulator
        .jobs()
        .expect("the demo's emulator runs Jobs");
    world
        .block_on(jobs.create_job(JobConfig::new(id, &[CART], document)))
        .unwrap();
    let done = wait_until(30, || {
        jobs.with(|j| j.execution(CART, id)).map(|e| e.status) == Some(status)
    });
    assert!(done, "{id}: {:?}", jobs.with(|j| j.execution(CART, id)));
}

fn payments(rig: &Rig) -> u64 {
    rig.status()["ledger"]["payments"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
}

fn online(rig: &Rig, log: &std::sync::Mutex<String>) {
    let mut seen = Vec::new();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("STATUS=link up"), 40),
        "never online: {seen:?}\n{}",
        log.lock().unwrap()
    );
}

#[test]
fn out_of_service_by_a_job_holds_across_a_restart_until_returned() {
    let mut rig = Rig::new();
    let (daemon, log) = rig.start();
    online(&rig, &log);

    run_job(
        &rig,
        "oos-7",
        json!({"operation": "out_of_service", "reason": "wheel repair"}),
    );
    let status = rig.status();
    assert_eq!(
        status["ledger"]["jobs"]["operator.out_of_service"], "wheel repair",
        "{status}"
    );
    assert!(
        status["ledger"]["jobs"]["jobs.last"]
            .as_str()
            .is_some_and(|l| l.contains("oos-7")),
        "{status}"
    );
    let (_, text, _) = rig.cartctl(&["status"]);
    assert!(
        text.contains("OUT OF SERVICE by an operator (wheel repair)"),
        "{text}"
    );
    assert!(
        log.lock().unwrap().contains("job_id=oos-7"),
        "the job's entries carry its id:\n{}",
        log.lock().unwrap()
    );
    // Out of service: a shopper cannot pay.
    rig.pay_online("4006381333931");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(payments(&rig), 0, "no payment out of service");

    // A restart keeps it.
    drop(daemon);
    let (daemon, log) = rig.start();
    online(&rig, &log);
    std::thread::sleep(Duration::from_secs(1));
    rig.pay_online("4006381333931");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(payments(&rig), 0, "still out of service after a restart");

    // Back in service: it sells.
    run_job(&rig, "rts-7", json!({"operation": "return_to_service"}));
    assert!(rig.status()["ledger"]["jobs"]["operator.out_of_service"].is_null());
    std::thread::sleep(Duration::from_millis(500));
    rig.tap("back");
    rig.pay_online("4006381333931");
    assert!(
        wait_until(30, || payments(&rig) == 1),
        "sells again:\n{}",
        log.lock().unwrap()
    );
    drop(daemon);
}

fn details(rig: &Rig, id: &str) -> std::collections::BTreeMap<String, String> {
    let world = rig.world.as_ref().unwrap();
    let jobs = world.emulator.jobs().unwrap();
    jobs.with(|j| j.execution(CART, id))
        .map(|e| e.status_details)
        .unwrap_or_default()
}

/// A diagnostic upload: the bundle reaches the object store by HTTPS PUT
/// (the pre-signed URL's token checked), trusted through `[jobs]
/// https_ca_file`, with the daemon's journal from its socket, within the
/// job's cap (the oldest journal lines left out, and counted), and the URL
/// (a credential) never in the log. A URL the store did not sign ends the
/// job FAILED with the server's answer. The journal socket here is a stand-in
/// for `cart-journal.socket` (a listener writing lines and closing); the
/// unit itself is tested in the QEMU suite.
#[test]
fn a_diagnostic_upload_job_puts_the_bundle_within_its_cap() {
    use backend_emulator::ObjectStore;
    use std::io::Write;

    let rig = Rig::new();
    let world = rig.world.as_ref().unwrap();
    let pki = world.broker().pki();
    let store = world
        .block_on(ObjectStore::start(
            &pki.server_cert_path(),
            &pki.server_key_path(),
            "localhost",
        ))
        .expect("the object store starts");
    let journal = rig.dir.path().join("journal.sock");
    let listener = std::os::unix::net::UnixListener::bind(&journal).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            for i in 0..300 {
                let _ = writeln!(
                    conn,
                    "2026-12-04T06:00:00+0000 cart cart-app[7]: journal line {i}"
                );
            }
        }
    });
    let mut config = std::fs::read_to_string(&rig.config).unwrap();
    config.push_str(&format!(
        "\n[jobs]\nhttps_ca_file = {:?}\njournal_socket = {:?}\nupload_timeout_secs = 20\n",
        pki.ca_pem_path(),
        journal
    ));
    std::fs::write(&rig.config, config).unwrap();
    let (daemon, log) = rig.start();
    online(&rig, &log);

    // Room for everything.
    let url = store.upload_url("diag/cart/diag-1.json");
    run_job(
        &rig,
        "diag-1",
        json!({"operation": "diagnostic_upload", "url": url, "max_bytes": 1_048_576}),
    );
    let uploads = store.uploads();
    assert_eq!(uploads.len(), 1, "one upload");
    assert_eq!(uploads[0].name, "diag/cart/diag-1.json");
    assert_eq!(uploads[0].content_type.as_deref(), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&uploads[0].body).unwrap();
    assert_eq!(v["cart_id"], CART);
    assert_eq!(v["written_by"], "job diag-1");
    assert_eq!(v["daemon"]["config"]["cart_id"], CART, "{v}");
    assert!(v["daemon"]["status"]["ledger"].is_object(), "{v}");
    assert_eq!(v["journal_dropped_lines"], 0);
    let text = v["journal"].as_str().unwrap();
    assert!(
        text.starts_with("2026-12-04T06:00:00+0000 cart cart-app[7]: journal line 0"),
        "{text}"
    );
    assert!(text.ends_with("journal line 299"), "{text}");
    let d = details(&rig, "diag-1");
    assert_eq!(d["bytes"], uploads[0].body.len().to_string(), "{d:?}");
    assert_eq!(d["journal_lines"], "300", "{d:?}");

    // A cap smaller than the bundle: the newest lines kept, within the cap.
    let cap = uploads[0].body.len() as u64 - 8_000;
    let url = store.upload_url("diag/cart/diag-2.json");
    run_job(
        &rig,
        "diag-2",
        json!({"operation": "diagnostic_upload", "url": url, "max_bytes": cap}),
    );
    let small = store.uploads().pop().unwrap();
    assert!(
        small.body.len() as u64 <= cap,
        "{} > {cap}",
        small.body.len()
    );
    let v: serde_json::Value = serde_json::from_slice(&small.body).unwrap();
    let dropped = v["journal_dropped_lines"].as_u64().unwrap();
    assert!(dropped > 0, "{v}");
    assert!(v["journal"].as_str().unwrap().ends_with("journal line 299"));
    assert_eq!(
        details(&rig, "diag-2")["journal_dropped_lines"],
        dropped.to_string()
    );

    // A URL the store did not sign: FAILED with its answer, nothing stored.
    let forged = url.replace("token=", "token=00");
    run_job_to(
        &rig,
        "diag-3",
        json!({"operation": "diagnostic_upload", "url": forged, "max_bytes": 1_048_576}),
        JobExecutionStatus::Failed,
    );
    assert_eq!(store.uploads().len(), 2);
    assert!(store.refused() >= 1);
    let d = details(&rig, "diag-3");
    assert!(
        d.values().any(|v| v.contains("HTTP 403")),
        "the reason names the answer: {d:?}"
    );

    // The pre-signed URLs are credentials: never in the log.
    let text = log.lock().unwrap().clone();
    assert!(
        !text.contains("token="),
        "a URL's signature leaked:\n{text}"
    );
    assert!(text.contains("diagnostic bundle uploaded"), "{text}");
    drop(daemon);
}
