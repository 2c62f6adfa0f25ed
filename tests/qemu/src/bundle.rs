//! RAUC bundles for the update scenarios, made on the host with `rauc
//! bundle` (Debian's rauc 1.8, as in the guest): a small ext4 root image
//! for the slot class `rootfs`, verity format, signed by the layer's
//! development signer (`yocto-layer/files/rauc-dev/`, which the guest's
//! keyring trusts) or by a foreign signer nobody trusts.

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
    let rauc = crate::need("rauc", "rauc");
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
        .arg(&work)
        .arg(&path));
    let bytes = std::fs::read(&path).expect("bundle");
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&content);
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
