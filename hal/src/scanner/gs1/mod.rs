//! GS1 element strings (GS1-128, GS1 DataBar, GS1 DataMatrix and GS1 QR):
//! Application Identifiers with their lengths, character sets, check
//! digits and dates, the FNC1 separator (transmitted as ASCII GS, 0x1D)
//! after variable-length fields, and the rules on which AIs may or must
//! appear together.

mod table;

use std::fmt;

use serde::Serialize;

use super::check::gs1_check_ok;
use super::gtin::Gtin;
use super::reject::Gs1Error;
use table::{AiDef, Cset, Lint, Meaning};

/// The group separator that scanners transmit for FNC1 between fields.
pub const GS: u8 = 0x1d;

/// A GS1 date (YYMMDD). The century is resolved by the GS1 sliding window
/// around the scan's year; a day of `00` (allowed in 11 to 17) means "end
/// of month" and is kept as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gs1Date {
    /// Four-digit year.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of month, or `None` when the label gives only year and month.
    pub day: Option<u8>,
}

impl fmt::Display for Gs1Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.day {
            Some(d) => write!(f, "{:04}-{:02}-{d:02}", self.year, self.month),
            None => write!(f, "{:04}-{:02}", self.year, self.month),
        }
    }
}

/// The typed value of one element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Gs1Value {
    /// Text or digits without further meaning to the cart.
    Text(String),
    /// A GTIN (AI 01 or 02).
    Gtin(Gtin),
    /// A date (AI 11 to 17, 7006).
    Date(Gs1Date),
    /// A number with an implied decimal point (310n, 392n, ...): the value
    /// is `digits / 10^decimals`.
    Decimal {
        /// The digits as an integer.
        digits: u64,
        /// Digits after the implied decimal point.
        decimals: u8,
    },
    /// An amount in a given currency (391n, 393n).
    Currency {
        /// ISO 4217 numeric currency code.
        currency: String,
        /// The amount's digits as an integer.
        digits: u64,
        /// Digits after the implied decimal point.
        decimals: u8,
    },
}

/// One Application Identifier and its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Element {
    /// The AI, 2 to 4 digits.
    pub ai: String,
    /// The data field as transmitted.
    pub raw: String,
    /// The typed value.
    pub value: Gs1Value,
    /// GS1's short title of the AI ("BEST BEFORE", ...).
    pub title: &'static str,
}

/// A validated GS1 element string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementString {
    /// The elements in the order they were encoded.
    pub elements: Vec<Element>,
}

impl ElementString {
    /// The first element with this AI.
    pub fn get(&self, ai: &str) -> Option<&Element> {
        self.elements.iter().find(|e| e.ai == ai)
    }

    /// The GTIN of the trade item: AI 01, else AI 02 (contained items).
    pub fn gtin(&self) -> Option<Gtin> {
        ["01", "02"]
            .iter()
            .find_map(|ai| match self.get(ai)?.value {
                Gs1Value::Gtin(g) => Some(g),
                _ => None,
            })
    }

    /// The element string in the bracketed human-readable form,
    /// `(01)09501101530003(17)140704`.
    pub fn to_hri(&self) -> String {
        self.elements
            .iter()
            .map(|e| format!("({}){}", e.ai, e.raw))
            .collect()
    }
}

/// One Application Identifier the decoder knows, as test generators and
/// tools see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAi {
    /// The AI's digits (each member of a family listed on its own).
    pub ai: String,
    /// Whether the AI has a predefined length (no separator after it).
    pub fixed: bool,
    /// The shortest valid data field.
    pub min_len: usize,
    /// The longest valid data field.
    pub max_len: usize,
    /// Whether the whole field is digits only.
    pub numeric: bool,
}

/// Every AI of the decoder's table, families expanded.
pub fn known_ais() -> Vec<KnownAi> {
    let mut out = Vec::new();
    for def in table::AIS {
        let min_len = def
            .parts
            .iter()
            .filter(|p| !p.optional)
            .map(|p| p.min)
            .sum();
        let max_len = def.parts.iter().map(|p| p.max).sum();
        let numeric = def.parts.iter().all(|p| p.cset == Cset::N);
        let ais: Vec<String> = match def.family {
            None => vec![def.ai.to_owned()],
            Some(last) => (0..=last).map(|d| format!("{}{d}", def.ai)).collect(),
        };
        out.extend(ais.into_iter().map(|ai| KnownAi {
            ai,
            fixed: def.fixed,
            min_len,
            max_len,
            numeric,
        }));
    }
    out
}

/// Parses and validates a GS1 element string (without symbology
/// identifier; a leading FNC1/GS is skipped). `year` is the current year,
/// for the century of two-digit years.
pub fn parse(data: &[u8], year: u16) -> Result<ElementString, Gs1Error> {
    let mut elements: Vec<Element> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if data[pos] == GS {
            // A leading FNC1, or a superfluous one after a fixed field.
            pos += 1;
            continue;
        }
        let (ai_len, def) = table::lookup(&data[pos..]).ok_or(Gs1Error::UnknownAi { at: pos })?;
        let ai = ascii(&data[pos..pos + ai_len]);
        pos += ai_len;
        let max: usize = def.parts.iter().map(|p| p.max).sum();
        let end = if def.fixed {
            pos + max
        } else {
            data[pos..]
                .iter()
                .position(|&b| b == GS)
                .map_or(data.len(), |i| pos + i)
        };
        let Some(field) = data.get(pos..end) else {
            return Err(Gs1Error::TooShort { ai });
        };
        let value = check_field(&ai, def, field, year)?;
        pos = end;
        let raw = ascii(field);
        if let Some(prev) = elements.iter().find(|e| e.ai == ai) {
            if prev.raw != raw {
                return Err(Gs1Error::Duplicate { ai });
            }
            continue;
        }
        elements.push(Element {
            ai,
            raw,
            value,
            title: def.title,
        });
    }
    if elements.is_empty() {
        return Err(Gs1Error::Empty);
    }
    check_associations(&elements)?;
    Ok(ElementString { elements })
}

/// Parses the bracketed human-readable form, `(01)09501101530003(10)AB1`,
/// as printed under GS1 barcodes and written in test tables.
pub fn parse_hri(text: &str, year: u16) -> Result<ElementString, Gs1Error> {
    parse(
        &hri_to_element_string(text).ok_or(Gs1Error::UnknownAi { at: 0 })?,
        year,
    )
}

/// Turns the bracketed form into the transmitted form, with a GS after
/// every field that is not of predefined length. `None` when an AI is not
/// known or the brackets are malformed.
pub fn hri_to_element_string(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.strip_prefix('(')?;
    loop {
        let close = rest.find(')')?;
        let ai = &rest[..close];
        let (ai_len, def) = table::lookup(ai.as_bytes())?;
        if ai_len != ai.len() {
            return None;
        }
        rest = &rest[close + 1..];
        let next = rest.find('(').unwrap_or(rest.len());
        out.extend_from_slice(ai.as_bytes());
        out.extend_from_slice(&rest.as_bytes()[..next]);
        rest = &rest[next..];
        match rest.strip_prefix('(') {
            Some(r) => {
                if !def.fixed {
                    out.push(GS);
                }
                rest = r;
            }
            None => return Some(out),
        }
    }
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check_field(ai: &str, def: &AiDef, field: &[u8], year: u16) -> Result<Gs1Value, Gs1Error> {
    let too_short = || Gs1Error::TooShort { ai: ai.to_owned() };
    let min: usize = def
        .parts
        .iter()
        .filter(|p| !p.optional)
        .map(|p| p.min)
        .sum();
    let max: usize = def.parts.iter().map(|p| p.max).sum();
    if field.len() < min {
        return Err(too_short());
    }
    if field.len() > max {
        return Err(Gs1Error::TooLong { ai: ai.to_owned() });
    }
    let mut rest = field;
    let mut date = None;
    for part in def.parts {
        if part.optional && rest.is_empty() {
            // An optional part is absent, or present in full (below).
            continue;
        }
        let take = part.max.min(rest.len());
        if take < part.min {
            return Err(too_short());
        }
        let (comp, tail) = rest.split_at(take);
        rest = tail;
        if comp.is_empty() {
            continue;
        }
        let charset_ok = match part.cset {
            Cset::N => comp.iter().all(u8::is_ascii_digit),
            Cset::X => comp.iter().all(|&b| table::is_cset82(b)),
        };
        if !charset_ok {
            return Err(Gs1Error::BadCharacter { ai: ai.to_owned() });
        }
        let bad_date = || Gs1Error::BadDate { ai: ai.to_owned() };
        match part.lint {
            Lint::None => {}
            Lint::Csum if gs1_check_ok(comp) => {}
            Lint::Csum => return Err(Gs1Error::BadCheckDigit { ai: ai.to_owned() }),
            Lint::YymmD0 => date = Some(parse_date(comp, true, year).ok_or_else(bad_date)?),
            Lint::Yymmdd => date = Some(parse_date(comp, false, year).ok_or_else(bad_date)?),
            Lint::Hhmm => match comp {
                [h1, h2, m1, m2] if num(&[*h1, *h2]) <= 23 && num(&[*m1, *m2]) <= 59 => {}
                _ => return Err(bad_date()),
            },
        }
    }
    let last_digit = ai.as_bytes().last().map_or(0, |d| d.saturating_sub(b'0'));
    Ok(match def.meaning {
        Meaning::Plain => Gs1Value::Text(ascii(field)),
        Meaning::Gtin => Gs1Value::Gtin(Gtin::parse(&ascii(field)).map_err(|_| too_short())?),
        Meaning::Date => match date {
            Some(d) => Gs1Value::Date(d),
            None => Gs1Value::Text(ascii(field)),
        },
        Meaning::Decimal => Gs1Value::Decimal {
            digits: num(field),
            decimals: last_digit,
        },
        Meaning::Currency => {
            let (currency, amount) = field.split_at_checked(3).ok_or_else(too_short)?;
            Gs1Value::Currency {
                currency: ascii(currency),
                digits: num(amount),
                decimals: last_digit,
            }
        }
    })
}

/// The value of a run of at most 19 ASCII digits (already checked).
fn num(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(d.wrapping_sub(b'0') % 10))
    })
}

fn parse_date(d: &[u8], day_zero_ok: bool, year: u16) -> Option<Gs1Date> {
    let [y1, y2, m1, m2, d1, d2] = *d else {
        return None;
    };
    let yy = num(&[y1, y2]) as u16;
    let month = num(&[m1, m2]) as u8;
    let day = num(&[d1, d2]) as u8;
    let full = century_window(yy, year);
    if !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 {
        return day_zero_ok.then_some(Gs1Date {
            year: full,
            month,
            day: None,
        });
    }
    (day <= days_in_month(full, month)).then_some(Gs1Date {
        year: full,
        month,
        day: Some(day),
    })
}

/// GS1 General Specifications 7.12: a two-digit year more than 50 years
/// ahead of the current one is in the previous century, one more than 49
/// years behind is in the next.
fn century_window(yy: u16, current: u16) -> u16 {
    let century = current - current % 100;
    let diff = i32::from(yy) - i32::from(current % 100);
    if diff >= 51 {
        century.saturating_sub(100) + yy
    } else if diff <= -50 {
        century + 100 + yy
    } else {
        century + yy
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The AIs that give a variable-measure trade item (GTIN with indicator
/// digit 9) its measure (GS1 General Specifications 3.3.2 and 3.6.2).
const MEASURE_AIS: &[&str] = &["30", "31nn", "32nn", "35nn", "36nn", "8001"];

fn check_associations(elements: &[Element]) -> Result<(), Gs1Error> {
    let variable_measure = elements
        .iter()
        .any(|e| e.ai == "01" && e.raw.starts_with('9'));
    if variable_measure
        && !elements
            .iter()
            .any(|o| MEASURE_AIS.iter().any(|p| table::matches(p, &o.ai)))
    {
        return Err(Gs1Error::NoMeasure);
    }
    for el in elements {
        let Some((_, def)) = table::lookup(el.ai.as_bytes()) else {
            continue;
        };
        for pattern in def.ex {
            if let Some(other) = elements
                .iter()
                .find(|o| o.ai != el.ai && table::matches(pattern, &o.ai))
            {
                return Err(Gs1Error::InvalidPair {
                    a: el.ai.clone(),
                    b: other.ai.clone(),
                });
            }
        }
        for group in def.req {
            let satisfied = elements
                .iter()
                .any(|o| group.iter().any(|p| table::matches(p, &o.ai)));
            if !satisfied {
                let requires = group
                    .iter()
                    .map(|p| format!("({p})"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                return Err(Gs1Error::MissingAssociation {
                    ai: el.ai.clone(),
                    requires,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
