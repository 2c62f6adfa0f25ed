//! The serial scanner driver through real pseudo-terminal pairs, with the
//! simulator (`hal::scanner::sim`, the code of the `scanner-sim` binary)
//! writing on the master side as a scanner would.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hal::scanner::serial::{Parity, Terminator};
use hal::scanner::sim::{self, SimConfig};
use hal::scanner::{
    BackoffConfig, Decoder, DeviceState, NonProduct, RejectReason, Scan, ScanContent, Scanner,
    ScannerError, SerialScanner, SerialScannerConfig, Symbology,
};
use nix::sys::termios::{self, SetArg};

/// Hang guard only: every wait below ends as soon as the scan arrives.
const GUARD: Duration = Duration::from_secs(20);

struct Pty {
    master: File,
    slave: OwnedFd,
    path: PathBuf,
}

fn pty() -> Pty {
    let p = nix::pty::openpty(None, None).expect("openpty");
    // Raw from the start, so bytes written before the driver opens the
    // slave are not cooked (CR to LF) or echoed.
    let mut t = termios::tcgetattr(&p.slave).expect("tcgetattr");
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(&p.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
    let path = nix::unistd::ttyname(&p.slave).expect("ttyname");
    Pty {
        master: File::from(p.master),
        slave: p.slave,
        path,
    }
}

fn config(port: &Path) -> SerialScannerConfig {
    SerialScannerConfig {
        port: port.display().to_string(),
        backoff: BackoffConfig {
            initial_ms: 10,
            max_ms: 50,
            max_attempts: None,
        },
        ..SerialScannerConfig::default()
    }
}

fn next(scanner: &mut SerialScanner) -> Scan {
    let start = Instant::now();
    while start.elapsed() < GUARD {
        if let Some(scan) = scanner
            .next_scan(Duration::from_millis(200))
            .expect("scanner")
        {
            return scan;
        }
    }
    panic!("no scan within {GUARD:?}");
}

fn gtin(scan: &Scan) -> String {
    match &scan.content {
        ScanContent::Product(p) => p.gtin.to_string(),
        other => panic!("not a product: {other:?}"),
    }
}

fn reason(scan: &Scan) -> RejectReason {
    match &scan.content {
        ScanContent::Rejected(r) => r.reason.clone(),
        other => panic!("not a rejection: {other:?}"),
    }
}

fn wait_state(scanner: &mut SerialScanner, want: fn(DeviceState) -> bool) {
    let start = Instant::now();
    while !want(scanner.state()) {
        assert!(
            start.elapsed() < GUARD,
            "state stuck at {:?}",
            scanner.state()
        );
        let _ = scanner.next_scan(Duration::from_millis(20));
    }
}

#[test]
fn scans_with_aim_identifiers_arrive_typed_and_in_order() {
    let mut p = pty();
    let mut scanner = SerialScanner::new(config(&p.path), Decoder::default()).expect("config");
    let cfg = SimConfig {
        aim: true,
        terminator: Terminator::Cr,
    };
    for code in [
        "5449000000996",
        "96385074",
        "(01)09501101530003(17)260704(10)AB-123",
    ] {
        let bytes = sim::parse_code(code).expect("code");
        sim::write_scan(&mut p.master, &bytes, &cfg).expect("write");
    }
    let a = next(&mut scanner);
    assert_eq!(gtin(&a), "05449000000996");
    let ScanContent::Product(prod) = &a.content else {
        panic!()
    };
    assert_eq!(prod.aim.map(|x| x.to_string()), Some("]E0".into()));
    let b = next(&mut scanner);
    assert_eq!(gtin(&b), "00000096385074");
    let c = next(&mut scanner);
    let ScanContent::Product(prod) = &c.content else {
        panic!("{c:?}")
    };
    assert_eq!(
        (prod.symbology, prod.gtin.to_string()),
        (Symbology::Gs1128, "09501101530003".into())
    );
    assert!(a.monotonic <= b.monotonic && b.monotonic <= c.monotonic);
    assert_eq!(scanner.state(), DeviceState::Connected);
}

#[test]
fn an_add_on_sent_as_its_own_packet_joins_the_book_before_it() {
    // Scanners told to transmit add-ons separately send `]E0` + main, then
    // `]E2` + five digits: one product with its add-on, then the next scan.
    let mut p = pty();
    let mut scanner = SerialScanner::new(config(&p.path), Decoder::default()).expect("config");
    p.master
        .write_all(b"]E09780201379624\r]E290000\r]E05449000000996\r]E09780201379624\r")
        .expect("write");
    let book = next(&mut scanner);
    let ScanContent::Product(prod) = &book.content else {
        panic!("{book:?}")
    };
    assert_eq!(prod.gtin.to_string(), "09780201379624");
    assert_eq!(
        prod.content,
        hal::scanner::ProductContent::Retail {
            add_on: Some(hal::scanner::AddOn::Five("90000".into()))
        }
    );
    assert_eq!(gtin(&next(&mut scanner)), "05449000000996");
    // A book without an add-on arrives once its short window is over.
    let alone = next(&mut scanner);
    let ScanContent::Product(prod) = &alone.content else {
        panic!("{alone:?}")
    };
    assert_eq!(
        prod.content,
        hal::scanner::ProductContent::Retail { add_on: None }
    );
}

#[test]
fn noise_garbage_and_over_long_lines_are_rejected_and_the_stream_resyncs() {
    let mut p = pty();
    let mut cfg = config(&p.path);
    cfg.max_line = 64;
    let mut scanner = SerialScanner::new(cfg, Decoder::default()).expect("config");
    let sim_cfg = SimConfig {
        aim: false,
        terminator: Terminator::Cr,
    };
    p.master.write_all(b"\xff\xfe\x80\x81\r").expect("write");
    p.master.write_all(b"\x00\x07400638\r").expect("write");
    p.master.write_all(&[b'7'; 500]).expect("write");
    p.master.write_all(b"\r").expect("write");
    sim::write_scan(&mut p.master, b"4006381333931", &sim_cfg).expect("write");
    // A line hit mid-way by noise, then a clean one.
    p.master.write_all(b"40063\xff81333931\r").expect("write");
    sim::write_scan(&mut p.master, b"3017620422003", &sim_cfg).expect("write");
    assert_eq!(reason(&next(&mut scanner)), RejectReason::InvalidUtf8);
    assert_eq!(
        reason(&next(&mut scanner)),
        RejectReason::ControlCharacter { byte: 0 }
    );
    assert_eq!(
        reason(&next(&mut scanner)),
        RejectReason::TooLong { max: 64 }
    );
    assert_eq!(gtin(&next(&mut scanner)), "04006381333931");
    assert_eq!(reason(&next(&mut scanner)), RejectReason::InvalidUtf8);
    assert_eq!(gtin(&next(&mut scanner)), "03017620422003");
}

#[test]
fn a_scan_written_byte_by_byte_is_one_scan() {
    let mut p = pty();
    let mut scanner = SerialScanner::new(config(&p.path), Decoder::default()).expect("config");
    // Open the port before the bytes start to trickle in.
    wait_state(&mut scanner, |s| s == DeviceState::Connected);
    let writer = std::thread::spawn(move || {
        for b in sim::frame(b"]E05901234123457", &SimConfig::default()) {
            p.master.write_all(&[b]).expect("write");
            p.master.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(2));
        }
        p
    });
    assert_eq!(gtin(&next(&mut scanner)), "05901234123457");
    drop(writer.join().expect("writer"));
}

#[test]
fn crlf_terminator_and_wifi_code() {
    let mut p = pty();
    let mut cfg = config(&p.path);
    cfg.terminator = Terminator::Crlf;
    let mut scanner = SerialScanner::new(cfg, Decoder::default()).expect("config");
    let sim_cfg = SimConfig {
        aim: true,
        terminator: Terminator::Crlf,
    };
    sim::write_scan(
        &mut p.master,
        b"WIFI:S:cart-net;T:WPA;P:hunter22;;",
        &sim_cfg,
    )
    .expect("write");
    sim::write_scan(&mut p.master, b"036000291452", &sim_cfg).expect("write");
    match next(&mut scanner).content {
        ScanContent::NonProduct(NonProduct::Wifi(w)) => assert_eq!(w.ssid, "cart-net"),
        other => panic!("{other:?}"),
    }
    assert_eq!(gtin(&next(&mut scanner)), "00036000291452");
}

#[test]
fn stx_etx_framing_drops_noise_before_the_stx() {
    let mut p = pty();
    let mut cfg = config(&p.path);
    cfg.terminator = Terminator::Etx;
    let mut scanner = SerialScanner::new(cfg, Decoder::default()).expect("config");
    let sim_cfg = SimConfig {
        aim: true,
        terminator: Terminator::Etx,
    };
    p.master.write_all(b"\xff\x00line noise").expect("write");
    sim::write_scan(&mut p.master, b"5901234123457", &sim_cfg).expect("write");
    sim::write_scan(&mut p.master, b"96385074", &sim_cfg).expect("write");
    assert_eq!(gtin(&next(&mut scanner)), "05901234123457");
    assert_eq!(gtin(&next(&mut scanner)), "00000096385074");
}

#[test]
fn line_settings_reach_the_port() {
    // Linux ptys force 8 data bits without parity (the pty driver rewrites
    // CSIZE and PARENB), so only the baud rate can be observed here; 7E1
    // must still open and read.
    let mut p = pty();
    let mut cfg = config(&p.path);
    cfg.parity = Parity::Even;
    cfg.data_bits = 7;
    cfg.baud_rate = 19_200;
    let mut scanner = SerialScanner::new(cfg, Decoder::default()).expect("config");
    wait_state(&mut scanner, |s| s == DeviceState::Connected);
    // serialport sets the speed with termios2 (BOTHER), which nix's
    // termios does not read back: ask the kernel directly.
    // SAFETY: TCGETS2 fills a termios2 of the right size; the fd is open.
    let mut t2: libc::termios2 = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(p.slave.as_raw_fd(), libc::TCGETS2, &mut t2) };
    assert_eq!(rc, 0, "TCGETS2");
    assert_eq!((t2.c_ispeed, t2.c_ospeed), (19_200, 19_200));
    sim::write_scan(&mut p.master, b"96385074", &SimConfig::default()).expect("write");
    assert_eq!(gtin(&next(&mut scanner)), "00000096385074");
}

#[test]
fn unplug_and_replug_reopens_with_backoff_and_shows_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("scanner");
    let first = pty();
    std::os::unix::fs::symlink(&first.path, &link).expect("symlink");
    let mut scanner = SerialScanner::new(config(&link), Decoder::default()).expect("config");
    let state = scanner.state_handle();
    let mut first = first;
    sim::write_scan(&mut first.master, b"4006381333931", &SimConfig::default()).expect("write");
    assert_eq!(gtin(&next(&mut scanner)), "04006381333931");
    assert_eq!(state.get(), DeviceState::Connected);

    // Unplug: the far end goes away mid-line.
    first.master.write_all(b"40063").expect("write");
    std::fs::remove_file(&link).expect("unlink");
    drop(first);
    wait_state(&mut scanner, |s| {
        matches!(s, DeviceState::Reconnecting { .. })
    });
    // It keeps trying while nothing is there.
    wait_state(
        &mut scanner,
        |s| matches!(s, DeviceState::Reconnecting { attempts } if attempts >= 2),
    );
    assert!(matches!(state.get(), DeviceState::Reconnecting { .. }));

    // Replug: a new device under the same name.
    let mut second = pty();
    std::os::unix::fs::symlink(&second.path, &link).expect("symlink");
    sim::write_scan(&mut second.master, b"3017620422003", &SimConfig::default()).expect("write");
    // The partial line from before the unplug is gone; the new scan is whole.
    assert_eq!(gtin(&next(&mut scanner)), "03017620422003");
    assert_eq!(state.get(), DeviceState::Connected);
}

#[test]
fn a_device_that_never_comes_back_is_gone_after_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir.path().join("no-such-tty"));
    cfg.backoff = BackoffConfig {
        initial_ms: 1,
        max_ms: 4,
        max_attempts: Some(3),
    };
    let mut scanner = SerialScanner::new(cfg, Decoder::default()).expect("config");
    let start = Instant::now();
    let err = loop {
        assert!(start.elapsed() < GUARD, "never gave up");
        match scanner.next_scan(Duration::from_millis(50)) {
            Ok(None) => continue,
            Ok(Some(scan)) => panic!("scan from nowhere: {scan:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, ScannerError::Gone { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(scanner.state(), DeviceState::Gone);
}

#[test]
fn bad_settings_are_refused() {
    let mut cfg = config(Path::new("/dev/null"));
    cfg.data_bits = 6;
    assert!(matches!(
        SerialScanner::new(cfg, Decoder::default()),
        Err(ScannerError::Config {
            key: "data_bits",
            ..
        })
    ));
}

#[test]
fn the_code_table_through_the_simulator_loop() {
    let mut p = pty();
    let mut scanner = SerialScanner::new(config(&p.path), Decoder::default()).expect("config");
    let codes = "# a shopping trip\n5449000000996\n3017620422003\n96385074\n036000291452\n04252614\n\
                 ]I110614141000415\n(01)09501101530003(17)260704(10)AB-123\n";
    let expected = [
        "05449000000996",
        "03017620422003",
        "00000096385074",
        "00036000291452",
        "00042100005264",
        "10614141000415",
        "09501101530003",
    ];
    let writer = std::thread::spawn(move || {
        let cfg = SimConfig {
            aim: true,
            terminator: Terminator::Cr,
        };
        let n = sim::run(codes.as_bytes(), &mut p.master, &cfg, Duration::ZERO).expect("sim");
        (n, p)
    });
    for want in expected {
        assert_eq!(gtin(&next(&mut scanner)), want);
    }
    let (n, _p) = writer.join().expect("writer");
    assert_eq!(n, expected.len());
}

#[test]
fn the_scanner_sim_binary_serves_a_pty() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scanner-sim"))
        .args(["--pty", "--aim", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scanner-sim");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut path = String::new();
    stdout.read_line(&mut path).expect("pty path");
    let mut scanner =
        SerialScanner::new(config(Path::new(path.trim())), Decoder::default()).expect("config");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"4006381333931\n(01)09501101530003(10)L1\n")
        .expect("codes");
    drop(stdin);
    assert_eq!(gtin(&next(&mut scanner)), "04006381333931");
    let scan = next(&mut scanner);
    let ScanContent::Product(p) = &scan.content else {
        panic!("{scan:?}")
    };
    assert_eq!(
        (p.symbology, p.gtin.to_string()),
        (Symbology::Gs1128, "09501101530003".into())
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
}
