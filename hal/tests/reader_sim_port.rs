//! `reader-sim --port PATH`: the simulator opens an existing serial device
//! (here the slave side of a pty, as QEMU's or socat's would be) and the cart
//! speaks to it from the master side.

mod reader_common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use hal::reader::{PaymentEvent, PaymentReader, SerialReader};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use reader_common::{collect, driver_config, request};

/// The pty master as a port whose reads time out after 10 ms.
struct MasterPort(File);

impl Read for MasterPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(10u16)) {
            Ok(0) => Err(io::ErrorKind::TimedOut.into()),
            Ok(_) => self.0.read(buf),
            Err(e) => Err(e.into()),
        }
    }
}

impl Write for MasterPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[test]
fn the_binary_opens_a_given_port() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reader-sim"))
        .args([
            "--exit-on-eof",
            "--port",
            slave_path.to_str().unwrap(),
            "--card",
            "contactless-approve",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the simulator has set raw mode, the slave may still echo; HELLO is
    // retransmitted until the simulator answers, so the first frames may be
    // lost without harm.
    let mut r = SerialReader::new(MasterPort(File::from(pty.master)), driver_config());
    let mut tries = 0;
    let info = loop {
        tries += 1;
        match r.hello() {
            Ok(info) => break info,
            Err(hal::reader::ReaderError::Timeout | hal::reader::ReaderError::NoAck { .. })
                if tries < 10 => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(info.protocol_version, 1);
    let req = request(1234, 5);
    r.start_payment(&req).unwrap();
    match collect(&mut r, req.key).last() {
        Some(PaymentEvent::CardRead(res)) => {
            assert_eq!(res.masked_pan.as_str(), "424242******4242")
        }
        other => panic!("{other:?}"),
    }
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    drop(pty.slave);
}
