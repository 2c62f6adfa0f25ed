//! `cart-app demo-ledger`: a scripted checkout session against a real ledger
//! file, printed as a transcript. It shows the ledger's side of an online
//! payment, an offline approval within limits, an over-limit decline and the
//! queue draining when the link returns. The backend's answers are scripted
//! here; the uplink and the backend emulator replace them in the full demo.

use std::path::PathBuf;

use anyhow::Context;
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::ledger::{OutboxBody, OutboxClass};
use store_and_forward::policy::LimitsConfig;
use store_and_forward::{
    BackendOutcome, CardRead, Currency, EntryMode, Ledger, LedgerConfig, Money, NewAttempt,
    PaymentKey, Timestamp,
};

fn card(last4: &str, fingerprint: u8) -> CardRead {
    CardRead {
        masked_pan: format!("4111********{last4}"),
        fingerprint: vec![fingerprint; 32],
        emv_data: vec![0x9F, 0x02, 0x06, 0, 0, 0, 0, 0x23, 0x40],
        encrypted_blob: vec![0xEE; 128],
        entry_mode: EntryMode::Contactless,
    }
}

/// Runs the session in `dir` (created when missing).
pub fn run(dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 50_000)].into(),
        ..LimitsConfig::default()
    }
    .validate("offline")?;
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        ..LedgerConfig::default()
    };
    let counter = FileCounter::open(dir.join("counter"), rand::random::<u32>() as u64)?;
    let mut key = FileDataKey::new(dir.join("data.key"));
    let (mut ledger, report) = Ledger::open(
        config,
        limits,
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )?;
    let eur = Currency::new("EUR")?;
    println!(
        "ledger {} ({})",
        dir.join("ledger.sqlite").display(),
        if report.created { "new" } else { "existing" }
    );
    println!(
        "offline limits: EUR 100.00 per payment, EUR 500.00 outstanding, 200 payments, 24 h to forward\n"
    );

    println!("== link up: the backend answers");
    ledger.record_backend_contact(Timestamp::now())?;
    let p1 = checkout(&mut ledger, Money::new(2_340, eur), card("1111", 1))?;
    ledger.apply_backend_outcome(
        &p1,
        &BackendOutcome::Approved {
            reference: "ONL-0001".into(),
        },
        Timestamp::now(),
    )?;
    show(&ledger, &p1)?;

    println!("\n== link down: the offline policy decides");
    let p2 = checkout(&mut ledger, Money::new(4_500, eur), card("4242", 2))?;
    let d = ledger.decide_offline(&p2, Timestamp::now())?;
    println!(
        "  decision: {}",
        if d.approved {
            "APPROVED OFFLINE"
        } else {
            "DECLINED"
        }
    );
    show(&ledger, &p2)?;
    let p3 = checkout(&mut ledger, Money::new(15_000, eur), card("0005", 3))?;
    let d = ledger.decide_offline(&p3, Timestamp::now())?;
    println!(
        "  decision: {} {}",
        if d.approved {
            "APPROVED OFFLINE"
        } else {
            "DECLINED"
        },
        serde_json::to_string(&d.reasons)?
    );
    show(&ledger, &p3)?;
    let st = ledger.status(Timestamp::now())?;
    println!(
        "  outstanding offline: {} payment(s), {:?}",
        st.exposure.count, st.exposure.amount
    );

    println!("\n== link returns: the outbox drains, payments first");
    let batch = ledger.take_batch(OutboxClass::Payment, 0, 100, 256 * 1024, Timestamp::now())?;
    for r in &batch {
        if let OutboxBody::Payment(p) = &r.body {
            println!(
                "  forward {} {} ({} bytes of reader ciphertext)",
                p.key,
                p.amount,
                p.encrypted_blob.len()
            );
        }
    }
    let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
    ledger.mark_delivered(&ids, Timestamp::now())?;
    show(&ledger, &p2)?;
    ledger.apply_backend_outcome(
        &p2,
        &BackendOutcome::Approved {
            reference: "FWD-0002".into(),
        },
        Timestamp::now(),
    )?;
    show(&ledger, &p2)?;
    let telemetry =
        ledger.take_batch(OutboxClass::Telemetry, 0, 1000, 1 << 20, Timestamp::now())?;
    println!("  telemetry waiting: {} event(s)", telemetry.len());

    println!("\n== status");
    let st = ledger.status(Timestamp::now())?;
    println!("{}", serde_json::to_string_pretty(&st)?);
    Ok(())
}

fn checkout(ledger: &mut Ledger, amount: Money, card: CardRead) -> anyhow::Result<PaymentKey> {
    let attempt = NewAttempt {
        key: PaymentKey::new(),
        amount,
        online_required: false,
        card,
    };
    println!(
        "  pay {} with {} (key {})",
        amount, attempt.card.masked_pan, attempt.key
    );
    ledger.record_card_read(&attempt, Timestamp::now())?;
    Ok(attempt.key)
}

fn show(ledger: &Ledger, key: &PaymentKey) -> anyhow::Result<()> {
    let p = ledger.payment(key)?.context("payment vanished")?;
    println!("  {} -> {}", p.key, p.state);
    Ok(())
}
