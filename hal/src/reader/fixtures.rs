//! The shared TEST ONLY fixtures under `tests/fixtures/` (docs/reader-protocol.md,
//! section 9): the test-card table, the processor's test key pair and the
//! reader's test fingerprint key. The reader simulator and the backend
//! emulator both load them through this module.

use std::fmt;
use std::path::{Path, PathBuf};

use p256::{PublicKey, SecretKey};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::card::{FingerprintKey, luhn_valid};
use super::carddata::{
    self, Binding, CardData, CardDataError, ProcessorPrivateKey, ProcessorPublicKey,
};
use super::message::{DeclineReason, EntryMode};

/// Card-test table file name.
pub const TEST_CARDS: &str = "test-cards.json";
/// Processor key-pair file name.
pub const PROCESSOR_KEY: &str = "processor-test-key.json";
/// Fingerprint-key file name.
pub const FINGERPRINT_KEY: &str = "fingerprint-test-key.json";

/// Errors loading fixtures: the simulator refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("cannot parse {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A file without `"test_only": true`: refused, so no real key is ever
    /// loaded through the test path.
    #[error("{0} is not marked test_only")]
    NotTestOnly(PathBuf),
    /// A key is not valid hex or not a valid key.
    #[error("bad key in {0}")]
    BadKey(PathBuf),
    /// A card's PAN fails the Luhn check or its expiry is not `YYMM`.
    #[error("bad test card {0}")]
    BadCard(String),
}

/// What the simulated reader does with a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReaderBehaviour {
    /// Reads the card normally.
    Normal,
    /// Takes `read_ms` to read it.
    Slow {
        /// Read time in milliseconds.
        read_ms: u64,
    },
    /// The shopper never presents the card: the payment times out.
    NoCard,
    /// The card is pulled out while being read.
    RemovedMidRead,
    /// The card cannot be read.
    Unreadable,
    /// The reader reports a fault.
    Fault,
}

/// What the (emulated) processor does with a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessorBehaviour {
    /// Approves online and when forwarded.
    Approve,
    /// Declines online and when forwarded.
    Decline {
        /// The reason.
        reason: DeclineReason,
    },
    /// Approves online; declines when an offline approval is forwarded.
    DeclineWhenForwarded {
        /// The reason.
        reason: DeclineReason,
    },
    /// Approves, but answers online only after `delay_ms`.
    Slow {
        /// Answer delay in milliseconds.
        delay_ms: u64,
    },
    /// Never answers an online request (forwarding still confirms).
    NeverAnswers,
}

/// One test card.
#[derive(Clone, Deserialize)]
pub struct TestCard {
    /// Name used to select it (`chip-approve`, ...).
    pub name: String,
    /// The PAN (a public test number).
    pub pan: String,
    /// Expiry `YYMM`.
    pub expiry: String,
    /// PAN sequence number.
    pub psn: Option<u8>,
    /// Chip or contactless.
    pub entry_mode: EntryMode,
    /// Whether the card asks for a PIN.
    pub pin: bool,
    /// Reader-side behaviour.
    pub reader: ReaderBehaviour,
    /// Processor-side behaviour.
    pub processor: ProcessorBehaviour,
    /// Whether the backend puts its fingerprint on the deny-list.
    pub deny_listed: bool,
}

// Even test PANs stay out of logs, so a log-scanning test stays meaningful.
impl TestCard {
    /// The card data a reader reads from this card (`None` when its expiry
    /// is not four characters; [`TestCards::load`] refuses such a card).
    pub fn card_data(&self) -> Option<CardData> {
        Some(CardData {
            pan: self.pan.clone(),
            expiry: self.expiry.as_bytes().try_into().ok()?,
            psn: self.psn,
            entry_mode: self.entry_mode,
        })
    }

    /// This card's data encrypted to the processor and bound to one payment,
    /// as the reader hands it over.
    pub fn seal(
        &self,
        to: &ProcessorPublicKey,
        binding: &Binding,
    ) -> Result<Vec<u8>, CardDataError> {
        let data = self.card_data().ok_or(CardDataError::Malformed)?;
        carddata::encrypt(to, binding, &data)
    }
}

impl fmt::Debug for TestCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCard")
            .field("name", &self.name)
            .field("entry_mode", &self.entry_mode)
            .field("pin", &self.pin)
            .field("reader", &self.reader)
            .field("processor", &self.processor)
            .field("deny_listed", &self.deny_listed)
            .finish_non_exhaustive()
    }
}

/// The test-card table.
#[derive(Clone, Debug, Deserialize)]
pub struct TestCards {
    /// Must be true.
    pub test_only: bool,
    /// The cards.
    pub cards: Vec<TestCard>,
}

impl TestCards {
    /// Loads and checks the table.
    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let t: TestCards = read_json(path)?;
        if !t.test_only {
            return Err(FixtureError::NotTestOnly(path.to_owned()));
        }
        for c in &t.cards {
            let exp_ok = c.expiry.len() == 4 && c.expiry.bytes().all(|b| b.is_ascii_digit());
            if !luhn_valid(&c.pan) || !exp_ok {
                return Err(FixtureError::BadCard(c.name.clone()));
            }
        }
        Ok(t)
    }

    /// The card called `name`.
    pub fn get(&self, name: &str) -> Option<&TestCard> {
        self.cards.iter().find(|c| c.name == name)
    }
}

#[derive(Deserialize)]
struct KeyPairFile {
    test_only: bool,
    key_id: u32,
    private_scalar_hex: String,
    public_sec1_hex: String,
}

#[derive(Deserialize)]
struct FingerprintFile {
    test_only: bool,
    key_hex: String,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| FixtureError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Loads the processor's test key pair; checks the public half matches.
pub fn load_processor_key(path: &Path) -> Result<ProcessorPrivateKey, FixtureError> {
    let f: KeyPairFile = read_json(path)?;
    if !f.test_only {
        return Err(FixtureError::NotTestOnly(path.to_owned()));
    }
    let bad = || FixtureError::BadKey(path.to_owned());
    let d = Zeroizing::new(hex::decode(&f.private_scalar_hex).map_err(|_| bad())?);
    let key = SecretKey::from_slice(&d).map_err(|_| bad())?;
    let public = hex::decode(&f.public_sec1_hex).map_err(|_| bad())?;
    let public = PublicKey::from_sec1_bytes(&public).map_err(|_| bad())?;
    if key.public_key() != public {
        return Err(bad());
    }
    Ok(ProcessorPrivateKey {
        key_id: f.key_id,
        key,
    })
}

/// Loads only the processor's public key (what a reader holds).
pub fn load_processor_public_key(path: &Path) -> Result<ProcessorPublicKey, FixtureError> {
    Ok(load_processor_key(path)?.public())
}

/// Loads the reader's test fingerprint key.
pub fn load_fingerprint_key(path: &Path) -> Result<FingerprintKey, FixtureError> {
    let f: FingerprintFile = read_json(path)?;
    if !f.test_only {
        return Err(FixtureError::NotTestOnly(path.to_owned()));
    }
    let bytes =
        Zeroizing::new(hex::decode(&f.key_hex).map_err(|_| FixtureError::BadKey(path.to_owned()))?);
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| FixtureError::BadKey(path.to_owned()))?;
    Ok(FingerprintKey::new(arr))
}

/// The fixtures folder of this source tree (`tests/fixtures` at the
/// workspace root), for tests and the simulator's default.
pub fn source_tree_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}
