//! Every screen rendered by the software renderer at 1280x800 and 800x480 and
//! compared with the reference images in `docs/screenshots/`.
//!
//! A missing reference fails the test, naming the file; with
//! `UPDATE_SCREENSHOTS=1` missing references are written, and with
//! `UPDATE_SCREENSHOTS=all` every reference is rewritten. A reference image
//! changes only in a commit that says why (docs/ui.md).

mod common;

use std::path::{Path, PathBuf};

use common::{APPLES, BREAD, Daemon, MILK, WINE};
use ui::headless::{Frame, Headless};
use ui::{DeclineReason, FaultView, LinkBanner, ReaderPrompt, Screen, ViewUpdate};

/// A channel (0-255) may differ this much before the pixel counts as different
/// (anti-aliasing differences between font and library versions).
const CHANNEL_TOLERANCE: u8 = 40;
/// This fraction of pixels may differ before the test fails.
const MAX_DIFFERENT_FRACTION: f64 = 0.01;

const SIZES: [(u32, u32); 2] = [(1280, 800), (800, 480)];

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>), String> {
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
fn check(name: &str, frame: &Frame) -> Option<String> {
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

type Step = fn(&mut Daemon);

fn screens() -> Vec<(&'static str, Step)> {
    vec![
        ("idle", |_| {}),
        ("shopping", |d| {
            d.scan(MILK);
            d.scan(MILK);
            d.scan(BREAD);
            d.scan(APPLES);
        }),
        ("checkout", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::Checkout))
        }),
        ("reader-present-card", |d| {
            d.reader(ReaderPrompt::PresentCard)
        }),
        ("reader-enter-pin", |d| d.reader(ReaderPrompt::EnterPin)),
        ("reader-processing", |d| d.reader(ReaderPrompt::Processing)),
        ("approved", |d| d.approve(false)),
        ("approved-offline", |d| d.approve(true)),
        ("declined", |d| d.decline(DeclineReason::InsufficientFunds)),
        ("offline-banner", |d| {
            d.link(LinkBanner::Offline {
                offline_cap_minor: Some(10_000),
            });
            d.ui.update(ViewUpdate::Screen(Screen::Shopping));
        }),
        ("offline-paused", |d| {
            d.link(LinkBanner::Offline {
                offline_cap_minor: None,
            });
        }),
        ("age-check", |d| {
            d.link(LinkBanner::Online);
            d.scan(WINE);
        }),
        ("age-check-called", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::AgeCheck(ui::AgeCheckView {
                line_id: 5,
                item_name: WINE.name.into(),
                staff_called: true,
            })));
        }),
        ("shopping-de", |d| {
            d.staff_badge();
            d.ui.update(ViewUpdate::Language(ui::Language::German));
        }),
        ("approved-de", |d| d.approve(true)),
        ("fault", |d| {
            d.ui.update(ViewUpdate::Language(ui::Language::English));
            d.ui.update(ViewUpdate::Screen(Screen::Fault(FaultView {
                scanner_missing: true,
                reader_missing: true,
            })));
        }),
        ("out-of-service", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::OutOfService))
        }),
    ]
}

#[test]
fn every_screen_matches_its_reference_at_both_sizes() {
    let headless = Headless::install()
        .expect("headless platform (fontconfig must find a font: install fonts-dejavu-core)");
    let mut d = Daemon::new();
    let mut failures = Vec::new();
    for (name, step) in screens() {
        step(&mut d);
        d.pump();
        for (w, h) in SIZES {
            headless.resize(w, h);
            let frame = headless.render();
            if let Some(failure) = check(name, &frame) {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "screenshots differ:\n{}",
        failures.join("\n")
    );
}
