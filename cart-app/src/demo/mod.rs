//! `cart-app demo` (feature `demo`): the daemon itself on one machine with
//! no hardware and no cloud.
//!
//! Real parts wherever they exist here: a local mosquitto over mutual TLS
//! (certificates made for the run) reached through a fault proxy (the
//! demo's link control cuts it for real), the backend emulator deciding by
//! the test cards, the ledger and catalog on real files, the reader
//! simulator on a pseudo-terminal encrypting to the test processor key, and
//! a pseudo-terminal the serial scanner driver reads scans from. The
//! software identity stands in for the TPM. The daemon runs with a config
//! file written for the run, exactly as `cart-app run` does.
//!
//! With a display (`--interactive`, built with `winit`), the window is the
//! cart and the terminal is the shopper's hands: numbers scan sample
//! products, `scan CODE` any barcode, `down`/`up` cut and restore the link,
//! `cards` lists the test cards and `card NAME` picks the next one, `status`
//! says where the cart stands, `help` lists it all. Without one, the same
//! session runs scripted: a readable transcript and a PNG of each step
//! drawn by the daemon's own UI.
//!
//! # Layout
//! - [`rig`]: the broker, emulator and simulators around the daemon, and
//!   its config file (also used by the daemon's tests and benchmarks).
//! - [`commands`]: the interactive demo's typed commands and the test
//!   cards in words (sans-IO).
//! - [`narrate`]: the interactive demo's line per outcome, from the updates
//!   the session sends the window (sans-IO).
//!
//! The run's folder is printed first and removed at the end unless it was
//! given (`--dir`) or asked to be kept (`--keep`). Closing the window ends
//! the demo (the daemon stops as on SIGTERM); a panic on any thread stops
//! it with the message and a failed exit.

pub mod commands;
pub mod narrate;
pub mod rig;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hal::scanner::sim::{SimConfig as ScannerSimConfig, write_scan};

use crate::config::Config;
use crate::control::{self, CartStatus};
use crate::daemon::control_server::TapControl;
use crate::daemon::{self, RunOptions, StopHandle};
use commands::Command;
use rig::{Rig, RigOptions};

/// Sample products: (code, what it is).
const PRODUCTS: &[(&str, &str)] = &[
    ("4006381333931", "Highlighter, EUR 1.89"),
    ("4012345000023", "Sparkling water 6x1 l, EUR 3.99"),
    ("2112345003504", "Gouda by weight, 0.350 kg at EUR 14.90/kg"),
    ("4012345000016", "Espresso machine, EUR 189.00"),
    ("5000267024202", "Whisky 70 cl, EUR 29.99, 18+"),
    ("STAFF:0042", "a staff badge (age check)"),
    ("STAFF:0099", "a badge that is not on the staff list"),
];

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Folder for the ledger, catalog, config and PNGs; `None` makes a new
    /// one under the temporary folder.
    pub dir: Option<PathBuf>,
    /// Keep a folder the demo made (one given is always kept).
    pub keep: bool,
    /// The TEST ONLY fixtures (processor key, test cards).
    pub fixtures: PathBuf,
    /// A window and typed commands instead of the script.
    pub interactive: bool,
}

/// The run's folder: removed when the demo ends (however it ends) unless
/// it was given or asked to be kept.
struct RunDir {
    path: PathBuf,
    remove: bool,
}

impl RunDir {
    fn new(opts: &DemoOptions) -> anyhow::Result<RunDir> {
        let (path, remove) = match &opts.dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("cart-demo-{}", std::process::id())),
                !opts.keep,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the run folder {}", path.display()))?;
        say(&format!(
            "Run folder: {} ({})",
            path.display(),
            if remove {
                "removed on exit; --keep keeps it"
            } else {
                "kept"
            }
        ));
        Ok(RunDir { path, remove })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.remove
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!("demo: could not remove {}: {e}", self.path.display());
        }
    }
}

/// Makes a panic on any thread stop the demo, loudly: the message (the
/// default hook), a line saying the demo stops, and a failed exit. A
/// panicked session thread would otherwise leave a frozen window.
fn stop_on_panic(stop: &StopHandle) -> Arc<AtomicBool> {
    let panicked = Arc::new(AtomicBool::new(false));
    let flag = panicked.clone();
    let stop = stop.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("demo: a thread panicked (above): stopping the demo");
        flag.store(true, Ordering::SeqCst);
        stop.stop();
    }));
    panicked
}

/// Runs the demo on this thread (the UI thread).
pub fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let run_dir = RunDir::new(&opts)?;
    let dir = run_dir.path.clone();
    say(
        "Starting a local mosquitto (mutual TLS, per-run certificates), the backend emulator and the device simulators",
    );
    let rig = Rig::start(&RigOptions {
        dir: dir.clone(),
        fixtures: opts.fixtures.clone(),
        ui_backend: if opts.interactive { "auto" } else { "headless" },
    })?;
    say(&format!(
        "Config written to {} (the daemon reads it as on a cart)",
        rig.config_path.display()
    ));
    let loaded = Config::load(&rig.config_path)?;
    let link_control = rig.link_control();
    let stop = StopHandle::new();
    let frame = Arc::new(Mutex::new(None::<ui::headless::Frame>));
    let failure = Arc::new(Mutex::new(None::<String>));
    let script_failure = failure.clone();
    let script = Script {
        scanner: Mutex::new(rig.scanner_writer()?),
        reader: rig.reader.commands(),
        socket: rig.socket.clone(),
        link: link_control.clone(),
        frame: frame.clone(),
        steps: dir.join("steps"),
        stop: stop.clone(),
        cards: hal::reader::fixtures::TestCards::load(&opts.fixtures.join("test-cards.json"))?,
    };
    let mut run = RunOptions {
        config_path: Some(rig.config_path.clone()),
        stop: stop.clone(),
        signals: true,
        demo_link: Some(link_control),
        allow_taps: true,
        ..RunOptions::default()
    };
    let panicked = stop_on_panic(&stop);
    if opts.interactive {
        run.on_ready = Some(Box::new(move |_tap| {
            std::thread::spawn(move || script.interactive());
        }));
        // One line in the terminal per outcome in the window.
        let mut narrator = narrate::Narrator::new(&loaded.config.store.currency);
        run.on_view = Some(Box::new(move |update| {
            if let Some(line) = narrator.on_update(update) {
                say(&line);
            }
        }));
    } else {
        std::fs::create_dir_all(dir.join("steps"))?;
        let f = frame.clone();
        run.on_frame = Some(Box::new(move |fr: &ui::headless::Frame| {
            *f.lock().unwrap_or_else(|p| p.into_inner()) = Some(fr.clone());
        }));
        run.on_ready = Some(Box::new(move |tap| {
            std::thread::spawn(move || {
                if let Err(e) = script.scripted(&tap) {
                    say(&format!("demo script failed: {e:#}"));
                    *script_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("{e:#}"));
                }
                script.stop.stop();
            });
        }));
    }
    daemon::run(loaded, run)?;

    let c = rig.emulator.counts();
    step("Backend emulator at the end");
    say(&format!(
        "  {} payments, {} charged, {} duplicates absorbed, {} telemetry events",
        c.payments, c.charged, c.payment_duplicates, c.telemetry_events
    ));
    rig.shutdown();
    if panicked.load(Ordering::SeqCst) {
        bail!("a thread of the demo panicked (the message is above)");
    }
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        bail!("the scripted demo did not go as expected: {e}");
    }
    if !opts.interactive && !run_dir.remove {
        say(&format!(
            "The step screenshots: {}",
            dir.join("steps").display()
        ));
    }
    step("Done");
    Ok(())
}

/// What the script (or the person at the terminal) drives.
struct Script {
    scanner: Mutex<std::fs::File>,
    reader: std::sync::mpsc::Sender<hal::reader::sim::SimCommand>,
    socket: PathBuf,
    link: Arc<dyn Fn(bool) + Send + Sync>,
    frame: Arc<Mutex<Option<ui::headless::Frame>>>,
    steps: PathBuf,
    stop: StopHandle,
    /// The test cards (`cards`, and `card NAME` checked against them).
    cards: hal::reader::fixtures::TestCards,
}

/// Payment states that end a checkout.
const DECIDED: &[&str] = &[
    "online_approved",
    "online_declined",
    "offline_approved",
    "offline_declined",
    "cancelled",
    "failed",
];

impl Script {
    fn scan(&self, code: &str) -> anyhow::Result<()> {
        let mut w = self.scanner.lock().unwrap_or_else(|p| p.into_inner());
        write_scan(&mut *w, code.as_bytes(), &ScannerSimConfig::default())?;
        let what = PRODUCTS
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, w)| *w)
            .unwrap_or("");
        say(&format!("  scan {code}  {what}"));
        // The scan travels the serial line and the scanner thread; a
        // shopper's next move comes later than that.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    fn card(&self, name: &str) {
        let _ = self
            .reader
            .send(hal::reader::sim::SimCommand::QueueCard(name.to_owned()));
    }

    fn status(&self) -> anyhow::Result<CartStatus> {
        Ok(control::status(&self.socket, Duration::from_secs(10))?)
    }

    fn decided(st: &CartStatus) -> u64 {
        st.ledger
            .payments
            .iter()
            .filter(|(k, _)| !["card_read", "in_doubt"].contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// Pays with `card` and waits for the decision, which must be `expect`
    /// (a ledger state); anything else fails the script.
    fn pay(&self, tap: &TapControl, card: &str, expect: &str) -> anyhow::Result<()> {
        let state = self.pay_any(tap, card)?;
        if state != expect {
            bail!(
                "paying with {card}: expected {}, got {}",
                describe(expect),
                describe(&state)
            );
        }
        Ok(())
    }

    /// Taps Pay where the cart must refuse before reading a card (no card
    /// is offered): nothing may be recorded. `why` is what the transcript
    /// says about it.
    fn pay_refused(&self, tap: &TapControl, why: &str) -> anyhow::Result<()> {
        let before = self.status()?;
        say("  tap Pay");
        tap(ui::UiEvent::Pay);
        // Nothing happens is the expected outcome: give a wrong decision
        // time to show up.
        std::thread::sleep(Duration::from_secs(2));
        let after = self.status()?;
        if after.ledger.payments != before.ledger.payments {
            bail!(
                "expected a refusal before the card, but the ledger changed: {:?} -> {:?}",
                before.ledger.payments,
                after.ledger.payments
            );
        }
        say(&format!("  => refused before the card was read: {why}"));
        Ok(())
    }

    /// Pays with `card` and waits for the decision; returns the new state.
    fn pay_any(&self, tap: &TapControl, card: &str) -> anyhow::Result<String> {
        let before = self.status()?;
        self.card(card);
        say(&format!("  tap Pay (test card {card})"));
        tap(ui::UiEvent::Pay);
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let st = self.status()?;
            if Self::decided(&st) > Self::decided(&before) {
                let state = st
                    .ledger
                    .payments
                    .iter()
                    .find(|(k, n)| {
                        DECIDED.contains(&k.as_str())
                            && **n > before.ledger.payments.get(*k).copied().unwrap_or(0)
                    })
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| "decided".into());
                say(&format!("  => {}", describe(&state)));
                return Ok(state);
            }
        }
        bail!("no payment decision within 40 s")
    }

    fn snap(&self, name: &str) {
        std::thread::sleep(Duration::from_millis(400));
        let frame = self.frame.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(f) = frame {
            let path = self.steps.join(format!("{name}.png"));
            match f.write_png(&path) {
                Ok(()) => say(&format!("  [screen] {}", path.display())),
                Err(e) => say(&format!("  [screen] not written: {e}")),
            }
        }
    }

    fn wait_link(&self, up: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.status()?.link.is_some_and(|l| l.up == up) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the link did not go {}", if up { "up" } else { "down" })
    }

    /// Waits for the staff list the backend sends at the start.
    fn wait_staff_list(&self) -> anyhow::Result<CartStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let st = self.status()?;
            if st.ledger.staff_list_version > 0 {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("no staff list from the backend within 30 s")
    }

    fn scripted(&self, tap: &TapControl) -> anyhow::Result<()> {
        self.wait_link(true)?;
        let st = self.wait_staff_list()?;
        say(&format!(
            "Cart {} ready: {}, link up, staff list version {}",
            st.cart_id, st.provisioning, st.ledger.staff_list_version
        ));
        self.snap("idle");

        step("1. Online payment");
        for c in ["4006381333931", "4006381333931", "2112345003504"] {
            self.scan(c)?;
        }
        self.snap("shopping");
        tap(ui::UiEvent::Checkout);
        self.snap("checkout");
        self.pay(tap, "chip-approve", "online_approved")?;
        self.snap("approved-online");
        tap(ui::UiEvent::Done);

        step("2. The link goes down: offline approval within limits");
        (self.link)(false);
        self.wait_link(false)?;
        say("  (link cut at the proxy: the banner says card payments still work up to EUR 100.00)");
        for c in ["4012345000023", "4012345000023", "4006381333931"] {
            self.scan(c)?;
        }
        self.snap("offline-shopping");
        self.pay(tap, "contactless-approve", "offline_approved")?;
        self.snap("approved-offline");
        tap(ui::UiEvent::Done);

        step("3. Over the offline limit: refused before the card is read");
        self.scan("4012345000016")?;
        self.pay_refused(tap, "above what the cart may accept offline")?;
        self.snap("declined-over-limit");
        say("  (the shopper puts the machine back)");
        tap(ui::UiEvent::BackToCart);
        // Lines are numbered from 1 for the daemon's life: highlighter and
        // Gouda (step 1), water and highlighter (step 2), the machine.
        tap(ui::UiEvent::RemoveLine { line_id: 5 });

        step("4. An age-restricted item: staff check, then offline approval");
        self.scan("5000267024202")?;
        self.snap("age-check");
        say("  (the staff list came from the backend before the outage; it is checked offline)");
        self.scan("STAFF:0099")?;
        self.pay_refused(
            tap,
            "the badge is not on the staff list, the age check stays open",
        )?;
        self.snap("age-check-badge-refused");
        self.scan("STAFF:0042")?;
        self.pay(tap, "chip-pin-approve", "offline_approved")?;
        self.snap("approved-after-age-check");
        tap(ui::UiEvent::Done);

        step("5. The link returns: the queue drains");
        let st = self.status()?;
        say(&format!(
            "  waiting to be sent: {:?}; offline exposure {}",
            st.pending(),
            st.exposure_line()
        ));
        (self.link)(true);
        self.wait_link(true)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut confirmed = false;
        while Instant::now() < deadline {
            let st = self.status()?;
            if st.ledger.payments.get("confirmed").copied().unwrap_or(0) > 0
                && st.ledger.exposure.count == 0
            {
                confirmed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let st = self.status()?;
        say(&format!(
            "  offline payment {}; payments now {:?}; offline exposure {}",
            if confirmed {
                "forwarded and confirmed by the backend"
            } else {
                "still waiting for the backend"
            },
            st.ledger.payments,
            st.exposure_line()
        ));
        if let Some(d) = &st.delivery {
            say(&format!(
                "  uplink: {} payment messages, {} control, {} telemetry ({} billable units in all)",
                d.payments.messages,
                d.control.messages,
                d.telemetry.messages,
                d.payments.billable_units + d.control.billable_units + d.telemetry.billable_units
            ));
        }
        self.snap("link-back");
        if !confirmed {
            bail!("the offline payments were not confirmed within 30 s of the link's return");
        }
        Ok(())
    }

    fn interactive(&self) {
        say(&format!("\n{}", commands::help(PRODUCTS)));
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let result = match commands::parse(&line) {
                Command::Empty => Ok(()),
                Command::Quit => break,
                Command::Help => {
                    say(&commands::help(PRODUCTS));
                    Ok(())
                }
                Command::Down => {
                    (self.link)(false);
                    say(
                        "  link cut: the cart is offline (card payments within its offline limits)",
                    );
                    Ok(())
                }
                Command::Up => {
                    (self.link)(true);
                    say("  link restored: what waited is sent now");
                    Ok(())
                }
                Command::Status => self.status().map(|st| say(&status_in_words(&st))),
                Command::Cards => {
                    for c in &self.cards.cards {
                        say(&format!("  {}", commands::describe_card(c)));
                    }
                    Ok(())
                }
                Command::Card(name) => match self.cards.get(&name) {
                    Some(c) => {
                        self.card(&name);
                        say(&format!("  next card: {}", commands::describe_card(c)));
                        Ok(())
                    }
                    None => {
                        say(&format!("  no test card {name:?}: `cards` lists them"));
                        Ok(())
                    }
                },
                Command::Scan(code) => self.scan(&code),
                Command::Product(n) if (1..=PRODUCTS.len()).contains(&n) => {
                    self.scan(PRODUCTS[n - 1].0)
                }
                Command::Product(n) => {
                    say(&format!(
                        "  no product {n}: 1 to {} (`help`)",
                        PRODUCTS.len()
                    ));
                    Ok(())
                }
                Command::Unknown(l) => {
                    say(&format!("  {l:?}? `help` lists what the demo understands"));
                    Ok(())
                }
            };
            if let Err(e) = result {
                say(&format!("  {e:#}"));
            }
        }
        self.stop.stop();
    }
}

/// The cart's status as a person reads it.
fn status_in_words(st: &CartStatus) -> String {
    let link = if st.link.as_ref().is_some_and(|l| l.up) {
        "online"
    } else {
        "offline"
    };
    let waiting: Vec<String> = st
        .pending()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(class, n)| format!("{n} {class}"))
        .collect();
    let payments: Vec<String> = st
        .ledger
        .payments
        .iter()
        .map(|(state, n)| format!("{n} {}", state.replace('_', " ")))
        .collect();
    format!(
        "  the cart is {link}; waiting to be sent: {}; payments: {}; offline exposure: {}",
        if waiting.is_empty() {
            "nothing".to_owned()
        } else {
            waiting.join(", ")
        },
        if payments.is_empty() {
            "none yet".to_owned()
        } else {
            payments.join(", ")
        },
        st.exposure_line()
    )
}

fn describe(state: &str) -> &'static str {
    match state {
        "online_approved" => "APPROVED online by the backend",
        "offline_approved" => "APPROVED offline (stored; sent when the link returns)",
        "offline_declined" => "DECLINED offline (over the offline limit or not allowed)",
        "online_declined" => "DECLINED by the bank",
        "cancelled" => "cancelled",
        "failed" => "no card read",
        _ => "decided",
    }
}

fn step(title: &str) {
    say(&format!("\n== {title}"));
}

fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// The fixtures folder next to the workspace (`tests/fixtures`).
pub fn default_fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}
