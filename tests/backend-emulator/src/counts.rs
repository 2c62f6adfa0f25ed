//! What the emulator saw.

use serde::{Deserialize, Serialize};
use store_and_forward::Money;
use store_and_forward::payment::BackendOutcome;

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Online authorization requests received (including repeats).
    pub auth_requests: u64,
    /// Online answers sent.
    pub auth_answers: u64,
    /// Forwards received (including repeats).
    pub forwards: u64,
    /// Inquiries received.
    pub inquiries: u64,
    /// Distinct payment keys seen.
    pub payments: u64,
    /// Messages about a key already decided (a repeat request, a forward
    /// after an online answer, a forward received twice): deduplicated,
    /// never charged again.
    pub payment_duplicates: u64,
    /// Distinct keys approved (charged once each).
    pub charged: u64,
    /// Reversals received (including repeats).
    #[serde(default)]
    pub reversals: u64,
    /// Distinct keys reversed (each charge given back once).
    #[serde(default)]
    pub reversed: u64,
    /// Reversals of a key reversed before: answered `already_reversed`.
    #[serde(default)]
    pub reversal_duplicates: u64,
    /// Reversals of a key with no approval here: answered `unknown_payment`.
    #[serde(default)]
    pub reversal_unknown: u64,
    /// Card data that did not decrypt for its payment.
    pub undecryptable: u64,
    /// Telemetry messages.
    pub telemetry_messages: u64,
    /// Distinct telemetry events.
    pub telemetry_events: u64,
    /// Telemetry events received again.
    pub telemetry_duplicates: u64,
    /// Acks received.
    pub acks: u64,
    /// Resync requests (a delta did not fit the cart's version).
    #[serde(default)]
    pub resync_requests: u64,
    /// Status messages received.
    pub statuses: u64,
    /// Messages that did not decode or did not match their topic.
    pub malformed: u64,
    /// AWS IoT Jobs (`jobs.rs`).
    #[serde(default)]
    pub jobs: JobCounts,
}

/// What the Jobs service saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Jobs created.
    pub jobs_created: u64,
    /// Jobs canceled by their abort criteria.
    pub jobs_aborted: u64,
    /// Executions created (rolled out to a thing).
    pub executions: u64,
    /// Executions that went IN_PROGRESS.
    pub started: u64,
    /// Executions the device finished SUCCEEDED.
    pub succeeded: u64,
    /// Executions the device finished FAILED.
    pub failed: u64,
    /// Executions the device REJECTED.
    pub rejected: u64,
    /// Executions whose step or in-progress timer expired.
    pub timed_out: u64,
    /// Executions canceled (job cancel or abort).
    pub canceled: u64,
    /// Device requests received.
    pub requests: u64,
    /// Requests answered on `.../rejected`.
    pub rejected_requests: u64,
    /// notify-next messages sent.
    pub notifications: u64,
}

/// How a payment reached its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Answered online.
    Online,
    /// Decided when forwarded.
    Forward,
    /// Asked about, never seen: nothing charged.
    Inquiry,
}

/// One payment as the backend knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    /// Cart.
    pub cart: String,
    /// Idempotency key.
    pub key: String,
    /// Amount, when a message carried it.
    pub amount: Option<Money>,
    /// The outcome, once decided.
    pub outcome: Option<BackendOutcome>,
    /// How.
    pub via: Option<Via>,
    /// Test card name, when the card data decrypted.
    pub card: Option<String>,
    /// Messages about this key beyond the first.
    pub duplicates: u64,
    /// The charge was given back (a reversal).
    #[serde(default)]
    pub reversed: bool,
}
