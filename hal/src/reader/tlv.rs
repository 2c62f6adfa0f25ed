//! A BER-TLV walker for the EMV data of a card-read result, so the cart can
//! check that it carries no card data in clear (docs/reader-protocol.md,
//! section 7.3) before the data goes anywhere near its disk. The check
//! walks into constructed objects (templates such as 70, 77, 61, A5, BF0C),
//! so a PAN nested in a READ RECORD or GPO response template is caught.

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

/// How deep templates may nest (EMV uses two or three levels): deeper is
/// refused as malformed, so a crafted blob cannot exhaust the stack.
pub const MAX_DEPTH: usize = 8;

impl Tlv<'_> {
    /// A constructed object (bit 6 of the first tag byte): its value is
    /// itself a sequence of data objects.
    pub fn constructed(&self) -> bool {
        self.tag.first().is_some_and(|t| t & 0x20 != 0)
    }
}

/// Splits `data` into top-level data objects.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    parse_at(data, 0)
}

/// [`parse`], with error offsets counted from `base`.
fn parse_at(data: &[u8], base: usize) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let bad = || TlvError::Malformed(base + start);
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

/// Checks that `data` is well-formed and free of [`FORBIDDEN_TAGS`] at any
/// depth: constructed objects are walked into.
pub fn check_no_card_data(data: &[u8]) -> Result<(), TlvError> {
    check_at(data, 0, 0)
}

fn check_at(data: &[u8], base: usize, depth: usize) -> Result<(), TlvError> {
    if depth > MAX_DEPTH {
        return Err(TlvError::Malformed(base));
    }
    for obj in parse_at(data, base)? {
        if FORBIDDEN_TAGS.contains(&obj.tag) {
            return Err(TlvError::Forbidden(hex::encode_upper(obj.tag)));
        }
        if obj.constructed() {
            // The value's offset inside `data` (both are slices of it).
            let at = base + (obj.value.as_ptr() as usize - data.as_ptr() as usize);
            check_at(obj.value, at, depth + 1)?;
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
    fn finds_a_pan_nested_in_templates() {
        let pan = [0x5A, 0x08, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
        for template in [0x70u8, 0x77] {
            let mut d = vec![0x82, 0x02, 0x19, 0x80, template, pan.len() as u8];
            d.extend(pan);
            assert_eq!(
                check_no_card_data(&d),
                Err(TlvError::Forbidden("5A".into())),
                "{template:02X}"
            );
        }
        // Two levels down: FCI template 6F > A5 > track 2 equivalent 57.
        let d = [0x6F, 0x06, 0xA5, 0x04, 0x57, 0x02, 0x41, 0x11];
        assert_eq!(
            check_no_card_data(&d),
            Err(TlvError::Forbidden("57".into()))
        );
        // A template with harmless contents passes.
        let d = [0x77, 0x04, 0x82, 0x02, 0x19, 0x80];
        assert_eq!(check_no_card_data(&d), Ok(()));
        // A primitive object whose value happens to look like a PAN TLV is
        // not walked into (95, TVR, is primitive).
        let d = [0x95, 0x03, 0x5A, 0x01, 0x41];
        assert_eq!(check_no_card_data(&d), Ok(()));
    }

    #[test]
    fn malformed_nesting_is_refused_with_its_offset() {
        // 70 claims 4 bytes holding a truncated object.
        let d = [0x82, 0x02, 0x19, 0x80, 0x70, 0x03, 0x9F, 0x02, 0x06];
        assert_eq!(check_no_card_data(&d), Err(TlvError::Malformed(6)));
        // Nesting deeper than MAX_DEPTH.
        let mut d: Vec<u8> = vec![0x82, 0x00];
        for _ in 0..=MAX_DEPTH + 1 {
            let mut outer = vec![0x70, d.len() as u8];
            outer.extend(&d);
            d = outer;
        }
        assert!(matches!(
            check_no_card_data(&d),
            Err(TlvError::Malformed(_))
        ));
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
