//! The QEMU Machine Protocol over a unix socket: one JSON object per line;
//! asynchronous events are kept aside, answers returned.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// A QMP connection after capabilities negotiation.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events received while waiting for answers, oldest first.
    pub events: Vec<Value>,
}

/// What can go wrong talking to QEMU.
#[derive(Debug)]
pub enum QmpError {
    /// The socket failed or closed (QEMU gone).
    Io(std::io::Error),
    /// QEMU answered with an error.
    Command(String),
    /// Not JSON.
    Protocol(String),
}

impl std::fmt::Display for QmpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QmpError::Io(e) => write!(f, "QMP: {e}"),
            QmpError::Command(e) => write!(f, "QMP command failed: {e}"),
            QmpError::Protocol(e) => write!(f, "QMP protocol: {e}"),
        }
    }
}

impl std::error::Error for QmpError {}

impl From<std::io::Error> for QmpError {
    fn from(e: std::io::Error) -> Self {
        QmpError::Io(e)
    }
}

impl Qmp {
    /// Connects (QEMU listens with `server=on,wait=off`) and negotiates.
    pub fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("no greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }

    /// Runs a command; its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let msg = json!({ "execute": command, "arguments": arguments });
        self.writer.write_all(format!("{msg}\n").as_bytes())?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command(e.to_string()));
            }
            self.events.push(v);
        }
    }

    /// Writes the guest's display to a PPM file.
    pub fn screendump(&mut self, path: &Path) -> Result<(), QmpError> {
        self.execute(
            "screendump",
            json!({ "filename": path.display().to_string() }),
        )
        .map(drop)
    }

    /// Plugs (`true`) or pulls (`false`) the network cable of NIC `id`.
    pub fn set_link(&mut self, id: &str, up: bool) -> Result<(), QmpError> {
        self.execute("set_link", json!({ "name": id, "up": up }))
            .map(drop)
    }

    /// A tap at pixel (x, y) of a `width` x `height` display through the
    /// USB tablet: absolute move, button down, button up.
    pub fn tap(&mut self, x: u32, y: u32, width: u32, height: u32) -> Result<(), QmpError> {
        let ax = (u64::from(x) * 32767 / u64::from(width.max(1))) as i64;
        let ay = (u64::from(y) * 32767 / u64::from(height.max(1))) as i64;
        let abs = |axis: &str, value: i64| json!({ "type": "abs", "data": { "axis": axis, "value": value } });
        let btn = |down: bool| json!({ "type": "btn", "data": { "down": down, "button": "left" } });
        self.execute(
            "input-send-event",
            json!({ "events": [abs("x", ax), abs("y", ay)] }),
        )?;
        std::thread::sleep(Duration::from_millis(50));
        self.execute("input-send-event", json!({ "events": [btn(true)] }))?;
        std::thread::sleep(Duration::from_millis(80));
        self.execute("input-send-event", json!({ "events": [btn(false)] }))?;
        Ok(())
    }

    /// Removes a hot-pluggable device.
    pub fn device_del(&mut self, id: &str) -> Result<(), QmpError> {
        self.execute("device_del", json!({ "id": id })).map(drop)
    }

    /// Adds a device (`driver` plus properties).
    pub fn device_add(&mut self, args: Value) -> Result<(), QmpError> {
        self.execute("device_add", args).map(drop)
    }

    /// Adds a character device on a host tty (e.g. a simulator's pty),
    /// for a device plugged in later.
    pub fn chardev_add_tty(&mut self, id: &str, path: &Path) -> Result<(), QmpError> {
        self.execute(
            "chardev-add",
            json!({
                "id": id,
                "backend": { "type": "serial", "data": { "device": path.display().to_string() } }
            }),
        )
        .map(drop)
    }

    /// Whether a `DEVICE_DELETED` event for `id` has arrived (reads the
    /// events waiting, without blocking for long).
    pub fn device_deleted(&mut self, id: &str) -> bool {
        self.events_named("DEVICE_DELETED")
            .iter()
            .any(|e| e.pointer("/data/device").and_then(Value::as_str) == Some(id))
    }

    /// The events called `name` that have arrived so far (reads the events
    /// waiting, without blocking for long).
    pub fn events_named(&mut self, name: &str) -> Vec<Value> {
        // A no-op command collects the events sent before its answer.
        let _ = self.execute("query-status", json!({}));
        self.events
            .iter()
            .filter(|e| e.get("event").and_then(Value::as_str) == Some(name))
            .cloned()
            .collect()
    }

    /// Powers the machine off at once (no guest shutdown).
    pub fn quit(&mut self) -> Result<(), QmpError> {
        self.execute("quit", json!({})).map(drop)
    }
}
