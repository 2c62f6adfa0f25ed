//! The shopping session: scans become lines priced from the catalog
//! (variable-measure codes carry their price or weight), totals with tax,
//! and the age check that holds payment until a badge on the staff list is
//! scanned (the session checks the badge; the basket keeps the approval).
//! Plain data, no I/O: the daemon feeds it scans and shows its view.

use std::collections::BTreeMap;

use hal::scanner::{Measure, NonProduct, ProductContent, RejectReason, Scan, ScanContent};
use serde::{Deserialize, Serialize};
use store_and_forward::staff::StaffApproval;
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
    /// A staff member checked the age for every piece on the line.
    pub age_checked: bool,
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
    /// A staff badge (the id after the prefix): the session checks it
    /// against the staff list.
    StaffBadge {
        /// The badge id.
        id: String,
    },
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
    /// The badge that last cleared the age check (recorded with the sale).
    approval: Option<StaffApproval>,
}

impl Basket {
    /// An empty basket in `currency`.
    pub fn new(currency: Currency) -> Basket {
        Basket {
            currency,
            lines: Vec::new(),
            age_check: None,
            approval: None,
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

    /// The badge that cleared the age check of the restricted lines, when
    /// there are any and none waits for a check: it goes with the sale.
    pub fn age_approval(&self) -> Option<StaffApproval> {
        let restricted = self.lines.iter().any(|l| l.min_age.is_some());
        self.approval
            .filter(|_| restricted && self.age_check.is_none())
    }

    /// A staff badge on the list cleared the pending age check: every
    /// restricted line is checked. `false` (nothing changes) when no check
    /// was pending.
    pub fn approve_age_check(&mut self, approval: StaffApproval) -> bool {
        if self.age_check.take().is_none() {
            return false;
        }
        self.approval = Some(approval);
        for l in self.lines.iter_mut().filter(|l| l.min_age.is_some()) {
            l.age_checked = true;
        }
        true
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
                self.approval = None;
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
        self.approval = None;
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
            ScanContent::NonProduct(NonProduct::StaffBadge(badge)) if staff_prefix_ok => {
                return Ok(Scanned::StaffBadge {
                    id: badge.id.clone(),
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
                // A new piece is not checked yet: the line asks again.
                self.lines[line].age_checked = false;
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
            age_checked: false,
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
#[path = "basket_tests.rs"]
mod tests;
