//! The offline authorization policy: the merchant's limits, their validation
//! at load, and the pure decision function.
//!
//! The ledger gathers the exposure and context inside the decision's
//! transaction and calls [`evaluate`]; nothing here touches disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::time::{ClockTrust, Timestamp};

/// The brief's hard ceiling on the forwarding deadline (72 h).
pub const MAX_FORWARDING_DEADLINE_SECS: u64 = 72 * 3600;

/// Offline limits as written in a config file or sent by the backend, before
/// validation. Every key has a default that errs on the safe side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Version of this set of limits; a backend update replaces the current
    /// set only when its version is newer.
    pub version: u64,
    /// Per-payment cap (the EMV floor limit) per currency, in minor units.
    /// A currency missing here is never approved offline.
    pub per_payment_cap: BTreeMap<String, i64>,
    /// Cap on the outstanding offline amount per currency, in minor units.
    pub total_outstanding_cap: BTreeMap<String, i64>,
    /// Cap on the number of outstanding offline payments.
    pub max_outstanding_count: u32,
    /// Oldest unforwarded offline approval allowed before offline approval
    /// stops, in seconds (at most 72 h).
    pub forwarding_deadline_secs: u64,
    /// Offline payments allowed per card fingerprint within the window.
    pub velocity_max_per_card: u32,
    /// The velocity window, in seconds.
    pub velocity_window_secs: u64,
    /// No backend contact for this long: per-payment caps are scaled by
    /// `stale_cap_percent`.
    pub stale_after_secs: u64,
    /// Percentage of the per-payment cap allowed while stale.
    pub stale_cap_percent: u8,
    /// No backend contact for this long: no offline approval at all.
    pub offline_off_after_secs: u64,
    /// How far the wall clock may lag the last known-good time.
    pub clock_tolerance_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            version: 0,
            per_payment_cap: BTreeMap::new(),
            total_outstanding_cap: BTreeMap::new(),
            max_outstanding_count: 200,
            forwarding_deadline_secs: 24 * 3600,
            velocity_max_per_card: 3,
            velocity_window_secs: 24 * 3600,
            stale_after_secs: 12 * 3600,
            stale_cap_percent: 50,
            offline_off_after_secs: 72 * 3600,
            clock_tolerance_secs: 300,
        }
    }
}

/// A limit that failed validation, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid offline limit `{key}`: {message}")]
pub struct PolicyError {
    /// The config key, e.g. `offline.per_payment_cap.EUR`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        key: key.into(),
        message: message.into(),
    }
}

/// Validated offline limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Version (see [`LimitsConfig::version`]).
    pub version: u64,
    /// Per-payment caps.
    pub per_payment_cap: BTreeMap<Currency, i64>,
    /// Outstanding-amount caps.
    pub total_outstanding_cap: BTreeMap<Currency, i64>,
    /// Outstanding-count cap.
    pub max_outstanding_count: u32,
    /// Forwarding deadline in seconds.
    pub forwarding_deadline_secs: u64,
    /// Velocity count per card.
    pub velocity_max_per_card: u32,
    /// Velocity window in seconds.
    pub velocity_window_secs: u64,
    /// Staleness (stricter caps) after, in seconds.
    pub stale_after_secs: u64,
    /// Cap percentage while stale.
    pub stale_cap_percent: u8,
    /// Staleness (offline off) after, in seconds.
    pub offline_off_after_secs: u64,
    /// Clock tolerance in seconds.
    pub clock_tolerance_secs: u64,
}

impl LimitsConfig {
    /// Validates every key; `prefix` names the table in error messages
    /// (`offline` for the config file).
    pub fn validate(&self, prefix: &str) -> Result<Limits, PolicyError> {
        let per = parse_caps(&self.per_payment_cap, &format!("{prefix}.per_payment_cap"))?;
        let total = parse_caps(
            &self.total_outstanding_cap,
            &format!("{prefix}.total_outstanding_cap"),
        )?;
        for (cur, cap) in &per {
            match total.get(cur) {
                None => {
                    return Err(invalid(
                        format!("{prefix}.total_outstanding_cap.{cur}"),
                        format!("missing: {prefix}.per_payment_cap.{cur} is set"),
                    ));
                }
                Some(t) if cap > t => {
                    return Err(invalid(
                        format!("{prefix}.per_payment_cap.{cur}"),
                        format!("{cap} is above {prefix}.total_outstanding_cap.{cur} ({t})"),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.forwarding_deadline_secs == 0
            || self.forwarding_deadline_secs > MAX_FORWARDING_DEADLINE_SECS
        {
            return Err(invalid(
                format!("{prefix}.forwarding_deadline_secs"),
                format!(
                    "{} is outside 1..={MAX_FORWARDING_DEADLINE_SECS} (72 h)",
                    self.forwarding_deadline_secs
                ),
            ));
        }
        if self.velocity_window_secs == 0 {
            return Err(invalid(
                format!("{prefix}.velocity_window_secs"),
                "must be positive",
            ));
        }
        if self.stale_cap_percent > 100 {
            return Err(invalid(
                format!("{prefix}.stale_cap_percent"),
                format!("{} is above 100", self.stale_cap_percent),
            ));
        }
        if self.stale_after_secs > self.offline_off_after_secs {
            return Err(invalid(
                format!("{prefix}.stale_after_secs"),
                format!(
                    "{} is above {prefix}.offline_off_after_secs ({})",
                    self.stale_after_secs, self.offline_off_after_secs
                ),
            ));
        }
        Ok(Limits {
            version: self.version,
            per_payment_cap: per,
            total_outstanding_cap: total,
            max_outstanding_count: self.max_outstanding_count,
            forwarding_deadline_secs: self.forwarding_deadline_secs,
            velocity_max_per_card: self.velocity_max_per_card,
            velocity_window_secs: self.velocity_window_secs,
            stale_after_secs: self.stale_after_secs,
            stale_cap_percent: self.stale_cap_percent,
            offline_off_after_secs: self.offline_off_after_secs,
            clock_tolerance_secs: self.clock_tolerance_secs,
        })
    }
}

fn parse_caps(
    raw: &BTreeMap<String, i64>,
    key: &str,
) -> Result<BTreeMap<Currency, i64>, PolicyError> {
    let mut out = BTreeMap::new();
    for (code, cap) in raw {
        let cur =
            Currency::new(code).map_err(|e| invalid(format!("{key}.{code}"), e.to_string()))?;
        if *cap < 0 {
            return Err(invalid(
                format!("{key}.{code}"),
                format!("negative cap {cap}"),
            ));
        }
        out.insert(cur, *cap);
    }
    Ok(out)
}

impl Limits {
    /// Limits that approve nothing offline (a fresh cart with no config).
    pub fn none() -> Self {
        let d = LimitsConfig::default();
        Limits {
            version: 0,
            per_payment_cap: BTreeMap::new(),
            total_outstanding_cap: BTreeMap::new(),
            max_outstanding_count: 0,
            forwarding_deadline_secs: d.forwarding_deadline_secs,
            velocity_max_per_card: 0,
            velocity_window_secs: d.velocity_window_secs,
            stale_after_secs: d.stale_after_secs,
            stale_cap_percent: d.stale_cap_percent,
            offline_off_after_secs: d.offline_off_after_secs,
            clock_tolerance_secs: d.clock_tolerance_secs,
        }
    }
}

/// The ledger's own health as far as offline approval is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LedgerIntegrity {
    /// The ledger and the monotonic counter agree.
    Bound,
    /// The ledger is behind the monotonic counter: a restored older copy.
    RolledBack {
        /// Offline approvals the ledger knows of, as a counter value.
        ledger: u64,
        /// The counter's value.
        counter: u64,
    },
    /// The counter cannot be read or does not match this ledger at all.
    CounterMismatch {
        /// What went wrong.
        detail: String,
    },
}

/// Outstanding offline exposure: approved offline, not yet answered by the backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// Outstanding amount per currency, minor units.
    pub amount: BTreeMap<Currency, i64>,
    /// Outstanding payments.
    pub count: u32,
    /// The oldest offline approval not yet handed to the broker.
    pub oldest_unforwarded: Option<Timestamp>,
}

/// Everything the decision depends on besides the limits and the amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The wall clock now.
    pub now: Timestamp,
    /// The trusted-time verdict on `now`.
    pub clock: ClockTrust,
    /// Last successful contact with the backend.
    pub last_backend_contact: Option<Timestamp>,
    /// Offline payments by this card within the velocity window.
    pub card_recent_offline: u32,
    /// The card's fingerprint is on the deny-list.
    pub card_denied: bool,
    /// The ledger's binding to the monotonic counter.
    pub integrity: LedgerIntegrity,
    /// Free space for payments has run below the reserve.
    pub storage_low: Option<StorageLow>,
    /// Current exposure.
    pub exposure: Exposure,
}

/// Free space below the payment reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageLow {
    /// Bytes free.
    pub free_bytes: u64,
    /// Bytes reserved for payments.
    pub reserve_bytes: u64,
}

/// Why an offline approval was refused, machine-readable for the UI and
/// the journal: which limit, the current value and the limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "limit")]
pub enum OfflineReason {
    /// The payment asked for online authorization only.
    OnlineRequired,
    /// No offline cap is configured for this currency.
    CurrencyNotAllowed {
        /// The currency.
        currency: Currency,
    },
    /// Above the per-payment cap (possibly reduced while stale).
    PerPaymentCap {
        /// The amount asked.
        amount: i64,
        /// The cap in force.
        cap: i64,
    },
    /// The outstanding offline amount would exceed its cap.
    OutstandingAmount {
        /// Outstanding now.
        outstanding: i64,
        /// The amount asked.
        amount: i64,
        /// The cap.
        cap: i64,
    },
    /// The outstanding offline count is at its cap.
    OutstandingCount {
        /// Outstanding now.
        count: u32,
        /// The cap.
        cap: u32,
    },
    /// An offline approval waits longer than the forwarding deadline.
    ForwardingDeadline {
        /// Age of the oldest unforwarded approval, seconds.
        oldest_age_secs: u64,
        /// The deadline, seconds.
        deadline_secs: u64,
    },
    /// This card reached its offline velocity limit.
    CardVelocity {
        /// Offline payments by this card in the window.
        count: u32,
        /// The cap.
        cap: u32,
        /// The window, seconds.
        window_secs: u64,
    },
    /// The card is on the backend's deny-list.
    CardDenied,
    /// No contact with the backend for too long.
    BackendStale {
        /// Seconds since the last contact, or none ever.
        since_secs: Option<u64>,
        /// The limit, seconds.
        limit_secs: u64,
    },
    /// The wall clock cannot be trusted.
    ClockUntrusted {
        /// The verdict.
        clock: ClockTrust,
    },
    /// The ledger is a rolled-back copy or its counter does not match.
    LedgerIntegrity {
        /// The verdict.
        integrity: LedgerIntegrity,
    },
    /// The space reserved for payments runs low.
    StorageLow(StorageLow),
}

/// The offline policy's verdict on one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineDecision {
    /// Approved offline.
    pub approved: bool,
    /// Every limit that refused it (empty when approved).
    pub reasons: Vec<OfflineReason>,
    /// The per-payment cap that applied (reduced while stale).
    pub cap_applied: Option<i64>,
    /// Exposure before this payment.
    pub exposure: Exposure,
}

/// Decides one offline authorization. Pure: every input is explicit.
pub fn evaluate(
    limits: &Limits,
    amount: Money,
    online_required: bool,
    ctx: &Context,
) -> OfflineDecision {
    let mut reasons = Vec::new();
    if online_required {
        reasons.push(OfflineReason::OnlineRequired);
    }
    if ctx.integrity != LedgerIntegrity::Bound {
        reasons.push(OfflineReason::LedgerIntegrity {
            integrity: ctx.integrity.clone(),
        });
    }
    if ctx.clock != ClockTrust::Trusted {
        reasons.push(OfflineReason::ClockUntrusted { clock: ctx.clock });
    }
    if let Some(low) = ctx.storage_low {
        reasons.push(OfflineReason::StorageLow(low));
    }
    let since_contact = ctx.last_backend_contact.map(|t| ctx.now.secs_since(t));
    let stale = match since_contact {
        None => {
            reasons.push(OfflineReason::BackendStale {
                since_secs: None,
                limit_secs: limits.offline_off_after_secs,
            });
            true
        }
        Some(s) if s >= limits.offline_off_after_secs => {
            reasons.push(OfflineReason::BackendStale {
                since_secs: Some(s),
                limit_secs: limits.offline_off_after_secs,
            });
            true
        }
        Some(s) => s >= limits.stale_after_secs,
    };
    let mut cap_applied = None;
    match limits.per_payment_cap.get(&amount.currency) {
        None => reasons.push(OfflineReason::CurrencyNotAllowed {
            currency: amount.currency,
        }),
        Some(&cap) => {
            let cap = if stale {
                cap.saturating_mul(i64::from(limits.stale_cap_percent)) / 100
            } else {
                cap
            };
            cap_applied = Some(cap);
            if amount.minor > cap || amount.minor <= 0 {
                reasons.push(OfflineReason::PerPaymentCap {
                    amount: amount.minor,
                    cap,
                });
            }
            let outstanding = ctx
                .exposure
                .amount
                .get(&amount.currency)
                .copied()
                .unwrap_or(0);
            let total_cap = limits
                .total_outstanding_cap
                .get(&amount.currency)
                .copied()
                .unwrap_or(0);
            if outstanding.saturating_add(amount.minor) > total_cap {
                reasons.push(OfflineReason::OutstandingAmount {
                    outstanding,
                    amount: amount.minor,
                    cap: total_cap,
                });
            }
        }
    }
    if ctx.exposure.count >= limits.max_outstanding_count {
        reasons.push(OfflineReason::OutstandingCount {
            count: ctx.exposure.count,
            cap: limits.max_outstanding_count,
        });
    }
    if let Some(oldest) = ctx.exposure.oldest_unforwarded {
        let age = ctx.now.secs_since(oldest);
        if age >= limits.forwarding_deadline_secs {
            reasons.push(OfflineReason::ForwardingDeadline {
                oldest_age_secs: age,
                deadline_secs: limits.forwarding_deadline_secs,
            });
        }
    }
    if ctx.card_recent_offline >= limits.velocity_max_per_card {
        reasons.push(OfflineReason::CardVelocity {
            count: ctx.card_recent_offline,
            cap: limits.velocity_max_per_card,
            window_secs: limits.velocity_window_secs,
        });
    }
    if ctx.card_denied {
        reasons.push(OfflineReason::CardDenied);
    }
    OfflineDecision {
        approved: reasons.is_empty(),
        reasons,
        cap_applied,
        exposure: ctx.exposure.clone(),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
