//! `schedule`: time-of-use windows in local wall-clock time, per weekday.
//! A window may cross midnight (it then belongs to the day it starts on);
//! the first window that matches wins, and `default` applies outside all
//! windows. Local time is `utc + local-offset-s` from the host, so windows
//! follow the wall clock across DST changes.
//!
//! ```toml
//! [policies.schedule]
//! default = "run"                       # "run" | "pause" | { limit_w = 800 }
//!
//! [[policies.schedule.windows]]
//! name = "peak tariff"                  # optional, for reasons
//! days = "weekdays"                     # "all" | "weekdays" | "weekend" | "mon" | ["mon", "tue"]
//! start = "17:00"
//! end = "21:00"                         # "24:00" allowed; end <= start crosses midnight
//! mode = "pause"
//!
//! [[policies.schedule.windows]]
//! days = ["sat", "sun"]
//! start = "22:00"
//! end = "06:00"
//! mode = { limit_w = 500 }
//! ```

#![warn(missing_docs)]

use hashwatt_policy_sdk::config::{self, ConfigError};
use hashwatt_policy_sdk::{Decision, Inputs, LocalTime, Mode, Policy, Weekday};
use serde::Deserialize;
use serde_json::Value;

/// A configured mode: `"run"`, `"pause"` or `{ "limit_w": N }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModeSpec(pub Mode);

fn parse_mode(v: &Value) -> Result<ModeSpec, String> {
    let bad = || format!("mode must be \"run\", \"pause\" or {{ limit_w = <watts> }}, got {v}");
    match v {
        Value::String(s) if s == "run" => Ok(ModeSpec(Mode::Run)),
        Value::String(s) if s == "pause" => Ok(ModeSpec(Mode::Pause)),
        Value::Object(m) if m.len() == 1 => match m.get("limit_w").and_then(Value::as_f64) {
            Some(w) if w.is_finite() && w >= 0.0 => Ok(ModeSpec(Mode::Limit(w))),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl<'de> Deserialize<'de> for ModeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_mode(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A set of weekdays, indexed by [`Weekday::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub [bool; 7]);

fn day_names(name: &str) -> Option<[bool; 7]> {
    Some(match name {
        "all" => [true; 7],
        "weekdays" => [true, true, true, true, true, false, false],
        "weekend" => [false, false, false, false, false, true, true],
        _ => {
            let day = Weekday::ALL
                .into_iter()
                .find(|d| d.name().eq_ignore_ascii_case(name))?;
            let mut set = [false; 7];
            set[day.index()] = true;
            set
        }
    })
}

fn parse_days(v: &Value) -> Result<Days, String> {
    let one = |s: &str| {
        day_names(s).ok_or_else(|| {
            format!("unknown day {s:?}: use mon..sun, \"weekdays\", \"weekend\" or \"all\"")
        })
    };
    match v {
        Value::String(s) => one(s).map(Days),
        Value::Array(items) if !items.is_empty() => {
            let mut set = [false; 7];
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| format!("days entries must be strings, got {item}"))?;
                for (acc, on) in set.iter_mut().zip(one(s)?) {
                    *acc |= on;
                }
            }
            Ok(Days(set))
        }
        _ => Err(format!(
            "days must be a day name or a non-empty list, got {v}"
        )),
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_days(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Days {
    fn contains(self, day: Weekday) -> bool {
        self.0.get(day.index()).copied().unwrap_or(false)
    }

    fn describe(self) -> String {
        match self.0 {
            [true, true, true, true, true, true, true] => "daily".into(),
            [true, true, true, true, true, false, false] => "Mon-Fri".into(),
            [false, false, false, false, false, true, true] => "Sat-Sun".into(),
            set => Weekday::ALL
                .into_iter()
                .zip(set)
                .filter(|(_, on)| *on)
                .map(|(d, _)| d.name())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// A wall-clock time "HH:MM" as minutes since midnight (0..=1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HhMm(pub u32);

fn parse_hhmm(s: &str) -> Result<HhMm, String> {
    let bad = || format!("time must be \"HH:MM\" between 00:00 and 24:00, got {s:?}");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(HhMm(h * 60 + m))
}

impl<'de> Deserialize<'de> for HhMm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_hhmm(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for HhMm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// One time-of-use window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Optional name, for reasons.
    #[serde(default)]
    pub name: Option<String>,
    /// The days the window starts on.
    pub days: Days,
    /// Local start time (inclusive).
    pub start: HhMm,
    /// Local end time (exclusive); at or before `start` it is on the next day.
    pub end: HhMm,
    /// The mode inside the window.
    pub mode: ModeSpec,
}

impl Window {
    /// Whether local time `t` falls in this window.
    pub fn contains(&self, t: &LocalTime) -> bool {
        let m = t.minute_of_day();
        let (start, end) = (self.start.0, self.end.0);
        if start < end {
            self.days.contains(t.weekday) && start <= m && m < end
        } else {
            // Crosses midnight (start == end: a full 24 h from start).
            (self.days.contains(t.weekday) && m >= start)
                || (self.days.contains(t.weekday.pred()) && m < end)
        }
    }

    fn describe(&self) -> String {
        let what = format!("{} {}-{}", self.days.describe(), self.start, self.end);
        match &self.name {
            Some(n) => format!("window \"{n}\" ({what})"),
            None => format!("window {what}"),
        }
    }
}

/// The operator's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Mode outside all windows.
    #[serde(default = "default_mode")]
    pub default: ModeSpec,
    /// The windows, first match wins.
    #[serde(default)]
    pub windows: Vec<Window>,
}

fn default_mode() -> ModeSpec {
    ModeSpec(Mode::Run)
}

/// The policy.
#[derive(Debug, Default)]
pub struct Schedule {
    config: Option<Config>,
}

impl Policy for Schedule {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        if c.windows.iter().any(|w| w.start.0 == 1440) {
            return Err(ConfigError::Invalid("a window cannot start at 24:00".into()).into());
        }
        self.config = Some(c);
        Ok(())
    }

    fn subscriptions(&self) -> Vec<String> {
        Vec::new()
    }

    fn evaluate(&mut self, inputs: &Inputs) -> Decision {
        let Some(c) = &self.config else {
            return Decision::pause("not configured");
        };
        let t = inputs.now.local_time();
        let zone = if inputs.now.time_zone.is_empty() {
            String::new()
        } else {
            format!(" {}", inputs.now.time_zone)
        };
        let (mode, what) = match c.windows.iter().find(|w| w.contains(&t)) {
            Some(w) => (w.mode.0, w.describe()),
            None => (c.default.0, "outside all windows".to_owned()),
        };
        let reason = format!("{what}: {mode} (local {t}{zone})");
        // Window edges are on whole minutes: look again at the next one.
        let to_next_minute = 60_000 - u64::from(t.ms_of_day % 60_000);
        Decision::new(mode, reason).next_eval_ms(to_next_minute)
    }
}

hashwatt_policy_sdk::export_policy!(Schedule);
