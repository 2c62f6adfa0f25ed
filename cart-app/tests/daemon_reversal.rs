//! Nobody pays for goods they did not take, through the daemon: the bank
//! answers after the online timeout, the offline policy declines, the
//! shopper leaves with nothing; the approval that arrives then is reversed,
//! and the reversal reaches the backend exactly once.

use std::time::Duration;

mod support;

use support::rig::Rig;
use support::wait_until;

fn payments(st: &serde_json::Value, state: &str) -> u64 {
    st["ledger"]["payments"][state].as_u64().unwrap_or(0)
}

#[test]
fn a_late_approval_after_the_shopper_left_is_reversed_exactly_once() {
    let mut rig = Rig::new();
    // An offline cap of one cent: the offline policy declines the sale.
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let capped = text.replacen(
        "[offline.per_payment_cap]\nEUR = 10000",
        "[offline.per_payment_cap]\nEUR = 1",
        1,
    );
    assert_ne!(capped, text, "the rig's config changed shape");
    std::fs::write(&rig.config, capped).unwrap();
    let (_child, log) = rig.start();
    let mut seen = Vec::new();
    assert!(
        rig.wait_notify(&mut seen, |m| m.contains("STATUS=link up"), 40),
        "the link never came up: {seen:?}\n{}",
        log.lock().unwrap()
    );

    // The processor answers this card after 8 s; the cart waits 3 s.
    rig.scan("4006381333931");
    std::thread::sleep(Duration::from_millis(500));
    rig.card("slow-online");
    rig.tap("pay");
    assert!(
        wait_until(30, || payments(&rig.status(), "offline_declined") == 1),
        "not declined offline: {}\n{}",
        rig.status(),
        log.lock().unwrap()
    );
    // The shopper leaves with nothing.
    rig.tap("done");

    // The approval arrives, the cart gives it back.
    assert!(
        wait_until(60, || payments(&rig.status(), "reversed") == 1),
        "not reversed: {}\n{}",
        rig.status(),
        log.lock().unwrap()
    );
    let em = &rig.world.as_ref().unwrap().emulator;
    // Exactly once, even after the cart had time to resend.
    std::thread::sleep(Duration::from_secs(2));
    let counts = em.counts();
    assert_eq!(counts.charged, 1, "{counts:?}");
    assert_eq!(counts.reversals, 1, "one reversal sent: {counts:?}");
    assert_eq!(counts.reversed, 1, "{counts:?}");
    assert_eq!(counts.reversal_duplicates, 0, "{counts:?}");
    let st = rig.status();
    assert_eq!(payments(&st, "reversal_pending"), 0, "{st}");
    assert_eq!(payments(&st, "offline_declined"), 0, "{st}");
    let view = em
        .payments()
        .into_iter()
        .find(|p| p.via == Some(backend_emulator::Via::Online))
        .expect("the backend saw the online request");
    assert!(view.reversed, "{view:?}");
}
