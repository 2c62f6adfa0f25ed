//! The `reader-sim` binary: it creates a pty, prints its path, reads the
//! cards queued on its command line and on stdin, and stops on `quit`.

mod reader_common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use hal::reader::message::Cvm;
use hal::reader::{DriverConfig, PaymentEvent, PaymentReader, SerialReader};
use reader_common::{collect, request};

#[test]
fn the_binary_serves_payments_over_its_pty() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reader-sim"))
        .args(["--exit-on-eof", "--card", "chip-pin-approve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let path = line
        .trim()
        .strip_prefix("PTY ")
        .expect("PTY line")
        .to_owned();

    let cfg = DriverConfig {
        exclusive: false,
        ..DriverConfig::default()
    };
    let mut r = SerialReader::open(&path, cfg).unwrap();
    let info = r.hello().unwrap();
    assert_eq!(info.protocol_version, 1);
    assert_eq!(info.processor_key_id, 1);

    let req = request(350, 5);
    r.start_payment(&req).unwrap();
    match collect(&mut r, req.key).last() {
        Some(PaymentEvent::CardRead(res)) => {
            assert_eq!(res.masked_pan.as_str(), "555555******4444");
            assert_eq!(res.cvm, Cvm::Pin);
        }
        other => panic!("{other:?}"),
    }

    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "card unreadable").unwrap();
    stdin.flush().unwrap();
    // The simulator confirms the command before we start the payment.
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "QUEUED unreadable");
    let req = request(350, 5);
    r.start_payment(&req).unwrap();
    match collect(&mut r, req.key).last() {
        Some(PaymentEvent::Failed { code, .. }) => {
            assert_eq!(*code, hal::reader::PaymentErrorCode::Unreadable)
        }
        other => panic!("{other:?}"),
    }
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
