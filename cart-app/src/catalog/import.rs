//! The catalog's CSV import: RFC 4180 (fields may be quoted, so a name can
//! hold a comma or a quote), columns found by the header's names, every
//! field checked (a GTIN's check digit, the store's currency); the first
//! problem is reported with its line and column and nothing is imported.

use std::collections::HashMap;

use hal::scanner::{Gtin, RejectReason};
use store_and_forward::{Currency, Money};

use super::{CatalogError, Item};

/// The columns, in the order the header usually lists them; the last two
/// may be left out (no age limit; sold by the piece).
const COLUMNS: [&str; 7] = [
    "gtin",
    "name",
    "price_minor",
    "currency",
    "tax_class",
    "min_age",
    "sold_by_weight",
];
const REQUIRED: usize = 5;

/// Parses the whole file; `store` is the store's currency (every price must
/// be in it), `None` to accept any ISO 4217 currency.
pub(super) fn parse(text: &str, store: Option<Currency>) -> Result<Vec<Item>, CatalogError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| syntax(&e))?.clone();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let Some(known) = COLUMNS.iter().find(|c| **c == name) else {
            return Err(CatalogError::BadLine {
                line: 1,
                problem: format!(
                    "column {} {name:?} is not one of {}",
                    i + 1,
                    COLUMNS.join(",")
                ),
            });
        };
        if at.insert(known, i).is_some() {
            return Err(CatalogError::BadLine {
                line: 1,
                problem: format!("column {} {name:?} appears twice", i + 1),
            });
        }
    }
    if let Some(missing) = COLUMNS[..REQUIRED].iter().find(|c| !at.contains_key(*c)) {
        return Err(CatalogError::BadLine {
            line: 1,
            problem: format!("the header has no {missing:?} column"),
        });
    }
    let mut items = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| syntax(&e))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |name: &'static str| {
            at.get(name)
                .and_then(|&i| record.get(i).map(|v| (i + 1, v)))
        };
        let bad = |name: &'static str, problem: String| CatalogError::BadField {
            line,
            column: field(name).map_or(0, |(c, _)| c),
            name,
            problem,
        };
        let get = |name: &'static str| field(name).map_or("", |(_, v)| v);

        let gtin = Gtin::parse(get("gtin")).map_err(|e| {
            let why = match e {
                RejectReason::BadCheckDigit => "wrong check digit".to_owned(),
                e => e.to_string(),
            };
            bad("gtin", format!("{:?} is not a GTIN: {why}", get("gtin")))
        })?;
        let gtin = gtin.as_str().to_owned();
        if let Some(first) = seen.insert(gtin.clone(), line) {
            return Err(bad("gtin", format!("{gtin} is already on line {first}")));
        }
        let name = get("name");
        if name.is_empty() {
            return Err(bad("name", "empty".into()));
        }
        let price: i64 = get("price_minor").parse().map_err(|_| {
            bad(
                "price_minor",
                format!(
                    "{:?} is not a whole number of minor units",
                    get("price_minor")
                ),
            )
        })?;
        if price < 0 {
            return Err(bad("price_minor", format!("negative price {price}")));
        }
        let currency = Currency::new(get("currency"))
            .map_err(|e| bad("currency", format!("{:?}: {e}", get("currency"))))?;
        if let Some(store) = store
            && currency != store
        {
            return Err(bad(
                "currency",
                format!("{currency} is not the store's currency {store}"),
            ));
        }
        let tax_class = get("tax_class");
        if tax_class.is_empty() {
            return Err(bad("tax_class", "empty".into()));
        }
        let min_age = match get("min_age") {
            "" => None,
            v => Some(
                v.parse::<u8>()
                    .map_err(|_| bad("min_age", format!("{v:?} is not an age in years")))?,
            ),
        };
        let sold_by_weight = match get("sold_by_weight") {
            "" | "false" => false,
            "true" => true,
            other => {
                return Err(bad(
                    "sold_by_weight",
                    format!("{other:?} is not true or false"),
                ));
            }
        };
        items.push(Item {
            gtin,
            name: name.to_owned(),
            price: Money::new(price, currency),
            tax_class: tax_class.to_owned(),
            min_age,
            sold_by_weight,
        });
    }
    Ok(items)
}

/// A CSV syntax error (a stray quote, a wrong number of fields), with its
/// line.
fn syntax(e: &csv::Error) -> CatalogError {
    let line = e.position().map_or(0, |p| p.line());
    let problem = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8 text (field {})", err.field() + 1),
        _ => e.to_string(),
    };
    CatalogError::BadLine { line, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight\n";

    fn eur() -> Option<Currency> {
        Some(Currency::new("EUR").unwrap())
    }

    fn err(body: &str) -> String {
        parse(&format!("{HEADER}{body}"), eur())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn quoted_fields_keep_commas_and_quotes() {
        let items = parse(
            &format!("{HEADER}4006381333931,\"Pens, blue \"\"fine\"\"\",189,EUR,standard,,false\n"),
            eur(),
        )
        .unwrap();
        assert_eq!(items[0].name, "Pens, blue \"fine\"");
        assert_eq!(items[0].gtin, "04006381333931");
    }

    #[test]
    fn columns_by_name_and_optional_ones() {
        let items = parse(
            "name,gtin,currency,price_minor,tax_class\nMilk,96385074,EUR,99,reduced\n",
            eur(),
        )
        .unwrap();
        assert_eq!(items[0].gtin, "00000096385074");
        assert_eq!((items[0].min_age, items[0].sold_by_weight), (None, false));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err(
            "4006381333931,Ok,189,EUR,standard,,false\n4006381333932,Bad digit,1,EUR,standard,,false\n",
        );
        assert!(
            e.contains("line 3, column 1 (gtin)") && e.contains("wrong check digit"),
            "{e}"
        );
        let e = err("4006381333931,Dollars,189,USD,standard,,false\n");
        assert!(
            e.contains("line 2, column 4 (currency)") && e.contains("store's currency EUR"),
            "{e}"
        );
        let e = err("4006381333931,X,1.89,EUR,standard,,false\n");
        assert!(e.contains("line 2, column 3 (price_minor)"), "{e}");
        let e = err("4006381333931,X,189,EUR,standard,adult,false\n");
        assert!(e.contains("column 6 (min_age)"), "{e}");
        let e = err("4006381333931,X,189,EUR,standard,,yes\n");
        assert!(e.contains("column 7 (sold_by_weight)"), "{e}");
        let e = err("4006381333931,,189,EUR,standard,,false\n");
        assert!(e.contains("column 2 (name): empty"), "{e}");
        let e =
            err("4006381333931,A,1,EUR,standard,,false\n04006381333931,B,1,EUR,standard,,false\n");
        assert!(
            e.contains("line 3") && e.contains("already on line 2"),
            "{e}"
        );
        // An unquoted comma in a name: one field too many.
        let e = err("4006381333931,Pens, blue,189,EUR,standard,,false\n");
        assert!(e.contains("line 2") && e.contains("8 fields"), "{e}");
        // A typo in the header.
        let e = parse("gtin,nmae,price_minor,currency,tax_class\n", eur())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1") && e.contains("column 2 \"nmae\""),
            "{e}"
        );
        let e = parse("gtin,name,currency,tax_class\n", eur())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no \"price_minor\" column"), "{e}");
    }

    #[test]
    fn any_currency_without_a_store() {
        let items = parse(
            &format!("{HEADER}4006381333931,X,189,USD,standard,,false\n"),
            None,
        )
        .unwrap();
        assert_eq!(items[0].price.currency.as_str(), "USD");
    }
}
