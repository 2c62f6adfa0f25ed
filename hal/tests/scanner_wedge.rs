//! Keyboard-wedge decoding from recorded key-event sequences
//! (`data/scanner/*.events`): no /dev/input needed.

use std::path::Path;
use std::str::FromStr;

use evdev::KeyCode;
use hal::scanner::keymap::{KeyDecoder, KeyOutput, KeymapConfig, WedgeLines, WedgeTerminator};
use hal::scanner::{Decoder, NonProduct, RejectReason, ScanContent};

struct Recording {
    expect: Vec<Vec<u8>>,
    events: Vec<(KeyCode, i32)>,
}

fn load(name: &str) -> Recording {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/scanner")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("recording");
    let mut expect = Vec::new();
    let mut events = Vec::new();
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("# expect: ") {
            expect = e
                .split(" | ")
                .map(|s| s.replace("<GS>", "\u{1d}").into_bytes())
                .collect();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let (key, value) = line.split_once(' ').expect("KEY value");
            let code = KeyCode::from_str(key).unwrap_or_else(|_| panic!("unknown key {key}"));
            events.push((code, value.parse().expect("value")));
        }
    }
    Recording { expect, events }
}

fn replay(name: &str, config: KeymapConfig) -> Vec<Result<Vec<u8>, RejectReason>> {
    let rec = load(name);
    let mut lines = WedgeLines::new(config, 256);
    let out: Vec<_> = rec
        .events
        .iter()
        .filter_map(|&(k, v)| lines.feed(k, v))
        .collect();
    let expected: Vec<Result<Vec<u8>, RejectReason>> = rec.expect.into_iter().map(Ok).collect();
    assert_eq!(out, expected, "{name}");
    out
}

#[test]
fn ean13_recording_decodes_to_the_product() {
    let lines = replay("wedge-ean13.events", KeymapConfig::default());
    let Ok(line) = &lines[0] else { panic!() };
    match Decoder::default().decode(line, 2026) {
        ScanContent::Product(p) => assert_eq!(p.gtin.to_string(), "04006381333931"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn gs1_separator_by_ctrl_bracket_alt_keypad_and_function_key() {
    replay("wedge-gs1-ctrl.events", KeymapConfig::default());
    replay("wedge-gs1-alt.events", KeymapConfig::default());
    replay(
        "wedge-gs1-f8.events",
        KeymapConfig {
            gs_function_key: Some(8),
            ..KeymapConfig::default()
        },
    );
    // Without the F8 setting the key is unknown and the scan is refused.
    let rec = load("wedge-gs1-f8.events");
    let mut lines = WedgeLines::new(KeymapConfig::default(), 256);
    let out: Vec<_> = rec
        .events
        .iter()
        .filter_map(|&(k, v)| lines.feed(k, v))
        .collect();
    assert_eq!(
        out,
        vec![Err(RejectReason::UnmappedKey {
            code: KeyCode::KEY_F8.code()
        })]
    );
}

#[test]
fn gs1_recording_decodes_with_its_separator() {
    let lines = replay("wedge-gs1-alt.events", KeymapConfig::default());
    let Ok(line) = &lines[0] else { panic!() };
    match Decoder::default().decode(line, 2026) {
        ScanContent::Product(p) => assert_eq!(p.gtin.to_string(), "09501101530003"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tab_terminated_wifi_code_with_shifted_symbols() {
    let config = KeymapConfig {
        terminator: WedgeTerminator::Tab,
        ..KeymapConfig::default()
    };
    let lines = replay("wedge-wifi-tab.events", config);
    let Ok(line) = &lines[0] else { panic!() };
    match Decoder::default().decode(line, 2026) {
        ScanContent::NonProduct(NonProduct::Wifi(w)) => {
            assert_eq!(
                (w.ssid.as_str(), w.password.as_str()),
                ("Cart-Net", "Pa$$w0rd!")
            );
        }
        other => panic!("{other:?}"),
    }
    // With Enter as terminator, the Tab is a character and no line ends.
    let rec = load("wedge-wifi-tab.events");
    let mut lines = WedgeLines::new(KeymapConfig::default(), 256);
    assert!(rec.events.iter().all(|&(k, v)| lines.feed(k, v).is_none()));
}

#[test]
fn two_scans_and_autorepeat() {
    replay("wedge-two-scans.events", KeymapConfig::default());
}

#[test]
fn keypad_caps_lock_and_ctrl_letters() {
    let mut k = KeyDecoder::new(KeymapConfig::default());
    assert_eq!(k.feed(KeyCode::KEY_KP7, 1), Some(KeyOutput::Char(b'7')));
    assert_eq!(k.feed(KeyCode::KEY_KP7, 0), None);
    assert_eq!(k.feed(KeyCode::KEY_CAPSLOCK, 1), None);
    assert_eq!(k.feed(KeyCode::KEY_A, 1), Some(KeyOutput::Char(b'A')));
    assert_eq!(k.feed(KeyCode::KEY_LEFTSHIFT, 1), None);
    assert_eq!(k.feed(KeyCode::KEY_A, 1), Some(KeyOutput::Char(b'a')));
    assert_eq!(k.feed(KeyCode::KEY_LEFTSHIFT, 0), None);
    assert_eq!(k.feed(KeyCode::KEY_RIGHTCTRL, 1), None);
    assert_eq!(k.feed(KeyCode::KEY_M, 1), Some(KeyOutput::Char(0x0d)));
    assert_eq!(k.feed(KeyCode::KEY_RIGHTCTRL, 0), None);
    assert_eq!(k.feed(KeyCode::KEY_KPENTER, 1), Some(KeyOutput::Terminator));
    assert_eq!(
        k.feed(KeyCode::KEY_VOLUMEUP, 1),
        Some(KeyOutput::Unmapped(KeyCode::KEY_VOLUMEUP.code()))
    );
    // Shift released on the other side does not clear the held one.
    assert_eq!(k.feed(KeyCode::KEY_CAPSLOCK, 1), None);
    k.feed(KeyCode::KEY_LEFTSHIFT, 1);
    k.feed(KeyCode::KEY_RIGHTSHIFT, 0);
    assert_eq!(k.feed(KeyCode::KEY_B, 1), Some(KeyOutput::Char(b'B')));
}

#[test]
fn over_long_scan_is_refused_and_next_scan_is_clean() {
    let mut lines = WedgeLines::new(KeymapConfig::default(), 4);
    let mut out = Vec::new();
    for key in [KeyCode::KEY_1; 6].into_iter().chain([
        KeyCode::KEY_ENTER,
        KeyCode::KEY_2,
        KeyCode::KEY_ENTER,
    ]) {
        out.extend(lines.feed(key, 1));
        out.extend(lines.feed(key, 0));
    }
    assert_eq!(
        out,
        vec![Err(RejectReason::TooLong { max: 4 }), Ok(b"2".to_vec())]
    );
}

mod typed_text_round_trips {
    use super::*;
    use hal::scanner::keymap::key_events_for;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_printable_text_typed_by_the_scanner_reads_back(
            text in "[ -~\u{1d}]{1,60}",
            tab in any::<bool>(),
        ) {
            let terminator = if tab { WedgeTerminator::Tab } else { WedgeTerminator::Enter };
            let config = KeymapConfig { terminator, gs_function_key: None };
            let events = key_events_for(text.as_bytes(), config).expect("every printable byte has a key");
            let mut lines = WedgeLines::new(config, 256);
            let out: Vec<_> = events.iter().filter_map(|&(k, v)| lines.feed(k, v)).collect();
            prop_assert_eq!(out, vec![Ok(text.into_bytes())]);
        }
    }
}
