//! The interactive demo's terminal narration, sans-IO: one line per outcome
//! the shopper sees in the window (an item added or taken out, approved,
//! declined and why, staff called, a scan refused, a device missing),
//! derived from the updates the session sends the UI.

use store_and_forward::{Currency, Money};
use ui::{CartView, DeclineReason, LinkBanner, Quantity, ScanNotice, Screen, ViewUpdate};

/// Follows the view and says what changed for the shopper.
#[derive(Debug)]
pub struct Narrator {
    currency: String,
    screen: Screen,
    cart: CartView,
    link: Option<LinkBanner>,
}

impl Narrator {
    /// A narrator with nothing shown yet, for a store in `currency`.
    pub fn new(currency: &str) -> Narrator {
        Narrator {
            currency: currency.to_owned(),
            screen: Screen::default(),
            cart: CartView::default(),
            link: None,
        }
    }

    /// The line `update` deserves, if any (most updates repeat what is
    /// already said, or are progress).
    pub fn on_update(&mut self, update: &ViewUpdate) -> Option<String> {
        match update {
            ViewUpdate::Cart(cart) => {
                let line = cart_change(&self.cart, cart);
                self.cart = cart.clone();
                line
            }
            ViewUpdate::Screen(screen) => {
                let line = self.screen_change(screen);
                self.screen = screen.clone();
                line
            }
            ViewUpdate::Notice(Some(notice)) => {
                Some(format!("  scan refused: {}", notice_text(*notice)))
            }
            ViewUpdate::Link(banner) => {
                let first = self.link.is_none();
                let changed = self.link.as_ref() != Some(banner);
                self.link = Some(*banner);
                (changed && !(first && *banner == LinkBanner::Online))
                    .then(|| link_text(*banner, &self.currency))
            }
            ViewUpdate::Notice(None) | ViewUpdate::Language(_) | ViewUpdate::CartId(_) => None,
        }
    }

    fn screen_change(&self, screen: &Screen) -> Option<String> {
        if *screen == self.screen {
            return None;
        }
        match screen {
            Screen::Approved(r) => {
                let how = if r.offline {
                    "APPROVED offline (stored; forwarded when the link returns)"
                } else {
                    "APPROVED online"
                };
                Some(format!(
                    "  {how}: {}, card {}, receipt {}",
                    money(r.cart.total_minor, &r.cart.currency),
                    r.masked_pan,
                    r.receipt_reference
                ))
            }
            Screen::Declined(DeclineReason::Cancelled) => Some("  payment cancelled".to_owned()),
            Screen::Declined(reason) => Some(format!("  DECLINED: {}", decline_text(*reason))),
            Screen::AgeCheck(a) if a.staff_called => {
                let was_called = matches!(&self.screen, Screen::AgeCheck(b) if b.staff_called && b.line_id == a.line_id);
                (!was_called)
                    .then(|| format!("  staff called to check the age for {}", a.item_name))
            }
            Screen::AgeCheck(a) if !matches!(self.screen, Screen::AgeCheck(_)) => Some(format!(
                "  age check needed for {}: a staff badge clears it (`scan STAFF:0042`)",
                a.item_name
            )),
            Screen::Fault(f) => Some(format!("  device missing: {f:?}")),
            Screen::OutOfService => Some("  out of service".to_owned()),
            _ => None,
        }
    }
}

/// An item in or out, or its age check cleared.
fn cart_change(before: &CartView, after: &CartView) -> Option<String> {
    let total = money(after.total_minor, &after.currency);
    for line in &after.lines {
        match before.lines.iter().find(|b| b.line_id == line.line_id) {
            None => {
                return Some(format!(
                    "  added: {}{} (total {total})",
                    line.name,
                    quantity(line.quantity)
                ));
            }
            Some(b) if amount(b.quantity) < amount(line.quantity) => {
                return Some(format!(
                    "  one more: {}{} (total {total})",
                    line.name,
                    quantity(line.quantity)
                ));
            }
            Some(b) if amount(b.quantity) > amount(line.quantity) => {
                return Some(format!(
                    "  one less: {}{} (total {total})",
                    line.name,
                    quantity(line.quantity)
                ));
            }
            Some(b) if !b.age_checked && line.age_checked => {
                return Some(format!("  age checked by staff: {}", line.name));
            }
            Some(_) => {}
        }
    }
    // A line gone: removed, unless the whole basket went (a sale ended).
    if after.lines.is_empty() {
        return None;
    }
    before
        .lines
        .iter()
        .find(|b| !after.lines.iter().any(|l| l.line_id == b.line_id))
        .map(|b| format!("  removed: {} (total {total})", b.name))
}

fn amount(q: Quantity) -> u32 {
    match q {
        Quantity::Units(n) | Quantity::Grams(n) => n,
    }
}

fn quantity(q: Quantity) -> String {
    match q {
        Quantity::Units(1) => String::new(),
        Quantity::Units(n) => format!(" x{n}"),
        Quantity::Grams(g) => format!(", {}.{:03} kg", g / 1000, g % 1000),
    }
}

fn money(minor: i64, currency: &str) -> String {
    match Currency::new(currency) {
        Ok(c) => Money::new(minor, c).to_string(),
        Err(_) => format!("{minor} (minor units)"),
    }
}

fn link_text(banner: LinkBanner, currency: &str) -> String {
    match banner {
        LinkBanner::Online => "  link: online".to_owned(),
        LinkBanner::Offline {
            offline_cap_minor: Some(cap),
        } => format!(
            "  link: offline; card payments up to {} approved offline",
            money(cap, currency)
        ),
        LinkBanner::Offline {
            offline_cap_minor: None,
        } => "  link: offline; offline card payments paused".to_owned(),
    }
}

/// Why, in the terminal's words (the screen says it to the shopper).
pub fn decline_text(reason: DeclineReason) -> &'static str {
    match reason {
        DeclineReason::DeclinedByBank => "declined by the bank",
        DeclineReason::InsufficientFunds => "insufficient funds",
        DeclineReason::OverOfflineLimit => "above the offline limit for one payment while offline",
        DeclineReason::ConnectionRequired => "this payment needs the link (online required)",
        DeclineReason::CardNotAccepted => "card not accepted (deny-list or scheme)",
        DeclineReason::Cancelled => "cancelled",
        DeclineReason::TimedOut => "no card presented in time",
        DeclineReason::CardRemoved => "card removed too early",
        DeclineReason::ReaderError => "card reader fault",
        DeclineReason::CardUnreadable => "card could not be read",
        DeclineReason::BankTimeout => "the bank did not answer in time",
        DeclineReason::PayAtTill => {
            "a limit of the whole cart: pay at a till or when the cart is online"
        }
        DeclineReason::CardOfflineLimit => "this card reached its offline payments",
    }
}

fn notice_text(notice: ScanNotice) -> &'static str {
    match notice {
        ScanNotice::NotInCatalog => "not in the catalog",
        ScanNotice::WeighAtScale => "sold by weight: weigh it at the scale",
        ScanNotice::NotSoldByWeight => "a weight label for an item sold by the piece",
        ScanNotice::Coupon => "a coupon (redeemed at a till)",
        ScanNotice::RefundReceipt => "a refund receipt (cashed at a till)",
        ScanNotice::ScanAgain => "misread: scan again",
        ScanNotice::NotAProduct => "not a product",
        ScanNotice::StaffBadgeRefused => "staff badge not on the staff list",
        ScanNotice::AgeCheckUnavailable => "no staff list yet: no badge can clear an age check",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ui::{AgeCheckView, LineView, ReceiptView};

    fn line(id: u64, name: &str, n: u32) -> LineView {
        LineView {
            line_id: id,
            name: name.to_owned(),
            quantity: Quantity::Units(n),
            unit_price_minor: 189,
            line_total_minor: 189 * i64::from(n),
            age_restricted: false,
            age_checked: false,
            adjustable: true,
        }
    }

    fn cart(lines: Vec<LineView>) -> CartView {
        let total_minor = lines.iter().map(|l| l.line_total_minor).sum();
        CartView {
            currency: "EUR".to_owned(),
            lines,
            total_minor,
            tax_minor: 0,
        }
    }

    #[test]
    fn items_in_and_out_are_one_line_each() {
        let mut n = Narrator::new("EUR");
        let said = |n: &mut Narrator, c| n.on_update(&ViewUpdate::Cart(c));
        assert_eq!(
            said(&mut n, cart(vec![line(1, "Highlighter", 1)])).as_deref(),
            Some("  added: Highlighter (total 1.89 EUR)")
        );
        assert_eq!(
            said(&mut n, cart(vec![line(1, "Highlighter", 2)])).as_deref(),
            Some("  one more: Highlighter x2 (total 3.78 EUR)")
        );
        assert_eq!(
            said(&mut n, cart(vec![line(1, "Highlighter", 1)])).as_deref(),
            Some("  one less: Highlighter (total 1.89 EUR)")
        );
        said(
            &mut n,
            cart(vec![line(1, "Highlighter", 1), line(2, "Water", 1)]),
        );
        assert_eq!(
            said(&mut n, cart(vec![line(2, "Water", 1)])).as_deref(),
            Some("  removed: Highlighter (total 1.89 EUR)")
        );
        // The basket emptied by a sale's end says nothing.
        assert_eq!(said(&mut n, cart(vec![])), None);
        // The same cart again says nothing.
        assert_eq!(said(&mut n, cart(vec![])), None);
    }

    #[test]
    fn outcomes_say_what_the_shopper_sees() {
        let mut n = Narrator::new("EUR");
        let approved = Screen::Approved(ReceiptView {
            cart: cart(vec![line(1, "Highlighter", 1)]),
            payment_reference: "P1".into(),
            receipt_reference: "R-1".into(),
            receipt_code: String::new(),
            masked_pan: "**** 4242".into(),
            offline: true,
        });
        let line = n.on_update(&ViewUpdate::Screen(approved.clone())).unwrap();
        assert!(
            line.contains("APPROVED offline") && line.contains("**** 4242"),
            "{line}"
        );
        assert_eq!(
            n.on_update(&ViewUpdate::Screen(approved)),
            None,
            "said once"
        );
        for reason in DeclineReason::ALL {
            n.on_update(&ViewUpdate::Screen(Screen::Idle));
            let line = n
                .on_update(&ViewUpdate::Screen(Screen::Declined(reason)))
                .unwrap();
            assert!(line.contains(decline_text(reason)), "{line}");
        }
        let age = |called| {
            ViewUpdate::Screen(Screen::AgeCheck(AgeCheckView {
                line_id: 5,
                item_name: "Whisky".into(),
                staff_called: called,
            }))
        };
        assert!(
            n.on_update(&age(false))
                .unwrap()
                .contains("age check needed")
        );
        assert!(n.on_update(&age(true)).unwrap().contains("staff called"));
        assert_eq!(n.on_update(&age(true)), None);
        assert_eq!(
            n.on_update(&ViewUpdate::Notice(Some(ScanNotice::StaffBadgeRefused)))
                .as_deref(),
            Some("  scan refused: staff badge not on the staff list")
        );
    }

    #[test]
    fn the_link_is_said_when_it_changes() {
        let mut n = Narrator::new("EUR");
        assert_eq!(
            n.on_update(&ViewUpdate::Link(LinkBanner::Online)),
            None,
            "the start says nothing"
        );
        let down = LinkBanner::Offline {
            offline_cap_minor: Some(10_000),
        };
        assert!(
            n.on_update(&ViewUpdate::Link(down))
                .unwrap()
                .contains("100.00")
        );
        assert_eq!(n.on_update(&ViewUpdate::Link(down)), None);
        assert!(n.on_update(&ViewUpdate::Link(LinkBanner::Online)).is_some());
    }
}
