//! Frequency and voltage search for a board, and its persisted result.
//!
//! [`Autotuner`] is a state machine with no clock or I/O of its own: it
//! says which [`Setting`] to apply, the caller runs the board for a settle
//! window and hands back the averaged [`Observation`], until the tuner is
//! [`TuneStep::Done`]. That keeps the search testable against a model and
//! lets the caller decide how long to settle.
//!
//! The search walks the stability frontier from the coolest corner: start
//! at the lowest frequency and voltage; after an acceptable observation
//! raise the frequency one step; after too many hardware errors raise the
//! voltage one step at the same frequency (where the regulator allows).
//! It ends when the power target is exceeded (more frequency or voltage
//! only adds power), a chip is over temperature, the voltage cannot rise
//! further, the frequency range is exhausted, efficiency has stopped
//! improving (`patience`) or the step budget is spent. Its length is thus
//! bounded by the number of frequency plus voltage steps.
//!
//! Results are saved per board as JSON with [`save`] and read back with
//! [`load`], so a restart applies the tuned setting without searching.

#![warn(missing_docs)]

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

/// Largest result file read back; a real one is a few hundred bytes, so
/// anything bigger is corrupt and is not read whole into memory.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Longest sanitized board id kept in a file name.
const MAX_ID_CHARS: usize = 64;

/// Why tuning could not start, or a result could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// The bounds or limits given to [`Autotuner::new`] are unusable.
    #[error("autotune bounds: {0}")]
    InvalidBounds(String),
    /// The board id cannot name a file (empty).
    #[error("board id {0:?} cannot name a tuning file")]
    InvalidBoardId(String),
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid result (torn, edited, garbage, too large).
    #[error("{path}: corrupt tuning result: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is valid but belongs to another board.
    #[error("{path}: tuning result for board {found:?}, not {expected:?}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The board asked for.
        expected: String,
        /// The board in the file.
        found: String,
    },
    /// The result has values JSON cannot carry (NaN, infinity).
    #[error("tuning result not savable: {0}")]
    Invalid(String),
}

/// What the operator wants from the board.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TuneGoal {
    /// Highest hashrate whose power stays at or below this many watts.
    PowerTarget(f64),
    /// Lowest joules per terahash.
    BestEfficiency,
}

/// The region the search may explore; chosen per chip model and board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneBounds {
    /// Lowest frequency tried, MHz (the search starts here).
    pub min_mhz: f32,
    /// Highest frequency tried, MHz.
    pub max_mhz: f32,
    /// Frequency increment, MHz.
    pub step_mhz: f32,
    /// `(min_mv, max_mv, step_mv)` when the regulator is settable; `None`
    /// searches frequency only.
    pub voltage: Option<(u32, u32, u32)>,
}

/// Acceptance criteria and budget of a search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneLimits {
    /// Highest acceptable hardware error rate, errors per nonce.
    pub max_hw_error_rate: f64,
    /// Highest acceptable chip temperature during the settle window, °C.
    pub max_temp_c: f64,
    /// Most settings applied (retries included) before giving the best so far.
    pub max_steps: u32,
    /// For [`TuneGoal::BestEfficiency`]: stop after this many accepted
    /// settings in a row that did not improve J/TH.
    pub patience: u32,
}

impl Default for TuneLimits {
    fn default() -> Self {
        Self {
            max_hw_error_rate: 0.01,
            max_temp_c: 75.0,
            max_steps: 100,
            patience: 3,
        }
    }
}

/// A point of the search: what the caller applies to the chips and rail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Chip frequency, MHz.
    pub frequency_mhz: f32,
    /// Rail voltage, mV; `None` leaves a fixed rail alone.
    pub voltage_mv: Option<u32>,
}

/// The caller's measurement of one setting, averaged over its settle window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Hashrate from accepted nonces, H/s.
    pub hashrate_hs: f64,
    /// Rail power, W.
    pub power_w: f64,
    /// Hardware errors per nonce.
    pub hw_error_rate: f64,
    /// Hottest chip seen, °C.
    pub max_temp_c: f64,
}

impl Observation {
    fn is_valid(&self) -> bool {
        [
            self.hashrate_hs,
            self.power_w,
            self.hw_error_rate,
            self.max_temp_c,
        ]
        .iter()
        .all(|v| v.is_finite())
            && self.hashrate_hs >= 0.0
            && self.power_w > 0.0
            && self.hw_error_rate >= 0.0
    }

    /// Joules per terahash; infinite without hashrate.
    pub fn joules_per_th(&self) -> f64 {
        if self.hashrate_hs > 0.0 {
            self.power_w / (self.hashrate_hs / 1e12)
        } else {
            f64::INFINITY
        }
    }
}

/// The tuned setting of one board with what it achieved, persisted so a
/// restart skips the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneResult {
    /// The board this applies to.
    pub board_id: String,
    /// Chip model, e.g. "BM1370"; a result is not reused on another model.
    pub model: String,
    /// The goal it was tuned for.
    pub goal: TuneGoal,
    /// Chosen frequency, MHz.
    pub frequency_mhz: f32,
    /// Chosen voltage, mV (`None` on a fixed rail).
    pub voltage_mv: Option<u32>,
    /// Measured hashrate, H/s.
    pub hashrate_hs: f64,
    /// Measured power, W.
    pub power_w: f64,
    /// Measured efficiency, J/TH.
    pub joules_per_th: f64,
    /// When tuned, seconds since the Unix epoch.
    pub tuned_at_unix: u64,
}

impl TuneResult {
    /// The setting to apply.
    pub fn setting(&self) -> Setting {
        Setting {
            frequency_mhz: self.frequency_mhz,
            voltage_mv: self.voltage_mv,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.board_id.is_empty() {
            return Err("empty board_id".into());
        }
        if !(self.frequency_mhz.is_finite() && self.frequency_mhz > 0.0) {
            return Err(format!("frequency_mhz {}", self.frequency_mhz));
        }
        for (name, v) in [
            ("hashrate_hs", self.hashrate_hs),
            ("power_w", self.power_w),
            ("joules_per_th", self.joules_per_th),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} {v}"));
            }
        }
        if let TuneGoal::PowerTarget(w) = self.goal
            && !(w.is_finite() && w > 0.0)
        {
            return Err(format!("power target {w}"));
        }
        Ok(())
    }
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum TuneStep {
    /// Apply this setting, settle, and call [`Autotuner::next`] with the
    /// observation.
    Apply(Setting),
    /// The search is over; apply and persist the result.
    Done(TuneResult),
    /// No setting was acceptable; go back to `fallback` (the start setting).
    Abandoned {
        /// Why, for the operator.
        reason: String,
        /// The setting the board had before tuning.
        fallback: Setting,
    },
}

/// How a tried setting fared, kept for status and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within every limit.
    Accepted,
    /// Too many hardware errors (or no hashrate).
    HwErrors,
    /// A chip ran too hot.
    OverTemperature,
    /// Power above the target.
    OverPower,
}

/// One tried setting, its observation and verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    /// What was applied.
    pub setting: Setting,
    /// What was measured.
    pub observation: Observation,
    /// How it was judged.
    pub verdict: Verdict,
}

/// The search state; one per board and tuning run.
#[derive(Debug, Clone)]
pub struct Autotuner {
    goal: TuneGoal,
    bounds: TuneBounds,
    limits: TuneLimits,
    start: Setting,
    board_id: String,
    model: String,
    clock: fn() -> u64,
    freq_index: u32,
    voltage_mv: Option<u32>,
    pending: Option<Setting>,
    steps: u32,
    stale: u32,
    best: Option<(Setting, Observation)>,
    trials: Vec<Trial>,
    finished: Option<TuneStep>,
}

/// The wall clock in Unix seconds, for [`TuneResult::tuned_at_unix`];
/// 0 if the clock is before 1970.
pub fn system_unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Autotuner {
    /// A search toward `goal` within `bounds`; `start` is the setting to
    /// fall back to if nothing is acceptable. Rejects unusable bounds.
    pub fn new(goal: TuneGoal, bounds: TuneBounds, start: Setting) -> Result<Self, TuneError> {
        let b = &bounds;
        let bad = |m: String| Err(TuneError::InvalidBounds(m));
        if !(b.min_mhz.is_finite() && b.max_mhz.is_finite() && b.step_mhz.is_finite()) {
            return bad(format!("{b:?}: not numbers"));
        }
        if b.min_mhz <= 0.0 || b.min_mhz > b.max_mhz {
            return bad(format!("frequency {}..={} MHz", b.min_mhz, b.max_mhz));
        }
        if b.step_mhz <= 0.0 {
            return bad(format!("frequency step {} MHz", b.step_mhz));
        }
        if let Some((lo, hi, step)) = b.voltage
            && (lo == 0 || lo > hi || step == 0)
        {
            return bad(format!("voltage {lo}..={hi} mV step {step}"));
        }
        if let TuneGoal::PowerTarget(w) = goal
            && !(w.is_finite() && w > 0.0)
        {
            return bad(format!("power target {w} W"));
        }
        Ok(Self {
            goal,
            bounds,
            limits: TuneLimits::default(),
            start,
            board_id: String::new(),
            model: String::new(),
            clock: system_unix_seconds,
            freq_index: 0,
            voltage_mv: bounds.voltage.map(|(lo, _, _)| lo),
            pending: None,
            steps: 0,
            stale: 0,
            best: None,
            trials: Vec::new(),
            finished: None,
        })
    }

    /// Replaces the default acceptance criteria and budget.
    pub fn with_limits(mut self, limits: TuneLimits) -> Result<Self, TuneError> {
        let numbers_ok = limits.max_hw_error_rate.is_finite()
            && limits.max_hw_error_rate >= 0.0
            && limits.max_temp_c.is_finite();
        if !numbers_ok || limits.max_steps == 0 || limits.patience == 0 {
            return Err(TuneError::InvalidBounds(format!("limits {limits:?}")));
        }
        self.limits = limits;
        Ok(self)
    }

    /// Names the board and chip model the result is recorded for.
    pub fn with_identity(mut self, board_id: impl Into<String>, model: impl Into<String>) -> Self {
        self.board_id = board_id.into();
        self.model = model.into();
        self
    }

    /// Replaces the wall clock stamping the result (tests, virtual time).
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// Every setting tried so far with its verdict.
    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    /// Settings applied so far, retries included.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Advances the search with the observation of the setting last
    /// applied (`None` at the first call, or when it could not be
    /// measured, which re-applies it). After the end, repeats the end.
    pub fn next(&mut self, observation: Option<Observation>) -> TuneStep {
        if let Some(done) = &self.finished {
            return done.clone();
        }
        let Some(pending) = self.pending else {
            return self.apply(self.setting_at(self.freq_index));
        };
        let Some(obs) = observation.filter(Observation::is_valid) else {
            if observation.is_some() {
                warn!(
                    ?observation,
                    "autotune: unusable observation, measuring again"
                );
            }
            return self.apply(pending);
        };
        let verdict = self.judge(&obs);
        self.trials.push(Trial {
            setting: pending,
            observation: obs,
            verdict,
        });
        match verdict {
            Verdict::HwErrors => match (self.voltage_mv, self.bounds.voltage) {
                (Some(v), Some((_, hi, step))) if v < hi => {
                    self.voltage_mv = Some(v.saturating_add(step).min(hi));
                    self.apply(self.setting_at(self.freq_index))
                }
                _ => self.finish("hardware errors at the highest voltage"),
            },
            Verdict::OverTemperature => self.finish("temperature limit reached"),
            Verdict::OverPower => self.finish("power target reached"),
            Verdict::Accepted => {
                self.record(pending, obs);
                if matches!(self.goal, TuneGoal::BestEfficiency)
                    && self.stale >= self.limits.patience
                {
                    return self.finish("efficiency stopped improving");
                }
                if self.frequency(self.freq_index) >= self.bounds.max_mhz {
                    return self.finish("highest frequency reached");
                }
                self.freq_index += 1;
                self.apply(self.setting_at(self.freq_index))
            }
        }
    }

    fn frequency(&self, index: u32) -> f32 {
        let b = &self.bounds;
        (b.min_mhz + index as f32 * b.step_mhz).min(b.max_mhz)
    }

    fn setting_at(&self, index: u32) -> Setting {
        Setting {
            frequency_mhz: self.frequency(index),
            voltage_mv: self.voltage_mv,
        }
    }

    fn judge(&self, obs: &Observation) -> Verdict {
        if obs.hw_error_rate > self.limits.max_hw_error_rate || obs.hashrate_hs <= 0.0 {
            Verdict::HwErrors
        } else if obs.max_temp_c > self.limits.max_temp_c {
            Verdict::OverTemperature
        } else if matches!(self.goal, TuneGoal::PowerTarget(w) if obs.power_w > w) {
            Verdict::OverPower
        } else {
            Verdict::Accepted
        }
    }

    fn record(&mut self, setting: Setting, obs: Observation) {
        let better = match (&self.best, self.goal) {
            (None, _) => true,
            (Some((_, b)), TuneGoal::PowerTarget(_)) => {
                obs.hashrate_hs > b.hashrate_hs
                    || (obs.hashrate_hs == b.hashrate_hs && obs.power_w < b.power_w)
            }
            (Some((_, b)), TuneGoal::BestEfficiency) => obs.joules_per_th() < b.joules_per_th(),
        };
        if better {
            self.best = Some((setting, obs));
            self.stale = 0;
        } else {
            self.stale += 1;
        }
    }

    fn apply(&mut self, setting: Setting) -> TuneStep {
        if self.steps >= self.limits.max_steps {
            return self.finish("step budget spent");
        }
        self.steps += 1;
        self.pending = Some(setting);
        TuneStep::Apply(setting)
    }

    fn finish(&mut self, reason: &str) -> TuneStep {
        let step = match self.best {
            Some((setting, obs)) => {
                info!(
                    board = %self.board_id,
                    reason,
                    frequency_mhz = setting.frequency_mhz,
                    voltage_mv = ?setting.voltage_mv,
                    power_w = obs.power_w,
                    "autotune done"
                );
                TuneStep::Done(TuneResult {
                    board_id: self.board_id.clone(),
                    model: self.model.clone(),
                    goal: self.goal,
                    frequency_mhz: setting.frequency_mhz,
                    voltage_mv: setting.voltage_mv,
                    hashrate_hs: obs.hashrate_hs,
                    power_w: obs.power_w,
                    joules_per_th: obs.joules_per_th(),
                    tuned_at_unix: (self.clock)(),
                })
            }
            None => {
                warn!(board = %self.board_id, reason, "autotune found no acceptable setting");
                TuneStep::Abandoned {
                    reason: format!("no acceptable setting: {reason}"),
                    fallback: self.start,
                }
            }
        };
        self.finished = Some(step.clone());
        step
    }
}

/// The file holding `board_id`'s result in `dir`: `tune-<id>.json` with
/// the id reduced to `[A-Za-z0-9._-]` and, when that changed it, a hash
/// suffix so distinct ids never share a file and no id escapes `dir`.
pub fn result_path(dir: &Path, board_id: &str) -> Result<PathBuf, TuneError> {
    if board_id.is_empty() {
        return Err(TuneError::InvalidBoardId(board_id.to_owned()));
    }
    let mut name: String = board_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_ID_CHARS)
        .collect();
    if name != board_id || name.starts_with('.') {
        let digest = Sha256::digest(board_id.as_bytes());
        name = format!("{name}-{}", hex::encode(&digest[..4]));
    }
    Ok(dir.join(format!("tune-{name}.json")))
}

/// Saves a result atomically (temporary file, fsync, rename, fsync of the
/// directory), so a power cut leaves the old or the new result.
pub fn save(dir: &Path, result: &TuneResult) -> Result<PathBuf, TuneError> {
    result.check().map_err(TuneError::Invalid)?;
    let path = result_path(dir, &result.board_id)?;
    fs::create_dir_all(dir).map_err(|source| TuneError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(result).map_err(|e| TuneError::Invalid(e.to_string()))?;
    hashwatt_state::atomic_write(&path, &bytes).map_err(|source| TuneError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Loads `board_id`'s result: `Ok(None)` when there is none; a corrupt
/// file or another board's is an error the caller reports before tuning
/// afresh (see [`load_or_ignore`]).
pub fn load(dir: &Path, board_id: &str) -> Result<Option<TuneResult>, TuneError> {
    let path = result_path(dir, board_id)?;
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TuneError::Io { path, source }),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TuneError::Io {
            path: path.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(TuneError::Corrupt {
            path,
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let result: TuneResult = serde_json::from_slice(&bytes).map_err(|e| TuneError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if result.board_id != board_id {
        return Err(TuneError::Mismatch {
            path,
            expected: board_id.to_owned(),
            found: result.board_id,
        });
    }
    result
        .check()
        .map_err(|reason| TuneError::Corrupt { path, reason })?;
    Ok(Some(result))
}

/// [`load`] for start-up: any error is logged and treated as no result,
/// so a bad file means a fresh search, never a failed start.
pub fn load_or_ignore(dir: &Path, board_id: &str) -> Option<TuneResult> {
    match load(dir, board_id) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "ignoring saved tuning result");
            None
        }
    }
}
