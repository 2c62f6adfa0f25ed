//! The daemon's figures (release build, `scripts/bench-daemon.sh`):
//! - start to `READY=1` of `cart-app run` (a child process, as systemd
//!   starts it; ledger, catalog, link, devices, UI);
//! - idle RSS and CPU of that process after it settled;
//! - scan byte in to the item drawn in the software-rendered frame, through
//!   the whole daemon (serial scanner driver, session thread, UI thread,
//!   headless software renderer at 1280x800), p50/p99/max;
//! - the release binary's size.
//!
//! Knobs: `BENCH_STARTS` (default 10), `BENCH_IDLE_SECS` (30),
//! `BENCH_SCANS` (500).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cart_app::config::Config;
use cart_app::daemon::{self, RunOptions, StopHandle};
use cart_app::demo::rig::{Rig, RigOptions};
use hal::scanner::sim::{SimConfig as ScanSim, write_scan};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rig = Rig::start(&RigOptions {
        dir: dir.path().to_path_buf(),
        fixtures: cart_app::demo::default_fixtures(),
        ui_backend: "headless",
    })
    .expect("the rig (mosquitto, emulator, simulators)");
    let bin = env!("CARGO_BIN_EXE_cart-app");
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    println!("binary: {bin} {:.1} MB", size as f64 / 1e6);

    // Start to READY=1, as systemd sees it.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut starts = Vec::new();
    let runs = knob("BENCH_STARTS", 10);
    let mut last_child = None;
    for i in 0..runs {
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&rig.config_path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start cart-app");
        let mut buf = [0u8; 4096];
        let ready = loop {
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains("READY=1")
            {
                break t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no READY=1");
        };
        starts.push(ready);
        // Read the notify socket from now on, as systemd does.
        if i + 1 == runs {
            let n = notify.try_clone().expect("notify socket");
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let _ = n.recv(&mut buf);
                }
            });
        } else {
            while notify.recv(&mut buf).is_ok() {}
        }
        if i + 1 == runs {
            last_child = Some(child);
        } else {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
    starts.sort();
    println!(
        "start to READY=1 ({runs} starts): median {:.0} ms, max {:.0} ms",
        starts[starts.len() / 2].as_secs_f64() * 1e3,
        starts[starts.len() - 1].as_secs_f64() * 1e3
    );

    // Idle: RSS and CPU over a window after settling.
    let mut child = last_child.expect("a running daemon");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5));
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let rss_kb = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let secs = knob("BENCH_IDLE_SECS", 30);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let (c0, t0) = (ticks(pid), Instant::now());
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        peak = peak.max(rss_kb(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu = (ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    println!(
        "idle ({secs} s, link up, UI at 1280x800): RSS {:.1} MB (peak), CPU {cpu:.2} %",
        peak as f64 / 1024.0
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    // Scan to frame, in this process (the daemon on this thread).
    let frames: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let seen = frames.clone();
    let stop = StopHandle::new();
    let stop2 = stop.clone();
    let mut scanner = rig.scanner_writer().expect("scanner line");
    let n = knob("BENCH_SCANS", 500) as usize;
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let out = latencies.clone();
    let opts = RunOptions {
        stop: stop.clone(),
        on_frame: Some(Box::new(move |f: &ui::headless::Frame| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            f.rgb_bytes().hash(&mut h);
            seen.lock().unwrap().push((Instant::now(), h.finish()));
        })),
        on_ready: Some(Box::new(move |_tap| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                let codes = ["4006381333931", "4012345000023"];
                for i in 0..n {
                    let before = frames.lock().unwrap().last().map(|f| f.1);
                    let t0 = Instant::now();
                    write_scan(&mut scanner, codes[i % 2].as_bytes(), &ScanSim::default())
                        .expect("scan");
                    let deadline = t0 + Duration::from_secs(5);
                    loop {
                        let hit = frames
                            .lock()
                            .unwrap()
                            .iter()
                            .rev()
                            .take_while(|f| f.0 >= t0)
                            .last()
                            .filter(|f| Some(f.1) != before)
                            .map(|f| f.0);
                        if let Some(t1) = hit {
                            out.lock().unwrap().push(t1 - t0);
                            break;
                        }
                        if Instant::now() > deadline {
                            eprintln!("scan {i}: no new frame within 5 s");
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                stop2.stop();
            });
        })),
        ..RunOptions::default()
    };
    let loaded = Config::load(&rig.config_path).expect("config");
    daemon::run(loaded, opts).expect("daemon");
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let p = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "scan to item drawn ({} scans, 1280x800 software frame): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    rig.shutdown();
}
