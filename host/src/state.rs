//! The one state snapshot every front end reads: the status line,
//! `/api/v1`, the panel, the cgminer API and `/metrics`. Typed and
//! serde-serialisable; units are in the names and `null` means unknown.

use serde::Serialize;

use crate::device::{DeviceInfo, Telemetry};
use crate::policy::engine::EngineStatus;
use crate::status::Counters;

/// Everything the appliance shows about itself at one instant.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// Host version.
    pub version: &'static str,
    /// When it was taken, UTC ms (chart points of live events).
    pub at_ms: i64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Total hashrate over 10 s, H/s.
    pub hashrate_10s_hs: f64,
    /// Total hashrate over 1 min, H/s.
    pub hashrate_1m_hs: f64,
    /// Each device.
    pub devices: Vec<DeviceSnapshot>,
    /// Share counters and pools (in priority order, with their ids).
    pub shares: Counters,
    /// The mining decision: who made it and why, the override, every policy.
    pub energy: EngineStatus,
    /// One line saying what applies and why ("paused by …: …").
    pub decision: String,
    /// Power drawn, watts, if known.
    pub power_w: Option<f64>,
    /// Joules per terahash now (power over hashrate), if both are known.
    pub efficiency_j_th: Option<f64>,
    /// Where the power figure comes from (`rapl`, `model`, `external`).
    pub power_source: &'static str,
}

/// One device as the operator sees it: what it reports, with rates.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceSnapshot {
    /// What it is.
    pub info: DeviceInfo,
    /// Hashrate over 10 s, H/s.
    pub hashrate_10s_hs: f64,
    /// Hashrate over 10 s of each of `telemetry.units`, H/s, in order.
    pub unit_hashrates_10s_hs: Vec<f64>,
    /// What the device reports: per-unit counters, temperatures, fans,
    /// power, paused, power limit, tasks in flight.
    pub telemetry: Telemetry,
    /// Solutions reported.
    pub solutions: u64,
    /// Solutions the host's re-check refused.
    pub hardware_errors: u64,
}

impl Snapshot {
    /// "name: why" for every device that is not hashing as it should
    /// (status line, health check).
    pub fn device_problems(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter_map(|d| {
                d.telemetry
                    .problem
                    .as_ref()
                    .map(|p| format!("{}: {p}", d.info.name))
            })
            .collect()
    }
}
