//! The fan and overheat control loop of a board.
//!
//! One [`ThermalController::step`] per control period (typically 1 s) takes
//! the chips' temperatures and the fan's state and answers with a fan duty,
//! a frequency decision and, when needed, a stop or fan fault. Time is
//! passed in (`now`, monotonic) so the loop runs identically on virtual time
//! in tests. The layers, from normal to emergency:
//!
//! 1. a PID on the hottest chip drives the fan toward `target_c`
//!    (derivative on measurement, integral clamped to the fan range and
//!    frozen while the output saturates);
//! 2. at `throttle_c`, or when the fan has stalled, the frequency steps
//!    down by `throttle_step_mhz` every `throttle_interval` (never below
//!    `min_frequency_mhz`); below `restore_c` it steps back up to the
//!    nominal frequency;
//! 3. at `stop_c`, or with no temperature reading at all, a safe stop
//!    (fan at maximum, the caller switches the chips off) latched until the
//!    hottest chip is below `resume_c`, after which the frequency restarts
//!    from the minimum and is restored gradually.

#![warn(missing_docs)]

use std::time::Duration;

use tracing::{debug, info, warn};

/// Longest gap between steps that counts fully toward the integral, so a
/// stalled caller (or a suspended host) does not wind the integrator up.
const MAX_DT: Duration = Duration::from_secs(10);

/// Weight of a new derivative sample in its low-pass filter; sensors step
/// in 0.125–1 °C increments and a raw derivative would jerk the fan.
const D_FILTER: f64 = 0.5;

/// A configuration value that makes the loop unsafe or meaningless.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThermalError {
    /// The named field is invalid, with why.
    #[error("thermal config: {field}: {reason}")]
    Invalid {
        /// Field name as in [`ThermalConfig`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Limits and gains of the loop; operator-facing, so validated by
/// [`ThermalConfig::validate`] before use.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ThermalConfig {
    /// Die temperature the fan PID holds, °C.
    pub target_c: f64,
    /// At or above this the frequency is lowered, °C.
    pub throttle_c: f64,
    /// At or above this the board is stopped, °C.
    pub stop_c: f64,
    /// A stop is released only below this, °C.
    pub resume_c: f64,
    /// Below this a throttled frequency is restored step by step, °C
    /// (below `throttle_c`, giving hysteresis).
    pub restore_c: f64,
    /// Lowest fan duty the PID uses, %.
    pub fan_min_pct: f64,
    /// Highest fan duty, used for emergencies, %.
    pub fan_max_pct: f64,
    /// Proportional gain, % duty per °C.
    pub kp: f64,
    /// Integral gain, % duty per °C·s.
    pub ki: f64,
    /// Derivative gain, % duty per °C/s.
    pub kd: f64,
    /// Frequency change per throttle or restore step, MHz.
    pub throttle_step_mhz: f32,
    /// Throttling never goes below this, MHz.
    pub min_frequency_mhz: f32,
    /// Least time between two frequency changes, so each has an effect
    /// before the next.
    pub throttle_interval: Duration,
    /// A tachometer below this counts as stopped, rpm.
    pub stall_rpm: u32,
    /// Stall detection only applies at or above this duty, % (a fan may
    /// legitimately stop at very low duty).
    pub stall_min_duty_pct: f64,
    /// How long a stall lasts before it is a fault.
    pub stall_after: Duration,
}

impl Default for ThermalConfig {
    fn default() -> Self {
        Self {
            target_c: 60.0,
            throttle_c: 80.0,
            stop_c: 90.0,
            resume_c: 70.0,
            restore_c: 75.0,
            fan_min_pct: 20.0,
            fan_max_pct: 100.0,
            kp: 4.0,
            ki: 0.3,
            kd: 4.0,
            throttle_step_mhz: 25.0,
            min_frequency_mhz: 200.0,
            throttle_interval: Duration::from_secs(5),
            stall_rpm: 300,
            stall_min_duty_pct: 20.0,
            stall_after: Duration::from_secs(10),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ThermalError {
    ThermalError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl ThermalConfig {
    /// Checks ranges and the ordering `target < throttle < stop`, so a typo
    /// cannot disable the overheat stop.
    pub fn validate(&self) -> Result<(), ThermalError> {
        let finite = [
            ("target_c", self.target_c),
            ("throttle_c", self.throttle_c),
            ("stop_c", self.stop_c),
            ("resume_c", self.resume_c),
            ("restore_c", self.restore_c),
            ("fan_min_pct", self.fan_min_pct),
            ("fan_max_pct", self.fan_max_pct),
            ("kp", self.kp),
            ("ki", self.ki),
            ("kd", self.kd),
            ("throttle_step_mhz", f64::from(self.throttle_step_mhz)),
            ("min_frequency_mhz", f64::from(self.min_frequency_mhz)),
            ("stall_min_duty_pct", self.stall_min_duty_pct),
        ];
        for (field, v) in finite {
            if !v.is_finite() {
                return Err(invalid(field, format!("{v} is not a number")));
            }
        }
        if self.target_c >= self.throttle_c {
            return Err(invalid(
                "target_c",
                format!(
                    "{} must be below throttle_c {}",
                    self.target_c, self.throttle_c
                ),
            ));
        }
        if self.throttle_c >= self.stop_c {
            return Err(invalid(
                "throttle_c",
                format!("{} must be below stop_c {}", self.throttle_c, self.stop_c),
            ));
        }
        if self.resume_c >= self.stop_c {
            return Err(invalid(
                "resume_c",
                format!("{} must be below stop_c {}", self.resume_c, self.stop_c),
            ));
        }
        if self.restore_c >= self.throttle_c {
            return Err(invalid(
                "restore_c",
                format!(
                    "{} must be below throttle_c {}",
                    self.restore_c, self.throttle_c
                ),
            ));
        }
        for (field, v) in [
            ("fan_min_pct", self.fan_min_pct),
            ("fan_max_pct", self.fan_max_pct),
            ("stall_min_duty_pct", self.stall_min_duty_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(invalid(field, format!("{v} outside 0..=100 %")));
            }
        }
        if self.fan_min_pct > self.fan_max_pct {
            return Err(invalid(
                "fan_min_pct",
                format!(
                    "{} above fan_max_pct {}",
                    self.fan_min_pct, self.fan_max_pct
                ),
            ));
        }
        if self.fan_max_pct <= 0.0 {
            return Err(invalid("fan_max_pct", "must be above 0 %"));
        }
        for (field, v) in [("kp", self.kp), ("ki", self.ki), ("kd", self.kd)] {
            if v < 0.0 {
                return Err(invalid(field, format!("{v} is negative")));
            }
        }
        if self.throttle_step_mhz <= 0.0 {
            return Err(invalid("throttle_step_mhz", "must be positive"));
        }
        if self.min_frequency_mhz <= 0.0 {
            return Err(invalid("min_frequency_mhz", "must be positive"));
        }
        if self.stall_after.is_zero() {
            return Err(invalid("stall_after", "must be positive"));
        }
        Ok(())
    }
}

/// What the controller sees each step.
#[derive(Debug, Clone, Copy)]
pub struct ThermalInput<'a> {
    /// Per chip; `None` where the sensor failed.
    pub chip_temps: &'a [Option<f64>],
    /// Tachometer; `None` without one (disables stall detection).
    pub fan_rpm: Option<u32>,
    /// The duty the fan is actually at, %.
    pub fan_duty_pct: f64,
    /// The chips' current frequency, MHz.
    pub frequency_mhz: f32,
}

/// What to do with the chips' frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrequencyAction {
    /// Leave it as it is.
    Keep,
    /// Change it to this, MHz.
    Set(f32),
}

/// The controller's decision for one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ThermalAction {
    /// Duty to apply to the fan, %.
    pub fan_duty_pct: f64,
    /// Frequency change, if any.
    pub frequency: FrequencyAction,
    /// While `Some`, the chips must be stopped (hashing off, rail off);
    /// the reason is for the operator.
    pub stop: Option<String>,
    /// While `Some`, the fan is not turning although driven.
    pub fan_fault: Option<String>,
    /// The hottest chip and its temperature, for status.
    pub hottest: Option<(usize, f64)>,
}

/// The loop's state between steps; one per board.
#[derive(Debug, Clone)]
pub struct ThermalController {
    config: ThermalConfig,
    last_now: Option<Duration>,
    last_temp: Option<f64>,
    d_filtered: f64,
    integral: Option<f64>,
    stopped: Option<String>,
    limit_mhz: Option<f32>,
    nominal_mhz: Option<f32>,
    last_freq_change: Option<Duration>,
    stall_since: Option<Duration>,
    fan_fault: Option<String>,
}

impl ThermalController {
    /// A controller with a validated configuration.
    pub fn new(config: ThermalConfig) -> Result<Self, ThermalError> {
        config.validate()?;
        Ok(Self {
            config,
            last_now: None,
            last_temp: None,
            d_filtered: 0.0,
            integral: None,
            stopped: None,
            limit_mhz: None,
            nominal_mhz: None,
            last_freq_change: None,
            stall_since: None,
            fan_fault: None,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ThermalConfig {
        &self.config
    }

    /// Tells the controller the frequency the operator or autotune wants,
    /// which a throttled board is restored to (otherwise it is learnt from
    /// the input while not throttled).
    pub fn set_nominal_mhz(&mut self, mhz: f32) {
        if mhz.is_finite() && mhz > 0.0 {
            self.nominal_mhz = Some(mhz);
        }
    }

    /// The frequency ceiling throttling currently imposes, if any.
    pub fn limit_mhz(&self) -> Option<f32> {
        self.limit_mhz
    }

    /// One control period; see the module documentation.
    pub fn step(&mut self, now: Duration, input: &ThermalInput<'_>) -> ThermalAction {
        let dt = match self.last_now {
            Some(last) => now.saturating_sub(last).min(MAX_DT),
            None => Duration::ZERO,
        };
        if self.last_now.is_none_or(|last| now > last) {
            self.last_now = Some(now);
        }
        let hottest = input
            .chip_temps
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|t| t.is_finite()).map(|t| (i, t)))
            .fold(None, |acc: Option<(usize, f64)>, (i, t)| match acc {
                Some((_, best)) if best >= t => acc,
                _ => Some((i, t)),
            });
        let duty_in = if input.fan_duty_pct.is_finite() {
            input.fan_duty_pct
        } else {
            self.config.fan_max_pct
        };
        self.watch_fan(now, input.fan_rpm, duty_in);
        if input.frequency_mhz.is_finite() && input.frequency_mhz > 0.0 && self.limit_mhz.is_none()
        {
            self.nominal_mhz = Some(input.frequency_mhz);
        }

        let Some((chip, temp)) = hottest else {
            return self.stop_now(hottest, "stopped: no temperature reading".to_owned());
        };
        if temp >= self.config.stop_c {
            let reason = format!(
                "stopped: chip {chip} at {temp:.1} °C ≥ {} °C",
                self.config.stop_c
            );
            return self.stop_now(hottest, reason);
        }
        if let Some(reason) = &self.stopped {
            if temp < self.config.resume_c {
                info!(chip, temp, was = %reason, "thermal stop released");
                self.stopped = None;
                self.last_temp = None;
                // Restart at the minimum and hold it one interval.
                self.last_freq_change = Some(now);
                self.d_filtered = 0.0;
            } else {
                let stop = self.stopped.clone();
                return ThermalAction {
                    fan_duty_pct: self.config.fan_max_pct,
                    frequency: FrequencyAction::Keep,
                    stop,
                    fan_fault: self.fan_fault.clone(),
                    hottest,
                };
            }
        }

        let mut duty = self.pid(temp, dt, duty_in);
        if self.fan_fault.is_some() {
            duty = self.config.fan_max_pct;
        }
        let frequency = self.frequency(now, temp, input.frequency_mhz);
        ThermalAction {
            fan_duty_pct: duty,
            frequency,
            stop: None,
            fan_fault: self.fan_fault.clone(),
            hottest,
        }
    }

    fn stop_now(&mut self, hottest: Option<(usize, f64)>, reason: String) -> ThermalAction {
        if self.stopped.is_none() {
            warn!(%reason, "thermal stop");
            self.stopped = Some(reason);
        }
        // Restart cool: minimum frequency, fan from the top.
        self.limit_mhz = Some(self.config.min_frequency_mhz);
        self.integral = Some(self.config.fan_max_pct);
        self.last_temp = None;
        ThermalAction {
            fan_duty_pct: self.config.fan_max_pct,
            frequency: FrequencyAction::Keep,
            stop: self.stopped.clone(),
            fan_fault: self.fan_fault.clone(),
            hottest,
        }
    }

    fn watch_fan(&mut self, now: Duration, rpm: Option<u32>, duty: f64) {
        let c = &self.config;
        match rpm {
            Some(r) if r < c.stall_rpm && duty >= c.stall_min_duty_pct => {
                let since = *self.stall_since.get_or_insert(now);
                let lasted = now.saturating_sub(since);
                if lasted >= c.stall_after {
                    let msg = format!(
                        "fan stopped: {r} rpm at {duty:.0} % duty for {} s",
                        lasted.as_secs()
                    );
                    if self.fan_fault.is_none() {
                        warn!(%msg, "fan fault");
                    }
                    self.fan_fault = Some(msg);
                }
            }
            _ => {
                self.stall_since = None;
                if let Some(msg) = self.fan_fault.take() {
                    info!(was = %msg, "fan turning again");
                }
            }
        }
    }

    fn pid(&mut self, temp: f64, dt: Duration, duty_in: f64) -> f64 {
        let c = &self.config;
        let (lo, hi) = (c.fan_min_pct, c.fan_max_pct);
        let dts = dt.as_secs_f64();
        let error = temp - c.target_c;
        if let (Some(last), true) = (self.last_temp, dts > 0.0) {
            let raw = (temp - last) / dts;
            self.d_filtered += D_FILTER * (raw - self.d_filtered);
        }
        self.last_temp = Some(temp);
        let integral = *self.integral.get_or_insert(duty_in.clamp(lo, hi));
        let pd = c.kp * error + c.kd * self.d_filtered;
        let candidate = (integral + c.ki * error * dts).clamp(lo, hi);
        let unclamped = candidate + pd;
        // Freeze the integral while the output is saturated in the direction
        // the error pushes, so it does not wind up behind the clamp.
        let winding = (unclamped > hi && error > 0.0) || (unclamped < lo && error < 0.0);
        let integral = if winding { integral } else { candidate };
        self.integral = Some(integral);
        (integral + pd).clamp(lo, hi)
    }

    fn frequency(&mut self, now: Duration, temp: f64, current: f32) -> FrequencyAction {
        let c = &self.config;
        if !current.is_finite() || current <= 0.0 {
            return FrequencyAction::Keep;
        }
        let may_change = self
            .last_freq_change
            .is_none_or(|t| now.saturating_sub(t) >= c.throttle_interval);
        let effective = self.limit_mhz.map_or(current, |l| current.min(l));
        let hot = temp >= c.throttle_c || self.fan_fault.is_some();
        if hot {
            if !may_change {
                return self.enforce_limit(current);
            }
            let lowered = (effective - c.throttle_step_mhz).max(c.min_frequency_mhz);
            if lowered < effective {
                debug!(temp, from = effective, to = lowered, "thermal throttle");
                self.limit_mhz = Some(lowered);
                self.last_freq_change = Some(now);
                return FrequencyAction::Set(lowered);
            }
            self.limit_mhz = Some(effective);
            return self.enforce_limit(current);
        }
        if let Some(limit) = self.limit_mhz
            && temp < c.restore_c
            && may_change
        {
            let nominal = self.nominal_mhz.unwrap_or(limit);
            let raised = limit + c.throttle_step_mhz;
            self.last_freq_change = Some(now);
            if raised >= nominal {
                debug!(temp, to = nominal, "thermal throttle lifted");
                self.limit_mhz = None;
                return FrequencyAction::Set(nominal);
            }
            debug!(temp, from = limit, to = raised, "thermal restore step");
            self.limit_mhz = Some(raised);
            return FrequencyAction::Set(raised);
        }
        self.enforce_limit(current)
    }

    fn enforce_limit(&self, current: f32) -> FrequencyAction {
        match self.limit_mhz {
            Some(l) if current > l => FrequencyAction::Set(l),
            _ => FrequencyAction::Keep,
        }
    }
}
