//! The whole cart in QEMU: the harness of the system test suite.
//!
//! The guest is built by `tests/qemu/build-guest.sh` (cached under
//! `target/qemu/guest`): Debian bookworm with systemd, the cart installed
//! from `packaging/files.list` exactly as the image's recipe installs it, on
//! one GPT disk with the image's partitions (boot, root_a, root_b, data).
//! This crate boots it under TCG with real devices from the host and drives
//! it the way a cart is driven: docs/qemu.md.
//!
//! # Layout
//! - [`image`]: the built guest (kernel, initrd, disk), or one given from
//!   outside (`CART_QEMU_KERNEL`, `CART_QEMU_INITRD`, `CART_QEMU_ROOTFS`).
//! - [`disk`]: the per-run copy of the disk and its data partition: the
//!   factory/data area written per run, read back after a run.
//! - [`tpm`]: swtpm as the guest's TPM 2.0, its state kept for the cart's life.
//! - [`pty`]: a host pty for a guest UART (the scanner; the reader
//!   simulator makes its own).
//! - [`qmp`]: the QEMU Machine Protocol (screendump, `set_link`, input
//!   events, device hot-plug).
//! - [`qga`]: the QEMU guest agent (commands in the guest for assertions).
//! - [`screen`]: PPM screendumps, PNG files, comparison with references.
//! - [`guest`]: one QEMU process: start, console log, power cut, shutdown.
//! - [`bundle`]: RAUC bundles for the update scenarios (`rauc bundle` on
//!   the host, the development signer or a foreign one).
//! - [`artifacts`]: the folder a failed scenario leaves behind.
#![deny(missing_docs)]

pub mod artifacts;
pub mod bundle;
pub mod disk;
pub mod guest;
pub mod image;
pub mod pty;
pub mod qga;
pub mod qmp;
pub mod screen;
pub mod tpm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Polls `f` until it is true or `timeout` passes; true when it became true.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Prints `what` with the time since the suite's first step: the log of a
/// run says where its minutes went (boots, payments, shutdowns).
pub fn step(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    println!("qemu-suite: +{:6.1} s {what}", t.as_secs_f64());
}

/// The name of a tool's Debian package, for "install it" messages.
pub fn need(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} not found: install the Debian package {package} (scripts/setup.sh does)");
}
