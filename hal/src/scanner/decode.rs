//! The sans-IO decoder: one line of bytes as a scanner sent it (AIM
//! identifier optional, terminator removed) in, one typed
//! [`ScanContent`] out. Pure: no I/O, no clock (the caller passes the
//! year for two-digit GS1 dates), never panics on any input.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::addon::AddOnConfig;
use super::aim::{AimId, Payload, Symbology};
use super::gs1::{self, GS};
use super::gtin::{AddOn, Gtin, expand_upce, split_add_on};
use super::nonproduct::{StaffBadge, parse_wifi};
use super::reject::RejectReason;
use super::variable::VariableMeasureConfig;
use super::{NonProduct, Product, ProductContent, Rejection, ScanContent};

/// What the decoder needs from the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    /// Prefix of staff badge codes (`None`: badges are not recognised).
    pub badge_prefix: Option<String>,
    /// Whether `WIFI:` provisioning codes are passed through.
    pub accept_wifi: bool,
    /// The market's in-store variable-measure layouts.
    pub variable_measure: VariableMeasureConfig,
    /// Joining add-ons that the scanner sends as their own packet.
    pub add_on: AddOnConfig,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            badge_prefix: Some("STAFF:".to_owned()),
            accept_wifi: true,
            variable_measure: VariableMeasureConfig::default(),
            add_on: AddOnConfig::default(),
        }
    }
}

/// Turns scanned lines into typed content.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    config: DecoderConfig,
}

/// The calendar year of `t` (UTC), for the century of GS1 two-digit years.
pub fn year_of(t: SystemTime) -> u16 {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    // Civil-from-days (Howard Hinnant), enough for the year.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u16::try_from(year).unwrap_or(u16::MAX)
}

impl Decoder {
    /// A decoder with this config.
    pub fn new(config: DecoderConfig) -> Self {
        Self { config }
    }

    /// The config in use.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Decodes one line (terminator removed). `year` resolves two-digit
    /// years in GS1 dates; drivers pass [`year_of`] of the scan time.
    pub fn decode(&self, line: &[u8], year: u16) -> ScanContent {
        let (aim, data) = match AimId::split(line) {
            Some((aim, rest)) => (Some(aim), rest),
            None => (None, line),
        };
        let symbology = aim.map(|a| a.symbology());
        let reject = |reason| ScanContent::Rejected(Rejection::new(reason, symbology, data));
        if data.is_empty() {
            return reject(RejectReason::Empty);
        }
        let Ok(text) = std::str::from_utf8(data) else {
            return reject(RejectReason::InvalidUtf8);
        };
        if let Some(&byte) = data.iter().find(|&&b| (b < 0x20 && b != GS) || b == 0x7f) {
            return reject(RejectReason::ControlCharacter { byte });
        }
        let badge_prefix = self
            .config
            .badge_prefix
            .as_deref()
            .filter(|p| !p.is_empty());
        if let Some(id) = badge_prefix.and_then(|p| text.strip_prefix(p)) {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return reject(RejectReason::Unrecognised);
            }
            return ScanContent::NonProduct(NonProduct::StaffBadge(StaffBadge {
                id: id.to_owned(),
            }));
        }
        if self.config.accept_wifi && text.starts_with("WIFI:") {
            return match parse_wifi(text) {
                Ok(w) => ScanContent::NonProduct(NonProduct::Wifi(w)),
                // Rejection::new never keeps the text of a WIFI: code.
                Err(reason) => reject(reason),
            };
        }
        let payload = aim.map_or(Payload::Free, |a| a.payload());
        let result = match payload {
            Payload::EanUpc { add_on: false } => self.ean_upc(text, aim),
            Payload::EanUpc { add_on: true } => self.with_add_on(text),
            Payload::Ean8 if text.len() == 8 => self.retail(Symbology::Ean8, text, text, None),
            Payload::Ean8 => Err(RejectReason::BadLength { len: text.len() }),
            Payload::AddOnOnly => Err(RejectReason::Unrecognised),
            Payload::Itf => self.itf(text),
            Payload::Gs1 => self.gs1(symbology.unwrap_or(Symbology::Unknown), data, year),
            Payload::Free => self.infer(text, data, year),
        };
        match result {
            Ok(mut product) => {
                product.aim = aim;
                if let Some(s) = symbology.filter(|_| product.symbology == Symbology::Unknown) {
                    product.symbology = s;
                }
                ScanContent::Product(product)
            }
            Err(reason) => reject(reason),
        }
    }

    fn retail(
        &self,
        symbology: Symbology,
        raw: &str,
        gtin_digits: &str,
        add_on: Option<AddOn>,
    ) -> Result<Product, RejectReason> {
        let gtin = Gtin::parse(gtin_digits)?;
        if let Some(reason) = gtin.not_for_sale() {
            return Err(reason);
        }
        if gtin.is_variable_measure() {
            return Err(RejectReason::NeedsMeasure);
        }
        // Restricted-circulation (in-store) numbers exist only as EAN-13
        // and UPC-A; an ITF-14 or EAN-8 with such digits is an ordinary GTIN.
        let in_store = matches!(symbology, Symbology::Ean13 | Symbology::UpcA) && add_on.is_none();
        let content = match self
            .config
            .variable_measure
            .read(&gtin)
            .filter(|_| in_store)
        {
            Some(vm) => ProductContent::VariableMeasure(vm?),
            None => ProductContent::Retail { add_on },
        };
        Ok(Product {
            symbology,
            aim: None,
            raw: raw.to_owned(),
            gtin,
            alternative: None,
            content,
        })
    }

    /// `]E0`: 13 digits (EAN-13, or UPC-A with a leading 0), 12 (UPC-A) or
    /// 8 (UPC-E, as some scanners send it unexpanded).
    fn ean_upc(&self, text: &str, _aim: Option<AimId>) -> Result<Product, RejectReason> {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RejectReason::NotNumeric);
        }
        match text.len() {
            13 if text.starts_with('0') => self.retail(Symbology::UpcA, text, text, None),
            13 => self.retail(Symbology::Ean13, text, text, None),
            12 => self.retail(Symbology::UpcA, text, text, None),
            8 => self.upce(text),
            len => Err(RejectReason::BadLength { len }),
        }
    }

    fn upce(&self, text: &str) -> Result<Product, RejectReason> {
        let upca = expand_upce(text)?;
        self.retail(Symbology::UpcE, text, &upca, None)
    }

    /// `]E3`: main symbol and add-on in one packet.
    fn with_add_on(&self, text: &str) -> Result<Product, RejectReason> {
        let main_len = match text.len() {
            15 | 18 => 13,
            10 | 13 => 8,
            len => return Err(RejectReason::BadLength { len }),
        };
        let (main, add_on) = split_add_on(text, main_len)?;
        let symbology = match main_len {
            8 => Symbology::Ean8,
            _ if main.starts_with('0') => Symbology::UpcA,
            _ => Symbology::Ean13,
        };
        self.retail(symbology, text, main, add_on)
    }

    fn itf(&self, text: &str) -> Result<Product, RejectReason> {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RejectReason::NotNumeric);
        }
        match text.len() {
            14 => self.retail(Symbology::Itf14, text, text, None),
            len => Err(RejectReason::BadLength { len }),
        }
    }

    fn gs1(&self, symbology: Symbology, data: &[u8], year: u16) -> Result<Product, RejectReason> {
        let es = gs1::parse(data, year)?;
        if es.get("255").is_some() {
            // A GS1 coupon code (GCN).
            return Err(RejectReason::Coupon);
        }
        let gtin = es.gtin().ok_or(RejectReason::NoGtin)?;
        if let Some(reason) = gtin.not_for_sale() {
            return Err(reason);
        }
        let raw = String::from_utf8_lossy(data).into_owned();
        Ok(Product {
            symbology,
            aim: None,
            raw,
            gtin,
            alternative: None,
            content: ProductContent::Gs1(es),
        })
    }

    /// No AIM identifier (or one that does not say): the content decides.
    fn infer(&self, text: &str, data: &[u8], year: u16) -> Result<Product, RejectReason> {
        if data.first() == Some(&GS) {
            return self.gs1(Symbology::Unknown, data, year);
        }
        if text.starts_with('(') {
            let es = gs1::hri_to_element_string(text).ok_or(RejectReason::Unrecognised)?;
            return self.gs1(Symbology::Unknown, &es, year);
        }
        let all_digits = text.bytes().all(|b| b.is_ascii_digit());
        if (!all_digits || text.len() >= 16) && looks_like_element_string(text) {
            // A GS1 element string from a scanner with AIM identifiers
            // switched off (the leading FNC1 is not transmitted), unless
            // 18 digits read as EAN-13 with a 5-digit add-on.
            if let Some(p) = (all_digits && text.len() == 18)
                .then(|| self.with_add_on(text).ok())
                .flatten()
            {
                return Ok(p);
            }
            return self.gs1(Symbology::Unknown, data, year);
        }
        if !all_digits {
            return Err(RejectReason::Unrecognised);
        }
        match text.len() {
            // EAN-8 and UPC-E are both 8 digits, and some codes are valid
            // as both. The reading as UPC-E comes first when it is valid
            // (number system 0 or 1 and its check digit), the EAN-8 reading
            // is kept as the alternative: the catalog decides which item
            // exists.
            8 => match (
                self.upce(text),
                self.retail(Symbology::Ean8, text, text, None),
            ) {
                (Ok(mut upce), Ok(ean8)) => {
                    upce.alternative = Some(ean8.gtin);
                    Ok(upce)
                }
                (Ok(upce), Err(_)) => Ok(upce),
                (Err(_), ean8) => ean8,
            },
            12 => self.retail(Symbology::UpcA, text, text, None),
            13 if text.starts_with('0') => self.retail(Symbology::UpcA, text, text, None),
            13 => self.retail(Symbology::Ean13, text, text, None),
            14 => self.retail(Symbology::Itf14, text, text, None),
            15 | 18 => self.with_add_on(text),
            len => Err(RejectReason::BadLength { len }),
        }
    }
}

/// Whether text without a symbology identifier starts like a GS1 element
/// string of a trade item or logistic unit: AI 01 or 02 and 14 digits, or
/// AI 00 and 18 digits.
fn looks_like_element_string(text: &str) -> bool {
    let digits_after = |ai: &str, n: usize| {
        text.strip_prefix(ai)
            .is_some_and(|rest| rest.len() >= n && rest.bytes().take(n).all(|b| b.is_ascii_digit()))
    };
    digits_after("01", 14) || digits_after("02", 14) || digits_after("00", 18)
}

#[cfg(test)]
mod tests;
