use super::*;
use hal::scanner::{Decoder, DecoderConfig};

const CSV: &str = "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
4006381333931,Highlighter,189,EUR,standard,,false
5000267024202,Whisky 70 cl,2999,EUR,standard,18,false
";

fn approval(version: u64) -> StaffApproval {
    StaffApproval {
        badge: store_and_forward::staff::BadgeHash([version as u8; 32]),
        list_version: version,
    }
}

fn scan(code: &str) -> Scan {
    let d = Decoder::new(DecoderConfig::default());
    Scan {
        at: std::time::SystemTime::now(),
        monotonic: std::time::Instant::now(),
        content: d.decode(code.as_bytes(), 2026),
    }
}

#[test]
fn scans_become_lines_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    c.import_csv(CSV).unwrap();
    let mut b = Basket::new(Currency::new("EUR").unwrap());
    assert_eq!(
        b.scan(&scan("4006381333931"), &c, true).unwrap(),
        Scanned::Added { line: 0 }
    );
    assert_eq!(
        b.scan(&scan("4006381333931"), &c, true).unwrap(),
        Scanned::Added { line: 0 }
    );
    assert_eq!(b.lines()[0].quantity, 2);
    assert_eq!(b.total().minor, 378);
    assert!(matches!(
        b.scan(&scan("4006381333948"), &c, true).unwrap(),
        Scanned::UnknownItem { .. }
    ));
    let table = TaxTable([("standard".to_string(), 1900)].into());
    assert_eq!(b.tax(&table)["standard"].minor, 60);
    assert!(b.can_pay());
}

#[test]
fn one_less_and_one_more_on_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    c.import_csv(CSV).unwrap();
    let mut b = Basket::new(Currency::new("EUR").unwrap());
    b.scan(&scan("4006381333931"), &c, true).unwrap();
    b.scan(&scan("4006381333931"), &c, true).unwrap();
    assert!(b.adjustable(0));
    assert_eq!(b.one_less(0), Some(false), "a line of two keeps one");
    assert_eq!((b.lines()[0].quantity, b.total().minor), (1, 189));
    assert_eq!(b.one_more(0), Some(Scanned::Added { line: 0 }));
    assert_eq!((b.lines()[0].quantity, b.total().minor), (2, 378));
    // An age-restricted piece asks again, as a scan would.
    b.scan(&scan("5000267024202"), &c, true).unwrap();
    assert_eq!(
        b.scan(&scan("]C1STAFF:0042"), &c, true).unwrap(),
        Scanned::StaffBadge { id: "0042".into() }
    );
    assert!(b.approve_age_check(approval(1)));
    assert!(b.can_pay());
    assert!(b.lines()[1].age_checked);
    assert_eq!(
        b.one_more(1),
        Some(Scanned::NeedsAgeCheck {
            line: 1,
            min_age: 18
        })
    );
    assert!(!b.can_pay());
    assert!(!b.lines()[1].age_checked, "the new piece is not checked");
    assert_eq!(b.age_approval(), None, "no approval while a check waits");
    // The last one less takes the line (and its age check).
    assert_eq!(b.one_less(1), Some(false));
    assert_eq!(b.one_less(1), Some(true));
    assert_eq!(b.lines().len(), 1);
    assert!(b.can_pay());
    assert_eq!(b.one_less(5), None, "no such line");
}

#[test]
fn eight_digits_valid_as_upc_e_and_ean_8_find_the_item_the_catalog_has() {
    // 00010016 is a valid EAN-8 and a valid UPC-E (for 000100001006).
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    c.import_csv(
        "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
00010016,Chewing gum,99,EUR,standard,,false
",
    )
    .unwrap();
    let mut b = Basket::new(Currency::new("EUR").unwrap());
    assert_eq!(
        b.scan(&scan("00010016"), &c, true).unwrap(),
        Scanned::Added { line: 0 }
    );
    assert_eq!(b.lines()[0].name, "Chewing gum");
    let mut c2 = Catalog::open(&dir.path().join("c2.sqlite")).unwrap();
    c2.import_csv(
        "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
000100001006,Mints,149,EUR,standard,,false
",
    )
    .unwrap();
    let mut b = Basket::new(Currency::new("EUR").unwrap());
    assert_eq!(
        b.scan(&scan("00010016"), &c2, true).unwrap(),
        Scanned::Added { line: 0 }
    );
    assert_eq!(b.lines()[0].name, "Mints");
}

#[test]
fn sold_by_weight_decides_how_an_item_may_be_scanned() {
    use hal::scanner::variable::{MeasureKind, VariableMeasureLayout};
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    c.import_csv(
        "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
2112345000008,Gouda (per kg),1490,EUR,reduced,,true
2154321000008,Cheese knife,990,EUR,standard,,false
",
    )
    .unwrap();
    let layout = VariableMeasureLayout::new(
        &["21"],
        "PPIIIIIVVVVVK",
        MeasureKind::Weight { decimals: 3 },
    )
    .unwrap();
    let d = Decoder::new(DecoderConfig {
        variable_measure: hal::scanner::VariableMeasureConfig {
            layouts: vec![layout],
        },
        ..DecoderConfig::default()
    });
    let scan = |code: &str| Scan {
        at: std::time::SystemTime::now(),
        monotonic: std::time::Instant::now(),
        content: d.decode(code.as_bytes(), 2026),
    };
    let mut b = Basket::new(Currency::new("EUR").unwrap());
    // Weighed: 0.350 kg of Gouda.
    assert_eq!(
        b.scan(&scan("2112345003504"), &c, true).unwrap(),
        Scanned::Added { line: 0 }
    );
    assert_eq!(b.lines()[0].weight_g, Some(350));
    // A weight code for a piece item.
    let knife = hal::scanner::gtin::with_check_digit("215432100350").unwrap();
    assert_eq!(
        b.scan(&scan(&knife), &c, true).unwrap(),
        Scanned::NotSoldByWeight {
            name: "Cheese knife".into()
        }
    );
    assert_eq!(b.lines().len(), 1);
    // The plain GTIN of the Gouda (ITF-14 form, not an in-store code).
    let mut plain_only = Basket::new(Currency::new("EUR").unwrap());
    let itf = Scan {
        at: std::time::SystemTime::now(),
        monotonic: std::time::Instant::now(),
        content: d.decode(b"]I102112345000008", 2026),
    };
    assert_eq!(
        plain_only.scan(&itf, &c, true).unwrap(),
        Scanned::WeighAtScale {
            name: "Gouda (per kg)".into()
        }
    );
    assert!(plain_only.lines().is_empty());
}

#[test]
fn age_restricted_item_waits_for_staff() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    c.import_csv(CSV).unwrap();
    let mut b = Basket::new(Currency::new("EUR").unwrap());
    assert_eq!(
        b.scan(&scan("5000267024202"), &c, true).unwrap(),
        Scanned::NeedsAgeCheck {
            line: 0,
            min_age: 18
        }
    );
    assert!(!b.can_pay());
    // A badge scan alone clears nothing: the staff list decides.
    assert_eq!(
        b.scan(&scan("STAFF:1234"), &c, true).unwrap(),
        Scanned::StaffBadge { id: "1234".into() }
    );
    assert!(!b.can_pay());
    assert!(!b.lines()[0].age_checked);
    assert!(b.approve_age_check(approval(3)));
    assert!(b.can_pay());
    assert!(b.lines()[0].age_checked);
    assert_eq!(b.age_approval(), Some(approval(3)));
    // Nothing pending: a second badge changes nothing.
    assert!(!b.approve_age_check(approval(4)));
    assert_eq!(b.age_approval(), Some(approval(3)));
    // The approval goes with the restricted items.
    b.remove(0);
    assert_eq!(b.age_approval(), None);
}
