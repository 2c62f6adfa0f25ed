//! The cart's reader driver against the reader simulator over real
//! pseudo-terminal pairs: every test card, line noise, cancel, unplug,
//! restart recovery by key, busy and bad requests, an unanswering reader.

mod reader_common;

use std::time::Duration;

use hal::reader::card::{FingerprintKey, mask_pan};
use hal::reader::fixtures::{self, ReaderBehaviour};
use hal::reader::message::{Cvm, EntryMode};
use hal::reader::{
    DeclineReason, Outcome, PaymentErrorCode, PaymentEvent, PaymentReader, ReaderError,
    ReaderPaymentState, SerialReader, UiEvent,
};
use reader_common::*;
use uuid::Uuid;

fn fingerprint_key() -> FingerprintKey {
    fixtures::load_fingerprint_key(&fixtures::source_tree_dir().join(fixtures::FINGERPRINT_KEY))
        .unwrap()
}

fn ui(events: &[PaymentEvent]) -> Vec<UiEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            PaymentEvent::Ui { event, .. } => Some(*event),
            _ => None,
        })
        .collect()
}

/// Runs every test card through the simulator and checks the result against
/// the card's behaviour. Returns the number of cards read.
fn every_card(
    out: u32,
    inbound: u32,
) -> (
    usize,
    hal::reader::DriverSnapshot,
    hal::reader::sim::SimReport,
) {
    let sim = start_sim(out, inbound);
    let mut r = open(&sim);
    let fp_key = fingerprint_key();
    let mut read = 0;
    for card in cards().cards {
        sim.queue_card(&card.name);
        // A short card timeout, so the no-card behaviour ends quickly.
        let req = request(1250, 1);
        let events = pay(&mut r, &req);
        let prompts = ui(&events);
        assert_eq!(
            prompts.first(),
            Some(&UiEvent::PresentCard),
            "{}",
            card.name
        );
        let last = events.last().unwrap();
        let failed = |code| PaymentEvent::Failed { key: req.key, code };
        match card.reader {
            ReaderBehaviour::Normal | ReaderBehaviour::Slow { .. } => {
                let PaymentEvent::CardRead(res) = last else {
                    panic!("{}: expected a card read, got {last:?}", card.name);
                };
                assert_eq!(res.key, req.key);
                assert_eq!(res.entry_mode, card.entry_mode);
                assert_eq!(Some(&res.masked_pan), mask_pan(&card.pan).as_ref());
                assert_eq!(res.fingerprint, fp_key.fingerprint(&card.pan));
                assert_eq!(pan_in_blob(&req, &res.blob), card.pan, "{}", card.name);
                assert_eq!(res.cvm == Cvm::Pin, card.pin, "{}", card.name);
                assert_eq!(
                    prompts.contains(&UiEvent::PinRequired),
                    card.pin,
                    "{}",
                    card.name
                );
                assert!(prompts.contains(&UiEvent::Processing));
                r.send_outcome(req.key, Outcome::ApprovedOnline).unwrap();
                let s = r.status(req.key, PAYMENT_GUARD).unwrap();
                assert_eq!(
                    s.state,
                    ReaderPaymentState::Completed(Outcome::ApprovedOnline)
                );
                assert_eq!((s.amount_minor, s.currency), (1250, req.currency));
                read += 1;
            }
            ReaderBehaviour::NoCard => assert_eq!(last, &failed(PaymentErrorCode::Timeout)),
            ReaderBehaviour::RemovedMidRead => {
                assert!(prompts.contains(&UiEvent::CardRemoved));
                assert_eq!(last, &failed(PaymentErrorCode::CardRemoved));
            }
            ReaderBehaviour::Unreadable => {
                assert_eq!(last, &failed(PaymentErrorCode::Unreadable))
            }
            ReaderBehaviour::Fault => assert_eq!(last, &failed(PaymentErrorCode::ReaderFault)),
        }
        let snap = r.snapshot();
        assert_eq!(snap.current_key, Some(req.key));
        assert!(snap.last_state.is_some());
    }
    let snap = r.snapshot();
    drop(r);
    (read, snap, sim.stop().unwrap())
}

#[test]
fn every_test_card_over_a_clean_pty() {
    let (read, snap, report) = every_card(0, 0);
    assert_eq!(read, 10);
    assert_eq!(report.faults_injected, 0);
    // No damage on a clean line. (Retransmissions are not asserted: a slow
    // machine may legitimately miss T_ACK.)
    assert_eq!(snap.link.damaged, 0);
    assert_eq!(snap.link.noise_bytes, 0);
}

#[test]
fn every_test_card_over_a_noisy_line() {
    // Every 3rd frame from the reader is corrupted, noise-prefixed,
    // truncated or dropped, in turn.
    let (read, snap, report) = every_card(3, 0);
    assert_eq!(read, 10);
    assert!(report.faults_injected >= 8, "{report:?}");
    // The cart saw damaged frames and NAKed them, and had to resend when the
    // reader's ACKs were lost; the reader dropped the duplicates.
    assert!(snap.link.damaged > 0, "{snap:?}");
    assert!(snap.link.noise_bytes > 0, "{snap:?}");
    assert!(snap.link.retransmissions > 0, "{snap:?}");
    assert!(report.link.duplicates > 0, "{report:?}");
}

#[test]
fn every_test_card_over_a_line_noisy_both_ways() {
    // Also every 4th frame from the cart is damaged on its way to the reader:
    // the reader NAKs what it can see and the cart resends.
    let (read, snap, report) = every_card(3, 4);
    assert_eq!(read, 10);
    assert!(report.link.damaged > 0, "{report:?}");
    assert!(snap.link.naks_received > 0, "{snap:?}");
    assert!(snap.link.retransmissions > 0, "{snap:?}");
    assert!(snap.link.damaged > 0, "{snap:?}");
}

#[test]
fn cancel_while_waiting_for_the_card() {
    let sim = start_sim(0, 0);
    let mut r = open(&sim);
    sim.queue_card("no-card");
    let req = request(999, 60);
    r.start_payment(&req).unwrap();
    let e = r.next_event(PAYMENT_GUARD).unwrap();
    assert_eq!(
        e,
        Some(PaymentEvent::Ui {
            key: req.key,
            event: UiEvent::PresentCard
        })
    );
    r.cancel(req.key).unwrap();
    let events = collect(&mut r, req.key);
    assert_eq!(
        events.last(),
        Some(&PaymentEvent::Failed {
            key: req.key,
            code: PaymentErrorCode::Cancelled
        })
    );
    assert_eq!(
        r.snapshot().last_state,
        Some(ReaderPaymentState::Failed(PaymentErrorCode::Cancelled))
    );

    // Cancel after the card was read changes nothing: the reader says so.
    let req = request(500, 5);
    let events = pay(&mut r, &req);
    assert!(matches!(events.last(), Some(PaymentEvent::CardRead(_))));
    r.cancel(req.key).unwrap();
    match collect(&mut r, req.key).last() {
        Some(PaymentEvent::Status(s)) => {
            assert_eq!((s.key, s.state), (req.key, ReaderPaymentState::CardRead))
        }
        other => panic!("expected a status reply, got {other:?}"),
    }
}

#[test]
fn unplugged_mid_payment_is_a_typed_error_and_the_key_is_kept() {
    let sim = start_sim(0, 0);
    let mut r = open(&sim);
    sim.queue_card("slow-read");
    let req = request(4200, 30);
    r.start_payment(&req).unwrap();
    assert!(matches!(
        r.next_event(PAYMENT_GUARD).unwrap(),
        Some(PaymentEvent::Ui {
            event: UiEvent::PresentCard,
            ..
        })
    ));
    sim.unplug().unwrap();
    let err = loop {
        match r.next_event(Duration::from_millis(200)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ReaderError::Disconnected), "{err:?}");
    // Every later call says the same, and the snapshot still holds the key.
    assert!(matches!(
        r.status(req.key, Duration::from_millis(100)),
        Err(ReaderError::Disconnected)
    ));
    let snap = r.snapshot();
    assert_eq!(snap.current_key, Some(req.key));
    assert!(matches!(
        snap.last_state,
        Some(ReaderPaymentState::WaitingForCard | ReaderPaymentState::Reading)
    ));
}

#[test]
fn restart_resolves_the_attempt_by_key_and_never_reads_a_second_card() {
    let sim = start_sim(0, 0);
    let mut r = open(&sim);
    let req = request(1999, 10);
    let events = pay(&mut r, &req);
    let Some(PaymentEvent::CardRead(first)) = events.last().cloned() else {
        panic!("no card read: {events:?}");
    };
    // The cart crashes before deciding: the driver is dropped with the port.
    drop(r);

    let mut r = open(&sim);
    let s = r.status(req.key, PAYMENT_GUARD).unwrap();
    assert_eq!(s.state, ReaderPaymentState::CardRead);
    assert_eq!(s.amount_minor, 1999);
    // Starting again under the same key repeats the same read, same blob.
    sim.queue_card("contactless-approve");
    let again = pay(&mut r, &req);
    assert_eq!(again, vec![PaymentEvent::CardRead(first)]);
    r.send_outcome(req.key, Outcome::Declined(DeclineReason::OverOfflineLimit))
        .unwrap();
    let s = r.status(req.key, PAYMENT_GUARD).unwrap();
    assert_eq!(
        s.state,
        ReaderPaymentState::Completed(Outcome::Declined(DeclineReason::OverOfflineLimit))
    );
    // A key the reader never saw is unknown.
    let s = r.status(Uuid::now_v7(), PAYMENT_GUARD).unwrap();
    assert_eq!(s.state, ReaderPaymentState::Unknown);
    // The queued contactless card was not used: the next payment reads it.
    let req2 = request(100, 10);
    match pay(&mut r, &req2).last() {
        Some(PaymentEvent::CardRead(res)) => assert_eq!(res.entry_mode, EntryMode::Contactless),
        other => panic!("{other:?}"),
    }
}

#[test]
fn busy_and_bad_requests_are_refused() {
    let sim = start_sim(0, 0);
    let mut r = open(&sim);
    sim.queue_card("no-card");
    let a = request(100, 60);
    r.start_payment(&a).unwrap();
    let b = request(200, 60);
    r.start_payment(&b).unwrap();
    let mut saw_busy = false;
    for _ in 0..10 {
        if let Some(PaymentEvent::Failed { key, code }) = r.next_event(PAYMENT_GUARD).unwrap() {
            assert_eq!((key, code), (b.key, PaymentErrorCode::Busy));
            saw_busy = true;
            break;
        }
    }
    assert!(saw_busy);
    r.cancel(a.key).unwrap();
    assert_eq!(
        collect(&mut r, a.key).last(),
        Some(&PaymentEvent::Failed {
            key: a.key,
            code: PaymentErrorCode::Cancelled
        })
    );
    let zero = request(0, 10);
    assert_eq!(
        pay(&mut r, &zero),
        vec![PaymentEvent::Failed {
            key: zero.key,
            code: PaymentErrorCode::BadRequest
        }]
    );
}

#[test]
fn a_reader_that_never_acknowledges_gives_no_ack() {
    // A pty whose far end is held open but never read or answered.
    let pty = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&pty.slave).unwrap();
    let mut cfg = driver_config();
    cfg.link.ack_timeout = Duration::from_millis(100);
    let mut r = SerialReader::open(path.to_str().unwrap(), cfg).unwrap();
    let req = request(100, 10);
    match r.start_payment(&req) {
        Err(ReaderError::NoAck { tries, .. }) => assert_eq!(tries, 4),
        other => panic!("expected NoAck, got {other:?}"),
    }
    assert_eq!(r.snapshot().current_key, Some(req.key));
    assert_eq!(r.snapshot().link.retransmissions, 3);
    drop(pty);
}

#[test]
fn a_driver_opened_without_hello_opens_the_session_itself() {
    let sim = start_sim(0, 0);
    let path = sim.path().to_str().unwrap().to_owned();
    // A first session that only said HELLO (SEQ 0): the reader's last
    // accepted SEQ is 0.
    drop(open(&sim));
    // A restarted cart whose first DATA frame carried SEQ 0 again would be
    // taken for a duplicate and dropped; the driver sends HELLO first.
    let mut r = SerialReader::open(&path, driver_config()).unwrap();
    let req = request(20, 5);
    assert!(matches!(
        pay(&mut r, &req).last(),
        Some(PaymentEvent::CardRead(_))
    ));
    assert!(r.snapshot().reader.is_some());
}
