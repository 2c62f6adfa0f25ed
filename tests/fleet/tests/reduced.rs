//! The reduced fleet run of the README's test command: every scenario at
//! 100 carts for a few seconds, asserting what must hold at any size
//! (every payment and event exactly once, every cart back, the rollout's
//! rate and abort). The full runs are `fleet-sim` commands (docs/fleet.md).

use std::path::PathBuf;

use fleet_sim::bill::PriceTable;
use fleet_sim::external::Target;
use fleet_sim::scenario::{
    self, OutageConfig, RestartConfig, RolloutScenario, Setting, SteadyConfig,
};

const CARTS: usize = 100;

fn prices() -> PriceTable {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prices/aws-iot-core-us-east-1.toml");
    PriceTable::load(&path).expect("price table")
}

// One test: the scenarios run one after the other (each starts its own
// broker and 100 carts; together they would measure each other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_carts_through_every_scenario() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }

    // 1. Steady: shopping online, two settings side by side.
    let steady = scenario::steady(SteadyConfig {
        carts: CARTS,
        secs: 8,
        warmup_secs: 2,
        readings_per_sec: 1.0,
        checkout_every_secs: 10.0,
        time_scale: 1,
        settings: vec![
            Setting {
                name: "a".into(),
                telemetry_linger_secs: 0,
                status_interval_secs: 2,
            },
            Setting {
                name: "b".into(),
                telemetry_linger_secs: 300,
                status_interval_secs: 900,
            },
        ],
        prices: prices(),
        bill_fleets: vec![1_000],
        target: Target::Local,
    })
    .await
    .expect("steady run");
    let once = steady
        .exactly_once
        .as_ref()
        .expect("checked at the emulator");
    assert!(once.holds(), "{once:#?}");
    assert!(steady.checkouts > 0 && once.online > 0, "{steady:#?}");
    assert!(steady.broker.is_some(), "the local broker is measured");
    assert!(steady.broker_msgs_in_per_sec > 0.0);
    assert_eq!(steady.groups.len(), 2);
    let (a, b) = (&steady.groups[0], &steady.groups[1]);
    assert_eq!(a.carts + b.carts, CARTS);
    // Sending telemetry at once and a status every 2 s costs more than
    // lingering 5 minutes with a status every 15: measured, not assumed.
    assert!(a.month.messages > b.month.messages, "{a:#?}\n{b:#?}");
    assert!(b.naive_messages > b.month.messages, "{b:#?}");

    // 2. Broker restart: every cart comes back by itself.
    let restart = scenario::restart(RestartConfig {
        carts: CARTS,
        down_secs: 1.0,
        jitter: true,
        timeout_secs: 120,
        target: Target::Local,
    })
    .await
    .expect("restart run");
    assert_eq!(restart.connects_per_100ms.iter().sum::<u64>(), CARTS as u64);
    assert!(restart.peak_connects_per_sec <= CARTS as u64);

    // 3. Outage: ten minutes of selling offline, then everything forwarded
    //    exactly once.
    let outage = scenario::outage(OutageConfig {
        carts: CARTS,
        outage_secs: 600,
        readings_per_sec: 1.0,
        checkout_every_secs: 120.0,
        timeout_secs: 120,
        target: Target::Local,
    })
    .await
    .expect("outage run");
    assert_eq!(outage.payment_backlog, 5 * CARTS as u64);
    assert!(
        outage.telemetry_backlog >= 600 * CARTS as u64,
        "{outage:#?}"
    );
    let once = outage
        .exactly_once
        .as_ref()
        .expect("checked at the emulator");
    assert!(once.holds(), "{once:#?}");
    assert_eq!(once.offline, 5 * CARTS as u64);

    // 4a. A rollout every cart passes: complete, never faster than its rate.
    let clean = scenario::rollout(RolloutScenario {
        carts: CARTS,
        per_minute: 30,
        fail_every: 0,
        abort_percent: 20.0,
        abort_min_executed: 10,
        minute_timeout_secs: 60,
        target: Target::Local,
    })
    .await
    .expect("rollout run");
    assert_eq!(clean.job_status, "Some(Completed)", "{clean:#?}");
    assert_eq!(clean.succeeded, CARTS as u64);
    assert!(
        clean.created_per_minute.iter().all(|&n| n <= 30),
        "{clean:#?}"
    );
    assert_eq!(clean.created_per_minute.len(), 4, "{clean:#?}");

    // 4b. A third of the carts fail it: the rollout stops at the threshold.
    let bad = scenario::rollout(RolloutScenario {
        carts: CARTS,
        per_minute: 20,
        fail_every: 3,
        abort_percent: 20.0,
        abort_min_executed: 10,
        minute_timeout_secs: 60,
        target: Target::Local,
    })
    .await
    .expect("rollout run");
    assert!(bad.aborted, "{bad:#?}");
    assert_eq!(bad.job_status, "Some(Canceled)");
    assert!(bad.created_per_minute.iter().all(|&n| n <= 20), "{bad:#?}");
    assert_eq!(bad.created_after_end, 0);
    assert!(bad.never_reached > 0, "{bad:#?}");
    // It stopped because the failures reached the threshold: at least 20 %
    // of the 10 executions it waits for (executions already running when
    // it stopped may finish either way afterwards).
    assert!(bad.failed >= 2, "{bad:#?}");
}
