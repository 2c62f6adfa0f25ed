//! The recovery export: what a cart whose TPM died still owes the backend.
//!
//! [`export_read_only`] reads a ledger file read-only, without the TPM and
//! without running any recovery: every payment the backend must still hear
//! about (offline approvals not yet confirmed: a forward; attempts left
//! without a decision: an inquiry; approvals never shown whose reversal is
//! not answered yet: a reversal), with its card data still sealed under
//! the data key, plus the data key wrapped to the backend's recovery keys
//! and the ledger's key check. Nothing in it is card data in clear: the
//! masked PAN and the reader's fingerprint are clear in the ledger too.
//!
//! The backend unwraps the data key with its recovery private key and calls
//! [`RecoveryExport::open`] to get the forwards back (`tests/backend-emulator`
//! has the tool; `docs/identity.md` the procedure).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::outbox::{
    KIND_PAYMENT_FORWARD, KIND_PAYMENT_INQUIRY, KIND_PAYMENT_REVERSAL, PaymentForward,
};
use super::payments::{key_from_blob, split_plaintext};
use super::state::{keys, read_meta};
use crate::datakey::Sealer;
use crate::error::LedgerError;
use crate::money::{Currency, Money};
use crate::payment::{EntryMode, PaymentKey, PaymentState};
use crate::time::Timestamp;

/// The export file's format version.
pub const EXPORT_FORMAT: u32 = 1;

/// A ledger's unforwarded payments, sealed, with the wrapped data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryExport {
    /// [`EXPORT_FORMAT`].
    pub format: u32,
    /// The cart (the envelope's `cart` when the records are forwarded).
    pub cart_id: String,
    /// The ledger's id (the context the wrapped key is bound to).
    pub ledger_id: String,
    /// When the export was made, ms since the epoch.
    pub exported_ms: i64,
    /// The ledger's data-key check (a known value sealed with the data
    /// key, hex): proves an unwrapped key is the right one.
    pub data_key_check: String,
    /// The data key wrapped to each recovery key (base64).
    pub wrapped_keys: Vec<WrappedKey>,
    /// The payments the backend must still hear about.
    pub records: Vec<ExportedPayment>,
}

/// The data key wrapped to one recovery key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The recovery key's id.
    pub key_id: String,
    /// The wrapped key, base64.
    pub wrapped: String,
}

/// One payment, its card data sealed as in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedPayment {
    /// `payment_forward` (an offline approval to authorize),
    /// `payment_inquiry` (an attempt left without a decision: ask) or
    /// `payment_reversal` (an approval the shopper never saw: give back).
    pub kind: String,
    /// The idempotency key.
    pub key: PaymentKey,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency code.
    pub currency: String,
    /// The payment's state in the ledger.
    pub state: String,
    /// Masked PAN (clear in the ledger too).
    pub masked_pan: String,
    /// The reader's card fingerprint, base64.
    pub fingerprint: String,
    /// Entry mode.
    pub entry_mode: String,
    /// EMV data and the reader's encrypted blob, sealed with the data key
    /// (AES-256-GCM bound to the payment key), base64.
    pub card_sealed: String,
    /// When the attempt was committed, ms.
    pub created_ms: i64,
    /// When it was approved offline, ms.
    pub offline_approved_ms: Option<i64>,
    /// The counter value of that approval.
    pub counter_value: Option<i64>,
}

/// One exported record with its card data unsealed, or why it did not
/// open (the others still do).
pub type OpenedRecord = (ExportedPayment, Result<PaymentForward, ExportError>);

/// An export that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The ledger could not be read (see the cause).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The unwrapped key does not open the ledger's key check: another
    /// ledger's key, or a damaged copy. Nothing is forwarded.
    #[error("the data key does not open this ledger's key check")]
    WrongKey,
    /// A field does not decode (a damaged or edited file).
    #[error("export field {0} does not decode")]
    Field(&'static str),
    /// The format is newer than this code.
    #[error("export format {0} is not supported (this code reads {EXPORT_FORMAT})")]
    Format(u32),
}

/// Exports the unforwarded payments of the ledger at `path`, read-only:
/// no TPM, no recovery run, nothing written to the ledger.
pub fn export_read_only(
    path: &std::path::Path,
    cart_id: &str,
    now: Timestamp,
) -> Result<RecoveryExport, LedgerError> {
    let conn = super::open::open_read_only(path)?;
    super::open::check_existing(&conn, path)?;
    let meta = |k| -> Result<String, LedgerError> { Ok(read_meta(&conn, k)?.unwrap_or_default()) };
    let wrapped_keys = super::recovery::wrapped(&conn)?
        .into_iter()
        .map(|(key_id, w)| WrappedKey {
            key_id,
            wrapped: B64.encode(w),
        })
        .collect();
    Ok(RecoveryExport {
        format: EXPORT_FORMAT,
        cart_id: cart_id.to_owned(),
        ledger_id: meta(keys::LEDGER_ID)?,
        exported_ms: now.0,
        data_key_check: meta(keys::DATA_KEY_CHECK)?,
        wrapped_keys,
        records: records(&conn)?,
    })
}

fn records(conn: &Connection) -> Result<Vec<ExportedPayment>, LedgerError> {
    let forward = [PaymentState::OfflineApproved, PaymentState::Forwarded];
    let inquire = [PaymentState::InDoubt, PaymentState::CardRead];
    let reverse = PaymentState::ReversalPending;
    let mut stmt = conn.prepare(
        "SELECT key, amount_minor, currency, state, masked_pan, fingerprint, entry_mode,
                card_sealed, created_ms, offline_approved_ms, counter_value
         FROM payments WHERE state IN (?1, ?2, ?3, ?4, ?5) ORDER BY seq",
    )?;
    let mut rows = stmt.query([
        forward[0].as_str(),
        forward[1].as_str(),
        inquire[0].as_str(),
        inquire[1].as_str(),
        reverse.as_str(),
    ])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(3)?;
        let kind = if forward.iter().any(|s| s.as_str() == state) {
            KIND_PAYMENT_FORWARD
        } else if state == reverse.as_str() {
            KIND_PAYMENT_REVERSAL
        } else {
            KIND_PAYMENT_INQUIRY
        };
        out.push(ExportedPayment {
            kind: kind.to_owned(),
            key: key_from_blob(&r.get::<_, Vec<u8>>(0)?)?,
            amount_minor: r.get(1)?,
            currency: r.get(2)?,
            state,
            masked_pan: r.get(4)?,
            fingerprint: B64.encode(r.get::<_, Vec<u8>>(5)?),
            entry_mode: r.get(6)?,
            card_sealed: B64.encode(r.get::<_, Vec<u8>>(7)?),
            created_ms: r.get(8)?,
            offline_approved_ms: r.get(9)?,
            counter_value: r.get(10)?,
        });
    }
    Ok(out)
}

impl RecoveryExport {
    /// The wrapped copy for recovery key `key_id`, decoded.
    pub fn wrapped_key(&self, key_id: &str) -> Result<Option<Vec<u8>>, ExportError> {
        self.wrapped_keys
            .iter()
            .find(|w| w.key_id == key_id)
            .map(|w| {
                B64.decode(&w.wrapped)
                    .map_err(|_| ExportError::Field("wrapped"))
            })
            .transpose()
    }

    /// Checks `data_key` against the ledger's key check, then unseals every
    /// record: a forward with its card data, or why that one record does
    /// not open (the others still do).
    pub fn open(&self, data_key: &Zeroizing<[u8; 32]>) -> Result<Vec<OpenedRecord>, ExportError> {
        if self.format != EXPORT_FORMAT {
            return Err(ExportError::Format(self.format));
        }
        let sealer = Sealer::new(data_key);
        let check = super::open::decode_hex(&self.data_key_check)
            .ok_or(ExportError::Field("data_key_check"))?;
        match sealer.open(&check, super::open::KEY_CHECK_AAD) {
            Ok(v) if &v[..] == super::open::KEY_CHECK => {}
            _ => return Err(ExportError::WrongKey),
        }
        Ok(self
            .records
            .iter()
            .map(|p| (p.clone(), open_one(&sealer, p)))
            .collect())
    }
}

fn open_one(sealer: &Sealer, p: &ExportedPayment) -> Result<PaymentForward, ExportError> {
    let sealed = B64
        .decode(&p.card_sealed)
        .map_err(|_| ExportError::Field("card_sealed"))?;
    let plain = sealer
        .open(&sealed, p.key.0.as_bytes())
        .map_err(|_| ExportError::Ledger(LedgerError::Unseal(p.key)))?;
    let (emv, blob) =
        split_plaintext(&plain).ok_or(ExportError::Ledger(LedgerError::Unseal(p.key)))?;
    let currency = Currency::new(&p.currency).map_err(|_| ExportError::Field("currency"))?;
    Ok(PaymentForward {
        key: p.key,
        amount: Money::new(p.amount_minor, currency),
        state: PaymentState::parse(&p.state).ok_or(ExportError::Field("state"))?,
        masked_pan: p.masked_pan.clone(),
        fingerprint: B64
            .decode(&p.fingerprint)
            .map_err(|_| ExportError::Field("fingerprint"))?,
        entry_mode: EntryMode::parse(&p.entry_mode).ok_or(ExportError::Field("entry_mode"))?,
        emv_data: Zeroizing::new(emv),
        encrypted_blob: blob,
        created: Timestamp(p.created_ms),
        offline_approved: p.offline_approved_ms.map(Timestamp),
        counter_value: p.counter_value.map(|v| v as u64),
    })
}
