//! The daemon's blocking threads: the session (owns the shopping session and
//! the catalog), the payment thread (owns the card reader's serial line and
//! runs [`Checkout::pay`]) and the scanner thread. They talk by channels;
//! none of them touches the UI except through [`UiHandle`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hal::reader::{DriverConfig, PaymentReader, SerialReader};
use hal::scanner::{
    DeviceState, NonProduct, Scan, ScanContent, Scanner, StateHandle, WifiCredentials,
};
use store_and_forward::staff::StaffApproval;
use store_and_forward::sync::{AppEvent, CatalogOutcome, SharedLedger};
use store_and_forward::telemetry::{TelemetryBuffer, TelemetryEvent};
use store_and_forward::{Currency, Money, Timestamp};
use tracing::{debug, error, info, warn};
use ui::{FaultView, LinkBanner, UiHandle, ViewUpdate};
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogError};
use crate::checkout::{Checkout, PayEvent};
use crate::session::{Effect, Input, Session};
use crate::watchdog::Heart;

/// What reaches the session thread.
#[derive(Debug)]
pub enum Msg {
    /// A session input (scan, tap, payment progress, devices).
    Input(Input),
    /// The link went up or down.
    Link(bool),
    /// The scanner (`scanner: true`) or the reader came or went.
    Device {
        /// Which: the scanner, else the reader.
        scanner: bool,
        /// Present now.
        up: bool,
    },
    /// The backend sent something for the application.
    App(AppEvent),
    /// An operator (a remote job) took the cart out of service or put it
    /// back; kept apart from the daemon's own reasons (not provisioned,
    /// stopping), so neither clears the other.
    Operator {
        /// Out of service.
        out_of_service: bool,
    },
    /// The daemon is stopping: no new payments.
    Stop,
    /// Leave the loop (after `Stop` and the payment's end).
    Exit,
}

/// What the session thread shares with the rest of the daemon.
#[derive(Debug, Default)]
pub struct SessionState {
    /// A payment is in progress.
    pub paying: AtomicBool,
    /// The reader is reachable.
    pub reader_up: AtomicBool,
    /// No shopper session: nothing scanned, nothing paying (jobs that
    /// change the cart wait for it).
    pub idle: AtomicBool,
}

/// The ledger's cart-state key that keeps an operator's "out of service"
/// across restarts (its value: the reason).
pub const OPERATOR_OUT_OF_SERVICE: &str = "operator.out_of_service";

/// Starts the session thread.
#[allow(clippy::too_many_arguments)]
pub fn spawn_session(
    rx: Receiver<Msg>,
    mut session: Session,
    mut catalog: Catalog,
    currency: Currency,
    ledger: SharedLedger,
    ui: UiHandle,
    payments: Sender<PaymentJob>,
    cancel: Arc<AtomicBool>,
    shared: Arc<SessionState>,
    heart: Heart,
    wifi: Option<tokio::sync::mpsc::Sender<WifiCredentials>>,
    mut on_view: Option<super::ViewHook>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("session".into())
        .spawn(move || {
            let mut telemetry = TelemetryBuffer::new(200, 2_000);
            // Telemetry takes the ledger's lock after a waiting checkout.
            let first = lock(&ledger).checkout_first();
            let mut fault = FaultView::default();
            // Out of service by the daemon (not provisioned, stopping) and
            // by an operator: the screen shows it while either holds.
            let mut daemon_out = false;
            let mut operator_out = lock(&ledger)
                .state(OPERATOR_OUT_OF_SERVICE)
                .ok()
                .flatten()
                .is_some();
            let mut show = |u: ViewUpdate| {
                if let Some(hook) = on_view.as_mut() {
                    hook(&u);
                }
                if ui.update(u).is_err() {
                    debug!("UI gone; update dropped");
                }
            };
            loop {
                heart.beat();
                let msg = match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let effects = match msg {
                    None if operator_out && !session.out_of_service() => {
                        // Kept from before the restart.
                        session.handle(Input::OutOfService(true), &catalog)
                    }
                    None => Vec::new(),
                    Some(Msg::Exit) => break,
                    Some(Msg::Input(Input::OutOfService(on))) => {
                        daemon_out = on;
                        session.handle(Input::OutOfService(daemon_out || operator_out), &catalog)
                    }
                    Some(Msg::Operator { out_of_service }) => {
                        operator_out = out_of_service;
                        session.handle(Input::OutOfService(daemon_out || operator_out), &catalog)
                    }
                    Some(Msg::Input(Input::Scan(Scan {
                        content: ScanContent::NonProduct(NonProduct::Wifi(creds)),
                        ..
                    }))) => {
                        // A provisioning code: for provisioning only, never
                        // logged with its password.
                        match &wifi {
                            Some(tx) => {
                                info!(device = "scanner", "provisioning code scanned");
                                let _ = tx.try_send(creds);
                            }
                            None => info!(
                                device = "scanner",
                                "provisioning code ignored: already provisioned"
                            ),
                        }
                        Vec::new()
                    }
                    Some(Msg::Input(input)) => {
                        if matches!(input, Input::Scan(_)) {
                            store_and_forward::failpoint::panic_at("session.scan");
                        }
                        session.handle(input, &catalog)
                    }
                    Some(Msg::Stop) => session.handle(Input::OutOfService(true), &catalog),
                    Some(Msg::Device { scanner, up }) => {
                        if scanner {
                            fault.scanner_missing = !up;
                        } else {
                            fault.reader_missing = !up;
                        }
                        session.handle(Input::Devices(fault), &catalog)
                    }
                    Some(Msg::Link(up)) => {
                        let banner = if up {
                            LinkBanner::Online
                        } else {
                            let cap = lock(&ledger)
                                .limits()
                                .per_payment_cap
                                .get(&currency)
                                .copied();
                            LinkBanner::Offline {
                                offline_cap_minor: cap.filter(|c| *c > 0),
                            }
                        };
                        show(ViewUpdate::Link(banner));
                        vec![Effect::Telemetry(TelemetryEvent::Link {
                            at: Timestamp::now(),
                            up,
                        })]
                    }
                    Some(Msg::App(AppEvent::Catalog { delta, done })) => {
                        // Answered only once committed: the sync acks then.
                        let outcome = match catalog.apply(&delta) {
                            Ok(true) => {
                                info!(version = delta.version, "catalog delta applied");
                                CatalogOutcome::Applied
                            }
                            Ok(false) => CatalogOutcome::Unchanged {
                                current: catalog.version().unwrap_or(delta.version),
                            },
                            Err(CatalogError::BaseMismatch { have, .. }) => {
                                CatalogOutcome::BaseMismatch { have }
                            }
                            Err(e) => {
                                error!(cause = %e, "catalog delta not applied");
                                CatalogOutcome::Failed(e.to_string())
                            }
                        };
                        done.report(outcome);
                        Vec::new()
                    }
                    Some(Msg::App(AppEvent::Job { run, done })) => {
                        // Jobs are run by the daemon's job runner, not here.
                        warn!(job_id = %run.job_id, "job reached the session thread: failed");
                        done.finish(store_and_forward::sync::jobs::JobOutcome::Failed(
                            "misrouted".into(),
                        ));
                        Vec::new()
                    }
                    Some(Msg::App(AppEvent::Rotation { id, .. })) => {
                        warn!(request = %id, "certificate rotation requested by the backend");
                        Vec::new()
                    }
                };
                for effect in effects {
                    match effect {
                        Effect::View(u) => show(u),
                        Effect::StartPayment { amount, age_check } => {
                            cancel.store(false, Ordering::SeqCst);
                            shared.paying.store(true, Ordering::SeqCst);
                            if payments.send(PaymentJob { amount, age_check }).is_err() {
                                shared.paying.store(false, Ordering::SeqCst);
                                let e = session.handle(
                                    Input::PaymentDone(Err("payment thread gone".into())),
                                    &catalog,
                                );
                                e.into_iter().for_each(|x| {
                                    if let Effect::View(u) = x {
                                        show(u)
                                    }
                                });
                            }
                        }
                        Effect::CancelPayment => cancel.store(true, Ordering::SeqCst),
                        Effect::CallStaff { item } => info!(%item, "staff called for an age check"),
                        Effect::Telemetry(ev) => {
                            telemetry.push(ev, Timestamp::now());
                        }
                    }
                }
                if !session.paying() {
                    shared.paying.store(false, Ordering::SeqCst);
                }
                shared
                    .idle
                    .store(session.idle() && !session.paying(), Ordering::SeqCst);
                let now = Timestamp::now();
                if !telemetry.is_empty() && telemetry.is_due(now) {
                    flush(&ledger, &first, &mut telemetry, now);
                }
            }
            flush(&ledger, &first, &mut telemetry, Timestamp::now());
        })
}

fn flush(
    ledger: &SharedLedger,
    first: &store_and_forward::ledger::CheckoutFirst,
    buffer: &mut TelemetryBuffer,
    now: Timestamp,
) {
    let events = buffer.take();
    if events.is_empty() {
        return;
    }
    if let Err(e) = first
        .lock_background(ledger)
        .enqueue_telemetry(&events, now)
    {
        warn!(cause = %e, dropped = events.len(), "telemetry not stored");
    }
}

/// A payment for the payment thread.
#[derive(Debug)]
pub struct PaymentJob {
    /// The amount.
    pub amount: Money,
    /// The staff badge that cleared the basket's age check, if any.
    pub age_check: Option<StaffApproval>,
}

/// How often the idle payment thread asks the reader for its status.
const IDLE_STATUS_EVERY: Duration = Duration::from_secs(1);
/// How long an idle status request waits for the reader's answer.
const IDLE_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the payment thread: it owns the reader's serial line (reopened
/// while it is away) and runs one payment at a time.
#[allow(clippy::too_many_arguments)]
pub fn spawn_payments(
    jobs: Receiver<PaymentJob>,
    port: String,
    checkout: Checkout,
    online_required: bool,
    cancel: Arc<AtomicBool>,
    session: Sender<Msg>,
    shared: Arc<SessionState>,
    heart: Heart,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("payments".into())
        .spawn(move || {
            let mut reader: Option<SerialReader<serialport::TTYPort>> = None;
            let mut reported: Option<bool> = None;
            let mut last_status = Instant::now();
            loop {
                heart.beat();
                if reader.is_none() {
                    match SerialReader::open(&port, DriverConfig::default()) {
                        Ok(mut r) => match r.hello() {
                            Ok(info) => {
                                info!(device = "reader", ?info, "card reader connected");
                                reader = Some(r);
                            }
                            Err(e) => {
                                warn!(device = "reader", cause = %e, "card reader does not answer")
                            }
                        },
                        Err(e) => {
                            if reported != Some(false) {
                                warn!(device = "reader", %port, cause = %e, "card reader missing");
                            }
                        }
                    }
                    let up = reader.is_some();
                    shared.reader_up.store(up, Ordering::SeqCst);
                    if reported != Some(up) {
                        reported = Some(up);
                        let _ = session.send(Msg::Device { scanner: false, up });
                    }
                }
                let job = match jobs.recv_timeout(Duration::from_secs(1)) {
                    Ok(j) => j,
                    Err(RecvTimeoutError::Timeout) => {
                        // Idle watch: the reader answers STATUS (any key) in
                        // milliseconds; one that does not is gone, and the
                        // fault screen shows within a few seconds instead of
                        // at the next payment.
                        if last_status.elapsed() >= IDLE_STATUS_EVERY
                            && let Some(r) = reader.as_mut()
                        {
                            last_status = Instant::now();
                            if let Err(e) = r.status(Uuid::nil(), IDLE_STATUS_TIMEOUT) {
                                warn!(device = "reader", cause = %e, "card reader stopped answering while idle");
                                reader = None;
                                // Reported now: reopening may take a while.
                                shared.reader_up.store(false, Ordering::SeqCst);
                                reported = Some(false);
                                let _ = session.send(Msg::Device {
                                    scanner: false,
                                    up: false,
                                });
                            }
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let Some(r) = reader.as_mut() else {
                    let _ = session.send(Msg::Input(Input::PaymentDone(Err(
                        "card reader missing".into(),
                    ))));
                    continue;
                };
                let tx = session.clone();
                let beat = heart.clone();
                let result = checkout.pay_age_checked(
                    r,
                    job.amount,
                    job.age_check,
                    online_required,
                    &mut |ev: PayEvent| {
                        let _ = tx.send(Msg::Input(Input::Payment(ev)));
                    },
                    &|| {
                        beat.beat();
                        cancel.load(Ordering::SeqCst)
                    },
                );
                let result = result.map_err(|e| {
                    error!(device = "reader", cause = %e, "payment could not run");
                    // A broken line: reopen before the next payment.
                    e.to_string()
                });
                if result.is_err() {
                    reader = None;
                }
                let _ = session.send(Msg::Input(Input::PaymentDone(result)));
            }
        })
}

/// Starts the scanner thread.
pub fn spawn_scanner(
    mut scanner: Box<dyn Scanner>,
    session: Sender<Msg>,
    stop: Arc<AtomicBool>,
    heart: Heart,
) -> std::io::Result<(JoinHandle<()>, StateHandle)> {
    let state = scanner.state_handle();
    let handle = std::thread::Builder::new()
        .name("scanner".into())
        .spawn(move || {
            let mut was_up = None;
            // A panic costs one scan (super::supervise); too many stop the
            // heart, and the watchdog restarts the daemon.
            super::supervise::run("scanner", RestartPolicy::default(), || {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                heart.beat();
                match scanner.next_scan(Duration::from_millis(250)) {
                    Ok(Some(scan)) => {
                        let _ = session.send(Msg::Input(Input::Scan(scan)));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(device = "scanner", cause = %e, "scanner error");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
                let up = matches!(scanner.state(), DeviceState::Connected);
                if was_up != Some(up) {
                    was_up = Some(up);
                    if up {
                        info!(device = "scanner", "scanner connected");
                    } else {
                        warn!(device = "scanner", state = ?scanner.state(), "scanner missing");
                    }
                    let _ = session.send(Msg::Device { scanner: true, up });
                }
                true
            });
        })?;
    Ok((handle, state))
}

use super::supervise::RestartPolicy;

fn lock(l: &SharedLedger) -> std::sync::MutexGuard<'_, store_and_forward::Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}
