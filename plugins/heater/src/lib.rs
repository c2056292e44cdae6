//! `heater`: the miner as a space heater. A thermostat on a room
//! temperature (a `temperatures` sensor or a signal): mine while the room is
//! below `target_c - hysteresis_c`, stop above `target_c + hysteresis_c`,
//! and keep the previous mode in between.
//!
//! ```toml
//! [policies.heater]
//! sensor = "room"           # a host temperature sensor, or instead:
//! # signal = "room_temp"    # a signal in °C
//! target_c = 21.0
//! hysteresis_c = 0.5
//! valid_min_c = -40.0       # readings outside are treated as unknown
//! valid_max_c = 60.0
//! on_unknown = "pause"
//! ```

#![warn(missing_docs)]

use hashwatt_policy_sdk::config::{self, ConfigError};
use hashwatt_policy_sdk::fmt::num;
use hashwatt_policy_sdk::{Decision, Inputs, OnUnknown, Policy, UnknownSignal, state};
use serde::{Deserialize, Serialize};

/// The operator's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of a host temperature sensor (exclusive with `signal`).
    pub sensor: Option<String>,
    /// Name of a temperature signal in °C (exclusive with `sensor`).
    pub signal: Option<String>,
    /// Desired room temperature, °C.
    pub target_c: f64,
    /// Half-width of the dead band around the target, °C.
    #[serde(default = "default_hysteresis")]
    pub hysteresis_c: f64,
    /// Lowest plausible reading, °C.
    #[serde(default = "default_min")]
    pub valid_min_c: f64,
    /// Highest plausible reading, °C.
    #[serde(default = "default_max")]
    pub valid_max_c: f64,
    /// What to do when the temperature is unknown.
    #[serde(default)]
    pub on_unknown: OnUnknown,
}

fn default_hysteresis() -> f64 {
    0.5
}
fn default_min() -> f64 {
    -40.0
}
fn default_max() -> f64 {
    60.0
}

/// Where the temperature comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Sensor(String),
    Signal(String),
}

/// Remembered so the dead band keeps the previous mode across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Whether the thermostat is calling for heat (mining).
    pub heating: bool,
}

/// The policy.
#[derive(Debug, Default)]
pub struct Heater {
    config: Option<(Config, Source)>,
}

impl Policy for Heater {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        let source = match (&c.sensor, &c.signal) {
            (Some(s), None) if !s.is_empty() => Source::Sensor(s.clone()),
            (None, Some(s)) if !s.is_empty() => Source::Signal(s.clone()),
            _ => {
                return Err(ConfigError::Invalid(
                    "set exactly one of sensor or signal (a non-empty name)".into(),
                )
                .into());
            }
        };
        config::check_number("target_c", c.target_c, true)?;
        config::check_number("hysteresis_c", c.hysteresis_c, false)?;
        config::check_number("valid_min_c", c.valid_min_c, true)?;
        config::check_number("valid_max_c", c.valid_max_c, true)?;
        if c.valid_min_c >= c.valid_max_c {
            return Err(
                ConfigError::Invalid("valid_min_c must be below valid_max_c".into()).into(),
            );
        }
        self.config = Some((c, source));
        Ok(())
    }

    fn subscriptions(&self) -> Vec<String> {
        match &self.config {
            Some((_, Source::Signal(s))) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    fn evaluate(&mut self, inputs: &Inputs) -> Decision {
        let Some((c, source)) = &self.config else {
            return Decision::pause("not configured");
        };
        let (name, reading) = match source {
            Source::Sensor(n) => (n, inputs.temperature(n)),
            Source::Signal(n) => (n, inputs.signal(n)),
        };
        let reading = reading.and_then(|t| {
            if t < c.valid_min_c || t > c.valid_max_c {
                Err(UnknownSignal {
                    name: name.clone(),
                    why: format!(
                        "{} °C out of range {}..{} °C",
                        num(t),
                        num(c.valid_min_c),
                        num(c.valid_max_c)
                    ),
                })
            } else {
                Ok(t)
            }
        });
        let t = match reading {
            Ok(t) => t,
            Err(unknown) => return c.on_unknown.decide(&unknown),
        };
        let old = state::load::<State>(&inputs.state);
        let was = old.map_or(inputs.applied.is_mining(), |s| s.heating);
        let (low, high) = (c.target_c - c.hysteresis_c, c.target_c + c.hysteresis_c);
        let (ts, ls, hs) = (num(t), num(low), num(high));
        let (heating, reason) = if t < low {
            (true, format!("{name} {ts} °C < {ls} °C: heating"))
        } else if t > high {
            (false, format!("{name} {ts} °C > {hs} °C: warm enough"))
        } else if was {
            (
                true,
                format!("{name} {ts} °C within {ls}..{hs} °C: keep heating"),
            )
        } else {
            (
                false,
                format!("{name} {ts} °C within {ls}..{hs} °C: stay off"),
            )
        };
        let d = if heating {
            Decision::run(reason)
        } else {
            Decision::pause(reason)
        };
        if old == Some(State { heating }) {
            d
        } else {
            d.with_state(&State { heating })
        }
    }
}

hashwatt_policy_sdk::export_policy!(Heater);
