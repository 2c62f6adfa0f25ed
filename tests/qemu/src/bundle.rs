//! RAUC bundles for the update scenarios, made on the host with `rauc
//! bundle` (Debian's rauc 1.8, as in the guest), verity format, for the
//! slot class `rootfs`, signed by the layer's development signer
//! (`yocto-layer/files/rauc-dev/`, which the guest's keyring trusts) or by
//! a foreign signer nobody trusts. Their root image: a small ext4 holding a
//! version file (the refusals, an install that is never booted), or a
//! whole bootable root file system built by `build-guest.sh`
//! (`CART_GUEST_ROOTFS=1`), given its version, or broken, by [`rootfs_variant`].

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Who signs a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The layer's development signer (the guest's keyring trusts its CA).
    Development,
    /// A self-signed signer made for the run: RAUC must refuse it.
    Foreign,
}

/// A bundle made for a scenario.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Its file.
    pub path: PathBuf,
    /// Its bytes' SHA-256, lowercase hex.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `<dir>/<name>.raucb` for `compatible` and `version`, its root
/// image holding a file that names the version.
pub fn make(dir: &Path, name: &str, compatible: &str, version: &str, signer: Signer) -> Bundle {
    crate::need("rauc", "rauc");
    let mkfs = crate::need("mkfs.ext4", "e2fsprogs");
    crate::need("mksquashfs", "squashfs-tools");
    let work = dir.join(format!("{name}.in"));
    let content = dir.join(format!("{name}.content"));
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&content);
    std::fs::create_dir_all(&work).expect("bundle folder");
    std::fs::create_dir_all(&content).expect("content folder");
    // Enough bytes that do not compress for the verity hash tree.
    let mut noise = vec![0u8; 256 * 1024];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(content.join("noise"), &noise).expect("noise");
    std::fs::write(content.join("cart-version"), format!("{version}\n")).expect("version");
    let image = work.join("rootfs.ext4");
    run(Command::new(mkfs)
        .args(["-q", "-L", "cart-update", "-d"])
        .arg(&content)
        .arg(&image)
        .arg("4M"));
    let _ = std::fs::remove_dir_all(&content);
    sign(dir, name, &work, compatible, version, signer)
}

/// Makes `<dir>/<name>.raucb` carrying the root file system image `rootfs`.
pub fn make_from_rootfs(
    dir: &Path,
    name: &str,
    rootfs: &Path,
    compatible: &str,
    version: &str,
) -> Bundle {
    crate::need("rauc", "rauc");
    crate::need("mksquashfs", "squashfs-tools");
    let work = dir.join(format!("{name}.in"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("bundle folder");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(rootfs)
        .arg(work.join("rootfs.ext4")));
    sign(dir, name, &work, compatible, version, Signer::Development)
}

/// A copy of the root file system image `rootfs` at `to` for one update:
/// os-release's `IMAGE_VERSION` set to `version`; with `broken`, the cart
/// daemon replaced by a program that fails at start (a build that never
/// passes its health check). Edited with debugfs, nothing mounted.
pub fn rootfs_variant(rootfs: &Path, to: &Path, version: &str, broken: bool) {
    let debugfs = crate::need("debugfs", "e2fsprogs");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(rootfs)
        .arg(to));
    let os_release = "/usr/lib/os-release";
    let out = Command::new(&debugfs)
        .arg("-R")
        .arg(format!("cat {os_release}"))
        .arg(to)
        .output()
        .expect("debugfs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("IMAGE_VERSION="),
        "{}: {os_release} has no IMAGE_VERSION",
        rootfs.display()
    );
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("IMAGE_VERSION=") {
                format!("IMAGE_VERSION=\"{version}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let local = to.with_extension("os-release");
    std::fs::write(&local, text).expect("os-release");
    let mut script = format!(
        "rm {os_release}\nwrite {} {os_release}\nsif {os_release} mode 0100644\nsif {os_release} uid 0\nsif {os_release} gid 0\n",
        local.display()
    );
    let daemon = to.with_extension("cart-app");
    if broken {
        std::fs::write(
            &daemon,
            "#!/bin/sh\necho 'cart-app: this build fails at start (an update that must roll back)' >&2\nexit 1\n",
        )
        .expect("broken daemon");
        script.push_str(&format!(
            "rm /usr/bin/cart-app\nwrite {} /usr/bin/cart-app\nsif /usr/bin/cart-app mode 0100755\nsif /usr/bin/cart-app uid 0\nsif /usr/bin/cart-app gid 0\n",
            daemon.display()
        ));
    }
    let commands = to.with_extension("debugfs");
    std::fs::write(&commands, script).expect("debugfs commands");
    run(Command::new(&debugfs)
        .arg("-w")
        .arg("-f")
        .arg(&commands)
        .arg(to));
    for f in [local, daemon, commands] {
        let _ = std::fs::remove_file(f);
    }
}

/// Writes the manifest beside `<work>/rootfs.ext4`, signs, and hashes.
fn sign(
    dir: &Path,
    name: &str,
    work: &Path,
    compatible: &str,
    version: &str,
    signer: Signer,
) -> Bundle {
    let rauc = crate::need("rauc", "rauc");
    std::fs::write(
        work.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n"
        ),
    )
    .expect("manifest");
    let (cert, key) = match signer {
        Signer::Development => {
            let dev = crate::workspace_root().join("yocto-layer/files/rauc-dev");
            (
                dev.join("dev-signer.cert.pem"),
                dev.join("dev-signer.key.pem"),
            )
        }
        Signer::Foreign => foreign_signer(dir),
    };
    let path = dir.join(format!("{name}.raucb"));
    let _ = std::fs::remove_file(&path);
    run(Command::new(rauc)
        .arg("bundle")
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(work)
        .arg(&path));
    let bytes = std::fs::read(&path).expect("bundle");
    let _ = std::fs::remove_dir_all(work);
    Bundle {
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        path,
    }
}

/// A self-signed signer (EC P-256) made with rcgen for this run.
fn foreign_signer(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("foreign-signer.cert.pem");
    let key = dir.join("foreign-signer.key.pem");
    if !cert.exists() {
        let k = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "foreign RAUC signer (trusted by no cart)",
        );
        let c = params.self_signed(&k).expect("self-signed");
        std::fs::write(&cert, c.pem()).expect("cert");
        std::fs::write(&key, k.serialize_pem()).expect("key");
    }
    (cert, key)
}
