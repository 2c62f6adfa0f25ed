//! One QEMU process: the cart's hardware. TCG (KVM cannot boot guests on
//! these machines), 2 vCPUs, the image's disk on virtio, swtpm as a TPM 2.0
//! on TIS, the serial console on ttyS0 (to a file), the scanner on ttyS1
//! and the card reader on ttyS2 (host ptys where the simulators sit), a
//! bochs display (`-vga std`), a USB tablet for taps, virtio-net with user
//! networking (the guest reaches the host's loopback as 10.0.2.2), the
//! guest agent on virtio-serial, QMP on a unix socket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::image::Image;
use crate::qga::Agent;
use crate::qmp::Qmp;
use crate::tpm::Tpm;

/// The NIC's device id (QMP `set_link`).
pub const NIC: &str = "nic0";

/// How a guest is wired.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// Kernel, initrd, command line.
    pub image: Image,
    /// This cart's disk (a copy; see [`crate::disk::Disk`]).
    pub disk: PathBuf,
    /// This cart's TPM state folder (kept across boots).
    pub tpm_state: PathBuf,
    /// The host side of the scanner's UART (a pty's slave path).
    pub scanner_tty: PathBuf,
    /// The host side of the reader's UART (a pty's slave path).
    pub reader_tty: PathBuf,
    /// Sockets and the console log go here.
    pub run_dir: PathBuf,
    /// The display: 1280x800 (bochs default) or e.g. 800x480.
    pub display: (u32, u32),
    /// Guest memory, MiB.
    pub memory_mib: u32,
}

/// A running guest.
pub struct Guest {
    child: Child,
    tpm: Tpm,
    /// QMP, connected.
    pub qmp: Qmp,
    /// The guest agent.
    pub agent: Agent,
    console: PathBuf,
    /// When QEMU was started.
    pub started: Instant,
    /// The display size.
    pub display: (u32, u32),
}

impl Guest {
    /// Starts swtpm and QEMU; returns once QMP answers (the guest boots on).
    pub fn start(cfg: &GuestConfig) -> Guest {
        let qemu = crate::need("qemu-system-x86_64", "qemu-system-x86");
        let tpm = Tpm::start(&cfg.tpm_state);
        let qmp_sock = cfg.run_dir.join("qmp.sock");
        let qga_sock = cfg.run_dir.join("qga.sock");
        let console = cfg.run_dir.join("console.log");
        for s in [&qmp_sock, &qga_sock] {
            let _ = std::fs::remove_file(s);
        }
        // Each boot appends to the console log, with a marker line.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console)
            .expect("console log");
        let _ = writeln!(log, "\n===== qemu-suite: power on =====");
        crate::step("power on");
        let mut cmd = Command::new(qemu);
        cmd.args([
            "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-smp", "2",
        ])
        .args(["-m", &cfg.memory_mib.to_string()])
        .args(["-nodefaults", "-no-user-config", "-display", "none"]);
        match &cfg.image.firmware {
            // The cart's own boot: OVMF, GRUB from the EFI partition, the
            // slot its environment chooses. The variable store is this
            // cart's, kept across its boots.
            Some(code) => {
                let vars = cfg.run_dir.join("ovmf-vars.fd");
                if !vars.exists() {
                    std::fs::copy(crate::image::OVMF_VARS, &vars)
                        .expect("OVMF's variable store template (Debian package ovmf)");
                }
                cmd.arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        code.display()
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        vars.display()
                    ));
            }
            None => {
                cmd.arg("-kernel")
                    .arg(&cfg.image.kernel)
                    .args(["-append", &cfg.image.cmdline]);
                if let Some(initrd) = &cfg.image.initrd {
                    cmd.arg("-initrd").arg(initrd);
                }
            }
        }
        cmd.arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw,cache=writeback",
                cfg.disk.display()
            ))
            .arg("-chardev")
            .arg(format!("file,id=con,path={},append=on", console.display()))
            .args(["-serial", "chardev:con"])
            .arg("-chardev")
            .arg(format!("tty,id=scan,path={}", cfg.scanner_tty.display()))
            .args(["-serial", "chardev:scan"])
            .arg("-chardev")
            .arg(format!("tty,id=reader,path={}", cfg.reader_tty.display()))
            .args(["-serial", "chardev:reader"])
            .arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", tpm.socket().display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args(["-device", "tpm-tis,tpmdev=tpm0"])
            // The board's hardware watchdog: systemd pings it
            // (RuntimeWatchdogSec); a hung guest is reset.
            .args(["-device", "i6300esb", "-action", "watchdog=reset"])
            .args(["-netdev", "user,id=net0"])
            .args(["-device", &format!("virtio-net-pci,netdev=net0,id={NIC}")])
            .args([
                "-device",
                "qemu-xhci,id=xhci",
                "-device",
                "usb-tablet,id=tablet,bus=xhci.0",
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,id=qga0,path={},server=on,wait=off",
                qga_sock.display()
            ))
            .args(["-device", "virtio-serial-pci", "-device"])
            .arg("virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_sock.display()));
        if cfg.display == (1280, 800) {
            cmd.args(["-vga", "std"]);
        } else {
            cmd.args(["-device"])
                .arg(format!("VGA,xres={},yres={}", cfg.display.0, cfg.display.1));
        }
        let stderr = std::fs::File::create(cfg.run_dir.join("qemu.stderr")).expect("qemu stderr");
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start qemu-system-x86_64");
        let mut qmp = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while qmp.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "qemu exited at start ({status}): {}",
                    std::fs::read_to_string(cfg.run_dir.join("qemu.stderr")).unwrap_or_default()
                );
            }
            qmp = Qmp::connect(&qmp_sock).ok();
            assert!(Instant::now() < deadline, "QMP never answered");
            if qmp.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Guest {
            child,
            tpm,
            qmp: qmp.expect("qmp"),
            agent: Agent::new(&qga_sock),
            console,
            started,
            display: cfg.display,
        }
    }

    /// The serial console so far (all boots of this run).
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Waits until the guest agent answers (userspace is up).
    pub fn wait_agent(&self, timeout: Duration) -> bool {
        let up = crate::wait_for(timeout, || self.agent.ping());
        crate::step("guest agent answers");
        up
    }

    /// Runs a shell command in the guest; panics when the agent fails.
    pub fn sh(&self, script: &str) -> crate::qga::Output {
        self.agent
            .sh(script, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("guest: {script}: {e}"))
    }

    /// A screendump of the display, as RGB (also kept as `<dir>/<name>.png`).
    pub fn screen(&mut self, dir: &Path, name: &str) -> crate::screen::Rgb {
        let ppm = dir.join(format!("{name}.ppm"));
        self.qmp.screendump(&ppm).expect("screendump");
        let rgb = crate::screen::Rgb::read_ppm(&ppm).expect("read screendump");
        let _ = rgb.write_png(&dir.join(format!("{name}.png")));
        let _ = std::fs::remove_file(&ppm);
        rgb
    }

    /// Cuts the power: SIGKILL to QEMU, no shutdown. The host keeps what the
    /// guest wrote to the disk file; the guest's page cache is lost.
    pub fn power_cut(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.tpm.stop();
        crate::step("power cut");
    }

    /// A clean shutdown through systemd; waits for QEMU to exit (a power
    /// cut after `timeout`).
    pub fn shutdown(mut self, timeout: Duration) {
        let _ = self.agent.sh("systemctl poweroff", Duration::from_secs(5));
        let exited = crate::wait_for(timeout, || matches!(self.child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.tpm.stop();
        crate::step("powered off");
    }

    /// Whether QEMU still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
