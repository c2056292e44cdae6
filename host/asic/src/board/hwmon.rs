//! Board parts over Linux hwmon (`/sys/class/hwmon/hwmonN/…`), the kernel
//! interface of the sensor, fan and regulator chips on Bitaxe-class boards
//! (EMC2101, TMP1075, TPS546, INA260). The root path is a parameter so tests
//! run against a fake tree in a temporary directory.
//!
//! Units follow the kernel's hwmon ABI: `tempN_input` in millidegrees
//! Celsius, `inN_input` in millivolts, `powerN_input` in microwatts,
//! `fanN_input` in rpm, `pwmN` 0–255 with `pwmN_enable` 1 for manual.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{BoardError, Fan, PowerRail, TempSensor};

/// The standard location of hwmon devices, for production callers.
pub const SYSFS_HWMON: &str = "/sys/class/hwmon";

/// Longest attribute content shown in a parse error, so a garbage file
/// cannot blow up a log line.
const MAX_SHOWN: usize = 32;

/// Reads an attribute, trimmed, with the path in the error.
fn read_attr(path: &Path) -> Result<String, BoardError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(BoardError::NotFound(path.display().to_string()))
        }
        Err(source) => Err(BoardError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads an integer attribute; sysfs integers may be negative (temperatures).
fn read_int(path: &Path, expected: &'static str) -> Result<i64, BoardError> {
    let s = read_attr(path)?;
    s.parse::<i64>().map_err(|_| BoardError::Parse {
        path: path.to_owned(),
        content: s.chars().take(MAX_SHOWN).collect(),
        expected,
    })
}

/// Writes an attribute the way `echo` does.
fn write_attr(path: &Path, value: &str) -> Result<(), BoardError> {
    fs::write(path, format!("{value}\n")).map_err(|source| BoardError::Io {
        path: path.to_owned(),
        source,
    })
}

/// One hwmon device directory with its chip name, the unit of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwmonDevice {
    /// The `hwmonN` directory (a symlink to the device in real sysfs).
    pub dir: PathBuf,
    /// Contents of its `name` attribute, e.g. `emc2101`.
    pub name: String,
}

impl HwmonDevice {
    /// Lists every hwmon device under `root`, sorted by directory so the
    /// order is stable; entries without a readable `name` are skipped.
    pub fn list(root: &Path) -> Result<Vec<HwmonDevice>, BoardError> {
        let entries = fs::read_dir(root).map_err(|source| BoardError::Io {
            path: root.to_owned(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            if let Ok(name) = read_attr(&dir.join("name")) {
                out.push(HwmonDevice { dir, name });
            }
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(out)
    }

    /// Finds the first device whose `name` matches, because hwmon numbers
    /// change between boots while chip names do not.
    pub fn find(root: &Path, name: &str) -> Result<HwmonDevice, BoardError> {
        Self::list(root)?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                BoardError::NotFound(format!("hwmon device {name:?} under {}", root.display()))
            })
    }

    /// Finds the channel number of a `<kind>N_label` equal to `label`
    /// (`kind` is `temp`, `fan`, `in`, `power`), since channel numbers
    /// differ between chips while labels are meaningful.
    pub fn channel_by_label(&self, kind: &str, label: &str) -> Result<u32, BoardError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| BoardError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut found: Vec<u32> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let n = file
                    .strip_prefix(kind)?
                    .strip_suffix("_label")?
                    .parse()
                    .ok()?;
                (read_attr(&e.path()).ok()? == label).then_some(n)
            })
            .collect();
        found.sort_unstable();
        found.first().copied().ok_or_else(|| {
            BoardError::NotFound(format!("{kind}*_label {label:?} in {}", self.dir.display()))
        })
    }

    fn attr(&self, file: String) -> PathBuf {
        self.dir.join(file)
    }
}

/// A temperature channel (`tempN_input`, millidegrees).
#[derive(Debug)]
pub struct HwmonTemp {
    label: String,
    input: PathBuf,
}

impl HwmonTemp {
    /// Opens channel `n`; the label is `tempN_label` when present, else
    /// `<name>/tempN`, so logs say which sensor failed.
    pub fn open(dev: &HwmonDevice, n: u32) -> Result<Self, BoardError> {
        let input = dev.attr(format!("temp{n}_input"));
        if !input.exists() {
            return Err(BoardError::NotFound(input.display().to_string()));
        }
        let label = read_attr(&dev.attr(format!("temp{n}_label")))
            .map(|l| format!("{}/{l}", dev.name))
            .unwrap_or_else(|_| format!("{}/temp{n}", dev.name));
        Ok(Self { label, input })
    }

    /// Discovers a channel by device name and, optionally, label (without
    /// a label: channel 1).
    pub fn discover(root: &Path, name: &str, label: Option<&str>) -> Result<Self, BoardError> {
        let dev = HwmonDevice::find(root, name)?;
        let n = match label {
            Some(l) => dev.channel_by_label("temp", l)?,
            None => 1,
        };
        Self::open(&dev, n)
    }
}

impl TempSensor for HwmonTemp {
    fn label(&self) -> &str {
        &self.label
    }

    fn read_c(&mut self) -> Result<f64, BoardError> {
        Ok(read_int(&self.input, "millidegrees")? as f64 / 1000.0)
    }
}

/// A PWM fan (`pwmN`, `pwmN_enable`, optionally `fanN_input`).
#[derive(Debug)]
pub struct HwmonFan {
    label: String,
    pwm: PathBuf,
    tach: Option<PathBuf>,
    duty: f64,
}

impl HwmonFan {
    /// Opens PWM channel `n` and takes manual control (`pwmN_enable` = 1)
    /// so the chip's own automatic curve does not fight the controller;
    /// `fanN_input` of the same number is the tachometer when present.
    pub fn open(dev: &HwmonDevice, n: u32) -> Result<Self, BoardError> {
        let pwm = dev.attr(format!("pwm{n}"));
        let raw = read_int(&pwm, "pwm 0-255")?;
        let enable = dev.attr(format!("pwm{n}_enable"));
        if enable.exists() {
            write_attr(&enable, "1")?;
        }
        let tach = Some(dev.attr(format!("fan{n}_input"))).filter(|p| p.exists());
        Ok(Self {
            label: format!("{}/pwm{n}", dev.name),
            pwm,
            tach,
            duty: (raw.clamp(0, 255) as f64) * 100.0 / 255.0,
        })
    }

    /// Discovers the fan by device name (PWM channel 1).
    pub fn discover(root: &Path, name: &str) -> Result<Self, BoardError> {
        Self::open(&HwmonDevice::find(root, name)?, 1)
    }
}

impl Fan for HwmonFan {
    fn label(&self) -> &str {
        &self.label
    }

    fn set_duty(&mut self, percent: f64) -> Result<(), BoardError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(BoardError::OutOfRange {
                what: format!("{} duty %", self.label),
                value: percent,
                min: 0.0,
                max: 100.0,
            });
        }
        let raw = (percent * 255.0 / 100.0).round() as u32;
        write_attr(&self.pwm, &raw.to_string())?;
        self.duty = percent;
        Ok(())
    }

    fn duty(&self) -> f64 {
        self.duty
    }

    fn rpm(&mut self) -> Result<Option<u32>, BoardError> {
        let Some(tach) = &self.tach else {
            return Ok(None);
        };
        let v = read_int(tach, "rpm")?;
        u32::try_from(v).map(Some).map_err(|_| BoardError::Parse {
            path: tach.clone(),
            content: v.to_string(),
            expected: "rpm",
        })
    }
}

/// How a settable regulator takes its voltage, for the rare boards whose
/// driver exposes a writable attribute (hwmon itself has none).
#[derive(Debug, Clone, PartialEq)]
pub struct VoltageControl {
    /// The writable attribute file.
    pub path: PathBuf,
    /// Millivolts written per millivolt wanted: 1 for a mV attribute,
    /// 1000 for a µV one (e.g. a regulator's `microvolts`).
    pub scale: u32,
    /// Lowest voltage the chips tolerate, in mV.
    pub min_mv: u32,
    /// Highest voltage the chips tolerate, in mV.
    pub max_mv: u32,
}

/// Which files make up a rail; everything optional because boards differ.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RailConfig {
    /// Label for logs.
    pub label: String,
    /// `inN_input` channel with the output voltage (mV).
    pub voltage_channel: Option<u32>,
    /// `powerN_input` channel with the output power (µW).
    pub power_channel: Option<u32>,
    /// Writable voltage attribute; `None` means the voltage is fixed.
    pub control: Option<VoltageControl>,
    /// Attribute switching the output (writes 1/0), if any.
    pub enable: Option<PathBuf>,
}

/// A rail monitored through hwmon (`inN_input`, `powerN_input`).
#[derive(Debug)]
pub struct HwmonRail {
    label: String,
    voltage: Option<PathBuf>,
    power: Option<PathBuf>,
    control: Option<VoltageControl>,
    enable: Option<PathBuf>,
}

impl HwmonRail {
    /// Opens the rail on `dev`, checking that the configured files exist so
    /// a typo in the configuration shows at start.
    pub fn open(dev: &HwmonDevice, config: RailConfig) -> Result<Self, BoardError> {
        let existing = |p: PathBuf| {
            if p.exists() {
                Ok(p)
            } else {
                Err(BoardError::NotFound(p.display().to_string()))
            }
        };
        let voltage = config
            .voltage_channel
            .map(|n| existing(dev.attr(format!("in{n}_input"))))
            .transpose()?;
        let power = config
            .power_channel
            .map(|n| existing(dev.attr(format!("power{n}_input"))))
            .transpose()?;
        if let Some(c) = &config.control {
            if c.scale == 0 || c.min_mv > c.max_mv {
                return Err(BoardError::Config(format!(
                    "voltage control {}: scale {} and range {}..={} mV",
                    c.path.display(),
                    c.scale,
                    c.min_mv,
                    c.max_mv
                )));
            }
            existing(c.path.clone())?;
        }
        if let Some(e) = &config.enable {
            existing(e.clone())?;
        }
        let label = if config.label.is_empty() {
            dev.name.clone()
        } else {
            config.label
        };
        Ok(Self {
            label,
            voltage,
            power,
            control: config.control,
            enable: config.enable,
        })
    }
}

impl PowerRail for HwmonRail {
    fn label(&self) -> &str {
        &self.label
    }

    fn voltage_mv(&mut self) -> Result<Option<u32>, BoardError> {
        let Some(p) = &self.voltage else {
            return Ok(None);
        };
        let v = read_int(p, "millivolts")?;
        u32::try_from(v).map(Some).map_err(|_| BoardError::Parse {
            path: p.clone(),
            content: v.to_string(),
            expected: "millivolts",
        })
    }

    fn set_voltage_mv(&mut self, mv: u32) -> Result<(), BoardError> {
        let Some(c) = &self.control else {
            return Err(BoardError::Unsupported(format!(
                "{}: fixed voltage",
                self.label
            )));
        };
        if !(c.min_mv..=c.max_mv).contains(&mv) {
            return Err(BoardError::OutOfRange {
                what: format!("{} voltage mV", self.label),
                value: mv.into(),
                min: c.min_mv.into(),
                max: c.max_mv.into(),
            });
        }
        let raw = u64::from(mv) * u64::from(c.scale);
        write_attr(&c.path, &raw.to_string())
    }

    fn voltage_range_mv(&self) -> Option<(u32, u32)> {
        self.control.as_ref().map(|c| (c.min_mv, c.max_mv))
    }

    fn power_w(&mut self) -> Result<Option<f64>, BoardError> {
        let Some(p) = &self.power else {
            return Ok(None);
        };
        let v = read_int(p, "microwatts")?;
        if v < 0 {
            return Err(BoardError::Parse {
                path: p.clone(),
                content: v.to_string(),
                expected: "microwatts",
            });
        }
        Ok(Some(v as f64 / 1e6))
    }

    fn set_enabled(&mut self, on: bool) -> Result<(), BoardError> {
        let Some(e) = &self.enable else {
            return Err(BoardError::Unsupported(format!(
                "{}: no enable control",
                self.label
            )));
        };
        write_attr(e, if on { "1" } else { "0" })
    }
}
