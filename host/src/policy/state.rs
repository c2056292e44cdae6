//! Persistent per-policy state: host-managed bytes, quota-limited, written
//! atomically and durably ([`hashwatt_state::atomic_write`]) into the state
//! directory so restarts of the plugin and of the appliance keep it.

use std::path::{Path, PathBuf};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A policy name that cannot be a file name.
    #[error("policy name {0:?} must be 1..=64 characters of [A-Za-z0-9._-] not starting with '.'")]
    BadName(String),
    /// Reading or writing the file failed.
    #[error("policy state {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Where policy states live: `<state_dir>/policy-state/<name>.bin`.
/// Without a directory (tests) state is kept in memory only.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: Option<PathBuf>,
}

/// Checks that `name` is safe as a file name.
pub fn check_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.into()))
    }
}

impl StateStore {
    /// A store under `state_dir` (`None`: memory only).
    pub fn new(state_dir: Option<&Path>) -> Self {
        StateStore {
            dir: state_dir.map(|d| d.join("policy-state")),
        }
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>, StateError> {
        check_name(name)?;
        Ok(self.dir.as_ref().map(|d| d.join(format!("{name}.bin"))))
    }

    /// The stored state of `name` (empty if none). A file larger than
    /// `quota` is ignored (empty), so a corrupt file cannot wedge a policy.
    pub fn load(&self, name: &str, quota: usize) -> Result<Vec<u8>, StateError> {
        let Some(path) = self.path(name)? else {
            return Ok(Vec::new());
        };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() <= quota => Ok(bytes),
            Ok(bytes) => {
                tracing::warn!(
                    policy = name,
                    len = bytes.len(),
                    quota,
                    "stored policy state exceeds quota; starting empty"
                );
                Ok(Vec::new())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Stores `bytes` for `name` atomically.
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let Some(path) = self.path(name)? else {
            return Ok(());
        };
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        hashwatt_state::atomic_write(&path, bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_quota_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::new(Some(dir.path()));
        assert_eq!(s.load("quota", 16).unwrap(), Vec::<u8>::new());
        s.save("quota", b"hello").unwrap();
        assert_eq!(s.load("quota", 16).unwrap(), b"hello");
        assert_eq!(s.load("quota", 4).unwrap(), Vec::<u8>::new());
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(
                matches!(s.save(bad, b""), Err(StateError::BadName(_))),
                "{bad}"
            );
        }
        let mem = StateStore::new(None);
        mem.save("x", b"1").unwrap();
        assert!(mem.load("x", 10).unwrap().is_empty());
    }
}
