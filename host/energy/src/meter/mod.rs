//! Power sources: where the watts and joules come from.
//!
//! Every source answers the same question, "how much energy since you were
//! last asked?", through [`PowerSource::sample`]. Measured sources (RAPL, an
//! external meter) are preferred; the calibrated model is the fallback that
//! always works. [`FallbackSource`] keeps every source's baseline current
//! so switching between them never double-counts or drops an interval.

pub mod external;
pub mod model;
pub mod rapl;

use std::{path::Path, time::Duration, time::Instant};

/// Why a power source could not produce a sample (or be set up).
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The source does not exist or cannot be read on this machine (no
    /// RAPL zones, permission denied, VM without powercap...).
    #[error("{source_name} unavailable: {reason}")]
    Unavailable {
        /// Which source.
        source_name: &'static str,
        /// Human-readable cause, for the operator.
        reason: String,
    },
    /// A counter file held something that is not a number in range.
    #[error("{path}: unexpected content {content:?}")]
    BadCounter {
        /// File that was read.
        path: String,
        /// What it contained (trimmed, truncated).
        content: String,
    },
    /// Reading a counter failed after it had worked before.
    #[error("{path}: {err}")]
    Io {
        /// File that was read.
        path: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The last external reading is older than its allowed age.
    #[error("external meter reading is {age_s:.0} s old (max {max_s:.0} s)")]
    Stale {
        /// Age of the newest reading.
        age_s: f64,
        /// Configured maximum age.
        max_s: f64,
    },
    /// An input value (hashrate, pushed reading) is NaN, infinite or negative.
    #[error("invalid {what}: {value}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// Model configuration cannot describe a real machine.
    #[error("invalid power model: {0}")]
    InvalidConfig(String),
}

/// One answer from a power source, covering the interval since the previous
/// call to [`PowerSource::sample`] on the same source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Average power over `interval`, in watts; `None` when there is no
    /// interval yet (the first call of a counter-based source).
    pub watts: Option<f64>,
    /// Energy used during `interval`, in joules. Feed this to the ledger.
    pub joules: f64,
    /// Time since the previous sample of this source (zero on the first).
    pub interval: Duration,
    /// Which source produced it (`"rapl"`, `"model"`, `"external"`), for
    /// status pages and reports.
    pub source: &'static str,
}

/// Something that can tell how much energy the appliance used.
///
/// Sources are polled by the host, typically once a second. The `now`
/// instant is passed in (not read inside) so tests can drive time.
pub trait PowerSource: Send {
    /// Short stable name used in [`Sample::source`].
    fn name(&self) -> &'static str;

    /// Energy used since the previous call. `hashrate_hs` is the current
    /// hashrate (hashes per second), used by the model and ignored by
    /// measuring sources.
    fn sample(&mut self, now: Instant, hashrate_hs: f64) -> Result<Sample, MeterError>;
}

/// Time between two instants, zero if the clock went backwards or `prev`
/// is unset.
pub(crate) fn elapsed(prev: Option<Instant>, now: Instant) -> Duration {
    prev.map(|p| now.saturating_duration_since(p))
        .unwrap_or(Duration::ZERO)
}

/// Average power, or `None` for an empty interval.
pub(crate) fn avg_watts(joules: f64, interval: Duration) -> Option<f64> {
    let s = interval.as_secs_f64();
    (s > 0.0).then(|| joules / s)
}

/// A primary source backed by a fallback (normally the model).
///
/// Both are sampled on every call so each keeps its own baseline current;
/// the primary's sample is returned when it works, otherwise the fallback's.
/// A primary failure is logged once per outage, not once per second.
pub struct FallbackSource {
    primary: Box<dyn PowerSource>,
    fallback: Box<dyn PowerSource>,
    primary_failing: bool,
}

impl FallbackSource {
    /// Combines `primary` with `fallback`.
    pub fn new(primary: Box<dyn PowerSource>, fallback: Box<dyn PowerSource>) -> Self {
        Self {
            primary,
            fallback,
            primary_failing: false,
        }
    }

    /// Whether the last sample came from the fallback because the primary
    /// failed, for status display.
    pub fn on_fallback(&self) -> bool {
        self.primary_failing
    }
}

impl PowerSource for FallbackSource {
    fn name(&self) -> &'static str {
        if self.primary_failing {
            self.fallback.name()
        } else {
            self.primary.name()
        }
    }

    fn sample(&mut self, now: Instant, hashrate_hs: f64) -> Result<Sample, MeterError> {
        let primary = self.primary.sample(now, hashrate_hs);
        let fallback = self.fallback.sample(now, hashrate_hs);
        match primary {
            // The primary just (re)started its baseline and covers no time
            // yet; the fallback's interval must not be dropped.
            Ok(s) if s.interval.is_zero() => match fallback {
                Ok(f) if !f.interval.is_zero() => Ok(f),
                _ => Ok(s),
            },
            Ok(s) => {
                if self.primary_failing {
                    tracing::info!(source = s.source, "energy meter recovered");
                    self.primary_failing = false;
                }
                Ok(s)
            }
            Err(e) => {
                if !self.primary_failing {
                    tracing::warn!(
                        primary = self.primary.name(),
                        fallback = self.fallback.name(),
                        error = %e,
                        "energy meter failed, using fallback"
                    );
                    self.primary_failing = true;
                }
                fallback
            }
        }
    }
}

/// Picks the best source available on this machine: RAPL (with the model
/// as fallback) when readable under `powercap_root` (normally
/// `/sys/class/powercap`), otherwise the model alone for `backend`.
///
/// The second value says why RAPL is not used, for the host to log once.
/// Fails only if the model configuration is invalid.
pub fn auto(
    powercap_root: &Path,
    model: model::ModelConfig,
    backend: &str,
) -> Result<(Box<dyn PowerSource>, Option<MeterError>), MeterError> {
    let model = model::ModelSource::new(model, backend)?;
    match rapl::RaplSource::discover(powercap_root) {
        Ok(rapl) => Ok((
            Box::new(FallbackSource::new(Box::new(rapl), Box::new(model))),
            None,
        )),
        Err(e) => Ok((Box::new(model), Some(e))),
    }
}
