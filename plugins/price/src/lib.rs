//! `price`: mine only while electricity is cheap enough. Pauses above
//! `max_price`; in `limit` mode the power limit also falls linearly from
//! `full_power_w` at `price_full` to `min_power_w` at `max_price`, so the
//! appliance mines harder the cheaper the power. The host's price feed
//! supplies the current price as one signal.
//!
//! ```toml
//! [policies.price]
//! signal = "price"
//! unit = "EUR/MWh"          # wording in reasons
//! max_price = 150.0
//! mode = "limit"            # "pause" (default) or "limit"
//! price_full = 80.0         # limit mode: full power at or below this
//! full_power_w = 3000.0
//! min_power_w = 500.0
//! on_unknown = "pause"
//! ```

#![warn(missing_docs)]

use hashwatt_policy_sdk::config::{self, ConfigError};
use hashwatt_policy_sdk::fmt::num;
use hashwatt_policy_sdk::{Decision, Inputs, OnUnknown, Policy};
use serde::Deserialize;

/// How the policy reacts to prices below `max_price`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceMode {
    /// Run at full power up to `max_price`.
    #[default]
    Pause,
    /// Scale a power limit between `price_full` and `max_price`.
    Limit,
}

/// The operator's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the current-price signal.
    pub signal: String,
    /// The price unit, for reasons.
    #[serde(default = "default_unit")]
    pub unit: String,
    /// Pause above this price.
    pub max_price: f64,
    /// Reaction below `max_price`.
    #[serde(default)]
    pub mode: PriceMode,
    /// Limit mode: full power at or below this price.
    pub price_full: Option<f64>,
    /// Limit mode: the limit at `price_full`, W.
    pub full_power_w: Option<f64>,
    /// Limit mode: the limit at `max_price`, W.
    pub min_power_w: Option<f64>,
    /// What to do when the price is unknown.
    #[serde(default)]
    pub on_unknown: OnUnknown,
}

fn default_unit() -> String {
    "EUR/MWh".into()
}

/// Validated limit-mode parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    price_full: f64,
    full_w: f64,
    min_w: f64,
}

/// The policy.
#[derive(Debug, Default)]
pub struct Price {
    config: Option<(Config, Option<Scale>)>,
}

fn required(field: &str, v: Option<f64>) -> Result<f64, ConfigError> {
    v.ok_or_else(|| ConfigError::Invalid(format!("mode = \"limit\" needs {field}")))
}

fn validate(c: &Config) -> Result<Option<Scale>, ConfigError> {
    if c.signal.is_empty() {
        return Err(ConfigError::Invalid("signal must name a signal".into()));
    }
    // Prices may be negative (surplus hours), powers not.
    config::check_number("max_price", c.max_price, true)?;
    match c.mode {
        PriceMode::Pause => {
            if c.price_full.is_some() || c.full_power_w.is_some() || c.min_power_w.is_some() {
                return Err(ConfigError::Invalid(
                    "price_full, full_power_w and min_power_w need mode = \"limit\"".into(),
                ));
            }
            Ok(None)
        }
        PriceMode::Limit => {
            let price_full = required("price_full", c.price_full)?;
            let full_w = required("full_power_w", c.full_power_w)?;
            let min_w = required("min_power_w", c.min_power_w)?;
            config::check_number("price_full", price_full, true)?;
            config::check_number("full_power_w", full_w, false)?;
            config::check_number("min_power_w", min_w, false)?;
            if price_full >= c.max_price {
                return Err(ConfigError::Invalid(format!(
                    "price_full ({price_full}) must be below max_price ({})",
                    c.max_price
                )));
            }
            if min_w > full_w {
                return Err(ConfigError::Invalid(format!(
                    "min_power_w ({min_w}) must not exceed full_power_w ({full_w})"
                )));
            }
            Ok(Some(Scale {
                price_full,
                full_w,
                min_w,
            }))
        }
    }
}

impl Policy for Price {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        let scale = validate(&c)?;
        self.config = Some((c, scale));
        Ok(())
    }

    fn subscriptions(&self) -> Vec<String> {
        self.config.iter().map(|(c, _)| c.signal.clone()).collect()
    }

    fn evaluate(&mut self, inputs: &Inputs) -> Decision {
        let Some((c, scale)) = &self.config else {
            return Decision::pause("not configured");
        };
        let p = match inputs.signal(&c.signal) {
            Ok(p) => p,
            Err(unknown) => return c.on_unknown.decide(&unknown),
        };
        let unit = &c.unit;
        let (ps, max) = (num(p), num(c.max_price));
        if p > c.max_price {
            return Decision::pause(format!("price {ps} {unit} > max {max} {unit}"));
        }
        match scale {
            None => Decision::run(format!("price {ps} {unit} ≤ max {max} {unit}")),
            Some(s) if p <= s.price_full => Decision::run(format!(
                "price {ps} {unit} ≤ {} {unit}: full power",
                num(s.price_full)
            )),
            Some(s) => {
                let frac = (p - s.price_full) / (c.max_price - s.price_full);
                let watts = (s.full_w - frac * (s.full_w - s.min_w)).round();
                Decision::limit(
                    watts,
                    format!(
                        "price {ps} {unit} between {} and {max} {unit}: limit {watts:.0} W",
                        num(s.price_full)
                    ),
                )
            }
        }
    }
}

hashwatt_policy_sdk::export_policy!(Price);
