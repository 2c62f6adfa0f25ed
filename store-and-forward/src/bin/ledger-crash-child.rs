//! Crash-test child: runs checkouts against a ledger until it is killed
//! (by the parent, or by itself at an armed failpoint), reporting on stdout
//! what a shopper would have seen:
//!
//! - `START <key>`: the shopper tapped Pay (nothing committed yet);
//! - `ATTEMPT <key>`: the attempt is committed;
//! - `APPROVED <key>` / `DECLINED <key>`: the decision was shown.
//!
//! Built only with the `failpoints` feature; never part of the image.

use std::io::Write;
use std::path::PathBuf;

use rand::Rng;
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::ledger::{OutboxBody, OutboxClass};
use store_and_forward::policy::LimitsConfig;
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::{
    BackendOutcome, CardRead, Currency, EntryMode, Ledger, LedgerConfig, Money, NewAttempt,
    PaymentKey, Timestamp, failpoint,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("crash child: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: ledger-crash-child DIR")?,
    );
    let limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 1_000_000_000)].into(),
        max_outstanding_count: 1_000_000,
        velocity_max_per_card: 1_000_000,
        ..LimitsConfig::default()
    }
    .validate("offline")?;
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        ..LedgerConfig::default()
    };
    let counter = FileCounter::open(dir.join("counter"), 7_340_033)?;
    let mut key = FileDataKey::new(dir.join("data.key"));
    let (mut ledger, _) = Ledger::open(
        config,
        limits,
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )?;
    ledger.record_backend_contact(Timestamp::now())?;
    let eur = Currency::new("EUR")?;
    let mut rng = rand::rng();
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    say("READY".into());
    for i in 0..100_000u64 {
        let now = Timestamp::now();
        let attempt = NewAttempt {
            key: PaymentKey::new(),
            amount: Money::new(rng.random_range(1..=12_000), eur),
            online_required: rng.random_bool(0.05),
            card: CardRead {
                masked_pan: "411111******1111".into(),
                fingerprint: vec![rng.random_range(0..16u8); 32],
                emv_data: vec![0x5A, 0x08, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11],
                encrypted_blob: vec![0xEE; 96],
                entry_mode: EntryMode::Contactless,
            },
        };
        say(format!("START {}", attempt.key));
        failpoint::hit("checkout.after_card_read");
        ledger.record_card_read(&attempt, now)?;
        say(format!("ATTEMPT {}", attempt.key));
        let roll: f64 = rng.random();
        let approved = if roll < 0.6 {
            ledger.decide_offline(&attempt.key, now)?.approved
        } else if roll < 0.85 {
            let outcome = BackendOutcome::Approved {
                reference: format!("A{i}"),
            };
            ledger.apply_backend_outcome(&attempt.key, &outcome, now)?;
            true
        } else if roll < 0.95 {
            let outcome = BackendOutcome::Declined {
                reason: "do not honour".into(),
            };
            ledger.apply_backend_outcome(&attempt.key, &outcome, now)?;
            false
        } else {
            ledger.cancel(&attempt.key, "shopper cancelled", now)?;
            false
        };
        say(format!(
            "{} {}",
            if approved { "APPROVED" } else { "DECLINED" },
            attempt.key
        ));
        // Now and then, the uplink and the backend do their part.
        if i % 4 == 3 {
            let batch = ledger.take_batch(OutboxClass::Payment, 0, 8, 1 << 20, now)?;
            let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
            ledger.mark_delivered(&ids, now)?;
            for r in batch {
                if let OutboxBody::Payment(p) = r.body {
                    let outcome = if rng.random_bool(0.9) {
                        BackendOutcome::Approved {
                            reference: "F".into(),
                        }
                    } else {
                        BackendOutcome::Declined {
                            reason: "declined after forward".into(),
                        }
                    };
                    // Inquiries about in-doubt attempts: the backend never saw them.
                    let outcome = if r.kind == "payment_inquiry" {
                        BackendOutcome::Unknown
                    } else {
                        outcome
                    };
                    ledger.apply_backend_outcome(&p.key, &outcome, now)?;
                }
            }
        }
        if i % 8 == 5 {
            let ev = TelemetryEvent::Link { at: now, up: true };
            ledger.enqueue_telemetry(&[ev.clone(), ev], now)?;
        }
    }
    Ok(())
}
