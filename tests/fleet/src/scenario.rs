//! The four scenarios, each returning a report (printed and written as
//! JSON by the `fleet-sim` binary, checked by the reduced run's test).
//!
//! 1. [`steady`]: a fleet shopping at a set rate; messages and bytes per
//!    second at the broker, CPU and memory, and the cloud bill per group.
//! 2. [`restart`]: the broker restarted under the fleet; time until every
//!    cart is back and the connection rate the broker sees.
//! 3. [`outage`]: every cart offline for a simulated period, then the
//!    link returns; the time to drain the fleet's backlog, peak ingest,
//!    every payment exactly once.
//! 4. [`rollout`]: a job rolled out at a set rate with an abort
//!    threshold, some carts failing on purpose.
//!
//! Each runs against the local mosquitto or an external broker
//! ([`Target`]), except [`restart`], which needs the local one. Without the
//! backend emulator (an external broker's own backend answers), what only
//! the emulator can tell is reported as not measured (`None`), and
//! [`rollout`] cannot run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_emulator::jobs::{
    AbortAction, AbortConfig, AbortCriteria, FailureType, JobConfig, JobStatus, ManualClock,
    RolloutConfig,
};
use serde::Serialize;
use store_and_forward::sync::{DeliveryReport, SyncConfig};
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::uplink::Traffic;
use store_and_forward::{Currency, Money, Timestamp};

use tracing::info;

use crate::SimError;
use crate::bill::{MONTH, Monthly, PriceTable, Usage};
use crate::cart::Activity;
use crate::external::Target;
use crate::fleet::{ExactlyOnce, Fleet, FleetConfig, Group};
use crate::probe::{self, Sampler};

// ---------------------------------------------------------------- steady

/// One group of a steady run, as the bill compares them: what it
/// represents in shipped settings (the run divides them by the time scale).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// Its name.
    pub name: String,
    /// `telemetry_linger_secs` it represents.
    pub telemetry_linger_secs: u64,
    /// `status_interval_secs` it represents.
    pub status_interval_secs: u64,
}

/// The steady scenario's knobs.
#[derive(Debug, Clone)]
pub struct SteadyConfig {
    /// Carts.
    pub carts: usize,
    /// Seconds measured (after the warm-up).
    pub secs: u64,
    /// Seconds after start before measuring.
    pub warmup_secs: u64,
    /// Telemetry readings per cart per second, as represented.
    pub readings_per_sec: f64,
    /// A checkout every this many seconds per cart, as represented (0: none).
    pub checkout_every_secs: f64,
    /// Simulated time runs this many times faster than the wall clock:
    /// readings and checkouts come `time_scale` times as often, lingers and
    /// status intervals are divided by it (a whole number dividing them).
    pub time_scale: u64,
    /// The groups compared (dealt round-robin to the carts).
    pub settings: Vec<Setting>,
    /// The price table.
    pub prices: PriceTable,
    /// Fleet sizes to price the bill at (tiers apply to the whole account).
    pub bill_fleets: Vec<u64>,
    /// The broker.
    pub target: Target,
}

/// One group's measured month and its bill, next to the naive design.
#[derive(Debug, Clone, Serialize)]
pub struct GroupBill {
    /// The setting.
    pub setting: Setting,
    /// Carts in the group.
    pub carts: usize,
    /// One cart's month, measured.
    pub month: Monthly,
    /// Telemetry messages a cart-month (measured).
    pub telemetry_messages: f64,
    /// Status and acks a cart-month (measured).
    pub control_messages: f64,
    /// Payment messages a cart-month, from the cart (measured).
    pub payment_messages: f64,
    /// Messages a cart-month if every telemetry event were its own
    /// message (the naive design), on the same traffic.
    pub naive_messages: f64,
    /// USD per cart-month at each fleet size: (carts, shipped design, naive).
    pub usd: Vec<(u64, f64, f64)>,
    /// The bill's lines at the first fleet size.
    pub lines: Vec<crate::bill::Line>,
    /// Set when the measured (represented) window was shorter than three
    /// lingers or status intervals: the month is then underestimated.
    pub caveat: Option<String>,
}

/// The steady scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyReport {
    /// The broker: `local mosquitto` or `external HOST:PORT`.
    pub target: String,
    /// Carts.
    pub carts: usize,
    /// Wall-clock seconds measured.
    pub secs: f64,
    /// Time scale (1: real time).
    pub time_scale: u64,
    /// Seconds until every cart was connected at start.
    pub start_secs: f64,
    /// PUBLISHes per second the broker received from carts.
    pub broker_msgs_in_per_sec: f64,
    /// PUBLISHes per second the broker delivered to carts.
    pub broker_msgs_out_per_sec: f64,
    /// Their bytes per second (MQTT packets, before TLS).
    pub broker_bytes_in_per_sec: f64,
    /// Bytes per second to carts.
    pub broker_bytes_out_per_sec: f64,
    /// The broker process (`None`: an external broker, not measured).
    pub broker: Option<probe::Usage>,
    /// The simulator process (carts, emulator).
    pub simulator: probe::Usage,
    /// The simulator's memory growth per cart started, KiB.
    pub per_cart_kib: f64,
    /// Checkouts approved during the run.
    pub checkouts: u64,
    /// The groups' bills.
    pub groups: Vec<GroupBill>,
    /// Every payment and event exactly once, after a final drain (`None`:
    /// no emulator ran, not checked at the backend; the drain still
    /// waited until every payment was confirmed to its cart).
    pub exactly_once: Option<ExactlyOnce>,
}

/// The sync configuration representing `s` at `time_scale`.
pub fn scaled_sync(s: &Setting, time_scale: u64) -> Result<SyncConfig, SimError> {
    let k = time_scale.max(1);
    for v in [s.telemetry_linger_secs, s.status_interval_secs] {
        if v % k != 0 {
            return Err(SimError::Config(format!(
                "{}: {v} s is not a multiple of the time scale {k}",
                s.name
            )));
        }
    }
    Ok(SyncConfig {
        telemetry_linger_secs: s.telemetry_linger_secs / k,
        status_interval_secs: (s.status_interval_secs / k).max(1),
        ..SyncConfig::default()
    })
}

/// Scenario 1.
pub async fn steady(cfg: SteadyConfig) -> Result<SteadyReport, SimError> {
    let k = cfg.time_scale.max(1);
    let groups = cfg
        .settings
        .iter()
        .map(|s| {
            Ok(Group {
                name: s.name.clone(),
                sync: scaled_sync(s, k)?,
            })
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let fleet = Fleet::start(FleetConfig {
        carts: cfg.carts,
        activity: Some(Activity {
            readings_per_sec: cfg.readings_per_sec * k as f64,
            checkout_every_secs: cfg.checkout_every_secs / k as f64,
            commit_every_ms: (2_000 / k).max(10),
        }),
        groups,
        target: cfg.target.clone(),
        jobs_service: cfg.target.is_local(),
        ..FleetConfig::default()
    })
    .await?;
    let broker_pid = fleet.broker_pid();
    info!(
        carts = fleet.carts.len(),
        start_secs = fleet.start_time.as_secs_f64(),
        "fleet up; warming up"
    );
    tokio::time::sleep(Duration::from_secs(cfg.warmup_secs)).await;
    let t0 = Instant::now();
    let traffic0 = fleet.traffic();
    let reports0: Vec<DeliveryReport> = fleet.carts.iter().map(|c| c.uplink.report()).collect();
    let approved0: u64 = fleet.carts.iter().map(|c| c.approved().len() as u64).sum();
    let produced0 = produced(&fleet)?;
    let (mut broker, mut sim) = (Sampler::default(), Sampler::default());
    // An external broker's process is not on this machine: not measured.
    let sample_broker = |b: &mut Sampler| {
        if let Some(pid) = broker_pid {
            b.add(probe::read(Some(pid)));
        }
    };
    while t0.elapsed() < Duration::from_secs(cfg.secs) {
        sample_broker(&mut broker);
        sim.add(probe::read(None));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sample_broker(&mut broker);
    sim.add(probe::read(None));
    let secs = t0.elapsed().as_secs_f64();
    let traffic1 = fleet.traffic();
    let reports1: Vec<DeliveryReport> = fleet.carts.iter().map(|c| c.uplink.report()).collect();
    let approved1: u64 = fleet.carts.iter().map(|c| c.approved().len() as u64).sum();
    let produced1 = produced(&fleet)?;
    let all = traffic1
        .iter()
        .sum::<Traffic>()
        .since(&traffic0.iter().sum());
    let rss_now = probe::read(None).map_or(0, |r| r.rss_bytes);
    let per_cart_kib =
        rss_now.saturating_sub(fleet.rss_before_carts) as f64 / 1024.0 / cfg.carts.max(1) as f64;

    let represented = Duration::from_secs_f64(secs * k as f64);
    let month_factor = MONTH.as_secs_f64() / represented.as_secs_f64();
    let mut bills = Vec::new();
    for (g, setting) in cfg.settings.iter().enumerate() {
        let members: Vec<usize> = (0..fleet.carts.len())
            .filter(|&i| fleet.group_of[i] == g)
            .collect();
        let n = members.len().max(1) as f64;
        let t: Traffic = members
            .iter()
            .map(|&i| traffic1[i].since(&traffic0[i]))
            .sum();
        let usage = Usage::from_traffic(&t);
        let mut month = usage.per_cart_month(members.len() as u64, represented);
        // Connected time does not run faster: the share of wall time
        // connected, over a month.
        month.connection_minutes =
            t.connected_ms as f64 / (secs * 1_000.0) / n * MONTH.as_secs_f64() / 60.0;
        let cat = |f: fn(&DeliveryReport) -> (u64, u64)| {
            members
                .iter()
                .map(|&i| {
                    let (a, b) = (f(&reports0[i]), f(&reports1[i]));
                    (b.0 - a.0, b.1 - a.1)
                })
                .fold((0u64, 0u64), |s, x| (s.0 + x.0, s.1 + x.1))
        };
        let (tel_units, _) = cat(|r| (r.telemetry.billable_units, r.telemetry.records));
        let tel_events: u64 = members.iter().map(|&i| produced1[i] - produced0[i]).sum();
        let (ctl_units, _) = cat(|r| (r.control.billable_units, r.control.records));
        let (pay_units, _) = cat(|r| (r.payments.billable_units, r.payments.records));
        let per_month = |x: u64| x as f64 * month_factor / n;
        // The naive design: each event the carts produced its own message
        // (one step), and each routed by the ingest rule.
        let mut naive = month;
        let swap = per_month(tel_events) - per_month(tel_units);
        naive.messages += swap;
        naive.rules_triggered += swap;
        naive.rule_actions += swap;
        let usd = cfg
            .bill_fleets
            .iter()
            .map(|&f| {
                (
                    f,
                    cfg.prices.bill(&month, f).usd_per_cart_month,
                    cfg.prices.bill(&naive, f).usd_per_cart_month,
                )
            })
            .collect();
        let first = cfg.bill_fleets.first().copied().unwrap_or(1_000);
        bills.push(GroupBill {
            setting: setting.clone(),
            carts: members.len(),
            month,
            telemetry_messages: per_month(tel_units),
            control_messages: per_month(ctl_units),
            payment_messages: per_month(pay_units),
            naive_messages: naive.messages,
            usd,
            lines: cfg.prices.bill(&month, first).lines,
            caveat: {
                let longest = setting.telemetry_linger_secs.max(setting.status_interval_secs);
                (represented.as_secs() < 3 * longest).then(|| {
                    format!(
                        "{} s represented, under 3 x {longest} s: measure longer or raise --time-scale",
                        represented.as_secs()
                    )
                })
            },
        });
    }
    info!("measured; shoppers stop, draining for the exactly-once check");
    fleet.stop_activity().await;
    fleet.drain(Duration::from_secs(300)).await?;
    let exactly_once = match fleet.emulator {
        Some(_) => Some(fleet.verify_exactly_once()?),
        None => None,
    };
    let report = SteadyReport {
        target: cfg.target.describe(),
        carts: cfg.carts,
        secs,
        time_scale: k,
        start_secs: fleet.start_time.as_secs_f64(),
        broker_msgs_in_per_sec: all.publishes_out as f64 / secs,
        broker_msgs_out_per_sec: all.publishes_in as f64 / secs,
        broker_bytes_in_per_sec: all.publish_out_bytes as f64 / secs,
        broker_bytes_out_per_sec: all.publish_in_bytes as f64 / secs,
        broker: broker_pid.map(|_| broker.usage()),
        simulator: sim.usage(),
        per_cart_kib,
        checkouts: approved1 - approved0,
        groups: bills,
        exactly_once,
    };
    fleet.stop().await;
    Ok(report)
}

/// Telemetry events each cart has stored so far.
fn produced(fleet: &Fleet) -> Result<Vec<u64>, SimError> {
    fleet
        .carts
        .iter()
        .map(|c| crate::fleet::telemetry_rows(c))
        .collect()
}

// ---------------------------------------------------------------- restart

/// The restart scenario's knobs.
#[derive(Debug, Clone)]
pub struct RestartConfig {
    /// Carts.
    pub carts: usize,
    /// How long the broker stays down, seconds.
    pub down_secs: f64,
    /// The link's jittered backoff.
    pub jitter: bool,
    /// Give up waiting for the fleet after this long, seconds.
    pub timeout_secs: u64,
    /// The broker: only [`Target::Local`] can be restarted (an external
    /// one is refused, [`SimError::NeedsLocalBroker`]).
    pub target: Target,
}

/// The restart scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    /// Carts.
    pub carts: usize,
    /// Jittered backoff on.
    pub jitter: bool,
    /// Broker down for, seconds.
    pub down_secs: f64,
    /// From the broker's return until every cart was connected and
    /// subscribed, seconds.
    pub all_back_secs: f64,
    /// Median cart's time back after the broker's return, seconds.
    pub median_back_secs: f64,
    /// Most connections accepted in one second.
    pub peak_connects_per_sec: u64,
    /// Most connections accepted in one 100 ms window.
    pub peak_connects_per_100ms: u64,
    /// Failed connection attempts while the broker was down or busy.
    pub failed_attempts: u64,
    /// Connections per 100 ms window from the broker's return.
    pub connects_per_100ms: Vec<u64>,
}

/// Scenario 2 (the local broker only).
pub async fn restart(cfg: RestartConfig) -> Result<RestartReport, SimError> {
    if !cfg.target.is_local() {
        return Err(SimError::NeedsLocalBroker("the restart scenario"));
    }
    let fleet = Fleet::start(FleetConfig {
        carts: cfg.carts,
        jitter: cfg.jitter,
        ..FleetConfig::default()
    })
    .await?;
    let n = fleet.carts.len();
    let before: Vec<(u64, u64)> = fleet
        .carts
        .iter()
        .map(|c| {
            let s = c.uplink.link().state().borrow().clone();
            (s.connects, s.failures)
        })
        .collect();
    let broker = fleet.local_broker("the restart scenario")?;
    broker.stop();
    tokio::time::sleep(Duration::from_secs_f64(cfg.down_secs)).await;
    broker.resume();
    let back = Instant::now();
    let mut back_at: Vec<Option<f64>> = vec![None; n];
    let deadline = back + Duration::from_secs(cfg.timeout_secs);
    while back_at.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            let missing = back_at.iter().filter(|b| b.is_none()).count();
            return Err(SimError::Timeout(format!(
                "{missing} of {n} carts not back after {} s",
                cfg.timeout_secs
            )));
        }
        let now = back.elapsed().as_secs_f64();
        for (i, c) in fleet.carts.iter().enumerate() {
            if back_at[i].is_none() {
                let s = c.uplink.link().state().borrow().clone();
                if s.up && s.connects > before[i].0 {
                    back_at[i] = Some(now);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet
        .wait_all_up(Duration::from_secs(cfg.timeout_secs))
        .await?;
    let all_back_secs = back.elapsed().as_secs_f64();
    let failed_attempts: u64 = fleet
        .carts
        .iter()
        .enumerate()
        .map(|(i, c)| c.uplink.link().state().borrow().failures - before[i].1)
        .sum();
    let mut times: Vec<f64> = back_at.into_iter().flatten().collect();
    times.sort_by(f64::total_cmp);
    let windows = (times.last().copied().unwrap_or(0.0) * 10.0) as usize + 1;
    let mut per_100ms = vec![0u64; windows];
    for t in &times {
        per_100ms[(t * 10.0) as usize] += 1;
    }
    let peak_1s = (0..windows)
        .map(|w| per_100ms[w..(w + 10).min(windows)].iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let report = RestartReport {
        carts: n,
        jitter: cfg.jitter,
        down_secs: cfg.down_secs,
        all_back_secs,
        median_back_secs: times.get(times.len() / 2).copied().unwrap_or(0.0),
        peak_connects_per_sec: peak_1s,
        peak_connects_per_100ms: per_100ms.iter().copied().max().unwrap_or(0),
        failed_attempts,
        connects_per_100ms: per_100ms,
    };
    fleet.stop().await;
    Ok(report)
}

// ---------------------------------------------------------------- outage

/// The outage scenario's knobs.
#[derive(Debug, Clone)]
pub struct OutageConfig {
    /// Carts.
    pub carts: usize,
    /// Simulated outage, seconds.
    pub outage_secs: u64,
    /// Readings per cart per second during it.
    pub readings_per_sec: f64,
    /// A checkout every this many seconds per cart during it.
    pub checkout_every_secs: f64,
    /// Give up draining after this long, seconds.
    pub timeout_secs: u64,
    /// The broker (an external one is fronted by the proxy too).
    pub target: Target,
}

/// The outage scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OutageReport {
    /// The broker: `local mosquitto` or `external HOST:PORT`.
    pub target: String,
    /// Carts.
    pub carts: usize,
    /// Simulated outage, seconds.
    pub outage_secs: u64,
    /// Wall time spent building the backlog (carts selling offline), seconds.
    pub backlog_build_secs: f64,
    /// Telemetry events waiting when the link returned.
    pub telemetry_backlog: u64,
    /// Offline payments waiting when the link returned.
    pub payment_backlog: u64,
    /// From the link's return until every cart was connected, seconds.
    pub reconnect_secs: f64,
    /// From the link's return until every record of the outage was
    /// delivered and every payment confirmed, seconds.
    pub drain_secs: f64,
    /// Most messages the backend received in one second (`None`: no
    /// emulator ran, not measured).
    pub peak_ingest_msgs_per_sec: Option<u64>,
    /// Mean over the drain (`None`: not measured).
    pub mean_ingest_msgs_per_sec: Option<f64>,
    /// Every payment and event exactly once (`None`: no emulator ran, not
    /// checked at the backend; every payment was still confirmed to its
    /// cart).
    pub exactly_once: Option<ExactlyOnce>,
}

/// Scenario 3.
pub async fn outage(cfg: OutageConfig) -> Result<OutageReport, SimError> {
    // The cloud stays up (the backend connected, as AWS's ingest rules
    // always are); the carts' way to it goes.
    let fleet = Fleet::start(FleetConfig {
        carts: cfg.carts,
        via_proxy: true,
        target: cfg.target.clone(),
        jobs_service: cfg.target.is_local(),
        ..FleetConfig::default()
    })
    .await?;
    let proxy = fleet
        .proxy
        .as_ref()
        .ok_or_else(|| SimError::Check("no proxy".into()))?;
    info!(
        carts = fleet.carts.len(),
        "fleet up; cutting every cart off"
    );
    proxy.set_refusing(true);
    // Every cart sees its link drop before it sells offline.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.carts_up() > 0 {
        if Instant::now() > deadline {
            return Err(SimError::Timeout("carts noticing the outage".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outage in simulated time: each cart's readings of the period
    // (stamped across it) in the daemon's 2 s groups, and its checkouts,
    // decided offline as they would have been.
    let built = Instant::now();
    let eur = Currency::new("EUR").expect("EUR");
    let start = Timestamp(Timestamp::now().0 - cfg.outage_secs as i64 * 1_000);
    let readings = (cfg.outage_secs as f64 * cfg.readings_per_sec) as usize;
    let checkouts = if cfg.checkout_every_secs > 0.0 {
        (cfg.outage_secs as f64 / cfg.checkout_every_secs) as usize
    } else {
        0
    };
    let mut payment_backlog = 0u64;
    for (i, cart) in fleet.carts.iter().enumerate() {
        let events = store_and_forward::telemetry::simulated_readings(readings, start, i as u64);
        let c = cart.clone();
        tokio::task::spawn_blocking(move || -> Result<(), SimError> {
            for group in events.chunks(2) {
                let at = match &group[0] {
                    TelemetryEvent::Reading { at, .. } => *at,
                    _ => Timestamp::now(),
                };
                c.ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .enqueue_telemetry(group, at)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| SimError::Check(format!("backlog task: {e}")))??;
        for j in 0..checkouts {
            let amount = Money::new(500 + (i * 31 + j * 7) as i64 % 9_000, eur);
            match cart.checkout(&fleet.reader, amount).await? {
                crate::cart::Decided::Offline => payment_backlog += 1,
                other => {
                    return Err(SimError::Check(format!(
                        "{}: a checkout during the outage was {other:?}",
                        cart.id
                    )));
                }
            }
        }
    }
    let backlog_build_secs = built.elapsed().as_secs_f64();
    info!(backlog_build_secs, "backlog built; the link returns");
    let mut telemetry_backlog = 0;
    for c in &fleet.carts {
        let depth = c
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outbox_depth()?;
        telemetry_backlog += depth
            .iter()
            .filter(|d| d.class == "telemetry")
            .map(|d| d.pending)
            .sum::<u64>();
    }
    // The backend's ingest: what the emulator's link received (0 when no
    // emulator runs; then reported as not measured).
    let ingest = |f: &Fleet| {
        f.emulator
            .as_ref()
            .map_or(0, |e| e.link().traffic().publishes_in)
    };
    let ingest0 = ingest(&fleet);
    proxy.set_refusing(false);
    let back = Instant::now();
    let back_ts = Timestamp::now();
    let mut reconnect_secs = None;
    let mut peak = 0u64;
    let mut last = (Instant::now(), ingest0);
    let drain_deadline = back + Duration::from_secs(cfg.timeout_secs);
    // A cart whose outage records are all delivered and payments all
    // confirmed stays so: only the others are looked at again (each look
    // takes the cart's ledger lock, which its drain needs).
    let mut done = vec![false; fleet.carts.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if reconnect_secs.is_none() && fleet.carts_up() == fleet.carts.len() {
            reconnect_secs = Some(back.elapsed().as_secs_f64());
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = ingest(&fleet);
            let rate = (now - last.1) as f64 / last.0.elapsed().as_secs_f64();
            peak = peak.max(rate.round() as u64);
            last = (Instant::now(), now);
        }
        // The backlog is the outage's records: what the carts queue after
        // the return (the confirmations' telemetry) lingers as designed.
        let mut waiting = 0u64;
        for (i, c) in fleet.carts.iter().enumerate() {
            if done[i] {
                continue;
            }
            if c.unconfirmed()? == 0 && !c.waiting_since_before(back_ts)? {
                done[i] = true;
            } else {
                waiting += 1;
            }
        }
        info!(carts_waiting = waiting, up = fleet.carts_up(), "draining");
        if waiting == 0 {
            break;
        }
        if Instant::now() > drain_deadline {
            return Err(SimError::Timeout(format!(
                "{waiting} carts still hold outage records {} s after the link returned",
                cfg.timeout_secs
            )));
        }
    }
    let drain_secs = back.elapsed().as_secs_f64();
    let total = ingest(&fleet) - ingest0;
    // What came after (lingering telemetry) goes too before the check.
    fleet.drain(Duration::from_secs(cfg.timeout_secs)).await?;
    let measured = fleet.emulator.is_some();
    let exactly_once = if measured {
        Some(fleet.verify_exactly_once()?)
    } else {
        None
    };
    let report = OutageReport {
        target: cfg.target.describe(),
        carts: fleet.carts.len(),
        outage_secs: cfg.outage_secs,
        backlog_build_secs,
        telemetry_backlog,
        payment_backlog,
        reconnect_secs: reconnect_secs.unwrap_or(drain_secs),
        drain_secs,
        peak_ingest_msgs_per_sec: measured.then_some(peak),
        mean_ingest_msgs_per_sec: measured.then(|| total as f64 / drain_secs.max(1e-3)),
        exactly_once,
    };
    fleet.stop().await;
    Ok(report)
}

// ---------------------------------------------------------------- rollout

/// The rollout scenario's knobs.
#[derive(Debug, Clone)]
pub struct RolloutScenario {
    /// Carts (every one a target).
    pub carts: usize,
    /// `maximumPerMinute`.
    pub per_minute: u32,
    /// Every `fail_every`-th cart fails the job (0: none).
    pub fail_every: usize,
    /// `thresholdPercentage` of FAILED that aborts.
    pub abort_percent: f64,
    /// `minNumberOfExecutedThings`.
    pub abort_min_executed: u32,
    /// Real seconds allowed per simulated minute for the carts to finish
    /// what was rolled out.
    pub minute_timeout_secs: u64,
    /// The broker (the emulator's Jobs service runs the rollout: an
    /// external broker needs the emulator, and must let the backend
    /// identity use `$aws/things/+/jobs/...`).
    pub target: Target,
}

/// The rollout scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    /// The broker: `local mosquitto` or `external HOST:PORT`.
    pub target: String,
    /// Carts targeted.
    pub carts: usize,
    /// `maximumPerMinute`.
    pub per_minute: u32,
    /// The share of carts failing on purpose.
    pub failing_share: f64,
    /// The abort threshold, percent.
    pub abort_percent: f64,
    /// Executions created in each simulated minute.
    pub created_per_minute: Vec<u64>,
    /// The job's status at the end.
    pub job_status: String,
    /// Aborted by its criteria.
    pub aborted: bool,
    /// The simulated minute it ended in.
    pub ended_minute: usize,
    /// Executions: created, succeeded, failed, canceled.
    pub executions: u64,
    /// SUCCEEDED.
    pub succeeded: u64,
    /// FAILED.
    pub failed: u64,
    /// CANCELED (queued when the job was aborted).
    pub canceled: u64,
    /// Carts never given an execution (the rollout stopped first).
    pub never_reached: u64,
    /// Executions created after the abort (must be none).
    pub created_after_end: u64,
    /// Wall time, seconds.
    pub wall_secs: f64,
}

/// Scenario 4.
pub async fn rollout(cfg: RolloutScenario) -> Result<RolloutReport, SimError> {
    if cfg.target.external().is_some_and(|e| e.backend.is_none()) {
        return Err(SimError::NeedsEmulator("the rollout scenario"));
    }
    let clock = Arc::new(ManualClock::new(Timestamp::now().0));
    let fleet = Fleet::start(FleetConfig {
        carts: cfg.carts,
        fail_jobs_every: cfg.fail_every,
        jobs_clock: Some(clock.clone()),
        target: cfg.target.clone(),
        jobs_service: true,
        ..FleetConfig::default()
    })
    .await?;
    let t0 = Instant::now();
    let jobs = fleet
        .emulator("the rollout scenario")?
        .jobs()
        .ok_or_else(|| SimError::Check("the emulator runs no Jobs service".into()))?;
    let ids: Vec<String> = fleet.carts.iter().map(|c| c.id.clone()).collect();
    let targets: Vec<&str> = ids.iter().map(String::as_str).collect();
    let job_id = "fleet-log-level";
    let mut job = JobConfig::new(
        job_id,
        &targets,
        serde_json::json!({"operation": "log_level", "level": "debug", "minutes": 5}),
    );
    job.job_executions_rollout_config = Some(RolloutConfig {
        maximum_per_minute: cfg.per_minute,
    });
    job.abort_config = Some(AbortConfig {
        criteria_list: vec![AbortCriteria {
            failure_type: FailureType::Failed,
            action: AbortAction::Cancel,
            threshold_percentage: cfg.abort_percent,
            min_number_of_executed_things: cfg.abort_min_executed,
        }],
    });
    jobs.create_job(job).await?;
    let created = || jobs.with(|j| j.executions(job_id).len() as u64);
    let status = || jobs.with(|j| j.job_status(job_id));
    let mut created_per_minute = Vec::new();
    let mut seen = 0u64;
    let mut minute = 0usize;
    loop {
        // Let the carts finish what this minute rolled out.
        let deadline = Instant::now() + Duration::from_secs(cfg.minute_timeout_secs);
        loop {
            let open = jobs.with(|j| {
                j.executions(job_id)
                    .iter()
                    .filter(|e| !e.status.is_terminal())
                    .count()
            });
            if open == 0 || status() != Some(JobStatus::InProgress) {
                break;
            }
            if Instant::now() > deadline {
                return Err(SimError::Timeout(format!(
                    "minute {minute}: {open} executions still open"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = created();
        created_per_minute.push(now - seen);
        seen = now;
        if status() != Some(JobStatus::InProgress) {
            break;
        }
        clock.advance(Duration::from_secs(60));
        jobs.tick().await?;
        minute += 1;
    }
    // A few more minutes: nothing more may roll out.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(60));
        jobs.tick().await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created_after_end = created() - seen;
    let execs = jobs.with(|j| j.executions(job_id));
    let count = |s: store_and_forward::wire::jobs::JobExecutionStatus| {
        execs.iter().filter(|e| e.status == s).count() as u64
    };
    use store_and_forward::wire::jobs::JobExecutionStatus as S;
    let report = RolloutReport {
        target: cfg.target.describe(),
        carts: cfg.carts,
        per_minute: cfg.per_minute,
        failing_share: if cfg.fail_every == 0 {
            0.0
        } else {
            (0..cfg.carts).filter(|i| i % cfg.fail_every == 0).count() as f64 / cfg.carts as f64
        },
        abort_percent: cfg.abort_percent,
        created_per_minute,
        job_status: format!("{:?}", status()),
        aborted: jobs.with(|j| j.aborted(job_id)),
        ended_minute: minute,
        executions: execs.len() as u64,
        succeeded: count(S::Succeeded),
        failed: count(S::Failed),
        canceled: count(S::Canceled),
        never_reached: (cfg.carts as u64).saturating_sub(execs.len() as u64),
        created_after_end,
        wall_secs: t0.elapsed().as_secs_f64(),
    };
    fleet.stop().await;
    Ok(report)
}
