//! Energy policies: decide whether the appliance may mine now, and how hard.
//!
//! The host owns every input (clock, meter, signals from HTTP, MQTT or
//! files); a policy — normally a sandboxed Wasm plugin, see
//! [`crate::plugin::policy`] — is a pure function of those inputs. The
//! [`engine::PolicyEngine`] evaluates every enabled policy each second and
//! whenever a subscribed signal changes, lets the most restrictive decision
//! win (pause > lowest power limit > run), puts a manual override above all
//! of them, and applies the result through an [`engine::Actuator`].
//!
//! Modules:
//! - [`clock`]: injectable wall clock and time-zone offsets;
//! - [`signal`]: the [`signal::SignalHub`] with the latest value of each named signal;
//! - [`sources`]: tasks that feed the hub (HTTP JSON polling, MQTT, files);
//! - [`arbiter`]: "most restrictive wins" and the manual override;
//! - [`engine`]: evaluation loop, fail-safes, restarts, persistent state, status;
//! - [`actuator`]: the CPU actuator (pause and duty-cycled power limits);
//! - [`backtest`]: replaying a time series through a policy on simulated time.

pub mod actuator;
pub mod arbiter;
pub mod backtest;
pub mod clock;
pub mod engine;
pub mod signal;
pub mod sources;
pub mod state;

use std::fmt;

/// What the appliance may do; mirrors the WIT `mode` so engine logic does
/// not depend on generated bindings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "mode", content = "watts", rename_all = "lowercase")]
pub enum Mode {
    /// Mine at full power.
    Run,
    /// Mine, drawing at most this many watts.
    Limit(f64),
    /// Do not mine.
    Pause,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Run => write!(f, "running"),
            Mode::Limit(w) => write!(f, "limited to {w:.0} W"),
            Mode::Pause => write!(f, "paused"),
        }
    }
}

/// Wall-clock time as handed to a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockReading {
    /// Milliseconds since the Unix epoch, UTC.
    pub utc_ms: i64,
    /// Offset of the configured time zone from UTC at this instant, seconds.
    pub local_offset_s: i32,
    /// IANA time-zone name.
    pub time_zone: String,
}

/// Energy counters from the host's meter, in kWh.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Energy {
    /// Since local midnight.
    pub today_kwh: f64,
    /// Since the first day of the local month.
    pub month_kwh: f64,
    /// Since the counters were created.
    pub total_kwh: f64,
}

/// One temperature sensor reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Temperature {
    /// Sensor name.
    pub name: String,
    /// Degrees Celsius.
    pub celsius: f64,
}

/// The value of a signal as the host knows it.
#[derive(Clone, Debug, PartialEq)]
pub enum SignalValue {
    /// A usable number.
    Number(f64),
    /// No usable value, and why ("missing", "stale (...)", "NaN", "out of range ...").
    Unknown(String),
}

/// A subscribed signal as handed to a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// Name as configured.
    pub name: String,
    /// Latest value or why there is none.
    pub value: SignalValue,
    /// Milliseconds since the value was received (0 if unknown).
    pub age_ms: u64,
}

/// Everything a policy may base its decision on (the WIT `inputs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    /// Wall-clock time.
    pub now: ClockReading,
    /// Power drawn now, watts, if measured.
    pub power_w: Option<f64>,
    /// Energy counters.
    pub energy: Energy,
    /// Current hashrate, H/s.
    pub hashrate_hs: f64,
    /// Temperature readings.
    pub temperatures: Vec<Temperature>,
    /// The policy's subscribed signals, in its order.
    pub signals: Vec<Signal>,
    /// The mode the host applies now.
    pub applied: Mode,
    /// Milliseconds since `applied` last changed.
    pub applied_for_ms: u64,
    /// The policy's persistent state.
    pub state: Vec<u8>,
}

/// A policy's answer (the WIT `decision`).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// What the appliance may do.
    pub mode: Mode,
    /// Why, for the operator.
    pub reason: String,
    /// Ask again after at most this many milliseconds.
    pub next_eval_ms: u32,
    /// New persistent state, or `None` to keep the old one.
    pub state: Option<Vec<u8>>,
}

/// Bounds every decision must respect, whoever produced it.
#[derive(Clone, Copy, Debug)]
pub struct DecisionLimits {
    /// Longest reason accepted, bytes.
    pub max_reason_bytes: usize,
    /// Largest persistent state accepted, bytes.
    pub state_quota: usize,
}

impl Default for DecisionLimits {
    fn default() -> Self {
        DecisionLimits {
            max_reason_bytes: 512,
            state_quota: 64 << 10,
        }
    }
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    /// The reason string is longer than allowed.
    #[error("reason is {len} bytes (at most {max})")]
    ReasonTooLong {
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A power limit that is NaN, infinite or negative.
    #[error("invalid power limit {0} W (must be finite and >= 0)")]
    InvalidLimit(f64),
    /// The new state exceeds the quota.
    #[error("state is {len} bytes (quota {max})")]
    StateTooLarge {
        /// Actual size.
        len: usize,
        /// Quota.
        max: usize,
    },
}

/// Checks a decision against `limits`; a refused decision counts as a
/// failure of the policy (its fail-safe applies), never as a mode.
pub fn validate_decision(d: &Decision, limits: &DecisionLimits) -> Result<(), DecisionError> {
    if d.reason.len() > limits.max_reason_bytes {
        return Err(DecisionError::ReasonTooLong {
            len: d.reason.len(),
            max: limits.max_reason_bytes,
        });
    }
    if let Mode::Limit(w) = d.mode
        && !(w.is_finite() && w >= 0.0)
    {
        return Err(DecisionError::InvalidLimit(w));
    }
    if let Some(state) = &d.state
        && state.len() > limits.state_quota
    {
        return Err(DecisionError::StateTooLarge {
            len: state.len(),
            max: limits.state_quota,
        });
    }
    Ok(())
}

/// A policy the engine can evaluate: a Wasm plugin instance
/// ([`crate::plugin::policy::PolicyPlugin`]) or a native implementation
/// (tests, built-ins). Errors kill the instance; the engine restarts it
/// through its [`PolicyFactory`].
pub trait PolicyBackend: Send {
    /// Signal names the policy wants, in order.
    fn subscriptions(&self) -> Vec<String>;
    /// Decides what the appliance may do now.
    fn evaluate(&mut self, inputs: &Inputs) -> Result<Decision, String>;
}

/// Creates fresh policy instances: at start and after every failure.
pub trait PolicyFactory: Send + Sync {
    /// A new, configured instance, or why it cannot be created.
    fn create(&self) -> Result<Box<dyn PolicyBackend>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(mode: Mode, reason: &str, state: Option<usize>) -> Decision {
        Decision {
            mode,
            reason: reason.into(),
            next_eval_ms: 1000,
            state: state.map(|n| vec![0; n]),
        }
    }

    #[test]
    fn decisions_are_validated() {
        let l = DecisionLimits {
            max_reason_bytes: 8,
            state_quota: 4,
        };
        assert!(validate_decision(&decision(Mode::Limit(0.0), "ok", Some(4)), &l).is_ok());
        assert!(validate_decision(&decision(Mode::Run, "123456789", None), &l).is_err());
        for w in [f64::NAN, f64::INFINITY, -1.0] {
            assert!(
                validate_decision(&decision(Mode::Limit(w), "", None), &l).is_err(),
                "{w}"
            );
        }
        assert_eq!(
            validate_decision(&decision(Mode::Pause, "", Some(5)), &l),
            Err(DecisionError::StateTooLarge { len: 5, max: 4 })
        );
    }
}
