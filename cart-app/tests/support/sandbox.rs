//! A host stand-in for the unit's sandbox (systemd/cart-app.service):
//! bubblewrap gives a read-only root, a private /tmp and /run, a minimal
//! /dev, and only the folders a test binds writable; setpriv then drops to
//! a real unprivileged uid with no capabilities and no_new_privs. Users and
//! groups exist only inside (the sandbox's own /etc/passwd and /etc/group),
//! so the host's user database is never touched.
//!
//! Not systemd's sandbox: no DeviceAllow cgroup filter, no seccomp set, no
//! ProtectProc. The QEMU guest runs the real unit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The daemon's user (`cart`).
pub const CART_UID: u32 = 4200;
/// The technicians' group (`cart-tech`).
pub const TECH_GID: u32 = 4300;
/// A technician (`tech`, a member of `cart-tech` by supplementary group).
pub const TECH_UID: u32 = 4301;
/// Another user of the cart (`visitor`, in no group of ours).
pub const OTHER_UID: u32 = 4400;

/// Who runs a command in the sandbox.
#[derive(Debug, Clone, Copy)]
pub enum As {
    /// The daemon's user.
    Cart,
    /// A member of `cart-tech`.
    Tech,
    /// Anyone else.
    Other,
}

/// The sandbox's user database and the folders it binds.
pub struct Sandbox {
    etc: tempfile::TempDir,
    binds: Vec<(PathBuf, bool)>,
}

impl Sandbox {
    /// Fails (never skips) when this cannot work: the uid switch needs
    /// root (CI runs as root), bwrap and setpriv must be installed.
    pub fn new() -> Sandbox {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the sandbox tests switch to unprivileged uids and must run as root (as CI does)"
        );
        for tool in ["bwrap", "setpriv"] {
            let found = Command::new(tool).arg("--version").output();
            assert!(
                found.is_ok_and(|o| o.status.success()),
                "{tool} not found: install the Debian packages bubblewrap and util-linux (scripts/setup.sh)"
            );
        }
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            etc.path().join("passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/sh\n\
                 cart:x:{CART_UID}:{CART_UID}:cart:/nonexistent:/usr/sbin/nologin\n\
                 tech:x:{TECH_UID}:{TECH_UID}:tech:/nonexistent:/bin/sh\n\
                 visitor:x:{OTHER_UID}:{OTHER_UID}:visitor:/nonexistent:/bin/sh\n"
            ),
        )
        .unwrap();
        std::fs::write(
            etc.path().join("group"),
            format!(
                "root:x:0:\ncart:x:{CART_UID}:\ncart-tech:x:{TECH_GID}:tech\n\
                 tech:x:{TECH_UID}:\nvisitor:x:{OTHER_UID}:\n"
            ),
        )
        .unwrap();
        Sandbox {
            etc,
            binds: Vec::new(),
        }
    }

    /// Makes `path` (a folder under the host's /tmp) visible at the same
    /// path, writable or read-only (permissions still apply inside).
    pub fn bind(&mut self, path: &Path, writable: bool) {
        self.binds.push((path.to_path_buf(), writable));
    }

    /// `program args` in the sandbox as `who`.
    pub fn command(&self, who: As, program: &Path) -> Command {
        let mut c = Command::new("bwrap");
        c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
        c.args(["--tmpfs", "/tmp", "--tmpfs", "/run"]);
        for (f, to) in [("passwd", "/etc/passwd"), ("group", "/etc/group")] {
            c.arg("--ro-bind").arg(self.etc.path().join(f)).arg(to);
        }
        // A workspace checked out under /tmp (the sandbox's /tmp is empty):
        // the program's own folder, read-only.
        let mut binds = self.binds.clone();
        if let Some(dir) = program.parent().filter(|d| d.starts_with("/tmp")) {
            binds.push((dir.to_path_buf(), false));
        }
        // bwrap would make a bound folder's missing parents 0700 root.
        let mut parents: Vec<&Path> = binds
            .iter()
            .flat_map(|(p, _)| p.ancestors().skip(1))
            .filter(|a| a.starts_with("/tmp") && *a != Path::new("/tmp"))
            .collect();
        // Parents before children, each once.
        parents.sort();
        parents.dedup();
        for p in parents {
            c.arg("--dir").arg(p);
        }
        for (path, writable) in &binds {
            c.arg(if *writable { "--bind" } else { "--ro-bind" })
                .arg(path)
                .arg(path);
        }
        c.args(["--unshare-ipc", "--unshare-uts", "--die-with-parent"]);
        let (uid, gid, groups) = match who {
            As::Cart => (CART_UID, CART_UID, String::from("--clear-groups")),
            As::Tech => (TECH_UID, TECH_UID, format!("--groups={TECH_GID}")),
            As::Other => (OTHER_UID, OTHER_UID, String::from("--clear-groups")),
        };
        c.arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg(groups)
            .args([
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ])
            .arg(program);
        c
    }
}

/// A sandboxed process. bwrap does not pass signals on, so they go to the
/// process inside (bwrap's child, found by its parent pid); dropping kills
/// both.
pub struct Sandboxed(pub Child);

impl Sandboxed {
    /// The process inside the sandbox, once it runs.
    pub fn inner_pid(&self) -> Option<i32> {
        let bwrap = self.0.id().to_string();
        std::fs::read_dir("/proc").ok()?.find_map(|e| {
            let e = e.ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid = rest.split(' ').nth(1)?;
            (ppid == bwrap)
                .then(|| e.file_name().to_str()?.parse().ok())
                .flatten()
        })
    }

    /// Sends `sig` to the process inside.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.inner_pid().expect("the sandboxed process runs");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    /// Whether bwrap (and so the process inside) has ended.
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            if let Some(pid) = self.inner_pid() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // bwrap ends once it has reaped the process inside (every
            // thread gone, its sockets closed); then it is safe to go on.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
