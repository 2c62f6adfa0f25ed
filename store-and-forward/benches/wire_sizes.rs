//! Measures the encodings considered for telemetry on the wire (the figures
//! behind the choice in docs/wire-format.md): JSON, CBOR and protobuf, each
//! raw and zstd-compressed, on the brief's periodic readings, packed into
//! messages that fill AWS IoT's 5 KB metering unit.
//!
//! Run: `cargo bench -p store-and-forward --bench wire_sizes`.

use store_and_forward::Timestamp;
use store_and_forward::telemetry::{TelemetryEvent, simulated_readings};

/// The same reading as a protobuf message (prost derive, no codegen).
#[derive(Clone, PartialEq, prost::Message)]
struct PbReading {
    #[prost(int64, tag = "1")]
    at: i64,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(float, tag = "3")]
    temperature_c: f32,
    #[prost(uint32, tag = "4")]
    battery_pct: u32,
    #[prost(sint32, tag = "5")]
    rssi_dbm: i32,
    #[prost(string, tag = "6")]
    state: String,
    #[prost(float, optional, tag = "7")]
    x: Option<f32>,
    #[prost(float, optional, tag = "8")]
    y: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbBatch {
    #[prost(message, repeated, tag = "1")]
    readings: Vec<PbReading>,
}

fn pb(ev: &TelemetryEvent) -> PbReading {
    match ev {
        TelemetryEvent::Reading {
            at,
            seq,
            temperature_c,
            battery_pct,
            rssi_dbm,
            state,
            position,
        } => PbReading {
            at: at.0,
            seq: *seq,
            temperature_c: *temperature_c,
            battery_pct: u32::from(*battery_pct),
            rssi_dbm: i32::from(*rssi_dbm),
            state: state.clone(),
            x: position.map(|p| p.0),
            y: position.map(|p| p.1),
        },
        _ => PbReading::default(),
    }
}

type Encoder = fn(&[TelemetryEvent]) -> Vec<u8>;

fn json(evs: &[TelemetryEvent]) -> Vec<u8> {
    serde_json::to_vec(evs).expect("json")
}

fn cbor(evs: &[TelemetryEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&evs, &mut out).expect("cbor");
    out
}

fn protobuf(evs: &[TelemetryEvent]) -> Vec<u8> {
    use prost::Message;
    PbBatch {
        readings: evs.iter().map(pb).collect(),
    }
    .encode_to_vec()
}

fn zstd3(b: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(b, 3).expect("zstd")
}

/// Largest n such that the encoded (and maybe compressed) batch of the
/// first n events fits `budget` bytes.
fn fill(evs: &[TelemetryEvent], enc: Encoder, compress: bool, budget: usize) -> (usize, usize) {
    let size = |n: usize| {
        let raw = enc(&evs[..n]);
        if compress {
            zstd3(&raw).len()
        } else {
            raw.len()
        }
    };
    let (mut lo, mut hi) = (1usize, evs.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if size(mid) <= budget {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    (lo, size(lo))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let evs = simulated_readings(20_000, Timestamp(1_795_000_000_000), 7);
    let one = serde_json::to_vec(&evs[100]).expect("json").len();
    println!("one reading as JSON: {one} bytes");
    // Topic + envelope overhead left out of the budget: 5120 - 200.
    let budget = 5120 - 200;
    println!(
        "{:<22} {:>10} {:>12} {:>14}",
        "encoding", "events/msg", "bytes/event", "units/event"
    );
    for (name, enc) in [
        ("json", json as Encoder),
        ("cbor", cbor),
        ("protobuf", protobuf),
    ] {
        for compress in [false, true] {
            // Average over several windows of the day.
            let mut events = 0usize;
            let mut bytes = 0usize;
            let mut msgs = 0usize;
            let mut start = 0usize;
            while start + 2_000 <= evs.len() && msgs < 8 {
                let (n, b) = fill(&evs[start..start + 2_000], enc, compress, budget);
                events += n;
                bytes += b;
                msgs += 1;
                start += 2_000;
            }
            let label = format!("{name}{}", if compress { " + zstd" } else { "" });
            println!(
                "{:<22} {:>10.0} {:>12.1} {:>14.5}",
                label,
                events as f64 / msgs as f64,
                bytes as f64 / events as f64,
                msgs as f64 / events as f64
            );
        }
    }
}
