//! The link comes back fast, against a real mosquitto: when the kernel says
//! the network is back (netlink), and when the broker answers again after
//! an outage (the TCP probe), long before a backoff of hours would let it.
//!
//! The network test runs in a network namespace it creates (needs root, as
//! the test command runs): the broker and the cart inside it on loopback,
//! the loopback taken down and up again. Nothing outside the namespace is
//! touched.

mod uplink_support;

use std::process::Command;
use std::time::Duration;

use mqtt_harness::Broker;
use store_and_forward::uplink::LinkConfig;
use uplink_support::*;

/// A backoff of ten hours: only a return found some other way reconnects
/// within the hang guard (the chance that the jittered delay is that short
/// is below 0.1 %).
fn slow_backoff(mut c: LinkConfig) -> LinkConfig {
    c.backoff_base_ms = 36_000_000;
    c.backoff_max_ms = 36_000_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_finds_the_broker_back_long_before_the_backoff_ends() {
    let broker = Broker::start();
    let mut config = slow_backoff(config(&broker, "cart-1"));
    config.watch_network = false;
    let (cart, _rx) = link_up_with(config, identity(&broker, "cart-1"), &[]).await;
    broker.stop();
    wait_down(&cart).await;
    // The driver is in its ten-hour wait, probing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.resume();
    assert!(
        cart.wait_up(HANG).await,
        "the probe did not find the broker back: {:?}",
        *cart.state().borrow()
    );
    assert_eq!(cart.state().borrow().connects, 2);
}

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split(' '))
        .output()
        .expect("ip (Debian package iproute2)");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_network_back_reconnects_at_once() {
    // The namespace is this thread's (and the threads and processes it
    // starts: the broker, the link's owner thread).
    std::thread::spawn(|| {
        // SAFETY: unshare(2) on this thread only.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "a network namespace needs root (CAP_SYS_ADMIN), as the test command runs: {}",
            std::io::Error::last_os_error()
        );
        ip("link set lo up");
        let broker = Broker::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut config = slow_backoff(config(&broker, "cart-1"));
            config.probe_interval_ms = 0;
            let (cart, _rx) = link_up_with(config, identity(&broker, "cart-1"), &[]).await;
            // The network goes: the link finds out (a write fails, or the
            // keep-alive), and waits its ten hours.
            ip("link set lo down");
            wait_down(&cart).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!cart.state().borrow().up);
            // The network is back: the kernel says so.
            ip("link set lo up");
            assert!(
                cart.wait_up(HANG).await,
                "the network came back and the link did not: {:?}",
                *cart.state().borrow()
            );
        });
    })
    .join()
    .expect("the namespace's thread");
}
