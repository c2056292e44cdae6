//! Exponential reconnect back-off with jitter, so a fleet of appliances does
//! not hammer a pool in lockstep after an outage.

use std::time::Duration;

use rand::Rng;

/// Doubling delays between `min` and `max`, each randomised by ±25 %.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A back-off starting at `min` and never exceeding `max` (before jitter).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            current: min,
        }
    }

    /// The delay to wait now; the following one will be twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(jitter)
    }

    /// Back to the shortest delay (after a connection that worked).
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(100 * (1 << i.min(10))).min(Duration::from_secs(1));
            assert!(
                *d >= base.mul_f64(0.75) && *d <= base.mul_f64(1.25),
                "delay {i}: {d:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
