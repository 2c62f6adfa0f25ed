//! Check digits: the GS1 modulo-10 check digit shared by every GTIN, SSCC
//! and GLN, and the price/measure verifier digits of variable-measure codes
//! (GS1 General Specifications, sections 7.9.1 to 7.9.4).

/// The GS1 modulo-10 check digit for `digits` (without the check digit).
///
/// Weights 3 and 1 alternate from the right. Returns `None` when an input
/// byte is not an ASCII digit.
pub fn gs1_check_digit(digits: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        sum += if i % 2 == 0 { d * 3 } else { d };
    }
    // The remainder is below 10, so the cast cannot truncate.
    Some(((10 - sum % 10) % 10) as u8)
}

/// Whether the last digit of `digits` is the GS1 check digit of the others.
pub fn gs1_check_ok(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&last, body)) if last.is_ascii_digit() => gs1_check_digit(body) == Some(last - b'0'),
        _ => false,
    }
}

/// Weighting factor "2-": the units digit of d*2 minus its tens digit.
const W2_MINUS: [u8; 10] = [0, 2, 4, 6, 8, 9, 1, 3, 5, 7];
/// Weighting factor "3": the units digit of d*3.
const W3: [u8; 10] = [0, 3, 6, 9, 2, 5, 8, 1, 4, 7];
/// Weighting factor "5+": the units digit of d*5 plus its tens digit.
const W5_PLUS: [u8; 10] = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9];
/// Weighting factor "5-": the units digit of d*5 minus its tens digit.
const W5_MINUS: [u8; 10] = [0, 5, 9, 4, 8, 3, 7, 2, 6, 1];

fn digit_values<const N: usize>(digits: &[u8]) -> Option<[usize; N]> {
    if digits.len() != N {
        return None;
    }
    let mut out = [0usize; N];
    for (slot, &b) in out.iter_mut().zip(digits) {
        if !b.is_ascii_digit() {
            return None;
        }
        *slot = usize::from(b - b'0');
    }
    Some(out)
}

/// The price (or measure) verifier digit for a 4-digit price field
/// (GS1 General Specifications 7.9.3): weights 2-, 2-, 3, 5-, the sum
/// multiplied by 3, the units digit of the result.
pub fn price_check_digit_4(digits: &[u8]) -> Option<u8> {
    let d = digit_values::<4>(digits)?;
    let sum = u32::from(W2_MINUS[d[0]])
        + u32::from(W2_MINUS[d[1]])
        + u32::from(W3[d[2]])
        + u32::from(W5_MINUS[d[3]]);
    Some(((sum * 3) % 10) as u8)
}

/// The price (or measure) verifier digit for a 5-digit price field
/// (GS1 General Specifications 7.9.4): weights 5+, 2-, 5-, 5+, 2-; the sum
/// is subtracted from the next multiple of ten and the check digit is the
/// digit whose 5- weighted product equals that difference.
pub fn price_check_digit_5(digits: &[u8]) -> Option<u8> {
    let d = digit_values::<5>(digits)?;
    let sum = u32::from(W5_PLUS[d[0]])
        + u32::from(W2_MINUS[d[1]])
        + u32::from(W5_MINUS[d[2]])
        + u32::from(W5_PLUS[d[3]])
        + u32::from(W2_MINUS[d[4]]);
    let diff = ((10 - sum % 10) % 10) as u8;
    W5_MINUS.iter().position(|&w| w == diff).map(|p| p as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs1_check_digits_of_published_codes() {
        // GTIN-13 of the GS1 General Specifications' examples and a UPC-A.
        assert_eq!(gs1_check_digit(b"950110153000"), Some(3));
        assert_eq!(gs1_check_digit(b"03600024145"), Some(7));
        assert!(gs1_check_ok(b"4006381333931"));
        assert!(!gs1_check_ok(b"4006381333932"));
        assert!(!gs1_check_ok(b""));
        assert_eq!(gs1_check_digit(b"12a"), None);
        // SSCC example from the GS1 General Specifications.
        assert!(gs1_check_ok(b"106141411234567897"));
    }

    #[test]
    fn price_check_digit_examples_from_gs1() {
        // GS1 General Specifications 7.9.3: price 2875 gives 9.
        assert_eq!(price_check_digit_4(b"2875"), Some(9));
        // GS1 General Specifications 7.9.4: price 14685 gives 6.
        assert_eq!(price_check_digit_5(b"14685"), Some(6));
        assert_eq!(price_check_digit_4(b"287"), None);
        assert_eq!(price_check_digit_5(b"1468x"), None);
    }

    #[test]
    fn weight_tables_follow_their_definition() {
        for d in 0..10u8 {
            let p2 = d * 2;
            assert_eq!(W2_MINUS[usize::from(d)], (p2 % 10 + 10 - p2 / 10) % 10);
            let p5 = d * 5;
            assert_eq!(W5_PLUS[usize::from(d)], (p5 % 10 + p5 / 10) % 10);
            assert_eq!(W5_MINUS[usize::from(d)], (p5 % 10 + 10 - p5 / 10) % 10);
            assert_eq!(W3[usize::from(d)], (d * 3) % 10);
        }
    }
}
