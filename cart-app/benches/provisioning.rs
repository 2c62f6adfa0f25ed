//! Provisioning end to end on swtpm, mosquitto (mutual TLS) and the backend
//! emulator's fleet-provisioning responder: Wi-Fi keyfile, device key
//! created in the TPM and its CSR, claim connection, CreateCertificateFromCsr,
//! RegisterThing, certificate file, first publish with the TPM key
//! (PUBACK), claim deleted; then a rotation over the cart's connection.
//! Each iteration is a fresh cart and a fresh TPM (started outside the
//! measured time); the ledger runs on the TPM's counter and sealed key.
//!
//! `cargo bench -p cart-app --bench provisioning` (needs mosquitto and swtpm).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cart_app::provision::{self, Context, fleet, rotation};
use cart_app::tpm::CartTpm;
use hdrhistogram::Histogram;
use mqtt_harness::Broker;
use store_and_forward::uplink::{self, SwappableClientCert};
use support::*;
use swtpm_harness::Swtpm;

const CARTS: u64 = 30;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = Broker::start();
    let em = rt.block_on(emulator(&broker, Duration::from_secs(3600)));
    let mut provisioning = Histogram::<u64>::new(3).expect("histogram");
    let mut rotating = Histogram::<u64>::new(3).expect("histogram");
    let mut keygen = Histogram::<u64>::new(3).expect("histogram");
    for n in 0..CARTS {
        // The share of the TPM: a device key created on a fresh TPM (SRK
        // derived, key created, loaded, made persistent).
        {
            let swtpm = Swtpm::start();
            let tpm = CartTpm::open(tpm_config(swtpm.tcti())).expect("TPM");
            let started = Instant::now();
            tpm.identity().expect("key");
            keygen
                .record(started.elapsed().as_micros() as u64)
                .expect("record");
        }
        let swtpm = Swtpm::start();
        let dir = CartDir::new(&broker);
        let cart = format!("cart-bench-{n}");
        let tpm = CartTpm::open(tpm_config(swtpm.tcti())).expect("TPM");
        let ledger = open_ledger(&tpm, &dir.ledger_path());
        let link = link(&broker, &cart);
        let ctx = Context {
            config: &dir.config,
            cart_id: &cart,
            link: &link,
            tpm: &tpm,
            ledger: &ledger,
        };
        let qr = hal::scanner::nonproduct::parse_wifi(WIFI_QR).expect("QR");
        let started = Instant::now();
        let p = rt
            .block_on(provision::run(&ctx, Some(qr)))
            .expect("provisioned");
        provisioning
            .record(started.elapsed().as_micros() as u64)
            .expect("record");

        let swap = Arc::new(SwappableClientCert::new(p.certified_key.clone()));
        let started = Instant::now();
        rt.block_on(async {
            let (dlink, incoming) = uplink::start(
                link.clone(),
                Some(swap.clone()),
                fleet::subscriptions(TEMPLATE),
            )
            .expect("link");
            assert!(dlink.wait_up(Duration::from_secs(20)).await);
            let mut client = fleet::FleetClient::over(
                dlink.clone(),
                incoming,
                TEMPLATE,
                Duration::from_secs(20),
            );
            rotation::rotate(&ctx, &mut client, &dlink, &swap, rotation::Trigger::Manual)
                .await
                .expect("rotated");
            dlink.shutdown().await;
        });
        rotating
            .record(started.elapsed().as_micros() as u64)
            .expect("record");
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "provisioning end to end ({CARTS} carts): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(&provisioning, 0.5),
        ms(&provisioning, 0.9),
        provisioning.max() as f64 / 1000.0
    );
    println!(
        "rotation end to end, link start included ({CARTS} carts): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(&rotating, 0.5),
        ms(&rotating, 0.9),
        rotating.max() as f64 / 1000.0
    );
    println!(
        "of which a device key created in a fresh swtpm: p50 {:.1} ms, p90 {:.1} ms",
        ms(&keygen, 0.5),
        ms(&keygen, 0.9)
    );
    rt.block_on(em.shutdown());
}
