//! `[[asic]]`: BM13xx chains on serial ports, with the board parts the
//! driver reads (temperature sensor, fan, power rail) and what to run at.

use std::path::PathBuf;

use hashwatt_asic::model::Model;
use serde::{Deserialize, Serialize};

use super::Problem;

/// One BM13xx chain on a serial port, hashing with its board.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AsicEntry {
    /// Name shown to the operator; `asic0`, `asic1`… by position if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Serial device of the chain (USB-CDC or UART), e.g. `/dev/ttyACM0`.
    pub port: PathBuf,
    /// Chip model: `BM1366`, `BM1368` or `BM1370`.
    pub model: String,
    /// Chips on the chain; enumeration must find exactly these.
    pub chips: usize,
    /// Core clock, MHz; the model's stock clock if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_mhz: Option<f32>,
    /// Core voltage, mV, where the board's rail can be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_mv: Option<u32>,
    /// UART rate after init (chips and host switch together).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Reported nonces below this difficulty are hardware errors; the
    /// chips' ticket difficulty if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_nonce_difficulty: Option<f64>,
    /// Difficulty the chips report nonces at (a power of two); the
    /// model's default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_difficulty: Option<u32>,
    /// Search the clock (and voltage) once and keep the result: `off`,
    /// `power` (the most hashrate within `power_target_w`) or `efficiency`
    /// (the best J/TH).
    #[serde(default)]
    pub autotune: AutotuneMode,
    /// Power target for `autotune = "power"`, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_target_w: Option<f64>,
    /// Autotune search range, MHz, and step.
    #[serde(default = "default_tune_min")]
    pub tune_min_mhz: f32,
    /// Highest clock autotune tries, MHz.
    #[serde(default = "default_tune_max")]
    pub tune_max_mhz: f32,
    /// Clock step of the search, MHz.
    #[serde(default = "default_tune_step")]
    pub tune_step_mhz: f32,
    /// Seconds each autotune setting is measured.
    #[serde(default = "default_tune_settle")]
    pub tune_settle_secs: u64,
    /// Milliseconds between fresh work for the chips.
    #[serde(default = "default_job_interval")]
    pub job_interval_ms: u64,
    /// The board's parts.
    #[serde(default)]
    pub board: AsicBoard,
    /// Fan and overheat control.
    #[serde(default)]
    pub thermal: AsicThermal,
}

/// Autotune goal.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutotuneMode {
    /// Run at the configured clock.
    #[default]
    Off,
    /// The most hashrate within `power_target_w`.
    Power,
    /// The best joules per terahash.
    Efficiency,
}

/// Where the board's parts are, by Linux hwmon device name.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AsicBoard {
    /// hwmon class directory (tests point it elsewhere).
    pub hwmon_root: PathBuf,
    /// hwmon device whose temperature stands for the chips' dies, e.g.
    /// `emc2101`: BM13xx chips report no temperature of their own.
    pub temp_sensor: Option<String>,
    /// Label of the temperature channel (`tempN_label`), if not the first.
    pub temp_label: Option<String>,
    /// hwmon device with the fan's PWM (`pwm1`) and tachometer.
    pub fan: Option<String>,
    /// hwmon device of the core regulator (voltage and power readings).
    pub rail: Option<String>,
}

impl Default for AsicBoard {
    fn default() -> Self {
        AsicBoard {
            hwmon_root: PathBuf::from(hashwatt_asic::board::hwmon::SYSFS_HWMON),
            temp_sensor: None,
            temp_label: None,
            fan: None,
            rail: None,
        }
    }
}

/// Temperatures the thermal loop works to, °C.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AsicThermal {
    /// The fan holds the hottest chip here.
    pub target_c: f64,
    /// Above this the clock comes down step by step.
    pub throttle_c: f64,
    /// At this the chain stops (rail off) until it has cooled.
    pub stop_c: f64,
    /// A stopped chain starts again below this.
    pub resume_c: f64,
}

impl Default for AsicThermal {
    fn default() -> Self {
        let d = hashwatt_asic::thermal::ThermalConfig::default();
        AsicThermal {
            target_c: d.target_c,
            throttle_c: d.throttle_c,
            stop_c: d.stop_c,
            resume_c: d.resume_c,
        }
    }
}

impl AsicThermal {
    /// The controller's settings, the rest at their defaults.
    pub fn config(&self) -> hashwatt_asic::thermal::ThermalConfig {
        let d = hashwatt_asic::thermal::ThermalConfig::default();
        hashwatt_asic::thermal::ThermalConfig {
            target_c: self.target_c,
            throttle_c: self.throttle_c,
            stop_c: self.stop_c,
            resume_c: self.resume_c,
            restore_c: self.resume_c.max(self.target_c).min(self.throttle_c - 1.0),
            ..d
        }
    }
}

fn default_baud() -> u32 {
    1_000_000
}
fn default_tune_min() -> f32 {
    400.0
}
fn default_tune_max() -> f32 {
    625.0
}
fn default_tune_step() -> f32 {
    25.0
}
fn default_tune_settle() -> u64 {
    60
}
fn default_job_interval() -> u64 {
    500
}

impl AsicEntry {
    /// The model, parsed.
    pub fn parsed_model(&self) -> Option<Model> {
        self.model.parse().ok()
    }

    /// The name shown for the chain at position `i`.
    pub fn name_at(&self, i: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("asic{i}"))
    }
}

/// Checks every `[[asic]]` entry.
pub(super) fn check(entries: &[AsicEntry]) -> Result<(), Problem> {
    let mut names = std::collections::BTreeSet::new();
    let mut ports = std::collections::BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let f = |field: &str| format!("asic[{i}].{field}");
        let Some(model) = e.parsed_model() else {
            return Err(Problem::new(
                f("model"),
                format!("{:?} is not BM1366, BM1368 or BM1370", e.model),
            ));
        };
        if !(1..=256).contains(&e.chips) {
            return Err(Problem::new(
                f("chips"),
                format!("{} is outside 1..=256", e.chips),
            ));
        }
        let range = model.frequency_range_mhz();
        for (field, mhz) in [
            ("frequency_mhz", e.frequency_mhz),
            ("tune_min_mhz", Some(e.tune_min_mhz)),
            ("tune_max_mhz", Some(e.tune_max_mhz)),
        ] {
            if let Some(v) = mhz
                && !range.contains(&v)
            {
                return Err(Problem::new(
                    f(field),
                    format!(
                        "{v} MHz is outside the {model} range {}..={} MHz",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        if hashwatt_asic::serial::host_baud_for(e.baud).is_none() {
            return Err(Problem::new(
                f("baud"),
                format!("{} baud: this host cannot follow the chips there", e.baud),
            ));
        }
        if e.autotune != AutotuneMode::Off {
            if e.tune_min_mhz > e.tune_max_mhz || e.tune_step_mhz.is_nan() || e.tune_step_mhz <= 0.0
            {
                return Err(Problem::new(
                    f("tune_step_mhz"),
                    "the search needs tune_min_mhz ≤ tune_max_mhz and a positive step",
                ));
            }
            if e.tune_settle_secs == 0 {
                return Err(Problem::new(f("tune_settle_secs"), "must be at least 1"));
            }
        }
        if e.autotune == AutotuneMode::Power
            && !e.power_target_w.is_some_and(|w| w.is_finite() && w > 0.0)
        {
            return Err(Problem::new(
                f("power_target_w"),
                "autotune = \"power\" needs a positive power_target_w",
            ));
        }
        if e.board.temp_sensor.is_none() {
            return Err(Problem::new(
                f("board.temp_sensor"),
                "required: BM13xx chips report no temperature, so the thermal loop \
                 needs the board's sensor (the hwmon name, e.g. \"emc2101\")",
            ));
        }
        if let Some(t) = e.ticket_difficulty
            && !(t.is_power_of_two() && t >= 1)
        {
            return Err(Problem::new(
                f("ticket_difficulty"),
                format!("{t} is not a power of two (the chips' mask register holds one)"),
            ));
        }
        if e.job_interval_ms == 0 || e.job_interval_ms > 60_000 {
            return Err(Problem::new(
                f("job_interval_ms"),
                format!("{} ms is outside 1..=60000", e.job_interval_ms),
            ));
        }
        if let Err(why) = e.thermal.config().validate() {
            return Err(Problem::new(f("thermal"), why.to_string()));
        }
        if !names.insert(e.name_at(i)) {
            return Err(Problem::new(
                f("name"),
                format!("{:?} names two chains", e.name_at(i)),
            ));
        }
        if !ports.insert(e.port.clone()) {
            return Err(Problem::new(
                f("port"),
                format!("{} is used by two chains", e.port.display()),
            ));
        }
    }
    Ok(())
}
