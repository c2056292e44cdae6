//! A deterministic emulated board: chips that heat with frequency and
//! voltage, a fan that cools them, a rail that reports their power. Tests
//! and the chip emulator advance it explicitly with [`EmulatedBoard::advance`],
//! so control loops run on virtual time and every run is identical.
//!
//! The model, per chip: power `P = static_w + k·f·V² + extra`, steady die
//! temperature `ambient + P·R_th(duty)` approached with a first-order lag of
//! time constant `tau`; `R_th` falls from `r_th_still` (fan off or stalled)
//! to `r_th_full` (100 % duty) with the square of the duty. Fan rpm is
//! proportional to duty unless stalled.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Board, BoardError, Fan, PowerRail, TempSensor};

/// Physical constants of the model, public so a test can build a hotter or
/// weaker board than the default Bitaxe-like one.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedParams {
    /// `k` in `k·f·V²`: watts per MHz per volt² (0.022 gives ~15 W at
    /// 525 MHz and 1.15 V, a BM1370).
    pub watts_per_mhz_v2: f64,
    /// Power a powered chip draws at any frequency (leakage, I/O), in W.
    pub static_w: f64,
    /// Thermal resistance die→ambient with the fan at 100 %, °C/W.
    pub r_th_full: f64,
    /// Thermal resistance with the fan off or stalled, °C/W.
    pub r_th_still: f64,
    /// Time constant of the die temperature.
    pub tau: Duration,
    /// Fan speed at 100 % duty.
    pub max_rpm: u32,
    /// Settable rail range in mV; `None` emulates a fixed regulator.
    pub voltage_range_mv: Option<(u32, u32)>,
    /// Rail voltage at start, in mV.
    pub voltage_mv: u32,
}

impl Default for EmulatedParams {
    fn default() -> Self {
        Self {
            watts_per_mhz_v2: 0.022,
            static_w: 1.0,
            r_th_full: 1.2,
            r_th_still: 6.0,
            tau: Duration::from_secs(20),
            max_rpm: 6000,
            voltage_range_mv: Some((1000, 1400)),
            voltage_mv: 1150,
        }
    }
}

#[derive(Debug, Clone)]
struct Chip {
    frequency_mhz: f64,
    extra_w: f64,
    temp_c: f64,
    sensor_failed: bool,
}

#[derive(Debug)]
struct State {
    params: EmulatedParams,
    ambient_c: f64,
    chips: Vec<Chip>,
    voltage_mv: u32,
    enabled: bool,
    duty_pct: f64,
    fan_stalled: bool,
}

impl State {
    fn chip_power(&self, chip: &Chip) -> f64 {
        if !self.enabled {
            return 0.0;
        }
        let v = f64::from(self.voltage_mv) / 1000.0;
        self.params.static_w
            + self.params.watts_per_mhz_v2 * chip.frequency_mhz * v * v
            + chip.extra_w
    }

    fn r_th(&self) -> f64 {
        let d = if self.fan_stalled {
            0.0
        } else {
            (self.duty_pct / 100.0).clamp(0.0, 1.0)
        };
        let p = &self.params;
        p.r_th_full + (p.r_th_still - p.r_th_full) * (1.0 - d) * (1.0 - d)
    }

    fn chip(&mut self, chip: usize) -> Result<&mut Chip, BoardError> {
        let n = self.chips.len();
        self.chips.get_mut(chip).ok_or_else(|| {
            BoardError::Config(format!("emulated board has {n} chips, no chip {chip}"))
        })
    }
}

/// Handle to the shared emulated state; clones share it, and the parts it
/// hands out act on it, as the real parts act on one physical board.
#[derive(Debug, Clone)]
pub struct EmulatedBoard {
    state: Arc<Mutex<State>>,
}

/// Locks the state; a poisoned lock (a panicking test thread) still holds
/// consistent numbers, so it is used rather than propagated as a panic.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmulatedBoard {
    /// A board of `chips` idle chips at `ambient_c`, default physics.
    pub fn new(chips: usize, ambient_c: f64) -> Self {
        Self::with_params(chips, ambient_c, EmulatedParams::default())
    }

    /// A board with explicit physics, for tests that need a fixed rail or
    /// a weaker cooler.
    pub fn with_params(chips: usize, ambient_c: f64, params: EmulatedParams) -> Self {
        let chip = Chip {
            frequency_mhz: 0.0,
            extra_w: 0.0,
            temp_c: ambient_c,
            sensor_failed: false,
        };
        let voltage_mv = params.voltage_mv;
        Self {
            state: Arc::new(Mutex::new(State {
                params,
                ambient_c,
                chips: vec![chip; chips],
                voltage_mv,
                enabled: true,
                duty_pct: 0.0,
                fan_stalled: false,
            })),
        }
    }

    /// Moves the model forward by `dt` of virtual time with the current
    /// inputs held constant (exact first-order response, any step size).
    pub fn advance(&self, dt: Duration) {
        let mut s = lock(&self.state);
        let r = s.r_th();
        let tau = s.params.tau.as_secs_f64();
        let alpha = if tau > 0.0 {
            1.0 - (-dt.as_secs_f64() / tau).exp()
        } else {
            1.0
        };
        let ambient = s.ambient_c;
        let powers: Vec<f64> = s.chips.iter().map(|c| s.chip_power(c)).collect();
        for (chip, p) in s.chips.iter_mut().zip(powers) {
            let target = ambient + p * r;
            chip.temp_c += (target - chip.temp_c) * alpha;
        }
    }

    /// Number of chips.
    pub fn chips(&self) -> usize {
        lock(&self.state).chips.len()
    }

    /// Sets the frequency a chip hashes at, which sets its power.
    pub fn set_chip_load(&self, chip: usize, frequency_mhz: f64) -> Result<(), BoardError> {
        if !frequency_mhz.is_finite() || frequency_mhz < 0.0 {
            return Err(BoardError::OutOfRange {
                what: format!("chip {chip} frequency MHz"),
                value: frequency_mhz,
                min: 0.0,
                max: f64::MAX,
            });
        }
        lock(&self.state).chip(chip)?.frequency_mhz = frequency_mhz;
        Ok(())
    }

    /// Sets every chip's frequency, as a chain-wide PLL write does.
    pub fn set_all_load(&self, frequency_mhz: f64) -> Result<(), BoardError> {
        for chip in 0..self.chips() {
            self.set_chip_load(chip, frequency_mhz)?;
        }
        Ok(())
    }

    /// Adds heat to one chip (a bad heatsink, a shorted core) to make it
    /// the hot spot.
    pub fn set_extra_heat(&self, chip: usize, watts: f64) -> Result<(), BoardError> {
        if !watts.is_finite() || watts < 0.0 {
            return Err(BoardError::OutOfRange {
                what: format!("chip {chip} extra heat W"),
                value: watts,
                min: 0.0,
                max: f64::MAX,
            });
        }
        lock(&self.state).chip(chip)?.extra_w = watts;
        Ok(())
    }

    /// Makes one chip's sensor fail (or recover).
    pub fn fail_sensor(&self, chip: usize, failed: bool) -> Result<(), BoardError> {
        lock(&self.state).chip(chip)?.sensor_failed = failed;
        Ok(())
    }

    /// Stops the fan whatever its duty (tach 0, no airflow).
    pub fn stall_fan(&self, stalled: bool) {
        lock(&self.state).fan_stalled = stalled;
    }

    /// Changes the room temperature.
    pub fn set_ambient(&self, ambient_c: f64) {
        lock(&self.state).ambient_c = ambient_c;
    }

    /// A chip's die temperature, for assertions.
    pub fn chip_temp_c(&self, chip: usize) -> Option<f64> {
        lock(&self.state).chips.get(chip).map(|c| c.temp_c)
    }

    /// A chip's frequency, for assertions.
    pub fn chip_frequency_mhz(&self, chip: usize) -> Option<f64> {
        lock(&self.state).chips.get(chip).map(|c| c.frequency_mhz)
    }

    /// A chip's power draw, for assertions.
    pub fn chip_power_w(&self, chip: usize) -> Option<f64> {
        let s = lock(&self.state);
        s.chips.get(chip).map(|c| s.chip_power(c))
    }

    /// Sum of the chips' power, what the rail reports.
    pub fn total_power_w(&self) -> f64 {
        let s = lock(&self.state);
        s.chips.iter().map(|c| s.chip_power(c)).sum()
    }

    /// Whether the rail is on.
    pub fn rail_enabled(&self) -> bool {
        lock(&self.state).enabled
    }

    /// The rail voltage setpoint in mV.
    pub fn voltage_mv(&self) -> u32 {
        lock(&self.state).voltage_mv
    }

    /// The fan duty last set, in percent.
    pub fn fan_duty_pct(&self) -> f64 {
        lock(&self.state).duty_pct
    }

    /// A sensor part measuring `chip`.
    pub fn sensor(&self, chip: usize) -> EmulatedSensor {
        EmulatedSensor {
            state: Arc::clone(&self.state),
            chip,
            label: format!("emulated/chip{chip}"),
        }
    }

    /// The fan part.
    pub fn fan(&self) -> EmulatedFan {
        EmulatedFan {
            state: Arc::clone(&self.state),
        }
    }

    /// The rail part.
    pub fn rail(&self) -> EmulatedRail {
        EmulatedRail {
            state: Arc::clone(&self.state),
        }
    }

    /// A [`Board`] over these parts, one sensor per chip.
    pub fn board(&self, id: impl Into<String>) -> Board {
        let n = self.chips();
        let sensors: Vec<Box<dyn TempSensor>> = (0..n)
            .map(|i| Box::new(self.sensor(i)) as Box<dyn TempSensor>)
            .collect();
        Board {
            id: id.into(),
            rail: Box::new(self.rail()),
            sensors,
            chip_sensor: (0..n).collect(),
            fan: Some(Box::new(self.fan())),
            log: Default::default(),
        }
    }
}

/// An emulated temperature sensor on one chip.
#[derive(Debug)]
pub struct EmulatedSensor {
    state: Arc<Mutex<State>>,
    chip: usize,
    label: String,
}

impl TempSensor for EmulatedSensor {
    fn label(&self) -> &str {
        &self.label
    }

    fn read_c(&mut self) -> Result<f64, BoardError> {
        let s = lock(&self.state);
        match s.chips.get(self.chip) {
            Some(c) if !c.sensor_failed => Ok(c.temp_c),
            Some(_) => Err(BoardError::Fault(self.label.clone())),
            None => Err(BoardError::NotFound(self.label.clone())),
        }
    }
}

/// The emulated fan.
#[derive(Debug)]
pub struct EmulatedFan {
    state: Arc<Mutex<State>>,
}

impl Fan for EmulatedFan {
    fn label(&self) -> &str {
        "emulated/fan"
    }

    fn set_duty(&mut self, percent: f64) -> Result<(), BoardError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(BoardError::OutOfRange {
                what: "emulated/fan duty %".into(),
                value: percent,
                min: 0.0,
                max: 100.0,
            });
        }
        lock(&self.state).duty_pct = percent;
        Ok(())
    }

    fn duty(&self) -> f64 {
        lock(&self.state).duty_pct
    }

    fn rpm(&mut self) -> Result<Option<u32>, BoardError> {
        let s = lock(&self.state);
        if s.fan_stalled {
            return Ok(Some(0));
        }
        Ok(Some(
            (f64::from(s.params.max_rpm) * s.duty_pct / 100.0).round() as u32,
        ))
    }
}

/// The emulated rail.
#[derive(Debug)]
pub struct EmulatedRail {
    state: Arc<Mutex<State>>,
}

impl PowerRail for EmulatedRail {
    fn label(&self) -> &str {
        "emulated/rail"
    }

    fn voltage_mv(&mut self) -> Result<Option<u32>, BoardError> {
        let s = lock(&self.state);
        Ok(Some(if s.enabled { s.voltage_mv } else { 0 }))
    }

    fn set_voltage_mv(&mut self, mv: u32) -> Result<(), BoardError> {
        let mut s = lock(&self.state);
        let Some((min, max)) = s.params.voltage_range_mv else {
            return Err(BoardError::Unsupported(
                "emulated/rail: fixed voltage".into(),
            ));
        };
        if !(min..=max).contains(&mv) {
            return Err(BoardError::OutOfRange {
                what: "emulated/rail voltage mV".into(),
                value: mv.into(),
                min: min.into(),
                max: max.into(),
            });
        }
        s.voltage_mv = mv;
        Ok(())
    }

    fn voltage_range_mv(&self) -> Option<(u32, u32)> {
        lock(&self.state).params.voltage_range_mv
    }

    fn power_w(&mut self) -> Result<Option<f64>, BoardError> {
        let s = lock(&self.state);
        Ok(Some(s.chips.iter().map(|c| s.chip_power(c)).sum()))
    }

    fn set_enabled(&mut self, on: bool) -> Result<(), BoardError> {
        lock(&self.state).enabled = on;
        Ok(())
    }
}
