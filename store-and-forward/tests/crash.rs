//! Crash test: a child process runs checkouts against a real ledger file
//! and is SIGKILLed over and over, at random moments and at every failpoint
//! of the decision path. After each kill the ledger is reopened and checked:
//! every payment the child showed as approved is there exactly once and
//! still approved, no committed attempt is lost (unfinished ones are
//! in-doubt), offline approval was not wrongly disabled, and SQLite's
//! integrity check passes.
//!
//! `CRASH_KILLS` sets the number of kills (default 220).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use store_and_forward::counter::FileCounter;
use store_and_forward::datakey::FileDataKey;
use store_and_forward::failpoint::DECISION_PATH;
use store_and_forward::policy::{LedgerIntegrity, Limits};
use store_and_forward::{Ledger, LedgerConfig, PaymentKey, PaymentState, Timestamp};

#[derive(Default)]
struct Seen {
    started: HashSet<PaymentKey>,
    attempted: HashSet<PaymentKey>,
    approved: HashSet<PaymentKey>,
    declined: HashSet<PaymentKey>,
}

fn run_child(
    dir: &std::path::Path,
    failpoint: Option<(&str, u32)>,
    kill_after: Option<Duration>,
    seen: &mut Seen,
) -> bool {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-crash-child"));
    cmd.arg(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some((name, skip)) = failpoint {
        cmd.env("CART_FAILPOINT", name)
            .env("CART_FAILPOINT_SKIP", skip.to_string());
    }
    let mut child = cmd.spawn().expect("spawn crash child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let started = Instant::now();
    if let Some(d) = kill_after {
        std::thread::sleep(d);
        let _ = child.kill();
    }
    // Hang guard only: a failpoint child dies within a few checkouts.
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("crash child hung (failpoint {failpoint:?})");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let lines = reader.join().unwrap();
    if status.code() == Some(2) {
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("crash child failed: {err}");
    }
    for line in lines {
        let Some((what, key)) = line.split_once(' ') else {
            continue;
        };
        let key = PaymentKey::parse(key).expect("child prints keys");
        match what {
            "START" => seen.started.insert(key),
            "ATTEMPT" => seen.attempted.insert(key),
            "APPROVED" => seen.approved.insert(key),
            "DECLINED" => seen.declined.insert(key),
            _ => panic!("unexpected line {line}"),
        };
    }
    status.signal() == Some(libc_sigkill())
}

fn libc_sigkill() -> i32 {
    9
}

fn check(dir: &std::path::Path, seen: &Seen) -> (usize, usize) {
    let config = LedgerConfig {
        path: dir.join("ledger.sqlite"),
        ..LedgerConfig::default()
    };
    let counter = FileCounter::open(dir.join("counter"), 7_340_033).unwrap();
    let mut key = FileDataKey::new(dir.join("data.key"));
    let (ledger, report) = Ledger::open(
        config,
        Limits::none(),
        Box::new(counter),
        &mut key,
        Timestamp::now(),
    )
    .expect("ledger reopens after a kill");
    assert_eq!(
        report.integrity,
        LedgerIntegrity::Bound,
        "offline approval wrongly disabled after a crash"
    );
    ledger
        .integrity_check()
        .expect("integrity_check after a kill");
    let payments = ledger.payments().unwrap();
    let mut by_key: HashMap<PaymentKey, PaymentState> = HashMap::new();
    for p in &payments {
        assert!(
            by_key.insert(p.key, p.state).is_none(),
            "duplicate {}",
            p.key
        );
        assert!(seen.started.contains(&p.key), "phantom payment {}", p.key);
        assert_ne!(p.state, PaymentState::CardRead, "undecided after restart");
    }
    for k in &seen.attempted {
        assert!(by_key.contains_key(k), "committed attempt {k} lost");
    }
    for k in &seen.approved {
        let st = by_key
            .get(k)
            .unwrap_or_else(|| panic!("approved payment {k} lost"));
        assert!(st.is_approved(), "approved payment {k} is now {st}");
    }
    for k in &seen.declined {
        let st = by_key[k];
        assert!(!st.is_approved(), "declined payment {k} is now {st}");
    }
    let in_doubt = payments
        .iter()
        .filter(|p| p.state == PaymentState::InDoubt)
        .count();
    (payments.len(), in_doubt)
}

#[test]
fn sigkill_at_random_moments_and_failpoints_loses_and_duplicates_nothing() {
    let kills: u32 = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(220);
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Seen::default();
    let mut rng = rand::rng();
    let mut points: Vec<&str> = vec!["checkout.after_card_read"];
    points.extend_from_slice(DECISION_PATH);
    let mut killed = 0u32;
    let mut at_failpoint: HashMap<&str, u32> = HashMap::new();
    let mut round = 0u32;
    while killed < kills {
        round += 1;
        assert!(round < kills * 3, "children are not being killed");
        let was_killed = if round.is_multiple_of(2) {
            let name = points[(round as usize / 2) % points.len()];
            let hit = run_child(
                dir.path(),
                Some((name, rng.random_range(0..6))),
                None,
                &mut seen,
            );
            if hit {
                *at_failpoint.entry(name).or_default() += 1;
            }
            hit
        } else {
            let after = Duration::from_micros(rng.random_range(0..40_000));
            run_child(dir.path(), None, Some(after), &mut seen)
        };
        if was_killed {
            killed += 1;
        }
        check(dir.path(), &seen);
    }
    let (total, in_doubt) = check(dir.path(), &seen);
    eprintln!(
        "{killed} kills ({} at failpoints: {at_failpoint:?}); {total} payments, {} approved, {in_doubt} in doubt",
        at_failpoint.values().sum::<u32>(),
        seen.approved.len()
    );
    for p in &points {
        assert!(
            at_failpoint.get(p).copied().unwrap_or(0) > 0,
            "failpoint {p} never fired"
        );
    }
    assert!(seen.approved.len() > 50, "the children did real work");
}
