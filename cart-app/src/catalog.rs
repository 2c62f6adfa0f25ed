//! The catalog on the cart: items by GTIN-14 in a small SQLite file,
//! updated by the backend's versioned deltas and importable from CSV for a
//! fresh cart.
//!
//! CSV columns (header required, found by name): `gtin,name,price_minor,
//! currency,tax_class,min_age,sold_by_weight`; fields may be quoted (RFC
//! 4180: a comma or `""` inside quotes); `min_age` may be empty;
//! `sold_by_weight` is `true`/`false` (price per kilogram when true); the
//! last two columns may be left out. GTINs must carry a right check digit
//! and prices the store's currency; an error names the line and column and
//! nothing is imported (see [`import`]).

pub mod import;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use store_and_forward::wire::down::{CatalogDelta, CatalogItem};
use store_and_forward::{Currency, Money};

/// A catalog failure. The daemon keeps selling what it can look up and
/// reports the error; an import or a delta is applied whole or not at all.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed.
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A CSV line is not CSV or the header is wrong (the import is
    /// refused whole).
    #[error("catalog import line {line}: {problem}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A field is not valid (the import is refused whole).
    #[error("catalog import line {line}, column {column} ({name}): {problem}")]
    BadField {
        /// 1-based line number.
        line: u64,
        /// 1-based column number.
        column: usize,
        /// The column's name.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The store's currency (`store.currency`) is not ISO 4217: nothing
    /// can be checked against it.
    #[error("store.currency: {0}")]
    StoreCurrency(String),
    /// A delta that does not apply on this catalog's version.
    #[error("catalog delta {version} is based on {base}, the cart has {have}")]
    BaseMismatch {
        /// The delta's version.
        version: u64,
        /// Its base.
        base: u64,
        /// The cart's version.
        have: u64,
    },
}

/// What an item costs and how it is sold.
pub type Item = CatalogItem;

/// The catalog.
pub struct Catalog {
    conn: Connection,
}

impl Catalog {
    /// Opens (or creates) the catalog file.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS items (
                 gtin TEXT PRIMARY KEY, name TEXT NOT NULL, price_minor INTEGER NOT NULL,
                 currency TEXT NOT NULL, tax_class TEXT NOT NULL, min_age INTEGER,
                 sold_by_weight INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
        )?;
        Ok(Catalog { conn })
    }

    /// The catalog's version (0 for a fresh cart).
    pub fn version(&self) -> Result<u64, CatalogError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64)
    }

    /// Looks an item up by its GTIN-14.
    pub fn get(&self, gtin: &str) -> Result<Option<Item>, CatalogError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT gtin, name, price_minor, currency, tax_class, min_age, sold_by_weight
                 FROM items WHERE gtin = ?1",
            )?
            .query_row([gtin], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            })
            .optional()?;
        Ok(
            row.and_then(|(gtin, name, price, cur, tax_class, min_age, by_weight)| {
                Some(Item {
                    gtin,
                    name,
                    price: Money::new(price, Currency::new(&cur).ok()?),
                    tax_class,
                    min_age: min_age.and_then(|a| u8::try_from(a).ok()),
                    sold_by_weight: by_weight,
                })
            }),
        )
    }

    fn upsert(tx: &Connection, item: &Item) -> Result<(), CatalogError> {
        tx.prepare_cached(
            "INSERT INTO items (gtin, name, price_minor, currency, tax_class, min_age, sold_by_weight)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (gtin) DO UPDATE SET name = excluded.name, price_minor = excluded.price_minor,
                 currency = excluded.currency, tax_class = excluded.tax_class,
                 min_age = excluded.min_age, sold_by_weight = excluded.sold_by_weight",
        )?
        .execute(params![
            item.gtin,
            item.name,
            item.price.minor,
            item.price.currency.as_str(),
            item.tax_class,
            item.min_age,
            item.sold_by_weight
        ])?;
        Ok(())
    }

    /// Applies a backend delta (versioned: an older or equal version is
    /// ignored, returning `false`; a full catalog has no base version).
    pub fn apply(&mut self, delta: &CatalogDelta) -> Result<bool, CatalogError> {
        let have = self.version()?;
        if delta.version <= have {
            return Ok(false);
        }
        if let Some(base) = delta.base_version
            && base != have
        {
            return Err(CatalogError::BaseMismatch {
                version: delta.version,
                base,
                have,
            });
        }
        let tx = self.conn.transaction()?;
        if delta.base_version.is_none() {
            tx.execute("DELETE FROM items", [])?;
        }
        for item in &delta.upserts {
            Self::upsert(&tx, item)?;
        }
        for gtin in &delta.removals {
            tx.execute("DELETE FROM items WHERE gtin = ?1", [gtin])?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [delta.version as i64],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Imports items from CSV text (all or nothing), in any currency
    /// (tests, the demo). Returns the count.
    pub fn import_csv(&mut self, text: &str) -> Result<usize, CatalogError> {
        self.store(&import::parse(text, None)?)
    }

    /// Imports items from CSV text (all or nothing), every price in the
    /// store's `currency`. Returns the count.
    pub fn import_csv_in(&mut self, text: &str, currency: Currency) -> Result<usize, CatalogError> {
        self.store(&import::parse(text, Some(currency))?)
    }

    fn store(&mut self, items: &[Item]) -> Result<usize, CatalogError> {
        let tx = self.conn.transaction()?;
        for item in items {
            Self::upsert(&tx, item)?;
        }
        tx.commit()?;
        Ok(items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight
4006381333931,Highlighter,189,EUR,standard,,false
2012340000006,Gouda per kg,1490,EUR,reduced,,true
5000267024202,Whisky 70 cl,2999,EUR,standard,18,false
";

    #[test]
    fn import_lookup_and_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        assert_eq!(c.import_csv(CSV).unwrap(), 3);
        let w = c.get("05000267024202").unwrap().unwrap();
        assert_eq!(w.min_age, Some(18));
        assert!(c.get("02012340000006").unwrap().unwrap().sold_by_weight);
        let eur = Currency::new("EUR").unwrap();
        let delta = CatalogDelta {
            version: 2,
            base_version: Some(0),
            upserts: vec![Item {
                gtin: "04006381333931".into(),
                name: "Highlighter yellow".into(),
                price: Money::new(199, eur),
                tax_class: "standard".into(),
                min_age: None,
                sold_by_weight: false,
            }],
            removals: vec!["05000267024202".into()],
        };
        assert!(c.apply(&delta).unwrap());
        assert!(!c.apply(&delta).unwrap(), "a replay changes nothing");
        assert_eq!(c.get("04006381333931").unwrap().unwrap().price.minor, 199);
        assert!(c.get("05000267024202").unwrap().is_none());
        let stale = CatalogDelta {
            version: 4,
            base_version: Some(3),
            ..delta
        };
        assert!(matches!(
            c.apply(&stale),
            Err(CatalogError::BaseMismatch { .. })
        ));
    }

    #[test]
    fn bad_csv_is_refused_whole_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        let bad = format!("{CSV}4006381333948,Broken,abc,EUR,standard,,false\n");
        let err = c.import_csv(&bad).unwrap_err().to_string();
        assert!(err.contains("line 5, column 3 (price_minor)"), "{err}");
        assert!(
            c.get("04006381333931").unwrap().is_none(),
            "nothing imported"
        );
    }
}
