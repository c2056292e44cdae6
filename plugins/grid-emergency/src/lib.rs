//! `grid-emergency`: obeys a demand-response signal. While the signal is
//! nonzero the grid operator asks for load shedding, so mining pauses at
//! once; after it clears, mining stays paused for `release_delay_s` so that
//! all appliances do not jump back onto a fragile grid at the same instant.
//!
//! ```toml
//! [policies.grid-emergency]
//! signal = "demand_response"   # number; nonzero = emergency
//! release_delay_s = 600
//! on_unknown = "pause"         # or "run"
//! ```

#![warn(missing_docs)]

use hashwatt_policy_sdk::{Decision, Inputs, OnUnknown, Policy, config, state};
use serde::{Deserialize, Serialize};

/// The operator's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the demand-response signal.
    pub signal: String,
    /// Seconds to stay paused after the emergency clears.
    #[serde(default = "default_release_delay_s")]
    pub release_delay_s: u64,
    /// What to do when the signal is unknown.
    #[serde(default)]
    pub on_unknown: OnUnknown,
}

fn default_release_delay_s() -> u64 {
    300
}

/// Remembered across evaluations and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    /// An emergency was seen and the release delay has not elapsed yet.
    pub holding: bool,
    /// UTC ms when the signal was first seen clear after the emergency.
    pub cleared_at_ms: Option<i64>,
}

/// How often to re-check while the release delay runs.
const RELEASE_POLL_MS: u64 = 1_000;

/// The policy.
#[derive(Debug, Default)]
pub struct GridEmergency {
    config: Option<Config>,
}

impl Policy for GridEmergency {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        if c.signal.is_empty() {
            return Err(config::ConfigError::Invalid("signal must name a signal".into()).into());
        }
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
        let old: State = state::load(&inputs.state).unwrap_or_default();
        let value = match inputs.signal(&c.signal) {
            Ok(v) => v,
            // Keep the state: an unknown value neither starts nor ends one.
            Err(unknown) => return c.on_unknown.decide(&unknown),
        };
        let now = inputs.now.utc_ms;
        let (decision, new) = if value != 0.0 {
            (
                Decision::pause(format!(
                    "demand-response emergency active ({} = {value})",
                    c.signal
                ))
                .next_eval_ms(RELEASE_POLL_MS),
                State {
                    holding: true,
                    cleared_at_ms: None,
                },
            )
        } else if old.holding {
            let cleared = old.cleared_at_ms.unwrap_or(now);
            let elapsed_ms = u64::try_from(now.saturating_sub(cleared)).unwrap_or(0);
            let delay_ms = c.release_delay_s.saturating_mul(1000);
            if elapsed_ms < delay_ms {
                let left_ms = delay_ms - elapsed_ms;
                (
                    Decision::pause(format!(
                        "demand-response cleared {} s ago; releasing in {} s (delay {} s)",
                        elapsed_ms / 1000,
                        left_ms.div_ceil(1000),
                        c.release_delay_s
                    ))
                    .next_eval_ms(left_ms.min(RELEASE_POLL_MS)),
                    State {
                        holding: true,
                        cleared_at_ms: Some(cleared),
                    },
                )
            } else {
                (
                    Decision::run(format!(
                        "demand-response released after {} s delay",
                        c.release_delay_s
                    )),
                    State::default(),
                )
            }
        } else {
            (
                Decision::run(format!("no demand-response emergency ({} = 0)", c.signal)),
                old,
            )
        };
        if new == old {
            decision
        } else {
            decision.with_state(&new)
        }
    }
}

hashwatt_policy_sdk::export_policy!(GridEmergency);
