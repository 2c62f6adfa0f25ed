//! From view models to what the adapters show: formatted, ordered, plain
//! values. Pure functions, tested without a window.

use crate::generated::{
    DeclineKind, LineData, NoticeKind, ReaderStep, ReceiptLine, ScreenKind, SetupStep as SetupKind,
};
use crate::money::{format_localized, format_number};
use crate::qr::QrMatrix;
use crate::view::{
    CartView, DeclineReason, FaultView, Language, LineView, LinkBanner, Quantity, ReaderPrompt,
    Screen, SetupStep,
};

/// Everything the adapters show, computed from the view state.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    /// The screen.
    pub screen: ScreenKind,
    /// The language, as a bundled-translation code.
    pub language: &'static str,
    /// The offline banner is shown.
    pub link_down: bool,
    /// The offline cap, formatted; empty when offline payments are paused.
    pub offline_cap: String,
    /// The shopping list, newest first.
    pub lines: Vec<LineData>,
    /// The daemon's line ids, in the order of `lines`; Slint names a line by index.
    pub line_ids: Vec<u64>,
    /// Number of items in the cart.
    pub item_count: i32,
    /// The total, formatted.
    pub total: String,
    /// The tax included, formatted.
    pub tax: String,
    /// The reader's prompt (meaningful on the reader screen).
    pub reader_step: ReaderStep,
    /// The decline reason (meaningful on the declined screen).
    pub decline: DeclineKind,
    /// The receipt (meaningful on the approved screen).
    pub receipt: ReceiptPresentation,
    /// The age-restricted line's name and whether staff was called.
    pub age_item_name: String,
    /// Staff has been called for the age check.
    pub staff_called: bool,
    /// The missing devices (meaningful on the fault screen).
    pub fault: FaultView,
    /// The cart's id, shown on the fault and out-of-service screens for staff.
    pub cart_id: String,
    /// A scan that put nothing in the cart, and why.
    pub notice: NoticeKind,
    /// First-boot setup: the step (`None`: not setting up).
    pub setup_step: SetupKind,
    /// First-boot setup: the Wi-Fi network it is about.
    pub setup_network: String,
}

/// The receipt, formatted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReceiptPresentation {
    /// Bought items, in scan order.
    pub lines: Vec<ReceiptLine>,
    /// Total paid.
    pub total: String,
    /// Tax included.
    pub tax: String,
    /// The masked card number.
    pub card: String,
    /// The payment reference.
    pub payment_reference: String,
    /// The receipt reference, also in the QR code.
    pub receipt_reference: String,
    /// Approved offline: the discreet note is shown.
    pub offline: bool,
    /// The QR code of the receipt reference; `None` when it could not be encoded.
    pub qr: Option<QrMatrix>,
}

/// Formats a quantity: `2`, or `0.756 kg` for a weighed item.
pub fn format_quantity(quantity: Quantity, language: Language) -> String {
    match quantity {
        Quantity::Units(n) => n.to_string(),
        Quantity::Grams(g) => format!("{} kg", format_number(i64::from(g), 3, language)),
    }
}

fn unit_price(line: &LineView, currency: &str, language: Language) -> String {
    let price = format_localized(line.unit_price_minor, currency, language);
    match line.quantity {
        Quantity::Units(_) => price,
        Quantity::Grams(_) => format!("{price} / kg"),
    }
}

/// The shopping list rows, newest first so a scanned item is visible at once.
pub fn present_lines(cart: &CartView, language: Language) -> (Vec<LineData>, Vec<u64>) {
    let mut rows = Vec::with_capacity(cart.lines.len());
    let mut ids = Vec::with_capacity(cart.lines.len());
    for (index, line) in cart.lines.iter().rev().enumerate() {
        rows.push(LineData {
            id: i32::try_from(index).unwrap_or(i32::MAX),
            name: line.name.as_str().into(),
            quantity: format_quantity(line.quantity, language).into(),
            unit_price: unit_price(line, &cart.currency, language).into(),
            line_total: format_localized(line.line_total_minor, &cart.currency, language).into(),
            age_restricted: line.age_restricted,
            age_checked: line.age_restricted && line.age_checked,
            adjustable: line.adjustable,
        });
        ids.push(line.line_id);
    }
    (rows, ids)
}

fn present_receipt(receipt: &crate::view::ReceiptView, language: Language) -> ReceiptPresentation {
    let currency = &receipt.cart.currency;
    ReceiptPresentation {
        lines: receipt
            .cart
            .lines
            .iter()
            .map(|l| ReceiptLine {
                name: l.name.as_str().into(),
                quantity: format_quantity(l.quantity, language).into(),
                amount: format_localized(l.line_total_minor, currency, language).into(),
            })
            .collect(),
        total: format_localized(receipt.cart.total_minor, currency, language),
        tax: format_localized(receipt.cart.tax_minor, currency, language),
        card: receipt.masked_pan.clone(),
        payment_reference: receipt.payment_reference.clone(),
        receipt_reference: receipt.receipt_reference.clone(),
        offline: receipt.offline,
        qr: QrMatrix::encode(&receipt.receipt_code).ok(),
    }
}

fn reader_step(prompt: ReaderPrompt) -> ReaderStep {
    match prompt {
        ReaderPrompt::PresentCard => ReaderStep::PresentCard,
        ReaderPrompt::EnterPin => ReaderStep::EnterPin,
        ReaderPrompt::Processing => ReaderStep::Processing,
    }
}

fn decline_kind(reason: DeclineReason) -> DeclineKind {
    match reason {
        DeclineReason::DeclinedByBank => DeclineKind::DeclinedByBank,
        DeclineReason::InsufficientFunds => DeclineKind::InsufficientFunds,
        DeclineReason::OverOfflineLimit => DeclineKind::OverOfflineLimit,
        DeclineReason::ConnectionRequired => DeclineKind::ConnectionRequired,
        DeclineReason::CardNotAccepted => DeclineKind::CardNotAccepted,
        DeclineReason::Cancelled => DeclineKind::Cancelled,
        DeclineReason::TimedOut => DeclineKind::TimedOut,
        DeclineReason::CardRemoved => DeclineKind::CardRemoved,
        DeclineReason::ReaderError => DeclineKind::ReaderError,
        DeclineReason::CardUnreadable => DeclineKind::CardUnreadable,
        DeclineReason::BankTimeout => DeclineKind::BankTimeout,
        DeclineReason::PayAtTill => DeclineKind::PayAtTill,
        DeclineReason::CardOfflineLimit => DeclineKind::CardOfflineLimit,
    }
}

/// Everything the UI shows for this state.
pub fn present(
    screen: &Screen,
    cart: &CartView,
    link: LinkBanner,
    language: Language,
    cart_id: &str,
) -> Presentation {
    let (lines, line_ids) = present_lines(cart, language);
    let total = format_localized(cart.total_minor, &cart.currency, language);
    let mut p = Presentation {
        screen: ScreenKind::Idle,
        language: language.code(),
        link_down: matches!(link, LinkBanner::Offline { .. }),
        offline_cap: match link {
            LinkBanner::Offline {
                offline_cap_minor: Some(cap),
            } => format_localized(cap, &cart.currency, language),
            _ => String::new(),
        },
        lines,
        line_ids,
        item_count: i32::try_from(cart.item_count()).unwrap_or(i32::MAX),
        tax: format_localized(cart.tax_minor, &cart.currency, language),
        total,
        reader_step: ReaderStep::PresentCard,
        decline: DeclineKind::DeclinedByBank,
        receipt: ReceiptPresentation::default(),
        age_item_name: String::new(),
        staff_called: false,
        fault: FaultView::default(),
        cart_id: cart_id.to_owned(),
        notice: NoticeKind::None,
        setup_step: SetupKind::None,
        setup_network: String::new(),
    };
    p.screen = match screen {
        Screen::Idle => ScreenKind::Idle,
        Screen::Shopping => ScreenKind::Shopping,
        Screen::Checkout => ScreenKind::Checkout,
        Screen::Reader(prompt) => {
            p.reader_step = reader_step(*prompt);
            ScreenKind::Reader
        }
        Screen::Approved(receipt) => {
            p.receipt = present_receipt(receipt, language);
            ScreenKind::Approved
        }
        Screen::Declined(reason) => {
            p.decline = decline_kind(*reason);
            ScreenKind::Declined
        }
        Screen::AgeCheck(age) => {
            p.age_item_name = age.item_name.clone();
            p.staff_called = age.staff_called;
            ScreenKind::AgeCheck
        }
        Screen::Fault(fault) => {
            p.fault = *fault;
            ScreenKind::Fault
        }
        Screen::OutOfService => ScreenKind::OutOfService,
        Screen::Setup(setup) => {
            p.setup_step = setup_kind(setup.step);
            p.setup_network = setup.network.clone();
            ScreenKind::OutOfService
        }
    };
    p
}

fn setup_kind(step: SetupStep) -> SetupKind {
    match step {
        SetupStep::ScanNetworkCode => SetupKind::ScanNetworkCode,
        SetupStep::Joining => SetupKind::Joining,
        SetupStep::WrongPassword => SetupKind::WrongPassword,
        SetupStep::NetworkNotFound => SetupKind::NetworkNotFound,
        SetupStep::NetworkFailed => SetupKind::NetworkFailed,
        SetupStep::CodeRefused => SetupKind::CodeRefused,
        SetupStep::Registering => SetupKind::Registering,
    }
}
