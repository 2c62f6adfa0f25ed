//! `cartctl status` in words: the text a technician reads, one line per
//! part of the cart (link, traffic, ledger, outbox, jobs, update, slots).

use cart_app::control::CartStatus;
use store_and_forward::{Money, Timestamp};

/// The link's traffic since the daemon started, as the broker meters it
/// (messages in 5 KB steps).
fn traffic_line(t: &store_and_forward::uplink::Traffic) -> String {
    format!(
        "since start: {} out ({} metered, {} KiB), {} in ({} metered), {} connects, connected {}",
        t.publishes_out,
        t.publish_out_steps,
        t.publish_out_bytes / 1024,
        t.publishes_in,
        t.publish_in_steps,
        t.connects,
        human_duration(t.connected_ms / 1000)
    )
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3_600.0),
    }
}

/// How long ago `t` was, in words.
pub fn ago(now: Timestamp, t: Option<Timestamp>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = now.secs_since(t);
            match s {
                0..=119 => format!("{s} s ago"),
                120..=7199 => format!("{} min ago", s / 60),
                _ => format!("{} h ago", s / 3600),
            }
        }
    }
}

/// The status as a technician reads it.
pub fn human(status: &CartStatus, path: &str, warn_days: i64) -> String {
    let now = Timestamp::now();
    let st = &status.ledger;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line("cart", format!("{} ({})", status.cart_id, status.source));
    line(
        "version",
        match status.uptime_secs {
            Some(u) => format!("{}, up {u} s", status.version),
            None => status.version.clone(),
        },
    );
    line("provisioning", status.provisioning.clone());
    if let Some(d) = &status.provisioning_detail {
        if let Some(id) = &d.certificate_id {
            line(
                "certificate id",
                format!(
                    "{}{}",
                    &id[..id.len().min(16)],
                    d.active_handle
                        .as_ref()
                        .map(|h| format!(" (TPM key {h})"))
                        .unwrap_or_default()
                ),
            );
        }
        if let Some(r) = &d.rotation {
            line("rotation", format!("in progress: {r}"));
        }
        if !d.orphans.is_empty() {
            line(
                "orphans",
                format!("{} certificates reported for deletion", d.orphans.len()),
            );
        }
    }
    line(
        "certificate",
        match &status.certificate {
            Some(c) if c.days_left < 0 => format!("{} EXPIRED", c.subject),
            Some(c) if c.days_left < warn_days => format!(
                "{}, expires in {} days: ROTATION DUE",
                c.subject, c.days_left
            ),
            Some(c) => format!("{}, expires in {} days", c.subject, c.days_left),
            None => "none installed".into(),
        },
    );
    line(
        "link",
        match &status.link {
            Some(l) if l.up => format!("up since {}", ago(now, Some(l.since))),
            Some(l) => format!(
                "DOWN since {}{}",
                ago(now, Some(l.since)),
                l.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            None => "unknown (daemon down)".into(),
        },
    );
    if let Some(t) = status.link.as_ref().and_then(|l| l.traffic.as_ref()) {
        line("traffic", traffic_line(t));
    }
    for d in &status.devices {
        line(&d.device, d.state.clone());
    }
    line("ledger", path.to_owned());
    line(
        "integrity",
        match &st.integrity {
            None => "not checked here (the daemon checks the TPM counter at start)".into(),
            Some(i) => format!("{i:?}"),
        },
    );
    line("clock", format!("{:?}", st.clock));
    line(
        "backend",
        format!("last contact {}", ago(now, st.last_backend_contact)),
    );
    line("limits", format!("version {}", st.limits.version));
    line(
        "staff list",
        match st.staff_list_version {
            0 => "none yet: age checks are refused (pay at a till)".to_owned(),
            v => format!("version {v}"),
        },
    );
    if let Some(reason) = st.jobs.get("operator.out_of_service") {
        line(
            "service",
            format!("OUT OF SERVICE by an operator ({reason})"),
        );
    }
    line("jobs", jobs_line(&st.jobs));
    if let Some(u) = update_line(&st.jobs) {
        line("update", u);
    }
    if let Some(s) = &status.slots {
        line("slots", slots_line(s));
    }
    let mut exposure = status.exposure_line();
    if let Some(oldest) = st.exposure.oldest_unforwarded {
        exposure.push_str(&format!(
            ", oldest unforwarded {} (deadline {} h)",
            ago(now, Some(oldest)),
            st.limits.forwarding_deadline_secs / 3600
        ));
    }
    line("exposure", exposure);
    let payments: Vec<String> = st
        .payments
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    line(
        "payments",
        if payments.is_empty() {
            "none".into()
        } else {
            payments.join(", ")
        },
    );
    for (cur, amount) in &st.declined_after_forward {
        line(
            "losses",
            format!("declined after forward: {}", Money::new(*amount, *cur)),
        );
    }
    for d in &st.outbox {
        line(
            &format!("queue {}", d.class),
            format!(
                "{} pending ({} bytes), oldest {}, {} quarantined",
                d.pending,
                d.pending_bytes,
                ago(now, d.oldest_pending),
                d.quarantined
            ),
        );
    }
    for q in &st.quarantined_payments {
        line(
            "QUARANTINED",
            format!(
                "payment {} ({} {}, {}) since {}: {}; release with `cartctl release {}`",
                q.payment,
                q.amount_minor,
                q.currency,
                q.kind,
                ago(now, q.since),
                q.reason,
                q.payment
            ),
        );
    }
    line(
        "telemetry",
        format!("{} dropped over quota", st.telemetry_dropped),
    );
    out
}

/// The update in flight or the last one's result.
fn update_line(jobs: &std::collections::BTreeMap<String, String>) -> Option<String> {
    use cart_app::update::pending::{LAST_KEY, Last, PENDING_KEY, Pending};
    if let Some(p) = jobs
        .get(PENDING_KEY)
        .and_then(|j| serde_json::from_str::<Pending>(j).ok())
    {
        return Some(format!(
            "{} -> {} (job {}) installed from slot {}, waiting for the health check",
            p.from_version, p.to_version, p.job_id, p.from_slot
        ));
    }
    let l = jobs
        .get(LAST_KEY)
        .and_then(|j| serde_json::from_str::<Last>(j).ok())?;
    Some(format!(
        "last {} -> {} (job {}) {:?}: {}",
        l.from_version, l.to_version, l.job_id, l.result, l.detail
    ))
}

/// The root slots: which booted, each one's state and version.
fn slots_line(s: &cart_app::control::SlotsView) -> String {
    let each: Vec<String> = s
        .slots
        .iter()
        .map(|slot| {
            let f = |k: &str| slot.fields.get(k).map(String::as_str).unwrap_or("-");
            format!(
                "{} ({}) {} {}",
                slot.name,
                f("bootname"),
                f("boot-status"),
                f("bundle.version")
            )
        })
        .collect();
    format!("booted {}; {}", s.booted, each.join(", "))
}

/// The job in hand and the last one, as a technician reads them.
fn jobs_line(jobs: &std::collections::BTreeMap<String, String>) -> String {
    use store_and_forward::sync::jobs::{JobPhase, JobRecord, LastJob};
    let current = jobs
        .get("jobs.current")
        .and_then(|j| serde_json::from_str::<JobRecord>(j).ok())
        .map(|r| match r.phase {
            JobPhase::Running => format!("{} ({}) running", r.job_id, r.operation),
            JobPhase::Finishing { status, .. } => {
                format!(
                    "{} ({}) {status:?}, not yet acknowledged",
                    r.job_id, r.operation
                )
            }
        });
    let last = jobs
        .get("jobs.last")
        .and_then(|j| serde_json::from_str::<LastJob>(j).ok())
        .map(|l| format!("last {} ({}) {:?}", l.job_id, l.operation, l.status));
    match (current, last) {
        (None, None) => "none".to_owned(),
        (Some(c), None) => c,
        (None, Some(l)) => l,
        (Some(c), Some(l)) => format!("{c}; {l}"),
    }
}
