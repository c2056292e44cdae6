//! A calibrated power model: the fallback that works on every machine.
//!
//! Where nothing measures power, the draw is estimated from the hashrate:
//! `watts = idle_w + joules_per_hash(backend) × hashrate`, with the
//! joules-per-hash derived from one calibration point per hashing backend
//! (watts measured at a reference hashrate, e.g. with a wall plug meter
//! during `hashwatt bench hash`).

use std::{collections::BTreeMap, time::Instant};

use serde::{Deserialize, Serialize};

use super::{MeterError, PowerSource, Sample, avg_watts, elapsed};

const NAME: &str = "model";

/// One calibration point of a hashing backend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Hashrate at which the power was measured, in hashes per second.
    pub ref_hashrate_hs: f64,
    /// Whole-appliance power at that hashrate, in watts.
    pub watts_at_ref: f64,
}

/// Operator configuration of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Power drawn while not hashing, in watts.
    pub idle_w: f64,
    /// Calibration per hashing backend name (e.g. `cpu`, `sha-ni`).
    pub backends: BTreeMap<String, Calibration>,
    /// The most the appliance can draw (its full-load rating), watts:
    /// estimates stop here when the hashrate runs above the calibration
    /// point, so a CPU that turbos past its benchmark is not reported as
    /// drawing more than its supply. `None` extrapolates linearly.
    #[serde(default)]
    pub max_w: Option<f64>,
}

impl ModelConfig {
    /// A model with one calibrated backend, the common case.
    pub fn single(backend: &str, idle_w: f64, watts_at_ref: f64, ref_hashrate_hs: f64) -> Self {
        Self {
            idle_w,
            backends: BTreeMap::from([(
                backend.to_owned(),
                Calibration {
                    ref_hashrate_hs,
                    watts_at_ref,
                },
            )]),
            max_w: None,
        }
    }

    /// The same model with estimates capped at `max_w` watts.
    pub fn capped_at(mut self, max_w: f64) -> Self {
        self.max_w = Some(max_w);
        self
    }

    /// Checks the configuration and returns the joules per hash of `backend`.
    pub fn joules_per_hash(&self, backend: &str) -> Result<f64, MeterError> {
        let bad = |m: String| Err(MeterError::InvalidConfig(m));
        if !self.idle_w.is_finite() || self.idle_w < 0.0 {
            return bad(format!(
                "idle_w must be a non-negative number, got {}",
                self.idle_w
            ));
        }
        let Some(c) = self.backends.get(backend) else {
            return bad(format!("no calibration for backend {backend:?}"));
        };
        if !c.ref_hashrate_hs.is_finite() || c.ref_hashrate_hs <= 0.0 {
            return bad(format!(
                "{backend}: ref_hashrate_hs must be positive, got {}",
                c.ref_hashrate_hs
            ));
        }
        if !c.watts_at_ref.is_finite() || c.watts_at_ref < self.idle_w {
            return bad(format!(
                "{backend}: watts_at_ref ({}) must be a number >= idle_w ({})",
                c.watts_at_ref, self.idle_w
            ));
        }
        Ok((c.watts_at_ref - self.idle_w) / c.ref_hashrate_hs)
    }
}

/// Estimates power from the hashrate of the active backend.
#[derive(Debug, Clone)]
pub struct ModelSource {
    config: ModelConfig,
    backend: String,
    joules_per_hash: f64,
    last: Option<Instant>,
}

impl ModelSource {
    /// A model for `backend`; fails if the configuration is unusable.
    pub fn new(config: ModelConfig, backend: &str) -> Result<Self, MeterError> {
        let joules_per_hash = config.joules_per_hash(backend)?;
        Ok(Self {
            config,
            backend: backend.to_owned(),
            joules_per_hash,
            last: None,
        })
    }

    /// Switches to another calibrated backend (the host changed hasher).
    pub fn set_backend(&mut self, backend: &str) -> Result<(), MeterError> {
        self.joules_per_hash = self.config.joules_per_hash(backend)?;
        self.backend = backend.to_owned();
        Ok(())
    }

    /// The active backend's joules per hash.
    pub fn joules_per_hash(&self) -> f64 {
        self.joules_per_hash
    }

    /// Estimated power at `hashrate_hs`, in watts.
    pub fn watts_at(&self, hashrate_hs: f64) -> Result<f64, MeterError> {
        if !hashrate_hs.is_finite() || hashrate_hs < 0.0 {
            return Err(MeterError::InvalidInput {
                what: "hashrate",
                value: hashrate_hs,
            });
        }
        let watts = self.config.idle_w + self.joules_per_hash * hashrate_hs;
        Ok(match self.config.max_w {
            Some(max) if max.is_finite() => watts.min(max.max(self.config.idle_w)),
            _ => watts,
        })
    }
}

impl PowerSource for ModelSource {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Energy of the interval at the current hashrate (the host samples
    /// often enough that the hashrate is roughly constant in between).
    fn sample(&mut self, now: Instant, hashrate_hs: f64) -> Result<Sample, MeterError> {
        let watts = self.watts_at(hashrate_hs)?;
        let interval = elapsed(self.last, now);
        self.last = Some(now);
        let joules = watts * interval.as_secs_f64();
        Ok(Sample {
            watts: avg_watts(joules, interval).or(Some(watts)),
            joules,
            interval,
            source: NAME,
        })
    }
}
