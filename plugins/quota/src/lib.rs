//! `quota`: caps the energy the appliance may use per local day and/or per
//! local month, from the host's meter counters. With `pace = true` the cap
//! is spread pro rata over the period: at any moment the allowance is
//! `cap × elapsed fraction`, so the appliance pauses while ahead of pace
//! and runs while behind (with a small hysteresis so it does not toggle
//! every second). The host resets its counters at local midnight and on the
//! first of the month; this policy remembers the last date it saw to say so.
//!
//! ```toml
//! [policies.quota]
//! daily_kwh = 10.0            # optional
//! monthly_kwh = 250.0         # optional; at least one of the two
//! pace = true                 # default false: only the hard cap
//! pace_hysteresis_kwh = 0.1   # resume once this far behind pace
//! on_unknown = "pause"        # when a counter is NaN or negative
//! ```

#![warn(missing_docs)]

use hashwatt_policy_sdk::config::{self, ConfigError};
use hashwatt_policy_sdk::fmt::num;
use hashwatt_policy_sdk::{Date, Decision, Inputs, OnUnknown, Policy, UnknownSignal, state};
use serde::{Deserialize, Serialize};

/// The operator's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cap per local day, kWh.
    pub daily_kwh: Option<f64>,
    /// Cap per local month, kWh.
    pub monthly_kwh: Option<f64>,
    /// Spread the caps pro rata over the period.
    #[serde(default)]
    pub pace: bool,
    /// How far behind pace before resuming after a pace pause, kWh.
    #[serde(default = "default_pace_hysteresis")]
    pub pace_hysteresis_kwh: f64,
    /// What to do when a needed counter is unusable.
    #[serde(default)]
    pub on_unknown: OnUnknown,
}

fn default_pace_hysteresis() -> f64 {
    0.1
}

/// Remembered across evaluations and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The local date of the last evaluation, to notice rollovers.
    pub date: Date,
    /// Paused for being ahead of pace (resume needs the hysteresis).
    pub pace_paused: bool,
}

/// The policy.
#[derive(Debug, Default)]
pub struct Quota {
    config: Option<Config>,
}

/// One period's verdict.
struct Verdict {
    pause: bool,
    pace_pause: bool,
    reason: String,
}

fn counter(name: &str, v: f64) -> Result<f64, UnknownSignal> {
    let why = if !v.is_finite() {
        "NaN"
    } else if v < 0.0 {
        "negative"
    } else {
        return Ok(v);
    };
    Err(UnknownSignal {
        name: format!("energy counter {name}"),
        why: why.into(),
    })
}

impl Policy for Quota {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        if c.daily_kwh.is_none() && c.monthly_kwh.is_none() {
            return Err(ConfigError::Invalid("set daily_kwh and/or monthly_kwh".into()).into());
        }
        for (field, v) in [("daily_kwh", c.daily_kwh), ("monthly_kwh", c.monthly_kwh)] {
            if let Some(v) = v {
                config::check_number(field, v, false)?;
            }
        }
        config::check_number("pace_hysteresis_kwh", c.pace_hysteresis_kwh, false)?;
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
        let old = state::load::<State>(&inputs.state);
        let note = match old {
            Some(s) if (s.date.year, s.date.month) != (t.date.year, t.date.month) => {
                "new month: quota reset; "
            }
            Some(s) if s.date != t.date && c.daily_kwh.is_some() => "new day: daily quota reset; ",
            _ => "",
        };
        // A pace pause ends with its period.
        let was_pace_paused = old.is_some_and(|s| s.pace_paused && s.date == t.date);

        let mut periods = Vec::new();
        if let Some(cap) = c.daily_kwh {
            periods.push((
                "today",
                "today-kwh",
                inputs.energy.today_kwh,
                cap,
                "daily",
                t.day_fraction(),
                "day",
            ));
        }
        if let Some(cap) = c.monthly_kwh {
            periods.push((
                "month",
                "month-kwh",
                inputs.energy.month_kwh,
                cap,
                "monthly",
                t.month_fraction(),
                "month",
            ));
        }
        let mut verdicts = Vec::new();
        for (label, field, used, cap, kind, frac, unit) in periods {
            let used = match counter(field, used) {
                Ok(u) => u,
                Err(unknown) => {
                    let d = c.on_unknown.decide(&unknown);
                    return Decision {
                        reason: format!("{note}{}", d.reason),
                        ..d
                    };
                }
            };
            let (us, cs) = (num(used), num(cap));
            let v = if used >= cap {
                Verdict {
                    pause: true,
                    pace_pause: false,
                    reason: format!("{label} {us} kWh ≥ {kind} quota {cs} kWh"),
                }
            } else if c.pace {
                let allowed = cap * frac;
                let limit = if was_pace_paused {
                    allowed - c.pace_hysteresis_kwh
                } else {
                    allowed
                };
                let ahead = used > limit;
                let pace = format!(
                    "pace {} kWh ({kind} quota {cs} kWh × {:.0} % of {unit})",
                    num(allowed),
                    frac * 100.0
                );
                Verdict {
                    pause: ahead,
                    pace_pause: ahead,
                    reason: if ahead {
                        format!("{label} {us} kWh ahead of {pace}")
                    } else {
                        format!("{label} {us} kWh within {pace}")
                    },
                }
            } else {
                Verdict {
                    pause: false,
                    pace_pause: false,
                    reason: format!("{label} {us} of {cs} kWh {kind} quota"),
                }
            };
            verdicts.push(v);
        }
        let pause = verdicts.iter().any(|v| v.pause);
        let reasons: Vec<&str> = verdicts
            .iter()
            .filter(|v| v.pause == pause)
            .map(|v| v.reason.as_str())
            .collect();
        let reason = format!("{note}{}", reasons.join("; "));
        let new = State {
            date: t.date,
            pace_paused: verdicts.iter().any(|v| v.pace_pause),
        };
        let d = if pause {
            Decision::pause(reason)
        } else {
            Decision::run(reason)
        };
        if old == Some(new) {
            d
        } else {
            d.with_state(&new)
        }
    }
}

hashwatt_policy_sdk::export_policy!(Quota);
