//! The TPM: the device key, the ledger's NV counter and sealed data key,
//! all through one owner of the ESAPI context.
//!
//! [`Tpm`] is a cheap, cloneable handle to the owner thread (see
//! `owner.rs`): every TPM command runs there, one at a time, and callers
//! block on their own reply channel, never on a shared lock. A real TPM
//! signs in tens of milliseconds, so call from a thread that may block.
//!
//! - `owner.rs`: the owner thread and its request channel.
//! - `objects.rs`: templates, the storage primary key, persistent objects.
//! - `key.rs`: [`TpmIdentity`], the device key at a persistent handle.
//! - `nv.rs`: [`TpmCounter`], the NV counter that binds the ledger.
//! - `sealed.rs`: the ledger's data key, sealed by the TPM.
//! - `session.rs`: the salted, parameter-encrypted HMAC session that
//!   signing, unsealing and the counter run in (restarted after a TPM
//!   reset).
//!
//! Default handles ([`TpmConfig`]) sit in the owner ranges of the TCG
//! handle registry; `docs/identity.md` lists them.

mod key;
mod nv;
mod objects;
mod owner;
mod sealed;
mod session;

use std::sync::Arc;
use std::time::Duration;

pub use key::TpmIdentity;
pub use nv::{PendingIncrement, TpmCounter};

use crate::identity::IdentityError;

/// Persistent handle of the device key (the active one).
pub const DEVICE_KEY_HANDLE: u32 = 0x8100_0100;
/// Persistent handle for the next device key during a rotation.
pub const NEXT_KEY_HANDLE: u32 = 0x8100_0101;
/// Persistent handle of the sealed data key object.
pub const DATA_KEY_HANDLE: u32 = 0x8100_0102;
/// NV index of the ledger's monotonic counter.
pub const COUNTER_NV_INDEX: u32 = 0x0180_0100;

/// Where the TPM is and which handles the cart uses (the `[tpm]` table of
/// the cart's config).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmConfig {
    /// The TCTI: `device:/dev/tpmrm0` on the cart (the kernel's resource
    /// manager), `swtpm:host=127.0.0.1,port=P` against swtpm.
    pub tcti: String,
    /// Persistent handle of the active device key.
    pub device_key_handle: u32,
    /// Persistent handle for the next key during a rotation.
    pub next_key_handle: u32,
    /// Persistent handle of the sealed data key.
    pub data_key_handle: u32,
    /// NV index of the ledger's counter.
    pub counter_nv_index: u32,
    /// The fleet's recovery public key (PEM, P-256 SPKI), to which the
    /// ledger's data key is wrapped so a dead TPM does not strand the
    /// offline payments it seals. Read by `cart-app`, never by the TPM.
    /// Unset: a warning at every start and in `cartctl status`.
    pub recovery_public_key: Option<std::path::PathBuf>,
    /// How long a TPM command (sign, counter, unseal) may take before the
    /// caller gets a timeout error, in ms ([`TpmTimeouts::command`]).
    pub command_timeout_ms: u64,
    /// How long creating a key, sealed object or NV index may take, in ms
    /// ([`TpmTimeouts::create`]).
    pub create_timeout_ms: u64,
}

impl TpmConfig {
    /// The call timeouts this config sets.
    pub fn timeouts(&self) -> TpmTimeouts {
        TpmTimeouts {
            command: Duration::from_millis(self.command_timeout_ms),
            create: Duration::from_millis(self.create_timeout_ms),
        }
    }
}

impl Default for TpmConfig {
    fn default() -> Self {
        TpmConfig {
            tcti: "device:/dev/tpmrm0".into(),
            device_key_handle: DEVICE_KEY_HANDLE,
            next_key_handle: NEXT_KEY_HANDLE,
            data_key_handle: DATA_KEY_HANDLE,
            counter_nv_index: COUNTER_NV_INDEX,
            recovery_public_key: None,
            command_timeout_ms: 5_000,
            create_timeout_ms: 60_000,
        }
    }
}

/// Maps a tss-esapi error into ours, naming the operation: the one place
/// vendor errors become domain errors.
pub(crate) fn tpm_err(op: &'static str) -> impl Fn(tss_esapi::Error) -> IdentityError {
    move |source| IdentityError::Tpm { op, source }
}

/// A handle to the TPM's owner thread. Clone it freely; the thread (and
/// the TPM connection) ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Tpm {
    owner: Arc<owner::Owner>,
    tcti: Arc<str>,
    timeouts: TpmTimeouts,
}

/// How long a caller waits for the TPM before it gets
/// [`IdentityError::TpmTimeout`] (a hung TPM or resource manager must not
/// hang a TLS handshake or a checkout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpmTimeouts {
    /// Signing, the counter, unsealing, reads (a real TPM: tens of ms).
    pub command: Duration,
    /// Creating a key, a sealed object or an NV index (a real TPM: up to
    /// seconds; these run at first start and at rotation).
    pub create: Duration,
}

impl Default for TpmTimeouts {
    fn default() -> Self {
        TpmTimeouts {
            command: Duration::from_secs(5),
            create: Duration::from_secs(60),
        }
    }
}

impl Tpm {
    /// Connects to the TPM at `tcti` on a new owner thread.
    pub fn open(tcti: &str) -> Result<Tpm, IdentityError> {
        let owner = owner::Owner::start(tcti)?;
        tracing::info!(tcti, "TPM opened");
        Ok(Tpm {
            owner: Arc::new(owner),
            tcti: tcti.into(),
            timeouts: TpmTimeouts::default(),
        })
    }

    /// This handle (and the identities, counters and keys opened from it)
    /// with other call timeouts.
    pub fn with_timeouts(mut self, timeouts: TpmTimeouts) -> Tpm {
        self.timeouts = timeouts;
        self
    }

    /// The call timeouts in force.
    pub fn timeouts(&self) -> TpmTimeouts {
        self.timeouts
    }

    /// The TCTI this handle talks to.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The device key at `handle`, created inside the TPM if the handle is
    /// empty (idempotent: an existing key is reopened, never replaced).
    pub fn identity(&self, handle: u32) -> Result<TpmIdentity, IdentityError> {
        key::load_or_create(self, handle)
    }

    /// The device key at `handle` if there is one; never creates.
    pub fn existing_identity(&self, handle: u32) -> Result<Option<TpmIdentity>, IdentityError> {
        key::load(self, handle)
    }

    /// Evicts whatever is at `handle` and creates a fresh device key there
    /// (a rotation's next key after an interrupted attempt, or a key that
    /// must be abandoned). Certificates for the old key stop working.
    pub fn replace(&self, handle: u32) -> Result<TpmIdentity, IdentityError> {
        self.evict(handle)?;
        key::load_or_create(self, handle)
    }

    /// Removes the object at a persistent handle; false when it was empty.
    pub fn evict(&self, handle: u32) -> Result<bool, IdentityError> {
        let evicted = self.call("evict an object", move |s| objects::evict(s, handle))?;
        if evicted {
            tracing::info!(
                handle = format_args!("{handle:#010x}"),
                "TPM object evicted"
            );
        }
        Ok(evicted)
    }

    /// Whether a persistent handle holds an object.
    pub fn exists(&self, handle: u32) -> Result<bool, IdentityError> {
        self.call("look up a handle", move |s| objects::exists(s, handle))
    }

    /// Every persistent handle in use (to find orphan keys).
    pub fn persistent_handles(&self) -> Result<Vec<u32>, IdentityError> {
        self.call("list persistent handles", objects::list_persistent)
    }

    /// The ledger's monotonic counter at NV index `index`: defined if
    /// missing, incremented once if never written (a counter cannot be
    /// read before its first increment).
    pub fn counter(&self, index: u32) -> Result<TpmCounter, IdentityError> {
        nv::open_or_define(self, index)
    }

    /// The ledger's 32-byte data key, sealed by the TPM at `handle`:
    /// created once from the TPM's random generator, unsealed afterwards.
    pub fn sealed_data_key(
        &self,
        handle: u32,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, IdentityError> {
        sealed::load_or_create(self, handle)
    }

    /// `n` random bytes from the TPM's generator (n <= 48 per call on most
    /// TPMs), encrypted on the bus.
    pub fn random(&self, n: usize) -> Result<Vec<u8>, IdentityError> {
        self.call("get random bytes", move |s| {
            session::run(
                s,
                session::Protect::Response,
                "get random bytes",
                |ctx, _| ctx.get_random(n),
            )
            .map(|d| d.value().to_vec())
        })
    }

    /// How many times the owner thread replaced its TPM session after a
    /// failed command (a TPM reset loses it): for the status page and tests.
    pub fn session_restarts(&self) -> Result<u64, IdentityError> {
        self.call("count session restarts", |s| Ok(s.session_restarts))
    }

    /// A command on the owner thread, within the command timeout.
    fn call<T, F>(&self, op: &'static str, f: F) -> Result<T, IdentityError>
    where
        T: Send + 'static,
        F: FnOnce(&mut owner::State) -> Result<T, IdentityError> + Send + 'static,
    {
        self.owner.call(self.timeouts.command, op, f)
    }

    /// A command queued on the owner thread without waiting: its answer
    /// comes from [`owner::Pending::wait`], within the command timeout.
    fn submit<T, F>(&self, op: &'static str, f: F) -> Result<owner::Pending<T>, IdentityError>
    where
        T: Send + 'static,
        F: FnOnce(&mut owner::State) -> Result<T, IdentityError> + Send + 'static,
    {
        self.owner.submit(self.timeouts.command, op, f)
    }

    /// A command that may create an object, within the create timeout.
    fn call_create<T, F>(&self, op: &'static str, f: F) -> Result<T, IdentityError>
    where
        T: Send + 'static,
        F: FnOnce(&mut owner::State) -> Result<T, IdentityError> + Send + 'static,
    {
        self.owner.call(self.timeouts.create, op, f)
    }
}
