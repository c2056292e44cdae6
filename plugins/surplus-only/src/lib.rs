//! `surplus-only`: mine only on surplus (e.g. solar export) power. Starts
//! when the surplus signal reaches `threshold_kw`, stops when it falls below
//! `threshold_kw - hysteresis_kw`, and honours minimum on and off times so
//! passing clouds do not cycle the hardware.
//!
//! ```toml
//! [policies.surplus-only]
//! signal = "grid_export"     # surplus power signal
//! signal_unit = "kW"         # "kW" (default) or "W"
//! label = "grid export"      # wording in reasons
//! threshold_kw = 1.0
//! hysteresis_kw = 0.2
//! min_on_s = 300
//! min_off_s = 300
//! on_unknown = "pause"       # or "run"
//! ```

#![warn(missing_docs)]

use hashwatt_policy_sdk::config::{self, ConfigError};
use hashwatt_policy_sdk::fmt::num;
use hashwatt_policy_sdk::{Decision, Inputs, OnUnknown, Policy, state};
use serde::{Deserialize, Serialize};

/// Unit the surplus signal is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Unit {
    /// Kilowatts.
    #[default]
    #[serde(rename = "kW", alias = "kw")]
    Kw,
    /// Watts.
    #[serde(rename = "W", alias = "w")]
    W,
}

/// The operator's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the surplus / export power signal.
    pub signal: String,
    /// Unit of that signal.
    #[serde(default)]
    pub signal_unit: Unit,
    /// What the signal is called in reasons.
    #[serde(default = "default_label")]
    pub label: String,
    /// Start mining at or above this surplus, kW.
    pub threshold_kw: f64,
    /// Stop below `threshold_kw - hysteresis_kw`.
    #[serde(default)]
    pub hysteresis_kw: f64,
    /// Once started, keep mining at least this long, s.
    #[serde(default)]
    pub min_on_s: u64,
    /// Once stopped, stay off at least this long, s.
    #[serde(default)]
    pub min_off_s: u64,
    /// What to do when the signal is unknown.
    #[serde(default)]
    pub on_unknown: OnUnknown,
}

fn default_label() -> String {
    "grid export".into()
}

/// Our own on/off decision and when it last changed; own state rather than
/// `applied`, because another policy may pause the box independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Whether this policy lets the appliance mine.
    pub on: bool,
    /// UTC ms of the last change of `on`.
    pub since_ms: i64,
}

/// The policy.
#[derive(Debug, Default)]
pub struct SurplusOnly {
    config: Option<Config>,
}

impl Policy for SurplusOnly {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        if c.signal.is_empty() {
            return Err(ConfigError::Invalid("signal must name a signal".into()).into());
        }
        config::check_number("threshold_kw", c.threshold_kw, true)?;
        config::check_number("hysteresis_kw", c.hysteresis_kw, false)?;
        self.config = Some(c);
        Ok(())
    }

    fn subscriptions(&self) -> Vec<String> {
        self.config.iter().map(|c| c.signal.clone()).collect()
    }

    fn evaluate(&mut self, inputs: &Inputs) -> Decision {
        let Some(c) = &self.config else {
            return Decision::pause("not configured");
        };
        let now = inputs.now.utc_ms;
        // First run: start from what the host applies, and since when.
        let old = state::load(&inputs.state).unwrap_or(State {
            on: inputs.applied.is_mining(),
            since_ms: now.saturating_sub(i64::try_from(inputs.applied_for_ms).unwrap_or(i64::MAX)),
        });
        let kw = match inputs.signal(&c.signal) {
            Ok(v) => match c.signal_unit {
                Unit::Kw => v,
                Unit::W => v / 1000.0,
            },
            Err(unknown) => {
                let d = c.on_unknown.decide(&unknown);
                let on = d.mode.is_mining();
                return if on == old.on {
                    d
                } else {
                    d.with_state(&State { on, since_ms: now })
                };
            }
        };
        let held_ms = u64::try_from(now.saturating_sub(old.since_ms)).unwrap_or(0);
        let stop_kw = c.threshold_kw - c.hysteresis_kw;
        let label = &c.label;
        let (k, s) = (num(kw), num(stop_kw));
        let (on, reason, next) = if old.on {
            if kw >= stop_kw {
                (true, format!("{label} {k} kW ≥ {s} kW stop level"), None)
            } else if held_ms < c.min_on_s.saturating_mul(1000) {
                let left = c.min_on_s.saturating_mul(1000) - held_ms;
                (
                    true,
                    format!(
                        "{label} {k} kW < {s} kW, but min_on {} s: stopping in {} s",
                        c.min_on_s,
                        left.div_ceil(1000)
                    ),
                    Some(left),
                )
            } else {
                (false, format!("{label} {k} kW < {s} kW stop level"), None)
            }
        } else {
            let threshold = c.threshold_kw;
            let th = num(threshold);
            if kw < threshold {
                (false, format!("{label} {k} kW < {th} kW"), None)
            } else if held_ms < c.min_off_s.saturating_mul(1000) {
                let left = c.min_off_s.saturating_mul(1000) - held_ms;
                (
                    false,
                    format!(
                        "{label} {k} kW ≥ {th} kW, but min_off {} s: starting in {} s",
                        c.min_off_s,
                        left.div_ceil(1000)
                    ),
                    Some(left),
                )
            } else {
                (true, format!("{label} {k} kW ≥ {th} kW"), None)
            }
        };
        let mut d = if on {
            Decision::run(reason)
        } else {
            Decision::pause(reason)
        };
        if let Some(left) = next {
            d = d.next_eval_ms(left.min(60_000));
        }
        if on != old.on {
            d = d.with_state(&State { on, since_ms: now });
        } else if inputs.state.is_empty() {
            d = d.with_state(&old);
        }
        d
    }
}

hashwatt_policy_sdk::export_policy!(SurplusOnly);
