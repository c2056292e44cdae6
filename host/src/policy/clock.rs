//! The wall clock the engine and the signal hub read, injectable so that
//! tests (and replays) run on simulated time.

use std::sync::atomic::{AtomicI64, Ordering};

/// Source of "now" and of time-zone offsets.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_utc_ms(&self) -> i64;
    /// Offset of `tz` (IANA name) from UTC at `utc_ms`, in seconds. Unknown
    /// zones give 0 (UTC): a bad zone must not stop policies.
    fn offset_s(&self, tz: &str, utc_ms: i64) -> i32;
}

/// The system clock with the bundled IANA time-zone database.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    fn offset_s(&self, tz: &str, utc_ms: i64) -> i32 {
        tz_offset_s(tz, utc_ms)
    }
}

/// Offset of `tz` from UTC at `utc_ms` in seconds (DST included), from the
/// bundled time-zone database; 0 for unknown zones or out-of-range times.
pub fn tz_offset_s(tz: &str, utc_ms: i64) -> i32 {
    let Ok(zone) = jiff::tz::TimeZone::get(tz) else {
        return 0;
    };
    match jiff::Timestamp::from_millisecond(utc_ms) {
        Ok(ts) => zone.to_offset(ts).seconds(),
        Err(_) => 0,
    }
}

/// Whether `tz` names a zone in the bundled database (for config checks).
pub fn tz_known(tz: &str) -> bool {
    jiff::tz::TimeZone::get(tz).is_ok()
}

/// A clock that only moves when told to, for tests on simulated time.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `utc_ms`.
    pub fn new(utc_ms: i64) -> Self {
        ManualClock {
            now: AtomicI64::new(utc_ms),
        }
    }

    /// Moves the clock forward (or back, with a negative step).
    pub fn advance_ms(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set_ms(&self, utc_ms: i64) {
        self.now.store(utc_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_utc_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn offset_s(&self, tz: &str, utc_ms: i64) -> i32 {
        tz_offset_s(tz, utc_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berlin_offsets_follow_dst() {
        // 2025-01-15 12:00 UTC: CET (+1 h); 2025-07-15 12:00 UTC: CEST (+2 h).
        assert_eq!(tz_offset_s("Europe/Berlin", 1_736_942_400_000), 3600);
        assert_eq!(tz_offset_s("Europe/Berlin", 1_752_580_800_000), 7200);
        assert_eq!(tz_offset_s("UTC", 1_752_580_800_000), 0);
        assert_eq!(tz_offset_s("Not/AZone", 1_752_580_800_000), 0);
        assert!(tz_known("America/New_York"));
        assert!(!tz_known("Not/AZone"));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        assert_eq!(c.now_utc_ms(), 1000);
        c.advance_ms(500);
        assert_eq!(c.now_utc_ms(), 1500);
        c.set_ms(7);
        assert_eq!(c.now_utc_ms(), 7);
    }
}
