use super::*;

const YEAR: u16 = 2026;

fn gs(parts: &[&str]) -> Vec<u8> {
    parts.join("\u{1d}").into_bytes()
}

#[test]
fn gtin_expiry_batch_from_gs1_examples() {
    // (01)09501101530003(17)140704(10)AB-123, from the GS1 General Specifications.
    let es = parse(b"010950110153000317140704\x1d10AB-123", YEAR).expect("valid");
    assert_eq!(
        es.gtin().map(|g| g.to_string()),
        Some("09501101530003".into())
    );
    assert_eq!(
        es.get("17").map(|e| e.value.clone()),
        Some(Gs1Value::Date(Gs1Date {
            year: 2014,
            month: 7,
            day: Some(4)
        }))
    );
    assert_eq!(es.get("10").map(|e| e.raw.as_str()), Some("AB-123"));
    assert_eq!(es.to_hri(), "(01)09501101530003(17)140704(10)AB-123");
}

#[test]
fn leading_fnc1_and_trailing_variable_field_need_no_separator() {
    let es = parse(b"\x1d0109501101530003\x1d10ABC", YEAR).expect("valid");
    assert_eq!(es.elements.len(), 2);
}

#[test]
fn missing_separator_makes_variable_field_too_long() {
    // A batch of 20 characters followed by 21 without the GS between them.
    let data = b"010950110153000310ABCDEFGHIJKLMNOPQRST21123";
    assert_eq!(
        parse(data, YEAR),
        Err(Gs1Error::TooLong { ai: "10".into() })
    );
}

#[test]
fn best_before_day_zero_is_end_of_month() {
    let es = parse(b"010950110153000315261100", YEAR).expect("valid");
    assert_eq!(
        es.get("15").map(|e| e.value.clone()),
        Some(Gs1Value::Date(Gs1Date {
            year: 2026,
            month: 11,
            day: None
        }))
    );
}

#[test]
fn bad_dates_are_rejected() {
    for d in ["261301", "260230", "250229", "26113a"] {
        let data = format!("0109501101530003{}{d}", "17");
        let err = parse(data.as_bytes(), YEAR).expect_err(d);
        assert!(
            matches!(
                err,
                Gs1Error::BadDate { .. } | Gs1Error::BadCharacter { .. }
            ),
            "{d}: {err:?}"
        );
    }
    // Leap day of 2028 is fine.
    assert!(parse(b"010950110153000317280229", YEAR).is_ok());
    // 7006 (first freeze date) may not use day 00.
    assert_eq!(
        parse(&gs(&["0109501101530003", "7006261100"]), YEAR),
        Err(Gs1Error::BadDate { ai: "7006".into() })
    );
}

#[test]
fn century_follows_sliding_window() {
    assert_eq!(century_window(26, 2026), 2026);
    assert_eq!(century_window(76, 2026), 2076);
    assert_eq!(century_window(77, 2026), 1977);
    assert_eq!(century_window(99, 2026), 1999);
    assert_eq!(century_window(10, 2090), 2110);
}

#[test]
fn weights_and_prices_are_decimals() {
    // (01)99501101530006(3103)001250(3922)499 — variable measure trade item.
    let data = gs(&["0199501101530006310300125039220499"]);
    let es = parse(&data, YEAR).expect("valid");
    assert_eq!(
        es.get("3103").map(|e| e.value.clone()),
        Some(Gs1Value::Decimal {
            digits: 1250,
            decimals: 3
        })
    );
    assert_eq!(
        es.get("3922").map(|e| e.value.clone()),
        Some(Gs1Value::Decimal {
            digits: 499,
            decimals: 2
        })
    );
    let es = parse(&gs(&["0199501101530006310300125039329780499"]), YEAR).expect("valid");
    assert_eq!(
        es.get("3932").map(|e| e.value.clone()),
        Some(Gs1Value::Currency {
            currency: "978".into(),
            digits: 499,
            decimals: 2
        })
    );
}

#[test]
fn invalid_pairs_and_missing_associations() {
    assert_eq!(
        parse(b"01095011015300030209501101530003", YEAR),
        Err(Gs1Error::InvalidPair {
            a: "01".into(),
            b: "02".into()
        })
    );
    assert_eq!(
        parse(b"0209501101530003", YEAR),
        Err(Gs1Error::MissingAssociation {
            ai: "02".into(),
            requires: "(37)".into()
        })
    );
    assert!(parse(&gs(&["0010614141123456789702095011015300033724"]), YEAR).is_ok());
    // 02 and 37 belong on a logistic unit: 37 requires an SSCC (00).
    assert_eq!(
        parse(b"02095011015300033724", YEAR),
        Err(Gs1Error::MissingAssociation {
            ai: "37".into(),
            requires: "(00)".into()
        })
    );
    // 392n needs 01 and a measure or a count.
    assert!(matches!(
        parse(b"010950110153000339220499", YEAR),
        Err(Gs1Error::MissingAssociation { .. })
    ));
    // Two net weights in kg with different decimals.
    assert_eq!(
        parse(b"010950110153000331030012503102001250", YEAR),
        Err(Gs1Error::InvalidPair {
            a: "3103".into(),
            b: "3102".into()
        })
    );
    // A batch alone identifies nothing.
    assert!(matches!(
        parse(b"10ABC", YEAR),
        Err(Gs1Error::MissingAssociation { .. })
    ));
}

#[test]
fn duplicates_check_digits_and_charset() {
    assert!(parse(b"0109501101530003010950110153000310A", YEAR).is_ok());
    assert_eq!(
        parse(b"01095011015300030109501101530010", YEAR),
        Err(Gs1Error::Duplicate { ai: "01".into() })
    );
    assert_eq!(
        parse(b"0109501101530004", YEAR),
        Err(Gs1Error::BadCheckDigit { ai: "01".into() })
    );
    assert_eq!(
        parse(b"010950110153000310AB#1", YEAR),
        Err(Gs1Error::BadCharacter { ai: "10".into() })
    );
    assert_eq!(
        parse(b"01095011015300", YEAR),
        Err(Gs1Error::TooShort { ai: "01".into() })
    );
    assert_eq!(
        parse(b"0109501101530003\x1d", YEAR).map(|e| e.elements.len()),
        Ok(1)
    );
    assert_eq!(parse(b"\x1d", YEAR), Err(Gs1Error::Empty));
    assert_eq!(
        parse(b"0109501101530003\x1d5", YEAR),
        Err(Gs1Error::UnknownAi { at: 17 })
    );
}

#[test]
fn hri_form_round_trips() {
    let hri = "(01)09501101530003(10)AB-123(17)140704";
    let es = parse_hri(hri, YEAR).expect("valid");
    assert_eq!(es.to_hri(), hri);
    assert_eq!(
        hri_to_element_string(hri),
        Some(b"010950110153000310AB-123\x1d17140704".to_vec())
    );
    assert_eq!(hri_to_element_string("01)x"), None);
    assert_eq!(hri_to_element_string("(5)x"), None);
}

#[test]
fn optional_parts_short_values_are_refused_not_a_panic() {
    // Regression: AI 7011 with a 7-character value (a date and one digit of
    // the optional time) reached the HHMM check with one digit and panicked
    // the scanner thread.
    let too_short = |ai: &str| Err(Gs1Error::TooShort { ai: ai.to_owned() });
    assert_eq!(
        parse(b"0109501101530003\x1d70112612311", YEAR),
        too_short("7011")
    );
    for n in 1..4 {
        let data = format!("0109501101530003\x1d7011261231{}", &"1200"[..n]);
        assert_eq!(parse(data.as_bytes(), YEAR), too_short("7011"), "{n}");
    }
    let es = parse(b"0109501101530003\x1d70112612311200", YEAR).expect("date and time");
    assert_eq!(es.get("7011").map(|e| e.raw.as_str()), Some("2612311200"));
    let es = parse(b"0109501101530003\x1d7011261231", YEAR).expect("date alone");
    assert_eq!(es.get("7011").map(|e| e.raw.as_str()), Some("261231"));
    // AI 7007: a harvest date, or a range of two; anything between is short.
    for n in 1..6 {
        let data = format!("0109501101530003\x1d7007261201{}", &"261231"[..n]);
        assert_eq!(parse(data.as_bytes(), YEAR), too_short("7007"), "{n}");
    }
    assert!(parse(b"0109501101530003\x1d7007261201261231", YEAR).is_ok());
    assert!(parse(b"0109501101530003\x1d7007261201", YEAR).is_ok());
    assert_eq!(
        parse(b"0109501101530003\x1d7011261231ab12", YEAR),
        Err(Gs1Error::BadCharacter { ai: "7011".into() })
    );
    assert_eq!(
        parse(b"0109501101530003\x1d70112612312460", YEAR),
        Err(Gs1Error::BadDate { ai: "7011".into() })
    );
}

#[test]
fn indicator_nine_needs_a_measure() {
    // (01)95012345678903 is a variable-measure trade item.
    assert_eq!(parse(b"0195012345678903", YEAR), Err(Gs1Error::NoMeasure));
    assert_eq!(
        parse(b"019501234567890310ABC", YEAR),
        Err(Gs1Error::NoMeasure)
    );
    assert!(parse(b"01950123456789033103000123", YEAR).is_ok());
    assert!(parse(b"019501234567890330\x1d", YEAR).is_err());
    assert!(parse(b"01950123456789033012", YEAR).is_ok());
    // Indicator 0 to 8 need none.
    assert!(parse(b"0109501101530003", YEAR).is_ok());
}
