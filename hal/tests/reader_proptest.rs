//! Property tests of the frame decoder and the message codec.

use hal::reader::frame::{Decoded, Decoder, Frame, MAX_PAYLOAD};
use hal::reader::message::{
    Capabilities, CardReadResult, Currency, Cvm, DeclineReason, EntryMode, Fingerprint, MaskedPan,
    Message, Outcome, PaymentErrorCode, PaymentRequest, ReaderInfo, ReaderPaymentState,
    StatusReply, UiEvent,
};
use hal::reader::wire;
use proptest::prelude::*;
use uuid::Uuid;

fn key() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn currency() -> impl Strategy<Value = Currency> {
    "[A-Z]{3}".prop_map(|s| s.parse().unwrap())
}

fn reason() -> impl Strategy<Value = DeclineReason> {
    prop_oneof![
        Just(DeclineReason::InsufficientFunds),
        Just(DeclineReason::DoNotHonour),
        Just(DeclineReason::DenyListed),
        Just(DeclineReason::OverOfflineLimit),
        Just(DeclineReason::OfflineNotAllowed),
        Just(DeclineReason::ExpiredCard),
        Just(DeclineReason::ProcessorUnavailable),
        Just(DeclineReason::Other),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::ApprovedOnline),
        Just(Outcome::ApprovedOffline),
        reason().prop_map(Outcome::Declined),
    ]
}

fn error_code() -> impl Strategy<Value = PaymentErrorCode> {
    prop_oneof![
        Just(PaymentErrorCode::Timeout),
        Just(PaymentErrorCode::Cancelled),
        Just(PaymentErrorCode::CardRemoved),
        Just(PaymentErrorCode::Unreadable),
        Just(PaymentErrorCode::ReaderFault),
        Just(PaymentErrorCode::Busy),
        Just(PaymentErrorCode::BadRequest),
    ]
}

fn state() -> impl Strategy<Value = ReaderPaymentState> {
    prop_oneof![
        Just(ReaderPaymentState::Unknown),
        Just(ReaderPaymentState::WaitingForCard),
        Just(ReaderPaymentState::Reading),
        Just(ReaderPaymentState::WaitingForPin),
        Just(ReaderPaymentState::CardRead),
        error_code().prop_map(ReaderPaymentState::Failed),
        outcome().prop_map(ReaderPaymentState::Completed),
    ]
}

fn event() -> impl Strategy<Value = UiEvent> {
    prop_oneof![
        Just(UiEvent::PresentCard),
        Just(UiEvent::PinRequired),
        Just(UiEvent::Processing),
        Just(UiEvent::CardRemoved),
    ]
}

fn card_read() -> impl Strategy<Value = CardReadResult> {
    (
        key(),
        any::<bool>(),
        any::<bool>(),
        "[0-9]{6}\\*{4,9}[0-9]{4}",
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(key, chip, pin, masked, fp, emv, blob)| CardReadResult {
            key,
            entry_mode: if chip {
                EntryMode::Chip
            } else {
                EntryMode::Contactless
            },
            cvm: if pin { Cvm::Pin } else { Cvm::None },
            masked_pan: MaskedPan::new(&masked).unwrap(),
            fingerprint: Fingerprint(fp),
            emv,
            blob,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), "[ -~]{0,40}", any::<u32>()).prop_map(
            |(a, b, host, session)| Message::Hello {
                proto_min: a,
                proto_max: b,
                host,
                session,
            }
        ),
        (key(), any::<u64>(), currency(), any::<u16>()).prop_map(|(key, a, c, t)| {
            Message::StartPayment(PaymentRequest {
                key,
                amount_minor: a,
                currency: c,
                card_timeout_s: t,
            })
        }),
        key().prop_map(|key| Message::Cancel { key }),
        key().prop_map(|key| Message::Status { key }),
        (key(), outcome()).prop_map(|(key, outcome)| Message::Outcome { key, outcome }),
        (
            any::<u8>(),
            "[ -~]{0,30}",
            "[ -~]{0,30}",
            any::<u16>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(v, fw, serial, caps, kid, session)| Message::HelloReply(
                ReaderInfo {
                    protocol_version: v,
                    firmware: fw,
                    serial,
                    capabilities: Capabilities(caps),
                    processor_key_id: kid,
                    session,
                }
            )),
        (key(), event()).prop_map(|(key, event)| Message::Event { key, event }),
        card_read().prop_map(Message::CardRead),
        (key(), error_code()).prop_map(|(key, code)| Message::PaymentError { key, code }),
        (key(), state(), any::<u64>(), currency()).prop_map(|(key, state, a, c)| {
            Message::StatusReply(StatusReply {
                key,
                state,
                amount_minor: a,
                currency: c,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)
    ) {
        let mut d = Decoder::new();
        for c in &chunks {
            d.push(c);
            while let Some(x) = d.next_frame() {
                if let Decoded::Frame(f) = x {
                    // Whatever the decoder accepts must be a frame it could encode.
                    prop_assert!(f.payload().len() <= MAX_PAYLOAD);
                    let _ = wire::decode(f.payload());
                }
            }
        }
        let _ = d.on_idle();
        while d.next_frame().is_some() {}
    }

    #[test]
    fn tlv_walker_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = hal::reader::tlv::check_no_card_data(&bytes);
    }

    #[test]
    fn message_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn any_message_round_trips_through_a_frame_behind_noise(
        m in message(),
        seq in any::<u8>(),
        noise in proptest::collection::vec(any::<u8>().prop_filter("no STX", |b| *b != 0x02), 0..20),
        split in 1usize..40,
    ) {
        let payload = wire::encode(&m).unwrap();
        let frame = Frame::message(false, seq, payload).unwrap();
        let mut bytes = noise.clone();
        bytes.extend(frame.encode());
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for c in bytes.chunks(split) {
            d.push(c);
            while let Some(x) = d.next_frame() {
                got.push(x);
            }
        }
        prop_assert_eq!(got.len(), 1);
        let Some(Decoded::Frame(f)) = got.pop() else { panic!("not a frame") };
        prop_assert_eq!(f.seq(), seq);
        prop_assert_eq!(wire::decode(f.payload()).unwrap(), m);
    }

    #[test]
    fn a_corrupted_byte_never_yields_a_different_frame(
        m in message(),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let frame = Frame::message(false, 9, wire::encode(&m).unwrap()).unwrap();
        let mut bytes = frame.encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        let mut d = Decoder::new();
        d.push(&bytes);
        let _ = d.on_idle();
        let mut d2 = Decoder::new();
        d2.push(&bytes);
        while let Some(x) = d2.next_frame() {
            if let Decoded::Frame(f) = x {
                // CRC-16 detects every error burst up to 16 bits long.
                prop_assert!(f == frame, "a damaged frame was accepted");
            }
        }
    }
}
