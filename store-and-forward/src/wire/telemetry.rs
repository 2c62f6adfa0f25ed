//! Packing telemetry into messages. AWS IoT meters a PUBLISH on payload +
//! topic in 5 KB steps, so each message is filled up to one unit, after
//! compression: about 650 of the brief's readings per message (see
//! docs/wire-format.md).

use serde::Serialize;
use serde_json::value::RawValue;

use super::envelope::{Kind, compress, encode};
use crate::time::Timestamp;

/// AWS IoT Core's metering unit.
pub const METERING_UNIT: usize = 5 * 1024;

/// One packed telemetry message.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The compressed envelope.
    pub payload: Vec<u8>,
    /// Outbox ids of the events it carries: all delivered by its PUBACK.
    pub ids: Vec<i64>,
    /// Uncompressed JSON size.
    pub raw_bytes: usize,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    ledger: &'a str,
    seqs: Vec<(i64, i64)>,
    events: Vec<&'a RawValue>,
}

fn ranges(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => out.push((id, id)),
        }
    }
    out
}

/// Splits stored events (outbox id, JSON bytes) into those that are valid
/// JSON and the ids of those that are not (to quarantine: never sent).
pub fn validate<'a>(records: &[(i64, &'a [u8])]) -> (Vec<(i64, &'a RawValue)>, Vec<i64>) {
    let mut valid = Vec::with_capacity(records.len());
    let mut invalid = Vec::new();
    for (id, bytes) in records {
        match std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
        {
            Some(raw) => valid.push((*id, raw)),
            None => invalid.push(*id),
        }
    }
    (valid, invalid)
}

/// Packs a prefix of `valid` (see [`validate`]) into one compressed message
/// whose payload plus `topic_len` fits `unit` bytes. Returns `None` when
/// `valid` is empty. `hint` carries the last good count between calls, so
/// most messages take one or two compressions.
pub fn pack(
    cart: &str,
    ledger_id: &str,
    topic_len: usize,
    valid: &[(i64, &RawValue)],
    unit: usize,
    now: Timestamp,
    hint: &mut usize,
) -> Option<Packed> {
    if valid.is_empty() {
        return None;
    }
    let budget = unit.saturating_sub(topic_len);
    let build = |n: usize| -> (Vec<u8>, usize) {
        let ids: Vec<i64> = valid[..n].iter().map(|(id, _)| *id).collect();
        let body = BatchOut {
            ledger: ledger_id,
            seqs: ranges(&ids),
            events: valid[..n].iter().map(|(_, r)| *r).collect(),
        };
        let id = format!("{ledger_id}:{}", ids[0]);
        let json = encode(Kind::TelemetryBatch, cart, &id, now, &body);
        (compress(&json), json.len())
    };
    let mut n = (*hint).clamp(1, valid.len());
    let mut best: Option<(usize, Vec<u8>, usize)> = None;
    let mut too_big = usize::MAX;
    for _ in 0..8 {
        let (payload, raw) = build(n);
        let size = payload.len();
        if size <= budget {
            let better = best.as_ref().is_none_or(|(bn, _, _)| n > *bn);
            if better {
                best = Some((n, payload, raw));
            }
            // Full enough, or nothing more to add.
            if n == valid.len() || size * 100 >= budget * 93 || n + 1 >= too_big {
                break;
            }
            let grown = (n as f64 * budget as f64 * 0.97 / size as f64) as usize;
            n = grown.clamp(n + 1, valid.len().min(too_big - 1));
        } else {
            too_big = too_big.min(n);
            if n == 1 {
                // One event larger than a unit: it goes alone.
                best.get_or_insert((1, payload, raw));
                break;
            }
            let shrunk = (n as f64 * budget as f64 * 0.95 / size as f64) as usize;
            let floor = best.as_ref().map_or(1, |(bn, _, _)| bn + 1);
            n = shrunk.clamp(floor.min(n - 1), n - 1);
            if best.as_ref().is_some_and(|(bn, _, _)| n <= *bn) {
                break;
            }
        }
    }
    let (n, payload, raw_bytes) = best?;
    *hint = n;
    Some(Packed {
        payload,
        ids: valid[..n].iter().map(|(id, _)| *id).collect(),
        raw_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::TelemetryEvent;
    use crate::wire::{Up, decode_up};

    fn events(n: usize) -> Vec<(i64, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let ev = TelemetryEvent::Reading {
                    at: Timestamp(1_795_000_000_000 + i as i64 * 1000),
                    seq: i as u64,
                    temperature_c: 21.0 + (i % 7) as f32 / 10.0,
                    battery_pct: 90,
                    rssi_dbm: -60 - (i % 5) as i16,
                    state: "shopping".into(),
                    position: Some((i as f32 % 50.0, 3.5)),
                };
                (10 + i as i64, serde_json::to_vec(&ev).unwrap())
            })
            .collect()
    }

    #[test]
    fn fills_one_unit_and_round_trips() {
        let evs = events(3_000);
        let recs: Vec<(i64, &[u8])> = evs.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let (valid, invalid) = validate(&recs);
        assert!(invalid.is_empty());
        let mut hint = 100;
        let topic = "carts/cart-1/up/telemetry_batch".len();
        let p = pack(
            "cart-1",
            "L",
            topic,
            &valid,
            METERING_UNIT,
            Timestamp(0),
            &mut hint,
        )
        .unwrap();
        assert!(p.payload.len() + topic <= METERING_UNIT);
        assert!(p.ids.len() >= 200, "{} events", p.ids.len());
        assert!(
            p.payload.len() * 100 >= (METERING_UNIT - topic) * 80,
            "{}",
            p.payload.len()
        );
        let (h, up) = decode_up(&p.payload).unwrap();
        assert_eq!(h.id, "L:10");
        let Up::TelemetryBatch(b) = up else { panic!() };
        assert_eq!(b.sequences().collect::<Vec<_>>(), p.ids);
        assert_eq!(b.known_events().len(), p.ids.len());
    }

    #[test]
    fn invalid_payloads_are_set_aside() {
        let evs = events(3);
        let recs: Vec<(i64, &[u8])> = vec![(1, &evs[0].1), (2, b"{not json"), (3, &evs[2].1)];
        let (valid, invalid) = validate(&recs);
        let mut hint = 10;
        let p = pack("c", "L", 10, &valid, METERING_UNIT, Timestamp(0), &mut hint).unwrap();
        assert_eq!(p.ids, vec![1, 3]);
        assert_eq!(invalid, vec![2]);
        let Up::TelemetryBatch(b) = decode_up(&p.payload).unwrap().1 else {
            panic!()
        };
        assert_eq!(b.seqs, vec![(1, 1), (3, 3)]);
    }

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(ranges(&[1, 2, 3, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
    }
}
