//! The daemon's long-running tasks besides the device threads, each started
//! by one function from [`super::run`]: the link banner, the backend's
//! events for the application, the status line and the ledger's heart, the
//! watchdog thread, the signals, and the stop sequence.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use store_and_forward::Timestamp;
use store_and_forward::sync::{AppEvent, SharedLedger, Uplink};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::control_server::{self, Context};
use super::threads::{Msg, SessionState};
use super::{DaemonError, io, jobs, lock};
use crate::config::Config;
use crate::provision::rotation::Trigger;
use crate::watchdog::{self, Heart, Verdict, Watchdog};

/// Link state to the session (the offline banner), and to the journal.
pub(super) fn link_banner(
    rt: &Runtime,
    uplink: &Uplink,
    session_tx: mpsc::Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = uplink.link().state();
    let tx = Mutex::new(session_tx);
    rt.spawn(async move {
        let mut last = None;
        loop {
            let up = state.borrow_and_update().up;
            if last != Some(up) {
                last = Some(up);
                if up {
                    info!(device = "link", "link up");
                } else {
                    warn!(device = "link", "link down");
                }
                let _ = lock(&tx).send(Msg::Link(up));
            }
            tokio::select! {
                r = state.changed() => if r.is_err() { break },
                _ = stop.changed() => break,
            }
        }
    });
}

/// Backend events for the application: jobs to the job runner, rotation
/// requests to the rotation task, the rest (catalog deltas...) to the
/// session.
pub(super) fn app_events(
    rt: &Runtime,
    mut app_rx: tokio::sync::mpsc::Receiver<AppEvent>,
    job_ctx: jobs::JobContext,
    rotation_tx: tokio::sync::mpsc::Sender<Trigger>,
    session_tx: mpsc::Sender<Msg>,
) {
    let tx = Mutex::new(session_tx);
    rt.spawn(async move {
        while let Some(ev) = app_rx.recv().await {
            match ev {
                AppEvent::Job { run, done } => {
                    tokio::spawn(jobs::run(job_ctx.clone(), run, done));
                }
                AppEvent::Rotation { id, .. } => {
                    info!(request = %id, "certificate rotation requested by the backend");
                    if rotation_tx.send(Trigger::Request { id }).await.is_err() {
                        warn!("no rotation here (software identity): request ignored");
                    }
                }
                other => {
                    let _ = lock(&tx).send(Msg::App(other));
                }
            }
        }
    });
}

/// The status line to systemd and the snapshot for `cartctl status` every
/// `every`; the runtime's and the ledger's hearts beat at the watchdog's
/// check interval while the runtime turns and the ledger answers.
pub(super) fn status(
    rt: &Runtime,
    ctx: Arc<Context>,
    every: Duration,
    runtime_heart: Heart,
    ledger_heart: Heart,
    mut stop: watch::Receiver<bool>,
) {
    let check = watchdog::check_interval().unwrap_or(Duration::from_secs(5));
    rt.spawn(async move {
        let mut last_status = Instant::now() - every;
        loop {
            runtime_heart.beat();
            let ctx2 = ctx.clone();
            let read = tokio::task::spawn_blocking(move || ctx2.status()).await;
            if let Ok(status) = read {
                if status.is_ok() {
                    ledger_heart.beat();
                }
                if last_status.elapsed() >= every {
                    last_status = Instant::now();
                    watchdog::notify_status(&control_server::status_line(&status));
                    let ctx2 = ctx.clone();
                    let _ = tokio::task::spawn_blocking(move || ctx2.write_snapshot(&status, true))
                        .await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(check.min(every)) => {}
                _ = stop.changed() => break,
            }
        }
    });
}

/// The thread that pets systemd's watchdog while every heart beats.
/// Returns its stop flag and handle.
pub(super) fn watchdog_thread(
    mut dog: Watchdog,
) -> Result<(Arc<AtomicBool>, JoinHandle<()>), DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    let interval = watchdog::check_interval();
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let Some(interval) = interval else { return };
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(interval);
                match dog.check() {
                    Verdict::Pet => watchdog::notify_watchdog(),
                    Verdict::Stalled(parts) => {
                        error!(?parts, "no progress: the watchdog is not petted")
                    }
                }
            }
        })
        .map_err(io("watchdog thread"))?;
    Ok((stop, thread))
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP reloads the configuration's
/// limits and deny-list from `path`.
pub(super) fn signals(
    rt: &Runtime,
    stop: watch::Sender<bool>,
    path: Option<PathBuf>,
    ledger: SharedLedger,
) {
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            error!("cannot listen for signals");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: stopping"); stop.send_replace(true); break }
                _ = int.recv() => { info!("SIGINT: stopping"); stop.send_replace(true); break }
                _ = hup.recv() => {
                    watchdog::notify_reloading();
                    if let Some(p) = &path {
                        let ledger = ledger.clone();
                        let p = p.clone();
                        let _ = tokio::task::spawn_blocking(move || reload(&p, &ledger)).await;
                    }
                    watchdog::notify_ready("configuration reloaded");
                }
            }
        }
    });
}

/// SIGHUP: newer offline limits and deny-list from the file.
fn reload(path: &std::path::Path, ledger: &SharedLedger) {
    match Config::load(path) {
        Ok(l) => {
            l.log_notes();
            let mut g = lock(ledger);
            let now = Timestamp::now();
            let limits = g.apply_limits_update(&l.config.offline, now);
            let deny = g.apply_deny_list(
                l.config.deny_list.version,
                None,
                true,
                &l.deny_list,
                &[],
                now,
            );
            info!(?limits, ?deny, "configuration reloaded");
        }
        Err(e) => error!(cause = %e, "configuration not reloaded"),
    }
}

/// The stop sequence, off the UI thread: once a stop is asked, no new
/// payments; the payment in progress gets `grace` to finish and is then
/// cancelled; then the session ends and the UI's loop quits.
pub(super) fn stop_sequence(
    rt: &Runtime,
    mut stop: watch::Receiver<bool>,
    shared: Arc<SessionState>,
    grace: Duration,
    session_tx: mpsc::Sender<Msg>,
    cancel: Arc<AtomicBool>,
) {
    let session_tx = Mutex::new(session_tx);
    rt.spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        watchdog::notify_stopping();
        let _ = lock(&session_tx).send(Msg::Stop);
        let deadline = Instant::now() + grace;
        let mut cancelled = false;
        while shared.paying.load(Ordering::SeqCst) {
            if Instant::now() >= deadline && !cancelled {
                warn!("stop: the payment in progress did not finish in time; cancelling it (the ledger keeps any card read in doubt)");
                cancel.store(true, Ordering::SeqCst);
                cancelled = true;
            }
            if Instant::now() >= deadline + Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = lock(&session_tx).send(Msg::Exit);
        // A stop can come before the event loop first turns (a cart
        // that provisions itself faster than the window comes up, as
        // under QEMU's TCG): a quit sent then is lost, a quit queued
        // into the loop is not.
        let _ = ui::slint::invoke_from_event_loop(|| {
            let _ = ui::slint::quit_event_loop();
        });
        let _ = ui::slint::quit_event_loop();
    });
}
