//! Reconnect backoff: exponential with full jitter, bounded, so a fleet
//! that lost the broker at the same moment does not come back at the same
//! moment. Pure functions of (attempt, random draw, clock) so they are
//! tested without sleeping.

use std::time::{Duration, Instant};

/// A connection that stayed up at least this long resets the backoff; one
/// that dropped sooner counts as another failed attempt (a broker that
/// accepts and then drops us must not be hammered at the base delay).
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Full jitter: a delay drawn uniformly from `[0, min(max, base * 2^attempt)]`,
/// `unit` being the draw in `[0, 1)` (values outside are clamped).
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let ceiling = base
        .checked_mul(2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(unit)
}

/// The reconnect schedule of one link.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A schedule starting at `base`, never longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
            connected_at: None,
        }
    }

    /// The broker accepted us (CONNACK) at `now`.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Failed attempts since the last stable connection.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The link just failed at `now`: how long to wait before the next
    /// attempt, `unit` being a uniform draw in `[0, 1)`.
    pub fn next_delay(&mut self, now: Instant, unit: f64) -> Duration {
        if let Some(up_since) = self.connected_at.take()
            && now.saturating_duration_since(up_since) >= STABLE_AFTER
        {
            self.attempt = 0;
        }
        let d = backoff_delay(self.attempt, self.base, self.max, unit);
        self.attempt = self.attempt.saturating_add(1);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn ceiling_doubles_then_caps() {
        let top = |a| backoff_delay(a, BASE, MAX, 1.0);
        assert_eq!(top(0), Duration::from_millis(500));
        assert_eq!(top(1), Duration::from_secs(1));
        assert_eq!(top(3), Duration::from_secs(4));
        assert_eq!(top(7), Duration::from_secs(60)); // 64 s capped
        assert_eq!(top(40), MAX); // no overflow far out
        assert_eq!(top(u32::MAX), MAX);
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        assert_eq!(backoff_delay(4, BASE, MAX, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(4, BASE, MAX, 0.5), Duration::from_secs(4));
        // Out-of-range draws are clamped, never exceed the bound.
        assert_eq!(backoff_delay(4, BASE, MAX, 7.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(4, BASE, MAX, -1.0), Duration::ZERO);
        assert_eq!(backoff_delay(4, BASE, MAX, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn jittered_delays_of_a_fleet_spread_out() {
        // 1,000 carts reconnecting after the same outage, attempt 6 (32 s
        // ceiling): the draws spread over the window instead of one instant.
        let delays: Vec<Duration> = (0..1000)
            .map(|i| backoff_delay(6, BASE, MAX, (i as f64 + 0.5) / 1000.0))
            .collect();
        let early = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(8))
            .count();
        let late = delays
            .iter()
            .filter(|d| **d > Duration::from_secs(24))
            .count();
        assert!((200..300).contains(&early), "{early}");
        assert!((200..300).contains(&late), "{late}");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(32)));
    }

    #[test]
    fn schedule_grows_on_repeated_failures_in_virtual_time() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BASE, MAX);
        let mut now = t0;
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            let d = b.next_delay(now, 1.0);
            ceilings.push(d);
            now += d;
        }
        assert_eq!(ceilings[0], BASE);
        assert_eq!(ceilings[1], BASE * 2);
        assert_eq!(ceilings[8], MAX);
        assert_eq!(b.attempt(), 9);
    }

    #[test]
    fn short_lived_connection_does_not_reset_backoff() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BASE, MAX);
        for _ in 0..4 {
            b.next_delay(t0, 1.0);
        }
        b.on_connected(t0);
        // Dropped 2 s later: still escalating.
        let d = b.next_delay(t0 + Duration::from_secs(2), 1.0);
        assert_eq!(d, BASE * 16);
    }

    #[test]
    fn stable_connection_resets_backoff() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BASE, MAX);
        for _ in 0..6 {
            b.next_delay(t0, 1.0);
        }
        b.on_connected(t0);
        let d = b.next_delay(t0 + STABLE_AFTER, 1.0);
        assert_eq!(d, BASE);
        assert_eq!(b.attempt(), 1);
    }

    #[test]
    fn max_below_base_is_raised_to_base() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.next_delay(Instant::now(), 1.0), Duration::from_secs(2));
    }
}
