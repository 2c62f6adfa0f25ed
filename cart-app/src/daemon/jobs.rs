//! The remote jobs the cart runs (`AppEvent::Job`, from the sync's Jobs
//! client in `store_and_forward::sync::jobs`): out of service and back,
//! certificate rotation, a raised log level for some minutes, a reboot at
//! a quiet moment, a diagnostic bundle uploaded (`crate::diag`), an update
//! installed (`super::update`). Jobs that change the cart's state wait for an idle cart
//! (no shopper session, no payment) and say so in `statusDetails`; a
//! shopper's payment is never interrupted. Every entry carries the job's
//! id as `job_id` (the journal's `JOB_ID`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store_and_forward::Timestamp;
use store_and_forward::sync::SharedLedger;
use store_and_forward::sync::jobs::{JobDone, JobOutcome, JobRun, details};
use store_and_forward::wire::jobs::JobDocument;
use tracing::{error, info, warn};

use super::threads::{Msg, OPERATOR_OUT_OF_SERVICE, SessionState};
use crate::provision::rotation::Trigger;

/// What a job may touch.
#[derive(Clone)]
pub struct JobContext {
    /// The session thread.
    pub session: Arc<Mutex<std::sync::mpsc::Sender<Msg>>>,
    /// Whether the cart is idle.
    pub shared: Arc<SessionState>,
    /// The ledger (an operator's out of service is kept there).
    pub ledger: SharedLedger,
    /// The rotation task (none with a software identity).
    pub rotation: tokio::sync::mpsc::Sender<Trigger>,
    /// What a diagnostic bundle reads (the control socket's view) and the
    /// `[jobs]` and `[update]` settings.
    pub control: Arc<super::control_server::Context>,
    /// The health check's verdict on this boot's update, for the job.
    pub update: Arc<super::update::VerdictCell>,
}

impl JobContext {
    pub(super) fn lock_ledger(&self) -> std::sync::MutexGuard<'_, store_and_forward::Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn idle(&self) -> bool {
        self.shared.idle.load(Ordering::SeqCst) && !self.shared.paying.load(Ordering::SeqCst)
    }

    pub(super) fn send(&self, msg: Msg) -> bool {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(msg)
            .is_ok()
    }

    /// Waits for an idle cart, telling the backend once that it waits.
    async fn wait_idle(&self, job_id: &str, done: &JobDone) {
        if self.idle() {
            return;
        }
        info!(%job_id, "job waits for an idle cart");
        done.progress(details("step", "waiting for an idle cart"));
        while !self.idle() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Runs one job to its outcome.
pub async fn run(ctx: JobContext, run: JobRun, done: JobDone) {
    let job_id = run.job_id.clone();
    // The operation only: a document may carry a credential (a pre-signed
    // URL).
    info!(%job_id, operation = run.document.operation(), resumed = run.resumed, "job received");
    let outcome = match run.document {
        JobDocument::OutOfService { reason } => {
            ctx.wait_idle(&job_id, &done).await;
            let reason = reason.unwrap_or_else(|| "operator".to_owned());
            set_operator_out(&ctx, &job_id, Some(&reason))
        }
        JobDocument::ReturnToService {} => {
            ctx.wait_idle(&job_id, &done).await;
            set_operator_out(&ctx, &job_id, None)
        }
        JobDocument::RotateCertificate {} => match ctx
            .rotation
            .send(Trigger::Request { id: job_id.clone() })
            .await
        {
            Ok(()) => JobOutcome::Succeeded(details("rotation", "started")),
            Err(_) => JobOutcome::Rejected(
                "this cart has no certificate rotation (software identity)".to_owned(),
            ),
        },
        JobDocument::LogLevel { level, minutes } => {
            let level = format!("{level:?}").to_ascii_lowercase();
            match crate::logging::raise(&level, Duration::from_secs(u64::from(minutes) * 60)) {
                Ok(()) => {
                    warn!(%job_id, %level, minutes, "log level raised by a job");
                    JobOutcome::Succeeded(details(
                        "log_level",
                        &format!("{level} for {minutes} min"),
                    ))
                }
                Err(e) => JobOutcome::Failed(e),
            }
        }
        JobDocument::Reboot { .. } if run.resumed => {
            // Found running after a start: the reboot it asked for happened.
            JobOutcome::Succeeded(details("rebooted", "true"))
        }
        JobDocument::Reboot { .. } => {
            ctx.wait_idle(&job_id, &done).await;
            // The screen says so while the cart goes down.
            ctx.send(Msg::Operator {
                out_of_service: true,
            });
            match reboot().await {
                // The job stays running; the next start reports it done.
                Ok(()) => {
                    info!(%job_id, "rebooting for a job");
                    return;
                }
                Err(e) => {
                    error!(%job_id, cause = %e, "reboot through logind refused");
                    let out = ctx
                        .ledger
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .state(OPERATOR_OUT_OF_SERVICE)
                        .ok()
                        .flatten()
                        .is_some();
                    ctx.send(Msg::Operator {
                        out_of_service: out,
                    });
                    JobOutcome::Failed(format!("reboot refused: {e}"))
                }
            }
        }
        JobDocument::Update(u) => {
            match super::update::run(&ctx, &job_id, u, run.resumed, &done).await {
                Some(outcome) => outcome,
                // Rebooting: the job is resumed after the boot.
                None => return,
            }
        }
        JobDocument::DiagnosticUpload { url, max_bytes } => {
            diagnostic_upload(&ctx, &job_id, url, max_bytes).await
        }
        other => JobOutcome::Rejected(format!(
            "{} is not run by the application",
            other.operation()
        )),
    };
    done.finish(outcome);
}

/// Sends the diagnostic bundle to the job's pre-signed URL. The URL is a
/// credential (its signature lets anyone holding it write the object): it
/// is never logged or echoed, only its host.
async fn diagnostic_upload(
    ctx: &JobContext,
    job_id: &str,
    url: String,
    max_bytes: u64,
) -> JobOutcome {
    let host = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    info!(%job_id, %host, max_bytes, "diagnostic upload");
    let control = ctx.control.clone();
    let source = format!("job {job_id}");
    let sent = tokio::task::spawn_blocking(move || {
        let settings = &control.config.jobs;
        let roots = crate::diag::trust_store(&settings.https_ca_file)?;
        let journal = crate::diag::journal_or_reason(&settings.journal_socket);
        let bundle = crate::diag::compose(
            &control.config.cart_id,
            &source,
            control.diag(),
            &journal,
            Some(max_bytes),
        )?;
        let agent = crate::diag::agent(roots, Duration::from_secs(settings.upload_timeout_secs));
        crate::diag::upload(&agent, &url, &bundle.bytes)?;
        Ok::<_, crate::diag::DiagError>(bundle)
    })
    .await;
    match sent {
        Ok(Ok(bundle)) => {
            info!(
                %job_id,
                %host,
                bytes = bundle.bytes.len(),
                journal_lines = bundle.journal_lines,
                journal_dropped = bundle.journal_dropped,
                "diagnostic bundle uploaded"
            );
            let mut d = details("bytes", &bundle.bytes.len().to_string());
            d.insert("journal_lines".into(), bundle.journal_lines.to_string());
            d.insert(
                "journal_dropped_lines".into(),
                bundle.journal_dropped.to_string(),
            );
            JobOutcome::Succeeded(d)
        }
        Ok(Err(e)) => {
            warn!(%job_id, %host, cause = %e, "diagnostic upload failed");
            JobOutcome::Failed(e.to_string())
        }
        Err(e) => JobOutcome::Failed(format!("diagnostic upload stopped: {e}")),
    }
}

/// Takes the cart out of service for an operator (`Some(reason)`) or puts
/// it back, durably (it survives a reboot).
fn set_operator_out(ctx: &JobContext, job_id: &str, reason: Option<&str>) -> JobOutcome {
    let written = ctx
        .ledger
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set_states_durable(&[(OPERATOR_OUT_OF_SERVICE, reason)], Timestamp::now());
    if let Err(e) = written {
        return JobOutcome::Failed(format!("not recorded: {e}"));
    }
    if !ctx.send(Msg::Operator {
        out_of_service: reason.is_some(),
    }) {
        return JobOutcome::Failed("the session is gone".to_owned());
    }
    match reason {
        Some(r) => {
            warn!(%job_id, reason = %r, "out of service by an operator");
            JobOutcome::Succeeded(details("service", "out"))
        }
        None => {
            info!(%job_id, "back in service by an operator");
            JobOutcome::Succeeded(details("service", "in"))
        }
    }
}

/// Reboots through logind (the unit has no capabilities and filters
/// `@reboot`; polkit lets user `cart` do exactly this).
pub(super) async fn reboot() -> Result<(), zbus::Error> {
    let conn = zbus::Connection::system().await?;
    conn.call_method(
        Some("org.freedesktop.login1"),
        "/org/freedesktop/login1",
        Some("org.freedesktop.login1.Manager"),
        "Reboot",
        &(false,),
    )
    .await?;
    Ok(())
}
