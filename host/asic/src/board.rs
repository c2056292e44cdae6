//! The parts of a hashing board, each behind its own trait so a board is
//! assembled from whatever a given hardware revision has: temperature
//! sensors ([`TempSensor`]), a fan ([`Fan`]) and a power rail
//! ([`PowerRail`]). BM13xx chips do not report their temperature on the
//! UART, so die temperatures come from board sensors mapped to chips.
//!
//! [`hwmon`] implements the parts over Linux `/sys/class/hwmon`;
//! [`emulated`] is a deterministic physical model for tests and the chip
//! emulator.

#![warn(missing_docs)]

pub mod emulated;
pub mod hwmon;

use std::collections::HashMap;
use std::path::PathBuf;

use tracing::{info, warn};

/// Why a board part could not be read or driven; every failure of sysfs or
/// of a configured value ends here instead of in a panic.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The file exists (or should) but the kernel refused the access.
    #[error("{path}: {source}")]
    Io {
        /// The attribute file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The attribute held something that is not the number it should be.
    #[error("{path}: cannot parse {content:?} as {expected}")]
    Parse {
        /// The attribute file.
        path: PathBuf,
        /// What was read (trimmed, truncated).
        content: String,
        /// What was expected, e.g. "millidegrees".
        expected: &'static str,
    },
    /// Discovery found no device or channel matching the configuration.
    #[error("not found: {0}")]
    NotFound(String),
    /// A requested value lies outside what the part accepts.
    #[error("{what}: {value} outside {min}..={max}")]
    OutOfRange {
        /// Which setting.
        what: String,
        /// The requested value.
        value: f64,
        /// Lowest accepted value.
        min: f64,
        /// Highest accepted value.
        max: f64,
    },
    /// The part cannot do this at all (fixed regulator, no enable control).
    #[error("{0}: not supported")]
    Unsupported(String),
    /// The part answered but reported a fault (emulated sensor failure).
    #[error("{0}: fault")]
    Fault(String),
    /// The board configuration is inconsistent.
    #[error("board configuration: {0}")]
    Config(String),
}

/// A die or board temperature sensor; the thermal loop needs one reading
/// per chip and tolerates a sensor that fails.
pub trait TempSensor: Send {
    /// Names the sensor in logs and status.
    fn label(&self) -> &str;
    /// Reads the temperature in °C.
    fn read_c(&mut self) -> Result<f64, BoardError>;
}

/// A PWM fan with an optional tachometer; the thermal loop drives the duty
/// and watches the rpm to notice a stalled fan.
pub trait Fan: Send {
    /// Names the fan in logs and status.
    fn label(&self) -> &str;
    /// Sets the PWM duty in percent (0–100).
    fn set_duty(&mut self, percent: f64) -> Result<(), BoardError>;
    /// The duty last set, in percent, so the controller knows what it asked for.
    fn duty(&self) -> f64;
    /// Reads the tachometer; `None` when the fan has none.
    fn rpm(&mut self) -> Result<Option<u32>, BoardError>;
}

/// The chips' supply; voltage may be fixed or settable, which decides
/// whether autotune may search voltage.
pub trait PowerRail: Send {
    /// Names the rail in logs and status.
    fn label(&self) -> &str;
    /// Reads the output voltage; `None` when the rail has no monitor.
    fn voltage_mv(&mut self) -> Result<Option<u32>, BoardError>;
    /// Sets the output voltage; an error on a fixed rail.
    fn set_voltage_mv(&mut self, mv: u32) -> Result<(), BoardError>;
    /// The settable range; `None` means the voltage is fixed.
    fn voltage_range_mv(&self) -> Option<(u32, u32)>;
    /// Reads the output power; `None` when the rail has no monitor.
    fn power_w(&mut self) -> Result<Option<f64>, BoardError>;
    /// Switches the output, the last resort of an overheat stop.
    fn set_enabled(&mut self, on: bool) -> Result<(), BoardError>;
}

/// Suppresses repeats of the same failure so a sensor that fails every
/// second does not flood the log: a key logs on its 1st, 2nd, 4th, 8th, …
/// consecutive failure, on a change of message, and once on recovery.
#[derive(Debug, Default)]
pub struct RepeatLog {
    seen: HashMap<String, (String, u64)>,
}

impl RepeatLog {
    /// Records a failure of `key`; returns the consecutive count when this
    /// one should be logged.
    pub fn failure(&mut self, key: &str, message: &str) -> Option<u64> {
        match self.seen.get_mut(key) {
            Some((last, count)) if last == message => {
                *count = count.saturating_add(1);
                count.is_power_of_two().then_some(*count)
            }
            Some(entry) => {
                *entry = (message.to_owned(), 1);
                Some(1)
            }
            None => {
                self.seen.insert(key.to_owned(), (message.to_owned(), 1));
                Some(1)
            }
        }
    }

    /// Records a success of `key`; returns how many failures preceded it
    /// when the recovery should be logged.
    pub fn success(&mut self, key: &str) -> Option<u64> {
        self.seen.remove(key).map(|(_, count)| count)
    }
}

/// One hashing board: its rail, sensors mapped to chips and fan, kept as
/// separate boxed parts so each can be swapped (hwmon, emulated, other).
pub struct Board {
    /// Stable identifier, used for persisted tuning results.
    pub id: String,
    /// The chips' supply.
    pub rail: Box<dyn PowerRail>,
    /// Every temperature sensor on the board.
    pub sensors: Vec<Box<dyn TempSensor>>,
    /// For chip `i`, the index into `sensors` that measures it.
    pub chip_sensor: Vec<usize>,
    /// The fan, if the board has one it controls.
    pub fan: Option<Box<dyn Fan>>,
    log: RepeatLog,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("id", &self.id)
            .field("rail", &self.rail.label())
            .field(
                "sensors",
                &self.sensors.iter().map(|s| s.label()).collect::<Vec<_>>(),
            )
            .field("chip_sensor", &self.chip_sensor)
            .field("fan", &self.fan.as_ref().map(|f| f.label()))
            .finish()
    }
}

impl Board {
    /// Assembles a board, rejecting a chip mapped to a sensor that does not
    /// exist (a configuration error better caught at start than as a chip
    /// that never has a temperature).
    pub fn new(
        id: impl Into<String>,
        rail: Box<dyn PowerRail>,
        sensors: Vec<Box<dyn TempSensor>>,
        chip_sensor: Vec<usize>,
        fan: Option<Box<dyn Fan>>,
    ) -> Result<Self, BoardError> {
        if let Some((chip, &idx)) = chip_sensor
            .iter()
            .enumerate()
            .find(|&(_, &idx)| idx >= sensors.len())
        {
            return Err(BoardError::Config(format!(
                "chip {chip} mapped to sensor {idx}, but the board has {} sensors",
                sensors.len()
            )));
        }
        Ok(Self {
            id: id.into(),
            rail,
            sensors,
            chip_sensor,
            fan,
            log: RepeatLog::default(),
        })
    }

    /// Number of chips the board maps to sensors.
    pub fn chips(&self) -> usize {
        self.chip_sensor.len()
    }

    /// Reads every chip's temperature for the thermal loop; each sensor is
    /// read once even when it serves several chips, and a failing (or
    /// non-finite) sensor reads as `None` with a rate-limited log.
    pub fn chip_temps(&mut self) -> Vec<Option<f64>> {
        let mut readings: Vec<Option<f64>> = Vec::with_capacity(self.sensors.len());
        for sensor in &mut self.sensors {
            let key = format!("{}/{}", self.id, sensor.label());
            let value = match sensor.read_c() {
                Ok(t) if t.is_finite() => Ok(t),
                Ok(t) => Err(format!("non-finite reading {t}")),
                Err(e) => Err(e.to_string()),
            };
            match value {
                Ok(t) => {
                    if let Some(n) = self.log.success(&key) {
                        info!(sensor = %key, failures = n, "temperature sensor recovered");
                    }
                    readings.push(Some(t));
                }
                Err(msg) => {
                    if let Some(n) = self.log.failure(&key, &msg) {
                        warn!(sensor = %key, consecutive = n, error = %msg, "temperature sensor failed");
                    }
                    readings.push(None);
                }
            }
        }
        self.chip_sensor
            .iter()
            .map(|&idx| readings.get(idx).copied().flatten())
            .collect()
    }

    /// Reads the fan's tachometer for stall detection; `None` when there is
    /// no fan, no tachometer or the read failed (logged rate-limited).
    pub fn fan_rpm(&mut self) -> Option<u32> {
        let fan = self.fan.as_mut()?;
        let key = format!("{}/{}", self.id, fan.label());
        match fan.rpm() {
            Ok(rpm) => {
                if let Some(n) = self.log.success(&key) {
                    info!(fan = %key, failures = n, "fan tachometer recovered");
                }
                rpm
            }
            Err(e) => {
                if let Some(n) = self.log.failure(&key, &e.to_string()) {
                    warn!(fan = %key, consecutive = n, error = %e, "fan tachometer failed");
                }
                None
            }
        }
    }
}
