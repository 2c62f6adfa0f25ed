//! The session's side of an age check: a staff badge scanned while a
//! restricted item waits is looked up in the staff list. On the list, the
//! check is cleared and the badge (its hash) goes with the sale; not on it,
//! or no list on this cart yet, the sale stays blocked and the shopper is
//! told why.

use store_and_forward::staff::BadgeCheck;
use tracing::{info, warn};
use ui::{ScanNotice, ViewUpdate};

use super::{Effect, Phase, Session, notice};

impl Session {
    /// A staff badge (`id`, the code after the prefix) was scanned.
    pub(super) fn on_badge(&mut self, id: &str, out: &mut Vec<Effect>) {
        if self.basket.pending_age_check().is_none() || self.phase == Phase::Done {
            info!("staff badge scanned with no age check waiting: ignored");
            return;
        }
        match self.staff.check(id) {
            BadgeCheck::Approved(approval) => {
                self.basket.approve_age_check(approval);
                info!(
                    badge = %approval.badge,
                    list_version = approval.list_version,
                    "age check approved by a staff badge"
                );
                // Back to the list, whichever screen asked for the check
                // (a scan, or Pay on the checkout screen): the state says
                // Shopping, so Checkout works at once.
                self.phase = super::Phase::Shopping;
                out.push(Effect::View(ViewUpdate::Notice(None)));
                out.push(Effect::View(ViewUpdate::Cart(self.cart_view())));
                out.push(Effect::View(ViewUpdate::Screen(self.resting_screen())));
            }
            BadgeCheck::NotOnList { list_version } => {
                warn!(
                    list_version,
                    "staff badge refused: not on the staff list (unknown or revoked)"
                );
                notice(out, ScanNotice::StaffBadgeRefused);
            }
            BadgeCheck::NoList => {
                warn!("staff badge refused: this cart has no staff list yet");
                notice(out, ScanNotice::AgeCheckUnavailable);
            }
        }
    }
}
