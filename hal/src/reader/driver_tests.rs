//! The driver against an in-memory port whose far end is a scripted reader
//! (a [`Link`] plus a closure), for cases a well-behaved simulator never
//! produces: no common version, malformed messages, hang-ups.

use std::collections::VecDeque;
use std::io;

use super::*;
use crate::reader::message::{Capabilities, Currency};

type Respond = Box<dyn FnMut(Message) -> Vec<Vec<u8>> + Send>;

struct ScriptedPort {
    link: Link,
    respond: Respond,
    inbound: VecDeque<u8>,
    read_error: Option<io::ErrorKind>,
}

impl ScriptedPort {
    fn new(respond: Respond) -> Self {
        ScriptedPort {
            link: Link::new(LinkConfig::default()),
            respond,
            inbound: VecDeque::new(),
            read_error: None,
        }
    }
}

impl Read for ScriptedPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kind) = self.read_error {
            return Err(io::Error::from(kind));
        }
        if self.inbound.is_empty() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let n = buf.len().min(self.inbound.len());
        for (i, b) in self.inbound.drain(..n).enumerate() {
            buf[i] = b;
        }
        Ok(n)
    }
}

impl Write for ScriptedPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let now = Instant::now();
        self.link.handle_input(buf, now);
        while let Some(d) = self.link.poll_delivered() {
            let Ok(m) = wire::decode(&d.payload) else {
                continue;
            };
            for payload in (self.respond)(m) {
                self.link
                    .send(payload, false, now)
                    .map_err(io::Error::other)?;
            }
        }
        self.inbound.extend(self.link.poll_transmit());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn reply(version: u8, session: u32) -> Vec<u8> {
    wire::encode(&Message::HelloReply(ReaderInfo {
        protocol_version: version,
        firmware: "t".into(),
        serial: "t".into(),
        capabilities: Capabilities(0),
        processor_key_id: 9,
        session,
    }))
    .unwrap()
}

fn driver(respond: Respond) -> SerialReader<ScriptedPort> {
    SerialReader::new(ScriptedPort::new(respond), DriverConfig::default())
}

#[test]
fn a_reader_with_no_common_version_is_incompatible() {
    let mut d = driver(Box::new(|m| match m {
        Message::Hello { session, .. } => vec![reply(0, session)],
        _ => vec![],
    }));
    assert!(matches!(
        d.hello(),
        Err(ReaderError::Incompatible { reader: 0, ours: 1 })
    ));
    assert_eq!(d.snapshot().reader, None);
}

#[test]
fn malformed_and_unknown_messages_are_dropped_and_the_next_one_counts() {
    let key = Uuid::from_u128(7);
    let mut d = driver(Box::new(move |m| match m {
        Message::Hello { session, .. } => vec![reply(1, session)],
        Message::Status { key } => vec![
            vec![0xEE, 1, 2, 3], // unknown type
            vec![0x85, 1, 2],    // STATUS_REPLY cut short
            wire::encode(&Message::StatusReply(StatusReply {
                key,
                state: ReaderPaymentState::Unknown,
                amount_minor: 0,
                currency: Currency::NONE,
            }))
            .unwrap(),
        ],
        _ => vec![],
    }));
    assert_eq!(d.hello().unwrap().processor_key_id, 9);
    let s = d.status(key, Duration::from_secs(5)).unwrap();
    assert_eq!(s.state, ReaderPaymentState::Unknown);
    assert_eq!(d.snapshot().link.frames_delivered, 4);
}

#[test]
fn hang_up_and_eio_mean_disconnected() {
    for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::UnexpectedEof] {
        let mut d = driver(Box::new(|_| vec![]));
        d.port.read_error = Some(kind);
        assert!(matches!(
            d.next_event(Duration::from_millis(10)),
            Err(ReaderError::Disconnected)
        ));
        // It stays disconnected without touching the port again.
        d.port.read_error = None;
        assert!(matches!(
            d.next_event(Duration::from_millis(10)),
            Err(ReaderError::Disconnected)
        ));
    }
    assert!(matches!(
        map_io(io::Error::from_raw_os_error(libc::EIO)),
        ReaderError::Disconnected
    ));
    assert!(matches!(
        map_io(io::Error::from(io::ErrorKind::PermissionDenied)),
        ReaderError::Io(_)
    ));
}

#[test]
fn a_card_read_with_the_pan_in_clear_is_refused_as_a_reader_fault() {
    use crate::reader::message::{CardReadResult, Cvm, EntryMode, Fingerprint, MaskedPan};
    let key = Uuid::from_u128(8);
    let pan_tlv = vec![0x5A, 0x08, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11];
    let mut d = driver(Box::new(move |m| match m {
        Message::Hello { session, .. } => vec![reply(1, session)],
        Message::StartPayment(r) => vec![
            wire::encode(&Message::CardRead(CardReadResult {
                key: r.key,
                entry_mode: EntryMode::Chip,
                cvm: Cvm::None,
                masked_pan: MaskedPan::new("411111******1111").unwrap(),
                fingerprint: Fingerprint([0; 32]),
                emv: pan_tlv.clone(),
                blob: vec![1, 2, 3],
            }))
            .unwrap(),
        ],
        _ => vec![],
    }));
    d.hello().unwrap();
    let req = PaymentRequest {
        key,
        amount_minor: 1,
        currency: "EUR".parse().unwrap(),
        card_timeout_s: 1,
    };
    d.start_payment(&req).unwrap();
    assert_eq!(
        d.next_event(Duration::from_secs(5)).unwrap(),
        Some(PaymentEvent::Failed {
            key,
            code: PaymentErrorCode::ReaderFault
        })
    );
    assert_eq!(
        d.snapshot().last_state,
        Some(ReaderPaymentState::Failed(PaymentErrorCode::ReaderFault))
    );
}
