//! The Application Identifiers the decoder knows, after the GS1 General
//! Specifications and the GS1 Barcode Syntax Dictionary: each AI's
//! components (character set, length, content check), whether it has a
//! predefined length (no FNC1 separator after it), and the AIs it requires
//! or excludes.

/// Character set of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cset {
    /// Digits only.
    N,
    /// GS1 AI encodable character set 82.
    X,
}

/// Content check of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lint {
    /// No check beyond the character set.
    None,
    /// The GS1 modulo-10 check digit over the component.
    Csum,
    /// YYMMDD where DD may be 00 (day not given).
    YymmD0,
    /// YYMMDD, a full date.
    Yymmdd,
    /// HHMM.
    Hhmm,
}

/// One component of an AI's data field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    pub cset: Cset,
    pub min: usize,
    pub max: usize,
    pub lint: Lint,
    /// An optional trailing part: absent, or present with `min..=max`
    /// characters (a part of fixed length is absent or exactly that long).
    pub optional: bool,
}

const fn n(len: usize) -> Part {
    Part {
        cset: Cset::N,
        min: len,
        max: len,
        lint: Lint::None,
        optional: false,
    }
}
const fn nv(max: usize) -> Part {
    Part {
        cset: Cset::N,
        min: 1,
        max,
        lint: Lint::None,
        optional: false,
    }
}
const fn csum(len: usize) -> Part {
    Part {
        cset: Cset::N,
        min: len,
        max: len,
        lint: Lint::Csum,
        optional: false,
    }
}
const fn xv(max: usize) -> Part {
    Part {
        cset: Cset::X,
        min: 1,
        max,
        lint: Lint::None,
        optional: false,
    }
}
const fn opt(p: Part) -> Part {
    Part {
        optional: true,
        ..p
    }
}
const D0: Part = Part {
    cset: Cset::N,
    min: 6,
    max: 6,
    lint: Lint::YymmD0,
    optional: false,
};
const DATE: Part = Part {
    cset: Cset::N,
    min: 6,
    max: 6,
    lint: Lint::Yymmdd,
    optional: false,
};
const HHMM: Part = Part {
    cset: Cset::N,
    min: 4,
    max: 4,
    lint: Lint::Hhmm,
    optional: false,
};

/// What the value means, for the typed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Plain text or digits.
    Plain,
    /// A GTIN (01, 02).
    Gtin,
    /// A date (11 to 17).
    Date,
    /// A number with the implied decimal point given by the AI's last digit.
    Decimal,
    /// An ISO 4217 currency code then a number with implied decimals.
    Currency,
}

/// One AI or one family of AIs (`family` set: the 4th digit, 0 to `family`,
/// is the implied decimal position or a sequence number).
#[derive(Debug)]
pub(crate) struct AiDef {
    pub ai: &'static str,
    pub family: Option<u8>,
    /// Predefined length: never followed by an FNC1 separator.
    pub fixed: bool,
    pub parts: &'static [Part],
    pub meaning: Meaning,
    /// Each entry is one group of alternatives; every group must be
    /// satisfied by at least one AI present.
    pub req: &'static [&'static [&'static str]],
    /// Patterns of AIs that may not appear with this one (`n` = any digit).
    pub ex: &'static [&'static str],
    pub title: &'static str,
}

const TRADE: &[&[&str]] = &[&["01", "02", "8006", "8026"]];
const GTIN_ONLY: &[&[&str]] = &[&["01"]];
const GTIN_OR_CONTENT: &[&[&str]] = &[&["01", "02"]];
const LOGISTIC: &[&[&str]] = &[&["00", "01"]];
const MEASURE: &[&str] = &["30", "31nn", "32nn", "35nn", "36nn"];

macro_rules! ai {
    ($ai:literal, $fixed:literal, [$($p:expr),*], $m:ident, req $req:expr, ex [$($ex:literal),*], $t:literal) => {
        AiDef { ai: $ai, family: None, fixed: $fixed, parts: &[$($p),*], meaning: Meaning::$m,
                req: $req, ex: &[$($ex),*], title: $t }
    };
    ($ai:literal / $fam:literal, $fixed:literal, [$($p:expr),*], $m:ident, req $req:expr, ex [$($ex:literal),*], $t:literal) => {
        AiDef { ai: $ai, family: Some($fam), fixed: $fixed, parts: &[$($p),*], meaning: Meaning::$m,
                req: $req, ex: &[$($ex),*], title: $t }
    };
}

/// The AIs the decoder accepts; any other AI is rejected as unknown.
pub(crate) static AIS: &[AiDef] = &[
    ai!("00", true, [csum(18)], Plain, req &[], ex [], "SSCC"),
    ai!("01", true, [csum(14)], Gtin, req &[], ex ["02", "255", "37"], "GTIN"),
    ai!("02", true, [csum(14)], Gtin, req &[&["37"]], ex [], "CONTENT"),
    ai!("10", false, [xv(20)], Plain, req TRADE, ex [], "BATCH/LOT"),
    ai!("11", true, [D0], Date, req TRADE, ex [], "PROD DATE"),
    ai!("12", true, [D0], Date, req &[&["8020"]], ex [], "DUE DATE"),
    ai!("13", true, [D0], Date, req TRADE, ex [], "PACK DATE"),
    ai!("15", true, [D0], Date, req TRADE, ex [], "BEST BEFORE"),
    ai!("16", true, [D0], Date, req TRADE, ex [], "SELL BY"),
    ai!("17", true, [D0], Date, req &[&["01", "02", "255", "8006", "8026"]], ex [], "USE BY"),
    ai!("20", true, [n(2)], Plain, req TRADE, ex [], "VARIANT"),
    ai!(
        "21",
        false,
        [xv(20)],
        Plain,
        req & [&["01", "8006"]],
        ex["235"],
        "SERIAL"
    ),
    ai!("22", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "CPV"),
    ai!("235", false, [xv(28)], Plain, req GTIN_ONLY, ex [], "TPX"),
    ai!("240", false, [xv(30)], Plain, req TRADE, ex [], "ADDITIONAL ID"),
    ai!("241", false, [xv(30)], Plain, req TRADE, ex [], "CUST. PART No."),
    ai!("242", false, [nv(6)], Plain, req TRADE, ex [], "MTO VARIANT"),
    ai!("243", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "PCN"),
    ai!("250", false, [xv(30)], Plain, req &[&["01", "8006"], &["21"]], ex [], "SECONDARY SERIAL"),
    ai!("251", false, [xv(30)], Plain, req &[&["01", "8006"]], ex [], "REF. TO SOURCE"),
    ai!("253", false, [csum(13), opt(xv(17))], Plain, req &[], ex [], "GDTI"),
    ai!("254", false, [xv(20)], Plain, req &[&["414"]], ex [], "GLN EXTENSION"),
    ai!("255", false, [csum(13), opt(nv(12))], Plain, req &[], ex ["01", "02", "415", "8006", "8020", "8026"], "GCN"),
    ai!("30", false, [nv(8)], Plain, req GTIN_OR_CONTENT, ex [], "VAR. COUNT"),
    ai!("310" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["310n"], "NET WEIGHT (kg)"),
    ai!("311" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["311n"], "LENGTH (m)"),
    ai!("312" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["312n"], "WIDTH (m)"),
    ai!("313" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["313n"], "HEIGHT (m)"),
    ai!("314" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["314n"], "AREA (m2)"),
    ai!("315" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["315n"], "NET VOLUME (l)"),
    ai!("316" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["316n"], "NET VOLUME (m3)"),
    ai!("320" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["320n"], "NET WEIGHT (lb)"),
    ai!("330" / 5, true, [n(6)], Decimal, req LOGISTIC, ex ["330n"], "GROSS WEIGHT (kg)"),
    ai!("340" / 5, true, [n(6)], Decimal, req LOGISTIC, ex ["340n"], "GROSS WEIGHT (lb)"),
    ai!("356" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["356n"], "NET WEIGHT (t oz)"),
    ai!("357" / 5, true, [n(6)], Decimal, req GTIN_OR_CONTENT, ex ["357n"], "NET VOLUME (oz)"),
    ai!("37", false, [nv(8)], Plain, req &[&["00"], &["02", "8026"]], ex [], "COUNT"),
    ai!("390" / 9, false, [nv(15)], Decimal, req &[&["255", "8020"]], ex ["390n", "391n", "394n", "8111"], "AMOUNT"),
    ai!(
        "391" / 9,
        false,
        [n(3), nv(15)],
        Currency,
        req & [&["8020"]],
        ex["391n"],
        "AMOUNT"
    ),
    ai!("392" / 9, false, [nv(15)], Decimal, req &[&["01"], MEASURE], ex ["392n", "393n"], "PRICE"),
    ai!(
        "393" / 9,
        false,
        [n(3), nv(15)],
        Currency,
        req & [MEASURE],
        ex["393n"],
        "PRICE"
    ),
    ai!("394" / 3, false, [n(4)], Decimal, req &[&["255"]], ex ["394n", "8111"], "PRCNT OFF"),
    ai!("395" / 5, false, [n(6)], Decimal, req &[MEASURE], ex ["392n", "393n", "395n", "8005"], "PRICE/UoM"),
    ai!("400", false, [xv(30)], Plain, req &[], ex [], "ORDER NUMBER"),
    ai!("401", false, [xv(30)], Plain, req &[], ex [], "GINC"),
    ai!("402", false, [csum(17)], Plain, req &[], ex [], "GSIN"),
    ai!("403", false, [xv(30)], Plain, req &[&["00"]], ex [], "ROUTE"),
    ai!("410", true, [csum(13)], Plain, req &[], ex [], "SHIP TO LOC"),
    ai!("411", true, [csum(13)], Plain, req &[], ex [], "BILL TO"),
    ai!("412", true, [csum(13)], Plain, req &[], ex [], "PURCHASE FROM"),
    ai!("413", true, [csum(13)], Plain, req &[], ex [], "SHIP FOR LOC"),
    ai!("414", true, [csum(13)], Plain, req &[], ex [], "LOC No."),
    ai!("415", true, [csum(13)], Plain, req &[&["8020"]], ex [], "PAY TO"),
    ai!("416", true, [csum(13)], Plain, req &[], ex [], "PROD/SERV LOC"),
    ai!("417", true, [csum(13)], Plain, req &[], ex [], "PARTY"),
    ai!(
        "420",
        false,
        [xv(20)],
        Plain,
        req & [],
        ex["421"],
        "SHIP TO POST"
    ),
    ai!("421", false, [n(3), xv(9)], Plain, req &[], ex [], "SHIP TO POST"),
    ai!("422", false, [n(3)], Plain, req TRADE, ex ["426"], "ORIGIN"),
    ai!("423", false, [Part { min: 3, ..nv(15) }], Plain, req GTIN_OR_CONTENT, ex ["426"], "COUNTRY - INITIAL PROCESS"),
    ai!("424", false, [n(3)], Plain, req GTIN_OR_CONTENT, ex ["426"], "COUNTRY - PROCESS"),
    ai!("425", false, [Part { min: 3, ..nv(15) }], Plain, req GTIN_OR_CONTENT, ex ["426"], "COUNTRY - DISASSEMBLY"),
    ai!("426", false, [n(3)], Plain, req GTIN_OR_CONTENT, ex [], "COUNTRY - FULL PROCESS"),
    ai!("427", false, [xv(3)], Plain, req &[&["01", "02"], &["422"]], ex [], "ORIGIN SUBDIVISION"),
    ai!("7001", false, [n(13)], Plain, req TRADE, ex [], "NSN"),
    ai!("7002", false, [xv(30)], Plain, req GTIN_OR_CONTENT, ex [], "MEAT CUT"),
    ai!("7003", false, [DATE, HHMM], Plain, req GTIN_OR_CONTENT, ex [], "EXPIRY TIME"),
    ai!("7004", false, [nv(4)], Plain, req &[&["01"], &["10"]], ex [], "ACTIVE POTENCY"),
    ai!("7005", false, [xv(12)], Plain, req GTIN_OR_CONTENT, ex [], "CATCH AREA"),
    ai!("7006", false, [DATE], Date, req GTIN_OR_CONTENT, ex [], "FIRST FREEZE DATE"),
    ai!("7007", false, [DATE, opt(DATE)], Plain, req GTIN_OR_CONTENT, ex [], "HARVEST DATE"),
    ai!("7008", false, [xv(3)], Plain, req GTIN_OR_CONTENT, ex [], "AQUATIC SPECIES"),
    ai!("7009", false, [xv(10)], Plain, req GTIN_OR_CONTENT, ex [], "FISHING GEAR TYPE"),
    ai!("7010", false, [xv(2)], Plain, req GTIN_OR_CONTENT, ex [], "PROD METHOD"),
    ai!("7011", false, [DATE, opt(HHMM)], Plain, req GTIN_OR_CONTENT, ex [], "TEST BY DATE"),
    ai!("7020", false, [xv(20)], Plain, req &[&["01", "8006"], &["416"]], ex [], "REFURB LOT"),
    ai!("7021", false, [xv(20)], Plain, req &[&["01", "8006"]], ex [], "FUNC STAT"),
    ai!("7022", false, [xv(20)], Plain, req &[&["7021"]], ex [], "REV STAT"),
    ai!("7023", false, [xv(30)], Plain, req &[], ex [], "GIAI - ASSEMBLY"),
    ai!("710", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "NHRN PZN"),
    ai!("711", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "NHRN CIP"),
    ai!("712", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "NHRN CN"),
    ai!("713", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "NHRN DRN"),
    ai!("714", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "NHRN AIM"),
    ai!("715", false, [xv(20)], Plain, req GTIN_ONLY, ex [], "NHRN NDC"),
    ai!("7240", false, [xv(20)], Plain, req &[&["01", "8006"]], ex [], "PROTOCOL"),
    ai!("8001", false, [n(14)], Plain, req GTIN_ONLY, ex [], "DIMENSIONS"),
    ai!("8002", false, [xv(20)], Plain, req &[], ex [], "CMT No."),
    ai!("8003", false, [n(1), csum(13), opt(xv(16))], Plain, req &[], ex [], "GRAI"),
    ai!("8004", false, [xv(30)], Plain, req &[], ex [], "GIAI"),
    ai!("8005", false, [n(6)], Plain, req GTIN_OR_CONTENT, ex [], "PRICE PER UNIT"),
    ai!("8006", false, [csum(14), n(4)], Plain, req &[], ex ["01", "37"], "ITIP"),
    ai!("8008", false, [n(8), opt(nv(4))], Plain, req GTIN_OR_CONTENT, ex [], "PROD TIME"),
    ai!("8007", false, [xv(34)], Plain, req &[&["415"]], ex [], "IBAN"),
    ai!("8009", false, [xv(50)], Plain, req LOGISTIC, ex [], "OPTSEN"),
    ai!("8012", false, [xv(20)], Plain, req &[&["01", "8006"]], ex [], "VERSION"),
    ai!("8013", false, [xv(25)], Plain, req &[], ex [], "GMN"),
    ai!(
        "8017",
        false,
        [csum(18)],
        Plain,
        req & [],
        ex["8018"],
        "GSRN - PROVIDER"
    ),
    ai!(
        "8018",
        false,
        [csum(18)],
        Plain,
        req & [],
        ex["8017"],
        "GSRN - RECIPIENT"
    ),
    ai!("8019", false, [nv(10)], Plain, req &[&["8017", "8018"]], ex [], "SRIN"),
    ai!("8020", false, [xv(25)], Plain, req &[&["415"]], ex [], "REF No."),
    ai!("8026", false, [csum(14), n(4)], Plain, req &[&["37"]], ex ["02", "8006"], "ITIP CONTENT"),
    ai!("8111", false, [n(4)], Plain, req &[&["255"]], ex [], "POINTS"),
    ai!("8200", false, [xv(70)], Plain, req GTIN_ONLY, ex [], "PRODUCT URL"),
    ai!("90", false, [xv(30)], Plain, req &[], ex [], "INTERNAL"),
    ai!("91", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("92", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("93", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("94", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("95", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("96", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("97", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("98", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
    ai!("99", false, [xv(90)], Plain, req &[], ex [], "INTERNAL"),
];

/// The length of the AI (2 to 4 digits) at the start of `data` and its
/// definition, if known.
pub(crate) fn lookup(data: &[u8]) -> Option<(usize, &'static AiDef)> {
    AIS.iter().find_map(|def| {
        let base = def.ai.as_bytes();
        if !data.starts_with(base) {
            return None;
        }
        match def.family {
            None => Some((base.len(), def)),
            Some(max) => {
                let d = *data.get(base.len())?;
                (d.is_ascii_digit() && d - b'0' <= max).then_some((base.len() + 1, def))
            }
        }
    })
}

/// Whether `ai` matches `pattern`, where `n` in the pattern stands for any
/// digit.
pub(crate) fn matches(pattern: &str, ai: &str) -> bool {
    pattern.len() == ai.len()
        && pattern
            .bytes()
            .zip(ai.bytes())
            .all(|(p, a)| p == a || (p == b'n' && a.is_ascii_digit()))
}

/// Whether `b` belongs to the GS1 AI encodable character set 82.
pub(crate) fn is_cset82(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!\"%&'()*+,-./:;<=>?_".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_prefix_free() {
        // Two definitions where one AI is a prefix of the other would make
        // parsing ambiguous.
        for a in AIS {
            for b in AIS {
                if !std::ptr::eq(a, b) {
                    assert!(
                        !(b.ai.starts_with(a.ai) && a.family.is_none()),
                        "{} is a prefix of {}",
                        a.ai,
                        b.ai
                    );
                }
            }
        }
    }

    #[test]
    fn lookup_finds_families() {
        let (len, def) = lookup(b"3103000750").expect("known AI");
        assert_eq!((len, def.ai), (4, "310"));
        assert!(lookup(b"3106000750").is_none());
        assert!(lookup(b"0").is_none());
        assert!(matches("31nn", "3103"));
        assert!(!matches("31nn", "320"));
    }
}
