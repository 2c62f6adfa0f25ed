//! The reference screens in `docs/screenshots/` and the comparison every
//! screenshot test uses.

use std::path::{Path, PathBuf};

use ui::headless::Frame;

/// A channel (0-255) may differ this much before the pixel counts as different
/// (anti-aliasing differences between font and library versions).
pub const CHANNEL_TOLERANCE: u8 = 40;
/// This fraction of pixels may differ before the test fails.
pub const MAX_DIFFERENT_FRACTION: f64 = 0.01;

pub const SIZES: [(u32, u32); 2] = [(1280, 800), (800, 480)];

pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

pub fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(format!("{}: not an 8-bit RGB PNG", path.display()));
    }
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// Compares a frame with its reference; returns a failure message.
pub fn check(name: &str, frame: &Frame) -> Option<String> {
    let file = format!("{name}-{}x{}.png", frame.width, frame.height);
    let path = reference_dir().join(&file);
    let update = std::env::var("UPDATE_SCREENSHOTS").unwrap_or_default();
    if update == "all" || (!path.exists() && !update.is_empty()) {
        std::fs::create_dir_all(reference_dir()).expect("create docs/screenshots");
        frame.write_png(&path).expect("write reference");
        return None;
    }
    if !path.exists() {
        return Some(format!(
            "missing reference docs/screenshots/{file}: run with UPDATE_SCREENSHOTS=1 to create it"
        ));
    }
    let (w, h, expected) = match read_png(&path) {
        Ok(r) => r,
        Err(e) => return Some(e),
    };
    let actual_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&file);
    if (w, h) != (frame.width, frame.height) {
        return Some(format!("{file}: reference is {w}x{h}"));
    }
    let actual = frame.rgb_bytes();
    let differing = expected
        .chunks_exact(3)
        .zip(actual.chunks_exact(3))
        .filter(|(e, a)| {
            e.iter()
                .zip(a.iter())
                .any(|(x, y)| x.abs_diff(*y) > CHANNEL_TOLERANCE)
        })
        .count();
    let fraction = differing as f64 / f64::from(w * h);
    if fraction > MAX_DIFFERENT_FRACTION {
        let _ = frame.write_png(&actual_path);
        return Some(format!(
            "{file}: {:.2} % of pixels differ (limit {:.2} %); this run's image: {}",
            fraction * 100.0,
            MAX_DIFFERENT_FRACTION * 100.0,
            actual_path.display()
        ));
    }
    None
}
