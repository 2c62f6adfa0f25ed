//! Shared set-up for the ledger's integration tests: a real ledger file in a
//! temporary folder with a file-backed counter and data key.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::ledger::OpenReport;
use store_and_forward::policy::{Limits, LimitsConfig};
use store_and_forward::time::CLOCK_FLOOR;
use store_and_forward::{
    CardRead, Currency, EntryMode, Ledger, LedgerConfig, LedgerError, Money, NewAttempt,
    PaymentKey, Timestamp,
};

/// A test PAN that must never reach the ledger's files.
pub const TEST_PAN: &str = "4111111111111111";

pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::new("EUR").unwrap())
}

/// A time well after the clock floor.
pub fn t0() -> Timestamp {
    Timestamp(CLOCK_FLOOR.0 + 400 * 24 * 3600 * 1000)
}

pub fn limits_config() -> LimitsConfig {
    LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 100_000)].into(),
        max_outstanding_count: 50,
        velocity_max_per_card: 3,
        velocity_window_secs: 3600,
        ..LimitsConfig::default()
    }
}

pub fn limits() -> Limits {
    limits_config().validate("offline").unwrap()
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub limits: Limits,
    pub initial_counter: u64,
    pub config: LedgerConfig,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = LedgerConfig {
            path: dir.path().join("ledger.sqlite"),
            ..LedgerConfig::default()
        };
        Fixture {
            dir,
            limits: limits(),
            initial_counter: 1_000_003,
            config,
        }
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    pub fn counter_path(&self) -> PathBuf {
        self.dir.path().join("counter")
    }

    pub fn counter(&self) -> FileCounter {
        FileCounter::open(self.counter_path(), self.initial_counter).unwrap()
    }

    pub fn try_open_at(&self, now: Timestamp) -> Result<(Ledger, OpenReport), LedgerError> {
        let mut key = FileDataKey::new(self.dir.path().join("data.key"));
        Ledger::open(
            self.config.clone(),
            self.limits.clone(),
            Box::new(self.counter()),
            &mut key,
            now,
        )
    }

    /// Opens the ledger and records a backend contact at `t0`, so the
    /// offline policy has a fresh backend and a trusted clock.
    pub fn open(&self) -> Ledger {
        let (mut l, _) = self.try_open_at(t0()).unwrap();
        l.record_backend_contact(t0()).unwrap();
        l
    }

    pub fn reopen(&self) -> (Ledger, OpenReport) {
        self.try_open_at(t0()).unwrap()
    }
}

pub fn card(fingerprint: u8) -> CardRead {
    // EMV data carrying the PAN in tag 5A (BCD) and in track-2 equivalent
    // data as ASCII, as real terminals do: it must be sealed on disk.
    let mut emv = vec![0x5A, 0x08, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
    emv.extend_from_slice(b"\x57\x13");
    emv.extend_from_slice(TEST_PAN.as_bytes());
    emv.extend_from_slice(b"D2912");
    CardRead {
        masked_pan: "411111******1111".into(),
        fingerprint: vec![fingerprint; 32],
        emv_data: emv,
        encrypted_blob: format!("ciphertext-with-{TEST_PAN}").into_bytes(),
        entry_mode: EntryMode::Chip,
    }
}

pub fn attempt(amount: Money, fingerprint: u8) -> NewAttempt {
    NewAttempt {
        key: PaymentKey::new(),
        amount,
        online_required: false,
        card: card(fingerprint),
    }
}
