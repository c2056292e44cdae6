//! The per-pool settings this plugin accepts (WIT `pool-config.settings`,
//! checked by `plugin-info.validate-settings`).
//!
//! The operator writes them as the pool's `settings` table; the host hands
//! them over as a JSON object. Parsing is strict — an unknown key or a value
//! of the wrong type is refused with the key's name — because a typo that is
//! silently ignored (`suggest_dificulty = 512`) costs the operator hours.
//!
//! ```toml
//! [[pools]]
//! url = "stratum+tcp://pool.example.com:3333"
//! user = "worker1"
//! [pools.settings]
//! suggest_difficulty = 512
//! ```

use serde_json::Value;
use thiserror::Error;

/// The keys [`Settings::parse`] accepts, for error messages.
pub const KNOWN_KEYS: &str = "suggest_difficulty";

/// Longest key or value quoted back in an error message, in bytes: the text
/// comes from the operator's file and ends up in logs and the status page.
const MAX_QUOTED: usize = 64;

/// The settings of one pool, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Difficulty to suggest with `mining.suggest_difficulty` right after
    /// `mining.subscribe` (as cgminer and the Bitaxe firmware do), so a pool
    /// that honours it starts a slow device at a share rate it can sustain.
    /// `None`: suggest nothing and take the pool's default.
    pub suggest_difficulty: Option<f64>,
}

/// Why settings were refused; the message names the key and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    /// The text is not JSON (a host bug: the host always sends an object).
    #[error("settings are not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("settings must be a table (JSON object), got {0}")]
    NotObject(&'static str),
    /// A key this plugin does not know, probably a typo.
    #[error("settings.{key}: unknown setting (known: {KNOWN_KEYS})")]
    UnknownKey {
        /// The key as written (cut to a few dozen bytes).
        key: String,
    },
    /// A known key with a value of the wrong type or out of range.
    #[error("settings.{key}: expected {expected}, got {got}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// What the key takes.
        expected: &'static str,
        /// The value as written, as JSON (cut to a few dozen bytes).
        got: String,
    },
}

impl Settings {
    /// Parses the JSON object the host hands over. Empty or blank text is
    /// taken as no settings (`{}`), so a config built with `Default` works.
    pub fn parse(json: &str) -> Result<Settings, SettingsError> {
        if json.trim().is_empty() {
            return Ok(Settings::default());
        }
        let value: Value =
            serde_json::from_str(json).map_err(|e| SettingsError::NotJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(SettingsError::NotObject(kind(&value)));
        };
        let mut settings = Settings::default();
        for (key, value) in &map {
            match key.as_str() {
                "suggest_difficulty" => {
                    let d = value
                        .as_f64()
                        .filter(|d| d.is_finite() && *d > 0.0)
                        .ok_or_else(|| SettingsError::InvalidValue {
                            key: "suggest_difficulty",
                            expected: "a positive number",
                            got: quote(&value.to_string()),
                        })?;
                    settings.suggest_difficulty = Some(d);
                }
                other => {
                    return Err(SettingsError::UnknownKey { key: quote(other) });
                }
            }
        }
        Ok(settings)
    }

    /// `suggest_difficulty` as the JSON value to send: an integer when it is
    /// one (pools parse `512` more reliably than `512.0`), else the float.
    pub fn suggest_difficulty_param(&self) -> Option<Value> {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        self.suggest_difficulty.map(|d| {
            if d.fract() == 0.0 && d <= EXACT {
                // Exact: an integral f64 below 2^53 converts without loss.
                Value::from(d as u64)
            } else {
                Value::from(d)
            }
        })
    }
}

/// The JSON type of `v`, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Cuts operator text to [`MAX_QUOTED`] bytes on a character boundary.
fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTED {
        return s.to_string();
    }
    let mut end = MAX_QUOTED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_settings() {
        for (json, want) in [
            ("", None),
            ("  ", None),
            ("{}", None),
            (r#"{"suggest_difficulty": 512}"#, Some(512.0)),
            (r#"{"suggest_difficulty": 0.5}"#, Some(0.5)),
            (r#"{"suggest_difficulty": 1e6}"#, Some(1e6)),
        ] {
            let s = Settings::parse(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(s.suggest_difficulty, want, "{json}");
        }
    }

    #[test]
    fn refused_settings_name_the_key() {
        for (json, want) in [
            ("not json", "settings are not valid JSON"),
            (
                "[1]",
                "settings must be a table (JSON object), got an array",
            ),
            (
                "512",
                "settings must be a table (JSON object), got a number",
            ),
            (
                r#"{"suggest_dificulty": 512}"#,
                "settings.suggest_dificulty: unknown setting (known: suggest_difficulty)",
            ),
            (
                r#"{"suggest_difficulty": "high"}"#,
                r#"settings.suggest_difficulty: expected a positive number, got "high""#,
            ),
            (
                r#"{"suggest_difficulty": 0}"#,
                "settings.suggest_difficulty: expected a positive number, got 0",
            ),
            (
                r#"{"suggest_difficulty": -3.5}"#,
                "settings.suggest_difficulty: expected a positive number, got -3.5",
            ),
            (
                r#"{"suggest_difficulty": true}"#,
                "settings.suggest_difficulty: expected a positive number, got true",
            ),
        ] {
            let e = Settings::parse(json).unwrap_err().to_string();
            assert!(e.starts_with(want), "{json}: {e}");
        }
    }

    #[test]
    fn long_keys_are_cut() {
        let key = "é".repeat(200);
        let e = Settings::parse(&format!(r#"{{"{key}": 1}}"#)).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn integral_difficulties_are_sent_as_integers() {
        let param = |d| {
            Settings {
                suggest_difficulty: Some(d),
            }
            .suggest_difficulty_param()
            .unwrap()
            .to_string()
        };
        assert_eq!(param(512.0), "512");
        assert_eq!(param(0.25), "0.25");
        assert_eq!(param(1e300), "1e+300");
        assert_eq!(Settings::default().suggest_difficulty_param(), None);
    }
}
