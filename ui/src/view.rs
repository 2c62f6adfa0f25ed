//! The view models: what the daemon tells the UI, in plain Rust.
//!
//! They carry amounts in minor units and reasons as enums; the UI formats
//! and translates them. Nothing here knows about devices or storage.

/// A language the UI ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    /// English, the source language of every text.
    #[default]
    English,
    /// German, from the bundled translation (`ui/lang/de`).
    German,
}

impl Language {
    /// The code the bundled translations are keyed by (`"en"`, `"de"`).
    pub fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::German => "de",
        }
    }

    /// The language for a code; `None` for a language the UI does not ship.
    pub fn from_code(code: &str) -> Option<Language> {
        match code {
            "en" => Some(Language::English),
            "de" => Some(Language::German),
            _ => None,
        }
    }
}

/// How much of an item is in the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A count of pieces.
    Units(u32),
    /// A weighed item (variable-measure code), in grams; its unit price is per kg.
    Grams(u32),
}

/// One line of the shopping list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineView {
    /// The daemon's id for the line; UI events name lines by it.
    pub line_id: u64,
    /// The product name from the catalog (not translated).
    pub name: String,
    /// How many, or how heavy.
    pub quantity: Quantity,
    /// Price of one unit, or of one kg for weighed items, in minor units.
    pub unit_price_minor: i64,
    /// What the line costs, in minor units.
    pub line_total_minor: i64,
    /// The item needs a staff member's age check before payment.
    pub age_restricted: bool,
    /// A staff member on the staff list has checked the age for this
    /// line (meaningful only when `age_restricted`).
    pub age_checked: bool,
    /// Pieces at the unit price: the shopper may take one less or one
    /// more (weighed and price-labelled lines are removed whole).
    pub adjustable: bool,
}

/// The cart and its running total.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CartView {
    /// ISO 4217 code of every amount in the cart.
    pub currency: String,
    /// The lines, oldest first (the UI shows the newest on top).
    pub lines: Vec<LineView>,
    /// The amount to pay, tax included, in minor units.
    pub total_minor: i64,
    /// The tax included in the total, in minor units.
    pub tax_minor: i64,
}

impl CartView {
    /// The number of items: pieces counted, a weighed line counts as one.
    pub fn item_count(&self) -> u32 {
        self.lines
            .iter()
            .map(|l| match l.quantity {
                Quantity::Units(n) => n,
                Quantity::Grams(_) => 1,
            })
            .fold(0u32, u32::saturating_add)
    }
}

/// What the card reader asks of the shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderPrompt {
    /// Tap, insert or swipe a card.
    PresentCard,
    /// Enter the PIN on the reader.
    EnterPin,
    /// The card is read; the payment is being authorized.
    Processing,
}

/// Why a payment did not go through, in terms the shopper can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    /// The bank declined, no reason given.
    DeclinedByBank,
    /// The bank declined for lack of funds.
    InsufficientFunds,
    /// Offline, and the amount is above the offline cap.
    OverOfflineLimit,
    /// Offline, and this card or payment needs an online authorization.
    ConnectionRequired,
    /// The card is not accepted (deny-list, unsupported scheme).
    CardNotAccepted,
    /// The shopper cancelled.
    Cancelled,
    /// The reader waited too long for a card.
    TimedOut,
    /// The card was removed before the reader was done.
    CardRemoved,
    /// The reader failed.
    ReaderError,
    /// The reader could not read the card (chip and contactless failed).
    CardUnreadable,
    /// The link was up but the bank did not answer in time, and the
    /// offline policy could not cover the payment.
    BankTimeout,
    /// A limit of the whole cart refuses offline payments now (outstanding
    /// amount or count, forwarding deadline, no recent contact, clock,
    /// storage): pay at a till or when the cart is online.
    PayAtTill,
    /// This card reached its limit of offline payments.
    CardOfflineLimit,
}

impl DeclineReason {
    /// Every reason, for tests that walk them all.
    pub const ALL: [DeclineReason; 13] = [
        DeclineReason::DeclinedByBank,
        DeclineReason::InsufficientFunds,
        DeclineReason::OverOfflineLimit,
        DeclineReason::ConnectionRequired,
        DeclineReason::CardNotAccepted,
        DeclineReason::Cancelled,
        DeclineReason::TimedOut,
        DeclineReason::CardRemoved,
        DeclineReason::ReaderError,
        DeclineReason::CardUnreadable,
        DeclineReason::BankTimeout,
        DeclineReason::PayAtTill,
        DeclineReason::CardOfflineLimit,
    ];
}

/// The receipt of an approved payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptView {
    /// What was bought, and the totals.
    pub cart: CartView,
    /// The payment's reference, shown to the shopper.
    pub payment_reference: String,
    /// The receipt's number as the shopper reads it (short, whole on the
    /// narrowest panel, e.g. `R-9AB1-6C2D-0E4F`).
    pub receipt_reference: String,
    /// What the receipt's QR code carries: the payment's key, by which the
    /// backend finds the receipt.
    pub receipt_code: String,
    /// The masked card number from the reader (e.g. `**** 4242`).
    pub masked_pan: String,
    /// Approved offline, within limits: the shopper sees a discreet note.
    pub offline: bool,
}

/// An age-restricted item waiting for a staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeCheckView {
    /// The line that waits.
    pub line_id: u64,
    /// The product's name.
    pub item_name: String,
    /// The shopper has called staff already.
    pub staff_called: bool,
}

/// Which devices are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultView {
    /// The barcode scanner does not answer.
    pub scanner_missing: bool,
    /// The card reader does not answer.
    pub reader_missing: bool,
}

/// The state of the link to the backend, as the shopper needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkBanner {
    /// Online: no banner.
    #[default]
    Online,
    /// Offline: the banner says card payments still work up to this amount
    /// (minor units of the cart's currency), or, with `None`, that they are paused.
    Offline {
        /// The largest payment the offline policy would approve now.
        offline_cap_minor: Option<i64>,
    },
}

/// Why a scan put nothing in the cart, shown as a short notice until the
/// next scan or screen change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanNotice {
    /// A valid product code the catalog does not have.
    NotInCatalog,
    /// An item sold by weight scanned by its plain code.
    WeighAtScale,
    /// A weight label for an item sold by the piece.
    NotSoldByWeight,
    /// A coupon: redeemed at a till.
    Coupon,
    /// A refund receipt: cashed at a till.
    RefundReceipt,
    /// A misread (check digit, noise): scan again.
    ScanAgain,
    /// Any other code that is not a product.
    NotAProduct,
    /// A staff badge not on the cart's staff list (unknown or revoked):
    /// the age check stays open.
    StaffBadgeRefused,
    /// The cart has no staff list yet, so no badge can clear an age check:
    /// the shopper pays for the item at a till or removes it.
    AgeCheckUnavailable,
}

/// Which screen is shown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Screen {
    /// Welcome, nothing scanned.
    #[default]
    Idle,
    /// The shopping list.
    Shopping,
    /// The last look before paying.
    Checkout,
    /// The reader's prompt.
    Reader(ReaderPrompt),
    /// Approved, with the receipt.
    Approved(ReceiptView),
    /// Declined or cancelled, with the reason.
    Declined(DeclineReason),
    /// An age-restricted item waits for staff.
    AgeCheck(AgeCheckView),
    /// A device is missing.
    Fault(FaultView),
    /// The cart cannot sell.
    OutOfService,
    /// The cart cannot sell yet: first-boot setup, with where it stands
    /// (for the technician setting it up).
    Setup(SetupView),
}

/// Where a cart's first-boot setup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupView {
    /// The step and its outcome.
    pub step: SetupStep,
    /// The Wi-Fi network (SSID) it is about, if any.
    pub network: String,
}

/// The setup step shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    /// No network settings yet: scan the store's Wi-Fi code.
    ScanNetworkCode,
    /// Joining the network.
    Joining,
    /// The network refused the password: scan a new code.
    WrongPassword,
    /// The network is not in range; retrying.
    NetworkNotFound,
    /// Joining failed for another reason; retrying.
    NetworkFailed,
    /// The scanned code cannot be used (WEP, a password of the wrong length).
    CodeRefused,
    /// Connected: registering with the store's system.
    Registering,
}

/// What a person did, for the daemon to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiEvent {
    /// Go from the shopping list to the checkout screen.
    Checkout,
    /// Go back to the shopping list (from checkout or a decline).
    BackToCart,
    /// Start the payment of the cart's total.
    Pay,
    /// Cancel the payment while the reader waits for a card or PIN.
    CancelPayment,
    /// Try paying again after a decline.
    TryAgain,
    /// The shopper is done with the receipt: start a new session.
    Done,
    /// Remove a line from the cart.
    RemoveLine {
        /// The line's id.
        line_id: u64,
    },
    /// One piece less on a line of pieces (the last one removes the line).
    OneLess {
        /// The line's id.
        line_id: u64,
    },
    /// One piece more on a line of pieces.
    OneMore {
        /// The line's id.
        line_id: u64,
    },
    /// Call a staff member to approve an age-restricted line.
    RequestStaff {
        /// The line's id.
        line_id: u64,
    },
    /// The shopper picked another language.
    LanguageChanged(Language),
}
