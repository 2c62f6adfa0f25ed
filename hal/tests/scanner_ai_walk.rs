//! Every Application Identifier of the decoder's table, with every value
//! length from 0 to its maximum + 1, in every position among other
//! elements, with and without separators, through the GS1 parser and the
//! whole decoder (with and without AIM identifier): no input may panic.
//!
//! The exhaustive walk uses fillers that look like real data (dates,
//! times, digits, letters), which is what reached the AI 7011 panic; the
//! property test adds random content of the AI's character set.

use hal::scanner::gs1::{self, KnownAi};
use hal::scanner::{Decoder, DecoderConfig};
use proptest::prelude::*;

const YEAR: u16 = 2026;

/// Other elements the walked one is placed among (valid on their own).
const NEIGHBOURS: &[(&str, bool)] = &[
    ("0109501101530003", true),
    ("10AB-123", false),
    ("17261231", true),
    ("3103000750", true),
    ("21SERIAL7", false),
];

const FILLERS: &[&str] = &[
    // Date + time + date, digits that pass date and time checks.
    "26123112002612311200261231120026123112002612311200261231120026123112002612311200261231120026",
    "99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999",
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm",
    "0950110153000309501101530003095011015300030950110153000309501101530003095011015300030950110",
];

fn lines_for(ai: &KnownAi, value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pos in 0..=NEIGHBOURS.len() {
        for sep_after in [false, true] {
            let mut data = Vec::new();
            for (i, (el, fixed)) in NEIGHBOURS.iter().enumerate() {
                if i == pos {
                    data.extend_from_slice(ai.ai.as_bytes());
                    data.extend_from_slice(value);
                    if sep_after || !ai.fixed {
                        data.push(0x1d);
                    }
                }
                data.extend_from_slice(el.as_bytes());
                if !fixed || sep_after {
                    data.push(0x1d);
                }
            }
            if pos == NEIGHBOURS.len() {
                data.extend_from_slice(ai.ai.as_bytes());
                data.extend_from_slice(value);
                if sep_after {
                    data.push(0x1d);
                }
            }
            out.push(data);
        }
    }
    // Alone, too (nothing before or after).
    out.push([ai.ai.as_bytes(), value].concat());
    out
}

fn exercise(decoder: &Decoder, line: &[u8]) {
    let _ = gs1::parse(line, YEAR);
    // Without AIM identifier the decoder infers the symbology; with one it
    // goes straight to the GS1 parser.
    for aim in [&b""[..], b"]C1"] {
        let _ = decoder.decode(&[aim, line].concat(), YEAR);
    }
}

#[test]
fn every_ai_every_length_every_position_never_panics() {
    let decoder = Decoder::new(DecoderConfig::default());
    let ais = gs1::known_ais();
    assert!(ais.len() > 150, "table lists {} AIs", ais.len());
    let mut inputs = 0usize;
    for ai in &ais {
        for len in 0..=ai.max_len + 1 {
            for filler in FILLERS {
                let value = &filler.as_bytes()[..len.min(filler.len())];
                for line in lines_for(ai, value) {
                    exercise(&decoder, &line);
                    inputs += 1;
                }
            }
        }
    }
    // The walk is exhaustive over the table, not sampled.
    assert!(inputs > 100_000, "{inputs} inputs");
}

#[test]
fn valid_lengths_of_numeric_fixed_ais_are_not_refused_as_too_short() {
    // The lengths the table says are valid are read as such (the walk above
    // checks only for panics): a numeric fixed-length AI at its length,
    // after the GTIN, is never TooShort or TooLong.
    for ai in gs1::known_ais().iter().filter(|a| a.fixed && a.numeric) {
        let value = &FILLERS[0].as_bytes()[..ai.max_len];
        let line = [b"0109501101530003".as_slice(), ai.ai.as_bytes(), value].concat();
        if let Err(e) = gs1::parse(&line, YEAR) {
            let shown = e.to_string();
            assert!(
                !shown.contains("too short") && !shown.contains("too long"),
                "({}) {:?}: {shown}",
                ai.ai,
                String::from_utf8_lossy(value)
            );
        }
    }
}

fn ai_and_value() -> impl Strategy<Value = (KnownAi, Vec<u8>)> {
    let ais = gs1::known_ais();
    (0..ais.len()).prop_flat_map(move |i| {
        let ai = ais[i].clone();
        let chars: Vec<u8> = if ai.numeric {
            b"0123456789".to_vec()
        } else {
            b"0123456789ABCXYZabz-./!%&()*+,:;<=>?_'\"".to_vec()
        };
        let value = proptest::collection::vec(proptest::sample::select(chars), 0..=ai.max_len + 1);
        (Just(ai), value)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_values_of_every_ai_never_panic((ai, value) in ai_and_value(), pick in any::<prop::sample::Index>()) {
        let decoder = Decoder::new(DecoderConfig::default());
        let lines = lines_for(&ai, &value);
        exercise(&decoder, pick.get::<Vec<u8>>(&lines));
    }
}
