//! A window created at the display's size draws its first frame in the
//! layout for that size. On the cart (linuxkms) the window has the panel's
//! size before the UI's first binding runs, so a layout chosen only when the
//! height *changes* never switched to the compact one on an 800x480 panel
//! (found by the QEMU suite's 800x480 boot). Its own test binary: the
//! headless platform is installed once per process.

mod common;

use common::Daemon;
use common::reference::check;
use ui::headless::Headless;

#[test]
fn a_window_made_at_800x480_is_compact_from_its_first_frame() {
    let headless = Headless::install()
        .expect("headless platform (fontconfig must find a font: install fonts-dejavu-core)");
    // The panel's size first, then the window: as on the cart.
    headless.resize(800, 480);
    let mut d = Daemon::new();
    d.pump();
    let frame = headless.render();
    assert_eq!((frame.width, frame.height), (800, 480));
    if let Some(failure) = check("idle", &frame) {
        panic!("{failure}");
    }
}
