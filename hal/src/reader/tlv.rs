//! A BER-TLV walker for the EMV data of a card-read result, so the cart can
//! check that it carries no card data in clear (docs/reader-protocol.md,
//! section 7.3) before the data goes anywhere near its disk.

/// Tags that would put card data in clear on the cart: PAN (5A), track 1
/// (56), track 2 equivalent (57), cardholder name (5F20), expiry (5F24),
/// contactless track 2 (9F6B), track 1/2 discretionary data (9F1F, 9F20).
pub const FORBIDDEN_TAGS: &[&[u8]] = &[
    &[0x5A],
    &[0x56],
    &[0x57],
    &[0x5F, 0x20],
    &[0x5F, 0x24],
    &[0x9F, 0x6B],
    &[0x9F, 0x1F],
    &[0x9F, 0x20],
];

/// Why EMV data was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlvError {
    /// The bytes are not a sequence of BER-TLV objects: the driver reports
    /// the read as a reader fault.
    #[error("EMV data is not valid BER-TLV at offset {0}")]
    Malformed(usize),
    /// A tag that carries card data in clear: the driver reports the read as
    /// a reader fault and logs the tag (never the value).
    #[error("EMV data carries forbidden tag {0}")]
    Forbidden(String),
}

/// One data object: its tag bytes and value.
#[derive(Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Tag, 1 to 3 bytes.
    pub tag: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// Splits `data` into top-level data objects.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let bad = || TlvError::Malformed(start);
        // Tag: low five bits all set means more tag bytes follow; each
        // further byte has bit 8 set while another follows (at most 3 bytes).
        let first = *data.get(i).ok_or_else(bad)?;
        i += 1;
        if first & 0x1F == 0x1F {
            loop {
                let b = *data.get(i).ok_or_else(bad)?;
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
                if i - start >= 3 {
                    return Err(bad());
                }
            }
        }
        let tag = &data[start..i];
        // Length: short form, or 0x81/0x82 followed by 1 or 2 bytes.
        let l = *data.get(i).ok_or_else(bad)?;
        i += 1;
        let len = match l {
            0x00..=0x7F => usize::from(l),
            0x81 => {
                let b = *data.get(i).ok_or_else(bad)?;
                i += 1;
                usize::from(b)
            }
            0x82 => {
                let hi = *data.get(i).ok_or_else(bad)?;
                let lo = *data.get(i + 1).ok_or_else(bad)?;
                i += 2;
                usize::from(u16::from_be_bytes([hi, lo]))
            }
            _ => return Err(bad()),
        };
        let value = data.get(i..i + len).ok_or_else(bad)?;
        i += len;
        out.push(Tlv { tag, value });
    }
    Ok(out)
}

/// Checks that `data` is well-formed and free of [`FORBIDDEN_TAGS`].
pub fn check_no_card_data(data: &[u8]) -> Result<(), TlvError> {
    for obj in parse(data)? {
        if FORBIDDEN_TAGS.contains(&obj.tag) {
            return Err(TlvError::Forbidden(hex::encode_upper(obj.tag)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_and_two_byte_tags_and_long_lengths() {
        let mut d = vec![
            0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x12, 0x50, 0x82, 0x02, 0x19, 0x80,
        ];
        d.extend([0x9F, 0x10, 0x81, 0x80]);
        d.extend([0xAB; 0x80]);
        let objs = parse(&d).unwrap();
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[0].tag, &[0x9F, 0x02]);
        assert_eq!(objs[1].value, &[0x19, 0x80]);
        assert_eq!(objs[2].value.len(), 0x80);
        assert_eq!(check_no_card_data(&d), Ok(()));
    }

    #[test]
    fn refuses_card_data_in_clear() {
        let d = [
            0x82, 0x02, 0x19, 0x80, 0x5A, 0x08, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        ];
        assert_eq!(
            check_no_card_data(&d),
            Err(TlvError::Forbidden("5A".into()))
        );
        assert_eq!(
            check_no_card_data(&[0x5F, 0x24, 0x03, 0x30, 0x12, 0x31]),
            Err(TlvError::Forbidden("5F24".into()))
        );
    }

    #[test]
    fn refuses_truncated_data() {
        assert_eq!(
            parse(&[0x9F, 0x02, 0x06, 0x00]),
            Err(TlvError::Malformed(0))
        );
        assert_eq!(parse(&[0x9F]), Err(TlvError::Malformed(0)));
        assert_eq!(parse(&[0x82, 0x83, 0, 0, 1]), Err(TlvError::Malformed(0)));
    }
}
