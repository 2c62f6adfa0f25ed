//! A host pseudo-terminal for a guest UART: QEMU opens the slave side
//! (`-chardev tty`), the test writes to (and reads from) the master side as
//! the device would. The scanner is one: a scan is its bytes plus CR.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A raw-mode pty pair; both sides stay open for the pty's life (an open
/// slave keeps the line from hanging up while QEMU reconnects).
pub struct Pty {
    master: File,
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// A new raw pty.
    pub fn open() -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
            .expect("tcsetattr");
        let path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
        Pty {
            master: File::from(pty.master),
            _slave: pty.slave,
            path,
        }
    }

    /// The slave's path (give it to QEMU).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one scan as a serial scanner does: the code, then CR.
    pub fn scan(&mut self, code: &str) {
        self.master
            .write_all(format!("{code}\r").as_bytes())
            .expect("write to the scanner's pty");
    }
}
