//! The keyboard-wedge driver against a real evdev device: a virtual
//! keyboard made through uinput types the scans. Ignored by default: the
//! build machines have no /dev/uinput (containers); run it where there is
//! one (`cargo test -p hal --test scanner_wedge_device -- --ignored`, as
//! root), e.g. in the QEMU guest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evdev::uinput::VirtualDevice;
use evdev::{AttributeSet, Device, EventType, InputEvent, KeyCode};
use hal::scanner::{
    BackoffConfig, Decoder, DeviceState, ScanContent, Scanner, WedgeScanner, WedgeScannerConfig,
};

const GUARD: Duration = Duration::from_secs(20);
const DIGITS: [KeyCode; 10] = [
    KeyCode::KEY_0,
    KeyCode::KEY_1,
    KeyCode::KEY_2,
    KeyCode::KEY_3,
    KeyCode::KEY_4,
    KeyCode::KEY_5,
    KeyCode::KEY_6,
    KeyCode::KEY_7,
    KeyCode::KEY_8,
    KeyCode::KEY_9,
];

fn virtual_scanner() -> (VirtualDevice, PathBuf) {
    let mut keys = AttributeSet::<KeyCode>::new();
    for k in DIGITS
        .iter()
        .chain(&[KeyCode::KEY_ENTER, KeyCode::KEY_LEFTSHIFT])
    {
        keys.insert(*k);
    }
    let mut dev = VirtualDevice::builder()
        .expect("/dev/uinput")
        .name("cart test wedge scanner")
        .with_keys(&keys)
        .expect("keys")
        .build()
        .expect("virtual device");
    let start = Instant::now();
    let path = loop {
        let found = dev
            .enumerate_dev_nodes_blocking()
            .expect("dev nodes")
            .filter_map(Result::ok)
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("event"))
            });
        if let Some(p) = found.filter(|p| p.exists()) {
            break p;
        }
        assert!(start.elapsed() < GUARD, "no event node");
        std::thread::sleep(Duration::from_millis(10));
    };
    (dev, path)
}

fn type_scan(dev: &mut VirtualDevice, digits: &str) {
    let mut events = Vec::new();
    for d in digits.bytes() {
        let key = DIGITS[usize::from(d - b'0')];
        events.push(InputEvent::new(EventType::KEY.0, key.code(), 1));
        events.push(InputEvent::new(EventType::KEY.0, key.code(), 0));
    }
    events.push(InputEvent::new(
        EventType::KEY.0,
        KeyCode::KEY_ENTER.code(),
        1,
    ));
    events.push(InputEvent::new(
        EventType::KEY.0,
        KeyCode::KEY_ENTER.code(),
        0,
    ));
    dev.emit(&events).expect("emit");
}

fn relink(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

fn wait_state(scanner: &mut WedgeScanner, want: fn(DeviceState) -> bool) {
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

fn next_gtin(scanner: &mut WedgeScanner) -> String {
    let start = Instant::now();
    while start.elapsed() < GUARD {
        if let Some(scan) = scanner
            .next_scan(Duration::from_millis(200))
            .expect("scanner")
        {
            match scan.content {
                ScanContent::Product(p) => return p.gtin.to_string(),
                other => panic!("{other:?}"),
            }
        }
    }
    panic!("no scan");
}

#[test]
#[ignore = "needs /dev/uinput and root: run in the QEMU guest or on a real machine"]
fn typed_scans_grab_and_replug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("scanner-kbd");
    let (mut dev, node) = virtual_scanner();
    relink(&link, &node);
    let config = WedgeScannerConfig {
        device: link.clone(),
        backoff: BackoffConfig {
            initial_ms: 10,
            max_ms: 50,
            max_attempts: None,
        },
        ..WedgeScannerConfig::default()
    };
    let mut scanner = WedgeScanner::new(config, Decoder::default()).expect("config");
    wait_state(&mut scanner, |s| s == DeviceState::Connected);

    // Another reader of the same node sees nothing while the driver grabs it.
    let mut other = Device::open(&node).expect("second reader");
    other.set_nonblocking(true).expect("nonblocking");
    type_scan(&mut dev, "4006381333931");
    assert_eq!(next_gtin(&mut scanner), "04006381333931");
    let leaked = other.fetch_events().map(|evs| evs.count()).unwrap_or(0);
    assert_eq!(leaked, 0, "keys leaked past the grab");
    drop(other);

    // Unplug, then plug in again under the same by-id name.
    drop(dev);
    wait_state(&mut scanner, |s| {
        matches!(s, DeviceState::Reconnecting { .. })
    });
    let (mut dev, node) = virtual_scanner();
    relink(&link, &node);
    wait_state(&mut scanner, |s| s == DeviceState::Connected);
    type_scan(&mut dev, "96385074");
    assert_eq!(next_gtin(&mut scanner), "00000096385074");
}
