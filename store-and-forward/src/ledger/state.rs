//! Cart-level state persisted through the ledger: trusted time, backend
//! contact, versioned downstream updates (limits, deny-list, others), and
//! the status report.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Ledger;
use crate::error::LedgerError;
use crate::money::Currency;
use crate::policy::{Exposure, LedgerIntegrity, Limits, LimitsConfig};
use crate::time::{
    ClockTrust, MonoPoint, TimeVerdict, Timestamp, TrustPoint, clock_trust, judge_backend_time,
};

/// Well-known keys of the `meta` and `cart_state` tables.
pub mod keys {
    /// meta: a value sealed with the data key, to check the key at open.
    pub const DATA_KEY_CHECK: &str = "data_key_check";
    /// meta: the ledger's random id.
    pub const LEDGER_ID: &str = "ledger_id";
    /// meta: counter value the ledger expects (bound value + offline approvals).
    pub const COUNTER_EXPECTED: &str = "counter_expected";
    /// meta: counter value when the ledger was bound.
    pub const COUNTER_BOUND_AT: &str = "counter_bound_at";
    /// meta: when it was bound.
    pub const COUNTER_BOUND_MS: &str = "counter_bound_ms";
    /// cart_state: the last wall-clock time known to be good (ms).
    pub const LAST_KNOWN_GOOD_MS: &str = "time.last_known_good_ms";
    /// cart_state: the boot in which it was learnt (the kernel's boot id).
    pub const KNOWN_GOOD_BOOT_ID: &str = "time.known_good_boot_id";
    /// cart_state: when, on that boot's elapsed-time clock (ms).
    pub const KNOWN_GOOD_MONO_MS: &str = "time.known_good_mono_ms";
    /// cart_state: the last successful contact with the backend (ms).
    pub const LAST_BACKEND_CONTACT_MS: &str = "backend.last_contact_ms";
    /// cart_state: the offline limits in force (JSON).
    pub const LIMITS: &str = "policy.limits";
    /// cart_state: the deny-list version.
    pub const DENY_LIST_VERSION: &str = "policy.deny_list_version";
    /// cart_state: the staff list version (age checks; absent: no list).
    pub const STAFF_LIST_VERSION: &str = "staff.list_version";
    /// cart_state: the staff list's salt (base64).
    pub const STAFF_LIST_SALT: &str = "staff.list_salt";
    /// cart_state: telemetry events dropped over quota, in all.
    pub const TELEMETRY_DROPPED: &str = "telemetry.dropped";
    /// cart_state prefix for other downstream versions (`downstream.<name>`).
    pub const DOWNSTREAM_PREFIX: &str = "downstream.";
}

pub(crate) fn read_meta(conn: &Connection, key: &str) -> Result<Option<String>, LedgerError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn write_meta(conn: &Connection, key: &str, value: &str) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

pub(crate) fn read_state(conn: &Connection, key: &str) -> Result<Option<String>, LedgerError> {
    Ok(conn
        .query_row("SELECT value FROM cart_state WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

pub(crate) fn write_state(
    conn: &Connection,
    key: &str,
    value: &str,
    now: Timestamp,
) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO cart_state (key, value, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        params![key, value, now.0],
    )?;
    Ok(())
}

pub(crate) fn read_state_i64(conn: &Connection, key: &str) -> Result<Option<i64>, LedgerError> {
    Ok(read_state(conn, key)?.and_then(|s| s.parse().ok()))
}

/// Whether a versioned update was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum UpdateOutcome {
    /// Newer than the current version: applied.
    Applied,
    /// Same or older than the current version: ignored (a replay or an
    /// out-of-order delivery). Still acknowledged by the uplink.
    Ignored {
        /// The version in force.
        current: u64,
    },
    /// A delta whose base is not the version held (one was lost or came
    /// out of order): not applied; the uplink rejects it (`base_mismatch`)
    /// and asks for the stream whole.
    BaseMismatch {
        /// The version in force.
        current: u64,
    },
}

/// Queue depth of one outbox class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxDepth {
    /// Class name.
    pub class: String,
    /// Records waiting.
    pub pending: u64,
    /// Bytes waiting.
    pub pending_bytes: u64,
    /// Creation time of the oldest waiting record.
    pub oldest_pending: Option<Timestamp>,
    /// Records quarantined.
    pub quarantined: u64,
}

/// Everything `cartctl status` and the UI show about the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerStatus {
    /// Binding to the monotonic counter (`None`: not read, a read-only look).
    pub integrity: Option<LedgerIntegrity>,
    /// The wall clock's trust verdict.
    pub clock: ClockTrust,
    /// Last known-good time.
    pub last_known_good: Option<Timestamp>,
    /// Last backend contact.
    pub last_backend_contact: Option<Timestamp>,
    /// The limits in force.
    pub limits: Limits,
    /// Outstanding offline exposure.
    pub exposure: Exposure,
    /// Payments per state.
    pub payments: BTreeMap<String, u64>,
    /// Merchant losses: declined after forward, amount per currency.
    pub declined_after_forward: BTreeMap<Currency, i64>,
    /// Outbox depth per class.
    pub outbox: Vec<OutboxDepth>,
    /// Telemetry dropped over quota since the ledger was created.
    pub telemetry_dropped: u64,
    /// Payment records set aside (forwards, inquiries): each needs a
    /// technician or the backend. Their exposure stays counted.
    #[serde(default)]
    pub quarantined_payments: Vec<QuarantinedPayment>,
    /// The staff list version held for age checks (0: none yet, so every
    /// badge is refused).
    #[serde(default)]
    pub staff_list_version: u64,
    /// The recovery keys the data key is wrapped to (none: a dead TPM
    /// would strand the offline payments it seals; see docs/identity.md).
    #[serde(default)]
    pub recovery_keys: Vec<String>,
    /// Remote jobs: the one in hand (`jobs.current`), the last finished
    /// (`jobs.last`), the update in flight and the last update's result
    /// (`update.pending`, `update.last`), as JSON, and an operator's out of service
    /// (`operator.out_of_service`, its reason).
    #[serde(default)]
    pub jobs: BTreeMap<String, String>,
}

/// A payment record set aside: the broker refused it for good, or it could
/// not be read. [`Ledger::release_quarantined`] queues it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedPayment {
    /// The payment's idempotency key (as stored; text).
    pub payment: String,
    /// The record's kind (`payment_forward`, `payment_inquiry`, ...).
    pub kind: String,
    /// Why it was set aside.
    pub reason: String,
    /// When.
    pub since: Option<Timestamp>,
    /// Amount, minor units, and currency.
    pub amount_minor: i64,
    /// Currency code.
    pub currency: String,
}

impl Ledger {
    /// Reads a cart-state value.
    pub fn state(&self, key: &str) -> Result<Option<String>, LedgerError> {
        read_state(&self.conn, key)
    }

    /// Writes a cart-state value (one commit).
    pub fn set_state(&mut self, key: &str, value: &str, now: Timestamp) -> Result<(), LedgerError> {
        self.relaxed(|l| l.set_state_inner(key, value, now))
    }

    fn set_state_inner(
        &mut self,
        key: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        write_state(&self.conn, key, value, now)?;
        self.note_commit();
        Ok(())
    }

    /// Writes (`Some`) or deletes (`None`) several cart-state values in
    /// one transaction, fsynced before it returns (`synchronous=FULL`):
    /// for steps that must survive a power cut before the cart acts on
    /// them (provisioning, certificate rotation: which TPM key is active).
    pub fn set_states_durable(
        &mut self,
        entries: &[(&str, Option<&str>)],
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.ensure_durable()?;
        let tx = self.conn.transaction()?;
        for (key, value) in entries {
            match value {
                Some(v) => write_state(&tx, key, v, now)?,
                None => {
                    tx.execute("DELETE FROM cart_state WHERE key = ?1", [key])?;
                }
            }
        }
        tx.commit()?;
        self.note_commit();
        Ok(())
    }

    /// Every cart-state value whose key starts with `prefix`.
    pub fn states_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, String>, LedgerError> {
        states_with_prefix(&self.conn, prefix)
    }

    /// Records a time known to be good (from the backend or a verified TLS
    /// session). Only moves forward.
    pub fn record_known_good_time(
        &mut self,
        good: Timestamp,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let cur = read_state_i64(&self.conn, keys::LAST_KNOWN_GOOD_MS)?;
        if cur.is_none_or(|c| good.0 > c) {
            self.set_state(keys::LAST_KNOWN_GOOD_MS, &good.0.to_string(), now)?;
        }
        Ok(())
    }

    /// The last known-good time and where on the cart's own clock it was
    /// learnt.
    pub fn trust_point(&self) -> Result<Option<TrustPoint>, LedgerError> {
        let Some(known_good) = read_state_i64(&self.conn, keys::LAST_KNOWN_GOOD_MS)? else {
            return Ok(None);
        };
        let boot_id = read_state(&self.conn, keys::KNOWN_GOOD_BOOT_ID)?;
        let ms = read_state_i64(&self.conn, keys::KNOWN_GOOD_MONO_MS)?;
        Ok(Some(TrustPoint {
            known_good: Timestamp(known_good),
            at: boot_id
                .zip(ms)
                .map(|(boot_id, ms)| MonoPoint { boot_id, ms }),
        }))
    }

    /// Judges a time the backend sent ([`judge_backend_time`]) and records
    /// it as known-good when the cart can vouch for it, with where on the
    /// cart's own clock (`here`) it was learnt. An unvouched time is
    /// logged and ignored.
    pub fn record_backend_time(
        &mut self,
        backend: Timestamp,
        now: Timestamp,
        here: Option<&MonoPoint>,
        slack_secs: u64,
    ) -> Result<TimeVerdict, LedgerError> {
        let prev = self.trust_point()?;
        let verdict = judge_backend_time(prev.as_ref(), backend, now, here, slack_secs);
        match verdict {
            TimeVerdict::Advance(good) => self.relaxed(|l| {
                let tx = l.conn.unchecked_transaction()?;
                write_state(&tx, keys::LAST_KNOWN_GOOD_MS, &good.0.to_string(), now)?;
                match here {
                    Some(h) => {
                        write_state(&tx, keys::KNOWN_GOOD_BOOT_ID, &h.boot_id, now)?;
                        write_state(&tx, keys::KNOWN_GOOD_MONO_MS, &h.ms.to_string(), now)?;
                    }
                    None => {
                        for key in [keys::KNOWN_GOOD_BOOT_ID, keys::KNOWN_GOOD_MONO_MS] {
                            tx.execute("DELETE FROM cart_state WHERE key = ?1", [key])?;
                        }
                    }
                }
                tx.commit()?;
                l.note_commit();
                Ok(())
            })?,
            TimeVerdict::Unvouched { upper } => warn!(
                backend_ms = backend.0,
                upper_ms = upper.0,
                "backend time further ahead than the cart can vouch for: ignored"
            ),
            TimeVerdict::Behind => {}
        }
        Ok(verdict)
    }

    /// Records a successful contact with the backend at `at` (the cart's
    /// own clock: staleness is measured with it). Trusted time comes from
    /// [`Ledger::record_known_good_time`] with the backend's timestamp.
    pub fn record_backend_contact(&mut self, at: Timestamp) -> Result<(), LedgerError> {
        self.set_state(keys::LAST_BACKEND_CONTACT_MS, &at.0.to_string(), at)
    }

    /// The trusted-time verdict for `now`.
    pub fn clock_trust(&self, now: Timestamp) -> Result<ClockTrust, LedgerError> {
        let good = read_state_i64(&self.conn, keys::LAST_KNOWN_GOOD_MS)?.map(Timestamp);
        Ok(clock_trust(now, good, self.limits.clock_tolerance_secs))
    }

    /// Applies offline limits from the backend when their version is newer.
    /// Invalid limits are refused whole (the error names the key).
    pub fn apply_limits_update(
        &mut self,
        update: &LimitsConfig,
        now: Timestamp,
    ) -> Result<UpdateOutcome, LedgerError> {
        let limits = update.validate("limits")?;
        if limits.version <= self.limits.version {
            return Ok(UpdateOutcome::Ignored {
                current: self.limits.version,
            });
        }
        let json = serde_json::to_string(&limits).map_err(|e| LedgerError::BadValue {
            table: "cart_state",
            column: "policy.limits",
            value: e.to_string(),
        })?;
        // Durable before the uplink acknowledges it.
        self.set_states_durable(&[(keys::LIMITS, Some(json.as_str()))], now)?;
        info!(version = limits.version, "offline limits updated");
        self.limits = limits;
        Ok(UpdateOutcome::Applied)
    }

    /// Uses persisted limits when they are newer than the config's; persists
    /// the config's when they are newer.
    pub(crate) fn load_persisted_limits(&mut self, now: Timestamp) -> Result<(), LedgerError> {
        let persisted = match read_state(&self.conn, keys::LIMITS)? {
            Some(json) => match serde_json::from_str::<Limits>(&json) {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!(cause = %e, "persisted limits unreadable; using the config's");
                    None
                }
            },
            None => None,
        };
        match persisted {
            Some(p) if p.version > self.limits.version => self.limits = p,
            Some(p) if p.version == self.limits.version => {}
            _ => {
                if let Ok(json) = serde_json::to_string(&self.limits) {
                    self.set_state(keys::LIMITS, &json, now)?;
                }
            }
        }
        Ok(())
    }

    /// Applies a deny-list update when `version` is newer: `replace` swaps
    /// the whole list, otherwise `add`/`remove` are applied as a delta on
    /// `base_version` (when given, it must be the version held, or nothing
    /// changes: [`UpdateOutcome::BaseMismatch`]). Committed with a full
    /// fsync: the uplink acknowledges it next.
    pub fn apply_deny_list(
        &mut self,
        version: u64,
        base_version: Option<u64>,
        replace: bool,
        add: &[Vec<u8>],
        remove: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<UpdateOutcome, LedgerError> {
        self.ensure_durable()?;
        let tx = self.conn.transaction()?;
        let current = read_state_i64(&tx, keys::DENY_LIST_VERSION)?.unwrap_or(0) as u64;
        if version <= current {
            return Ok(UpdateOutcome::Ignored { current });
        }
        if !replace && base_version.is_some_and(|b| b != current) {
            warn!(
                version,
                base = base_version,
                current,
                "deny-list delta on another version: asking for the whole list"
            );
            return Ok(UpdateOutcome::BaseMismatch { current });
        }
        if replace {
            tx.execute("DELETE FROM deny_list", [])?;
        }
        for f in remove {
            tx.execute("DELETE FROM deny_list WHERE fingerprint = ?1", [f])?;
        }
        for f in add {
            tx.execute(
                "INSERT OR IGNORE INTO deny_list (fingerprint) VALUES (?1)",
                [f],
            )?;
        }
        write_state(&tx, keys::DENY_LIST_VERSION, &version.to_string(), now)?;
        tx.commit()?;
        self.note_commit();
        info!(
            version,
            added = add.len(),
            removed = remove.len(),
            replace,
            "deny-list updated"
        );
        Ok(UpdateOutcome::Applied)
    }

    /// The deny-list's fingerprints, sorted.
    pub fn deny_list(&self) -> Result<Vec<Vec<u8>>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT fingerprint FROM deny_list ORDER BY fingerprint")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records `version` of a named downstream stream (catalog, ...) when it
    /// is newer than the one recorded: the rule every versioned update follows.
    pub fn accept_downstream_version(
        &mut self,
        name: &str,
        version: u64,
        now: Timestamp,
    ) -> Result<UpdateOutcome, LedgerError> {
        let key = format!("{}{name}", keys::DOWNSTREAM_PREFIX);
        let current = read_state_i64(&self.conn, &key)?.unwrap_or(0) as u64;
        if version <= current {
            return Ok(UpdateOutcome::Ignored { current });
        }
        // Durable before the uplink acknowledges it.
        self.set_states_durable(&[(key.as_str(), Some(version.to_string().as_str()))], now)?;
        Ok(UpdateOutcome::Applied)
    }

    /// The status report.
    pub fn status(&self, now: Timestamp) -> Result<LedgerStatus, LedgerError> {
        status_of(
            &self.conn,
            Some(self.integrity.clone()),
            self.limits.clone(),
            Some(self.telemetry_bytes),
            now,
        )
    }
}

/// The status report from a connection. `integrity` is `None` when the
/// counter was not read (a read-only look while the daemon is down).
pub(crate) fn status_of(
    conn: &Connection,
    integrity: Option<LedgerIntegrity>,
    limits: Limits,
    telemetry_bytes: Option<u64>,
    now: Timestamp,
) -> Result<LedgerStatus, LedgerError> {
    let mut payments = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM payments GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (s, n) = row?;
            payments.insert(s, n as u64);
        }
    }
    let mut losses = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT currency, SUM(amount_minor) FROM payments WHERE state = 'declined_after_forward'
             GROUP BY currency",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (c, n) = row?;
            if let Ok(c) = Currency::new(&c) {
                losses.insert(c, n);
            }
        }
    }
    let known_good = read_state_i64(conn, keys::LAST_KNOWN_GOOD_MS)?.map(Timestamp);
    Ok(LedgerStatus {
        integrity,
        clock: clock_trust(now, known_good, limits.clock_tolerance_secs),
        last_known_good: known_good,
        last_backend_contact: read_state_i64(conn, keys::LAST_BACKEND_CONTACT_MS)?.map(Timestamp),
        exposure: super::payments::exposure(conn)?,
        limits,
        payments,
        declined_after_forward: losses,
        outbox: super::outbox::outbox_depth(conn, telemetry_bytes)?,
        telemetry_dropped: read_state_i64(conn, keys::TELEMETRY_DROPPED)?.unwrap_or(0) as u64,
        quarantined_payments: super::outbox::quarantined_payments(conn, 50)?,
        staff_list_version: read_state_i64(conn, keys::STAFF_LIST_VERSION)?.unwrap_or(0) as u64,
        recovery_keys: super::recovery::key_ids(conn)?,
        jobs: {
            let mut jobs = states_with_prefix(conn, "jobs.")?;
            jobs.extend(states_with_prefix(conn, "operator.")?);
            jobs.extend(states_with_prefix(conn, "update.")?);
            jobs
        },
    })
}

fn states_with_prefix(
    conn: &Connection,
    prefix: &str,
) -> Result<BTreeMap<String, String>, LedgerError> {
    let mut stmt = conn.prepare(
        "SELECT key, value FROM cart_state WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
    )?;
    let rows = stmt.query_map([prefix], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (k, v) = row?;
        out.insert(k, v);
    }
    Ok(out)
}

/// The cart-state values whose key starts with `prefix`, from the ledger
/// at `path` opened read-only (nothing written, no recovery): for
/// `cartctl status` while the daemon is down. A ledger whose creation was
/// interrupted (an empty database) has none.
pub fn read_only_states(
    path: &std::path::Path,
    prefix: &str,
) -> Result<BTreeMap<String, String>, LedgerError> {
    let conn = super::open::open_read_only(path)?;
    if !super::open::check_existing(&conn, path)? {
        // An empty database: a creation interrupted by a crash; no state yet.
        return Ok(BTreeMap::new());
    }
    states_with_prefix(&conn, prefix)
}

/// The status of the ledger at `path`, read-only, for `cartctl status`
/// while the daemon is down: nothing is written, no recovery runs, and the
/// monotonic counter is not read (`integrity` is `None`).
pub fn read_only_status(
    path: &std::path::Path,
    now: Timestamp,
) -> Result<LedgerStatus, LedgerError> {
    let conn = super::open::open_read_only(path)?;
    super::open::check_existing(&conn, path)?;
    let limits = read_state(&conn, keys::LIMITS)?
        .and_then(|json| serde_json::from_str::<Limits>(&json).ok())
        .unwrap_or_else(Limits::none);
    status_of(&conn, None, limits, None, now)
}
