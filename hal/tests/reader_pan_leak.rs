//! No PAN on the cart side: payments with known PANs, over a noisy line, with
//! every tracing event captured. The PAN must appear nowhere in what the
//! driver returns (except inside the encrypted blob) nor in the logs.

mod reader_common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use hal::reader::{Outcome, PaymentEvent, PaymentReader};
use reader_common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The forms a PAN could leak in: ASCII digits, their hex, packed BCD.
fn pan_forms(pan: &str) -> (Vec<u8>, String, Vec<u8>) {
    let ascii = pan.as_bytes().to_vec();
    let hex_ascii = hex::encode(pan);
    let mut digits: Vec<u8> = pan.bytes().map(|b| b - b'0').collect();
    if digits.len() % 2 == 1 {
        digits.push(0xF);
    }
    let bcd = digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    (ascii, hex_ascii, bcd)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn leaks(text: &[u8], pan: &str) -> bool {
    let (ascii, hex_ascii, bcd) = pan_forms(pan);
    let bcd_hex = hex::encode(&bcd);
    let lower = String::from_utf8_lossy(text).to_lowercase();
    contains(text, &ascii)
        || contains(text, &bcd)
        || lower.contains(&hex_ascii)
        || lower.contains(&bcd_hex)
}

#[test]
fn the_pan_never_reaches_the_cart_side_or_its_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // The checker itself finds a PAN in every form.
    assert!(leaks(b"pan=4111111111111111", "4111111111111111"));
    assert!(leaks(
        b"\x41\x11\x11\x11\x11\x11\x11\x11",
        "4111111111111111"
    ));
    assert!(leaks(
        b"3431313131313131313131313131313131",
        "4111111111111111"
    ));

    let sim = start_sim(3, 4);
    let mut r = open(&sim);
    let names = [
        "chip-approve",
        "chip-pin-approve",
        "contactless-pin-approve",
        "removed-mid-read",
    ];
    let cards = cards();
    let mut cart_side = Vec::new();
    let mut reads = 0;
    for name in names {
        sim.queue_card(name);
        let req = request(777, 5);
        let events = pay(&mut r, &req);
        for e in &events {
            cart_side.extend(format!("{e:?} {e:#?}").into_bytes());
            if let PaymentEvent::CardRead(res) = e {
                reads += 1;
                cart_side.extend(res.masked_pan.as_str().as_bytes());
                cart_side.extend(res.fingerprint.0);
                cart_side.extend(res.fingerprint.to_hex().into_bytes());
                cart_side.extend(&res.emv);
                // The blob carries the PAN, encrypted: it opens only with the
                // processor's key, and holds no PAN in clear.
                let pan = &cards.get(name).unwrap().pan;
                assert_eq!(&pan_in_blob(&req, &res.blob), pan);
                assert!(!leaks(&res.blob, pan));
                r.send_outcome(req.key, Outcome::ApprovedOffline).unwrap();
            }
        }
        cart_side.extend(format!("{:?} {:?}", r.snapshot(), r).into_bytes());
    }
    assert_eq!(reads, 3);
    drop(r);
    let report = sim.stop().unwrap();
    assert!(report.faults_injected > 0);

    let logs = capture.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("reader: start payment"), "logs were captured");
    assert!(
        text.contains("reader sim: card read"),
        "simulator logs were captured"
    );
    for name in names {
        let pan = &cards.get(name).unwrap().pan;
        assert!(!leaks(&cart_side, pan), "PAN of {name} in cart-side values");
        assert!(!leaks(&logs, pan), "PAN of {name} in the logs");
    }
}
