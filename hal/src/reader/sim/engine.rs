//! The simulated reader's payment logic (docs/reader-protocol.md, section 8,
//! reader side), as a state machine driven by messages and a clock: no I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::emv;
use crate::reader::card::{FingerprintKey, mask_pan};
use crate::reader::carddata::{Binding, ProcessorPublicKey};
use crate::reader::fixtures::{ReaderBehaviour, TestCard, TestCards};
use crate::reader::message::{
    Capabilities, CardReadResult, Currency, Cvm, Message, PROTOCOL_VERSION, PaymentErrorCode,
    PaymentRequest, ReaderInfo, ReaderPaymentState, StatusReply, UiEvent,
};

/// Payments the reader remembers, newest last (spec: at least 16).
pub const HISTORY: usize = 16;
/// Card timeout when START_PAYMENT says 0.
pub const DEFAULT_CARD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the simulated shopper and card take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimTimings {
    /// From PRESENT_CARD to the card touching the reader.
    pub present: Duration,
    /// PIN entry.
    pub pin: Duration,
    /// A normal card read.
    pub read: Duration,
}

impl Default for SimTimings {
    fn default() -> Self {
        SimTimings {
            present: Duration::from_millis(30),
            pin: Duration::from_millis(30),
            read: Duration::from_millis(30),
        }
    }
}

/// What the engine needs to read cards.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The test cards.
    pub cards: TestCards,
    /// Card used when the queue is empty.
    pub default_card: String,
    /// The processor's public key.
    pub processor_key: ProcessorPublicKey,
    /// The reader's fingerprint key.
    pub fingerprint_key: FingerprintKey,
    /// Firmware version text.
    pub firmware: String,
    /// Serial number text.
    pub serial: String,
    /// Timings.
    pub timings: SimTimings,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    WaitCard,
    Pin,
    Reading,
}

#[derive(Debug)]
struct Active {
    key: Uuid,
    card: Option<TestCard>,
    phase: Phase,
    due: Instant,
    timeout_at: Instant,
}

#[derive(Debug)]
struct Record {
    request: PaymentRequest,
    state: ReaderPaymentState,
    /// The CARD_READ or PAYMENT_ERROR sent, repeated on a repeated START.
    reply: Option<Message>,
}

/// The simulated reader.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    queue: VecDeque<String>,
    active: Option<Active>,
    history: VecDeque<Record>,
    atc: u16,
    out: VecDeque<Message>,
}

impl Engine {
    /// A reader with no payment in progress.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            queue: VecDeque::new(),
            active: None,
            history: VecDeque::new(),
            atc: 0,
            out: VecDeque::new(),
        }
    }

    /// Queues the card the next payment will read. `false` if unknown.
    pub fn queue_card(&mut self, name: &str) -> bool {
        if self.cfg.cards.get(name).is_none() {
            return false;
        }
        self.queue.push_back(name.to_owned());
        true
    }

    /// The next message to send.
    pub fn poll_output(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// When [`Self::poll`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.due.min(a.timeout_at))
    }

    fn record(&mut self, key: Uuid) -> Option<&mut Record> {
        self.history.iter_mut().find(|r| r.request.key == key)
    }

    fn status_of(&self, key: Uuid) -> StatusReply {
        match self.history.iter().find(|r| r.request.key == key) {
            Some(r) => StatusReply {
                key,
                state: r.state,
                amount_minor: r.request.amount_minor,
                currency: r.request.currency,
            },
            None => StatusReply {
                key,
                state: ReaderPaymentState::Unknown,
                amount_minor: 0,
                currency: Currency::NONE,
            },
        }
    }

    fn set_state(&mut self, key: Uuid, state: ReaderPaymentState) {
        if let Some(r) = self.record(key) {
            r.state = state;
        }
    }

    /// Handles one message from the cart.
    pub fn handle(&mut self, m: Message, now: Instant) {
        match m {
            Message::Hello {
                proto_min,
                proto_max,
                session,
                ..
            } => {
                let v = if (proto_min..=proto_max).contains(&PROTOCOL_VERSION) {
                    PROTOCOL_VERSION
                } else {
                    0
                };
                self.out.push_back(Message::HelloReply(ReaderInfo {
                    protocol_version: v,
                    firmware: self.cfg.firmware.clone(),
                    serial: self.cfg.serial.clone(),
                    capabilities: Capabilities(
                        Capabilities::CHIP
                            | Capabilities::CONTACTLESS
                            | Capabilities::PIN
                            | Capabilities::DISPLAY,
                    ),
                    processor_key_id: self.cfg.processor_key.key_id,
                    session,
                }));
            }
            Message::StartPayment(req) => self.start(req, now),
            Message::Cancel { key } => {
                if self.active.as_ref().is_some_and(|a| a.key == key) {
                    self.fail(key, PaymentErrorCode::Cancelled);
                } else {
                    let s = self.status_of(key);
                    self.out.push_back(Message::StatusReply(s));
                }
            }
            Message::Status { key } => {
                let s = self.status_of(key);
                self.out.push_back(Message::StatusReply(s));
            }
            Message::Outcome { key, outcome } => {
                let chip = self.record(key).and_then(|r| match &r.reply {
                    Some(Message::CardRead(c)) => Some(c.entry_mode),
                    _ => None,
                });
                if let Some(r) = self.record(key)
                    && r.state == ReaderPaymentState::CardRead
                {
                    r.state = ReaderPaymentState::Completed(outcome);
                    tracing::info!(key = %key, outcome = ?outcome, "reader sim: outcome shown");
                    if chip == Some(crate::reader::message::EntryMode::Chip) {
                        self.out.push_back(Message::Event {
                            key,
                            event: UiEvent::CardRemoved,
                        });
                    }
                }
            }
            // Reader-to-cart messages coming from the cart: ignored.
            other => tracing::warn!(msg = other.name(), "reader sim: unexpected message"),
        }
    }

    fn start(&mut self, req: PaymentRequest, now: Instant) {
        let key = req.key;
        if let Some(r) = self.history.iter().find(|r| r.request.key == key) {
            // Same key again: never a second card; repeat what we have.
            let m = match &r.reply {
                Some(reply) => reply.clone(),
                None => Message::StatusReply(self.status_of(key)),
            };
            self.out.push_back(m);
            return;
        }
        if self.active.is_some() {
            self.out.push_back(Message::PaymentError {
                key,
                code: PaymentErrorCode::Busy,
            });
            return;
        }
        if req.amount_minor == 0 || emv::currency_numeric(req.currency).is_none() {
            self.out.push_back(Message::PaymentError {
                key,
                code: PaymentErrorCode::BadRequest,
            });
            return;
        }
        let name = self
            .queue
            .pop_front()
            .unwrap_or_else(|| self.cfg.default_card.clone());
        let card = self.cfg.cards.get(&name).cloned();
        tracing::info!(key = %key, card = %name, "reader sim: payment started");
        let timeout = match req.card_timeout_s {
            0 => DEFAULT_CARD_TIMEOUT,
            s => Duration::from_secs(u64::from(s)),
        };
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Record {
            request: req,
            state: ReaderPaymentState::WaitingForCard,
            reply: None,
        });
        self.active = Some(Active {
            key,
            card,
            phase: Phase::WaitCard,
            due: now + self.cfg.timings.present,
            timeout_at: now + timeout,
        });
        self.out.push_back(Message::Event {
            key,
            event: UiEvent::PresentCard,
        });
    }

    fn fail(&mut self, key: Uuid, code: PaymentErrorCode) {
        let m = Message::PaymentError { key, code };
        if let Some(r) = self.record(key) {
            r.state = ReaderPaymentState::Failed(code);
            r.reply = Some(m.clone());
        }
        self.active = None;
        tracing::info!(key = %key, code = ?code, "reader sim: payment failed");
        self.out.push_back(m);
    }

    /// Runs the clock: card presented, PIN entered, read finished, timeout.
    pub fn poll(&mut self, now: Instant) {
        while let Some(a) = self.active.as_ref() {
            let key = a.key;
            if a.phase == Phase::WaitCard && now >= a.timeout_at {
                self.fail(key, PaymentErrorCode::Timeout);
                return;
            }
            if now < a.due {
                return;
            }
            let Some(card) = a.card.clone() else {
                self.fail(key, PaymentErrorCode::ReaderFault);
                return;
            };
            let t = self.cfg.timings;
            let phase = a.phase;
            // Phases follow each other on schedule, so a late poll catches up.
            let base = a.due;
            match phase {
                Phase::WaitCard => match card.reader {
                    ReaderBehaviour::NoCard => {
                        if let Some(a) = self.active.as_mut() {
                            a.due = a.timeout_at;
                        }
                        return;
                    }
                    ReaderBehaviour::Fault => {
                        self.fail(key, PaymentErrorCode::ReaderFault);
                        return;
                    }
                    _ if card.pin => {
                        self.advance(key, Phase::Pin, base + t.pin, UiEvent::PinRequired);
                    }
                    _ => {
                        let read = read_time(&card, t);
                        self.advance(key, Phase::Reading, base + read, UiEvent::Processing);
                    }
                },
                Phase::Pin => {
                    let read = read_time(&card, t);
                    self.advance(key, Phase::Reading, base + read, UiEvent::Processing);
                }
                Phase::Reading => {
                    match card.reader {
                        ReaderBehaviour::RemovedMidRead => {
                            self.out.push_back(Message::Event {
                                key,
                                event: UiEvent::CardRemoved,
                            });
                            self.fail(key, PaymentErrorCode::CardRemoved);
                        }
                        ReaderBehaviour::Unreadable => self.fail(key, PaymentErrorCode::Unreadable),
                        _ => self.finish_read(key, &card),
                    }
                    return;
                }
            }
        }
    }

    fn advance(&mut self, key: Uuid, phase: Phase, due: Instant, event: UiEvent) {
        if let Some(a) = self.active.as_mut() {
            a.phase = phase;
            a.due = due;
        }
        let state = match phase {
            Phase::Pin => ReaderPaymentState::WaitingForPin,
            _ => ReaderPaymentState::Reading,
        };
        self.set_state(key, state);
        self.out.push_back(Message::Event { key, event });
    }

    fn finish_read(&mut self, key: Uuid, card: &TestCard) {
        let Some(req) = self.record(key).map(|r| r.request) else {
            return;
        };
        self.atc = self.atc.wrapping_add(1);
        let result = self.read_card(&req, card);
        match result {
            Some(r) => {
                let m = Message::CardRead(r);
                if let Some(rec) = self.record(key) {
                    rec.state = ReaderPaymentState::CardRead;
                    rec.reply = Some(m.clone());
                }
                self.active = None;
                tracing::info!(key = %key, "reader sim: card read");
                self.out.push_back(m);
            }
            None => self.fail(key, PaymentErrorCode::ReaderFault),
        }
    }

    fn read_card(&self, req: &PaymentRequest, card: &TestCard) -> Option<CardReadResult> {
        let masked_pan = mask_pan(&card.pan)?;
        let fingerprint = self.cfg.fingerprint_key.fingerprint(&card.pan);
        let binding = Binding {
            key: req.key,
            amount_minor: req.amount_minor,
            currency: req.currency,
        };
        let blob = card.seal(&self.cfg.processor_key, &binding).ok()?;
        let emv = emv::build(req, card, self.atc, &self.cfg.fingerprint_key)?;
        Some(CardReadResult {
            key: req.key,
            entry_mode: card.entry_mode,
            cvm: if card.pin { Cvm::Pin } else { Cvm::None },
            masked_pan,
            fingerprint,
            emv,
            blob,
        })
    }
}

fn read_time(card: &TestCard, t: SimTimings) -> Duration {
    match card.reader {
        ReaderBehaviour::Slow { read_ms } => Duration::from_millis(read_ms),
        _ => t.read,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
