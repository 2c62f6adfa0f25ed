//! A stand-in for the daemon in UI tests: a catalog, a cart, and the answers
//! the real daemon gives to each UI event. The tests play the scanner and the
//! card reader by calling its methods.
#![allow(dead_code)]

pub mod reference;

use std::sync::mpsc;

use ui::{
    AgeCheckView, CartView, CheckoutUi, DeclineReason, LineView, LinkBanner, Quantity,
    ReaderPrompt, ReceiptView, ScanNotice, Screen, UiEvent, ViewUpdate,
};

/// A product the test scanner can scan.
#[derive(Clone, Copy)]
pub struct Product {
    pub name: &'static str,
    pub price_minor: i64,
    /// Tax rate in basis points (700 = 7 %), included in the price.
    pub tax_bp: i64,
    pub age_restricted: bool,
    pub weighed: bool,
}

pub const MILK: Product = Product {
    name: "Organic whole milk 1 l",
    price_minor: 129,
    tax_bp: 700,
    age_restricted: false,
    weighed: false,
};
pub const BREAD: Product = Product {
    name: "Sourdough bread",
    price_minor: 349,
    tax_bp: 700,
    age_restricted: false,
    weighed: false,
};
pub const APPLES: Product = Product {
    name: "Apples (loose)",
    price_minor: 299,
    tax_bp: 700,
    age_restricted: false,
    weighed: true,
};
pub const WINE: Product = Product {
    name: "Red wine 0.75 l",
    price_minor: 899,
    tax_bp: 1900,
    age_restricted: true,
    weighed: false,
};

/// The daemon's part of a session.
pub struct Daemon {
    pub ui: CheckoutUi,
    pub events: mpsc::Receiver<UiEvent>,
    lines: Vec<(u64, Product, Quantity)>,
    next_id: u64,
    /// A staff badge cleared the age check of the restricted lines.
    age_checked: bool,
    pub seen: Vec<UiEvent>,
}

impl Daemon {
    pub fn new() -> Daemon {
        let (tx, events) = mpsc::channel();
        let ui = CheckoutUi::new("EUR", tx).expect("window");
        ui.update(ViewUpdate::CartId("cart-0042".into()));
        Daemon {
            ui,
            events,
            lines: Vec::new(),
            next_id: 1,
            age_checked: false,
            seen: Vec::new(),
        }
    }

    pub fn cart(&self) -> CartView {
        let mut total = 0;
        let mut tax = 0;
        let lines = self
            .lines
            .iter()
            .map(|(id, p, q)| {
                let line_total = match q {
                    Quantity::Units(n) => p.price_minor * i64::from(*n),
                    Quantity::Grams(g) => (p.price_minor * i64::from(*g) + 500) / 1000,
                };
                total += line_total;
                tax += line_total * p.tax_bp / (10_000 + p.tax_bp);
                LineView {
                    line_id: *id,
                    name: p.name.into(),
                    quantity: *q,
                    unit_price_minor: p.price_minor,
                    line_total_minor: line_total,
                    age_restricted: p.age_restricted,
                    age_checked: p.age_restricted && self.age_checked,
                    adjustable: !p.weighed,
                }
            })
            .collect();
        CartView {
            currency: "EUR".into(),
            lines,
            total_minor: total,
            tax_minor: tax,
        }
    }

    /// The scanner read a product: same product adds to its line.
    pub fn scan(&mut self, product: Product) {
        let quantity = if product.weighed {
            Quantity::Grams(756)
        } else {
            Quantity::Units(1)
        };
        let existing = self
            .lines
            .iter_mut()
            .find(|(_, p, _)| p.name == product.name && !product.weighed);
        let id = match existing {
            Some((id, _, Quantity::Units(n))) => {
                *n += 1;
                *id
            }
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                self.lines.push((id, product, quantity));
                id
            }
        };
        if product.age_restricted {
            self.age_checked = false;
        }
        self.ui.update(ViewUpdate::Cart(self.cart()));
        if product.age_restricted {
            self.ui
                .update(ViewUpdate::Screen(Screen::AgeCheck(AgeCheckView {
                    line_id: id,
                    item_name: product.name.into(),
                    staff_called: false,
                })));
        } else {
            self.ui.update(ViewUpdate::Screen(Screen::Shopping));
        }
    }

    pub fn reader(&mut self, prompt: ReaderPrompt) {
        self.ui.update(ViewUpdate::Screen(Screen::Reader(prompt)));
    }

    pub fn approve(&mut self, offline: bool) {
        self.ui
            .update(ViewUpdate::Screen(Screen::Approved(ReceiptView {
                cart: self.cart(),
                payment_reference: "PAY-7F3A-19C2".into(),
                receipt_reference: "R-9AB1-6C2D-0E4F".into(),
                receipt_code: "01a2385e-2640-761f-9ab1-6c2d0e4f5a6b".into(),
                masked_pan: "**** 4242".into(),
                offline,
            })));
    }

    pub fn decline(&mut self, reason: DeclineReason) {
        self.ui.update(ViewUpdate::Screen(Screen::Declined(reason)));
    }

    pub fn link(&mut self, banner: LinkBanner) {
        self.ui.update(ViewUpdate::Link(banner));
    }

    /// A staff badge on the list was scanned: the age-restricted lines
    /// are approved.
    pub fn staff_badge(&mut self) {
        self.age_checked = true;
        self.ui.update(ViewUpdate::Notice(None));
        self.ui.update(ViewUpdate::Cart(self.cart()));
        self.ui.update(ViewUpdate::Screen(Screen::Shopping));
    }

    /// A staff badge the cart refused: the age check stays open, a notice
    /// says why.
    pub fn staff_badge_refused(&mut self, why: ScanNotice) {
        self.ui.update(ViewUpdate::Notice(Some(why)));
    }

    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// Handles every pending UI event as the daemon would; returns them.
    pub fn pump(&mut self) -> Vec<UiEvent> {
        let mut handled = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match &event {
                UiEvent::Checkout => self.ui.update(ViewUpdate::Screen(Screen::Checkout)),
                UiEvent::BackToCart => self.ui.update(ViewUpdate::Screen(Screen::Shopping)),
                UiEvent::Pay | UiEvent::TryAgain => self.reader(ReaderPrompt::PresentCard),
                UiEvent::CancelPayment => self.decline(DeclineReason::Cancelled),
                UiEvent::Done => {
                    self.lines.clear();
                    self.ui.update(ViewUpdate::Cart(self.cart()));
                    self.ui.update(ViewUpdate::Screen(Screen::Idle));
                }
                UiEvent::RemoveLine { line_id } => {
                    self.lines.retain(|(id, _, _)| id != line_id);
                    self.ui.update(ViewUpdate::Cart(self.cart()));
                    let screen = if self.lines.is_empty() {
                        Screen::Idle
                    } else {
                        Screen::Shopping
                    };
                    self.ui.update(ViewUpdate::Screen(screen));
                }
                UiEvent::OneMore { line_id } | UiEvent::OneLess { line_id } => {
                    let more = matches!(event, UiEvent::OneMore { .. });
                    for (id, _, q) in &mut self.lines {
                        if id == line_id
                            && let Quantity::Units(n) = q
                        {
                            *n = if more { *n + 1 } else { n.saturating_sub(1) };
                        }
                    }
                    self.lines
                        .retain(|(_, _, q)| !matches!(q, Quantity::Units(0)));
                    self.ui.update(ViewUpdate::Cart(self.cart()));
                    let screen = if self.lines.is_empty() {
                        Screen::Idle
                    } else {
                        Screen::Shopping
                    };
                    self.ui.update(ViewUpdate::Screen(screen));
                }
                UiEvent::RequestStaff { line_id } => {
                    let name = self
                        .lines
                        .iter()
                        .find(|(id, _, _)| id == line_id)
                        .map(|(_, p, _)| p.name)
                        .unwrap_or_default();
                    self.ui
                        .update(ViewUpdate::Screen(Screen::AgeCheck(AgeCheckView {
                            line_id: *line_id,
                            item_name: name.into(),
                            staff_called: true,
                        })));
                }
                UiEvent::LanguageChanged(_) => {}
            }
            handled.push(event.clone());
            self.seen.push(event);
        }
        handled
    }
}
