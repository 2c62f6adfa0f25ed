//! Card-number helpers used inside the reader (simulator) only: Luhn check,
//! masking and the keyed fingerprint (docs/reader-protocol.md, section 7.1).
//! The cart never calls them: it never has a PAN.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::message::{Fingerprint, MaskedPan};

/// The reader's fingerprint key. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct FingerprintKey(Zeroizing<[u8; 32]>);

impl FingerprintKey {
    /// From the 32 key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        FingerprintKey(Zeroizing::new(bytes))
    }

    /// HMAC-SHA256(key, PAN digits as ASCII).
    pub fn fingerprint(&self, pan: &str) -> Fingerprint {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(pan.as_bytes());
        Fingerprint(mac.finalize().into_bytes().into())
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// True for 12 to 19 digits passing the Luhn check.
pub fn luhn_valid(pan: &str) -> bool {
    if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = pan
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// First six and last four digits kept, the rest `*`. `None` unless the PAN
/// is 12 to 19 digits.
pub fn mask_pan(pan: &str) -> Option<MaskedPan> {
    let n = pan.len();
    if !(12..=19).contains(&n) || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut s = String::with_capacity(n);
    s.push_str(&pan[..6]);
    s.extend(std::iter::repeat_n('*', n - 10));
    s.push_str(&pan[n - 4..]);
    MaskedPan::new(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_spec() {
        assert_eq!(
            mask_pan("4111111111111111").unwrap().as_str(),
            "411111******1111"
        );
        assert_eq!(
            mask_pan("378282246310005").unwrap().as_str(),
            "378282*****0005"
        );
        assert!(mask_pan("4111").is_none());
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
    }

    #[test]
    fn fingerprint_is_rfc_hmac() {
        // RFC 4231 is for other keys; check against an independent value
        // computed with Python's hmac module for the all-0x0b key.
        let k = FingerprintKey::new([0x0b; 32]);
        let fp = k.fingerprint("4111111111111111");
        assert_eq!(fp.to_hex(), include_str!("card_fp_vector.txt").trim());
    }
}
