//! Reader frame encode/decode throughput (frames/s, MB/s) and per-frame
//! latency percentiles, for a small frame (EVENT) and a full card-read
//! result. Run with `cargo bench -p hal --bench reader_frames`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hal::reader::frame::{Decoded, Decoder, Frame};
use hal::reader::message::{
    CardReadResult, Cvm, EntryMode, Fingerprint, MaskedPan, Message, UiEvent,
};
use hal::reader::wire;
use hdrhistogram::Histogram;
use uuid::Uuid;

fn messages() -> Vec<(&'static str, Message)> {
    let key = Uuid::from_u128(0x0192f0e4_7c1a_7d3e_9b5a_3c2d1e0f4a6b);
    vec![
        (
            "EVENT (18 B payload)",
            Message::Event {
                key,
                event: UiEvent::Processing,
            },
        ),
        (
            "CARD_READ (283 B payload)",
            Message::CardRead(CardReadResult {
                key,
                entry_mode: EntryMode::Chip,
                cvm: Cvm::Pin,
                masked_pan: MaskedPan::new("411111******1111").unwrap_or_else(|| unreachable!()),
                fingerprint: Fingerprint([7; 32]),
                emv: vec![0x9F; 90],
                blob: vec![0xA5; 121],
            }),
        ),
    ]
}

fn bench(name: &str, msg: &Message) {
    const N: usize = 200_000;
    let payload = wire::encode(msg).expect("bench message encodes");
    let frame = Frame::message(false, 1, payload).expect("bench frame fits");
    let frame_len = frame.encode().len();

    // Encode: message -> payload -> frame bytes.
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut out = Vec::with_capacity(N * frame_len);
    let start = Instant::now();
    for i in 0..N {
        let t = Instant::now();
        let p = wire::encode(black_box(msg)).expect("encodes");
        let f = Frame::message(false, i as u8, p).expect("fits");
        f.encode_into(&mut out);
        hist.record(t.elapsed().as_nanos() as u64).ok();
    }
    let enc = start.elapsed();
    report(name, "encode", N, out.len(), enc, &hist);

    // Decode: bytes -> frames -> messages, fed in 512-byte reads like the driver.
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut d = Decoder::new();
    let mut n = 0usize;
    let start = Instant::now();
    for chunk in out.chunks(512) {
        let t = Instant::now();
        d.push(chunk);
        while let Some(Decoded::Frame(f)) = d.next_frame() {
            black_box(wire::decode(f.payload()).expect("decodes"));
            n += 1;
        }
        hist.record(t.elapsed().as_nanos() as u64).ok();
    }
    let dec = start.elapsed();
    assert_eq!(n, N);
    report(name, "decode (per 512 B read)", N, out.len(), dec, &hist);
}

fn report(name: &str, what: &str, frames: usize, bytes: usize, t: Duration, h: &Histogram<u64>) {
    let s = t.as_secs_f64();
    println!(
        "{name:28} {what:24} {:>12.0} frames/s {:>8.1} MB/s   p50 {:>6} ns  p99 {:>6} ns  max {:>8} ns",
        frames as f64 / s,
        bytes as f64 / s / 1e6,
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max(),
    );
}

fn main() {
    for (name, msg) in messages() {
        bench(name, &msg);
    }
}
