//! The GTIN-14 every product code is normalised to, and the retail
//! symbologies that carry one: EAN-13 (with its 2- and 5-digit add-ons),
//! EAN-8, UPC-A, UPC-E (expanded) and ITF-14.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::check::{gs1_check_digit, gs1_check_ok};
use super::reject::RejectReason;

/// A Global Trade Item Number in its 14-digit form (GTIN-8, -12 and -13 are
/// left-padded with zeros), check digit verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Gtin([u8; 14]);

impl Gtin {
    /// Parses an 8-, 12-, 13- or 14-digit GTIN and checks its check digit.
    pub fn parse(digits: &str) -> Result<Self, RejectReason> {
        let bytes = digits.as_bytes();
        if !matches!(bytes.len(), 8 | 12 | 13 | 14) {
            return Err(RejectReason::BadLength { len: bytes.len() });
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(RejectReason::NotNumeric);
        }
        if !gs1_check_ok(bytes) {
            return Err(RejectReason::BadCheckDigit);
        }
        let mut out = [b'0'; 14];
        out[14 - bytes.len()..].copy_from_slice(bytes);
        Ok(Self(out))
    }

    /// The 14 digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("00000000000000")
    }

    /// The GTIN-13 form when the indicator digit is 0 (retail items).
    pub fn to_gtin13(&self) -> Option<&str> {
        (self.0[0] == b'0').then(|| &self.as_str()[1..])
    }

    /// Why this GTIN names no item for sale: a coupon (GS1 prefixes 981 to
    /// 984 and 99 for coupons, UPC number system 5, GTIN-13 prefix 05) or
    /// a refund receipt (980). `None` for an ordinary trade item.
    pub fn not_for_sale(&self) -> Option<RejectReason> {
        let g13 = self.to_gtin13()?;
        if g13.starts_with("980") {
            Some(RejectReason::RefundReceipt)
        } else if ["981", "982", "983", "984", "99", "05"]
            .iter()
            .any(|p| g13.starts_with(p))
        {
            Some(RejectReason::Coupon)
        } else {
            None
        }
    }

    /// Whether the indicator digit is 9: a variable-measure trade item,
    /// which needs its measure (weight, count) beside the GTIN.
    pub fn is_variable_measure(&self) -> bool {
        self.0[0] == b'9'
    }

    /// The GS1 prefix's first two digits of the GTIN-13 form (`"20"` to
    /// `"29"` for in-store variable-measure codes).
    pub fn prefix2(&self) -> &str {
        &self.as_str()[1..3]
    }
}

impl fmt::Display for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gtin({})", self.as_str())
    }
}

impl TryFrom<String> for Gtin {
    type Error = RejectReason;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Gtin> for String {
    fn from(g: Gtin) -> String {
        g.as_str().to_owned()
    }
}

/// An EAN/UPC add-on symbol printed to the right of the main symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddOn {
    /// Two digits (periodicals: issue number).
    Two(String),
    /// Five digits (books: suggested price).
    Five(String),
}

fn all_digits(s: &str) -> Result<(), RejectReason> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(RejectReason::NotNumeric)
    }
}

/// Splits an EAN-13/UPC-A/EAN-8 payload into main digits and add-on, when
/// the length says an add-on is present (`main_len` + 2 or + 5).
pub fn split_add_on(data: &str, main_len: usize) -> Result<(&str, Option<AddOn>), RejectReason> {
    all_digits(data)?;
    match data.len().checked_sub(main_len) {
        Some(0) => Ok((data, None)),
        Some(2) => Ok((
            &data[..main_len],
            Some(AddOn::Two(data[main_len..].to_owned())),
        )),
        Some(5) => Ok((
            &data[..main_len],
            Some(AddOn::Five(data[main_len..].to_owned())),
        )),
        _ => Err(RejectReason::BadLength { len: data.len() }),
    }
}

/// Expands the 8-digit UPC-E form (number system, six digits, check digit)
/// to its 12-digit UPC-A form and verifies the check digit.
pub fn expand_upce(upce: &str) -> Result<String, RejectReason> {
    let b = upce.as_bytes();
    if b.len() != 8 {
        return Err(RejectReason::BadLength { len: b.len() });
    }
    all_digits(upce)?;
    if b[0] != b'0' && b[0] != b'1' {
        return Err(RejectReason::BadUpcENumberSystem);
    }
    let upca = expand_upce_body(&b[..7]);
    let mut out = upca;
    out.push(b[7]);
    if !gs1_check_ok(&out) {
        return Err(RejectReason::BadCheckDigit);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The first 11 digits of the UPC-A form of a UPC-E number system digit plus
/// six data digits.
fn expand_upce_body(b: &[u8]) -> Vec<u8> {
    let (ns, d) = (b[0], &b[1..7]);
    let mut out = Vec::with_capacity(12);
    out.push(ns);
    match d[5] {
        b'0'..=b'2' => {
            out.extend_from_slice(&[d[0], d[1], d[5], b'0', b'0', b'0', b'0', d[2], d[3], d[4]]);
        }
        b'3' => {
            out.extend_from_slice(&[d[0], d[1], d[2], b'0', b'0', b'0', b'0', b'0', d[3], d[4]])
        }
        b'4' => {
            out.extend_from_slice(&[d[0], d[1], d[2], d[3], b'0', b'0', b'0', b'0', b'0', d[4]])
        }
        _ => out.extend_from_slice(&[d[0], d[1], d[2], d[3], d[4], b'0', b'0', b'0', b'0', d[5]]),
    }
    out
}

/// Appends the GS1 check digit to `digits` (an encoder for tests, the
/// simulator and the benchmarks).
pub fn with_check_digit(digits: &str) -> Option<String> {
    let c = gs1_check_digit(digits.as_bytes())?;
    Some(format!("{digits}{c}"))
}

/// Builds the 8-digit UPC-E form of a number system (0 or 1) and six data
/// digits, with the check digit of its UPC-A expansion.
pub fn encode_upce(number_system: u8, six: &str) -> Option<String> {
    if number_system > 1 || six.len() != 6 || !six.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut body = vec![b'0' + number_system];
    body.extend_from_slice(six.as_bytes());
    let check = gs1_check_digit(&expand_upce_body(&body))?;
    Some(format!("{number_system}{six}{check}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtin_forms_pad_to_fourteen() {
        assert_eq!(
            Gtin::parse("96385074").map(|g| g.to_string()),
            Ok("00000096385074".into())
        );
        assert_eq!(
            Gtin::parse("036000241457").map(|g| g.to_string()),
            Ok("00036000241457".into())
        );
        assert_eq!(
            Gtin::parse("4006381333931").map(|g| g.to_string()),
            Ok("04006381333931".into())
        );
        assert_eq!(
            Gtin::parse("4006381333932"),
            Err(RejectReason::BadCheckDigit)
        );
        assert_eq!(
            Gtin::parse("40063813339"),
            Err(RejectReason::BadLength { len: 11 })
        );
        assert_eq!(Gtin::parse("400638133393x"), Err(RejectReason::NotNumeric));
    }

    #[test]
    fn upce_expands_by_last_digit_rule() {
        // Published examples of the four expansion rules.
        assert_eq!(expand_upce("04252614").as_deref(), Ok("042100005264"));
        assert_eq!(expand_upce("01234565").as_deref(), Ok("012345000065"));
        assert_eq!(expand_upce("01234531").as_deref(), Ok("012300000451"));
        assert_eq!(expand_upce("01234558").as_deref(), Ok("012345000058"));
        assert_eq!(expand_upce("01234559"), Err(RejectReason::BadCheckDigit));
        assert_eq!(
            expand_upce("21234558"),
            Err(RejectReason::BadUpcENumberSystem)
        );
    }

    #[test]
    fn upce_encoder_agrees_with_expansion() {
        let code = encode_upce(0, "425261");
        assert_eq!(code.as_deref(), Some("04252614"));
        assert_eq!(encode_upce(2, "425261"), None);
    }

    #[test]
    fn add_on_split_by_length() {
        assert_eq!(
            split_add_on("978020137962405", 13),
            Ok(("9780201379624", Some(AddOn::Two("05".into()))))
        );
        assert_eq!(
            split_add_on("978020137962490000", 13),
            Ok(("9780201379624", Some(AddOn::Five("90000".into()))))
        );
        assert_eq!(
            split_add_on("97802013796241", 13),
            Err(RejectReason::BadLength { len: 14 })
        );
    }
}
