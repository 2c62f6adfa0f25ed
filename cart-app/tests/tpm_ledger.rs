//! The ledger bound to a real (simulated) TPM: the NV counter as its
//! monotonic counter and the TPM-sealed data key. A restored older copy
//! of the ledger is caught; the sealed key survives a TPM restart.

use std::fs;
use std::path::{Path, PathBuf};

use cart_app::tpm::{CartTpm, TpmMonotonicCounter};
use hal::identity::tpm::TpmConfig;
use store_and_forward::counter::MonotonicCounter;
use store_and_forward::ledger::{OpenReport, OutboxBody, OutboxClass};
use store_and_forward::policy::{LedgerIntegrity, Limits, LimitsConfig};
use store_and_forward::time::CLOCK_FLOOR;
use store_and_forward::{
    CardRead, Currency, EntryMode, Ledger, LedgerConfig, Money, NewAttempt, PaymentKey, Timestamp,
};
use swtpm_harness::Swtpm;

const EMV: &[u8] = b"\x5a\x08\x41\x11\x11\x11\x11\x11\x11\x11";

fn t0() -> Timestamp {
    Timestamp(CLOCK_FLOOR.0 + 400 * 24 * 3600 * 1000)
}

fn limits() -> Limits {
    LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 100_000)].into(),
        max_outstanding_count: 50,
        velocity_max_per_card: 100,
        velocity_window_secs: 3600,
        ..LimitsConfig::default()
    }
    .validate("offline")
    .expect("limits")
}

fn attempt(n: u8) -> NewAttempt {
    NewAttempt {
        key: PaymentKey::new(),
        amount: Money::new(100 + i64::from(n), Currency::new("EUR").expect("EUR")),
        online_required: false,
        card: CardRead {
            masked_pan: "411111******1111".into(),
            fingerprint: vec![n; 32],
            emv_data: EMV.to_vec(),
            encrypted_blob: b"opaque".to_vec(),
            entry_mode: EntryMode::Chip,
        },
    }
}

fn read(mut counter: TpmMonotonicCounter) -> u64 {
    counter.read().expect("read counter")
}

struct Cart {
    dir: tempfile::TempDir,
    sim: Swtpm,
}

impl Cart {
    fn new() -> Cart {
        Cart {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: Swtpm::start(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("ledger.sqlite")
    }

    fn open(&self) -> (Ledger, OpenReport, CartTpm) {
        let tpm = CartTpm::open(TpmConfig {
            tcti: self.sim.tcti(),
            ..TpmConfig::default()
        })
        .expect("open TPM");
        let config = LedgerConfig {
            path: self.path(),
            ..LedgerConfig::default()
        };
        let counter = tpm.counter().expect("NV counter");
        let mut key = tpm.data_key();
        let (mut ledger, report) =
            Ledger::open(config, limits(), Box::new(counter), &mut key, t0()).expect("open ledger");
        ledger.record_backend_contact(t0()).expect("contact");
        (ledger, report, tpm)
    }
}

fn approve_offline(ledger: &mut Ledger, n: u8) {
    let a = attempt(n);
    ledger.record_card_read(&a, t0()).expect("card read");
    let d = ledger.decide_offline(&a.key, t0()).expect("decide");
    assert!(d.approved, "offline approval {n}");
}

fn copy_ledger(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let dst = PathBuf::from(format!("{}{suffix}", to.display()));
        let _ = fs::remove_file(&dst);
        let src = PathBuf::from(format!("{}{suffix}", from.display()));
        if src.exists() {
            fs::copy(&src, &dst).expect("copy ledger file");
        }
    }
}

#[test]
fn offline_approvals_advance_the_tpm_counter() {
    let cart = Cart::new();
    let (mut ledger, report, tpm) = cart.open();
    assert!(report.created);
    assert_eq!(report.integrity, LedgerIntegrity::Bound);
    let before = read(tpm.counter().unwrap());
    approve_offline(&mut ledger, 1);
    approve_offline(&mut ledger, 2);
    assert_eq!(read(tpm.counter().unwrap()), before + 2);
}

#[test]
fn restored_older_copy_is_caught_by_the_tpm_counter() {
    let cart = Cart::new();
    let (mut ledger, _, tpm) = cart.open();
    approve_offline(&mut ledger, 1);
    ledger.maintain(t0()).expect("checkpoint");
    drop((ledger, tpm));
    let backup = cart.dir.path().join("backup.sqlite");
    copy_ledger(&cart.path(), &backup);

    let (mut ledger, report, tpm) = cart.open();
    assert_eq!(report.integrity, LedgerIntegrity::Bound);
    for n in 2..5 {
        approve_offline(&mut ledger, n);
    }
    let counter_now = read(tpm.counter().unwrap());
    drop((ledger, tpm));

    // The TPM restarts too (a power cut): the counter keeps its value.
    copy_ledger(&backup, &cart.path());
    cart.sim.restart();
    let (mut ledger, report, _tpm) = cart.open();
    assert_eq!(
        report.integrity,
        LedgerIntegrity::RolledBack {
            ledger: counter_now - 3,
            counter: counter_now
        }
    );
    // Offline approval is off on a rolled-back ledger.
    let a = attempt(9);
    ledger.record_card_read(&a, t0()).expect("card read");
    assert!(
        !ledger
            .decide_offline(&a.key, t0())
            .expect("decide")
            .approved
    );
}

#[test]
fn sealed_data_key_survives_a_tpm_restart_and_unseals_the_card_data() {
    let cart = Cart::new();
    let (mut ledger, _, tpm) = cart.open();
    approve_offline(&mut ledger, 1);
    drop((ledger, tpm));

    cart.sim.restart();
    let (ledger, report, _tpm) = cart.open();
    assert!(!report.created);
    assert_eq!(report.integrity, LedgerIntegrity::Bound);
    let batch = ledger
        .take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0())
        .expect("take batch");
    let OutboxBody::Payment(forward) = &batch[0].body else {
        panic!("payment forward expected");
    };
    assert_eq!(
        &forward.emv_data[..],
        EMV,
        "card data unsealed with the TPM key"
    );
    drop(ledger);

    // On disk the card data is sealed.
    for suffix in ["", "-wal"] {
        let Ok(bytes) = fs::read(format!("{}{suffix}", cart.path().display())) else {
            continue;
        };
        assert!(
            !bytes.windows(EMV.len()).any(|w| w == EMV),
            "sealed on disk"
        );
    }
}

#[test]
fn another_tpms_key_does_not_unseal_the_card_data() {
    let cart = Cart::new();
    let (mut ledger, _, tpm) = cart.open();
    approve_offline(&mut ledger, 1);
    drop((ledger, tpm));
    // The ledger moved to another cart (another TPM): its sealed key is
    // another key, and its counter knows nothing of this ledger.
    let other = Swtpm::start();
    let tpm = CartTpm::open(TpmConfig {
        tcti: other.tcti(),
        ..TpmConfig::default()
    })
    .expect("open other TPM");
    let config = LedgerConfig {
        path: cart.path(),
        ..LedgerConfig::default()
    };
    let counter = tpm.counter().expect("NV counter");
    let mut key = tpm.data_key();
    let opened = Ledger::open(config, limits(), Box::new(counter), &mut key, t0());
    // The ledger opens or refuses; either way the card data must not
    // unseal with another TPM's key. (The counter binding alone cannot tell
    // two fresh TPMs apart: their counters start at the same value; see
    // docs/identity.md.)
    if let Ok((ledger, _report)) = opened {
        let batch = ledger.take_batch(OutboxClass::Payment, 0, 10, 1 << 20, t0());
        let unsealed = batch.ok().and_then(|b| match b.first().map(|r| &r.body) {
            Some(OutboxBody::Payment(f)) => Some(f.emv_data.to_vec()),
            _ => None,
        });
        assert_ne!(
            unsealed.as_deref(),
            Some(EMV),
            "unsealed with another TPM's key"
        );
    }
}
