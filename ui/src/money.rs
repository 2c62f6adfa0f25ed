//! Amounts in minor units, formatted for the shopper.

use crate::view::Language;

/// Formats `minor` units of `currency` (ISO 4217 code) for display, e.g.
/// `format_minor(1234, "EUR") == "EUR 12.34"`.
///
/// Currencies without minor units (JPY, KRW, ...) are shown without decimals.
pub fn format_minor(minor: i64, currency: &str) -> String {
    format_localized(minor, currency, Language::English)
}

/// Formats an amount the way the shopper's language writes it: English
/// `EUR 1,234.56`, German `1.234,56 EUR`. The exponent comes from the currency.
pub fn format_localized(minor: i64, currency: &str, language: Language) -> String {
    let number = format_number(minor, minor_exponent(currency), language);
    match language {
        Language::English => format!("{currency} {number}"),
        Language::German => format!("{number} {currency}"),
    }
}

/// Formats a fixed-point number with `exponent` decimals, grouping thousands.
pub(crate) fn format_number(value: i64, exponent: u32, language: Language) -> String {
    let (group, decimal) = match language {
        Language::English => (',', '.'),
        Language::German => ('.', ','),
    };
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let scale = 10u64.pow(exponent);
    let digits = (abs / scale).to_string();
    let mut whole = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            whole.push(group);
        }
        whole.push(c);
    }
    if exponent == 0 {
        return format!("{sign}{whole}");
    }
    format!(
        "{sign}{whole}{decimal}{:0width$}",
        abs % scale,
        width = exponent as usize
    )
}

/// The ISO 4217 minor-unit exponent of a currency (2 when unknown).
pub fn minor_exponent(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_two_decimal_currencies() {
        assert_eq!(format_minor(1234, "EUR"), "EUR 12.34");
        assert_eq!(format_minor(5, "USD"), "USD 0.05");
        assert_eq!(format_minor(-250, "GBP"), "GBP -2.50");
    }

    #[test]
    fn formats_zero_and_three_decimal_currencies() {
        assert_eq!(format_minor(1500, "JPY"), "JPY 1,500");
        assert_eq!(format_minor(1234, "KWD"), "KWD 1.234");
    }

    #[test]
    fn groups_thousands_per_language() {
        assert_eq!(format_minor(123_456_789, "EUR"), "EUR 1,234,567.89");
        assert_eq!(
            format_localized(123_456_789, "EUR", Language::German),
            "1.234.567,89 EUR"
        );
        assert_eq!(format_localized(100, "EUR", Language::German), "1,00 EUR");
        assert_eq!(
            format_localized(999_999, "JPY", Language::German),
            "999.999 JPY"
        );
    }

    #[test]
    fn extreme_amounts_do_not_overflow() {
        assert_eq!(
            format_minor(i64::MIN, "EUR"),
            "EUR -92,233,720,368,547,758.08"
        );
    }
}
