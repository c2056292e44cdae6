//! A pool's `settings` table, parsed into the plugin's own type with errors
//! that name the key. The operator writes the table in TOML; the host hands
//! it over as a JSON object. Declare the type with
//! `#[serde(deny_unknown_fields)]` so a typo (`suggest_dificulty`) is
//! refused instead of silently ignored.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Default, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct MySettings {
//!     suggest_difficulty: Option<f64>,
//! }
//!
//! let s: MySettings = hashwatt_pool_sdk::settings::parse(r#"{"suggest_difficulty": 512}"#).unwrap();
//! assert_eq!(s.suggest_difficulty, Some(512.0));
//! let e = hashwatt_pool_sdk::settings::parse::<MySettings>(r#"{"sugest": 1}"#).unwrap_err();
//! assert!(e.to_string().contains("unknown field `sugest`"));
//! ```

use serde::de::DeserializeOwned;

/// Why settings were refused; the text is shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settings: {0}")]
pub struct SettingsError(pub String);

impl From<SettingsError> for String {
    fn from(e: SettingsError) -> String {
        e.to_string()
    }
}

/// Parses the settings JSON; blank text is an empty table, so a pool
/// without settings needs none of the plugin's fields to be optional
/// beyond `Default`.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, SettingsError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| {
        // The JSON is the host's rendering of the operator's TOML: its
        // line and column would point nowhere the operator can look.
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        SettingsError(full.strip_suffix(&position).unwrap_or(&full).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct S {
        region: Option<String>,
        fast: bool,
    }

    #[test]
    fn parses_and_names_what_is_wrong() {
        assert_eq!(parse::<S>("").unwrap(), S::default());
        assert_eq!(
            parse::<S>(r#"{"fast": true, "region": "eu"}"#).unwrap(),
            S {
                region: Some("eu".into()),
                fast: true
            }
        );
        let e = parse::<S>(r#"{"fats": true}"#).unwrap_err().to_string();
        assert!(e.starts_with("settings: unknown field `fats`"), "{e}");
        assert!(!e.contains("line 1"), "{e}");
        let e = parse::<S>(r#"{"fast": "yes"}"#).unwrap_err().to_string();
        assert!(
            e.contains("invalid type: string \"yes\", expected a boolean"),
            "{e}"
        );
        assert!(parse::<S>("[1]").is_err());
    }
}
