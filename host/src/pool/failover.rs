//! Which pool to mine on: the highest-priority healthy pool, with a hold
//! time before returning to a higher-priority pool that recovered, so a
//! flapping primary does not bounce the miner around.
//!
//! Pure logic with an explicit clock, driven by the pool drivers (health
//! changes) and a periodic tick (hold timers).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Health bookkeeping for the configured pools (by id), in priority order.
#[derive(Debug, Clone)]
pub struct Failover {
    order: Vec<u64>,
    healthy_since: HashMap<u64, Instant>,
    active: Option<u64>,
    hold: Duration,
    /// A pool the operator just put first: taken as soon as it is healthy,
    /// without the hold, which guards against a recovering pool, not
    /// against the operator's choice.
    chosen: Option<u64>,
}

impl Failover {
    /// Pools `0..pools` (ids = positions), none healthy yet; `hold` is the
    /// fail-back hold time.
    pub fn new(pools: usize, hold: Duration) -> Self {
        Failover {
            order: (0..pools as u64).collect(),
            healthy_since: HashMap::new(),
            active: None,
            hold,
            chosen: None,
        }
    }

    /// The pools mined on, in priority order (ids). Health is kept for
    /// every pool, listed or not, so a pool that reports before it is listed
    /// (or while disabled) is not lost; [`Failover::forget`] drops a removed one.
    /// A new first pool is the operator's choice: it is mined on as soon as
    /// it is healthy, without waiting for the fail-back hold.
    pub fn set_order(&mut self, order: Vec<u64>) {
        if self.active.is_some_and(|a| !order.contains(&a)) {
            self.active = None;
        }
        let first = order.first().copied();
        if first != self.order.first().copied() {
            self.chosen = first;
        }
        self.order = order;
    }

    /// The pools in priority order.
    pub fn order(&self) -> &[u64] {
        &self.order
    }

    /// Forgets a removed pool.
    pub fn forget(&mut self, id: u64) {
        self.healthy_since.remove(&id);
    }

    /// Records that pool `id` became healthy or unhealthy at `now`.
    pub fn set_healthy(&mut self, id: u64, healthy: bool, now: Instant) {
        if healthy {
            self.healthy_since.entry(id).or_insert(now);
        } else {
            self.healthy_since.remove(&id);
        }
    }

    /// The pool mined on now.
    pub fn active(&self) -> Option<u64> {
        self.active
    }

    /// Re-evaluates the choice at `now`; returns the (possibly new) active pool.
    pub fn decide(&mut self, now: Instant) -> Option<u64> {
        let healthy = |id: u64| self.healthy_since.contains_key(&id);
        let settled = |id: u64| {
            self.healthy_since
                .get(&id)
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.hold)
        };
        let position = |id: u64| self.order.iter().position(|&p| p == id);
        if let Some(c) = self.chosen {
            if !self.order.contains(&c) {
                self.chosen = None;
            } else if healthy(c) {
                self.chosen = None;
                self.active = Some(c);
                return self.active;
            }
        }
        self.active = match self.active.and_then(|a| position(a).map(|p| (a, p))) {
            // Stay on a healthy pool unless a higher-priority one has been
            // healthy for the whole hold time.
            Some((current, pos)) if healthy(current) => Some(
                self.order[..pos]
                    .iter()
                    .copied()
                    .find(|&i| settled(i))
                    .unwrap_or(current),
            ),
            // Nothing (healthy) active: take the best healthy pool at once.
            _ => self.order.iter().copied().find(|&i| healthy(i)),
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
        let rows: &[(u64, u64, bool, Option<u64>)] = &[
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
    fn reordering_keeps_health_and_forgets_removed_pools() {
        let t0 = Instant::now();
        let mut f = Failover::new(2, HOLD);
        f.set_healthy(0, true, t0);
        f.set_healthy(1, true, t0);
        assert_eq!(f.decide(t0), Some(0));
        f.set_order(vec![1, 0]);
        assert_eq!(
            f.decide(t0 + HOLD),
            Some(1),
            "the new first pool, healthy for the hold"
        );
        // Pool 0 put first again by the operator: at once, no hold, even
        // though it has just become healthy.
        f.set_healthy(0, false, t0 + HOLD);
        f.set_healthy(0, true, t0 + HOLD * 2);
        f.set_order(vec![0, 1]);
        assert_eq!(
            f.decide(t0 + HOLD * 2),
            Some(0),
            "the operator's choice needs no hold"
        );
        // Once there, a flap of it is a recovery again: the hold applies.
        f.set_healthy(0, false, t0 + HOLD * 3);
        assert_eq!(f.decide(t0 + HOLD * 3), Some(1));
        f.set_healthy(0, true, t0 + HOLD * 3);
        assert_eq!(
            f.decide(t0 + HOLD * 3),
            Some(1),
            "recovering: the hold again"
        );
        assert_eq!(f.decide(t0 + HOLD * 4), Some(0));
        f.set_order(vec![1, 0]);
        assert_eq!(f.decide(t0 + HOLD * 4), Some(1));
        f.set_order(vec![0]);
        f.forget(1);
        assert_eq!(f.decide(t0 + HOLD), Some(0), "pool 1 was removed");
        f.set_healthy(5, true, t0);
        f.set_order(vec![5, 0]);
        assert_eq!(
            f.decide(t0 + HOLD),
            Some(5),
            "health reported before listing counts"
        );
    }

    #[test]
    fn unknown_pool_index_is_ignored() {
        let mut f = Failover::new(1, HOLD);
        f.set_healthy(7, true, Instant::now());
        assert_eq!(f.decide(Instant::now()), None);
    }
}
