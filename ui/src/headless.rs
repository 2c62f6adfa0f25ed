//! Rendering without a display: a Slint platform whose one window is a
//! `MinimalSoftwareWindow` drawn by the software renderer into a pixel buffer.
//! Tests, screenshots, the benchmark and the daemon's scripted demo use it.
//!
//! The platform also runs an event loop ([`slint::run_event_loop`]): closures
//! sent with `invoke_from_event_loop` (how [`crate::UiHandle`] reaches the UI
//! thread) run in order, timers fire, and after each change the window is
//! drawn into a frame handed to an optional observer ([`Headless::on_frame`]).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use slint::platform::software_renderer::{MinimalSoftwareWindow, RepaintBufferType};
use slint::platform::{EventLoopProxy, Platform, WindowAdapter};
use slint::{EventLoopError, PhysicalSize, PlatformError, Rgb8Pixel};

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

/// What other threads send to the event loop.
enum LoopMessage {
    Invoke(Box<dyn FnOnce() + Send>),
    Quit,
}

/// The event loop's mailbox; `Send + Sync` so any thread may post.
struct Proxy {
    tx: Mutex<mpsc::Sender<LoopMessage>>,
    closed: Arc<AtomicBool>,
}

impl EventLoopProxy for Proxy {
    fn quit_event_loop(&self) -> Result<(), EventLoopError> {
        self.post(LoopMessage::Quit)
    }

    fn invoke_from_event_loop(
        &self,
        event: Box<dyn FnOnce() + Send>,
    ) -> Result<(), EventLoopError> {
        self.post(LoopMessage::Invoke(event))
    }
}

impl Proxy {
    fn post(&self, msg: LoopMessage) -> Result<(), EventLoopError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EventLoopError::EventLoopTerminated);
        }
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.send(msg)
            .map_err(|_| EventLoopError::EventLoopTerminated)
    }
}

/// Called with every frame the event loop draws.
type FrameObserver = Box<dyn FnMut(&Frame)>;

struct HeadlessPlatform {
    window: Rc<MinimalSoftwareWindow>,
    start: Instant,
    tx: mpsc::Sender<LoopMessage>,
    rx: RefCell<Option<mpsc::Receiver<LoopMessage>>>,
    closed: Arc<AtomicBool>,
    observer: Rc<RefCell<Option<FrameObserver>>>,
}

impl Platform for HeadlessPlatform {
    fn create_window_adapter(&self) -> Result<Rc<dyn WindowAdapter>, PlatformError> {
        Ok(self.window.clone())
    }

    fn duration_since_start(&self) -> Duration {
        self.start.elapsed()
    }

    fn new_event_loop_proxy(&self) -> Option<Box<dyn EventLoopProxy>> {
        Some(Box::new(Proxy {
            tx: Mutex::new(self.tx.clone()),
            closed: Arc::clone(&self.closed),
        }))
    }

    fn run_event_loop(&self) -> Result<(), PlatformError> {
        let rx =
            self.rx.borrow_mut().take().ok_or_else(|| {
                PlatformError::Other("the headless event loop runs only once".into())
            })?;
        let result = self.pump(&rx);
        self.closed.store(true, Ordering::SeqCst);
        result
    }
}

impl HeadlessPlatform {
    /// Runs messages and timers, drawing after each change, until quit.
    fn pump(&self, rx: &mpsc::Receiver<LoopMessage>) -> Result<(), PlatformError> {
        loop {
            slint::platform::update_timers_and_animations();
            self.draw_if_needed();
            let wait = if self.window.has_active_animations() {
                Duration::from_millis(16)
            } else {
                slint::platform::duration_until_next_timer_update()
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1))
            };
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                // Every sender gone: nobody can reach the UI any more.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            // Run everything already queued before drawing once.
            for msg in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match msg {
                    LoopMessage::Invoke(f) => f(),
                    LoopMessage::Quit => return Ok(()),
                }
            }
        }
    }

    fn draw_if_needed(&self) {
        let size = self.window.size();
        let (width, height) = (size.width, size.height);
        let mut frame = None;
        self.window.draw_if_needed(|renderer| {
            let mut pixels =
                vec![Rgb8Pixel { r: 0, g: 0, b: 0 }; (width as usize) * (height as usize)];
            renderer.render(&mut pixels, width as usize);
            frame = Some(Frame {
                width,
                height,
                pixels,
            });
        });
        if let (Some(frame), Some(observer)) = (frame, self.observer.borrow_mut().as_mut()) {
            observer(&frame);
        }
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
    observer: Rc<RefCell<Option<FrameObserver>>>,
}

impl Headless {
    /// Installs the headless platform on this thread.
    pub fn install() -> Result<Headless, HeadlessError> {
        check_fonts()?;
        let window = MinimalSoftwareWindow::new(RepaintBufferType::NewBuffer);
        let (tx, rx) = mpsc::channel();
        let observer = Rc::new(RefCell::new(None));
        slint::platform::set_platform(Box::new(HeadlessPlatform {
            window: window.clone(),
            start: Instant::now(),
            tx,
            rx: RefCell::new(Some(rx)),
            closed: Arc::new(AtomicBool::new(false)),
            observer: Rc::clone(&observer),
        }))?;
        Ok(Headless { window, observer })
    }

    /// Hands every frame the event loop draws to `observer` (on the UI
    /// thread, right after drawing: keep it short).
    pub fn on_frame(&self, observer: impl FnMut(&Frame) + 'static) {
        *self.observer.borrow_mut() = Some(Box::new(observer));
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
