//! Is this boot healthy? The question an A/B update asks before it marks
//! the new slot good: the panel is up, the devices hash (or say why not),
//! a pool is connected (or the reason is known). The running host writes
//! its answer to `state_dir/health.json` every few seconds (atomically);
//! `hashwatt health --wait` reads it from the boot-check unit, so a host
//! that crashes or hangs at start never passes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use crate::control::Handle;
use crate::policy::Mode;

/// How often the running host writes its answer.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// An answer older than this is from a host that stopped answering.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// The host's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// When it was written, Unix seconds.
    pub at_unix: u64,
    /// All three checks hold.
    pub healthy: bool,
    /// The panel: listening (or switched off in the configuration).
    pub panel: Check,
    /// The devices: hashing, or a stated reason (a policy's pause, a
    /// device's problem).
    pub devices: Check,
    /// The pools: one connected, or the reason none is.
    pub pool: Check,
}

/// One check and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Whether it holds.
    pub ok: bool,
    /// In the operator's words.
    pub detail: String,
}

fn check(ok: bool, detail: impl Into<String>) -> Check {
    Check {
        ok,
        detail: detail.into(),
    }
}

/// Where the answer lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("health.json")
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The answer for the appliance behind `handle` right now.
pub fn assess(handle: &Handle, panel_up: bool, panel_configured: bool) -> Health {
    let s = handle.snapshot();
    let panel = match (panel_configured, panel_up) {
        (false, _) => check(true, "switched off in the configuration"),
        (true, true) => check(true, "listening"),
        (true, false) => check(false, "configured but not listening"),
    };
    let problems = s.device_problems();
    let devices = if s.devices.is_empty() {
        check(false, "no hashing device")
    } else if s.hashrate_10s_hs > 0.0 {
        check(true, format!("hashing at {:.0} H/s", s.hashrate_10s_hs))
    } else if matches!(s.energy.verdict.mode, Mode::Pause) {
        check(true, format!("paused: {}", s.energy.verdict))
    } else if !problems.is_empty() {
        check(true, format!("not hashing: {}", problems.join("; ")))
    } else {
        check(false, "not hashing, and no reason is known")
    };
    let c = &s.shares;
    let pool = match c.active_pool.and_then(|i| c.pools.get(i)) {
        Some(p) => check(
            true,
            match &p.session {
                Some(session) => format!("connected to {} ({})", p.url, session.summary()),
                None => format!("connected to {}", p.url),
            },
        ),
        None => {
            let reasons: Vec<String> = c
                .pools
                .iter()
                .filter_map(|p| {
                    p.last_disconnect
                        .as_ref()
                        .or(p.disabled.as_ref())
                        .or(p.plugin_error.as_ref())
                        .map(|r| format!("{}: {r}", p.url))
                })
                .collect();
            if reasons.is_empty() {
                check(false, "no pool connected, and no reason is known")
            } else {
                check(true, format!("no pool connected: {}", reasons.join("; ")))
            }
        }
    };
    Health {
        at_unix: now_unix(),
        healthy: panel.ok && devices.ok && pool.ok,
        panel,
        devices,
        pool,
    }
}

/// Writes the answer every [`INTERVAL`] until shutdown.
pub async fn publish(
    handle: Handle,
    state_dir: PathBuf,
    panel_up: bool,
    panel_configured: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let file = path(&state_dir);
    let mut tick = tokio::time::interval(INTERVAL);
    let mut failed = false;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        let mut h = assess(&handle, panel_up, panel_configured);
        if stopping {
            // Stopped is not healthy, whatever it was a moment ago.
            h.healthy = false;
            h.panel = check(false, "hashwatt stopped");
        }
        let Ok(bytes) = serde_json::to_vec_pretty(&h) else {
            continue;
        };
        let f = file.clone();
        let r = tokio::task::spawn_blocking(move || hashwatt_state::atomic_write(&f, &bytes)).await;
        match r {
            Ok(Ok(())) => failed = false,
            Ok(Err(e)) if !failed => {
                failed = true;
                warn!(path = %file.display(), "cannot write the health answer: {e}");
            }
            _ => {}
        }
        if stopping {
            return;
        }
    }
}

/// Reads the answer; `Err` says why there is none that can be trusted.
pub fn read(state_dir: &Path) -> Result<Health, String> {
    let file = path(state_dir);
    let text = std::fs::read(&file).map_err(|e| {
        format!(
            "no health answer at {} ({e}): is hashwatt running?",
            file.display()
        )
    })?;
    let h: Health = serde_json::from_slice(&text)
        .map_err(|e| format!("unreadable health answer at {}: {e}", file.display()))?;
    let age = now_unix().saturating_sub(h.at_unix);
    if age > STALE_AFTER.as_secs() {
        return Err(format!(
            "the health answer is {age} s old: hashwatt stopped answering"
        ));
    }
    Ok(h)
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = |c: &Check| if c.ok { "ok" } else { "FAIL" };
        write!(
            f,
            "{}: panel {} ({}); devices {} ({}); pool {} ({})",
            if self.healthy { "healthy" } else { "unhealthy" },
            mark(&self.panel),
            self.panel.detail,
            mark(&self.devices),
            self.devices.detail,
            mark(&self.pool),
            self.pool.detail
        )
    }
}
