//! The per-run disk: a sparse copy of the image's disk whose data partition
//! is written per run with the cart's factory/data area (its cart.toml, the
//! broker's CA, the claim), as a cart leaves manufacturing. After a run the
//! data partition can be read back (files pulled out with debugfs) or saved
//! and put back (a rolled-back copy).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A partition of the GPT disk: start and size in 512-byte sectors.
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    /// First sector.
    pub start: u64,
    /// Sectors.
    pub size: u64,
}

/// A cart's disk for one test (one cart, many boots).
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Disk {
    /// Copies `image` (sparse) to `path`.
    pub fn copy_of(image: &Path, path: &Path) -> Disk {
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(image)
            .arg(path));
        Disk {
            path: path.to_owned(),
        }
    }

    /// The disk file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The partition named `name` in the GPT.
    pub fn partition(&self, name: &str) -> Partition {
        let sfdisk = crate::need("sfdisk", "fdisk");
        let json = run(Command::new(sfdisk).arg("--json").arg(&self.path));
        let v: serde_json::Value = serde_json::from_str(&json).expect("sfdisk --json");
        let parts = v["partitiontable"]["partitions"]
            .as_array()
            .expect("partitions");
        let p = parts
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no partition named {name} on {}", self.path.display()));
        Partition {
            start: p["start"].as_u64().expect("start"),
            size: p["size"].as_u64().expect("size"),
        }
    }

    /// Writes the data partition anew as ext4 holding `stage`'s tree (the
    /// factory/data area; `cart-data-init` lays out the rest at boot).
    pub fn write_data(&self, stage: &Path) {
        let p = self.partition("data");
        let img = self.path.with_extension("data.ext4");
        let _ = std::fs::remove_file(&img);
        let mkfs = crate::need("mkfs.ext4", "e2fsprogs");
        run(Command::new(mkfs)
            .args(["-q", "-L", "data", "-d"])
            .arg(stage)
            .arg(&img)
            .arg(format!("{}k", p.size / 2)));
        self.put(&img, p);
        let _ = std::fs::remove_file(&img);
    }

    /// Saves the data partition to `file` (e.g. a copy to roll back to).
    pub fn save_data(&self, file: &Path) {
        let p = self.partition("data");
        run(Command::new("dd")
            .arg(format!("if={}", self.path.display()))
            .arg(format!("of={}", file.display()))
            .args(["bs=1M", "iflag=skip_bytes,count_bytes", "conv=sparse"])
            .arg("status=none")
            .arg(format!("skip={}", p.start * 512))
            .arg(format!("count={}", p.size * 512)));
    }

    /// Puts a saved data partition back.
    pub fn restore_data(&self, file: &Path) {
        let p = self.partition("data");
        self.put(file, p);
    }

    /// Writes `img` over the partition, every block of it: a sparse copy
    /// (`conv=sparse`) would skip the image's zero blocks and leave the
    /// partition's newer blocks there, a mix of two file systems.
    fn put(&self, img: &Path, p: Partition) {
        run(Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", self.path.display()))
            .args(["bs=1M", "oflag=seek_bytes", "conv=notrunc", "status=none"])
            .arg(format!("seek={}", p.start * 512)));
    }

    /// Copies `path_in_data` (e.g. `cart/ledger.sqlite`) out of the data
    /// partition to `to`, with the guest stopped. Returns false when the
    /// file is not there.
    pub fn pull(&self, path_in_data: &str, to: &Path) -> bool {
        let img = self.path.with_extension("pull.ext4");
        self.save_data(&img);
        let debugfs = crate::need("debugfs", "e2fsprogs");
        let _ = std::fs::remove_file(to);
        let _ = Command::new(debugfs)
            .arg("-R")
            .arg(format!("dump /{path_in_data} {}", to.display()))
            .arg(&img)
            .output();
        let _ = std::fs::remove_file(&img);
        to.exists()
    }
}
