//! Amounts in minor units, formatted for the shopper.

/// Formats `minor` units of `currency` (ISO 4217 code) for display, e.g.
/// `format_minor(1234, "EUR") == "EUR 12.34"`.
///
/// Currencies without minor units (JPY, KRW, ...) are shown without decimals.
pub fn format_minor(minor: i64, currency: &str) -> String {
    let exponent = minor_exponent(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{currency} {sign}{abs}");
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{currency} {sign}{}.{:0width$}",
        abs / scale,
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
        assert_eq!(format_minor(1500, "JPY"), "JPY 1500");
        assert_eq!(format_minor(1234, "KWD"), "KWD 1.234");
    }
}
