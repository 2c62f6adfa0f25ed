//! The update job and the health check after a boot, in the daemon
//! (`crate::update` has the parts). The job: checks the document, downloads
//! the bundle in the background (the cart keeps selling), has RAUC read its
//! signed manifest, waits for a quiet moment in the maintenance window,
//! shows out of service, records the update durably, installs it through
//! RAUC and reboots through logind. After the boot the health check (the
//! ledger open with its counter binding, READY=1) marks the slot good, or
//! bad and reboots into the old one; the resumed job reports the result
//! with both versions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_and_forward::Timestamp;
use store_and_forward::policy::LedgerIntegrity;
use store_and_forward::sync::jobs::{JobDone, JobOutcome, details};
use store_and_forward::wire::jobs::{StatusDetails, Update};
use tracing::{error, info, warn};

use super::jobs::JobContext;
use super::threads::{Msg, OPERATOR_OUT_OF_SERVICE};
use crate::update::download::{self, Wanted};
use crate::update::pending::{self, Boot, LAST_KEY, Last, PENDING_KEY, Pending, Verdict};
use crate::update::rauc::Rauc;
use crate::update::{self as upd, Refusal, Window};

/// The health check's outcome for this boot, for a resumed update job.
pub type VerdictCell = tokio::sync::watch::Sender<Option<Last>>;

fn read<T: serde::de::DeserializeOwned>(ctx: &JobContext, key: &str) -> Option<T> {
    let raw = ctx.lock_ledger().state(key).ok().flatten()?;
    serde_json::from_str(&raw).ok()
}

fn write(ctx: &JobContext, entries: &[(&str, Option<String>)]) -> Result<(), String> {
    let entries: Vec<(&str, Option<&str>)> =
        entries.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    ctx.lock_ledger()
        .set_states_durable(&entries, Timestamp::now())
        .map_err(|e| format!("not recorded: {e}"))
}

fn outcome_of(last: &Last) -> JobOutcome {
    let mut d = details("from_version", &last.from_version);
    d.insert("to_version".into(), last.to_version.clone());
    match last.result {
        pending::Result::Succeeded => {
            d.insert("result".into(), "installed and marked good".into());
            JobOutcome::Succeeded(d)
        }
        pending::Result::Failed | pending::Result::RolledBack => {
            d.insert("reason".into(), last.detail.clone());
            JobOutcome::FailedWith(d)
        }
    }
}

/// The health check after a start: with an update pending, judges it and
/// marks the booted slot (or reboots back); without one, marks a booted
/// slot that RAUC still counts as on trial good. Returns the update's
/// result when one was decided. `integrity` is the ledger's binding as
/// opened; called once READY=1 went out.
pub async fn after_boot(ctx: &JobContext, integrity: LedgerIntegrity) -> Option<Last> {
    let pending: Option<Pending> = read(ctx, PENDING_KEY);
    let rauc = match Rauc::connect().await {
        Ok(r) => r,
        Err(e) => {
            if pending.is_some() {
                error!(cause = %e, "an update is pending but RAUC cannot be reached");
            } else {
                info!(cause = %e, "no RAUC on this system: updates are refused");
            }
            return None;
        }
    };
    let slot = match rauc.boot_slot().await {
        Ok(s) => s,
        Err(e) => {
            warn!(cause = %e, "RAUC does not say which slot booted");
            return None;
        }
    };
    match rauc.slots().await {
        Ok(slots) => {
            let view: Vec<String> = slots
                .iter()
                .map(|s| format!("{} {:?}", s.name, s.fields))
                .collect();
            info!(booted = %slot, slots = %view.join("; "), "root slots");
            *ctx.control.slots.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(crate::control::SlotsView {
                    booted: slot.clone(),
                    slots,
                });
        }
        Err(e) => warn!(cause = %e, "RAUC's slot status not read"),
    }
    let Some(p) = pending else {
        // Every healthy boot confirms its slot (a factory-fresh slot is on
        // trial until marked: GRUB's TRY flag).
        match rauc.mark_booted(true).await {
            Ok(m) => info!(slot = %slot, rauc = %m, "booted slot marked good"),
            Err(e) => warn!(slot = %slot, cause = %e, "booted slot not marked good"),
        }
        return None;
    };
    let boot = Boot {
        slot: &slot,
        integrity: &integrity,
        ready: true,
    };
    let job_id = p.job_id.clone();
    let decided = |result, detail: String| Last {
        job_id: p.job_id.clone(),
        from_version: p.from_version.clone(),
        to_version: p.to_version.clone(),
        result,
        detail,
        at_ms: Timestamp::now().0,
    };
    match pending::judge(&p, &boot) {
        Verdict::Good => {
            let marked = rauc.mark_booted(true).await;
            let last = match marked {
                Ok(m) => {
                    info!(%job_id, slot = %slot, from = %p.from_version, to = %p.to_version, rauc = %m, "update healthy: slot marked good");
                    decided(
                        pending::Result::Succeeded,
                        format!("slot {slot} marked good"),
                    )
                }
                Err(e) => {
                    error!(%job_id, slot = %slot, cause = %e, "update healthy but the slot could not be marked good");
                    decided(
                        pending::Result::Failed,
                        format!("healthy, but RAUC did not mark slot {slot} good: {e}"),
                    )
                }
            };
            finish(ctx, last)
        }
        Verdict::Bad(why) => {
            error!(%job_id, slot = %slot, reason = %why, "update unhealthy: marking the slot bad and rebooting into the old one");
            let mut p = p.clone();
            p.failed_health = Some(why.clone());
            if let Err(e) = write(ctx, &[(PENDING_KEY, serde_json::to_string(&p).ok())]) {
                error!(%job_id, cause = %e, "the failed health check was not recorded");
            }
            if let Err(e) = rauc.mark_booted(false).await {
                error!(%job_id, cause = %e, "the slot could not be marked bad");
            }
            ctx.send(Msg::Operator {
                out_of_service: true,
            });
            if let Err(e) = super::jobs::reboot().await {
                error!(%job_id, cause = %e, "reboot through logind refused: the health deadline reboots the cart");
            }
            None
        }
        Verdict::BackOnOld(why) => {
            // The old slot runs and is healthy: confirm it, or it stays on
            // trial (GRUB's TRY flag) and a reset during the next update's
            // first boot finds no slot untried and boots the new one again
            // (found by QEMU update scenario 15).
            match rauc.mark_booted(true).await {
                Ok(m) => info!(slot = %slot, rauc = %m, "booted slot marked good"),
                Err(e) => warn!(slot = %slot, cause = %e, "booted slot not marked good"),
            }
            let result = if p.failed_health.is_some() {
                pending::Result::Failed
            } else {
                pending::Result::RolledBack
            };
            error!(%job_id, slot = %slot, reason = %why, "update did not take: running the old slot");
            finish(ctx, decided(result, why))
        }
    }
}

fn finish(ctx: &JobContext, last: Last) -> Option<Last> {
    if let Err(e) = write(
        ctx,
        &[
            (PENDING_KEY, None),
            (LAST_KEY, serde_json::to_string(&last).ok()),
        ],
    ) {
        error!(job_id = %last.job_id, cause = %e, "the update's result was not recorded");
    }
    Some(last)
}

/// Runs an update job. `None`: the cart is rebooting (the job is resumed
/// after the boot).
pub async fn run(
    ctx: &JobContext,
    job_id: &str,
    doc: Update,
    resumed: bool,
    done: &JobDone,
) -> Option<JobOutcome> {
    // After a restart: the result this job already has, or the health
    // check's verdict on the boot it caused.
    if let Some(last) = read::<Last>(ctx, LAST_KEY).filter(|l| l.job_id == job_id) {
        return Some(outcome_of(&last));
    }
    if read::<Pending>(ctx, PENDING_KEY).is_some_and(|p| p.job_id == job_id) {
        info!(%job_id, resumed, "update installed: waiting for the health check's verdict");
        let mut rx = ctx.update.subscribe();
        let verdict = tokio::time::timeout(
            Duration::from_secs(ctx.control.config.update.health_deadline_secs + 60),
            rx.wait_for(|v| v.as_ref().is_some_and(|l| l.job_id == job_id)),
        )
        .await;
        return match verdict {
            Ok(Ok(v)) => v.as_ref().map(outcome_of),
            // No verdict: the health check rebooted the cart, or never ran.
            _ => None,
        };
    }
    let settings = ctx.control.config.update.clone();
    let window = match Window::parse(&settings.window) {
        Ok(w) => w,
        Err(e) => return Some(JobOutcome::Failed(format!("[update] window: {e}"))),
    };
    let rauc = match Rauc::connect().await {
        Ok(r) => r,
        Err(e) => return Some(JobOutcome::Rejected(format!("RAUC is not available: {e}"))),
    };
    let (system, slot) = match (rauc.compatible().await, rauc.boot_slot().await) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            return Some(JobOutcome::Rejected(format!("RAUC does not answer: {e}")));
        }
    };
    let Some(running) = upd::running_version(&settings.os_release) else {
        return Some(JobOutcome::Failed(format!(
            "the running version is unknown ({} has no IMAGE_VERSION or VERSION_ID)",
            settings.os_release.display()
        )));
    };
    if let Err(r) = upd::check_document(&doc, &system, &running) {
        warn!(%job_id, reason = %r, "update refused");
        return Some(JobOutcome::Rejected(r.to_string()));
    }
    info!(%job_id, from = %running, to = %doc.version, size = doc.size, "update accepted: downloading");

    // The download, beside the selling.
    let keep = {
        let l = ctx.lock_ledger();
        let c = l.config();
        c.payment_reserve_bytes
            + c.telemetry_quota_bytes.saturating_sub(l.telemetry_bytes())
            + settings.reserve_bytes
    };
    let roots = match crate::diag::trust_store(&ctx.control.config.jobs.https_ca_file) {
        Ok(r) => r,
        Err(e) => return Some(JobOutcome::Failed(e.to_string())),
    };
    let progress_done = done.progress_sender();
    let fetched = {
        let doc = doc.clone();
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || {
            let agent =
                crate::diag::agent(roots, Duration::from_secs(settings.request_timeout_secs));
            let mut last_pct = u64::MAX;
            let mut told = |got: u64, size: u64| {
                let pct = got * 100 / size.max(1);
                if pct / 10 != last_pct / 10 {
                    last_pct = pct;
                    let mut d = details("step", "downloading");
                    d.insert("percent".into(), pct.to_string());
                    progress_done(d);
                }
            };
            download::download(
                &agent,
                &Wanted {
                    url: &doc.bundle_url,
                    size: doc.size,
                    sha256: &doc.sha256,
                },
                &settings.dir,
                keep,
                settings.download_attempts,
                &mut told,
            )
        })
        .await
    };
    let bundle = match fetched {
        Ok(Ok(p)) => p,
        Ok(Err(download::DownloadError::Refused(r))) => {
            warn!(%job_id, reason = %r, "update refused");
            return Some(failed(&running, &doc, r.to_string()));
        }
        Ok(Err(e)) => return Some(failed(&running, &doc, e.to_string())),
        Err(e) => return Some(JobOutcome::Failed(format!("download stopped: {e}"))),
    };
    let bundle_text = bundle.display().to_string();
    // RAUC reads the manifest only from a bundle whose signature verifies.
    let manifest = rauc.info(&bundle_text).await;
    let checked = match manifest {
        Ok((compatible, version)) => {
            upd::check_bundle(&doc, &compatible, &version, &system).map_err(|r| r.to_string())
        }
        Err(e) => Err(Refusal::Rauc(e.to_string()).to_string()),
    };
    if let Err(why) = checked {
        warn!(%job_id, reason = %why, "bundle refused before install");
        let _ = std::fs::remove_file(&bundle);
        return Some(failed(&running, &doc, why));
    }

    // A quiet moment, inside the window. A shopper who scanned in the
    // instant between the check and the out-of-service screen keeps the
    // basket (out of service holds it): the cart goes back in service and
    // the update waits again.
    loop {
        wait_quiet(ctx, job_id, window, &settings, done).await;
        ctx.send(Msg::Operator {
            out_of_service: true,
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        if ctx.idle() {
            break;
        }
        info!(%job_id, "a shopper began as the cart went out of service: the update waits");
        back_in_service(ctx);
    }
    let bound_before = matches!(ctx.lock_ledger().integrity(), LedgerIntegrity::Bound);
    let p = Pending {
        job_id: job_id.to_owned(),
        from_version: running.clone(),
        to_version: doc.version.clone(),
        from_slot: slot,
        bound_before,
        started_ms: Timestamp::now().0,
        failed_health: None,
    };
    if let Err(e) = write(ctx, &[(PENDING_KEY, serde_json::to_string(&p).ok())]) {
        back_in_service(ctx);
        return Some(JobOutcome::Failed(e));
    }
    info!(%job_id, from = %running, to = %doc.version, "installing the update");
    // Each statusDetails update is a billed message: every 10 % only.
    let progress_done = done.progress_sender();
    let mut last_step = -1;
    let mut told = move |pct: i32, msg: &str| {
        if pct / 10 == last_step {
            return;
        }
        last_step = pct / 10;
        let mut d = details("step", "installing");
        d.insert("percent".into(), pct.to_string());
        d.insert("rauc".into(), msg.to_owned());
        progress_done(d);
    };
    let installed = rauc.install(&bundle_text, &mut told).await;
    let _ = std::fs::remove_file(&bundle);
    if let Err(e) = installed {
        error!(%job_id, cause = %e, "install failed: the running slot is unchanged");
        let _ = write(ctx, &[(PENDING_KEY, None)]);
        back_in_service(ctx);
        return Some(failed(&running, &doc, e.to_string()));
    }
    info!(%job_id, "update installed: rebooting into the new slot");
    done.progress(details("step", "rebooting"));
    if let Err(e) = super::jobs::reboot().await {
        // Installed and recorded: the next boot, whenever it comes, runs
        // the new slot and its health check decides; the job stays in
        // progress until then (reporting FAILED now would contradict the
        // verdict to come). The cart sells meanwhile.
        error!(%job_id, cause = %e, "reboot through logind refused: the update is installed and the next boot tries it");
        back_in_service(ctx);
        let mut d = details("step", "installed, waiting for a reboot");
        d.insert("reboot_refused".into(), e.to_string());
        done.progress(d);
    }
    None
}

fn failed(running: &str, doc: &Update, reason: String) -> JobOutcome {
    let mut d: StatusDetails = details("reason", &reason);
    d.insert("from_version".into(), running.to_owned());
    d.insert("to_version".into(), doc.version.clone());
    JobOutcome::FailedWith(d)
}

fn back_in_service(ctx: &JobContext) {
    let operator_out = ctx
        .lock_ledger()
        .state(OPERATOR_OUT_OF_SERVICE)
        .ok()
        .flatten()
        .is_some();
    ctx.send(Msg::Operator {
        out_of_service: operator_out,
    });
}

async fn wait_quiet(
    ctx: &JobContext,
    job_id: &str,
    window: Option<Window>,
    settings: &upd::UpdateSettings,
    done: &JobDone,
) {
    let started = Instant::now();
    let mut said: Vec<&str> = Vec::new();
    let mut warned = false;
    loop {
        let in_window = window.is_none_or(|w| w.contains(Timestamp::now().0));
        let power = upd::power::read(&settings.power_supply_dir);
        let why = if !in_window {
            "waiting for the maintenance window"
        } else if !ctx.idle() {
            "waiting for an idle cart"
        } else if !power.may_install() {
            "waiting for a charger"
        } else {
            return;
        };
        // Each reason once (every statusDetails update is a billed
        // message): the journal and the job say what holds the update.
        if !said.contains(&why) {
            said.push(why);
            info!(%job_id, "update {why}");
            done.progress(details("step", why));
        }
        if !warned && started.elapsed() > Duration::from_secs(settings.max_deferral_hours * 3600) {
            warned = true;
            warn!(%job_id, hours = settings.max_deferral_hours, "update deferred past its limit: no quiet moment in the window");
            let mut d = details("step", "deferred");
            d.insert(
                "deferred_hours".into(),
                settings.max_deferral_hours.to_string(),
            );
            done.progress(d);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Shared between the health check and the update job.
pub fn verdict_cell() -> Arc<VerdictCell> {
    Arc::new(tokio::sync::watch::channel(None).0)
}
