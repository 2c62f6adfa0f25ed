//! AIM symbology identifiers (ISO/IEC 15424): the `]Xm` prefix a scanner
//! sends before the data when configured to, naming the symbology that was
//! read (`X`) and options (`m`).

use std::fmt;

use serde::Serialize;

/// The symbology a scan came from: from the AIM identifier when the scanner
/// sends one, else inferred from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Symbology {
    /// EAN-13 (`]E0`, 13 digits).
    Ean13,
    /// EAN-8 (`]E4`).
    Ean8,
    /// UPC-A (`]E0` with a leading 0, or 12 digits).
    UpcA,
    /// UPC-E (8 digits, number system 0 or 1).
    UpcE,
    /// ITF-14 (`]I0`, `]I1`).
    Itf14,
    /// GS1-128 (`]C1`).
    Gs1128,
    /// GS1 DataBar, any variant (`]e0`).
    Gs1DataBar,
    /// GS1 DataMatrix (`]d2`).
    Gs1DataMatrix,
    /// GS1 QR Code (`]Q3`).
    Gs1Qr,
    /// Code 128 without FNC1 (`]C0`).
    Code128,
    /// Code 39 (`]A0`..).
    Code39,
    /// QR Code (`]Q1`).
    QrCode,
    /// Data Matrix (`]d1`).
    DataMatrix,
    /// No AIM identifier and nothing in the content names the symbology.
    Unknown,
    /// An AIM identifier this decoder does not name.
    Other,
}

/// How the data after an AIM identifier is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// EAN/UPC digits (`]E0`); `add_on` when `]E3`.
    EanUpc {
        /// `]E3`: main symbol followed by a 2- or 5-digit add-on.
        add_on: bool,
    },
    /// `]E4`: EAN-8.
    Ean8,
    /// `]E1`/`]E2`: an add-on read alone, which is no product.
    AddOnOnly,
    /// ITF.
    Itf,
    /// A GS1 element string (FNC1 in first position).
    Gs1,
    /// Anything else: the content decides.
    Free,
}

/// An AIM symbology identifier, `]` + code character + modifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AimId {
    code: u8,
    modifier: u8,
}

impl AimId {
    /// Splits an AIM identifier off the start of `line`, if one is there.
    pub fn split(line: &[u8]) -> Option<(AimId, &[u8])> {
        match line {
            [b']', code, modifier, rest @ ..]
                if code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
            {
                Some((
                    AimId {
                        code: *code,
                        modifier: *modifier,
                    },
                    rest,
                ))
            }
            _ => None,
        }
    }

    /// The symbology this identifier names.
    pub fn symbology(&self) -> Symbology {
        match (self.code, self.modifier) {
            (b'E', b'4') => Symbology::Ean8,
            (b'E', _) => Symbology::Ean13,
            (b'I', _) => Symbology::Itf14,
            (b'C', b'1') => Symbology::Gs1128,
            (b'C', _) => Symbology::Code128,
            (b'e', _) => Symbology::Gs1DataBar,
            (b'd', b'2' | b'5') => Symbology::Gs1DataMatrix,
            (b'd', _) => Symbology::DataMatrix,
            (b'Q', b'3' | b'4') => Symbology::Gs1Qr,
            (b'Q', _) => Symbology::QrCode,
            (b'A', _) => Symbology::Code39,
            _ => Symbology::Other,
        }
    }

    pub(crate) fn payload(&self) -> Payload {
        match (self.code, self.modifier) {
            (b'E', b'0') => Payload::EanUpc { add_on: false },
            (b'E', b'3') => Payload::EanUpc { add_on: true },
            (b'E', b'4') => Payload::Ean8,
            (b'E', _) => Payload::AddOnOnly,
            (b'I', _) => Payload::Itf,
            (b'C', b'1') | (b'e', _) | (b'd', b'2' | b'5') | (b'Q', b'3' | b'4') => Payload::Gs1,
            _ => Payload::Free,
        }
    }
}

impl fmt::Display for AimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "]{}{}", char::from(self.code), char::from(self.modifier))
    }
}

impl fmt::Debug for AimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AimId({self})")
    }
}

impl Serialize for AimId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_name() {
        let (aim, rest) = AimId::split(b"]E04006381333931").expect("aim");
        assert_eq!(
            (aim.to_string().as_str(), rest),
            ("]E0", &b"4006381333931"[..])
        );
        assert_eq!(aim.symbology(), Symbology::Ean13);
        assert_eq!(
            AimId::split(b"]C1").map(|(a, _)| a.payload()),
            Some(Payload::Gs1)
        );
        assert_eq!(
            AimId::split(b"]e0").map(|(a, _)| a.symbology()),
            Some(Symbology::Gs1DataBar)
        );
        assert_eq!(
            AimId::split(b"]Q1").map(|(a, _)| a.payload()),
            Some(Payload::Free)
        );
        assert_eq!(
            AimId::split(b"]d2").map(|(a, _)| a.symbology()),
            Some(Symbology::Gs1DataMatrix)
        );
        assert_eq!(
            AimId::split(b"]I1").map(|(a, _)| a.payload()),
            Some(Payload::Itf)
        );
        assert!(AimId::split(b"]E").is_none());
        assert!(AimId::split(b"]\x00\x00").is_none());
        assert!(AimId::split(b"E04006381333931").is_none());
    }
}
