//! Helpers shared by policy configurations: JSON parsing with readable
//! errors and the common `on_unknown` fail-safe setting.

use serde::{Deserialize, de::DeserializeOwned};

use crate::types::{Decision, Mode, UnknownSignal};

/// Why a policy's configuration was rejected; shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, an unknown field, or a field of the wrong type.
    #[error("invalid config: {0}")]
    Parse(String),
    /// Well-formed but meaningless (e.g. a negative threshold).
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

/// Parses a policy's JSON config; serde's message names the offending field
/// (use `#[serde(deny_unknown_fields)]` so typos are caught).
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ConfigError> {
    serde_json::from_str(json).map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Rejects a non-finite number, and a negative one unless `allow_negative`.
pub fn check_number(field: &str, value: f64, allow_negative: bool) -> Result<(), ConfigError> {
    if !value.is_finite() {
        return Err(ConfigError::Invalid(format!(
            "{field} must be a finite number"
        )));
    }
    if !allow_negative && value < 0.0 {
        return Err(ConfigError::Invalid(format!(
            "{field} must not be negative (got {value})"
        )));
    }
    Ok(())
}

/// What to do when an input the policy needs has no usable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnknown {
    /// Do not mine (fail-safe, the default).
    #[default]
    Pause,
    /// Mine at full power anyway.
    Run,
}

impl OnUnknown {
    /// The mode this setting stands for.
    pub fn mode(self) -> Mode {
        match self {
            OnUnknown::Pause => Mode::Pause,
            OnUnknown::Run => Mode::Run,
        }
    }

    /// The decision for an unknown input, with a reason naming it and why,
    /// e.g. "grid_export unknown (stale); on_unknown = pause".
    pub fn decide(self, what: &UnknownSignal) -> Decision {
        let name = match self {
            OnUnknown::Pause => "pause",
            OnUnknown::Run => "run",
        };
        // Unknown inputs may come back any moment: ask again soon.
        Decision::new(self.mode(), format!("{what}; on_unknown = {name}")).next_eval_ms(5_000)
    }
}
