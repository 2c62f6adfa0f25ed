//! The hand-written example frames of docs/reader-protocol.md (section 11) and
//! the independent card-data vector: the encoder must produce them byte for
//! byte and the decoder must read them back.

use std::collections::BTreeMap;
use std::path::Path;

use hal::reader::carddata::{self, Binding, CardData};
use hal::reader::fixtures;
use hal::reader::frame::{Decoded, Decoder, Frame, FrameKind};
use hal::reader::message::{
    Capabilities, CardReadResult, Currency, Cvm, DeclineReason, EntryMode, Fingerprint, MaskedPan,
    Message, Outcome, PaymentErrorCode, PaymentRequest, ReaderInfo, ReaderPaymentState,
    StatusReply, UiEvent,
};
use hal::reader::wire;
use uuid::Uuid;

fn doc_vectors() -> BTreeMap<String, Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reader-protocol.md");
    let text = std::fs::read_to_string(path).expect("the spec is in the tree");
    let mut out = BTreeMap::new();
    let mut in_block = false;
    let mut name = String::new();
    let mut bytes = Vec::new();
    for line in text.lines() {
        if line.trim() == "```hex" {
            in_block = true;
            name.clear();
            bytes.clear();
            continue;
        }
        if in_block && line.trim() == "```" {
            in_block = false;
            out.insert(name.clone(), bytes.clone());
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(comment) = line.trim().strip_prefix('#') {
            if name.is_empty() {
                name = comment.split_whitespace().next().unwrap_or("").to_owned();
            }
            continue;
        }
        for tok in line.split_whitespace().filter(|t| *t != "|") {
            bytes.push(u8::from_str_radix(tok, 16).expect("hex byte in a vector"));
        }
    }
    out
}

fn key() -> Uuid {
    Uuid::parse_str("0192f0e4-7c1a-7d3e-9b5a-3c2d1e0f4a6b").unwrap()
}

fn eur() -> Currency {
    "EUR".parse().unwrap()
}

/// (vector, frame kind, SEQ, message) as the spec's comments describe them.
fn expected() -> Vec<(&'static str, FrameKind, u8, Option<Message>)> {
    let k = key();
    let mut fp = [0u8; 32];
    for (i, b) in fp.iter_mut().enumerate() {
        *b = i as u8;
    }
    vec![
        ("V1", FrameKind::Ack, 0x05, None),
        ("V2", FrameKind::Nak, 0x05, None),
        (
            "V3",
            FrameKind::Sync,
            0x00,
            Some(Message::Hello {
                proto_min: 1,
                proto_max: 1,
                host: "cart 1.0".into(),
                session: 0x1234_5678,
            }),
        ),
        (
            "V4",
            FrameKind::Data,
            0x00,
            Some(Message::HelloReply(ReaderInfo {
                protocol_version: 1,
                firmware: "RDR-2.4.1".into(),
                serial: "SIM-0001".into(),
                capabilities: Capabilities(0x000F),
                processor_key_id: 1,
                session: 0x1234_5678,
            })),
        ),
        (
            "V5",
            FrameKind::Data,
            0x01,
            Some(Message::StartPayment(PaymentRequest {
                key: k,
                amount_minor: 1250,
                currency: eur(),
                card_timeout_s: 60,
            })),
        ),
        (
            "V6",
            FrameKind::Data,
            0x01,
            Some(Message::Event {
                key: k,
                event: UiEvent::PresentCard,
            }),
        ),
        (
            "V7",
            FrameKind::Data,
            0x02,
            Some(Message::Cancel { key: k }),
        ),
        (
            "V8",
            FrameKind::Data,
            0x02,
            Some(Message::PaymentError {
                key: k,
                code: PaymentErrorCode::Cancelled,
            }),
        ),
        (
            "V9",
            FrameKind::Data,
            0x03,
            Some(Message::Status { key: k }),
        ),
        (
            "V10",
            FrameKind::Data,
            0x03,
            Some(Message::StatusReply(StatusReply {
                key: k,
                state: ReaderPaymentState::Completed(Outcome::ApprovedOffline),
                amount_minor: 1250,
                currency: eur(),
            })),
        ),
        (
            "V11",
            FrameKind::Data,
            0x04,
            Some(Message::Outcome {
                key: k,
                outcome: Outcome::Declined(DeclineReason::InsufficientFunds),
            }),
        ),
        (
            "V12",
            FrameKind::Data,
            0x04,
            Some(Message::CardRead(CardReadResult {
                key: k,
                entry_mode: EntryMode::Chip,
                cvm: Cvm::Pin,
                masked_pan: MaskedPan::new("411111******1111").unwrap(),
                fingerprint: Fingerprint(fp),
                emv: vec![0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x12, 0x50],
                blob: vec![0xDE, 0xAD, 0xBE, 0xEF],
            })),
        ),
        (
            "V13",
            FrameKind::Data,
            0x05,
            Some(Message::StatusReply(StatusReply {
                key: k,
                state: ReaderPaymentState::Unknown,
                amount_minor: 0,
                currency: Currency::NONE,
            })),
        ),
    ]
}

#[test]
fn every_spec_vector_is_checked() {
    let doc = doc_vectors();
    let names: Vec<_> = expected().iter().map(|e| e.0.to_owned()).collect();
    let mut doc_names: Vec<_> = doc.keys().cloned().collect();
    doc_names.sort();
    let mut names_sorted = names.clone();
    names_sorted.sort();
    assert_eq!(doc_names, names_sorted);
}

#[test]
fn encoder_produces_the_spec_vectors() {
    let doc = doc_vectors();
    for (name, kind, seq, msg) in expected() {
        let frame = match (kind, msg) {
            (FrameKind::Ack, None) => Frame::ack(seq),
            (FrameKind::Nak, None) => Frame::nak(seq),
            (k, Some(m)) => {
                Frame::message(k == FrameKind::Sync, seq, wire::encode(&m).unwrap()).unwrap()
            }
            _ => unreachable!(),
        };
        assert_eq!(frame.encode(), doc[name], "vector {name}");
    }
}

#[test]
fn decoder_reads_the_spec_vectors() {
    let doc = doc_vectors();
    for (name, kind, seq, msg) in expected() {
        let mut d = Decoder::new();
        d.push(&doc[name]);
        let Some(Decoded::Frame(f)) = d.next_frame() else {
            panic!("vector {name} did not decode");
        };
        assert_eq!((f.kind(), f.seq()), (kind, seq), "vector {name}");
        match msg {
            Some(m) => assert_eq!(wire::decode(f.payload()).unwrap(), m, "vector {name}"),
            None => assert!(f.payload().is_empty()),
        }
        assert_eq!(d.next_frame(), None);
    }
}

#[test]
fn resync_examples_of_the_spec() {
    let doc = doc_vectors();
    let mut d = Decoder::new();
    d.push(&[0xFF, 0x02, 0x13]);
    d.push(&doc["V1"]);
    assert_eq!(d.next_frame(), Some(Decoded::Frame(Frame::ack(5))));
    let mut bad = doc["V1"].clone();
    *bad.last_mut().unwrap() = 0xC2;
    let mut d = Decoder::new();
    d.push(&bad);
    assert_eq!(d.next_frame(), Some(Decoded::Corrupt { seq: 5 }));
    assert_eq!(Frame::nak(5).encode(), doc["V2"]);
}

#[derive(serde::Deserialize)]
struct CardDataVector {
    test_only: bool,
    idempotency_key: Uuid,
    amount_minor: u64,
    currency: String,
    pan: String,
    expiry: String,
    psn: u8,
    ephemeral_scalar_hex: String,
    nonce_hex: String,
    blob_hex: String,
}

fn card_vector() -> (CardDataVector, Binding, CardData) {
    let dir = fixtures::source_tree_dir();
    let text = std::fs::read_to_string(dir.join("carddata-vector.json")).unwrap();
    let v: CardDataVector = serde_json::from_str(&text).unwrap();
    assert!(v.test_only);
    let binding = Binding {
        key: v.idempotency_key,
        amount_minor: v.amount_minor,
        currency: v.currency.parse().unwrap(),
    };
    let data = CardData {
        pan: v.pan.clone(),
        expiry: v.expiry.as_bytes().try_into().unwrap(),
        psn: Some(v.psn),
        entry_mode: EntryMode::Chip,
    };
    (v, binding, data)
}

#[test]
fn card_data_matches_the_independent_vector() {
    let (v, binding, data) = card_vector();
    let dir = fixtures::source_tree_dir();
    let sk = fixtures::load_processor_key(&dir.join(fixtures::PROCESSOR_KEY)).unwrap();
    let eph = p256::SecretKey::from_slice(&hex::decode(&v.ephemeral_scalar_hex).unwrap()).unwrap();
    let nonce: [u8; 12] = hex::decode(&v.nonce_hex).unwrap().try_into().unwrap();
    let blob = carddata::encrypt_with(&sk.public(), &binding, &data, &eph, nonce).unwrap();
    assert_eq!(hex::encode(&blob), v.blob_hex);
    let opened = carddata::decrypt(&sk, &binding, &hex::decode(&v.blob_hex).unwrap()).unwrap();
    assert_eq!(opened, data);
}

#[test]
fn card_data_is_bound_to_its_payment_and_untampered() {
    let (v, binding, data) = card_vector();
    let dir = fixtures::source_tree_dir();
    let sk = fixtures::load_processor_key(&dir.join(fixtures::PROCESSOR_KEY)).unwrap();
    let blob = hex::decode(&v.blob_hex).unwrap();
    let other_amount = Binding {
        amount_minor: binding.amount_minor + 1,
        ..binding
    };
    assert_eq!(
        carddata::decrypt(&sk, &other_amount, &blob),
        Err(carddata::CardDataError::Authentication)
    );
    let other_key = Binding {
        key: Uuid::nil(),
        ..binding
    };
    assert_eq!(
        carddata::decrypt(&sk, &other_key, &blob),
        Err(carddata::CardDataError::Authentication)
    );
    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        carddata::decrypt(&sk, &binding, &flipped),
        Err(carddata::CardDataError::Authentication)
    );
    assert_eq!(
        carddata::decrypt(&sk, &binding, &blob[..50]),
        Err(carddata::CardDataError::TooShort)
    );
    // A fresh random encryption opens too, and differs every time.
    let a = carddata::encrypt(&sk.public(), &binding, &data).unwrap();
    let b = carddata::encrypt(&sk.public(), &binding, &data).unwrap();
    assert_ne!(a, b);
    assert_eq!(carddata::decrypt(&sk, &binding, &a).unwrap(), data);
    // Nothing of the PAN is visible in the blob or in Debug.
    assert!(!contains(&a, data.pan.as_bytes()));
    assert!(!format!("{data:?}").contains(&data.pan));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn test_cards_load_and_cover_the_behaviours() {
    let cards =
        fixtures::TestCards::load(&fixtures::source_tree_dir().join(fixtures::TEST_CARDS)).unwrap();
    use fixtures::{ProcessorBehaviour as P, ReaderBehaviour as R};
    let has = |f: &dyn Fn(&fixtures::TestCard) -> bool| cards.cards.iter().any(f);
    assert!(has(
        &|c| c.entry_mode == EntryMode::Chip && c.reader == R::Normal
    ));
    assert!(has(
        &|c| c.entry_mode == EntryMode::Contactless && c.reader == R::Normal
    ));
    assert!(has(&|c| c.pin));
    assert!(has(&|c| matches!(c.reader, R::Slow { .. })));
    assert!(has(&|c| c.reader == R::NoCard));
    assert!(has(&|c| c.reader == R::RemovedMidRead));
    assert!(has(&|c| c.reader == R::Unreadable));
    assert!(has(&|c| matches!(c.processor, P::Decline { .. })));
    assert!(has(&|c| matches!(
        c.processor,
        P::DeclineWhenForwarded { .. }
    )));
    assert!(has(&|c| matches!(c.processor, P::Slow { .. })));
    assert!(has(&|c| c.processor == P::NeverAnswers));
    assert!(has(&|c| c.deny_listed));
    // Debug of a test card never shows its PAN.
    for c in &cards.cards {
        assert!(!format!("{c:?}").contains(&c.pan));
    }
}
