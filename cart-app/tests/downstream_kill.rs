//! The daemon killed between applying a backend update and acknowledging
//! it, and between queueing the ack and sending it (failpoints, SIGKILL):
//! the backend never holds an ack for an update the cart does not have,
//! and after the restart the update is there and acknowledged (the backend
//! sends it again until it is: answered `ignored` with the version held,
//! or the queued `applied` goes out).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

mod support;

use cart_app::demo::rig::CART;
use store_and_forward::failpoint::DOWNSTREAM_PATH;
use store_and_forward::wire::Kind;
use store_and_forward::wire::down::{CatalogDelta, CatalogItem, DenyListUpdate};
use store_and_forward::{Currency, Money};
use support::rig::Rig;
use support::wait_until;

fn deny_list(version: u64) -> DenyListUpdate {
    DenyListUpdate {
        version,
        base_version: None,
        replace: true,
        add: vec![vec![0x5a; 32]],
        remove: vec![],
    }
}

fn catalog(version: u64) -> CatalogDelta {
    CatalogDelta {
        version,
        base_version: None,
        upserts: vec![CatalogItem {
            gtin: "04012345000030".into(),
            name: "Oat milk 1 l".into(),
            price: Money::new(219, Currency::new("EUR").unwrap()),
            tax_class: "reduced".into(),
            min_age: None,
            sold_by_weight: false,
        }],
        removals: vec![],
    }
}

/// The acks the backend holds for `kind` version `id`: (result, version).
fn acks(rig: &Rig, kind: Kind, id: &str) -> Vec<(String, Option<u64>)> {
    rig.world
        .as_ref()
        .unwrap()
        .emulator
        .acks()
        .into_iter()
        .filter(|(_, a)| a.of == kind && a.of_id == id)
        .map(|(_, a)| (format!("{:?}", a.result), a.current_version))
        .collect()
}

/// Publishes the update (the deny-list's or the catalog's, version `v`).
fn publish(rig: &Rig, kind: Kind, v: u64) {
    let world = rig.world.as_ref().unwrap();
    let r = match kind {
        Kind::DenyListUpdate => {
            world.block_on(world.emulator.publish_deny_list(CART, deny_list(v)))
        }
        _ => world.block_on(world.emulator.publish_catalog(CART, catalog(v))),
    };
    r.expect("publish");
}

/// The version the cart holds, read from its files.
fn held(rig: &Rig, kind: Kind) -> u64 {
    match kind {
        Kind::DenyListUpdate => {
            let conn = rusqlite::Connection::open_with_flags(
                rig.dir.path().join("ledger.sqlite"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .expect("the ledger file");
            conn.query_row(
                "SELECT value FROM cart_state WHERE key = 'policy.deny_list_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
        }
        _ => cart_app::catalog::Catalog::open(&rig.dir.path().join("catalog.sqlite"))
            .and_then(|c| c.version())
            .unwrap_or(0),
    }
}

#[test]
fn a_kill_between_applying_and_acknowledging_never_leaves_the_backend_ahead() {
    for (kind, v) in [(Kind::DenyListUpdate, 41), (Kind::CatalogDelta, 42)] {
        for point in DOWNSTREAM_PATH {
            let rig = Rig::new();
            let (mut child, log) = rig.start_with(&[("CART_FAILPOINT", point)]);
            let mut seen = Vec::new();
            assert!(
                rig.wait_notify(&mut seen, |m| m.contains("STATUS=link up"), 40),
                "never online: {seen:?}\n{}",
                log.lock().unwrap()
            );
            publish(&rig, kind, v);
            let killed = wait_until(30, || matches!(child.try_wait(), Ok(Some(_))));
            assert!(
                killed,
                "{point} never hit for {kind:?}:\n{}",
                log.lock().unwrap()
            );
            let status = child.try_wait().unwrap().unwrap();
            assert_eq!(status.signal(), Some(9), "{point}: {status:?}");
            // Killed before the ack left: the backend holds none.
            std::thread::sleep(Duration::from_secs(1));
            assert!(
                acks(&rig, kind, &v.to_string()).is_empty(),
                "{point}: an ack left before the kill"
            );
            // Restarted: the backend sends it again until acknowledged.
            let (_child, log) = rig.start();
            let acked = wait_until(60, || {
                if acks(&rig, kind, &v.to_string()).is_empty() {
                    publish(&rig, kind, v);
                    std::thread::sleep(Duration::from_secs(2));
                    false
                } else {
                    true
                }
            });
            assert!(
                acked,
                "{point}: never acknowledged after the restart:\n{}",
                log.lock().unwrap()
            );
            // Every ack the backend holds says the cart has it, and it has.
            for (result, version) in acks(&rig, kind, &v.to_string()) {
                assert!(
                    result != "Rejected" && version.is_some_and(|h| h >= v),
                    "{point}: ack {result} {version:?}"
                );
            }
            assert!(
                wait_until(10, || held(&rig, kind) >= v),
                "{point}: the cart does not hold {kind:?} {v}"
            );
        }
    }
}
