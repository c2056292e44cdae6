//! Rate limits for what a peer can make the host repeat: share submits per
//! pool and log lines per kind. Both take the time as an argument, so they
//! are exact under test clocks.

use std::time::{Duration, Instant};

/// A token bucket: `rate` events a second on average, bursts of `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Takes a token at `now`, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / self.rate).max(0.0),
            ))
        }
    }
}

/// Lets the first `burst` lines of an interval through and counts the rest,
/// so a peer repeating an error cannot flood the log.
#[derive(Clone, Debug)]
pub struct LogLimiter {
    interval: Duration,
    burst: u32,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum LogDecision {
    /// Write it; `suppressed` lines were left out before it (write a summary first).
    Write {
        /// Lines left out since the last written one.
        suppressed: u64,
    },
    /// Leave it out (counted).
    Suppress,
}

impl LogLimiter {
    /// At most `burst` lines per `interval`.
    pub fn new(interval: Duration, burst: u32) -> Self {
        LogLimiter {
            interval,
            burst,
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Decides about one line at `now`.
    pub fn check(&mut self, now: Instant) -> LogDecision {
        let fresh = self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= self.interval);
        if fresh {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.burst {
            self.in_window += 1;
            LogDecision::Write {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            LogDecision::Suppress
        }
    }

    /// Lines left out and not yet summarised; resets the count.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0);
        for _ in 0..5 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // A long quiet spell refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        let n = (0..100).filter(|_| b.take(later).is_ok()).count();
        assert_eq!(n, 5);
    }

    #[test]
    fn log_limiter_counts_what_it_leaves_out() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10), 2);
        assert_eq!(l.check(t0), LogDecision::Write { suppressed: 0 });
        assert_eq!(l.check(t0), LogDecision::Write { suppressed: 0 });
        assert_eq!(l.check(t0), LogDecision::Suppress);
        assert_eq!(l.check(t0), LogDecision::Suppress);
        assert_eq!(
            l.check(t0 + Duration::from_secs(10)),
            LogDecision::Write { suppressed: 2 }
        );
    }
}
