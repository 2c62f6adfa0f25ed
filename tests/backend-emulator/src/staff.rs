//! The staff lists the backend keeps per cart and publishes for age checks.
//!
//! The backend knows the badge codes; the cart gets only their hashes under
//! a fresh random salt per version (`store_and_forward::staff`). The
//! emulator remembers each version's salt so it can tell which badge a sale
//! recorded ([`Emulator::staff_badge_of`]).

use std::collections::HashMap;

use rand::RngCore;
use store_and_forward::Timestamp;
use store_and_forward::staff::{BadgeHash, StaffApproval, StaffList};
use store_and_forward::uplink::LinkError;
use store_and_forward::wire::{Kind, encode};

use crate::emulator::Emulator;

/// Salt length the emulator uses for each list (bytes).
const SALT_LEN: usize = 16;

/// Every list version published, per cart: (cart, version) to the salt
/// and the badge codes it held.
#[derive(Debug, Default)]
pub(crate) struct StaffLists {
    published: HashMap<(String, u64), (Vec<u8>, Vec<String>)>,
}

impl Emulator {
    /// Publishes version `version` of the staff list to `cart`: the badge
    /// ids (the codes after `STAFF:`) hashed under a new random salt.
    /// Revoking a badge is publishing a newer version without it.
    pub async fn publish_staff_list(
        &self,
        cart: &str,
        version: u64,
        badge_ids: &[&str],
    ) -> Result<StaffList, LinkError> {
        let list = self.new_staff_list(cart, version, badge_ids);
        self.publish_staff_list_as_is(cart, &list).await?;
        Ok(list)
    }

    /// Publishes `list` exactly as given (replays, invalid lists in tests).
    pub async fn publish_staff_list_as_is(
        &self,
        cart: &str,
        list: &StaffList,
    ) -> Result<(), LinkError> {
        let id = list.version.to_string();
        self.down_raw(
            cart,
            Kind::StaffListUpdate,
            encode(Kind::StaffListUpdate, cart, &id, Timestamp::now(), list),
        )
        .await
    }

    /// Publishes version `version` of `cart`'s staff list, and again every
    /// `every` until the cart acknowledges it (what a backend does with an
    /// unacknowledged message; the cart may not be connected yet). The
    /// task ends with the ack, or with the emulator.
    pub fn keep_publishing_staff_list(
        &self,
        cart: &str,
        version: u64,
        badge_ids: &[&str],
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let list = self.new_staff_list(cart, version, badge_ids);
        let (cart, id) = (cart.to_owned(), version.to_string());
        let acked = self.acked_probe();
        let link = self.link_handle();
        tokio::spawn(async move {
            loop {
                if acked(&cart, Kind::StaffListUpdate, &id) {
                    tracing::info!(%cart, version = %id, "staff list acknowledged");
                    return;
                }
                let payload = encode(Kind::StaffListUpdate, &cart, &id, Timestamp::now(), &list);
                let topic = store_and_forward::wire::topics::down(&cart, Kind::StaffListUpdate);
                let _ = link
                    .publish(
                        &topic,
                        bytes::Bytes::from(payload),
                        store_and_forward::uplink::QoS::AtLeastOnce,
                        store_and_forward::uplink::PublishProps::default(),
                    )
                    .await;
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Version `version` of `cart`'s list under a new random salt,
    /// remembered.
    fn new_staff_list(&self, cart: &str, version: u64, badge_ids: &[&str]) -> StaffList {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let list = StaffList::hashing(version, salt.clone(), badge_ids);
        self.with_staff(|s| {
            s.published.insert(
                (cart.to_owned(), version),
                (salt, badge_ids.iter().map(|b| (*b).to_owned()).collect()),
            );
        });
        list
    }

    /// The badge code behind an approval a cart recorded, from the lists
    /// this backend published to it (`None`: not one of them).
    pub fn staff_badge_of(&self, cart: &str, approval: &StaffApproval) -> Option<String> {
        self.with_staff(|s| {
            let (salt, ids) = s.published.get(&(cart.to_owned(), approval.list_version))?;
            ids.iter()
                .find(|id| BadgeHash::of(salt, id) == approval.badge)
                .cloned()
        })
    }
}
