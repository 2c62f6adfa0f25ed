//! Downstream messages through a real mosquitto: applied after reconnects,
//! acknowledged, safe to receive twice; malformed ones rejected whole;
//! ACL refusals and TLS failures surface as errors and mark nothing
//! delivered.

mod common;

use std::time::Duration;

use common::*;
use mqtt_harness::Broker;
use store_and_forward::ledger::OutboxClass;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::sync::{AppEvent, CatalogOutcome, SyncConfig};
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::uplink::LinkConfig;
use store_and_forward::wire::down::{CatalogDelta, CatalogItem, DenyListUpdate, RotationRequest};
use store_and_forward::wire::up::AckResult;
use store_and_forward::wire::{Kind, encode, topics};
use store_and_forward::{Currency, Money, Timestamp};

fn fast_sync() -> SyncConfig {
    SyncConfig {
        drain_interval_ms: 100,
        telemetry_linger_secs: 0,
        ..SyncConfig::default()
    }
}

fn limits(version: u64) -> LimitsConfig {
    LimitsConfig {
        version,
        ..roomy_limits()
    }
}

fn ack_of(em: &backend_emulator::Emulator, kind: Kind, id: &str) -> Option<AckResult> {
    em.acks()
        .into_iter()
        .rev()
        .find(|(_, a)| a.of == kind && a.of_id == id)
        .map(|(_, a)| a.result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_updates_apply_after_reconnects_and_replays_change_nothing() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let (app_tx, mut app_rx) = tokio::sync::mpsc::channel(16);
    let id = "cart-0007";
    let cart = Cart::start_with(
        link_config(&broker, broker.port(), id),
        broker.client_cert(id),
        id,
        fast_sync(),
        limits(1),
        Some(app_tx),
    );
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    for round in 0..3u64 {
        broker.restart();
        assert!(
            cart.uplink.link().wait_up(Duration::from_secs(30)).await,
            "cart reconnects"
        );
        assert!(
            em.wait_up(Duration::from_secs(30)).await,
            "emulator reconnects"
        );
        // Sent after the reconnect: arrives only if the subscription was restored.
        let v = 10 + round;
        let mut delivered = false;
        for _ in 0..50 {
            em.publish_policy(id, limits(v)).await.ok();
            tokio::time::sleep(Duration::from_millis(200)).await;
            if cart.ledger.lock().unwrap().limits().version == v {
                delivered = true;
                break;
            }
        }
        assert!(delivered, "policy {v} arrived after reconnect {round}");
    }
    eventually(30, "ack of policy 12", || {
        ack_of(&em, Kind::PolicyUpdate, "12") == Some(AckResult::Applied)
    })
    .await;
    // A replay and an older version are acknowledged as ignored.
    em.publish_policy(id, limits(12)).await.unwrap();
    em.publish_policy(id, limits(11)).await.unwrap();
    eventually(30, "ack of the older policy", || {
        ack_of(&em, Kind::PolicyUpdate, "11") == Some(AckResult::Ignored)
    })
    .await;
    assert_eq!(cart.ledger.lock().unwrap().limits().version, 12);
    // Invalid limits are rejected whole, with the key named.
    let mut bad = limits(13);
    bad.per_payment_cap.insert("EUR".into(), -1);
    em.publish_policy(id, bad).await.unwrap();
    eventually(30, "ack of the invalid policy", || {
        ack_of(&em, Kind::PolicyUpdate, "13") == Some(AckResult::Rejected)
    })
    .await;
    let reason = em
        .acks()
        .into_iter()
        .rev()
        .find(|(_, a)| a.of_id == "13")
        .and_then(|(_, a)| a.reason)
        .unwrap();
    assert!(reason.contains("per_payment_cap.EUR"), "{reason}");
    assert_eq!(cart.ledger.lock().unwrap().limits().version, 12);

    // Deny-list, catalog and rotation.
    em.publish_deny_list(
        id,
        DenyListUpdate {
            version: 3,
            base_version: None,
            replace: true,
            add: vec![vec![7; 32]],
            remove: vec![],
        },
    )
    .await
    .unwrap();
    eventually(30, "deny-list ack", || {
        ack_of(&em, Kind::DenyListUpdate, "3") == Some(AckResult::Applied)
    })
    .await;
    let eur = Currency::new("EUR").unwrap();
    let delta = CatalogDelta {
        version: 2,
        base_version: None,
        upserts: vec![CatalogItem {
            gtin: "04006381333931".into(),
            name: "Highlighter".into(),
            price: Money::new(189, eur),
            tax_class: "standard".into(),
            min_age: None,
            sold_by_weight: false,
        }],
        removals: vec![],
    };
    em.publish_catalog(id, delta.clone()).await.unwrap();
    em.publish_catalog(id, delta.clone()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), app_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let AppEvent::Catalog { delta: got, done } = got else {
        panic!("{got:?}")
    };
    assert_eq!(got, delta);
    // Not acknowledged before the catalog took it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ack_of(&em, Kind::CatalogDelta, "2"), None);
    done.report(CatalogOutcome::Applied);
    eventually(30, "catalog ack once applied", || {
        ack_of(&em, Kind::CatalogDelta, "2").is_some()
    })
    .await;
    em.request_rotation(
        id,
        "rot-1",
        RotationRequest {
            reason: "scheduled".into(),
            deadline: None,
        },
    )
    .await
    .unwrap();
    em.request_rotation(
        id,
        "rot-1",
        RotationRequest {
            reason: "scheduled".into(),
            deadline: None,
        },
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), app_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(got, AppEvent::Rotation { ref id, .. } if id == "rot-1"),
        "{got:?}"
    );
    eventually(30, "rotation replay acked as ignored", || {
        em.acks()
            .iter()
            .filter(|(_, a)| a.of == Kind::RotationRequest)
            .count()
            >= 2
    })
    .await;
    // The catalog delta and the rotation request reached the app once each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app_rx.try_recv().is_err(), "a replay reached the app");
    cart.stop().await;
    em.shutdown().await;
}

fn ack_version(em: &backend_emulator::Emulator, kind: Kind, id: &str) -> Option<u64> {
    em.acks()
        .into_iter()
        .rev()
        .find(|(_, a)| a.of == kind && a.of_id == id)
        .and_then(|(_, a)| a.current_version)
}

/// The staff list end to end: the emulator publishes, the cart stores and
/// acknowledges; a replay and an older version are acked as ignored with
/// the version held; a newer version revokes a badge; an invalid list is
/// rejected whole; the status reports the version; an approval the cart
/// records names a badge only the backend can resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_list_is_applied_acked_replayed_and_revoked() {
    use store_and_forward::staff::BadgeCheck;
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let id = "cart-0014";
    let cart = Cart::start(&broker, broker.port(), id, fast_sync(), limits(1));
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    let check = |badge: &str| {
        cart.ledger
            .lock()
            .unwrap()
            .check_staff_badge(badge)
            .unwrap()
    };
    assert_eq!(check("0042"), BadgeCheck::NoList);

    let v2 = em
        .publish_staff_list(id, 2, &["0042", "0077"])
        .await
        .unwrap();
    eventually(30, "staff list 2 acked", || {
        ack_of(&em, Kind::StaffListUpdate, "2") == Some(AckResult::Applied)
    })
    .await;
    let BadgeCheck::Approved(approval) = check("0077") else {
        panic!("0077 is on list 2")
    };
    assert_eq!(em.staff_badge_of(id, &approval).as_deref(), Some("0077"));

    // Safe to receive twice; an older version is ignored, and both acks
    // say which version the cart holds.
    em.publish_staff_list_as_is(id, &v2).await.unwrap();
    em.publish_staff_list(id, 1, &["9999"]).await.unwrap();
    eventually(30, "the older list acked as ignored", || {
        ack_of(&em, Kind::StaffListUpdate, "1") == Some(AckResult::Ignored)
    })
    .await;
    assert_eq!(ack_version(&em, Kind::StaffListUpdate, "1"), Some(2));
    eventually(30, "the replay acked as ignored", || {
        em.acks()
            .iter()
            .filter(|(_, a)| a.of == Kind::StaffListUpdate && a.of_id == "2")
            .map(|(_, a)| a.result)
            .collect::<Vec<_>>()
            == [AckResult::Applied, AckResult::Ignored]
    })
    .await;
    assert!(matches!(
        check("9999"),
        BadgeCheck::NotOnList { list_version: 2 }
    ));

    // Version 3 drops 0077: revoked.
    em.publish_staff_list(id, 3, &["0042"]).await.unwrap();
    eventually(30, "staff list 3 acked", || {
        ack_of(&em, Kind::StaffListUpdate, "3") == Some(AckResult::Applied)
    })
    .await;
    assert_eq!(check("0077"), BadgeCheck::NotOnList { list_version: 3 });
    assert!(matches!(check("0042"), BadgeCheck::Approved(a) if a.list_version == 3));

    // A salt too short to be one: rejected whole, list 3 stays.
    let bad = store_and_forward::staff::StaffList::hashing(4, vec![1; 4], &["0077"]);
    em.publish_staff_list_as_is(id, &bad).await.unwrap();
    eventually(30, "the invalid list acked as rejected", || {
        ack_of(&em, Kind::StaffListUpdate, "4") == Some(AckResult::Rejected)
    })
    .await;
    // An entry that is no hash: the body does not decode; acked as rejected.
    let malformed = encode(
        Kind::StaffListUpdate,
        id,
        "5",
        Timestamp::now(),
        &serde_json::json!({"version": 5, "salt": "AAECAwQFBgcICQoLDA0ODw==", "badges": ["MDA0Mg=="]}),
    );
    em.publish_raw(&topics::down(id, Kind::StaffListUpdate), malformed)
        .await
        .unwrap();
    eventually(30, "the malformed list acked as rejected", || {
        ack_of(&em, Kind::StaffListUpdate, "5") == Some(AckResult::Rejected)
    })
    .await;
    assert_eq!(cart.ledger.lock().unwrap().staff_list_version().unwrap(), 3);

    // The backend sees the version in the cart's status.
    cart.uplink.enqueue_status(Timestamp::now()).unwrap();
    cart.uplink.kick();
    eventually(30, "status with staff list 3", || {
        em.status(id).is_some_and(|s| s.versions.staff_list == 3)
    })
    .await;
    cart.stop().await;
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_downstream_is_rejected_whole_and_the_cart_goes_on() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let id = "cart-0008";
    let cart = Cart::start(&broker, broker.port(), id, fast_sync(), limits(1));
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    let topic = topics::down(id, Kind::PolicyUpdate);
    let good = encode(
        Kind::PolicyUpdate,
        id,
        "5",
        Timestamp::now(),
        &serde_json::json!({"limits": limits(5)}),
    );
    let truncated = good[..good.len() / 2].to_vec();
    let v2 = String::from_utf8(good.clone())
        .unwrap()
        .replacen("\"v\":1", "\"v\":2", 1)
        .into_bytes();
    let other_cart = encode(
        Kind::PolicyUpdate,
        "cart-0009",
        "6",
        Timestamp::now(),
        &serde_json::json!({"limits": limits(6)}),
    );
    let upstream_kind = encode(
        Kind::CartStatus,
        id,
        "7",
        Timestamp::now(),
        &serde_json::json!({}),
    );
    let wrong_body = encode(
        Kind::PolicyUpdate,
        id,
        "8",
        Timestamp::now(),
        &serde_json::json!({"limits": {"version": "eight"}}),
    );
    let bomb = zstd::bulk::compress(&vec![b' '; 4 << 20], 19).unwrap();
    let garbage = vec![0xFFu8; 300];
    for payload in [
        truncated,
        v2,
        other_cart,
        upstream_kind,
        wrong_body,
        bomb,
        garbage,
    ] {
        em.publish_raw(&topic, payload).await.unwrap();
    }
    // Oversized for the link: the connection may drop; the cart reconnects.
    let _ = em.publish_raw(&topic, vec![b'{'; 200 * 1024]).await;
    // Nothing above applied; a valid update afterwards is.
    let mut applied = false;
    for _ in 0..100 {
        em.publish_raw(&topic, good.clone()).await.ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if cart.ledger.lock().unwrap().limits().version == 5 {
            applied = true;
            break;
        }
    }
    assert!(applied, "the cart still applies valid updates");
    // The v2 and wrong-body messages are identifiable: acked as rejected.
    eventually(30, "rejected acks", || {
        ack_of(&em, Kind::PolicyUpdate, "8") == Some(AckResult::Rejected)
    })
    .await;
    let limits_now = cart.ledger.lock().unwrap().limits().clone();
    assert_eq!(limits_now.version, 5);
    cart.stop().await;
    em.shutdown().await;
}

fn reading(i: u64) -> TelemetryEvent {
    TelemetryEvent::Reading {
        at: Timestamp::now(),
        seq: i,
        temperature_c: 20.0,
        battery_pct: 50,
        rssi_dbm: -60,
        state: "idle".into(),
        position: None,
    }
}

/// Telemetry that does not fill its unit lingers (an hour here) through
/// every periodic drain; a flush (`cartctl sync`) sends it at once, and so
/// does the link's return after an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_sends_lingering_telemetry_at_once() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let sync = SyncConfig {
        telemetry_linger_secs: 3_600,
        ..fast_sync()
    };
    let proxy = broker.fault_proxy();
    let cart = Cart::start(&broker, proxy.port(), "cart-0013", sync, limits(1));
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    cart.ledger
        .lock()
        .unwrap()
        .enqueue_telemetry(&[reading(1), reading(2)], Timestamp::now())
        .unwrap();
    // Ten periodic drains and a kick: the events linger.
    cart.uplink.kick();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        cart.telemetry_pending(),
        2,
        "telemetry lingers until its unit fills"
    );
    assert_eq!(em.counts().telemetry_events, 0);
    cart.uplink.flush();
    eventually(20, "telemetry flushed", || cart.telemetry_pending() == 0).await;
    eventually(20, "the backend has both events", || {
        em.counts().telemetry_events == 2
    })
    .await;

    // An outage: what was queued during it goes when the link returns,
    // without a flush and without waiting out its linger.
    proxy.set_blackhole(true);
    proxy.cut_all();
    let mut state = cart.uplink.link().state();
    tokio::time::timeout(Duration::from_secs(20), state.wait_for(|s| !s.up))
        .await
        .expect("the cart sees the broker gone")
        .unwrap();
    cart.ledger
        .lock()
        .unwrap()
        .enqueue_telemetry(&[reading(3)], Timestamp::now())
        .unwrap();
    proxy.set_blackhole(false);
    eventually(60, "the outage's telemetry sent on reconnect", || {
        cart.telemetry_pending() == 0 && em.counts().telemetry_events == 3
    })
    .await;
    cart.stop().await;

    // A cart started while the broker was away (its first connection came
    // after failed tries) sends what waited at once too.
    let proxy = broker.fault_proxy();
    proxy.set_blackhole(true);
    let sync = SyncConfig {
        telemetry_linger_secs: 3_600,
        ..fast_sync()
    };
    let cart = Cart::start(&broker, proxy.port(), "cart-0014", sync, limits(1));
    cart.ledger
        .lock()
        .unwrap()
        .enqueue_telemetry(&[reading(1)], Timestamp::now())
        .unwrap();
    let mut state = cart.uplink.link().state();
    tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| s.failures > 0))
        .await
        .expect("the first tries fail")
        .unwrap();
    proxy.set_blackhole(false);
    eventually(60, "the telemetry sent on the first connection", || {
        cart.telemetry_pending() == 0
    })
    .await;
    cart.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_outside_the_acl_is_quarantined_with_the_reason() {
    init_logs();
    let broker = Broker::start();
    // Connected as cart-0010, but its sync writes cart-0011's topics.
    let cart = Cart::start_with(
        link_config(&broker, broker.port(), "cart-0010"),
        broker.client_cert("cart-0010"),
        "cart-0011",
        fast_sync(),
        limits(1),
        None,
    );
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    cart.ledger
        .lock()
        .unwrap()
        .enqueue_telemetry(&[reading(1), reading(2)], Timestamp::now())
        .unwrap();
    cart.uplink.kick();
    eventually(30, "telemetry quarantined", || {
        cart.ledger
            .lock()
            .unwrap()
            .quarantined(10)
            .unwrap()
            .iter()
            .any(|(_, class, _)| *class == OutboxClass::Telemetry)
    })
    .await;
    let q = cart.ledger.lock().unwrap().quarantined(10).unwrap();
    assert!(q.iter().all(|(_, _, why)| why.contains("135")), "{q:?}");
    assert!(
        q.iter()
            .any(|(_, class, _)| *class == OutboxClass::Telemetry),
        "{q:?}"
    );
    assert_eq!(
        cart.uplink.report().telemetry.messages,
        0,
        "nothing counted as delivered"
    );
    cart.stop().await;
}

async fn nothing_delivered_with(
    link: LinkConfig,
    identity: (std::path::PathBuf, std::path::PathBuf),
    expect: &str,
) {
    let cart = Cart::start_with(link, identity, "cart-0012", fast_sync(), limits(1), None);
    cart.ledger
        .lock()
        .unwrap()
        .enqueue_telemetry(&[reading(1)], Timestamp::now())
        .unwrap();
    let mut state = cart.uplink.link().state();
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| s.last_error.is_some()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = cart.uplink.link().state().borrow().clone();
    assert!(!s.up, "{expect}: must not connect");
    let err = s.last_error.clone().unwrap_or_default();
    assert!(err.to_lowercase().contains(expect), "{expect}: {err}");
    assert_eq!(cart.telemetry_pending(), 1, "{expect}: still pending");
    cart.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_clear_and_mark_nothing_delivered() {
    init_logs();
    let broker = Broker::start();
    let id = "cart-0012";
    let mut wrong_ca = link_config(&broker, broker.port(), id);
    wrong_ca.ca_file = Some(broker.pki().foreign_ca_pem_path());
    nothing_delivered_with(
        wrong_ca,
        broker.client_cert(id),
        "server certificate not signed by a trusted ca",
    )
    .await;
    let mut wrong_name = link_config(&broker, broker.port(), id);
    wrong_name.server_name = Some("payments.example.com".into());
    nothing_delivered_with(
        wrong_name,
        broker.client_cert(id),
        "server certificate not valid for the server name",
    )
    .await;
    nothing_delivered_with(
        link_config(&broker, broker.port(), id),
        broker.pki().expired_client_cert(id),
        "broker rejected the client certificate: alert certificateexpired",
    )
    .await;
}

/// Deltas that do not fit the version the cart holds (one lost, or out of
/// order) are rejected with `base_mismatch`, and the cart asks for the
/// stream whole: it ends with the backend's newest version, never with a
/// silently smaller deny-list or a catalog missing a delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_on_another_version_end_in_a_resync() {
    init_logs();
    let broker = Broker::start();
    let em = emulator(&broker).await;
    let (app_tx, mut app_rx) = tokio::sync::mpsc::channel(16);
    let id = "cart-0008";
    let cart = Cart::start_with(
        link_config(&broker, broker.port(), id),
        broker.client_cert(id),
        id,
        fast_sync(),
        limits(1),
        Some(app_tx),
    );
    assert!(cart.uplink.link().wait_up(Duration::from_secs(20)).await);
    // The application's catalog: a version and the deltas' base rule.
    let catalog = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let app_catalog = catalog.clone();
    tokio::spawn(async move {
        while let Some(ev) = app_rx.recv().await {
            if let AppEvent::Catalog { delta, done } = ev {
                let mut have = app_catalog.lock().unwrap();
                let outcome = match delta.base_version {
                    _ if delta.version <= *have => CatalogOutcome::Unchanged { current: *have },
                    Some(base) if base != *have => CatalogOutcome::BaseMismatch { have: *have },
                    _ => {
                        *have = delta.version;
                        CatalogOutcome::Applied
                    }
                };
                done.report(outcome);
            }
        }
    });
    let (a, b, c) = (vec![1u8; 32], vec![2u8; 32], vec![3u8; 32]);
    let deny = |version, base_version, replace, add: Vec<Vec<u8>>| DenyListUpdate {
        version,
        base_version,
        replace,
        add,
        remove: vec![],
    };
    em.publish_deny_list(id, deny(1, None, true, vec![a.clone()]))
        .await
        .unwrap();
    eventually(30, "deny-list v1", || {
        ack_of(&em, Kind::DenyListUpdate, "1") == Some(AckResult::Applied)
    })
    .await;
    // v3 before v2: v3 does not fit v1.
    em.publish_deny_list(id, deny(3, Some(2), false, vec![c.clone()]))
        .await
        .unwrap();
    em.publish_deny_list(id, deny(2, Some(1), false, vec![b.clone()]))
        .await
        .unwrap();
    eventually(30, "the whole deny-list at v3", || {
        let l = cart.ledger.lock().unwrap();
        l.deny_list().unwrap() == vec![a.clone(), b.clone(), c.clone()]
            && l.state("policy.deny_list_version")
                .ok()
                .flatten()
                .as_deref()
                == Some("3")
    })
    .await;
    let rejected = em
        .acks()
        .into_iter()
        .find(|(_, a)| {
            a.of == Kind::DenyListUpdate && a.of_id == "3" && a.result == AckResult::Rejected
        })
        .expect("v3 rejected");
    assert_eq!(rejected.1.reason.as_deref(), Some("base_mismatch"));
    assert_eq!(rejected.1.current_version, Some(1));

    // The catalog: v1 whole, then v3 on v2 (v2 lost on the way).
    let item = |gtin: &str| CatalogItem {
        gtin: gtin.into(),
        name: gtin.into(),
        price: Money::new(100, Currency::new("EUR").unwrap()),
        tax_class: "standard".into(),
        min_age: None,
        sold_by_weight: false,
    };
    let delta = |version, base_version, gtin: &str| CatalogDelta {
        version,
        base_version,
        upserts: vec![item(gtin)],
        removals: vec![],
    };
    em.publish_catalog(id, delta(1, None, "00000000000001"))
        .await
        .unwrap();
    eventually(30, "catalog v1", || *catalog.lock().unwrap() == 1).await;
    em.publish_catalog(id, delta(3, Some(2), "00000000000003"))
        .await
        .unwrap();
    eventually(30, "the whole catalog at v3", || {
        *catalog.lock().unwrap() == 3
    })
    .await;
    let resyncs = em.resync_requests();
    let asked: Vec<Kind> = resyncs.iter().map(|(_, r)| r.of).collect();
    assert!(asked.contains(&Kind::DenyListUpdate), "{resyncs:?}");
    assert!(asked.contains(&Kind::CatalogDelta), "{resyncs:?}");
    let catalog_ask = resyncs
        .iter()
        .find(|(_, r)| r.of == Kind::CatalogDelta)
        .unwrap();
    assert_eq!(
        (catalog_ask.1.have_version, catalog_ask.1.rejected_version),
        (1, 3)
    );
    eventually(30, "the ledger records catalog v3", || {
        cart.ledger
            .lock()
            .unwrap()
            .state("downstream.catalog")
            .ok()
            .flatten()
            .as_deref()
            == Some("3")
    })
    .await;
    cart.stop().await;
    em.shutdown().await;
}
