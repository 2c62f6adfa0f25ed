//! One payment, from "Pay" to the decision shown, as the brief's checkout
//! sequence says: start the reader with a new idempotency key; commit the
//! attempt with the card-read result (first fsync) before anything leaves
//! the cart; ask the backend online when the link is up; otherwise (link
//! down, timeout, no answer) let the offline policy decide under the same
//! key; commit the decision (second fsync); then tell the reader.
//!
//! It runs on the thread that owns the reader (the reader is blocking); the
//! online request is awaited on the uplink's runtime through a handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hal::reader::message::{
    Currency as ReaderCurrency, DeclineReason, EntryMode as ReaderEntryMode, Outcome,
    PaymentErrorCode, PaymentRequest, UiEvent,
};
use hal::reader::{PaymentEvent, PaymentReader, ReaderError};
use store_and_forward::payment::BackendOutcome;
use store_and_forward::policy::OfflineReason;
use store_and_forward::staff::StaffApproval;
use store_and_forward::sync::{SharedLedger, Uplink};
use store_and_forward::{
    CardRead, EntryMode, LedgerError, Money, NewAttempt, PaymentKey, PaymentState, Timestamp,
};
use tracing::{info, warn};

use crate::receipt::ReceiptSigner;

/// What the shopper is shown at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// Approved by the backend.
    ApprovedOnline {
        /// The processor's reference.
        reference: String,
    },
    /// Approved by the offline policy.
    ApprovedOffline,
    /// Declined online by the processor.
    DeclinedOnline {
        /// The processor's reason.
        reason: String,
    },
    /// Declined by the offline policy.
    DeclinedOffline {
        /// Every limit that refused it.
        reasons: Vec<OfflineReason>,
        /// The link was up and the backend was asked, but no answer came in
        /// time: the shopper is told the bank did not answer, not that the
        /// cart has no connection.
        bank_timed_out: bool,
    },
    /// Refused before the card was read: the link is down (or the payment
    /// must go online) and the offline policy cannot take this amount. The
    /// reader was not started; nothing was recorded.
    RefusedBeforeCard {
        /// Why the offline policy cannot take it.
        reasons: Vec<OfflineReason>,
    },
    /// No card was read (timeout, removed, unreadable, reader fault).
    NoCard {
        /// The reader's code.
        code: PaymentErrorCode,
    },
    /// The shopper cancelled.
    Cancelled,
}

/// The end of one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayResult {
    /// The attempt's key.
    pub key: PaymentKey,
    /// The ledger state, when the attempt was committed.
    pub state: Option<PaymentState>,
    /// What the shopper sees.
    pub shown: Shown,
    /// The masked PAN, for the receipt.
    pub masked_pan: Option<String>,
    /// What the receipt's QR code carries, for an approval with a
    /// configured receipt URL (see [`crate::receipt`]).
    pub receipt_code: Option<String>,
}

/// Progress for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayEvent {
    /// A reader prompt to mirror.
    Prompt(UiEvent),
    /// The card was read and the attempt committed; authorizing.
    Authorizing {
        /// Online (link up) or offline.
        online: bool,
    },
}

/// A payment that could not be carried out. Nothing half-done is left: an
/// attempt committed before the failure is decided or resolved at restart.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The reader failed before a card was read: the shopper is told to try
    /// again; nothing was recorded.
    #[error("card reader: {0}")]
    Reader(#[from] ReaderError),
    /// The ledger failed: the payment is not approved (nothing is shown as
    /// approved that is not on disk).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The amount cannot be paid (zero, negative, or a currency the reader
    /// does not take).
    #[error("cannot pay {0}")]
    BadAmount(Money),
}

/// Runs payments against the ledger and, when reachable, the backend.
#[derive(Clone)]
pub struct Checkout {
    ledger: SharedLedger,
    uplink: Option<Arc<Uplink>>,
    runtime: Option<tokio::runtime::Handle>,
    /// A switch for the demo and tests: when off, the link is treated as
    /// down (the cart decides offline).
    online: Arc<AtomicBool>,
    /// How long the reader waits for a card.
    card_timeout: Duration,
    /// Signs the receipts of approvals (a configured receipt URL).
    receipts: Option<ReceiptSigner>,
    /// The attempt and the decision take the ledger's lock before any
    /// background work waiting for it.
    first: store_and_forward::ledger::CheckoutFirst,
}

impl Checkout {
    /// A checkout on `ledger`, asking `uplink` (on `runtime`) when given.
    pub fn new(
        ledger: SharedLedger,
        uplink: Option<(Arc<Uplink>, tokio::runtime::Handle)>,
    ) -> Checkout {
        let (uplink, runtime) = match uplink {
            Some((u, r)) => (Some(u), Some(r)),
            None => (None, None),
        };
        let first = lock(&ledger).checkout_first();
        Checkout {
            first,
            ledger,
            uplink,
            runtime,
            online: Arc::new(AtomicBool::new(true)),
            card_timeout: Duration::from_secs(60),
            receipts: None,
        }
    }

    /// Signs the receipt of every approval with `signer` (after the
    /// decision is committed, before the shopper sees it).
    pub fn with_receipts(mut self, signer: ReceiptSigner) -> Checkout {
        self.receipts = Some(signer);
        self
    }

    /// Sets how long the reader waits for a card.
    pub fn with_card_timeout(mut self, timeout: Duration) -> Checkout {
        self.card_timeout = timeout;
        self
    }

    /// The online switch (demo: "cut the link").
    pub fn online_switch(&self) -> Arc<AtomicBool> {
        self.online.clone()
    }

    fn link_up(&self) -> bool {
        self.online.load(Ordering::SeqCst)
            && self
                .uplink
                .as_ref()
                .is_some_and(|u| u.link().state().borrow().up)
    }

    /// Takes one payment of `amount` through `reader`. `on_event` mirrors
    /// prompts to the UI; `cancelled` is polled while waiting for the card.
    pub fn pay(
        &self,
        reader: &mut dyn PaymentReader,
        amount: Money,
        online_required: bool,
        on_event: &mut dyn FnMut(PayEvent),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<PayResult, CheckoutError> {
        self.pay_age_checked(reader, amount, None, online_required, on_event, cancelled)
    }

    /// [`Checkout::pay`] for a basket whose age check `age_check` cleared:
    /// the badge's hash is committed with the attempt.
    pub fn pay_age_checked(
        &self,
        reader: &mut dyn PaymentReader,
        amount: Money,
        age_check: Option<StaffApproval>,
        online_required: bool,
        on_event: &mut dyn FnMut(PayEvent),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<PayResult, CheckoutError> {
        let key = PaymentKey::new();
        let currency = {
            let b = amount.currency.as_str().as_bytes();
            ReaderCurrency::from_bytes([b[0], b[1], b[2]])
                .map_err(|_| CheckoutError::BadAmount(amount))?
        };
        let amount_minor = u64::try_from(amount.minor)
            .ok()
            .filter(|m| *m > 0)
            .ok_or(CheckoutError::BadAmount(amount))?;
        if !self.link_up() {
            // Known to be offline: what the offline policy can never take
            // is refused now, with the reason, not after the card is read.
            let reasons = refused_offline(lock(&self.ledger).limits(), amount, online_required);
            if !reasons.is_empty() {
                info!(payment_key = %key, %amount, ?reasons, "refused before reading the card");
                return Ok(PayResult {
                    key,
                    state: None,
                    shown: Shown::RefusedBeforeCard { reasons },
                    masked_pan: None,
                    receipt_code: None,
                });
            }
        }
        reader.start_payment(&PaymentRequest {
            key: key.0,
            amount_minor,
            currency,
            card_timeout_s: self.card_timeout.as_secs().min(u64::from(u16::MAX)) as u16,
        })?;
        info!(payment_key = %key, %amount, "payment started");
        let deadline = Instant::now() + self.card_timeout + Duration::from_secs(10);
        let mut cancel_sent = false;
        let read = loop {
            if cancelled() && !cancel_sent {
                reader.cancel(key.0)?;
                cancel_sent = true;
            }
            if Instant::now() > deadline {
                let _ = reader.cancel(key.0);
                return Ok(no_card(key, PaymentErrorCode::Timeout));
            }
            match reader.next_event(Duration::from_millis(100))? {
                Some(PaymentEvent::Ui { key: k, event }) if k == key.0 => {
                    on_event(PayEvent::Prompt(event))
                }
                Some(PaymentEvent::CardRead(r)) if r.key == key.0 => break r,
                Some(PaymentEvent::Failed { key: k, code }) if k == key.0 => {
                    info!(payment_key = %key, ?code, "no card read");
                    return Ok(if code == PaymentErrorCode::Cancelled {
                        PayResult {
                            key,
                            state: None,
                            shown: Shown::Cancelled,
                            masked_pan: None,
                            receipt_code: None,
                        }
                    } else {
                        no_card(key, code)
                    });
                }
                _ => {}
            }
        };
        let card = CardRead {
            masked_pan: read.masked_pan.as_str().to_owned(),
            fingerprint: read.fingerprint.0.to_vec(),
            emv_data: read.emv.clone(),
            encrypted_blob: read.blob.clone(),
            entry_mode: match read.entry_mode {
                ReaderEntryMode::Contactless => EntryMode::Contactless,
                _ => EntryMode::Chip,
            },
        };
        let attempt = NewAttempt {
            key,
            amount,
            online_required,
            card: card.clone(),
        };
        let created = Timestamp::now();
        self.first
            .lock_checkout(&self.ledger)
            .record_card_read_age_checked(&attempt, age_check.as_ref(), created)?;
        let online = self.link_up();
        on_event(PayEvent::Authorizing { online });
        let answer = match (online, &self.uplink, &self.runtime) {
            (true, Some(uplink), Some(rt)) => rt
                .block_on(uplink.authorize_online(&key, amount, &card, created))
                .ok()
                .filter(|o| !matches!(o, BackendOutcome::Unknown)),
            _ => None,
        };
        let (shown, state) = match answer {
            Some(outcome) => {
                let mut l = self.first.lock_checkout(&self.ledger);
                l.apply_backend_outcome(&key, &outcome, Timestamp::now())?;
                let state = l.payment(&key)?.map(|p| p.state);
                let shown = match outcome {
                    BackendOutcome::Approved { reference } => Shown::ApprovedOnline { reference },
                    BackendOutcome::Declined { reason } => Shown::DeclinedOnline { reason },
                    BackendOutcome::Unknown => Shown::DeclinedOnline {
                        reason: "no answer".into(),
                    },
                };
                (shown, state)
            }
            None => {
                let d = self
                    .first
                    .lock_checkout(&self.ledger)
                    .decide_offline(&key, Timestamp::now())?;
                if d.approved {
                    (Shown::ApprovedOffline, Some(PaymentState::OfflineApproved))
                } else {
                    (
                        Shown::DeclinedOffline {
                            reasons: d.reasons,
                            // Online was tried: the link was up, no answer.
                            bank_timed_out: online,
                        },
                        Some(PaymentState::OfflineDeclined),
                    )
                }
            }
        };
        info!(payment_key = %key, ?state, outcome = ?shown, "payment decided");
        if let Err(e) = reader.send_outcome(key.0, reader_outcome(&shown)) {
            // The decision is committed; the reader only shows it.
            warn!(payment_key = %key, cause = %e, "reader did not take the outcome");
        }
        // The shopper has the decision: now wait for the TPM counter's
        // increment after an offline approval (about a millisecond).
        lock(&self.ledger).settle_counter();
        if let Some(u) = &self.uplink {
            u.kick();
        }
        let offline = match shown {
            Shown::ApprovedOnline { .. } => Some(false),
            Shown::ApprovedOffline => Some(true),
            _ => None,
        };
        let receipt_code = self
            .receipts
            .as_ref()
            .zip(offline)
            .map(|(r, offline)| r.code(key, amount, offline));
        Ok(PayResult {
            key,
            state,
            shown,
            masked_pan: Some(card.masked_pan.clone()),
            receipt_code,
        })
    }
}

/// The reasons the offline policy refuses `amount` whatever the card:
/// the payment must go online, no offline cap for its currency, or above
/// the per-payment cap.
pub fn refused_offline(
    limits: &store_and_forward::policy::Limits,
    amount: Money,
    online_required: bool,
) -> Vec<OfflineReason> {
    let mut reasons = Vec::new();
    if online_required {
        reasons.push(OfflineReason::OnlineRequired);
    }
    match limits.per_payment_cap.get(&amount.currency) {
        None => reasons.push(OfflineReason::CurrencyNotAllowed {
            currency: amount.currency,
        }),
        Some(&cap) if amount.minor > cap => reasons.push(OfflineReason::PerPaymentCap {
            amount: amount.minor,
            cap,
        }),
        Some(_) => {}
    }
    reasons
}

fn no_card(key: PaymentKey, code: PaymentErrorCode) -> PayResult {
    PayResult {
        key,
        state: None,
        shown: Shown::NoCard { code },
        masked_pan: None,
        receipt_code: None,
    }
}

fn reader_outcome(shown: &Shown) -> Outcome {
    match shown {
        Shown::ApprovedOnline { .. } => Outcome::ApprovedOnline,
        Shown::ApprovedOffline => Outcome::ApprovedOffline,
        Shown::DeclinedOnline { reason } if reason.contains("insufficient") => {
            Outcome::Declined(DeclineReason::InsufficientFunds)
        }
        Shown::DeclinedOnline { .. } => Outcome::Declined(DeclineReason::DoNotHonour),
        Shown::DeclinedOffline { reasons, .. } | Shown::RefusedBeforeCard { reasons } => {
            Outcome::Declined(
                if reasons
                    .iter()
                    .any(|r| matches!(r, OfflineReason::CardDenied))
                {
                    DeclineReason::DenyListed
                } else if reasons
                    .iter()
                    .any(|r| matches!(r, OfflineReason::PerPaymentCap { .. }))
                {
                    DeclineReason::OverOfflineLimit
                } else {
                    DeclineReason::OfflineNotAllowed
                },
            )
        }
        Shown::NoCard { .. } | Shown::Cancelled => Outcome::Declined(DeclineReason::Other),
    }
}

fn lock(l: &SharedLedger) -> std::sync::MutexGuard<'_, store_and_forward::Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}
