use super::*;
use crate::scanner::gs1::Gs1Value;
use crate::scanner::reject::Gs1Error;
use crate::scanner::variable::{MeasureKind, VariableMeasureLayout};

const YEAR: u16 = 2026;

fn decode(line: &[u8]) -> ScanContent {
    Decoder::default().decode(line, YEAR)
}

fn product(line: &[u8]) -> Product {
    match decode(line) {
        ScanContent::Product(p) => p,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    }
}

fn reason(line: &[u8]) -> RejectReason {
    match decode(line) {
        ScanContent::Rejected(r) => r.reason,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    }
}

#[test]
fn ean13_with_and_without_aim() {
    let p = product(b"]E04006381333931");
    assert_eq!(
        (p.symbology, p.gtin.to_string()),
        (Symbology::Ean13, "04006381333931".into())
    );
    assert_eq!(p.aim.map(|a| a.to_string()), Some("]E0".into()));
    let p = product(b"4006381333931");
    assert_eq!((p.symbology, p.aim), (Symbology::Ean13, None));
    assert_eq!(reason(b"]E04006381333932"), RejectReason::BadCheckDigit);
}

#[test]
fn upc_forms() {
    let p = product(b"]E00036000241457");
    assert_eq!(
        (p.symbology, p.gtin.to_string()),
        (Symbology::UpcA, "00036000241457".into())
    );
    let p = product(b"036000241457");
    assert_eq!(p.symbology, Symbology::UpcA);
    let p = product(b"]E004252614");
    assert_eq!(
        (p.symbology, p.gtin.to_string()),
        (Symbology::UpcE, "00042100005264".into())
    );
    // Without AIM: not a valid EAN-8, but a valid UPC-E.
    let p = product(b"04252614");
    assert_eq!(p.symbology, Symbology::UpcE);
}

#[test]
fn ean8_and_itf14() {
    let p = product(b"]E496385074");
    assert_eq!(
        (p.symbology, p.gtin.to_string()),
        (Symbology::Ean8, "00000096385074".into())
    );
    assert_eq!(
        reason(b"]E44006381333931"),
        RejectReason::BadLength { len: 13 }
    );
    let p = product(b"]I110614141000415");
    assert_eq!(p.symbology, Symbology::Itf14);
    assert_eq!(
        reason(b"]I11061414100041"),
        RejectReason::BadLength { len: 13 }
    );
}

#[test]
fn add_ons() {
    let p = product(b"]E3978020137962405");
    assert_eq!(
        p.content,
        ProductContent::Retail {
            add_on: Some(AddOn::Two("05".into()))
        }
    );
    let p = product(b"978020137962490000");
    assert_eq!(
        p.content,
        ProductContent::Retail {
            add_on: Some(AddOn::Five("90000".into()))
        }
    );
    assert_eq!(reason(b"]E105"), RejectReason::Unrecognised);
}

#[test]
fn gs1_carriers() {
    for line in [
        &b"]C1010950110153000317260704\x1d10AB-123"[..],
        b"]e0010950110153000317260704\x1d10AB-123",
        b"]d2010950110153000317260704\x1d10AB-123",
        b"]Q3010950110153000317260704\x1d10AB-123",
        b"\x1d010950110153000317260704\x1d10AB-123",
        b"(01)09501101530003(17)260704(10)AB-123",
    ] {
        let p = product(line);
        assert_eq!(p.gtin.to_string(), "09501101530003");
        let ProductContent::Gs1(es) = &p.content else {
            panic!("{p:?}")
        };
        assert!(matches!(
            es.get("17").map(|e| &e.value),
            Some(Gs1Value::Date(_))
        ));
    }
    assert_eq!(
        product(b"]e00109501101530003").symbology,
        Symbology::Gs1DataBar
    );
    assert_eq!(reason(b"]C100106141411234567897"), RejectReason::NoGtin);
    assert_eq!(
        reason(b"]C10109501101530003\x1d0209501101530003"),
        RejectReason::Gs1(Gs1Error::InvalidPair {
            a: "01".into(),
            b: "02".into()
        })
    );
}

#[test]
fn wifi_and_badge_pass_through() {
    match decode(b"]Q1WIFI:S:cart;T:WPA;P:hunter22;;") {
        ScanContent::NonProduct(NonProduct::Wifi(w)) => assert_eq!(w.ssid, "cart"),
        other => panic!("{other:?}"),
    }
    match decode(b"STAFF:E1234") {
        ScanContent::NonProduct(NonProduct::StaffBadge(b)) => assert_eq!(b.id, "E1234"),
        other => panic!("{other:?}"),
    }
    assert_eq!(reason(b"STAFF:"), RejectReason::Unrecognised);
    // A bad WIFI: code is rejected without an excerpt of its text.
    match decode(b"WIFI:S:x;T:WPA;P:secret") {
        ScanContent::Rejected(r) => {
            assert!(matches!(r.reason, RejectReason::BadWifi { .. }));
            assert_eq!(r.excerpt, None);
        }
        other => panic!("{other:?}"),
    }
    let d = Decoder::new(DecoderConfig {
        accept_wifi: false,
        badge_prefix: None,
        ..DecoderConfig::default()
    });
    assert!(matches!(
        d.decode(b"WIFI:S:x;;", YEAR),
        ScanContent::Rejected(_)
    ));
    assert!(matches!(
        d.decode(b"STAFF:E1", YEAR),
        ScanContent::Rejected(_)
    ));
}

#[test]
fn noise_is_rejected_with_a_reason() {
    assert_eq!(reason(b""), RejectReason::Empty);
    assert_eq!(reason(b"\xff\xfe12"), RejectReason::InvalidUtf8);
    assert_eq!(
        reason(b"12\x0034"),
        RejectReason::ControlCharacter { byte: 0 }
    );
    assert_eq!(reason(b"hello"), RejectReason::Unrecognised);
    assert_eq!(reason(b"12345"), RejectReason::BadLength { len: 5 });
    assert_eq!(reason(b"]E0abc"), RejectReason::NotNumeric);
}

#[test]
fn variable_measure_through_the_decoder() {
    let layout =
        VariableMeasureLayout::new(&["29"], "PPIIIIICVVVVK", MeasureKind::Price { decimals: 2 })
            .expect("layout");
    let config = DecoderConfig {
        variable_measure: VariableMeasureConfig {
            layouts: vec![layout],
        },
        ..DecoderConfig::default()
    };
    let code = crate::scanner::gtin::with_check_digit("291234592875").expect("digits");
    let line = format!("]E0{code}");
    match Decoder::new(config).decode(line.as_bytes(), YEAR) {
        ScanContent::Product(p) => assert!(matches!(p.content, ProductContent::VariableMeasure(_))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode(line.as_bytes()),
        ScanContent::Rejected(Rejection {
            reason: RejectReason::NoVariableMeasureLayout { .. },
            ..
        })
    ));
}

#[test]
fn year_of_known_instants() {
    use std::time::Duration;
    assert_eq!(year_of(UNIX_EPOCH), 1970);
    // 2026-11-27T00:00:00Z.
    assert_eq!(
        year_of(UNIX_EPOCH + Duration::from_secs(1_795_737_600)),
        2026
    );
    // 2024-12-31T23:59:59Z and 2025-01-01T00:00:00Z.
    assert_eq!(
        year_of(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
        2024
    );
    assert_eq!(
        year_of(UNIX_EPOCH + Duration::from_secs(1_735_689_600)),
        2025
    );
}

fn check(body: &str) -> String {
    crate::scanner::gtin::with_check_digit(body).expect("digits")
}

#[test]
fn coupons_and_refund_receipts_are_not_products() {
    for (body, want) in [
        ("980123456789", RejectReason::RefundReceipt),
        ("981123456789", RejectReason::Coupon),
        ("984123456789", RejectReason::Coupon),
        ("991234567890", RejectReason::Coupon),
        // UPC-A number system 5 (manufacturer coupons), 12 and 13 digits.
        ("51234567890", RejectReason::Coupon),
        ("051234567890", RejectReason::Coupon),
    ] {
        let code = check(body);
        assert_eq!(reason(code.as_bytes()), want, "{code}");
        assert_eq!(reason(format!("]E0{code}").as_bytes()), want, "{code}");
    }
    // A GS1 coupon code (AI 255) and a GTIN with a coupon prefix in AI 01.
    assert_eq!(
        reason(format!("]C1255{}", check("981123456789")).as_bytes()),
        RejectReason::Coupon
    );
    assert_eq!(
        reason(format!("]C101{}", check("0991234567890")).as_bytes()),
        RejectReason::Coupon
    );
    // Books and periodicals (977-979) stay products.
    assert_eq!(product(b"9780201379624").gtin.to_string(), "09780201379624");
}

#[test]
fn indicator_nine_without_measure_is_refused() {
    assert_eq!(
        reason(b"]I195012345678903"),
        RejectReason::NeedsMeasure,
        "ITF-14"
    );
    assert_eq!(reason(b"95012345678903"), RejectReason::NeedsMeasure);
    assert_eq!(
        reason(b"]C10195012345678903"),
        RejectReason::Gs1(crate::scanner::Gs1Error::NoMeasure)
    );
    let p = product(b"]C101950123456789033103000123");
    assert_eq!(p.gtin.to_string(), "95012345678903");
}

#[test]
fn gs1_element_strings_without_aim_identifiers() {
    // A GS1-128 or DataBar scanner with AIM identifiers off sends the
    // element string without its leading FNC1: letters, separators,
    // dates and batches after the GTIN.
    for line in [
        &b"010950110153000317140704\x1d10AB-123"[..],
        b"010950110153000310AB-123",
        b"0109501101530003",
        b"01095011015300031714070410ABC",
        b"0109501101530003\x1d21SERIAL1",
        b"001061414112345678970209501101530003371000",
    ] {
        let p = product(line);
        assert_eq!(p.gtin.to_string(), "09501101530003", "{line:?}");
        assert!(matches!(p.content, ProductContent::Gs1(_)), "{line:?}");
    }
    assert_eq!(reason(b"00106141411234567897"), RejectReason::NoGtin);
    assert_eq!(
        reason(b"0109501101530003\x1d70112612311"),
        RejectReason::Gs1(Gs1Error::TooShort { ai: "7011".into() })
    );
    // 18 digits that read as EAN-13 with a 5-digit add-on stay that.
    assert_eq!(
        product(b"978020137962490000").gtin.to_string(),
        "09780201379624"
    );
    assert_eq!(reason(b"hello world"), RejectReason::Unrecognised);
}

#[test]
fn eight_digits_valid_as_upc_e_and_ean_8_keep_both_readings() {
    // Find an 8-digit code valid both ways, and one valid only as EAN-8.
    let mut both = None;
    let mut ean8_only = None;
    for n in 0..200_000u32 {
        let body = format!("0{n:06}");
        let code = check(&body);
        let upce = crate::scanner::gtin::expand_upce(&code).is_ok();
        match (upce, both.is_none(), ean8_only.is_none()) {
            (true, true, _) => both = Some(code),
            (false, _, true) => ean8_only = Some(code),
            _ => {}
        }
        if both.is_some() && ean8_only.is_some() {
            break;
        }
    }
    let both = both.expect("a code valid as both");
    let p = product(both.as_bytes());
    assert_eq!(p.symbology, Symbology::UpcE);
    assert_eq!(
        p.alternative.map(|g| g.to_string()),
        Some(format!("000000{both}"))
    );
    let only = ean8_only.expect("a code valid only as EAN-8");
    let p = product(only.as_bytes());
    assert_eq!((p.symbology, p.alternative), (Symbology::Ean8, None));
    // With AIM identifiers the symbology is known: no alternative.
    assert_eq!(product(format!("]E4{both}").as_bytes()).alternative, None);
}
