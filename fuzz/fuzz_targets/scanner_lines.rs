//! Any bytes as a serial stream cut into arbitrary reads (line framer),
//! and as key events (keyboard-wedge keymap): never a panic, and never a
//! line longer than the maximum.
#![no_main]

use hal::scanner::keymap::{KeymapConfig, WedgeLines};
use hal::scanner::line::{Frame, LineFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut framer = LineFramer::new(b"\r\n", 64);
    for chunk in rest.chunks(usize::from(cut).max(1)) {
        framer.push(chunk);
        while let Some(frame) = framer.pop() {
            if let Frame::Line(line) = frame {
                assert!(line.len() <= 64 && !line.contains(&b'\r') && !line.contains(&b'\n'));
            }
        }
    }
    let config = KeymapConfig {
        gs_function_key: Some(cut % 25),
        ..KeymapConfig::default()
    };
    let mut lines = WedgeLines::new(config, 64);
    for ev in rest.chunks_exact(3) {
        let code = u16::from_le_bytes([ev[0], ev[1] % 3]);
        let value = i32::from(ev[2] % 3);
        if let Some(Ok(line)) = lines.feed(evdev::KeyCode::new(code), value) {
            assert!(line.len() <= 64);
        }
    }
});
