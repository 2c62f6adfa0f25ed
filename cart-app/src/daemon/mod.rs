//! `cart-app run`: the daemon that runs the cart.
//!
//! Threads and what each owns:
//! - the main thread: Slint's event loop and the checkout window (never
//!   blocks; everything reaches it through [`ui::UiHandle`]);
//! - `session`: the shopping session ([`crate::session::Session`]) and the
//!   catalog; turns scans, taps and payment progress into screen updates;
//! - `payments`: the card reader's serial line and [`crate::checkout::Checkout`];
//! - `scanner`: the barcode scanner;
//! - a tokio runtime (2 workers): the uplink and sync, the control socket,
//!   signals, the status line and the watchdog's checks;
//! - `ledger-checkpoint` (the ledger's own): WAL checkpoints on a second
//!   connection, outside the ledger's lock.
//!
//! Start order: configuration, identity (TPM), ledger, catalog, uplink,
//! devices, UI; `READY=1` once the event loop turns. SIGTERM: no new
//! payments, a payment in progress finishes (or is cancelled while it waits
//! for a card) within `daemon.stop_grace_secs`, the telemetry buffer is
//! stored, the link closes, the last status snapshot is written (beside the
//! control socket, for `cartctl status` while the daemon is down), then the
//! process exits. SIGHUP re-reads the
//! configuration's offline limits and deny-list (newer versions only).
//!
//! # Layout
//! - [`settings`]: the daemon's configuration tables.
//! - [`parts`]: opening the identity, the ledger, the certificate, the link.
//! - [`identity`]: provisioning while not provisioned; certificate rotation.
//! - [`threads`]: the session, payment and scanner threads.
//! - [`supervise`]: a device thread's panic costs one step, not the daemon.
//! - [`control_server`]: the control socket `cartctl` talks to.
//! - [`maintenance`]: the ledger's maintenance, at start and on a schedule.
//! - `tasks`: the link banner, the backend's events for the application,
//!   the status line, the watchdog thread, signals, the stop sequence.
//! - [`jobs`]: the remote jobs the application runs (out of service,
//!   rotation, log level, reboot), each at an idle cart.

pub mod control_server;
pub mod identity;
pub mod jobs;
pub mod maintenance;
pub mod parts;
pub mod settings;
pub mod supervise;
mod tasks;
pub mod threads;
pub mod update;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hal::scanner::{Decoder, Scanner, SerialScanner, WedgeScanner};
use store_and_forward::sync::{AppEvent, SharedLedger};
use store_and_forward::{Currency, Timestamp};
use tracing::info;

use crate::catalog::Catalog;
use crate::checkout::Checkout;
use crate::config::{Config, Loaded};
use crate::provision::{self, rotation::Trigger};
use crate::session::{Input, Session};
use crate::watchdog::{self, Watchdog};
use control_server::{Context, ControlServer, LinkControl, TapControl};
use settings::{ScannerKind, UiBackend};
use threads::{Msg, SessionState};

/// Why the daemon could not start or stopped with an error. systemd
/// restarts it (`Restart=on-failure`); the message is in the journal.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The ledger refused to open (see the cause for the recovery).
    #[error("ledger: {0}")]
    Ledger(#[from] store_and_forward::LedgerError),
    /// The ledger's counter file (software identity) failed.
    #[error("ledger counter: {0}")]
    Counter(#[from] store_and_forward::counter::CounterError),
    /// The TPM, the identity or the certificate failed.
    #[error("identity: {0}")]
    Identity(#[from] crate::tpm::TpmAdapterError),
    /// The catalog could not be opened.
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The link could not be set up (bad TLS files, bad config).
    #[error("link: {0}")]
    Link(#[from] store_and_forward::uplink::LinkError),
    /// The UI could not start (no display, no font).
    #[error("UI: {0}")]
    Ui(#[from] ui::UiError),
    /// The headless UI could not start.
    #[error("UI: {0}")]
    Headless(#[from] ui::headless::HeadlessError),
    /// A scanner could not be set up.
    #[error("scanner: {0}")]
    Scanner(#[from] hal::scanner::ScannerError),
    /// A thread, a runtime or the control socket could not start.
    #[error("{what}: {source}")]
    Io {
        /// What was starting.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configured currency is not ISO 4217.
    #[error("store.currency: {0}")]
    Currency(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

/// Set when the daemon stops to start again at once (provisioning done).
static RESTART: AtomicBool = AtomicBool::new(false);

/// Whether the daemon stopped to be started again at once (with the new
/// certificate): `cart-app run` then execs itself in place under systemd
/// rather than waiting out the unit's RestartSec.
pub fn restart_requested() -> bool {
    RESTART.load(Ordering::SeqCst)
}

/// Asks a running daemon to stop (as SIGTERM does).
#[derive(Debug, Clone)]
pub struct StopHandle(tokio::sync::watch::Sender<bool>);

impl StopHandle {
    /// A handle for [`RunOptions::stop`].
    pub fn new() -> StopHandle {
        StopHandle(tokio::sync::watch::channel(false).0)
    }

    /// Requests the graceful stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Default for StopHandle {
    fn default() -> Self {
        StopHandle::new()
    }
}

/// Called on the UI thread with every frame the headless UI draws.
pub type FrameHook = Box<dyn FnMut(&ui::headless::Frame)>;

/// Called on the session thread with every update it sends the UI (the
/// interactive demo narrates them in the terminal).
pub type ViewHook = Box<dyn FnMut(&ui::ViewUpdate) + Send>;

/// What a caller adds to a run (the demo, tests, benchmarks).
#[derive(Default)]
pub struct RunOptions {
    /// The config file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Stops the daemon like SIGTERM.
    pub stop: StopHandle,
    /// Listen for SIGTERM and SIGHUP (the real daemon; not in-process tests).
    pub signals: bool,
    /// Demo: cuts and restores the link.
    pub demo_link: Option<LinkControl>,
    /// Demo and tests: taps from the control socket.
    pub allow_taps: bool,
    /// Headless UI: called with every frame drawn.
    pub on_frame: Option<FrameHook>,
    /// Called once the daemon is ready (after READY=1), with a way to send
    /// taps (tests, the scripted demo).
    pub on_ready: Option<Box<dyn FnOnce(TapControl) + Send>>,
    /// Called with every update the session sends the UI.
    pub on_view: Option<ViewHook>,
}

/// Runs the daemon on the calling thread (which becomes the UI thread)
/// until a stop is requested. Returns after everything is parked.
pub fn run(loaded: Loaded, mut opts: RunOptions) -> Result<(), DaemonError> {
    let started = Instant::now();
    let config = loaded.config.clone();
    let currency =
        Currency::new(&config.store.currency).map_err(|e| DaemonError::Currency(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cart-rt")
        .enable_all()
        .build()
        .map_err(io("tokio runtime"))?;
    let (stop_tx, stop_rx) = (opts.stop.0.clone(), opts.stop.0.subscribe());

    // The identity and the ledger bound to it.
    let anchors = parts::open_anchors(&loaded)?;
    let ledger: SharedLedger = Arc::new(Mutex::new(parts::open_ledger(&loaded, &anchors)?));
    let catalog = Catalog::open(&config.catalog.path)?;
    let checkout_timeout = Duration::from_secs(config.reader.card_timeout_secs);

    // The uplink, when the cart is provisioned; provisioning otherwise.
    let (app_tx, app_rx) = tokio::sync::mpsc::channel::<AppEvent>(64);
    let (uplink_stop_tx, uplink_stop_rx) = tokio::sync::watch::channel(false);
    let (rotation_tx, rotation_rx) = tokio::sync::mpsc::channel::<Trigger>(8);
    let (session_tx, session_rx) = mpsc::channel::<Msg>();
    let identity::Started {
        uplink,
        provisioning,
        receipts,
        wifi_tx,
    } = identity::start(
        &loaded,
        &anchors,
        &ledger,
        &rt,
        identity::Channels {
            app_tx,
            uplink_stop: uplink_stop_rx,
            rotation: rotation_rx,
            stop_tx: stop_tx.clone(),
            stop: stop_rx.clone(),
            session_tx: session_tx.clone(),
        },
    )?;
    // The expiry in the journal: `provision::load` logged it for a TPM cart
    // (and the rotation task does every six hours); here for the software
    // identity.
    if anchors.software.is_some()
        && let Some(c) = parts::cert_status(&config.provisioning.certificate, Timestamp::now())
    {
        provision::cert::expiry(
            c.not_after,
            Timestamp::now(),
            config.provisioning.expiry_warn_days,
        );
    }

    // The UI (on this thread).
    let headless = match config.ui.backend {
        UiBackend::Headless => {
            let h = ui::headless::Headless::install()?;
            h.resize(config.ui.headless_width, config.ui.headless_height);
            if let Some(f) = opts.on_frame.take() {
                h.on_frame(f);
            }
            Some(h)
        }
        UiBackend::Auto => None,
    };
    let sink = UiSink(Mutex::new(session_tx.clone()));
    let window = ui::CheckoutUi::new(currency.as_str(), sink)?;
    window.set_receipt_timeout(Duration::from_secs(config.ui.receipt_timeout_secs));
    window.update(ui::ViewUpdate::CartId(config.cart_id.clone()));
    {
        use ui::slint::ComponentHandle;
        window
            .window()
            .show()
            .map_err(|e| DaemonError::Ui(ui::UiError::Platform(e)))?;
        // A cart's kiosk display never asks to close; a desktop window
        // (the demo) does, and closing it stops the cart as SIGTERM would
        // (the payment in progress finishes first).
        let stop = stop_tx.clone();
        window.window().window().on_close_requested(move || {
            info!("window closed: stopping");
            stop.send_replace(true);
            ui::slint::CloseRequestResponse::HideWindow
        });
    }
    let ui_handle = window.handle();

    // Hearts: every part that must make progress for the watchdog.
    let mut dog = Watchdog::new();
    let ui_heart = dog.heart("ui");
    let session_heart = dog.heart("session");
    let payments_heart = dog.heart("payments");
    let runtime_heart = dog.heart("runtime");
    let ledger_heart = dog.heart("ledger");

    // Threads.
    let shared = Arc::new(SessionState::default());
    rt.spawn(maintenance::run(
        ledger.clone(),
        shared.clone(),
        Duration::from_secs(config.ledger.maintenance_interval_secs),
        stop_rx.clone(),
    ));
    let cancel = Arc::new(AtomicBool::new(false));
    let (job_tx, job_rx) = mpsc::channel();
    let mut checkout = Checkout::new(
        ledger.clone(),
        uplink.clone().map(|u| (u, rt.handle().clone())),
    )
    .with_card_timeout(checkout_timeout);
    if let Some(r) = receipts {
        checkout = checkout.with_receipts(r);
    }
    let payments = threads::spawn_payments(
        job_rx,
        config.reader.port.clone(),
        checkout,
        config.reader.online_required,
        cancel.clone(),
        session_tx.clone(),
        shared.clone(),
        payments_heart,
    )
    .map_err(io("payment thread"))?;
    let scanner_stop = Arc::new(AtomicBool::new(false));
    let mut scanner_state = None;
    let scanner_thread = match open_scanner(&config)? {
        Some(s) => {
            let (h, state) = threads::spawn_scanner(
                s,
                session_tx.clone(),
                scanner_stop.clone(),
                dog.heart("scanner"),
            )
            .map_err(io("scanner thread"))?;
            scanner_state = Some(state);
            Some(h)
        }
        None => {
            let _ = session_tx.send(Msg::Device {
                scanner: true,
                up: false,
            });
            None
        }
    };
    let session = threads::spawn_session(
        session_rx,
        Session::new(currency, config.store.tax_rates.clone()).with_staff(ledger.clone()),
        catalog,
        currency,
        ledger.clone(),
        ui_handle,
        job_tx,
        cancel.clone(),
        shared.clone(),
        session_heart,
        wifi_tx,
        opts.on_view.take(),
    )
    .map_err(io("session thread"))?;
    if uplink.is_none() {
        let _ = session_tx.send(Msg::Input(Input::OutOfService(true)));
    }

    // The control socket.
    let tap: TapControl = {
        let tx = Mutex::new(session_tx.clone());
        Arc::new(move |ev| {
            let _ = lock(&tx).send(Msg::Input(Input::Ui(ev)));
        })
    };
    let ctx = Arc::new(Context {
        config: config.clone(),
        started,
        ledger: ledger.clone(),
        uplink: uplink.clone(),
        scanner: scanner_state,
        session: shared.clone(),
        provisioning,
        demo_link: opts.demo_link.take(),
        demo_tap: (opts.allow_taps || config.control.allow_taps).then(|| tap.clone()),
        slots: Mutex::new(None),
    });
    let server = {
        let _guard = rt.enter();
        ControlServer::bind(&config.control.socket, &config.control.group)
            .map_err(io("control socket"))?
    };
    rt.spawn(server.serve(ctx.clone(), stop_rx.clone()));

    // Link state to the session (the offline banner).
    if let Some(u) = &uplink {
        tasks::link_banner(&rt, u, session_tx.clone(), stop_rx.clone());
    }
    // Backend events for the application: catalog deltas to the session,
    // rotation requests to the rotation task.
    let verdict = update::verdict_cell();
    let job_ctx = jobs::JobContext {
        session: Arc::new(Mutex::new(session_tx.clone())),
        shared: shared.clone(),
        ledger: ledger.clone(),
        rotation: rotation_tx.clone(),
        control: ctx.clone(),
        update: verdict.clone(),
    };
    let health_ctx = job_ctx.clone();
    tasks::app_events(&rt, app_rx, job_ctx, rotation_tx, session_tx.clone());

    // Status line and the ledger's heart; the watchdog's checks; signals.
    tasks::status(
        &rt,
        ctx.clone(),
        Duration::from_secs(config.daemon.status_interval_secs.max(1)),
        runtime_heart,
        ledger_heart,
        stop_rx.clone(),
    );
    let (dog_stop, dog_thread) = tasks::watchdog_thread(dog)?;
    if opts.signals {
        tasks::signals(
            &rt,
            stop_tx.clone(),
            opts.config_path.clone(),
            ledger.clone(),
        );
    }

    // The UI heart beats on the UI thread; READY once the loop turns.
    let ui_timer = ui::slint::Timer::default();
    ui_timer.start(
        ui::slint::TimerMode::Repeated,
        Duration::from_millis(500),
        move || {
            ui_heart.beat();
        },
    );
    let ready_ctx = ctx.clone();
    let on_ready = opts.on_ready.take();
    let ready_tap = tap.clone();
    let health_rt = rt.handle().clone();
    ui::slint::Timer::single_shot(Duration::ZERO, move || {
        watchdog::notify_ready(&ready_ctx.status_line());
        info!(
            cart_id = %ready_ctx.config.cart_id,
            startup_ms = started.elapsed().as_millis() as u64,
            "cart ready"
        );
        // The update health check: the ledger opened (its binding as
        // opened), READY=1 sent with the UI's loop turning.
        let integrity = health_ctx.lock_ledger().integrity().clone();
        health_rt.spawn(async move {
            if let Some(last) = update::after_boot(&health_ctx, integrity).await {
                health_ctx.update.send_replace(Some(last));
            }
        });
        if let Some(f) = on_ready {
            f(ready_tap);
        }
    });

    // The stop sequence, off the UI thread.
    tasks::stop_sequence(
        &rt,
        stop_rx.clone(),
        shared.clone(),
        Duration::from_secs(config.daemon.stop_grace_secs),
        session_tx.clone(),
        cancel.clone(),
    );

    let ui_result = ui::slint::run_event_loop_until_quit();
    drop(window);
    drop(headless);

    // Park everything.
    stop_tx.send_replace(true);
    let _ = session.join();
    scanner_stop.store(true, Ordering::SeqCst);
    if let Some(t) = scanner_thread {
        let _ = t.join();
    }
    drop(session_tx);
    drop(tap);
    let _ = payments.join();
    dog_stop.store(true, Ordering::SeqCst);
    let _ = dog_thread.join();
    let _ = uplink_stop_tx.send(true);
    if let Some(u) = &uplink {
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(3), u.link().shutdown()).await;
        });
    }
    // The last status snapshot, for `cartctl status` while the daemon is down.
    ctx.write_snapshot(&ctx.status(), false);
    rt.shutdown_timeout(Duration::from_secs(2));
    info!("stopped");
    ui_result.map_err(|e| DaemonError::Ui(ui::UiError::Platform(e)))
}

/// The scanner the config names, or `None`.
fn open_scanner(config: &Config) -> Result<Option<Box<dyn Scanner>>, DaemonError> {
    let decoder = Decoder::new(config.scanner.decoder.clone());
    Ok(match config.scanner.kind {
        ScannerKind::Serial => Some(Box::new(SerialScanner::new(
            config.scanner.serial.clone(),
            decoder,
        )?)),
        ScannerKind::Wedge => Some(Box::new(WedgeScanner::new(
            config.scanner.wedge.clone(),
            decoder,
        )?)),
        ScannerKind::None => None,
    })
}

/// Taps from the UI thread to the session thread.
struct UiSink(Mutex<mpsc::Sender<Msg>>);

impl ui::EventSink for UiSink {
    fn send(&self, event: ui::UiEvent) {
        let _ = lock(&self.0).send(Msg::Input(Input::Ui(event)));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
