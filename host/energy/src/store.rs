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

/// The ledger together with the file it is checkpointed to.
#[derive(Debug)]
pub struct EnergyStore {
    path: PathBuf,
    ledger: EnergyLedger,
    last_checkpoint: Option<Instant>,
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
    /// checkpoint made through this function (or none was made yet).
    /// Returns whether it wrote.
    pub fn checkpoint_if_due(&mut self, now: Instant) -> Result<bool, StoreError> {
        let due = self
            .last_checkpoint
            .is_none_or(|t| now.saturating_duration_since(t) >= CHECKPOINT_EVERY);
        if due {
            self.checkpoint()?;
            self.last_checkpoint = Some(now);
        }
        Ok(due)
    }
}
