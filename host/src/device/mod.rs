//! Hashing devices: the CPU workers today, BM13xx ASIC chains next, a
//! simulated multi-task device in the tests — all behind one interface.
//!
//! The miner hands a device [`Task`]s: a validated job, the part of the
//! search space the device may roll (extranonce2 values, version bits,
//! ntime seconds) and the share target. A device may keep several tasks in
//! flight (an ASIC chain does; the CPU mines the newest one) and reports
//! [`Solution`]s that carry everything needed to rebuild the header. The
//! miner is the only judge of what a solution is worth: it rebuilds the
//! header, re-hashes it with the host's own SHA-256d and decides staleness.
//!
//! Devices also report [`Telemetry`] (hash counters per thread or chip,
//! hardware errors, temperatures, fans, power) and take [`Control`]s
//! (pause, resume, a power limit where supported), so energy policies and
//! the energy meter work the same on any hardware.

pub mod asic;
pub mod asic_bench;
pub mod asic_emulated;
pub mod cpu;
pub mod hwmon;
pub mod sim;

use std::sync::Arc;

pub use hashwatt_work::Extranonce2Range;
use hashwatt_work::{Job, Target};
use serde::Serialize;

/// Everything a device needs to mine one job on its own.
#[derive(Clone, Debug)]
pub struct Task {
    /// Miner-wide task id, quoted back in every [`Solution`].
    pub id: u64,
    /// The validated job.
    pub job: Job,
    /// The extranonce2 values this device may use (disjoint from every
    /// other device's); empty for work whose merkle root the pool fixed.
    pub extranonce2: Extranonce2Range,
    /// The rolled-version indices (see [`hashwatt_work::rolled_version`])
    /// this device may use with the job's `version_mask`; the whole space
    /// unless devices have to share a fixed merkle root.
    pub versions: std::ops::Range<u64>,
    /// Seconds the device may add to the job's ntime (0: ntime is fixed).
    pub ntime_roll: u32,
    /// Hashes must meet this target to be reported.
    pub share_target: Target,
}

impl Task {
    /// The header version for rolled-version index `index` of this task's
    /// job: rolled versions first (index 0 gives the first rolled one), the
    /// job's own version last, so every device tries new headers first.
    pub fn version(&self, index: u64) -> u32 {
        let space = hashwatt_work::rolling_space(self.job.version_mask());
        hashwatt_work::rolled_version(
            self.job.version(),
            self.job.version_mask(),
            (index + 1) % space,
        )
    }
}

/// What a device found: enough to rebuild the header, never a bare nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Solution {
    /// The [`Task::id`] it solves.
    pub task: u64,
    /// The extranonce2 used (empty for fixed-root work).
    pub extranonce2: Vec<u8>,
    /// The full header version used.
    pub version: u32,
    /// The ntime used.
    pub ntime: u32,
    /// The nonce (header bytes 76..80 as a little-endian number).
    pub nonce: u32,
}

/// Where a device reports solutions; implemented by the miner. Called on
/// the device's own threads: must return quickly and never block.
pub trait SolutionSink: Send + Sync {
    /// Device `device` (its index) found `solution`.
    fn solution(&self, device: usize, solution: Solution);
}

/// What a device is and can do; fixed for its lifetime.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// Short unique name shown to the operator (`cpu`, `sim0`, `bm1370-0`).
    pub name: String,
    /// Kind of hardware (`cpu`, `asic`, `simulated`).
    pub kind: &'static str,
    /// Details such as the hashing backend or chip model.
    pub model: String,
    /// Whether the device rolls version bits itself (BIP 320); pools are
    /// offered version rolling only when every device can.
    pub rolls_version: bool,
    /// Whether the device rolls ntime itself.
    pub rolls_ntime: bool,
    /// Tasks it can usefully keep in flight at once.
    pub max_tasks: usize,
    /// The easiest share difficulty it can be asked for without flooding
    /// the host; a pool asking for less is refused.
    pub min_difficulty: f64,
    /// Whether [`Control::PowerLimit`] is supported.
    pub power_limit: bool,
}

/// A control the operator or an energy policy applies to a device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Control {
    /// Stop hashing (keep tasks; resume continues them).
    Pause,
    /// Hash again.
    Resume,
    /// Keep the device's draw at or under this many watts (`None`: no limit).
    PowerLimit(Option<f64>),
}

/// Why a device refused a control.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device has no such control.
    #[error("device {device} does not support {what}")]
    Unsupported {
        /// The device name.
        device: String,
        /// The control refused.
        what: &'static str,
    },
}

/// One hashing unit of a device (a CPU thread, an ASIC chip).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UnitTelemetry {
    /// Name within the device (`thread-0`, `chip-3`).
    pub name: String,
    /// Hashes done since start (monotonic), for rates.
    pub hashes: u64,
    /// Results the host's re-check refused (per unit where known).
    pub hardware_errors: u64,
}

/// A temperature reading.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TempReading {
    /// Sensor label (`k10temp Tctl`, `board`).
    pub label: String,
    /// Degrees Celsius.
    pub temp_c: f64,
}

/// A fan reading.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FanReading {
    /// Fan label.
    pub label: String,
    /// Revolutions per minute, if the fan reports them.
    pub rpm: Option<u32>,
    /// Duty in percent, if known.
    pub percent: Option<f64>,
}

/// What a device reports about itself right now.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Telemetry {
    /// Per thread or chip counters.
    pub units: Vec<UnitTelemetry>,
    /// Temperatures (empty where the hardware has no readable sensor).
    pub temperatures: Vec<TempReading>,
    /// Fans.
    pub fans: Vec<FanReading>,
    /// Draw in watts where the device measures it (`None`: unknown).
    pub power_w: Option<f64>,
    /// Whether the device is paused.
    pub paused: bool,
    /// The power limit in force, watts.
    pub power_limit_w: Option<f64>,
    /// Tasks in flight now.
    pub tasks_in_flight: usize,
    /// Why the device is not hashing as it should, in the operator's words
    /// ("stopped: chip 3 at 92 °C ≥ 90 °C", "chip 2 not answering"); `None`
    /// while all is well. Shown in the status line and the panel.
    pub problem: Option<String>,
}

impl Telemetry {
    /// Hashes done by all units since start.
    pub fn hashes(&self) -> u64 {
        self.units.iter().map(|u| u.hashes).sum()
    }
}

/// A hashing device. The miner drives it; it must never block the caller.
pub trait Device: Send + Sync {
    /// What it is and can do.
    fn info(&self) -> &DeviceInfo;
    /// Connects the sink its solutions go to; called once before any task.
    fn attach(&self, index: usize, sink: std::sync::Weak<dyn SolutionSink>);
    /// Mine `task`. With `replace`, every earlier task is void and must be
    /// abandoned at once (a clean job, a pool switch); otherwise the device
    /// may keep older tasks in flight up to [`DeviceInfo::max_tasks`] and
    /// should prefer the newest.
    fn assign(&self, task: Task, replace: bool);
    /// Nothing to mine: drop every task and idle.
    fn idle(&self);
    /// Applies a control.
    fn control(&self, control: Control) -> Result<(), DeviceError>;
    /// Current telemetry.
    fn telemetry(&self) -> Telemetry;
}

/// The devices of the appliance, in a fixed order (their index).
pub type Devices = Vec<Arc<dyn Device>>;
