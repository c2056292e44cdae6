//! The one state snapshot every front end reads: the status line,
//! `/api/status`, and the panel, cgminer API and metrics to come. Typed and
//! serde-serialisable; units are in the names and `null` means unknown.

use serde::Serialize;

use crate::device::{DeviceInfo, FanReading, TempReading};
use crate::policy::engine::EngineStatus;
use crate::status::Counters;

/// Everything the appliance shows about itself at one instant.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Host version.
    pub version: &'static str,
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
    /// Where the power figure comes from (`rapl`, `model`, `external`).
    pub power_source: &'static str,
}

/// One device as the operator sees it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceSnapshot {
    /// What it is.
    pub info: DeviceInfo,
    /// Hashrate over 10 s, H/s.
    pub hashrate_10s_hs: f64,
    /// Per thread or chip.
    pub units: Vec<UnitSnapshot>,
    /// Temperatures.
    pub temperatures: Vec<TempReading>,
    /// Fans.
    pub fans: Vec<FanReading>,
    /// Draw, watts, where the device measures it.
    pub power_w: Option<f64>,
    /// Paused by the operator or a policy.
    pub paused: bool,
    /// Power limit in force, watts.
    pub power_limit_w: Option<f64>,
    /// Tasks in flight.
    pub tasks_in_flight: usize,
    /// Solutions reported.
    pub solutions: u64,
    /// Solutions the host's re-check refused.
    pub hardware_errors: u64,
}

/// One thread or chip.
#[derive(Clone, Debug, Serialize)]
pub struct UnitSnapshot {
    /// Name within the device.
    pub name: String,
    /// Hashrate over 10 s, H/s.
    pub hashrate_10s_hs: f64,
    /// Results refused by the host's re-check, where the device knows.
    pub hardware_errors: u64,
}
