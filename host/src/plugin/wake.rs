//! When the host ticks a pool plugin that asked for it with `wake-at`
//! (`hashwatt:pool@0.2.0`): the clamp between what a plugin may ask and
//! what the host does. Only `std`, so the host's fuzz target
//! (`host/fuzz/fuzz_targets/actions.rs`) compiles this file as it is.

use std::time::Duration;

/// The host never ticks a plugin sooner than this after the call that asked
/// (WIT `action.wake-at`), so a plugin asking for "now" again and again
/// costs at most a hundred calls a second.
pub const MIN_WAKE_DELAY: Duration = Duration::from_millis(10);

/// The host ticks a plugin at the latest this long after the call that
/// asked, however far ahead the request was; the plugin asks again then.
/// Keeps every deadline representable as an instant.
pub const MAX_WAKE_DELAY: Duration = Duration::from_secs(3600);

/// How long to wait, from `now_ms`, before the `tick` a plugin asked for
/// at `wake_at_ms` (both on the clock the host passes as `now-ms`): the
/// time left, clamped into [[`MIN_WAKE_DELAY`], [`MAX_WAKE_DELAY`]]. A
/// time already past (or a clock mismatch in the plugin) gets the minimum,
/// a time absurdly far ahead the maximum; any pair of `u64`s is safe.
pub fn wake_delay(wake_at_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(wake_at_ms.saturating_sub(now_ms)).clamp(MIN_WAKE_DELAY, MAX_WAKE_DELAY)
}
