//! The folder a scenario keeps: the serial console log, the guest's journal
//! export, the screendumps. Kept under `target/qemu/runs/<scenario>-<time>`
//! and named in every failure message; removed when the scenario passes
//! unless `QEMU_KEEP=1`.

use std::path::{Path, PathBuf};

/// A scenario's run folder.
pub struct Artifacts {
    dir: PathBuf,
    keep: bool,
}

impl Artifacts {
    /// A new folder for `scenario`.
    pub fn new(scenario: &str) -> Artifacts {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dir = crate::workspace_root()
            .join("target/qemu/runs")
            .join(format!("{scenario}-{stamp}"));
        std::fs::create_dir_all(&dir).expect("run folder under target/qemu/runs");
        Artifacts {
            dir,
            keep: std::env::var("QEMU_KEEP").is_ok_and(|v| v == "1"),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Keeps the folder (a failure is being reported).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "qemu-suite: the run's logs and screens are in {}",
                self.dir.display()
            );
            return;
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
