//! The table of real-world and GS1 example codes (`data/scanner/codes.tsv`)
//! through the decoder, each with its expected result.

use std::path::Path;

use hal::scanner::variable::{MeasureKind, VariableMeasureLayout};
use hal::scanner::{
    Decoder, DecoderConfig, Measure, NonProduct, ProductContent, ScanContent, VariableMeasureConfig,
};

fn decoder() -> Decoder {
    let layouts = vec![
        VariableMeasureLayout::new(&["29"], "PPIIIIICVVVVK", MeasureKind::Price { decimals: 2 })
            .expect("layout"),
        VariableMeasureLayout::new(
            &["28"],
            "PPIIIICVVVVVK",
            MeasureKind::Weight { decimals: 3 },
        )
        .expect("layout"),
    ];
    Decoder::new(DecoderConfig {
        badge_prefix: Some("STAFF:".into()),
        accept_wifi: true,
        variable_measure: VariableMeasureConfig { layouts },
        ..DecoderConfig::default()
    })
}

fn check(input: &str, expected: &str) -> Result<(), String> {
    let line = input.replace("<GS>", "\u{1d}");
    let got = decoder().decode(line.as_bytes(), 2026);
    let words: Vec<&str> = expected.split(' ').collect();
    let ok = match (&words[..], &got) {
        (["product", sym, gtin], ScanContent::Product(p)) => {
            format!("{:?}", p.symbology) == *sym && p.gtin.to_string() == *gtin
        }
        (["variable", kind, digits], ScanContent::Product(p)) => match &p.content {
            ProductContent::VariableMeasure(vm) => match (vm.measure, *kind) {
                (Measure::Price { digits: d, .. }, "price")
                | (Measure::Weight { digits: d, .. }, "weight") => d.to_string() == *digits,
                _ => false,
            },
            _ => false,
        },
        (["wifi", ssid], ScanContent::NonProduct(NonProduct::Wifi(w))) => w.ssid == *ssid,
        (["badge", id], ScanContent::NonProduct(NonProduct::StaffBadge(b))) => b.id == *id,
        (["reject", reason], ScanContent::Rejected(r)) => {
            format!("{:?}", r.reason).starts_with(reason)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{input:?}: expected {expected}, got {got:?}"))
    }
}

#[test]
fn every_code_in_the_table_decodes_as_expected() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scanner/codes.tsv");
    let table = std::fs::read_to_string(path).expect("codes table");
    let mut rows = 0;
    let failures: Vec<String> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            rows += 1;
            let mut cols = l.split('\t');
            let (input, expected) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""));
            check(input, expected).err()
        })
        .collect();
    assert!(rows >= 30, "table has {rows} rows");
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
