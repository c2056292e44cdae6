//! Crash-safe persistence of the energy ledger.
//!
//! The appliance may lose power at any moment. The ledger is written to
//! `<state_dir>/energy.json` by [`EnergyStore::checkpoint`] atomically
//! ([`hashwatt_state::atomic_write`]: temporary file, fsync, rename, fsync
//! of the directory), so the file on disk is always either the previous or
//! the new checkpoint. With a checkpoint every minute a crash loses at most
//! one minute of accounting.

use std::{
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::ledger::{EnergyLedger, LedgerConfig, LedgerError, LedgerState};

/// File name of the ledger inside the state directory.
pub const FILE_NAME: &str = "energy.json";
/// Format version written by this crate.
pub const FORMAT_VERSION: u32 = 1;
/// How often [`EnergyStore::checkpoint_if_due`] writes.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// Wait before retrying after a first failed checkpoint; doubled after
/// each further failure, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failing checkpoint: a full disk or
/// exhausted file descriptors are not hammered every second.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// After the first failure of a run, failures are reported to the
/// operator at most once per this period, with their count.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Why the energy state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or syncing a file failed.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// The file was written by a newer hashwatt; it is left untouched so a
    /// downgrade never destroys accounting.
    #[error("{path}: format version {found} is newer than supported version {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// Version found in it.
        found: u32,
    },
    /// The saved or configured ledger is not acceptable.
    #[error("energy ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Serializing the ledger failed (non-finite numbers cannot be stored).
    #[error("cannot serialize energy ledger: {0}")]
    Serialize(serde_json::Error),
}

/// What happened when the state file could not be parsed. [`EnergyStore::open`]
/// returns it alongside a fresh ledger so the host can tell the operator
/// why the counters restarted from zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The state file that was unreadable.
    pub path: PathBuf,
    /// Where its content was kept for inspection.
    pub kept_as: PathBuf,
    /// The parse error.
    pub detail: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "energy state {} is corrupt ({}); kept it as {}; energy counters start from zero",
            self.path.display(),
            self.detail,
            self.kept_as.display()
        )
    }
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    #[serde(flatten)]
    ledger: &'a LedgerState,
}

#[derive(Deserialize)]
struct FileIn {
    version: u32,
    #[serde(flatten)]
    ledger: LedgerState,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// What [`EnergyStore::checkpoint_if_due`] did, and what the host should
/// tell the operator about it.
#[derive(Debug)]
#[must_use]
pub enum Checkpoint {
    /// Nothing was written: no checkpoint was due, or a failed one is
    /// waiting for its retry time.
    Skipped,
    /// The ledger was written. `after_failures` is how many attempts had
    /// failed in a row before this one (0 normally), so the host can say
    /// that saving works again.
    Written {
        /// Consecutive failed attempts before this success.
        after_failures: u32,
    },
    /// Writing failed; the next attempt is made after `retry_in`.
    Failed {
        /// Why it failed.
        error: StoreError,
        /// Wait before the next attempt.
        retry_in: Duration,
        /// `Some(n)`: tell the operator now; `n` attempts failed since the
        /// last report (1 for the first failure of a run). `None`: this
        /// failure is counted into the next report instead.
        report: Option<u32>,
    },
}

/// When to retry a failing checkpoint and when to report it, with the
/// clock passed in so the schedule is tested without sleeping.
///
/// After `n` consecutive failures the next attempt waits
/// [`retry_delay`]`(n)` (1 s, 2 s, 4 s … capped at [`RETRY_MAX`]). The
/// first failure of a run is reported at once, later ones at most once per
/// [`REPORT_EVERY`] with how many failed since. A success resets both.
#[derive(Clone, Debug, Default)]
pub struct CheckpointRetry {
    consecutive: u32,
    next_attempt: Option<Instant>,
    last_report: Option<Instant>,
    unreported: u32,
}

/// Wait before the next attempt after `consecutive_failures` failures in a
/// row: [`RETRY_FIRST`] doubled per further failure, at most [`RETRY_MAX`].
pub fn retry_delay(consecutive_failures: u32) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

impl CheckpointRetry {
    /// Whether an attempt may be made at `now` (no failure is waiting for
    /// its retry time).
    pub fn may_attempt(&self, now: Instant) -> bool {
        self.next_attempt.is_none_or(|t| now >= t)
    }

    /// Records a failed attempt at `now`; returns the wait before the next
    /// attempt and, if the operator should be told now, how many attempts
    /// failed since the last report.
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u32>) {
        self.consecutive = self.consecutive.saturating_add(1);
        self.unreported = self.unreported.saturating_add(1);
        let delay = retry_delay(self.consecutive);
        self.next_attempt = Some(now + delay);
        let report_due = self.consecutive == 1
            || self
                .last_report
                .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY);
        if !report_due {
            return (delay, None);
        }
        self.last_report = Some(now);
        (delay, Some(std::mem::take(&mut self.unreported)))
    }

    /// Records a successful attempt; returns how many had failed in a row
    /// before it.
    pub fn succeeded(&mut self) -> u32 {
        let failures = self.consecutive;
        *self = CheckpointRetry {
            last_report: self.last_report,
            ..CheckpointRetry::default()
        };
        failures
    }
}

/// The ledger together with the file it is checkpointed to.
#[derive(Debug)]
pub struct EnergyStore {
    path: PathBuf,
    ledger: EnergyLedger,
    last_checkpoint: Option<Instant>,
    retry: CheckpointRetry,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |err| StoreError::Io {
        path: path.to_owned(),
        err,
    }
}

impl EnergyStore {
    /// Loads the ledger from `state_dir` (creating the directory if needed),
    /// or starts an empty one if there is no state yet.
    ///
    /// A file that cannot be parsed is kept as `energy.json.bad` (an
    /// existing `.bad` is replaced) and a fresh ledger is returned together
    /// with the [`Corruption`], which the host must log. I/O errors and
    /// files from a newer version are errors: starting fresh there could
    /// overwrite good accounting.
    pub fn open(
        state_dir: &Path,
        config: LedgerConfig,
    ) -> Result<(Self, Option<Corruption>), StoreError> {
        fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let path = state_dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path)(e)),
        };
        let mut corruption = None;
        let ledger = match bytes {
            None => EnergyLedger::new(config)?,
            Some(bytes) => match serde_json::from_slice::<FileIn>(&bytes) {
                Ok(f) if f.version <= FORMAT_VERSION => EnergyLedger::from_state(config, f.ledger)?,
                Ok(f) => {
                    return Err(StoreError::UnsupportedVersion {
                        path,
                        found: f.version,
                    });
                }
                Err(e) => {
                    // A newer format may fail to parse as ours: never reset it.
                    if let Ok(v) = serde_json::from_slice::<VersionOnly>(&bytes)
                        && v.version > FORMAT_VERSION
                    {
                        return Err(StoreError::UnsupportedVersion {
                            path,
                            found: v.version,
                        });
                    }
                    let kept_as = state_dir.join(format!("{FILE_NAME}.bad"));
                    fs::copy(&path, &kept_as).map_err(io(&kept_as))?;
                    tracing::error!(path = %path.display(), error = %e, "energy state corrupt");
                    corruption = Some(Corruption {
                        path: path.clone(),
                        kept_as,
                        detail: e.to_string(),
                    });
                    EnergyLedger::new(config)?
                }
            },
        };
        Ok((
            Self {
                path,
                ledger,
                last_checkpoint: None,
                retry: CheckpointRetry::default(),
            },
            corruption,
        ))
    }

    /// The ledger, for counters and reports.
    pub fn ledger(&self) -> &EnergyLedger {
        &self.ledger
    }

    /// The ledger, for recording intervals and pauses.
    pub fn ledger_mut(&mut self) -> &mut EnergyLedger {
        &mut self.ledger
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the ledger atomically and durably. Call at least every
    /// minute and on shutdown.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let state = self.ledger.to_state();
        let out = FileOut {
            version: FORMAT_VERSION,
            ledger: &state,
        };
        let json = serde_json::to_vec(&out).map_err(StoreError::Serialize)?;
        hashwatt_state::atomic_write(&self.path, &json).map_err(io(&self.path))
    }

    /// Checkpoints if [`CHECKPOINT_EVERY`] has passed since the last
    /// checkpoint made through this function (or none was made yet) and no
    /// failed attempt is waiting for its retry time ([`CheckpointRetry`]).
    /// Call as often as convenient (every sample); the result says whether
    /// it wrote and whether a failure should be logged now.
    pub fn checkpoint_if_due(&mut self, now: Instant) -> Checkpoint {
        let due = self
            .last_checkpoint
            .is_none_or(|t| now.saturating_duration_since(t) >= CHECKPOINT_EVERY);
        if !due || !self.retry.may_attempt(now) {
            return Checkpoint::Skipped;
        }
        match self.checkpoint() {
            Ok(()) => {
                self.last_checkpoint = Some(now);
                Checkpoint::Written {
                    after_failures: self.retry.succeeded(),
                }
            }
            Err(error) => {
                let (retry_in, report) = self.retry.failed(now);
                Checkpoint::Failed {
                    error,
                    retry_in,
                    report,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let secs: Vec<u64> = (0..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    /// Attempting once a second against a disk that stays full for 10
    /// minutes: attempts back off to one a minute, the first failure is
    /// reported at once and then at most one summary a minute, with counts
    /// that add up to every failure.
    #[test]
    fn a_long_outage_is_retried_and_reported_sparingly() {
        let t0 = Instant::now();
        let mut retry = CheckpointRetry::default();
        let mut attempts = Vec::new();
        let mut reports = Vec::new();
        for s in 0..600u64 {
            let now = t0 + Duration::from_secs(s);
            if !retry.may_attempt(now) {
                continue;
            }
            attempts.push(s);
            let (_, report) = retry.failed(now);
            if let Some(n) = report {
                reports.push((s, n));
            }
        }
        // 1 s, 2 s, 4 s … then every 60 s.
        assert_eq!(&attempts[..8], &[0, 1, 3, 7, 15, 31, 63, 123]);
        assert!(attempts.windows(2).skip(7).all(|w| w[1] - w[0] == 60));
        assert_eq!(reports[0], (0, 1), "first failure reported at once");
        assert!(reports.windows(2).all(|w| w[1].0 - w[0].0 >= 60));
        let reported: u32 = reports.iter().map(|&(_, n)| n).sum();
        assert!(reported as usize <= attempts.len());
        assert!(reports.len() <= 11, "{reports:?}");
        // Success resets the back-off; the next failure is reported again.
        assert_eq!(retry.succeeded(), attempts.len() as u32);
        let later = t0 + Duration::from_secs(700);
        assert!(retry.may_attempt(later));
        assert_eq!(retry.failed(later), (RETRY_FIRST, Some(1)));
        assert!(!retry.may_attempt(later + Duration::from_millis(999)));
        assert!(retry.may_attempt(later + RETRY_FIRST));
    }

    #[test]
    fn reports_count_the_suppressed_failures() {
        let t0 = Instant::now();
        let mut retry = CheckpointRetry::default();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Table: (second, expected delay, expected report).
        let rows = [
            (0, 1, Some(1)),
            (1, 2, None),
            (3, 4, None),
            (7, 8, None),
            (15, 16, None),
            (31, 32, None),
            (63, 60, Some(6)),
            (123, 60, Some(1)),
        ];
        for (s, delay, report) in rows {
            assert!(retry.may_attempt(at(s)), "at {s}");
            assert_eq!(
                retry.failed(at(s)),
                (Duration::from_secs(delay), report),
                "at {s}"
            );
        }
    }
}
