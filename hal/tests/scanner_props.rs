//! Properties of the decoder: it never panics on any bytes, and codes
//! built by the encoders decode back to what was encoded.

use hal::scanner::check::{gs1_check_digit, price_check_digit_4, price_check_digit_5};
use hal::scanner::gtin::{encode_upce, expand_upce, with_check_digit};
use hal::scanner::line::{Frame, LineFramer};
use hal::scanner::variable::{MeasureKind, VariableMeasureLayout};
use hal::scanner::{
    Decoder, DecoderConfig, Measure, ProductContent, RejectReason, ScanContent, Symbology,
    VariableMeasureConfig, gs1,
};
use proptest::prelude::*;

fn digits(n: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, n)
        .prop_map(|v| v.iter().map(|d| char::from(b'0' + d)).collect())
}

/// Bytes that look like scans often enough to reach deep into the decoder.
fn scan_like() -> impl Strategy<Value = Vec<u8>> {
    let aim = prop_oneof![
        Just(&b""[..]),
        Just(&b"]E0"[..]),
        Just(&b"]E3"[..]),
        Just(&b"]E4"[..]),
        Just(&b"]C1"[..]),
        Just(&b"]e0"[..]),
        Just(&b"]d2"[..]),
        Just(&b"]Q1"[..]),
        Just(&b"]I1"[..]),
    ];
    let atom = prop_oneof![
        4 => (b'0'..=b'9').prop_map(|b| vec![b]),
        1 => Just(vec![0x1d]),
        1 => Just(b"01".to_vec()),
        1 => Just(b"17".to_vec()),
        1 => Just(b"3103".to_vec()),
        1 => Just(b"(".to_vec()),
        1 => Just(b")".to_vec()),
        1 => Just(b"WIFI:".to_vec()),
        1 => Just(b";".to_vec()),
        1 => Just(b"\\".to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    (aim, proptest::collection::vec(atom, 0..40)).prop_map(|(a, parts)| {
        let mut v = a.to_vec();
        v.extend(parts.concat());
        v
    })
}

fn decoder() -> Decoder {
    let layout =
        VariableMeasureLayout::new(&["29"], "PPIIIIICVVVVK", MeasureKind::Price { decimals: 2 })
            .expect("layout");
    Decoder::new(DecoderConfig {
        variable_measure: VariableMeasureConfig {
            layouts: vec![layout],
        },
        ..DecoderConfig::default()
    })
}

/// Whether a GTIN-14 names an item for sale (not a coupon or refund
/// receipt, not a variable-measure item without its measure).
fn for_sale(gtin14: &str) -> bool {
    let g13 = &gtin14[1..];
    let coupon_or_refund = gtin14.starts_with('0')
        && ["980", "981", "982", "983", "984", "99", "05"]
            .iter()
            .any(|p| g13.starts_with(p));
    !gtin14.starts_with('9') && !coupon_or_refund
}

fn product(line: &[u8]) -> hal::scanner::Product {
    match decoder().decode(line, 2026) {
        ScanContent::Product(p) => p,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decoder().decode(&bytes, 2026);
        let _ = gs1::parse(&bytes, 2026);
    }

    #[test]
    fn decoder_never_panics_on_scan_like_bytes(bytes in scan_like(), year in 1900u16..2200) {
        let _ = decoder().decode(&bytes, year);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = gs1::parse_hri(text, year);
        }
    }

    #[test]
    fn framer_output_does_not_depend_on_chunking(
        bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\r')], 0..400),
        cuts in proptest::collection::vec(0usize..400, 0..10),
    ) {
        let mut whole = LineFramer::new(b"\r", 32);
        whole.push(&bytes);
        let mut chunked = LineFramer::new(b"\r", 32);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunked.push(&bytes[at..c]);
            at = c;
        }
        let a: Vec<Frame> = std::iter::from_fn(|| whole.pop()).collect();
        let b: Vec<Frame> = std::iter::from_fn(|| chunked.pop()).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn ean13_round_trips(body in digits(12)) {
        // Prefixes 20-29 are in-store codes, covered below.
        prop_assume!(!body.starts_with('2'));
        let code = with_check_digit(&body).expect("digits");
        prop_assume!(for_sale(&format!("0{code}")));
        for line in [code.clone(), format!("]E0{code}")] {
            let p = product(line.as_bytes());
            prop_assert_eq!(p.gtin.to_string(), format!("0{code}"));
            let want = if code.starts_with('0') { Symbology::UpcA } else { Symbology::Ean13 };
            prop_assert_eq!(p.symbology, want);
        }
    }

    #[test]
    fn any_single_digit_error_is_caught(body in digits(12), pos in 0usize..13, delta in 1u8..10) {
        let code = with_check_digit(&body).expect("digits");
        let mut bytes = code.into_bytes();
        bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
        let line = [b"]E0".as_slice(), &bytes].concat();
        let got = decoder().decode(&line, 2026);
        let caught = matches!(
            got,
            ScanContent::Rejected(ref r) if matches!(
                r.reason,
                RejectReason::BadCheckDigit
                    | RejectReason::NoVariableMeasureLayout { .. }
                    | RejectReason::BadPriceCheckDigit
            )
        );
        prop_assert!(caught, "{:?}", got);
    }

    #[test]
    fn ean8_round_trips(body in digits(7)) {
        let code = with_check_digit(&body).expect("digits");
        let p = product(format!("]E4{code}").as_bytes());
        prop_assert_eq!(p.gtin.to_string(), format!("000000{code}"));
        prop_assert_eq!(p.symbology, Symbology::Ean8);
    }

    #[test]
    fn upca_round_trips(body in digits(11)) {
        prop_assume!(!body.starts_with('2'));
        let code = with_check_digit(&body).expect("digits");
        prop_assume!(for_sale(&format!("00{code}")));
        let p = product(code.as_bytes());
        prop_assert_eq!(p.gtin.to_string(), format!("00{code}"));
        prop_assert_eq!(p.symbology, Symbology::UpcA);
    }

    #[test]
    fn upce_round_trips(ns in 0u8..2, six in digits(6)) {
        let code = encode_upce(ns, &six).expect("valid");
        let upca = expand_upce(&code).expect("expands");
        let p = product(format!("]E0{code}").as_bytes());
        prop_assert_eq!(p.symbology, Symbology::UpcE);
        prop_assert_eq!(p.gtin.to_string(), format!("00{upca}"));
    }

    #[test]
    fn itf14_and_gs1_gtin_round_trip(body in digits(13), batch in "[A-Za-z0-9-]{1,20}") {
        let gtin = with_check_digit(&body).expect("digits");
        prop_assume!(for_sale(&gtin));
        let p = product(format!("]I1{gtin}").as_bytes());
        prop_assert_eq!(p.gtin.to_string(), gtin.clone());
        let line = format!("]C101{gtin}10{batch}\u{1d}17261231");
        let p = product(line.as_bytes());
        prop_assert_eq!(p.gtin.to_string(), gtin);
        let ProductContent::Gs1(es) = p.content else { panic!("not GS1") };
        prop_assert_eq!(es.get("10").map(|e| e.raw.clone()), Some(batch));
    }

    #[test]
    fn in_store_price_round_trips(item in digits(5), price in digits(4)) {
        let check = price_check_digit_4(price.as_bytes()).expect("digits");
        let code = with_check_digit(&format!("29{item}{check}{price}")).expect("digits");
        let p = product(code.as_bytes());
        let ProductContent::VariableMeasure(vm) = p.content else { panic!("not variable") };
        prop_assert_eq!(vm.item, item);
        prop_assert_eq!(vm.measure, Measure::Price { digits: price.parse().expect("digits"), decimals: 2 });
    }

    #[test]
    fn price_verifier_digits_catch_single_digit_errors(price in digits(5), pos in 0usize..5, delta in 1u8..10) {
        let mut bad = price.clone().into_bytes();
        bad[pos] = b'0' + (bad[pos] - b'0' + delta) % 10;
        prop_assert_ne!(price_check_digit_5(price.as_bytes()), price_check_digit_5(&bad));
        if pos < 4 {
            let (p4, b4) = (&price.as_bytes()[..4], &bad[..4]);
            prop_assert_ne!(price_check_digit_4(p4), price_check_digit_4(b4));
        }
        prop_assert!(gs1_check_digit(price.as_bytes()).is_some());
    }
}

/// Every crash the fuzzer found so far (kept by scripts/fuzz-scanner.sh
/// under tests/data/scanner/regressions/) decodes without a panic.
#[test]
fn every_kept_fuzz_crash_decodes_without_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/scanner/regressions/scanner_decode");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("regression folder") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("input");
        let _ = decoder().decode(&bytes, 2026);
        let _ = gs1::parse(&bytes, 2026);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = gs1::parse_hri(text, 2026);
        }
        replayed += 1;
    }
    assert!(replayed >= 2, "{replayed} inputs in {}", dir.display());
}
