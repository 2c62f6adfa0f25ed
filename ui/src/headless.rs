//! Rendering without a display: a Slint platform whose one window is a
//! `MinimalSoftwareWindow` drawn by the software renderer into a pixel buffer.
//! Tests, screenshots, the benchmark and the daemon's scripted demo use it.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slint::platform::software_renderer::{MinimalSoftwareWindow, RepaintBufferType};
use slint::platform::{Platform, WindowAdapter};
use slint::{PhysicalSize, PlatformError, Rgb8Pixel};

/// Errors of headless rendering.
#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    /// fontconfig lists no font: Slint would panic at the first text. The
    /// caller stops; install a font (Debian: fonts-dejavu-core).
    #[error(
        "fontconfig finds no font (`fc-list` is empty or missing): install fontconfig and fonts-dejavu-core"
    )]
    NoFont,
    /// This thread already has a Slint platform; the caller uses that one.
    #[error("a Slint platform is already set on this thread: {0}")]
    Platform(#[from] slint::platform::SetPlatformError),
    /// Writing the PNG failed; the caller reports the path.
    #[error("cannot write PNG: {0}")]
    Png(#[from] png::EncodingError),
    /// Creating the PNG file failed.
    #[error("cannot create PNG file: {0}")]
    Io(#[from] std::io::Error),
}

struct HeadlessPlatform {
    window: Rc<MinimalSoftwareWindow>,
    start: Instant,
}

impl Platform for HeadlessPlatform {
    fn create_window_adapter(&self) -> Result<Rc<dyn WindowAdapter>, PlatformError> {
        Ok(self.window.clone())
    }

    fn duration_since_start(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Checks that fontconfig finds at least one font.
pub fn check_fonts() -> Result<(), HeadlessError> {
    let out = std::process::Command::new("fc-list")
        .arg("--format=%{file}\n")
        .output()
        .map_err(|_| HeadlessError::NoFont)?;
    if out.status.success() && !out.stdout.trim_ascii().is_empty() {
        Ok(())
    } else {
        Err(HeadlessError::NoFont)
    }
}

/// A rendered frame, RGB, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels, top row first.
    pub pixels: Vec<Rgb8Pixel>,
}

impl Frame {
    /// The pixels as packed RGB bytes.
    pub fn rgb_bytes(&self) -> Vec<u8> {
        self.pixels.iter().flat_map(|p| [p.r, p.g, p.b]).collect()
    }

    /// Writes the frame as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> Result<(), HeadlessError> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.rgb_bytes())?;
        writer.finish()?;
        Ok(())
    }
}

/// The headless platform of this thread. Install it before creating a
/// window; each thread that renders installs its own.
pub struct Headless {
    window: Rc<MinimalSoftwareWindow>,
}

impl Headless {
    /// Installs the headless platform on this thread.
    pub fn install() -> Result<Headless, HeadlessError> {
        check_fonts()?;
        let window = MinimalSoftwareWindow::new(RepaintBufferType::NewBuffer);
        slint::platform::set_platform(Box::new(HeadlessPlatform {
            window: window.clone(),
            start: Instant::now(),
        }))?;
        Ok(Headless { window })
    }

    /// Sets the window size in physical pixels (scale factor 1).
    pub fn resize(&self, width: u32, height: u32) {
        self.window.set_size(PhysicalSize::new(width, height));
    }

    /// Runs due timers and draws a whole frame at the current size.
    pub fn render(&self) -> Frame {
        slint::platform::update_timers_and_animations();
        let size = self.window.size();
        let (width, height) = (size.width, size.height);
        let mut pixels = vec![Rgb8Pixel { r: 0, g: 0, b: 0 }; (width as usize) * (height as usize)];
        // A new buffer every time: ask for a full redraw.
        self.window.request_redraw();
        self.window.draw_if_needed(|renderer| {
            renderer.render(&mut pixels, width as usize);
        });
        Frame {
            width,
            height,
            pixels,
        }
    }
}
