//! Any bytes as one scanned line: the decoder, the GS1 parser, the
//! bracketed-form parser and the `WIFI:` parser must never panic.
#![no_main]

use hal::scanner::nonproduct::parse_wifi;
use hal::scanner::variable::{MeasureKind, VariableMeasureLayout};
use hal::scanner::{Decoder, DecoderConfig, VariableMeasureConfig, gs1};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let layouts = [
        ("29", "PPIIIIICVVVVK", MeasureKind::Price { decimals: 2 }),
        ("28", "PPIIIICVVVVVK", MeasureKind::Weight { decimals: 3 }),
        ("22", "PPIIIIIVVVVVK", MeasureKind::Count),
    ]
    .into_iter()
    .filter_map(|(p, pattern, m)| VariableMeasureLayout::new(&[p], pattern, m).ok())
    .collect();
    let decoder = Decoder::new(DecoderConfig {
        variable_measure: VariableMeasureConfig { layouts },
        ..DecoderConfig::default()
    });
    let year = data.first().map_or(2026, |b| 1950 + u16::from(*b));
    let _ = decoder.decode(data, year);
    let _ = gs1::parse(data, year);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gs1::parse_hri(text, year);
        let _ = parse_wifi(text);
    }
});
