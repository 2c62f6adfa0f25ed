//! Scanner benchmarks: scan bytes in to a typed scan out (in process, and
//! end to end through a pseudo-terminal with the serial driver), and the
//! decoder's throughput. Percentiles from hdrhistogram.
//!
//! Run: `cargo bench -p hal --bench scanner`.

use std::fs::File;
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hal::scanner::line::{Frame, LineFramer};
use hal::scanner::serial::Terminator;
use hal::scanner::sim::{self, SimConfig};
use hal::scanner::variable::{MeasureKind, VariableMeasureLayout};
use hal::scanner::{
    Decoder, DecoderConfig, ScanContent, Scanner, SerialScanner, SerialScannerConfig,
    VariableMeasureConfig,
};
use hdrhistogram::Histogram;

/// A shopping trip's mix: retail codes, an in-store price code, GS1
/// element strings, a badge, noise.
const CODES: &[&str] = &[
    "]E05449000000996",
    "]E03017620422003",
    "]E496385074",
    "]E00036000291452",
    "]E004252614",
    "]E02912345928759",
    "]C1010950110153000317260704\u{1d}10AB-123",
    "]e0019501234567890331030001233922499",
    "]d201095011015300031526110021SERIAL1\u{1d}10LOT7",
    "]I110614141000415",
    "4006381333931",
    "STAFF:E1234",
    "]E05901234123458",
];

fn decoder() -> Decoder {
    let layout =
        VariableMeasureLayout::new(&["29"], "PPIIIIICVVVVK", MeasureKind::Price { decimals: 2 })
            .expect("layout");
    Decoder::new(DecoderConfig {
        variable_measure: VariableMeasureConfig {
            layouts: vec![layout],
        },
        ..DecoderConfig::default()
    })
}

fn report(name: &str, h: &Histogram<u64>, unit: &str) {
    println!(
        "{name}: n={} p50={} p99={} p99.9={} max={} ({unit})",
        h.len(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn in_process() {
    let d = decoder();
    let frames: Vec<Vec<u8>> = CODES
        .iter()
        .map(|c| {
            sim::frame(
                c.as_bytes(),
                &SimConfig {
                    aim: false,
                    terminator: Terminator::Cr,
                },
            )
        })
        .collect();
    let mut framer = LineFramer::new(b"\r", 1024);
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    for i in 0..200_000 {
        let bytes = &frames[i % frames.len()];
        let t0 = Instant::now();
        framer.push(bytes);
        let Some(Frame::Line(line)) = framer.pop() else {
            panic!("no line")
        };
        let scan = d.decode(&line, 2026);
        let ns = t0.elapsed().as_nanos() as u64;
        black_box(scan);
        h.record(ns.max(1)).expect("record");
    }
    report("bytes -> typed scan, in process", &h, "ns");
}

fn throughput() {
    let d = decoder();
    let lines: Vec<&[u8]> = CODES.iter().map(|c| c.as_bytes()).collect();
    let n = 1_000_000;
    let t0 = Instant::now();
    let mut products = 0usize;
    for i in 0..n {
        if let ScanContent::Product(_) = d.decode(black_box(lines[i % lines.len()]), 2026) {
            products += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "decoder throughput: {:.0} codes/s ({n} codes, {products} products, mixed symbologies)",
        n as f64 / secs
    );
    // Retail only: the common case at the cart.
    let ean = b"]E05449000000996";
    let t0 = Instant::now();
    for _ in 0..n {
        black_box(d.decode(black_box(ean), 2026));
    }
    println!(
        "decoder throughput, EAN-13 only: {:.0} codes/s",
        n as f64 / t0.elapsed().as_secs_f64()
    );
}

fn through_pty() {
    let p = nix::pty::openpty(None, None).expect("openpty");
    let mut t = nix::sys::termios::tcgetattr(&p.slave).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&p.slave, nix::sys::termios::SetArg::TCSANOW, &t)
        .expect("tcsetattr");
    let path = nix::unistd::ttyname(&p.slave).expect("ttyname");
    let config = SerialScannerConfig {
        port: path.display().to_string(),
        baud_rate: 115_200,
        ..SerialScannerConfig::default()
    };
    let mut scanner = SerialScanner::new(config, decoder()).expect("scanner");
    let mut master = File::from(p.master);
    let (tx, rx) = mpsc::channel::<Instant>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let n = 5_000;
    let writer = std::thread::spawn(move || {
        let cfg = SimConfig {
            aim: false,
            terminator: Terminator::Cr,
        };
        for i in 0..n {
            // One scan in flight at a time, as from a person scanning.
            if go_rx.recv().is_err() {
                break;
            }
            let t0 = Instant::now();
            sim::write_scan(&mut master, CODES[i % CODES.len()].as_bytes(), &cfg).expect("write");
            tx.send(t0).expect("send");
        }
        master
    });
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for _ in 0..n {
        go_tx.send(()).expect("go");
        let scan = loop {
            if let Some(s) = scanner.next_scan(Duration::from_secs(5)).expect("scan") {
                break s;
            }
        };
        let t0 = rx.recv().expect("t0");
        let us = scan.monotonic.saturating_duration_since(t0).as_micros() as u64;
        h.record(us.max(1)).expect("record");
    }
    drop(go_tx);
    drop(writer.join().expect("writer"));
    drop(p.slave);
    report(
        "bytes written on the pty -> typed scan from SerialScanner",
        &h,
        "us",
    );
}

fn main() {
    in_process();
    throughput();
    through_pty();
}
