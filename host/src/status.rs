//! What the appliance is doing right now: hashrate, share counters, the
//! active pool. Shared by the pool driver, the miner and anything that shows
//! status (log line today; REST API and panel later).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Share counters and pool state, updated off the hashing hot path.
#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Counters>,
}

/// A consistent snapshot of the counters.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// Shares the pool accepted.
    pub accepted: u64,
    /// Shares the pool rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Shares found for jobs that were already cleared; never submitted.
    pub stale: u64,
    /// Nonces a backend reported that failed the independent re-check.
    pub hardware_errors: u64,
    /// Shares dropped because they came faster than the per-pool submit
    /// rate (a pool with an absurdly low difficulty, a flooding device).
    pub throttled: u64,
    /// Shares submitted and not yet answered (all pools).
    pub in_flight: u64,
    /// Why the last connection ended.
    pub last_disconnect: Option<String>,
    /// Connections made so far (first connect included).
    pub connects: u64,
    /// Jobs received.
    pub jobs: u64,
    /// Plugin actions the host refused (invalid jobs, targets…).
    pub refused_actions: u64,
    /// The latest reason an action was refused.
    pub last_refused_action: Option<String>,
    /// Block candidates found (hash met the network target).
    pub blocks: u64,
    /// The pool mined on now (position in `pools`).
    pub active_pool: Option<usize>,
    /// The id of the pool mined on now.
    pub active_pool_id: Option<u64>,
    /// Per-pool state, in priority order.
    pub pools: Vec<PoolStatus>,
    /// Per-device counters, in device order.
    pub devices: Vec<DeviceCounters>,
}

/// What the miner counted for one device.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct DeviceCounters {
    /// The device name.
    pub name: String,
    /// Solutions it reported.
    pub solutions: u64,
    /// Solutions the host's re-check refused.
    pub hardware_errors: u64,
}

/// Connection state of one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    /// Not connected yet, or reconnecting.
    #[default]
    Connecting,
    /// Connected and has work: can be mined on.
    Healthy,
    /// Its plugin failed too often and was disabled (see `disabled`).
    Disabled,
    /// The operator disabled it.
    Off,
}

/// What the operator sees about one pool.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// Stable identity (survives reordering).
    pub id: u64,
    /// The configured URL.
    pub url: String,
    /// The worker name.
    pub user: String,
    /// Connection state.
    pub state: PoolState,
    /// Shares it accepted.
    pub accepted: u64,
    /// Shares it rejected.
    pub rejected: u64,
    /// Its shares found stale (job gone before submission).
    pub stale: u64,
    /// Its shares dropped by the submit rate limit.
    pub throttled: u64,
    /// Its shares submitted and not yet answered.
    pub in_flight: u64,
    /// Connections made.
    pub connects: u64,
    /// Why the last connection ended.
    pub last_disconnect: Option<String>,
    /// Times its plugin instance was restarted after a failure.
    pub plugin_restarts: u64,
    /// The latest plugin failure (trap, timeout, limit), if any.
    pub plugin_error: Option<String>,
    /// Why the plugin was disabled, if it was.
    pub disabled: Option<String>,
    /// The plugin running for this pool (`name` or `name@version`).
    pub plugin: String,
    /// What the current connection negotiated, as its plugin reported it
    /// (WIT `status.report-session`); `None` while disconnected and for
    /// plugins that do not report (contract 0.2.0).
    pub session: Option<SessionInfo>,
}

/// What a pool session negotiated, as its plugin reported it: shown beside
/// the pool so the operator can tell a Stratum V2 extended channel to an
/// authenticated pool from a plain Stratum V1 connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Protocol, e.g. `Stratum V2`.
    pub protocol: String,
    /// Channel or subscription kind, e.g. `extended`.
    pub channel: Option<String>,
    /// Whether the connection is encrypted.
    pub encrypted: bool,
    /// The identity the plugin verified the pool by, e.g. an authority
    /// key's fingerprint.
    pub authority: Option<String>,
    /// Further (label, value) facts, in the plugin's order.
    pub details: Vec<(String, String)>,
}

impl SessionInfo {
    /// The essentials in one phrase: `Stratum V2, extended channel,
    /// encrypted, authority 3f:a2:…`.
    pub fn summary(&self) -> String {
        let mut s = self.protocol.clone();
        if let Some(c) = &self.channel {
            s.push_str(&format!(", {c} channel"));
        }
        s.push_str(if self.encrypted {
            ", encrypted"
        } else {
            ", unencrypted"
        });
        if let Some(a) = &self.authority {
            s.push_str(&format!(", authority {a}"));
        }
        s
    }
}

impl std::fmt::Display for SessionInfo {
    /// [`SessionInfo::summary`] and then every detail, for the log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())?;
        for (label, value) in &self.details {
            write!(f, ", {label} {value}")?;
        }
        Ok(())
    }
}

impl Counters {
    /// Total rejected shares.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

impl Status {
    /// Status for `devices` (their names), no pools yet.
    pub fn new(devices: &[String]) -> Self {
        let counters = Counters {
            devices: devices
                .iter()
                .map(|n| DeviceCounters {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Status {
            inner: Mutex::new(counters),
        }
    }

    /// Sets the pools shown, in priority order, keeping the counters of
    /// pools that stay (by id).
    pub fn set_pools(&self, pools: &[(u64, String, String)]) {
        self.update(|c| {
            let old = std::mem::take(&mut c.pools);
            c.pools = pools
                .iter()
                .map(|(id, url, user)| {
                    let mut p = old
                        .iter()
                        .find(|p| p.id == *id)
                        .cloned()
                        .unwrap_or_default();
                    p.id = *id;
                    p.url = url.clone();
                    p.user = user.clone();
                    p
                })
                .collect();
            c.in_flight = c.pools.iter().map(|p| p.in_flight).sum();
        });
    }

    /// Shows pool `id` (at the end) if it is not shown yet, so counters a
    /// new driver reports are never lost; [`Status::set_pools`] orders it.
    pub fn ensure_pool(&self, id: u64, url: &str, user: &str) {
        self.update(|c| {
            if !c.pools.iter().any(|p| p.id == id) {
                c.pools.push(PoolStatus {
                    id,
                    url: url.to_string(),
                    user: user.to_string(),
                    ..Default::default()
                });
            }
        });
    }

    /// Applies `f` to pool `id`'s status (if it is shown).
    pub fn update_pool(&self, id: u64, f: impl FnOnce(&mut PoolStatus)) {
        self.update(|c| {
            if let Some(p) = c.pools.iter_mut().find(|p| p.id == id) {
                f(p);
            }
            c.in_flight = c.pools.iter().map(|p| p.in_flight).sum();
        });
    }

    /// Applies `f` to device `index`'s counters (if it exists).
    pub fn update_device(&self, index: usize, f: impl FnOnce(&mut DeviceCounters)) {
        self.update(|c| {
            if let Some(d) = c.devices.get_mut(index) {
                f(d);
            }
        });
    }

    /// The position of pool `id` in priority order.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pools
            .iter()
            .position(|p| p.id == id)
    }

    /// Applies `f` to the counters.
    pub fn update(&self, f: impl FnOnce(&mut Counters)) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> Counters {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Sliding-window hashrate from periodic samples of a monotonic hash counter.
#[derive(Debug)]
pub struct HashrateMeter {
    samples: VecDeque<(Instant, u64)>,
    keep: Duration,
}

impl HashrateMeter {
    /// A meter that can average over windows up to `keep`.
    pub fn new(keep: Duration) -> Self {
        HashrateMeter {
            samples: VecDeque::new(),
            keep,
        }
    }

    /// Records the counter value `hashes` at time `at`.
    pub fn sample(&mut self, at: Instant, hashes: u64) {
        self.samples.push_back((at, hashes));
        while let Some(&(t, _)) = self.samples.front() {
            if at.duration_since(t) > self.keep + Duration::from_secs(1) {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Average hashes per second over the last `window` (or as much of it as was sampled).
    pub fn rate(&self, window: Duration) -> f64 {
        let Some(&(now, last)) = self.samples.back() else {
            return 0.0;
        };
        let first = self
            .samples
            .iter()
            .find(|(t, _)| now.duration_since(*t) <= window)
            .copied()
            .unwrap_or((now, last));
        let secs = now.duration_since(first.0).as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            last.saturating_sub(first.1) as f64 / secs
        }
    }
}

/// Formats a hashrate with an SI prefix (`34.1 MH/s`).
pub fn format_hashrate(hps: f64) -> String {
    let units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
    let mut v = hps;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_averages_over_windows() {
        let mut m = HashrateMeter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for s in 0..=60u64 {
            // 1 MH/s for the first 50 s, then 2 MH/s.
            let h = if s <= 50 {
                s * 1_000_000
            } else {
                50_000_000 + (s - 50) * 2_000_000
            };
            m.sample(t0 + Duration::from_secs(s), h);
        }
        assert!((m.rate(Duration::from_secs(10)) - 2e6).abs() < 1.0);
        let one_min = m.rate(Duration::from_secs(60));
        assert!((one_min - 70e6 / 60.0).abs() < 1.0, "{one_min}");
    }

    #[test]
    fn hashrate_format() {
        assert_eq!(format_hashrate(34_100_000.0), "34.10 MH/s");
        assert_eq!(format_hashrate(12.0), "12.00 H/s");
    }
}
