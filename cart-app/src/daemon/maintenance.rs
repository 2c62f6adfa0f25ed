//! The ledger's maintenance, scheduled: once at start, then every
//! `ledger.maintenance_interval_secs`. The work runs on a blocking thread in
//! bounded steps with the ledger's lock released between them, so a
//! checkout waits at most one step. The checkpoint at the end: TRUNCATE
//! while no payment is in progress, else PASSIVE on the ledger's checkpoint
//! connection without the lock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use store_and_forward::Timestamp;
use store_and_forward::ledger::{MaintenanceReport, MaintenanceStep};
use store_and_forward::sync::SharedLedger;
use tracing::{debug, error, info};

use super::threads::SessionState;

/// Rows one step deletes at most (about a millisecond of work).
const STEP_ROWS: usize = 200;
/// The pause between steps, so a checkout waiting on the lock gets it.
const BETWEEN_STEPS: Duration = Duration::from_millis(2);

/// Runs maintenance now and then every `every` until `stop` turns true.
pub async fn run(
    ledger: SharedLedger,
    session: Arc<SessionState>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (l, s) = (ledger.clone(), session.clone());
        match tokio::task::spawn_blocking(move || run_once(&l, &s, Timestamp::now())).await {
            Ok(Ok(report)) if report.purged() > 0 || report.totals.dropped_undelivered > 0 => {
                info!(
                    purged_delivered = report.totals.purged_delivered,
                    purged_over_quota = report.totals.purged_over_quota,
                    dropped_undelivered = report.totals.dropped_undelivered,
                    purged_payments = report.totals.purged_payments,
                    wal_truncated = report.checkpoint.truncated,
                    "ledger maintenance"
                );
            }
            Ok(Ok(report)) => debug!(?report, "ledger maintenance: nothing to purge"),
            Ok(Err(e)) => error!(cause = %e, "ledger maintenance failed; retried next interval"),
            Err(e) => error!(cause = %e, "ledger maintenance task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One maintenance run: steps until done, then a TRUNCATE checkpoint when
/// no payment is in progress (a PASSIVE one otherwise).
pub fn run_once(
    ledger: &SharedLedger,
    session: &SessionState,
    now: Timestamp,
) -> Result<MaintenanceReport, store_and_forward::LedgerError> {
    let mut report = MaintenanceReport::default();
    // Each step takes the lock after any checkout waiting for it.
    let first = lock(ledger).checkout_first();
    loop {
        let step: MaintenanceStep = first
            .lock_background(ledger)
            .maintain_step(now, STEP_ROWS)?;
        report.steps += 1;
        let t = &mut report.totals;
        t.purged_delivered += step.purged_delivered;
        t.purged_over_quota += step.purged_over_quota;
        t.dropped_undelivered += step.dropped_undelivered;
        t.purged_payments += step.purged_payments;
        if !step.more {
            break;
        }
        std::thread::sleep(BETWEEN_STEPS);
    }
    // Idle: a TRUNCATE checkpoint, under the lock (it makes writers wait,
    // and a checkout that came meanwhile waits on the lock, woken as soon
    // as it is free, not in SQLite's busy-handler sleeps). A payment in
    // progress: a PASSIVE one without the lock, on the ledger's checkpoint
    // connection, copying and fsyncing while checkouts go on committing.
    if !session.paying.load(Ordering::SeqCst) {
        let mut l = first.lock_background(ledger);
        if !session.paying.load(Ordering::SeqCst) {
            report.checkpoint = l.checkpoint_wal(true)?;
            return Ok(report);
        }
    }
    let checkpoint = lock(ledger).checkpoint_handle();
    report.checkpoint = checkpoint.checkpoint(false)?;
    Ok(report)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use store_and_forward::counter::FileCounter;
    use store_and_forward::datakey::FileDataKey;
    use store_and_forward::ledger::OutboxClass;
    use store_and_forward::policy::LimitsConfig;
    use store_and_forward::telemetry::TelemetryEvent;
    use store_and_forward::{Ledger, LedgerConfig};

    use super::*;

    fn ledger(dir: &std::path::Path, now: Timestamp) -> Ledger {
        let config = LedgerConfig {
            path: dir.join("ledger.sqlite"),
            retention_secs: 60,
            ..LedgerConfig::default()
        };
        let limits = LimitsConfig::default().validate("offline").unwrap();
        let counter = FileCounter::open(dir.join("counter"), 7).unwrap();
        let mut key = FileDataKey::new(dir.join("data.key"));
        Ledger::open(config, limits, Box::new(counter), &mut key, now)
            .unwrap()
            .0
    }

    #[test]
    fn a_run_purges_in_steps_and_truncates_the_wal_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let now = store_and_forward::time::CLOCK_FLOOR.plus_secs(400 * 86_400);
        let mut l = ledger(dir.path(), now);
        let events: Vec<_> = (0..1_200)
            .map(|i| TelemetryEvent::Reading {
                at: now,
                seq: i,
                temperature_c: 20.0,
                battery_pct: 90,
                rssi_dbm: -50,
                state: "idle".into(),
                position: None,
            })
            .collect();
        l.enqueue_telemetry(&events, now).unwrap();
        let batch = l
            .take_batch(OutboxClass::Telemetry, 0, 2_000, 1 << 22, now)
            .unwrap();
        let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
        l.mark_delivered(&ids, now).unwrap();
        let shared: SharedLedger = Arc::new(Mutex::new(l));
        let session = SessionState::default();

        // Within retention: nothing goes.
        let r = run_once(&shared, &session, now.plus_secs(30)).unwrap();
        assert_eq!(r.purged(), 0);
        // A payment in progress: no TRUNCATE checkpoint.
        session.paying.store(true, Ordering::SeqCst);
        let r = run_once(&shared, &session, now.plus_secs(61)).unwrap();
        assert_eq!(r.totals.purged_delivered, 1_200);
        assert!(r.steps >= 3, "{r:?}");
        assert!(!r.checkpoint.truncated, "{r:?}");
        // Idle: the WAL is emptied.
        session.paying.store(false, Ordering::SeqCst);
        let r = run_once(&shared, &session, now.plus_secs(62)).unwrap();
        assert!(r.checkpoint.truncated, "{r:?}");
        let wal = dir.path().join("ledger.sqlite-wal");
        assert_eq!(std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0), 0);
    }
}
