//! The simulated reader's payment logic on a virtual clock.

use super::*;
use crate::reader::fixtures;
use crate::reader::sim::SimConfig;

fn engine() -> Engine {
    let cfg = SimConfig::from_fixtures(&fixtures::source_tree_dir()).unwrap();
    Engine::new(cfg.engine)
}

fn start(e: &mut Engine, key: Uuid, timeout_s: u16, now: Instant) {
    e.handle(
        Message::StartPayment(PaymentRequest {
            key,
            amount_minor: 100,
            currency: "EUR".parse().unwrap(),
            card_timeout_s: timeout_s,
        }),
        now,
    );
}

fn drain(e: &mut Engine) -> Vec<Message> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn status(e: &mut Engine, key: Uuid) -> ReaderPaymentState {
    e.handle(Message::Status { key }, Instant::now());
    match drain(e).pop() {
        Some(Message::StatusReply(s)) => s.state,
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_card_times_out_at_the_default_card_timeout() {
    let mut e = engine();
    let t0 = Instant::now();
    assert!(e.queue_card("no-card"));
    let key = Uuid::from_u128(1);
    start(&mut e, key, 0, t0);
    drain(&mut e);
    e.poll(t0 + DEFAULT_CARD_TIMEOUT - Duration::from_millis(1));
    assert!(drain(&mut e).is_empty());
    assert_eq!(status(&mut e, key), ReaderPaymentState::WaitingForCard);
    e.poll(t0 + DEFAULT_CARD_TIMEOUT);
    assert_eq!(
        drain(&mut e),
        vec![Message::PaymentError {
            key,
            code: PaymentErrorCode::Timeout
        }]
    );
}

#[test]
fn pin_card_goes_through_every_prompt_in_order() {
    let mut e = engine();
    let t0 = Instant::now();
    assert!(e.queue_card("chip-pin-approve"));
    let key = Uuid::from_u128(2);
    start(&mut e, key, 10, t0);
    let mut seen = drain(&mut e);
    let mut now = t0;
    for _ in 0..10 {
        now += Duration::from_millis(50);
        e.poll(now);
        seen.extend(drain(&mut e));
    }
    let kinds: Vec<_> = seen
        .iter()
        .map(|m| match m {
            Message::Event { event, .. } => format!("{event:?}"),
            other => other.name().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["PresentCard", "PinRequired", "Processing", "CARD_READ"]
    );
}

#[test]
fn the_reader_remembers_its_last_sixteen_payments() {
    let mut e = engine();
    let t0 = Instant::now();
    let keys: Vec<Uuid> = (0..=HISTORY as u128)
        .map(|i| Uuid::from_u128(100 + i))
        .collect();
    for k in &keys {
        assert!(e.queue_card("unreadable"));
        start(&mut e, *k, 10, t0);
        e.poll(t0 + Duration::from_secs(1));
        drain(&mut e);
    }
    assert_eq!(status(&mut e, keys[0]), ReaderPaymentState::Unknown);
    assert_eq!(
        status(&mut e, keys[1]),
        ReaderPaymentState::Failed(PaymentErrorCode::Unreadable)
    );
}

#[test]
fn unknown_card_names_are_refused() {
    let mut e = engine();
    assert!(!e.queue_card("no-such-card"));
}
