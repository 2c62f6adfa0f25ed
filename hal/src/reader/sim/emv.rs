//! The EMV data a simulated read hands the processor (docs/reader-protocol.md,
//! section 7.3): BER-TLV, never PAN (5A), track 2 (57) or expiry (5F24) —
//! those travel only inside the encrypted blob.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::reader::card::FingerprintKey;
use crate::reader::fixtures::TestCard;
use crate::reader::message::{Currency, EntryMode, PaymentRequest};

/// ISO 4217 numeric code of the currencies the simulated reader accepts.
pub fn currency_numeric(c: Currency) -> Option<u16> {
    Some(match c.as_str() {
        "EUR" => 978,
        "USD" => 840,
        "GBP" => 826,
        "CHF" => 756,
        "SEK" => 752,
        "NOK" => 578,
        "DKK" => 208,
        "PLN" => 985,
        "CZK" => 203,
        "JPY" => 392,
        _ => return None,
    })
}

/// `n` decimal digits as packed BCD, left-padded with zeros.
fn bcd(mut v: u64, bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    for b in out.iter_mut().rev() {
        let lo = (v % 10) as u8;
        v /= 10;
        let hi = (v % 10) as u8;
        v /= 10;
        *b = (hi << 4) | lo;
    }
    out
}

fn tlv(out: &mut Vec<u8>, tag: &[u8], value: &[u8]) -> Option<()> {
    out.extend_from_slice(tag);
    // Every value here is short (< 128 bytes): one-byte BER length.
    out.push(u8::try_from(value.len()).ok().filter(|&l| l < 0x80)?);
    out.extend_from_slice(value);
    Some(())
}

fn aid(pan: &str) -> &'static [u8] {
    match pan.as_bytes().first() {
        Some(b'4') => &[0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10],
        Some(b'5') | Some(b'2') => &[0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10],
        Some(b'3') if pan.starts_with("34") || pan.starts_with("37") => {
            &[0xA0, 0x00, 0x00, 0x00, 0x25, 0x01]
        }
        Some(b'3') => &[0xA0, 0x00, 0x00, 0x00, 0x65, 0x10, 0x10],
        _ => &[0xA0, 0x00, 0x00, 0x01, 0x52, 0x30, 0x10],
    }
}

/// Builds the EMV data for a read. `None` for an unsupported currency.
pub fn build(
    req: &PaymentRequest,
    card: &TestCard,
    atc: u16,
    key: &FingerprintKey,
) -> Option<Vec<u8>> {
    let currency = currency_numeric(req.currency)?;
    // Simulated application cryptogram: a MAC over the transaction, so it is
    // stable per payment and differs between payments.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.fingerprint(&card.pan).0.as_slice()).ok()?;
    mac.update(req.key.as_bytes());
    mac.update(&req.amount_minor.to_be_bytes());
    mac.update(&atc.to_be_bytes());
    let ac = mac.finalize().into_bytes();
    let mut out = Vec::with_capacity(96);
    tlv(&mut out, &[0x4F], aid(&card.pan))?;
    tlv(&mut out, &[0x82], &[0x19, 0x80])?;
    tlv(&mut out, &[0x95], &[0x00; 5])?;
    tlv(&mut out, &[0x9C], &[0x00])?;
    tlv(&mut out, &[0x5F, 0x2A], &bcd(u64::from(currency), 2))?;
    tlv(&mut out, &[0x9F, 0x02], &bcd(req.amount_minor, 6))?;
    tlv(&mut out, &[0x9F, 0x26], &ac[..8])?;
    tlv(&mut out, &[0x9F, 0x27], &[0x80])?;
    tlv(&mut out, &[0x9F, 0x36], &atc.to_be_bytes())?;
    tlv(&mut out, &[0x9F, 0x37], &ac[8..12])?;
    let cvm = if card.pin {
        [0x02, 0x00, 0x00] // enciphered PIN verified online, result unknown
    } else {
        [0x1F, 0x00, 0x02] // no CVM required, successful
    };
    tlv(&mut out, &[0x9F, 0x34], &cvm)?;
    let pos = match card.entry_mode {
        EntryMode::Chip => 0x05,
        EntryMode::Contactless => 0x07,
    };
    tlv(&mut out, &[0x9F, 0x39], &[pos])?;
    if let Some(psn) = card.psn {
        tlv(&mut out, &[0x5F, 0x34], &[psn])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_packs_digits() {
        assert_eq!(bcd(12345, 6), vec![0, 0, 0, 0x01, 0x23, 0x45]);
        assert_eq!(bcd(978, 2), vec![0x09, 0x78]);
    }
}
