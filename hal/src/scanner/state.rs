//! A device's connection state, shared with the UI, the reopen backoff, and
//! [`Link`]: the open-or-reopen logic both scanner drivers share.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ScannerError;

/// Whether a scanner is usable, for the UI's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceState {
    /// Open and reading.
    Connected,
    /// Not open (never found yet, unplugged, or a read failed); the driver
    /// retries with backoff while the daemon keeps calling `next_scan`.
    Reconnecting {
        /// Failed open attempts since the device was last connected.
        attempts: u32,
    },
    /// The reopen budget ran out; the driver no longer tries.
    Gone,
}

/// A cheap, cloneable handle on a driver's [`DeviceState`], readable from
/// any thread. The driver's thread is the only writer.
#[derive(Debug, Clone)]
pub struct StateHandle(Arc<Mutex<DeviceState>>);

impl StateHandle {
    /// A handle starting in `state`.
    pub fn new(state: DeviceState) -> Self {
        Self(Arc::new(Mutex::new(state)))
    }

    /// The state now.
    pub fn get(&self) -> DeviceState {
        // A poisoned lock still holds a valid Copy state.
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set(&self, state: DeviceState) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *s != state {
            tracing::info!(from = ?*s, to = ?state, "scanner state");
            *s = state;
        }
    }
}

/// Reopen timing: exponential from `initial_ms`, capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Wait after the first failed attempt, in ms.
    pub initial_ms: u64,
    /// Longest wait between attempts, in ms.
    pub max_ms: u64,
    /// Failed attempts after which the device counts as gone (`None`: retry
    /// for ever, the default: a scanner may be plugged back any time).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 100,
            max_ms: 5_000,
            max_attempts: None,
        }
    }
}

/// Backoff state between reopen attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempts: u32,
    next_at: Option<Instant>,
}

impl Backoff {
    /// A backoff that allows an attempt at once.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            attempts: 0,
            next_at: None,
        }
    }

    /// Failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|t| now >= t)
    }

    /// Time left before the next attempt.
    pub fn wait(&self, now: Instant) -> Duration {
        self.next_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// Records a failed attempt and schedules the next.
    pub fn failed(&mut self, now: Instant) {
        self.attempts = self.attempts.saturating_add(1);
        let shift = self.attempts.saturating_sub(1).min(20);
        let ms = self
            .config
            .initial_ms
            .saturating_mul(1 << shift)
            .min(self.config.max_ms);
        self.next_at = Some(now + Duration::from_millis(ms));
    }

    /// Whether the attempt budget is spent.
    pub fn exhausted(&self) -> bool {
        self.config.max_attempts.is_some_and(|m| self.attempts >= m)
    }

    /// Back to the start after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.next_at = None;
    }
}

/// A device handle owned by one driver thread, opened on demand and
/// reopened with backoff after it is lost, its state published through a
/// [`StateHandle`].
#[derive(Debug)]
pub(crate) struct Link<D> {
    name: String,
    device: Option<D>,
    backoff: Backoff,
    state: StateHandle,
}

impl<D> Link<D> {
    /// A link to the device called `name` (for logs and errors), closed.
    pub(crate) fn new(name: String, backoff: BackoffConfig) -> Self {
        Self {
            name,
            device: None,
            backoff: Backoff::new(backoff),
            state: StateHandle::new(DeviceState::Reconnecting { attempts: 0 }),
        }
    }

    /// The open device, opening it with `open` when it is closed and the
    /// backoff allows. `Ok(None)`: not open now, try again after
    /// [`Self::wait`]. `Err(Gone)` once the attempt budget is spent.
    pub(crate) fn get_or_open<E: Display>(
        &mut self,
        now: Instant,
        open: impl FnOnce() -> Result<D, E>,
    ) -> Result<Option<&mut D>, ScannerError> {
        if self.device.is_none() {
            if self.backoff.exhausted() {
                self.state.set(DeviceState::Gone);
                return Err(ScannerError::Gone {
                    device: self.name.clone(),
                    attempts: self.backoff.attempts(),
                });
            }
            if !self.backoff.ready(now) {
                return Ok(None);
            }
            match open() {
                Ok(device) => {
                    tracing::info!(device = %self.name, "scanner open");
                    self.device = Some(device);
                    self.backoff.reset();
                    self.state.set(DeviceState::Connected);
                }
                Err(err) => {
                    self.backoff.failed(now);
                    tracing::debug!(device = %self.name, cause = %err, "scanner open failed");
                    let attempts = self.backoff.attempts();
                    self.state.set(DeviceState::Reconnecting { attempts });
                    return Ok(None);
                }
            }
        }
        Ok(self.device.as_mut())
    }

    /// Time until the next open attempt.
    pub(crate) fn wait(&self, now: Instant) -> Duration {
        self.backoff.wait(now)
    }

    /// The device failed (unplugged, hung up): close it; the next
    /// [`Self::get_or_open`] tries to reopen at once.
    pub(crate) fn lost(&mut self, cause: &dyn Display) {
        tracing::warn!(device = %self.name, cause = %cause, "scanner lost");
        self.device = None;
        self.state.set(DeviceState::Reconnecting { attempts: 0 });
    }

    /// The published state.
    pub(crate) fn state(&self) -> &StateHandle {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_runs_out() {
        let cfg = BackoffConfig {
            initial_ms: 100,
            max_ms: 350,
            max_attempts: Some(3),
        };
        let mut b = Backoff::new(cfg);
        let t0 = Instant::now();
        assert!(b.ready(t0));
        b.failed(t0);
        assert_eq!(b.wait(t0), Duration::from_millis(100));
        b.failed(t0);
        assert_eq!(b.wait(t0), Duration::from_millis(200));
        assert!(!b.exhausted());
        b.failed(t0);
        assert_eq!(b.wait(t0), Duration::from_millis(350));
        assert!(b.exhausted());
        assert!(b.ready(t0 + Duration::from_millis(350)));
        b.reset();
        assert_eq!((b.attempts(), b.exhausted()), (0, false));
    }

    #[test]
    fn link_reopens_after_loss_and_gives_up_after_the_budget() {
        let cfg = BackoffConfig {
            initial_ms: 1000,
            max_ms: 1000,
            max_attempts: Some(2),
        };
        let mut link: Link<u8> = Link::new("test".into(), cfg);
        let t0 = Instant::now();
        let fail = || Err::<u8, &str>("absent");
        assert!(link.get_or_open(t0, fail).expect("budget left").is_none());
        assert_eq!(
            link.state().get(),
            DeviceState::Reconnecting { attempts: 1 }
        );
        // Not before the backoff: open is not even called.
        let never = || -> Result<u8, &str> { panic!("opened too early") };
        assert!(link.get_or_open(t0, never).expect("budget left").is_none());
        let t1 = t0 + link.wait(t0);
        assert_eq!(
            link.get_or_open(t1, || Ok::<u8, &str>(7))
                .expect("open")
                .copied(),
            Some(7)
        );
        assert_eq!(link.state().get(), DeviceState::Connected);
        link.lost(&"unplugged");
        assert_eq!(
            link.state().get(),
            DeviceState::Reconnecting { attempts: 0 }
        );
        assert!(link.get_or_open(t1, fail).expect("budget left").is_none());
        let t2 = t1 + link.wait(t1);
        assert!(link.get_or_open(t2, fail).expect("budget left").is_none());
        assert!(matches!(
            link.get_or_open(t2 + link.wait(t2), fail),
            Err(ScannerError::Gone { attempts: 2, .. })
        ));
        assert_eq!(link.state().get(), DeviceState::Gone);
    }

    #[test]
    fn handle_is_shared() {
        let h = StateHandle::new(DeviceState::Reconnecting { attempts: 0 });
        let h2 = h.clone();
        h.set(DeviceState::Connected);
        assert_eq!(h2.get(), DeviceState::Connected);
    }
}
