//! The payment processor as the emulator plays it: card data decrypted with
//! the test processor key, then the test card's rule.

use std::collections::HashMap;
use std::path::Path;

use hal::reader::carddata::{self, Binding, ProcessorPrivateKey};
use hal::reader::fixtures::{self, FixtureError, ProcessorBehaviour, TestCards};
use hal::reader::message::Currency as HalCurrency;
use store_and_forward::Money;
use store_and_forward::payment::BackendOutcome;
use uuid::Uuid;

/// The processor: its private key and the test cards by PAN.
pub struct Processor {
    key: ProcessorPrivateKey,
    by_pan: HashMap<String, (String, ProcessorBehaviour)>,
}

/// How a card is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer now.
    Now(BackendOutcome),
    /// Answer after a delay (ms).
    Later(BackendOutcome, u64),
    /// Never answer online.
    Never,
}

impl Processor {
    /// Loads the TEST ONLY processor key and test cards from `dir`.
    pub fn load(dir: &Path) -> Result<Processor, FixtureError> {
        let key = fixtures::load_processor_key(&dir.join(fixtures::PROCESSOR_KEY))?;
        let cards = TestCards::load(&dir.join(fixtures::TEST_CARDS))?;
        let by_pan = cards
            .cards
            .into_iter()
            .map(|c| (c.pan.clone(), (c.name.clone(), c.processor)))
            .collect();
        Ok(Processor { key, by_pan })
    }

    /// Decrypts the blob bound to this payment and finds the test card.
    /// `None`: the blob does not decrypt for this key and amount, or the
    /// card is not a test card.
    pub fn card(
        &self,
        key: &str,
        amount: Money,
        blob: &[u8],
    ) -> Option<(String, ProcessorBehaviour)> {
        let binding = Binding {
            key: Uuid::parse_str(key).ok()?,
            amount_minor: u64::try_from(amount.minor).ok()?,
            currency: {
                let b = amount.currency.as_str().as_bytes();
                HalCurrency::from_bytes([*b.first()?, *b.get(1)?, *b.get(2)?]).ok()?
            },
        };
        let data = carddata::decrypt(&self.key, &binding, blob).ok()?;
        self.by_pan.get(&data.pan).cloned()
    }

    /// The online answer for a card.
    pub fn online(&self, behaviour: &ProcessorBehaviour, reference: &str) -> Decision {
        let approve = BackendOutcome::Approved {
            reference: reference.to_owned(),
        };
        match behaviour {
            ProcessorBehaviour::Approve | ProcessorBehaviour::DeclineWhenForwarded { .. } => {
                Decision::Now(approve)
            }
            ProcessorBehaviour::Decline { reason } => Decision::Now(BackendOutcome::Declined {
                reason: format!("{reason:?}").to_lowercase(),
            }),
            ProcessorBehaviour::Slow { delay_ms } => Decision::Later(approve, *delay_ms),
            ProcessorBehaviour::NeverAnswers => Decision::Never,
        }
    }

    /// The answer for a forwarded offline approval.
    pub fn forwarded(&self, behaviour: &ProcessorBehaviour, reference: &str) -> BackendOutcome {
        match behaviour {
            ProcessorBehaviour::Decline { reason }
            | ProcessorBehaviour::DeclineWhenForwarded { reason } => BackendOutcome::Declined {
                reason: format!("{reason:?}").to_lowercase(),
            },
            _ => BackendOutcome::Approved {
                reference: reference.to_owned(),
            },
        }
    }
}
