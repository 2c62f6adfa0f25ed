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
    let world = rig.world.as_ref().unwrap();
    let jobs = world
        .emulator
        .jobs()
        .expect("the demo's emulator runs Jobs");
    world
        .block_on(jobs.create_job(JobConfig::new(id, &[CART], document)))
        .unwrap();
    let done = wait_until(30, || {
        jobs.with(|j| j.execution(CART, id)).map(|e| e.status)
            == Some(JobExecutionStatus::Succeeded)
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
