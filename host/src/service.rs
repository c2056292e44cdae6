//! Talking to the init system with systemd's notify protocol: "ready" once
//! the appliance runs, a watchdog ping while its control plane answers,
//! "stopping" at shutdown. A hung host is then restarted by the init
//! instead of sitting there not mining. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::control::Handle;

/// Tells the init system the appliance is up, with a one-line status.
pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells the init system a clean stop has begun (so it waits for it).
pub fn stopping() {
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        warn!("cannot notify the init system: {e}");
    }
}

/// The watchdog period the service manager asked for, if any.
pub fn watchdog_period() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its period for as long as a snapshot of the
/// control plane can be taken (a wedged lock or runtime stops the pings,
/// and the init system restarts the service). Ends at shutdown.
pub async fn watchdog(handle: Handle, period: Duration, mut shutdown: watch::Receiver<bool>) {
    let every = (period / 2).max(Duration::from_millis(100));
    info!(period_ms = period.as_millis() as u64, "init watchdog armed");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let uptime = handle.snapshot().uptime_secs;
        debug!(uptime, "watchdog ping");
        notify(&[sd_notify::NotifyState::Watchdog]);
    }
}
