//! Online authorization: an MQTT 5 request to `carts/{cart}/up/auth_request`
//! answered on `carts/{cart}/rpc/auth_response`, matched by correlation
//! data. Any failure sends the checkout to the offline policy with the same
//! idempotency key; a late answer arrives on the incoming channel and is
//! applied as a late outcome.

use std::time::Duration;

use tracing::{info, warn};

use super::Uplink;
use crate::payment::{BackendOutcome, CardRead, PaymentKey};
use crate::uplink::LinkError;
use crate::wire::down::AuthResponse;
use crate::wire::up::{AuthRequest, CardData};
use crate::wire::{Down, Kind, WireError, decode_down, encode, topics};
use crate::{Money, Timestamp};

/// No usable online answer. The checkout decides offline, same key.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// Link down, timeout or rejection: no answer.
    #[error("no online answer: {0}")]
    Link(#[from] LinkError),
    /// An answer that does not decode: logged, treated as no answer.
    #[error("unreadable online answer: {0}")]
    Wire(#[from] WireError),
    /// An answer that is not an authorization response for this key.
    #[error("online answer for {found}, expected {expected}")]
    WrongAnswer {
        /// The key asked about.
        expected: String,
        /// What came back.
        found: String,
    },
}

impl From<&CardRead> for CardData {
    fn from(c: &CardRead) -> Self {
        CardData {
            masked_pan: c.masked_pan.clone(),
            fingerprint: c.fingerprint.clone(),
            entry_mode: c.entry_mode,
            emv: c.emv_data.clone(),
            blob: c.encrypted_blob.clone(),
        }
    }
}

impl Uplink {
    /// Asks the backend to authorize the attempt `key` (already committed
    /// with its card-read result) within the configured timeout.
    pub async fn authorize_online(
        &self,
        key: &PaymentKey,
        amount: Money,
        card: &CardRead,
        created: Timestamp,
    ) -> Result<BackendOutcome, OnlineError> {
        let cart = &self.config.cart_id;
        let body = AuthRequest {
            amount,
            card: CardData::from(card),
            created,
        };
        let id = key.to_string();
        let payload = encode(Kind::AuthRequest, cart, &id, Timestamp::now(), &body);
        let timeout = Duration::from_millis(self.config.auth_timeout_ms);
        let response = self
            .link
            .request(
                &topics::up(cart, Kind::AuthRequest),
                payload.into(),
                &topics::rpc(cart, Kind::AuthResponse),
                timeout,
            )
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                info!(payment_key = %key, cause = %e, "no online answer: deciding offline");
                return Err(e.into());
            }
        };
        let (header, down) = decode_down(&response.payload, cart).inspect_err(|e| {
            warn!(payment_key = %key, cause = %e, "unreadable online answer: deciding offline");
        })?;
        let Down::AuthResponse(AuthResponse { outcome }) = down else {
            return Err(OnlineError::WrongAnswer {
                expected: id,
                found: format!("{:?}", header.kind),
            });
        };
        if header.id != id {
            return Err(OnlineError::WrongAnswer {
                expected: id,
                found: header.id,
            });
        }
        let now = Timestamp::now();
        super::blocking(|| self.note_contact(header.ts, now));
        self.with_report(|r| r.online_requests += 1);
        Ok(outcome)
    }
}
