//! The versioned streams as the backend holds them per cart (the catalog,
//! the deny-list), built from what it published, so that a cart's
//! `resync_request` is answered with the stream whole at its newest version.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use store_and_forward::Timestamp;
use store_and_forward::wire::down::{CatalogDelta, CatalogItem, DenyListUpdate};
use store_and_forward::wire::up::ResyncRequest;
use store_and_forward::wire::{Kind, encode};

/// The streams of every cart.
#[derive(Default)]
pub(crate) struct Streams {
    catalogs: HashMap<String, (u64, BTreeMap<String, CatalogItem>)>,
    deny_lists: HashMap<String, (u64, BTreeSet<Vec<u8>>)>,
    /// Resync requests received, in order.
    pub(crate) resyncs: Vec<(String, ResyncRequest)>,
}

impl Streams {
    /// A catalog delta (or whole catalog) published to `cart`.
    pub(crate) fn catalog(&mut self, cart: &str, d: &CatalogDelta) {
        let (version, items) = self.catalogs.entry(cart.to_owned()).or_default();
        if d.base_version.is_none() {
            items.clear();
        }
        for item in &d.upserts {
            items.insert(item.gtin.clone(), item.clone());
        }
        for gtin in &d.removals {
            items.remove(gtin);
        }
        *version = (*version).max(d.version);
    }

    /// A deny-list update published to `cart`.
    pub(crate) fn deny_list(&mut self, cart: &str, u: &DenyListUpdate) {
        let (version, list) = self.deny_lists.entry(cart.to_owned()).or_default();
        if u.replace {
            list.clear();
        }
        for f in &u.remove {
            list.remove(f);
        }
        list.extend(u.add.iter().cloned());
        *version = (*version).max(u.version);
    }

    /// The answer to a resync request: the stream whole at its newest
    /// version, as (kind, envelope payload); `None` for a stream the
    /// backend never published to this cart.
    pub(crate) fn whole(&self, cart: &str, of: Kind) -> Option<(Kind, Vec<u8>)> {
        let now = Timestamp::now();
        match of {
            Kind::CatalogDelta => {
                let (version, items) = self.catalogs.get(cart)?;
                let body = CatalogDelta {
                    version: *version,
                    base_version: None,
                    upserts: items.values().cloned().collect(),
                    removals: Vec::new(),
                };
                Some((of, encode(of, cart, &version.to_string(), now, &body)))
            }
            Kind::DenyListUpdate => {
                let (version, list) = self.deny_lists.get(cart)?;
                let body = DenyListUpdate {
                    version: *version,
                    base_version: None,
                    replace: true,
                    add: list.iter().cloned().collect(),
                    remove: Vec::new(),
                };
                Some((of, encode(of, cart, &version.to_string(), now, &body)))
            }
            _ => None,
        }
    }
}
