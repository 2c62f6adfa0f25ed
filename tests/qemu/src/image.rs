//! What the suite boots: the guest `build-guest.sh` made (`CART_QEMU_GUEST`
//! names another build under `target/qemu` than `guest`), or an image given
//! from outside (the Yocto build's qemux86-64 output) through
//! `CART_QEMU_KERNEL`, `CART_QEMU_INITRD` (optional), `CART_QEMU_ROOTFS` (a
//! whole GPT disk with the image's partitions) and `CART_QEMU_CMDLINE`.
//!
//! How it boots: the kernel given to QEMU (`-kernel`, slot A, the fastest),
//! or with `CART_QEMU_BOOT=firmware` as the cart does: OVMF, then GRUB from
//! the EFI partition, then the slot GRUB's environment chooses (the update
//! scenarios).

use std::path::PathBuf;

/// A bootable guest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The kernel (`-kernel`).
    pub kernel: PathBuf,
    /// The initrd, if the kernel needs one.
    pub initrd: Option<PathBuf>,
    /// The whole disk (GPT: boot, root_a, root_b, data), never written:
    /// every run boots a copy.
    pub disk: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// The installed files with modes and owners as built (`path mode user
    /// group` a line), when the suite built the guest.
    pub files: Option<PathBuf>,
    /// The UEFI firmware (OVMF's code) to boot through, GRUB choosing the
    /// slot; `None`: the kernel is given to QEMU.
    pub firmware: Option<PathBuf>,
}

/// OVMF's code and its variable store template (Debian's ovmf).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The template each cart's variable store is copied from.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn firmware() -> Option<PathBuf> {
    match std::env::var("CART_QEMU_BOOT").as_deref() {
        Ok("firmware") => {
            assert!(
                std::path::Path::new(OVMF_CODE).exists(),
                "CART_QEMU_BOOT=firmware: {OVMF_CODE} missing: install the Debian package ovmf (scripts/setup.sh does)"
            );
            Some(PathBuf::from(OVMF_CODE))
        }
        Ok("kernel") | Err(_) => None,
        Ok(other) => panic!("CART_QEMU_BOOT={other}: say firmware or kernel"),
    }
}

impl Image {
    /// The image to boot: from the environment, else the built guest.
    /// Panics with what to run when there is none.
    pub fn find() -> Image {
        if let Ok(kernel) = std::env::var("CART_QEMU_KERNEL") {
            let disk = std::env::var("CART_QEMU_ROOTFS").expect(
                "CART_QEMU_KERNEL is set: set CART_QEMU_ROOTFS to the image's whole disk too",
            );
            return Image {
                kernel: kernel.into(),
                initrd: std::env::var("CART_QEMU_INITRD").ok().map(PathBuf::from),
                disk: disk.into(),
                cmdline: std::env::var("CART_QEMU_CMDLINE")
                    .unwrap_or_else(|_| "root=PARTLABEL=root_a ro rootwait console=ttyS0".into()),
                files: None,
                firmware: firmware(),
            };
        }
        let name = std::env::var("CART_QEMU_GUEST").unwrap_or_else(|_| "guest".into());
        let dir = crate::workspace_root().join("target/qemu").join(name);
        let disk = dir.join("disk.img");
        assert!(
            disk.exists(),
            "no guest at {}: build it with tests/qemu/build-guest.sh (after the image's release build, scripts/build-recipe-offline.sh); scripts/test.sh does both",
            dir.display()
        );
        let cmdline = std::fs::read_to_string(dir.join("cmdline"))
            .expect("the guest's cmdline")
            .trim()
            .to_owned();
        Image {
            kernel: dir.join("vmlinuz"),
            initrd: Some(dir.join("initrd.img")),
            disk,
            cmdline,
            files: Some(dir.join("files.txt")),
            firmware: firmware(),
        }
    }
}
