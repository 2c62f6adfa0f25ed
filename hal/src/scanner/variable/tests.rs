use super::*;
use crate::scanner::gtin::with_check_digit;

fn gtin(body12: &str) -> Gtin {
    let full = with_check_digit(body12).expect("digits");
    Gtin::parse(&full).expect("valid")
}

fn config() -> VariableMeasureConfig {
    VariableMeasureConfig {
        layouts: vec![
            VariableMeasureLayout::new(
                &["29"],
                "PPIIIIICVVVVK",
                MeasureKind::Price { decimals: 2 },
            )
            .expect("layout"),
            VariableMeasureLayout::new(
                &["28"],
                "PPIIIICVVVVVK",
                MeasureKind::Weight { decimals: 3 },
            )
            .expect("layout"),
            VariableMeasureLayout::new(
                &["21", "22"],
                "PPIIIIIVVVVVK",
                MeasureKind::Price { decimals: 2 },
            )
            .expect("layout"),
        ],
    }
}

#[test]
fn four_digit_price_with_verifier() {
    let vm = config()
        .read(&gtin("291234592875"))
        .expect("variable")
        .expect("valid");
    assert_eq!(vm.item, "12345");
    assert_eq!(
        vm.measure,
        Measure::Price {
            digits: 2875,
            decimals: 2
        }
    );
    assert_eq!(vm.lookup_gtin, gtin("291234500000"));
    assert_eq!(
        config().read(&gtin("291234582875")),
        Some(Err(RejectReason::BadPriceCheckDigit))
    );
}

#[test]
fn five_digit_weight_with_verifier() {
    let vm = config()
        .read(&gtin("281234614685"))
        .expect("variable")
        .expect("valid");
    assert_eq!(vm.item, "1234");
    assert_eq!(
        vm.measure,
        Measure::Weight {
            digits: 14685,
            decimals: 3
        }
    );
    assert_eq!(
        config().read(&gtin("281234714685")),
        Some(Err(RejectReason::BadPriceCheckDigit))
    );
}

#[test]
fn layout_without_verifier_and_unconfigured_prefixes() {
    let vm = config()
        .read(&gtin("221234501999"))
        .expect("variable")
        .expect("valid");
    assert_eq!(
        vm.measure,
        Measure::Price {
            digits: 1999,
            decimals: 2
        }
    );
    assert_eq!(
        config().read(&gtin("231234501999")),
        Some(Err(RejectReason::NoVariableMeasureLayout {
            prefix: "23".into()
        }))
    );
    assert_eq!(config().read(&gtin("400638133393")), None);
}

#[test]
fn bad_layouts_are_refused() {
    let price = MeasureKind::Price { decimals: 2 };
    assert!(VariableMeasureLayout::new(&["29"], "PPIIIIICVVVV", price).is_err());
    assert!(VariableMeasureLayout::new(&["29"], "PPIIIICVVVVVX", price).is_err());
    assert!(VariableMeasureLayout::new(&["29"], "PPIIIIICCVVVK", price).is_err());
    assert!(VariableMeasureLayout::new(&["29"], "PPIIIIIIICVVK", price).is_err());
    assert!(VariableMeasureLayout::new(&["2"], "PPIIIIICVVVVK", price).is_err());
}

#[test]
fn layouts_load_from_json() {
    let json = r#"{"layouts":[{"prefixes":["29"],"pattern":"PPIIIIICVVVVK","measure":{"kind":"price","decimals":2}}]}"#;
    let cfg: VariableMeasureConfig = serde_json::from_str(json).expect("valid config");
    assert_eq!(cfg.layouts.len(), 1);
    let bad = r#"{"layouts":[{"prefixes":["29"],"pattern":"PPK","measure":{"kind":"count"}}]}"#;
    assert!(serde_json::from_str::<VariableMeasureConfig>(bad).is_err());
}
