//! Which pool to mine on: the highest-priority healthy pool, with a hold
//! time before returning to a higher-priority pool that recovered, so a
//! flapping primary does not bounce the miner around.
//!
//! Pure logic with an explicit clock, driven by the pool drivers (health
//! changes) and a periodic tick (hold timers).

use std::time::{Duration, Instant};

/// Health bookkeeping for the configured pools, in priority order.
#[derive(Debug, Clone)]
pub struct Failover {
    healthy_since: Vec<Option<Instant>>,
    active: Option<usize>,
    hold: Duration,
}

impl Failover {
    /// `pools` pools, none healthy yet; `hold` is the fail-back hold time.
    pub fn new(pools: usize, hold: Duration) -> Self {
        Failover {
            healthy_since: vec![None; pools],
            active: None,
            hold,
        }
    }

    /// Records that pool `index` became healthy or unhealthy at `now`.
    pub fn set_healthy(&mut self, index: usize, healthy: bool, now: Instant) {
        if let Some(slot) = self.healthy_since.get_mut(index) {
            match (healthy, *slot) {
                (true, None) => *slot = Some(now),
                (false, _) => *slot = None,
                (true, Some(_)) => {}
            }
        }
    }

    /// The pool mined on now.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Re-evaluates the choice at `now`; returns the (possibly new) active pool.
    pub fn decide(&mut self, now: Instant) -> Option<usize> {
        let healthy = |i: usize| self.healthy_since[i].is_some();
        let settled =
            |i: usize| self.healthy_since[i].is_some_and(|t| now.duration_since(t) >= self.hold);
        self.active = match self.active {
            // Stay on a healthy pool unless a higher-priority one has been
            // healthy for the whole hold time.
            Some(current) if healthy(current) => {
                Some((0..current).find(|&i| settled(i)).unwrap_or(current))
            }
            // Nothing (healthy) active: take the best healthy pool at once.
            _ => (0..self.healthy_since.len()).find(|&i| healthy(i)),
        };
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(60);

    #[test]
    fn scenario_table() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut f = Failover::new(3, HOLD);
        // (time, pool, healthy, expected active)
        let rows: &[(u64, usize, bool, Option<usize>)] = &[
            (0, 1, true, Some(1)),   // first healthy pool is taken at once
            (1, 0, true, Some(1)),   // primary back, but not yet for the hold time
            (30, 2, true, Some(1)),  // a lower-priority pool changes nothing
            (62, 2, true, Some(0)),  // primary healthy for 61 s: fail back
            (70, 0, false, Some(1)), // primary dies: next healthy at once
            (71, 1, false, Some(2)), // and the next
            (72, 2, false, None),    // nothing healthy
            (80, 0, true, Some(0)),  // anything healthy beats nothing
        ];
        for &(at, pool, healthy, expected) in rows {
            f.set_healthy(pool, healthy, s(at));
            assert_eq!(
                f.decide(s(at)),
                expected,
                "at {at}s pool {pool} healthy={healthy}"
            );
        }
    }

    #[test]
    fn flapping_primary_resets_the_hold() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut f = Failover::new(2, HOLD);
        f.set_healthy(1, true, s(0));
        f.set_healthy(0, true, s(0));
        assert_eq!(f.decide(s(0)), Some(0));
        f.set_healthy(0, false, s(10));
        assert_eq!(f.decide(s(10)), Some(1));
        f.set_healthy(0, true, s(20));
        assert_eq!(f.decide(s(50)), Some(1));
        f.set_healthy(0, false, s(55));
        f.set_healthy(0, true, s(56));
        assert_eq!(f.decide(s(100)), Some(1), "hold restarts after each flap");
        assert_eq!(f.decide(s(116)), Some(0));
    }

    #[test]
    fn unknown_pool_index_is_ignored() {
        let mut f = Failover::new(1, HOLD);
        f.set_healthy(7, true, Instant::now());
        assert_eq!(f.decide(Instant::now()), None);
    }
}
