//! The shopping session: scans become lines priced from the catalog
//! (variable-measure codes carry their price or weight), totals with tax,
//! and the age check that holds payment until a staff badge is scanned.
//! Plain data, no I/O: the daemon feeds it scans and shows its view.

use std::collections::BTreeMap;

use hal::scanner::{Measure, NonProduct, ProductContent, RejectReason, Scan, ScanContent};
use serde::{Deserialize, Serialize};
use store_and_forward::{Currency, Money};

use crate::catalog::{Catalog, CatalogError, Item};

/// VAT rates per tax class in basis points (1900 = 19 %); prices are gross.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaxTable(pub BTreeMap<String, u32>);

/// One line of the basket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The item's GTIN-14 (the lookup GTIN for variable-measure codes).
    pub gtin: String,
    /// Name.
    pub name: String,
    /// Pieces (1 for weighed items).
    pub quantity: u32,
    /// Weight in grams, for items sold by weight.
    pub weight_g: Option<u64>,
    /// Unit price (per piece, or per kilogram).
    pub unit_price: Money,
    /// Line total.
    pub total: Money,
    /// Tax class.
    pub tax_class: String,
    /// Minimum age, if restricted.
    pub min_age: Option<u8>,
}

/// What a scan did to the basket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// A line was added or its quantity raised.
    Added {
        /// The line's index.
        line: usize,
    },
    /// Added, and payment now waits for a staff member to check age.
    NeedsAgeCheck {
        /// The line's index.
        line: usize,
        /// The age to check.
        min_age: u8,
    },
    /// Not in the catalog: shown to the shopper, nothing added.
    UnknownItem {
        /// What was scanned.
        gtin: String,
    },
    /// An item sold by weight scanned by its plain code (or a count): it
    /// must be weighed at the scale, whose label carries the weight.
    WeighAtScale {
        /// The item's name.
        name: String,
    },
    /// A weight code for an item sold by the piece: refused.
    NotSoldByWeight {
        /// The item's name.
        name: String,
    },
    /// A staff badge cleared the age check.
    AgeCheckCleared,
    /// A code that is not for the basket (provisioning, unknown badge):
    /// handed to the daemon.
    NotForBasket,
    /// The scanner's decoder refused the code (the reason is shown).
    Rejected {
        /// The decoder's reason.
        reason: RejectReason,
    },
}

/// The shopper's basket.
#[derive(Debug, Clone)]
pub struct Basket {
    currency: Currency,
    lines: Vec<Line>,
    age_check: Option<u8>,
}

impl Basket {
    /// An empty basket in `currency`.
    pub fn new(currency: Currency) -> Basket {
        Basket {
            currency,
            lines: Vec::new(),
            age_check: None,
        }
    }

    /// The lines.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The age that must be checked before paying, if any.
    pub fn pending_age_check(&self) -> Option<u8> {
        self.age_check
    }

    /// The total to pay.
    pub fn total(&self) -> Money {
        Money::new(
            self.lines.iter().map(|l| l.total.minor).sum(),
            self.currency,
        )
    }

    /// VAT included in the total, per tax class (unknown classes: 0).
    pub fn tax(&self, table: &TaxTable) -> BTreeMap<String, Money> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            let bps = i64::from(table.0.get(&l.tax_class).copied().unwrap_or(0));
            let tax = (l.total.minor * bps + (10_000 + bps) / 2) / (10_000 + bps);
            let e = out
                .entry(l.tax_class.clone())
                .or_insert(Money::new(0, self.currency));
            e.minor += tax;
        }
        out
    }

    /// Whether the basket can be paid now.
    pub fn can_pay(&self) -> bool {
        !self.lines.is_empty() && self.age_check.is_none() && self.total().minor > 0
    }

    /// Removes a line. Removing the last restricted item clears the check.
    pub fn remove(&mut self, line: usize) -> Option<Line> {
        (line < self.lines.len()).then(|| {
            let l = self.lines.remove(line);
            if !self.lines.iter().any(|l| l.min_age.is_some()) {
                self.age_check = None;
            }
            l
        })
    }

    /// Whether a line is pieces at the unit price, so the shopper may take
    /// one less or one more (weighed and price-labelled lines are not).
    pub fn adjustable(&self, line: usize) -> bool {
        self.lines.get(line).is_some_and(|l| {
            l.weight_g.is_none() && l.total.minor == l.unit_price.minor * i64::from(l.quantity)
        })
    }

    /// One piece more on a line of pieces, as scanning it again would do
    /// (an age-restricted item asks for the age check again). `None`: no
    /// such line, or it is not [`Basket::adjustable`].
    pub fn one_more(&mut self, line: usize) -> Option<Scanned> {
        if !self.adjustable(line) {
            return None;
        }
        let l = &mut self.lines[line];
        l.quantity += 1;
        l.total.minor += l.unit_price.minor;
        Some(self.added(line))
    }

    /// One piece less on a line of pieces; the last one removes the line
    /// (then `Some(true)`). `None`: no such line, or not adjustable.
    pub fn one_less(&mut self, line: usize) -> Option<bool> {
        if !self.adjustable(line) {
            return None;
        }
        let l = &mut self.lines[line];
        if l.quantity <= 1 {
            self.remove(line);
            return Some(true);
        }
        l.quantity -= 1;
        l.total.minor -= l.unit_price.minor;
        Some(false)
    }

    /// Empties the basket (after payment, or the shopper walks away).
    pub fn clear(&mut self) {
        self.lines.clear();
        self.age_check = None;
    }

    /// Applies one scan.
    pub fn scan(
        &mut self,
        scan: &Scan,
        catalog: &Catalog,
        staff_prefix_ok: bool,
    ) -> Result<Scanned, CatalogError> {
        let product = match &scan.content {
            ScanContent::Product(p) => p,
            ScanContent::NonProduct(NonProduct::StaffBadge(_)) if staff_prefix_ok => {
                return Ok(if self.age_check.take().is_some() {
                    Scanned::AgeCheckCleared
                } else {
                    Scanned::NotForBasket
                });
            }
            ScanContent::NonProduct(_) => return Ok(Scanned::NotForBasket),
            ScanContent::Rejected(r) => {
                return Ok(Scanned::Rejected {
                    reason: r.reason.clone(),
                });
            }
        };
        let (gtin, measure) = match &product.content {
            ProductContent::VariableMeasure(v) => {
                (v.lookup_gtin.as_str().to_owned(), Some(v.measure))
            }
            _ => (product.gtin.as_str().to_owned(), None),
        };
        // Digits valid as two symbologies (UPC-E and EAN-8 without AIM
        // identifier): the item the catalog has is the one scanned.
        let item = match catalog.get(&gtin)? {
            Some(item) => Some(item),
            None => match &product.alternative {
                Some(alt) => catalog.get(alt.as_str())?,
                None => None,
            },
        };
        let Some(item) = item else {
            return Ok(Scanned::UnknownItem { gtin });
        };
        // The catalog's sold_by_weight decides how an item may be scanned: a
        // weighed item needs its weight (or the scale's price label), a
        // piece item no weight.
        match (item.sold_by_weight, measure) {
            (true, None | Some(Measure::Count(_))) => {
                return Ok(Scanned::WeighAtScale { name: item.name });
            }
            (false, Some(Measure::Weight { .. })) => {
                return Ok(Scanned::NotSoldByWeight { name: item.name });
            }
            _ => {}
        }
        let line = self.add(item, measure);
        Ok(self.added(line))
    }

    /// A piece went onto `line`: an age-restricted item arms the age check.
    fn added(&mut self, line: usize) -> Scanned {
        match self.lines[line].min_age {
            Some(age) => {
                self.age_check = Some(self.age_check.map_or(age, |a| a.max(age)));
                Scanned::NeedsAgeCheck { line, min_age: age }
            }
            None => Scanned::Added { line },
        }
    }

    fn add(&mut self, item: Item, measure: Option<Measure>) -> usize {
        let unit = item.price;
        let (quantity, weight_g, total) = match measure {
            Some(Measure::Price { digits, decimals }) => {
                let exp = u32::from(unit.currency.exponent());
                let minor = scale(digits, u32::from(decimals), exp);
                (1, None, minor)
            }
            Some(Measure::Weight { digits, decimals }) => {
                let grams = scale(digits, u32::from(decimals), 3);
                (1, Some(grams as u64), (unit.minor * grams + 500) / 1000)
            }
            Some(Measure::Count(n)) => {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                (n, None, unit.minor * i64::from(n))
            }
            None => (1, None, unit.minor),
        };
        // Plain items scanned again raise the quantity; measured ones stay separate.
        if measure_is_none(quantity, weight_g, total, unit.minor)
            && let Some(i) = self
                .lines
                .iter()
                .position(|l| l.gtin == item.gtin && l.weight_g.is_none() && l.unit_price == unit)
        {
            let l = &mut self.lines[i];
            l.quantity += 1;
            l.total.minor += unit.minor;
            return i;
        }
        self.lines.push(Line {
            gtin: item.gtin,
            name: item.name,
            quantity,
            weight_g,
            unit_price: unit,
            total: Money::new(total, unit.currency),
            tax_class: item.tax_class,
            min_age: item.min_age,
        });
        self.lines.len() - 1
    }
}

fn measure_is_none(quantity: u32, weight: Option<u64>, total: i64, unit: i64) -> bool {
    quantity == 1 && weight.is_none() && total == unit
}

/// `digits / 10^from` expressed with `to` decimals.
fn scale(digits: u64, from: u32, to: u32) -> i64 {
    let v = digits as i64;
    if to >= from {
        v * 10i64.pow(to - from)
    } else {
        let d = 10i64.pow(from - to);
        (v + d / 2) / d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::scanner::{Decoder, DecoderConfig};

    const CSV: &str = "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
4006381333931,Highlighter,189,EUR,standard,,false
5000267024202,Whisky 70 cl,2999,EUR,standard,18,false
";

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
            Scanned::AgeCheckCleared
        );
        assert!(b.can_pay());
        assert_eq!(
            b.one_more(1),
            Some(Scanned::NeedsAgeCheck {
                line: 1,
                min_age: 18
            })
        );
        assert!(!b.can_pay());
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
        assert_eq!(
            b.scan(&scan("STAFF:1234"), &c, true).unwrap(),
            Scanned::AgeCheckCleared
        );
        assert!(b.can_pay());
    }
}
