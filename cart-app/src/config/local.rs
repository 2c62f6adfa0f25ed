//! The cart's own settings file (`local_settings`): read after the main
//! file, it overrides it key by key (a deep merge of TOML tables). On a cart
//! the main file is the image's `/etc/cart/cart.toml` (replaced by every
//! update) and the local one sits on the data partition (written at
//! manufacturing, kept across updates). A local file written for another
//! release may name keys this build does not know: the daemon ignores them
//! with a warning instead of refusing to start (exit 78 is never restarted);
//! `cart-app check-config` still rejects them.

use toml::{Table, Value};

use super::{Config, ConfigError};

/// What reading the layers noticed; logged once logging runs
/// ([`super::Loaded::log_notes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerNote {
    /// The local file was read and applied over the main file.
    LocalApplied {
        /// The local file.
        path: String,
    },
    /// `local_settings` names a file that does not exist: the main file
    /// applies alone (a cart before manufacturing, a development machine).
    LocalMissing {
        /// The local file.
        path: String,
    },
    /// The local file cannot be read by this user (cartctl run by a
    /// technician): the main file applies alone.
    LocalUnreadable {
        /// The local file.
        path: String,
    },
    /// A key of the local file this build does not know (written for
    /// another release): ignored.
    UnknownLocalKey {
        /// The local file.
        path: String,
        /// The key, dotted (`offline.some_new_key`).
        key: String,
    },
}

impl LayerNote {
    /// Logs the note: unknown keys at WARN, the rest at INFO.
    pub fn log(&self) {
        match self {
            LayerNote::LocalApplied { path } => {
                tracing::info!(path = %path, "cart's own settings applied")
            }
            LayerNote::LocalMissing { path } => tracing::info!(
                path = %path,
                "cart's own settings file missing: image defaults only"
            ),
            LayerNote::LocalUnreadable { path } => tracing::info!(
                path = %path,
                "cart's own settings file not readable by this user: image defaults only"
            ),
            LayerNote::UnknownLocalKey { path, key } => tracing::warn!(
                path = %path,
                key = %key,
                "unknown key in the cart's own settings ignored (written for another release?)"
            ),
        }
    }
}

/// Merges `over` into `base`: tables merge key by key, any other value of
/// `over` replaces the one in `base` (arrays too: a local list is the list).
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Deserializes `main` with `local` merged over it. `main` alone is known
/// to be valid, so a failure lies in a key of `local`: an unknown key is
/// removed from `local` and noted (unless `strict`), then the merge is
/// retried; anything else is an error naming the local file and the key.
pub fn apply(
    main: &Table,
    mut local: Table,
    local_origin: &str,
    strict: bool,
    notes: &mut Vec<LayerNote>,
) -> Result<Config, ConfigError> {
    loop {
        let mut merged = main.clone();
        merge(&mut merged, local.clone());
        let err = match serde_path_to_error::deserialize::<_, Config>(Value::Table(merged)) {
            Ok(config) => return Ok(config),
            Err(e) => e,
        };
        let mut key: Vec<String> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let message = err.into_inner().to_string();
        if let Some(field) = unknown_field(&message) {
            if key.last().map(String::as_str) != Some(field) {
                key.push(field.to_owned());
            }
            if !strict && remove(&mut local, &key) {
                notes.push(LayerNote::UnknownLocalKey {
                    path: local_origin.to_owned(),
                    key: key.join("."),
                });
                continue;
            }
        }
        return Err(ConfigError::Local {
            path: local_origin.to_owned(),
            key: key.join("."),
            message: message.trim().to_owned(),
        });
    }
}

/// The field an "unknown field `x`, expected ..." error names (serde's
/// wording for `deny_unknown_fields`).
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

/// Removes the dotted key from `table`; false if it is not there.
fn remove(table: &mut Table, key: &[String]) -> bool {
    match key {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => match table.get_mut(first) {
            Some(Value::Table(t)) => remove(t, rest),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn merge_is_deep_and_the_local_value_wins() {
        let mut base = table("a = 1\n[t]\nx = 1\ny = [1, 2]\n[t.u]\nz = 1\n");
        merge(
            &mut base,
            table("b = 2\n[t]\ny = [3]\n[t.u]\nw = 2\n[v]\nq = 1\n"),
        );
        assert_eq!(
            base,
            table("a = 1\nb = 2\n[t]\nx = 1\ny = [3]\n[t.u]\nz = 1\nw = 2\n[v]\nq = 1\n")
        );
    }

    #[test]
    fn unknown_keys_of_the_local_file_are_dropped_and_noted() {
        let main = table("cart_id = \"cart-main\"\n");
        let local = table(
            "cart_id = \"cart-0042\"\nfuture_top = 1\n[offline]\nmax_outstanding_count = 7\nfuture_limit = 3\n[future_table]\nx = 1\n",
        );
        let mut notes = Vec::new();
        let config = apply(&main, local, "local.toml", false, &mut notes).unwrap();
        assert_eq!(config.cart_id, "cart-0042");
        assert_eq!(config.offline.max_outstanding_count, 7);
        let mut keys: Vec<_> = notes
            .iter()
            .map(|n| match n {
                LayerNote::UnknownLocalKey { key, path } => {
                    assert_eq!(path, "local.toml");
                    key.clone()
                }
                other => panic!("unexpected note {other:?}"),
            })
            .collect();
        keys.sort();
        assert_eq!(keys, ["future_table", "future_top", "offline.future_limit"]);
    }

    #[test]
    fn strict_mode_rejects_the_unknown_local_key_by_name() {
        let local = table("[offline]\nfuture_limit = 3\n");
        let e = apply(&Table::new(), local, "local.toml", true, &mut Vec::new()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("local.toml") && text.contains("offline.future_limit"),
            "{text}"
        );
    }

    #[test]
    fn a_known_key_of_the_wrong_type_is_an_error_naming_it() {
        let local = table("[offline]\nmax_outstanding_count = \"many\"\n");
        let e = apply(&Table::new(), local, "local.toml", false, &mut Vec::new()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("local.toml") && text.contains("offline.max_outstanding_count"),
            "{text}"
        );
    }
}
