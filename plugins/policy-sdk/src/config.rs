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
/// (use `#[serde(deny_unknown_fields)]` so typos are caught). The JSON is
/// written by the host from the operator's TOML, so the message leaves out
/// serde_json's line and column, which would point into that JSON.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ConfigError> {
    serde_json::from_str(json).map_err(|e| {
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&position).unwrap_or(&full);
        ConfigError::Parse(message.to_string())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        threshold_kw: f64,
    }

    #[test]
    fn unknown_field_is_named_without_a_json_position() {
        let e = parse::<Settings>(r#"{"treshold_kw": 1.0}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: unknown field `treshold_kw`, expected `threshold_kw`"
        );
        let e = parse::<Settings>(r#"{"threshold_kw": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        assert!(!e.to_string().contains("column"), "{e}");
    }
}
