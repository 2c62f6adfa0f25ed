//! The QEMU guest agent (`qemu-guest-agent` in the guest, on a virtio-serial
//! port): runs commands in the guest for the suite's assertions, as root,
//! outside the cart's sandbox. Nothing in the image is weakened for it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// What a command in the guest printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (-1 when killed by a signal).
    pub code: i64,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// The agent's socket on the host.
pub struct Agent {
    path: PathBuf,
}

impl Agent {
    /// An agent behind `path` (QEMU's chardev socket).
    pub fn new(path: &Path) -> Agent {
        Agent {
            path: path.to_owned(),
        }
    }

    fn session(&self) -> std::io::Result<(BufReader<UnixStream>, UnixStream)> {
        let s = UnixStream::connect(&self.path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let w = s.try_clone()?;
        let mut r = BufReader::new(s);
        // guest-sync-delimited flushes whatever an earlier session left.
        let id = std::process::id() as i64 ^ Instant::now().elapsed().as_nanos() as i64;
        let mut w2 = w.try_clone()?;
        w2.write_all(&[0xff])?;
        w2.write_all(
            format!(
                "{}\n",
                json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})
            )
            .as_bytes(),
        )?;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if r.read_until(b'\n', &mut buf)? == 0 {
                // QEMU closed the socket (powered off): no agent.
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let text = String::from_utf8_lossy(&buf);
            let text = text
                .trim_start_matches('\u{fffd}')
                .trim_start_matches('\u{ff}');
            if let Ok(v) = serde_json::from_str::<Value>(text.trim())
                && v["return"] == json!(id)
            {
                return Ok((r, w));
            }
        }
    }

    fn call(&self, command: &str, arguments: Value) -> std::io::Result<Value> {
        let (mut r, mut w) = self.session()?;
        w.write_all(
            format!("{}\n", json!({"execute": command, "arguments": arguments})).as_bytes(),
        )?;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let v: Value = serde_json::from_str(line.trim()).map_err(std::io::Error::other)?;
        if let Some(e) = v.get("error") {
            return Err(std::io::Error::other(format!("guest agent: {e}")));
        }
        Ok(v["return"].clone())
    }

    /// Whether the agent answers (the guest is up).
    pub fn ping(&self) -> bool {
        self.call("guest-ping", json!({})).is_ok()
    }

    /// Runs `argv` in the guest and waits for it (at most `timeout`).
    pub fn exec(&self, argv: &[&str], timeout: Duration) -> std::io::Result<Output> {
        let (path, args) = argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty argv"))?;
        let started = self.call(
            "guest-exec",
            json!({"path": path, "arg": args, "capture-output": true}),
        )?;
        let pid = started["pid"].clone();
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.call("guest-exec-status", json!({"pid": pid}))?;
            if st["exited"] == json!(true) {
                let text = |k: &str| {
                    st.get(k)
                        .and_then(Value::as_str)
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                let code = st["exitcode"].as_i64().unwrap_or(-1);
                return Ok(Output {
                    code,
                    stdout: text("out-data"),
                    stderr: text("err-data"),
                });
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{argv:?} still running after {timeout:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a shell command line in the guest (`sh -c`).
    pub fn sh(&self, script: &str, timeout: Duration) -> std::io::Result<Output> {
        self.exec(&["/bin/sh", "-c", script], timeout)
    }
}
