//! `cart-app demo` (feature `demo`): the whole cart on one machine with no
//! hardware and no cloud, run as a script with a readable transcript.
//!
//! Real parts wherever they exist here: a local mosquitto over mutual TLS
//! (certificates made for the run), the backend emulator deciding by the
//! test cards, the ledger on a real file, the uplink, the reader simulator
//! on a pseudo-terminal encrypting to the test processor key, and the
//! scanner simulator writing codes on another pseudo-terminal read by the
//! serial scanner driver. The software identity stands in for the TPM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use backend_emulator::{Emulator, EmulatorConfig};
use hal::reader::driver::{DriverConfig, SerialReader};
use hal::reader::sim::{SimConfig as ReaderSimConfig, spawn_pty};
use hal::scanner::sim::{SimConfig as ScannerSimConfig, write_scan};
use hal::scanner::{
    Decoder, DecoderConfig, Scanner, SerialScanner, SerialScannerConfig, VariableMeasureConfig,
};
use mqtt_harness::Broker;
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::policy::LimitsConfig;
use store_and_forward::sync::{SyncConfig, Uplink};
use store_and_forward::uplink::{self, LinkConfig, SwappableClientCert};
use store_and_forward::{Currency, Ledger, LedgerConfig, Money, PaymentState, Timestamp};

use crate::basket::{Basket, Scanned, TaxTable};
use crate::catalog::Catalog;
use crate::checkout::{Checkout, PayEvent, PayResult, Shown};
use crate::demo_screens::{Screens, cart_view};
use ui::{AgeCheckView, LinkBanner, Screen, ViewUpdate};

const CART: &str = "cart-demo-0001";

struct Devices {
    scanner: SerialScanner,
    scanner_line: std::fs::File,
    _scanner_pty: nix::pty::OpenptyResult,
    reader: SerialReader<serialport::TTYPort>,
    reader_sim: hal::reader::sim::SimHandle,
}

/// Runs the scripted demo in `dir`, with the fixtures from `fixtures`.
pub fn run(dir: &Path, fixtures: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    say("Starting a local mosquitto (mutual TLS, per-run certificates) and the backend emulator");
    let broker = Broker::start();
    let link = |id: &str| LinkConfig {
        host: "127.0.0.1".into(),
        port: broker.port(),
        client_id: id.into(),
        backoff_base_ms: 100,
        backoff_max_ms: 1_000,
        ca_file: Some(broker.ca_pem_path()),
        server_name: Some("localhost".into()),
        ..LinkConfig::default()
    };
    let (bc, bk) = broker.client_cert("backend");
    let emulator = rt.block_on(async {
        let em = Emulator::start(EmulatorConfig {
            link: link("backend"),
            identity: Some((bc, bk)),
            fixtures: fixtures.to_path_buf(),
        })
        .await?;
        if !em.wait_up(Duration::from_secs(20)).await {
            bail!("the backend emulator could not reach mosquitto");
        }
        Ok(em)
    })?;

    let limits = LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 50_000)].into(),
        ..LimitsConfig::default()
    };
    let (mut ledger, _) = Ledger::open(
        LedgerConfig {
            path: dir.join("ledger.sqlite"),
            ..LedgerConfig::default()
        },
        limits.validate("offline")?,
        Box::new(FileCounter::open(
            dir.join("counter"),
            rand::random::<u32>() as u64,
        )?),
        &mut FileDataKey::new(dir.join("data.key")),
        Timestamp::now(),
    )?;
    ledger.record_backend_contact(Timestamp::now())?;
    let ledger = Arc::new(Mutex::new(ledger));
    say(&format!(
        "Ledger {} (offline limits: EUR 100.00 a payment, EUR 500.00 outstanding)",
        dir.join("ledger.sqlite").display()
    ));

    let (cc, ck) = broker.client_cert(CART);
    let cert = Arc::new(SwappableClientCert::new(
        uplink::certified_key_from_pem_files(&cc, &ck)?,
    ));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let uplink = {
        let _g = rt.enter();
        let (handle, incoming) =
            uplink::start(link(CART), Some(cert), Uplink::subscriptions(CART))?;
        let sync = SyncConfig {
            cart_id: CART.into(),
            drain_interval_ms: 200,
            telemetry_linger_secs: 5,
            ..SyncConfig::default()
        };
        let u = Uplink::new(sync, ledger.clone(), handle, None);
        rt.spawn(u.clone().run(incoming, shutdown_rx));
        u
    };
    if !rt.block_on(uplink.link().wait_up(Duration::from_secs(20))) {
        bail!("the cart could not reach mosquitto");
    }
    say(&format!(
        "Cart {CART} connected to the broker with its client certificate"
    ));

    let mut catalog = Catalog::open(&dir.join("catalog.sqlite"))?;
    let n = catalog.import_csv(include_str!("../config/demo-catalog.csv"))?;
    say(&format!("Catalog: {n} items imported from CSV"));

    let mut dev = devices(fixtures)?;
    let checkout = Checkout::new(ledger.clone(), Some((uplink.clone(), rt.handle().clone())));
    let online = checkout.online_switch();
    let taxes = TaxTable([("standard".to_string(), 1900), ("reduced".to_string(), 700)].into());
    let eur = Currency::new("EUR")?;
    let mut screens = match Screens::new(&dir.join("steps"), "EUR") {
        Ok(s) => Some(s),
        Err(e) => {
            say(&format!("(no screenshots: {e})"));
            None
        }
    };
    let snap = |screens: &mut Option<Screens>, updates: Vec<ViewUpdate>, name: &str| {
        if let Some(s) = screens.as_mut() {
            s.show(updates);
            match s.snap(name) {
                Ok(p) => say(&format!("  [screen] {}", p.display())),
                Err(e) => say(&format!("  [screen] not written: {e}")),
            }
        }
    };

    step("1. Online payment");
    let mut basket = Basket::new(eur);
    shop(
        &mut dev,
        &catalog,
        &mut basket,
        &["4006381333931", "4006381333931", "2112345003504"],
    )?;
    show_basket(&basket, &taxes);
    snap(
        &mut screens,
        vec![
            ViewUpdate::Cart(cart_view(&basket, &taxes)),
            ViewUpdate::Screen(Screen::Shopping),
        ],
        "shopping",
    );
    let res = pay(&checkout, &mut dev, &basket, "chip-approve")?;
    snap(
        &mut screens,
        vec![ViewUpdate::Screen(result_screen(&res, &basket, &taxes))],
        "approved-online",
    );

    step("2. The link goes down: offline approval within limits");
    online.store(false, Ordering::SeqCst);
    say("(link cut: the cart decides offline, the banner says payments are stored and sent later)");
    basket.clear();
    shop(
        &mut dev,
        &catalog,
        &mut basket,
        &["4012345000023", "4012345000023", "4006381333931"],
    )?;
    show_basket(&basket, &taxes);
    snap(
        &mut screens,
        vec![
            ViewUpdate::Link(LinkBanner::Offline {
                offline_cap_minor: Some(10_000),
            }),
            ViewUpdate::Cart(cart_view(&basket, &taxes)),
            ViewUpdate::Screen(Screen::Shopping),
        ],
        "offline-shopping",
    );
    let res = pay(&checkout, &mut dev, &basket, "contactless-approve")?;
    snap(
        &mut screens,
        vec![ViewUpdate::Screen(result_screen(&res, &basket, &taxes))],
        "approved-offline",
    );
    let offline = res.key;

    step("3. Over the offline limit: declined");
    basket.clear();
    shop(&mut dev, &catalog, &mut basket, &["4012345000016"])?;
    show_basket(&basket, &taxes);
    let res = pay(&checkout, &mut dev, &basket, "chip-approve")?;
    snap(
        &mut screens,
        vec![
            ViewUpdate::Cart(cart_view(&basket, &taxes)),
            ViewUpdate::Screen(result_screen(&res, &basket, &taxes)),
        ],
        "declined-over-limit",
    );

    step("4. Age-restricted item: staff check");
    basket.clear();
    shop(&mut dev, &catalog, &mut basket, &["5000267024202"])?;
    if let Some(age) = basket.pending_age_check() {
        say(&format!(
            "  payment waits: a staff member must check the shopper is {age}+"
        ));
    }
    snap(
        &mut screens,
        vec![
            ViewUpdate::Cart(cart_view(&basket, &taxes)),
            ViewUpdate::Screen(Screen::AgeCheck(AgeCheckView {
                line_id: 0,
                item_name: basket.lines()[0].name.clone(),
                staff_called: true,
            })),
        ],
        "age-check",
    );
    shop(&mut dev, &catalog, &mut basket, &["STAFF:0042"])?;
    let res = pay(&checkout, &mut dev, &basket, "chip-pin-approve")?;
    snap(
        &mut screens,
        vec![ViewUpdate::Screen(result_screen(&res, &basket, &taxes))],
        "approved-after-age-check",
    );

    step("5. The link returns: the queue drains");
    online.store(true, Ordering::SeqCst);
    uplink.kick();
    basket.clear();
    snap(
        &mut screens,
        vec![
            ViewUpdate::Link(LinkBanner::Online),
            ViewUpdate::Cart(cart_view(&basket, &taxes)),
            ViewUpdate::Screen(Screen::Idle),
        ],
        "link-back-idle",
    );
    let confirmed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        lock(&ledger)
            .payment(&offline)
            .ok()
            .flatten()
            .map(|p| p.state)
            == Some(PaymentState::Confirmed)
    });
    say(&format!(
        "  offline payment {offline}: {}",
        if confirmed {
            "forwarded and confirmed by the backend"
        } else {
            "still waiting for the backend"
        }
    ));
    let st = lock(&ledger).status(Timestamp::now())?;
    say(&format!("  ledger: {:?}", st.payments));
    say(&format!(
        "  outstanding offline: {} payment(s)",
        st.exposure.count
    ));
    let c = emulator.counts();
    say(&format!(
        "  backend: {} payments, {} charged, {} duplicates absorbed, {} telemetry events",
        c.payments, c.charged, c.payment_duplicates, c.telemetry_events
    ));
    let r = uplink.report();
    say(&format!(
        "  uplink: {} payment messages, {} control, {} telemetry ({} billable units in all)",
        r.payments.messages,
        r.control.messages,
        r.telemetry.messages,
        r.payments.billable_units + r.control.billable_units + r.telemetry.billable_units
    ));
    let _ = shutdown_tx.send(true);
    let _ = dev.reader_sim.stop();
    rt.block_on(async {
        uplink.link().shutdown().await;
        emulator.shutdown().await;
    });
    step("Done");
    Ok(())
}

fn devices(fixtures: &Path) -> anyhow::Result<Devices> {
    let reader_sim = spawn_pty(ReaderSimConfig::from_fixtures(fixtures)?)?;
    let reader = SerialReader::open(
        &reader_sim.path().to_string_lossy(),
        DriverConfig::default(),
    )?;
    let pty = nix::pty::openpty(None, None)?;
    let mut t = nix::sys::termios::tcgetattr(&pty.slave)?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)?;
    let path = nix::unistd::ttyname(&pty.slave)?;
    let variable: VariableMeasureConfig = toml::from_str(
        "[[layouts]]\nprefixes = [\"21\"]\npattern = \"PPIIIIIVVVVVK\"\nmeasure = { kind = \"weight\", decimals = 3 }\n",
    )
    .context("demo variable-measure layout")?;
    let decoder = Decoder::new(DecoderConfig {
        variable_measure: variable,
        ..DecoderConfig::default()
    });
    let scanner = SerialScanner::new(
        SerialScannerConfig {
            port: path.to_string_lossy().into_owned(),
            ..SerialScannerConfig::default()
        },
        decoder,
    )?;
    let scanner_line = std::fs::File::from(pty.master.try_clone()?);
    Ok(Devices {
        scanner,
        scanner_line,
        _scanner_pty: pty,
        reader,
        reader_sim,
    })
}

fn shop(
    dev: &mut Devices,
    catalog: &Catalog,
    basket: &mut Basket,
    codes: &[&str],
) -> anyhow::Result<()> {
    for code in codes {
        write_scan(
            &mut dev.scanner_line,
            code.as_bytes(),
            &ScannerSimConfig::default(),
        )?;
        let scan = dev
            .scanner
            .next_scan(Duration::from_secs(5))?
            .with_context(|| format!("no scan came back for {code}"))?;
        match basket.scan(&scan, catalog, true)? {
            Scanned::Added { line } | Scanned::NeedsAgeCheck { line, .. } => {
                let l = &basket.lines()[line];
                let what = match l.weight_g {
                    Some(g) => format!("{} {:.3} kg", l.name, g as f64 / 1000.0),
                    None => format!("{} x{}", l.name, l.quantity),
                };
                say(&format!("  scanned {code}: {what}"));
            }
            Scanned::AgeCheckCleared => say("  staff badge scanned: age check done"),
            other => say(&format!("  scanned {code}: {other:?}")),
        }
    }
    Ok(())
}

fn show_basket(basket: &Basket, taxes: &TaxTable) {
    for l in basket.lines() {
        say(&format!("    {:<28} {:>12}", l.name, l.total.to_string()));
    }
    let tax: i64 = basket.tax(taxes).values().map(|m| m.minor).sum();
    say(&format!(
        "    {:<28} {:>12}   (incl. VAT {})",
        "TOTAL",
        basket.total().to_string(),
        Money::new(tax, basket.total().currency)
    ));
}

fn pay(
    checkout: &Checkout,
    dev: &mut Devices,
    basket: &Basket,
    card: &str,
) -> anyhow::Result<PayResult> {
    if !basket.can_pay() {
        bail!("basket cannot be paid yet");
    }
    dev.reader_sim.queue_card(card);
    say(&format!("  Pay {} (test card {card})", basket.total()));
    let res = checkout.pay(
        &mut dev.reader,
        basket.total(),
        false,
        &mut |e| match e {
            PayEvent::Prompt(p) => say(&format!("    reader: {p:?}")),
            PayEvent::Authorizing { online } => say(if online {
                "    authorizing online"
            } else {
                "    link down: the offline policy decides"
            }),
        },
        &|| false,
    )?;
    let text = match &res.shown {
        Shown::ApprovedOnline { reference } => format!("APPROVED (online, reference {reference})"),
        Shown::ApprovedOffline => {
            "APPROVED (offline: stored and sent when the link returns)".into()
        }
        Shown::DeclinedOnline { reason } => format!("DECLINED by the bank: {reason}"),
        Shown::DeclinedOffline { reasons } => {
            format!("DECLINED offline: {}", serde_json::to_string(reasons)?)
        }
        Shown::NoCard { code } => format!("no card read: {code:?}"),
        Shown::Cancelled => "cancelled".into(),
    };
    say(&format!(
        "  => {text}; card {}; ledger {:?}",
        res.masked_pan.as_deref().unwrap_or("-"),
        res.state
    ));
    Ok(res)
}

fn result_screen(res: &PayResult, basket: &Basket, taxes: &TaxTable) -> Screen {
    crate::session::result_screen(res, cart_view(basket, taxes))
}

fn lock(l: &Arc<Mutex<Ledger>>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
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
