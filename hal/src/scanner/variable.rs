//! In-store variable-measure codes: EAN-13 (or UPC-A) with a restricted
//! circulation prefix (20 to 29; 02 for UPC-A number system 2) that carry
//! an item reference and a price or weight. The layout differs per market
//! and is configured as a 13-character pattern over the GTIN-13 form.
//!
//! Pattern letters: `P` prefix (the two first positions), `I` item
//! reference, `V` value (price or measure), `C` price/measure verifier
//! digit over the `V` run (4 or 5 `V`s), `0` a position that must be zero,
//! `K` the final GS1 check digit (always last).

use serde::{Deserialize, Serialize};

use super::check::{gs1_check_digit, price_check_digit_4, price_check_digit_5};
use super::gtin::Gtin;
use super::reject::RejectReason;

/// What the value field of a layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MeasureKind {
    /// A price in the store's currency with `decimals` implied decimals.
    Price {
        /// Digits after the implied decimal point (2 for cents).
        decimals: u8,
    },
    /// A net weight in kilograms with `decimals` implied decimals (3 for grams).
    Weight {
        /// Digits after the implied decimal point.
        decimals: u8,
    },
    /// A count of pieces.
    Count,
}

/// The price, weight or count read from a variable-measure code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measure {
    /// A price: `digits / 10^decimals` in the store's currency.
    Price {
        /// The value's digits as an integer (minor units when decimals is 2).
        digits: u64,
        /// Digits after the implied decimal point.
        decimals: u8,
    },
    /// A weight: `digits / 10^decimals` kilograms.
    Weight {
        /// The value's digits as an integer.
        digits: u64,
        /// Digits after the implied decimal point.
        decimals: u8,
    },
    /// A number of pieces.
    Count(u64),
}

/// The content of a variable-measure code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariableMeasure {
    /// The two-digit prefix (`"20"` to `"29"`, or `"02"`).
    pub prefix: String,
    /// The item reference digits.
    pub item: String,
    /// The price, weight or count.
    pub measure: Measure,
    /// The code with the value and verifier digits zeroed and the check
    /// digit recomputed: the key under which the catalog lists the item.
    pub lookup_gtin: Gtin,
}

/// The raw form of a layout as written in the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct LayoutSpec {
    prefixes: Vec<String>,
    pattern: String,
    measure: MeasureKind,
}

/// A market's layout for some prefixes, validated when loaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "LayoutSpec", into = "LayoutSpec")]
pub struct VariableMeasureLayout {
    prefixes: Vec<String>,
    pattern: String,
    measure: MeasureKind,
}

/// A layout that cannot be used: refused when the config is loaded, so the
/// daemon does not start with a layout that would misread prices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The pattern is not 13 characters of `P I V C 0 K`, starting `PP` and ending `K`.
    #[error(
        "variable-measure pattern {0:?} must be 13 characters of P, I, V, C, 0, K, starting PP and ending K"
    )]
    Pattern(String),
    /// A `C` verifier digit needs exactly 4 or 5 contiguous `V`s.
    #[error("variable-measure pattern {0:?}: a C needs 4 or 5 contiguous V")]
    Verifier(String),
    /// A prefix that is not two digits.
    #[error("variable-measure prefix {0:?} is not two digits")]
    Prefix(String),
}

impl TryFrom<LayoutSpec> for VariableMeasureLayout {
    type Error = LayoutError;
    fn try_from(s: LayoutSpec) -> Result<Self, LayoutError> {
        Self::new(
            &s.prefixes.iter().map(String::as_str).collect::<Vec<_>>(),
            &s.pattern,
            s.measure,
        )
    }
}

impl From<VariableMeasureLayout> for LayoutSpec {
    fn from(l: VariableMeasureLayout) -> Self {
        LayoutSpec {
            prefixes: l.prefixes,
            pattern: l.pattern,
            measure: l.measure,
        }
    }
}

impl VariableMeasureLayout {
    /// A layout for `prefixes` with a 13-character `pattern`.
    pub fn new(
        prefixes: &[&str],
        pattern: &str,
        measure: MeasureKind,
    ) -> Result<Self, LayoutError> {
        let p = pattern.as_bytes();
        let shape_ok = p.len() == 13
            && p.starts_with(b"PP")
            && p[12] == b'K'
            && p[2..12].iter().all(|c| b"IVC0".contains(c))
            && p.contains(&b'V');
        if !shape_ok {
            return Err(LayoutError::Pattern(pattern.to_owned()));
        }
        let v_count = p.iter().filter(|&&c| c == b'V').count();
        let v_contiguous = p
            .windows(2)
            .filter(|w| w[0] == b'V' && w[1] != b'V')
            .count()
            == 1;
        let c_count = p.iter().filter(|&&c| c == b'C').count();
        if c_count > 1 || (c_count == 1 && !(matches!(v_count, 4 | 5) && v_contiguous)) {
            return Err(LayoutError::Verifier(pattern.to_owned()));
        }
        for prefix in prefixes {
            if prefix.len() != 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LayoutError::Prefix((*prefix).to_owned()));
            }
        }
        Ok(Self {
            prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
            pattern: pattern.to_owned(),
            measure,
        })
    }

    fn digits_at(&self, gtin13: &[u8], letter: u8) -> Vec<u8> {
        self.pattern
            .bytes()
            .zip(gtin13)
            .filter(|(p, _)| *p == letter)
            .map(|(_, d)| *d)
            .collect()
    }

    fn read(&self, gtin13: &[u8]) -> Result<VariableMeasure, RejectReason> {
        let value = self.digits_at(gtin13, b'V');
        if let [c] = self.digits_at(gtin13, b'C')[..] {
            let expected = match value.len() {
                4 => price_check_digit_4(&value),
                _ => price_check_digit_5(&value),
            };
            if expected != Some(c.wrapping_sub(b'0')) {
                return Err(RejectReason::BadPriceCheckDigit);
            }
        }
        if self.digits_at(gtin13, b'0').iter().any(|&d| d != b'0') {
            return Err(RejectReason::NotNumeric);
        }
        let digits = value.iter().fold(0u64, |acc, &d| {
            acc * 10 + u64::from(d.wrapping_sub(b'0') % 10)
        });
        let measure = match self.measure {
            MeasureKind::Price { decimals } => Measure::Price { digits, decimals },
            MeasureKind::Weight { decimals } => Measure::Weight { digits, decimals },
            MeasureKind::Count => Measure::Count(digits),
        };
        let mut key: Vec<u8> = self
            .pattern
            .bytes()
            .zip(gtin13)
            .take(12)
            .map(|(p, d)| if matches!(p, b'V' | b'C') { b'0' } else { *d })
            .collect();
        let check = gs1_check_digit(&key).ok_or(RejectReason::NotNumeric)?;
        key.push(b'0' + check);
        let lookup_gtin = Gtin::parse(&String::from_utf8_lossy(&key))?;
        Ok(VariableMeasure {
            prefix: String::from_utf8_lossy(&gtin13[..2]).into_owned(),
            item: String::from_utf8_lossy(&self.digits_at(gtin13, b'I')).into_owned(),
            measure,
            lookup_gtin,
        })
    }
}

/// The variable-measure layouts of the store's market.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct VariableMeasureConfig {
    /// Layouts, each for a set of prefixes. A 20-29 prefix without a layout
    /// is rejected ([`RejectReason::NoVariableMeasureLayout`]).
    pub layouts: Vec<VariableMeasureLayout>,
}

impl VariableMeasureConfig {
    /// Reads a variable-measure code from a GTIN whose GTIN-13 form starts
    /// with a restricted-circulation prefix. `None` when the GTIN is an
    /// ordinary trade item.
    pub fn read(&self, gtin: &Gtin) -> Option<Result<VariableMeasure, RejectReason>> {
        let g13 = gtin.to_gtin13()?;
        let prefix = &g13[..2];
        match self
            .layouts
            .iter()
            .find(|l| l.prefixes.iter().any(|p| p == prefix))
        {
            Some(layout) => Some(layout.read(g13.as_bytes())),
            None if matches!(prefix.as_bytes()[0], b'2') => {
                Some(Err(RejectReason::NoVariableMeasureLayout {
                    prefix: prefix.to_owned(),
                }))
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests;
