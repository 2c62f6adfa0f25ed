//! The fleet against an external broker, for real: a mosquitto started
//! here on its own (mutual TLS, per-cart ACLs) stands for the managed
//! broker. The simulator gets only what an operator would give it: the
//! broker's address, the CA that verifies it, the issuer it trusts for
//! client certificates (the harness's CA, written to files) and the
//! backend's certificate; it issues every cart's certificate itself.

use std::path::{Path, PathBuf};
use std::time::Instant;

use backend_emulator::{Emulator, EmulatorConfig};
use fleet_sim::SimError;
use fleet_sim::bill::PriceTable;
use fleet_sim::cart::fixtures_dir;
use fleet_sim::external::{ExternalBroker, Target};
use fleet_sim::fleet::{cart_id, link_to};
use fleet_sim::scenario::{
    self, OutageConfig, RestartConfig, RolloutScenario, Setting, SteadyConfig,
};
use mqtt_harness::{BACKEND_IDENTITY, Broker};
use store_and_forward::uplink::LinkConfig;

const CARTS: usize = 5;

fn prices() -> PriceTable {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prices/aws-iot-core-us-east-1.toml");
    PriceTable::load(&path).expect("price table")
}

/// The harness's broker as an operator sees an external one. `host` is a
/// name (what the carts dial and verify); the broker's certificate is
/// valid for `localhost`.
fn external(broker: &Broker, dir: &Path, backend: bool) -> ExternalBroker {
    let issuer_cert = dir.join("fleet-ca.pem");
    let issuer_key = dir.join("fleet-ca.key");
    std::fs::write(&issuer_cert, broker.pki().ca_cert_pem()).expect("write issuer");
    std::fs::write(&issuer_key, broker.pki().ca_key_pem()).expect("write issuer key");
    ExternalBroker {
        host: "localhost".into(),
        port: broker.port(),
        server_name: Some("localhost".into()),
        ca_file: broker.pki().ca_pem_path(),
        issuer_cert,
        issuer_key,
        backend: backend.then(|| broker.client_cert(BACKEND_IDENTITY)),
    }
}

/// Every cart connected to the broker under its own certificate: its CN
/// (the cart id) is the broker's user name for it.
fn assert_every_cart_connected(broker: &Broker) {
    let log = broker.log();
    for i in 0..CARTS {
        let id = cart_id(i);
        assert!(
            log.contains(&format!("u'{id}'")),
            "{id} never connected:\n{log}"
        );
    }
}

fn steady_config(target: Target) -> SteadyConfig {
    SteadyConfig {
        carts: CARTS,
        secs: 3,
        warmup_secs: 1,
        readings_per_sec: 1.0,
        checkout_every_secs: 1.5,
        time_scale: 1,
        settings: vec![Setting {
            name: "fast".into(),
            telemetry_linger_secs: 0,
            status_interval_secs: 2,
        }],
        prices: prices(),
        bill_fleets: vec![1_000],
        target,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_outage_and_rollout_run_against_an_external_broker() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
    let t0 = Instant::now();
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = Target::External(external(&broker, dir.path(), true));

    // Steady: every cart connects with the certificate the simulator
    // issued, shops, and every payment and event reaches the backend once.
    let steady = scenario::steady(steady_config(target.clone()))
        .await
        .expect("steady run");
    assert_eq!(
        steady.target,
        format!("external localhost:{}", broker.port())
    );
    assert_every_cart_connected(&broker);
    let once = steady.exactly_once.as_ref().expect("the emulator ran");
    assert!(once.holds(), "{once:#?}");
    assert!(
        steady.checkouts > 0 && once.online > 0 && once.telemetry_events > 0,
        "{steady:#?}"
    );
    assert!(steady.broker_msgs_in_per_sec > 0.0);
    // Not this process's child: its CPU and memory are not measured.
    assert!(steady.broker.is_none());

    // Outage: the proxy fronts the external host; the backend stays
    // connected; two offline payments a cart, then everything exactly once.
    let outage = scenario::outage(OutageConfig {
        carts: CARTS,
        outage_secs: 60,
        readings_per_sec: 1.0,
        checkout_every_secs: 30.0,
        timeout_secs: 60,
        target: target.clone(),
    })
    .await
    .expect("outage run");
    assert_eq!(outage.payment_backlog, 2 * CARTS as u64);
    let once = outage.exactly_once.as_ref().expect("the emulator ran");
    assert!(once.holds(), "{once:#?}");
    assert_eq!(once.offline, 2 * CARTS as u64);
    assert!(outage.peak_ingest_msgs_per_sec.is_some());

    // Rollout: the emulator's Jobs service over the external broker.
    let rollout = scenario::rollout(RolloutScenario {
        carts: CARTS,
        per_minute: 5,
        fail_every: 0,
        abort_percent: 20.0,
        abort_min_executed: 2,
        minute_timeout_secs: 30,
        target,
    })
    .await
    .expect("rollout run");
    assert_eq!(rollout.job_status, "Some(Completed)", "{rollout:#?}");
    assert_eq!(rollout.succeeded, CARTS as u64);
    eprintln!("external steady, outage, rollout: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_emulator_the_brokers_backend_answers_and_restart_is_refused() {
    let t0 = Instant::now();
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ext = external(&broker, dir.path(), false);

    // Restart kills the broker: refused against an external one, before
    // anything starts.
    let refused = scenario::restart(RestartConfig {
        carts: CARTS,
        down_secs: 1.0,
        jitter: true,
        timeout_secs: 10,
        target: Target::External(ext.clone()),
    })
    .await
    .expect_err("restart against an external broker");
    assert!(
        matches!(refused, SimError::NeedsLocalBroker(_)),
        "{refused}"
    );
    assert!(refused.to_string().contains("local broker"), "{refused}");
    // So is a rollout with no emulator to run the Jobs service.
    let refused = scenario::rollout(RolloutScenario {
        carts: CARTS,
        per_minute: 5,
        fail_every: 0,
        abort_percent: 20.0,
        abort_min_executed: 2,
        minute_timeout_secs: 30,
        target: Target::External(ext.clone()),
    })
    .await
    .expect_err("rollout with no emulator");
    assert!(matches!(refused, SimError::NeedsEmulator(_)), "{refused}");

    // The broker's own backend: an emulator the simulator knows nothing
    // of, connected on its own.
    let (cert, key) = broker.client_cert(BACKEND_IDENTITY);
    let backend = Emulator::start(EmulatorConfig {
        link: LinkConfig {
            client_id: BACKEND_IDENTITY.into(),
            ..link_to(
                "127.0.0.1",
                broker.port(),
                broker.ca_pem_path(),
                "localhost",
                true,
            )
        },
        identity: Some((cert, key)),
        fixtures: fixtures_dir(),
    })
    .await
    .expect("the broker's backend");
    assert!(backend.wait_up(std::time::Duration::from_secs(10)).await);

    let steady = scenario::steady(steady_config(Target::External(ext)))
        .await
        .expect("steady run with no emulator");
    assert_every_cart_connected(&broker);
    // Only the emulator could tell: not measured.
    assert!(steady.exactly_once.is_none() && steady.broker.is_none());
    // The drain still waited for every payment's answer, which came from
    // the broker's backend.
    assert!(steady.checkouts > 0, "{steady:#?}");
    let payments = backend.payments();
    assert!(payments.len() as u64 >= steady.checkouts, "{payments:#?}");
    assert!(payments.iter().all(|p| p.cart.starts_with("cart-")));
    backend.shutdown().await;
    eprintln!("external, no emulator: {:?}", t0.elapsed());
}
