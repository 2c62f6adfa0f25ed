//! swtpm as the guest's TPM 2.0 (QEMU's `-tpmdev emulator` talks to its
//! control socket). The state folder lives as long as the cart: every boot
//! of the same cart starts a new swtpm on it, as a TPM keeps its NV memory
//! across power cycles.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One swtpm process on a state folder.
pub struct Tpm {
    state: PathBuf,
    child: Option<Child>,
}

impl Tpm {
    /// Starts swtpm on `state` (created if missing) with its control socket
    /// inside it.
    pub fn start(state: &Path) -> Tpm {
        let swtpm = crate::need("swtpm", "swtpm");
        std::fs::create_dir_all(state).expect("TPM state folder");
        let sock = state.join("swtpm.sock");
        let _ = std::fs::remove_file(&sock);
        let child = Command::new(swtpm)
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            .arg("--log")
            .arg(format!(
                "file={},level=1",
                state.join("swtpm.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swtpm (Debian packages swtpm, swtpm-tools)");
        assert!(
            crate::wait_for(Duration::from_secs(10), || sock.exists()),
            "swtpm did not create its socket; log: {}",
            std::fs::read_to_string(state.join("swtpm.log")).unwrap_or_default()
        );
        Tpm {
            state: state.to_owned(),
            child: Some(child),
        }
    }

    /// The control socket QEMU connects to.
    pub fn socket(&self) -> PathBuf {
        self.state.join("swtpm.sock")
    }

    /// Stops swtpm (its NV state stays in the folder).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        self.stop();
    }
}
