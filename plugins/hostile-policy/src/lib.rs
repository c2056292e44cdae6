//! `hostile-policy`: a test-only policy that misbehaves when its signal
//! says so, so tests can prove that a policy cannot stop the appliance from
//! following the operator's fail-safe choice.
//!
//! ```toml
//! signal = "hostile"   # 0 = behave (run), 1 = infinite loop, 2 = trap,
//!                      # 3 = grow memory forever, 4 = absurd output
//! ```

#![warn(missing_docs)]

use std::hint::black_box;

use hashwatt_policy_sdk::{Decision, Inputs, Mode, Policy, config};
use serde::Deserialize;

/// The operator's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The signal that selects the misbehaviour.
    pub signal: String,
}

/// The policy.
#[derive(Debug, Default)]
pub struct Hostile {
    signal: String,
}

impl Policy for Hostile {
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let c: Config = config::parse(config_json)?;
        self.signal = c.signal;
        Ok(())
    }

    fn subscriptions(&self) -> Vec<String> {
        vec![self.signal.clone()]
    }

    fn evaluate(&mut self, inputs: &Inputs) -> Decision {
        let how = inputs.signal(&self.signal).map(|n| n as i64).unwrap_or(0);
        match how {
            1 => loop {
                black_box(());
            },
            2 => core::panic!("hostile policy asked to trap"),
            3 => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            4 => Decision {
                mode: Mode::Limit(f64::NAN),
                reason: "x".repeat(1 << 20),
                next_eval_ms: 0,
                state: Some(vec![0; 8 << 20]),
            },
            _ => Decision::run("behaving"),
        }
    }
}

hashwatt_policy_sdk::export_policy!(Hostile);
