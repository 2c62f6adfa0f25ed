//! A scanner fed through a channel: the same decoder and the same `Scan`
//! values as the real drivers, without a device. For the demo and for tests
//! of the code that consumes scans (the UI controllers, the daemon's scan
//! thread); the drivers' own tests use real pseudo-terminals instead.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use super::addon::AddOnJoiner;
use super::decode::{Decoder, year_of};
use super::state::{DeviceState, StateHandle};
use super::{Scan, Scanner, ScannerError};

/// The sending side: each `send` is one scanned line (terminator removed).
#[derive(Debug, Clone)]
pub struct ScanFeeder(Sender<Vec<u8>>);

impl ScanFeeder {
    /// Delivers one scanned line. Returns `false` when the scanner was dropped.
    pub fn send(&self, line: impl Into<Vec<u8>>) -> bool {
        self.0.send(line.into()).is_ok()
    }
}

/// A [`Scanner`] whose lines come from a [`ScanFeeder`]. Connected while a
/// feeder exists; `Gone` once every feeder is dropped.
#[derive(Debug)]
pub struct ChannelScanner {
    rx: Receiver<Vec<u8>>,
    decoder: Decoder,
    add_on: AddOnJoiner,
    state: StateHandle,
}

impl ChannelScanner {
    /// A scanner and its feeder.
    pub fn new(decoder: Decoder) -> (Self, ScanFeeder) {
        let (tx, rx) = mpsc::channel();
        let state = StateHandle::new(DeviceState::Connected);
        let add_on = AddOnJoiner::new(decoder.config().add_on.clone());
        (
            Self {
                rx,
                decoder,
                add_on,
                state,
            },
            ScanFeeder(tx),
        )
    }
}

impl Scanner for ChannelScanner {
    fn next_scan(&mut self, timeout: Duration) -> Result<Option<Scan>, ScannerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(line) = self.add_on.pop(now) {
                let at = SystemTime::now();
                let content = self.decoder.decode(&line, year_of(at));
                return Ok(Some(Scan {
                    at,
                    monotonic: Instant::now(),
                    content,
                }));
            }
            if now >= deadline {
                return Ok(None);
            }
            // Wake up for a held main code's window too.
            let wake = self.add_on.deadline().map_or(deadline, |d| d.min(deadline));
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(line) => self.add_on.push(line, Instant::now()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.add_on.flush();
                    if let Some(line) = self.add_on.pop(now) {
                        let at = SystemTime::now();
                        let content = self.decoder.decode(&line, year_of(at));
                        return Ok(Some(Scan {
                            at,
                            monotonic: Instant::now(),
                            content,
                        }));
                    }
                    self.state.set(DeviceState::Gone);
                    return Err(ScannerError::Gone {
                        device: "channel".to_owned(),
                        attempts: 0,
                    });
                }
            }
        }
    }

    fn state(&self) -> DeviceState {
        self.state.get()
    }

    fn state_handle(&self) -> StateHandle {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scanner::ScanContent;

    #[test]
    fn lines_become_scans_and_dropping_the_feeder_ends_it() {
        let (mut scanner, feeder) = ChannelScanner::new(Decoder::default());
        let boxed: &mut dyn Scanner = &mut scanner;
        assert!(feeder.send("4006381333931"));
        let scan = boxed
            .next_scan(Duration::from_secs(5))
            .expect("open")
            .expect("scan");
        assert!(matches!(scan.content, ScanContent::Product(_)));
        assert!(
            boxed
                .next_scan(Duration::from_millis(1))
                .expect("open")
                .is_none()
        );
        drop(feeder);
        assert!(matches!(
            boxed.next_scan(Duration::from_secs(5)),
            Err(ScannerError::Gone { .. })
        ));
        assert_eq!(boxed.state(), DeviceState::Gone);
    }
}
