//! The checkout controller: plain Rust between the daemon and the adapters.
//!
//! It keeps the view state, turns [`ViewUpdate`]s into a [`Presentation`],
//! and turns what a person did ([`UiAction`], from the adapters' callbacks)
//! into [`UiEvent`]s on the daemon's channel. It holds no widget, so it is
//! tested without a window; [`crate::binding`] connects it to one.

use std::sync::mpsc;

use crate::present::{Presentation, present};
use crate::view::{CartView, Language, LinkBanner, ScanNotice, Screen, UiEvent};

/// Where UI events go: the daemon's channel.
pub trait EventSink: Send + Sync + 'static {
    /// Delivers an event. A closed channel means the daemon is stopping; the
    /// event is dropped.
    fn send(&self, event: UiEvent);
}

impl EventSink for mpsc::Sender<UiEvent> {
    fn send(&self, event: UiEvent) {
        // A closed receiver means the daemon is shutting down; nothing to tell.
        let _ = mpsc::Sender::send(self, event);
    }
}

impl EventSink for mpsc::SyncSender<UiEvent> {
    fn send(&self, event: UiEvent) {
        // Never block the UI thread: a full channel drops the event, and the
        // person taps again.
        let _ = self.try_send(event);
    }
}

/// A change the daemon makes to what the shopper sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewUpdate {
    /// The cart changed (an item added or removed, totals).
    Cart(CartView),
    /// Another screen.
    Screen(Screen),
    /// The link went up or down.
    Link(LinkBanner),
    /// The language was chosen by the daemon (e.g. a reset to the default).
    Language(Language),
    /// The cart's id, shown to staff on the fault screens.
    CartId(String),
    /// A scan put nothing in the cart (`Some`, with why), or the notice
    /// goes away (`None`).
    Notice(Option<ScanNotice>),
}

/// What a person did, as the adapters' callbacks report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiAction {
    /// Tapped "Checkout" on the shopping list.
    Checkout,
    /// Tapped "Back to cart".
    BackToCart,
    /// Tapped "Pay".
    Pay,
    /// Tapped "Cancel payment" on a reader prompt.
    Cancel,
    /// Tapped "Try again" after a decline.
    TryAgain,
    /// Tapped "Done" on the receipt.
    Done,
    /// Tapped "Remove" on the shopping list row at this index (newest first).
    RemoveRow(i32),
    /// Tapped "−" on the row at this index: one piece less.
    LessRow(i32),
    /// Tapped "+" on the row at this index: one piece more.
    MoreRow(i32),
    /// Tapped "Call staff" on the age check.
    CallStaff,
    /// Tapped "Remove item" on the age check.
    RemoveAgeItem,
    /// Picked a language by its code.
    SetLanguage(String),
}

/// The view state and the way out to the daemon.
pub struct CheckoutController {
    screen: Screen,
    cart: CartView,
    link: LinkBanner,
    language: Language,
    cart_id: String,
    notice: Option<ScanNotice>,
    line_ids: Vec<u64>,
    sink: Box<dyn EventSink>,
}

impl std::fmt::Debug for CheckoutController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutController")
            .field("screen", &self.screen)
            .field("lines", &self.cart.lines.len())
            .field("link", &self.link)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

impl CheckoutController {
    /// A controller on the idle screen with an empty cart in `currency`.
    pub fn new(currency: &str, sink: impl EventSink) -> CheckoutController {
        CheckoutController {
            screen: Screen::Idle,
            cart: CartView {
                currency: currency.to_owned(),
                ..CartView::default()
            },
            link: LinkBanner::Online,
            language: Language::English,
            cart_id: String::new(),
            notice: None,
            line_ids: Vec::new(),
            sink: Box::new(sink),
        }
    }

    /// The current language.
    pub fn language(&self) -> Language {
        self.language
    }

    /// The current screen.
    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    /// Applies a daemon update and returns what to show.
    pub fn apply(&mut self, update: ViewUpdate) -> Presentation {
        match update {
            ViewUpdate::Cart(cart) => self.cart = cart,
            ViewUpdate::Screen(screen) => {
                if screen != self.screen {
                    self.notice = None;
                }
                self.screen = screen
            }
            ViewUpdate::Notice(notice) => self.notice = notice,
            ViewUpdate::Link(link) => self.link = link,
            ViewUpdate::Language(language) => self.language = language,
            ViewUpdate::CartId(id) => self.cart_id = id,
        }
        self.presentation()
    }

    /// What to show for the current state.
    pub fn presentation(&mut self) -> Presentation {
        let p = present(
            &self.screen,
            &self.cart,
            self.link,
            self.language,
            &self.cart_id,
        );
        self.line_ids.clone_from(&p.line_ids);
        Presentation {
            notice: notice_kind(self.notice),
            ..p
        }
    }

    /// Handles what a person did: sends the daemon's event, and returns a new
    /// presentation when the UI changes at once (a language switch). Actions
    /// that do not fit the current screen (a late tap) are ignored.
    pub fn on_action(&mut self, action: UiAction) -> Option<Presentation> {
        let event = match action {
            UiAction::Checkout => UiEvent::Checkout,
            UiAction::BackToCart => UiEvent::BackToCart,
            UiAction::Pay => UiEvent::Pay,
            UiAction::Cancel => UiEvent::CancelPayment,
            UiAction::TryAgain => UiEvent::TryAgain,
            UiAction::Done => UiEvent::Done,
            UiAction::RemoveRow(index) | UiAction::LessRow(index) | UiAction::MoreRow(index) => {
                let line_id = *usize::try_from(index)
                    .ok()
                    .and_then(|i| self.line_ids.get(i))?;
                match action {
                    UiAction::LessRow(_) => UiEvent::OneLess { line_id },
                    UiAction::MoreRow(_) => UiEvent::OneMore { line_id },
                    _ => UiEvent::RemoveLine { line_id },
                }
            }
            UiAction::CallStaff | UiAction::RemoveAgeItem => {
                let Screen::AgeCheck(age) = &self.screen else {
                    return None;
                };
                let line_id = age.line_id;
                if action == UiAction::CallStaff {
                    UiEvent::RequestStaff { line_id }
                } else {
                    UiEvent::RemoveLine { line_id }
                }
            }
            UiAction::SetLanguage(code) => {
                let language = Language::from_code(&code)?;
                self.language = language;
                self.sink.send(UiEvent::LanguageChanged(language));
                return Some(self.presentation());
            }
        };
        self.sink.send(event);
        None
    }
}

fn notice_kind(notice: Option<ScanNotice>) -> crate::generated::NoticeKind {
    use crate::generated::NoticeKind as K;
    match notice {
        None => K::None,
        Some(ScanNotice::NotInCatalog) => K::NotInCatalog,
        Some(ScanNotice::WeighAtScale) => K::WeighAtScale,
        Some(ScanNotice::NotSoldByWeight) => K::NotSoldByWeight,
        Some(ScanNotice::Coupon) => K::Coupon,
        Some(ScanNotice::RefundReceipt) => K::RefundReceipt,
        Some(ScanNotice::ScanAgain) => K::ScanAgain,
        Some(ScanNotice::NotAProduct) => K::NotAProduct,
        Some(ScanNotice::StaffBadgeRefused) => K::StaffBadgeRefused,
        Some(ScanNotice::AgeCheckUnavailable) => K::AgeCheckUnavailable,
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
