//! Removal of what crashed installs and cache writes leave in the state
//! directory, so it does not grow with every power cut.
//!
//! What [`clean_state_dir`] knows about (layout from [`super::cli`] and
//! [`super::cache`]):
//!
//! - `<state_dir>/plugins/.<name>.<unique>`: a version directory. The live
//!   one is the target of the `<name>` symlink; any other (an install that
//!   crashed before switching, or an old version whose removal failed,
//!   including `….old` copies of hand-made directories) is a leftover;
//! - `<state_dir>/plugins/.<name>.<unique>.link`: the symlink an install
//!   renames onto `<name>`; one still there was never switched to;
//! - `<state_dir>/plugin-cache/.<file>.<pid>.<n>.tmp`: a temporary file of
//!   an atomic write that never got renamed;
//! - `<state_dir>/plugin-cache/<key>.cwasm[.meta]`: an artifact of a
//!   component that is neither installed nor built in, or that an older
//!   engine compiled.
//!
//! Directories, links and temporary files younger than one hour
//! ([`super::cli::STALE_AFTER`]) are kept whether referenced or not: they
//! may belong to an install still running in another process (`hashwatt
//! plugin install` while the appliance starts). Unreferenced cache entries
//! go whatever their age: removing one only costs a compilation.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::{debug, info, warn};

use super::Runtime;
use super::builtin;
use super::cache;
use super::cli::{STALE_AFTER, cache_dir, plugins_dir};
use super::package::{self, MAX_WASM_BYTES, WASM_FILE};

/// What [`clean_state_dir`] removed, and what it could not.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// Version directories no `<name>` link points to.
    pub staging_dirs: usize,
    /// `.link` files an install never switched to.
    pub link_files: usize,
    /// Temporary files of interrupted writes in the plugin cache.
    pub temp_files: usize,
    /// Cache entries (artifact with its sidecar) of components neither
    /// installed nor built in, or compiled by another engine version.
    pub cache_entries: usize,
    /// What could not be inspected or removed, with the OS error.
    pub failures: Vec<(PathBuf, std::io::Error)>,
}

impl CleanReport {
    /// Whether anything was removed or failed.
    pub fn is_empty(&self) -> bool {
        self.staging_dirs + self.link_files + self.temp_files + self.cache_entries == 0
            && self.failures.is_empty()
    }
}

/// Removes leftovers of crashed installs and cache writes from
/// `state_dir` (see the module documentation) and logs one summary line.
/// Call once at start, with the runtime that will load the plugins (the
/// cache keys depend on its engine). Never fails: what cannot be removed
/// is reported and left in place.
///
/// Cache entries are kept for installed and built-in components only: a
/// plugin loaded from a bare `.wasm` file (with `allow_unsigned_plugins`)
/// is compiled again at its next load.
pub fn clean_state_dir(runtime: &Runtime, state_dir: &Path) -> CleanReport {
    let report = clean_state_dir_at(runtime, state_dir, SystemTime::now());
    let failures = report.failures.len();
    if let Some((path, e)) = report.failures.first() {
        warn!(
            staging_dirs = report.staging_dirs,
            link_files = report.link_files,
            temp_files = report.temp_files,
            cache_entries = report.cache_entries,
            failures,
            "state directory cleaned, but {failures} leftover(s) could not be removed (first: {}: {e})",
            path.display()
        );
    } else if report.is_empty() {
        debug!(state_dir = %state_dir.display(), "state directory: no leftovers");
    } else {
        info!(
            staging_dirs = report.staging_dirs,
            link_files = report.link_files,
            temp_files = report.temp_files,
            cache_entries = report.cache_entries,
            "state directory cleaned of leftovers from interrupted installs and writes"
        );
    }
    report
}

/// [`clean_state_dir`] with the current time given, without logging.
pub(crate) fn clean_state_dir_at(
    runtime: &Runtime,
    state_dir: &Path,
    now: SystemTime,
) -> CleanReport {
    let mut report = CleanReport::default();
    let plugins = plugins_dir(state_dir);
    let installed_wasm = clean_plugins_dir(&plugins, now, &mut report);
    let cache = cache_dir(state_dir);
    match hashwatt_state::remove_stale_temp_files(&cache, STALE_AFTER, now) {
        Ok(n) => report.temp_files += n,
        Err(e) => report.failures.push((cache.clone(), e)),
    }
    let engine = runtime.engine();
    let keep: Vec<String> = installed_wasm
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::once(builtin::STRATUM_V1))
        .chain(builtin::POLICIES.iter().map(|(_, wasm)| *wasm))
        .map(|wasm| cache::cache_key(engine, wasm))
        .collect();
    match cache::prune(&cache, &keep) {
        Ok(n) => report.cache_entries += n,
        Err(e) => report.failures.push((cache, e)),
    }
    report
}

/// Removes stale unreferenced version directories and `.link` files from
/// `plugins`; returns the components of the installed plugins.
fn clean_plugins_dir(plugins: &Path, now: SystemTime, report: &mut CleanReport) -> Vec<Vec<u8>> {
    let entries = match fs::read_dir(plugins) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            report.failures.push((plugins.to_path_buf(), e));
            return Vec::new();
        }
    };
    let mut live: HashSet<OsString> = HashSet::new();
    let mut hidden = Vec::new();
    let mut installed = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report.failures.push((plugins.to_path_buf(), e));
                continue;
            }
        };
        let name = entry.file_name();
        let path = entry.path();
        // Not following symlinks: a link's own type and age.
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                report.failures.push((path, e));
                continue;
            }
        };
        if name.to_string_lossy().starts_with('.') {
            hidden.push((path, name, meta));
            continue;
        }
        if meta.file_type().is_symlink()
            && let Ok(target) = fs::read_link(&path)
            && let Some(target_name) = target.file_name()
            && target
                .parent()
                .is_none_or(|p| p.as_os_str().is_empty() || p == plugins)
        {
            live.insert(target_name.to_os_string());
        }
        if let Ok(wasm) = package::read_limited(&path.join(WASM_FILE), MAX_WASM_BYTES) {
            installed.push(wasm);
        }
    }
    for (path, name, meta) in hidden {
        if !hashwatt_state::is_older(&meta, STALE_AFTER, now) {
            continue;
        }
        let result = if meta.file_type().is_symlink() {
            if !name.to_string_lossy().ends_with(".link") {
                continue;
            }
            fs::remove_file(&path).map(|()| report.link_files += 1)
        } else if meta.is_dir() && !live.contains(&name) {
            fs::remove_dir_all(&path).map(|()| report.staging_dirs += 1)
        } else {
            continue;
        };
        if let Err(e) = result {
            report.failures.push((path, e));
        }
    }
    installed
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::plugin::package::{MANIFEST_FILE, Trust};

    const MANIFEST: &str = "name = \"stratum-v1\"\nversion = \"1.0.0\"\nkind = \"pool\"\nworld = \"hashwatt:pool/pool-plugin\"\nworld_version = \"0.2.1\"\n\n[capabilities]\npool_endpoints = [\"*\"]\n";

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn every_kind_of_leftover_is_removed_and_nothing_live() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let key = SigningKey::from_bytes(&[3; 32]);
        let pkg = tmp.path().join("pkg");
        fs::create_dir_all(&pkg).unwrap();
        fs::write(pkg.join(WASM_FILE), builtin::STRATUM_V1).unwrap();
        fs::write(pkg.join(MANIFEST_FILE), MANIFEST).unwrap();
        package::sign_package(&pkg, &key).unwrap();
        let trust = Trust {
            keys: vec![key.verifying_key()],
            allow_unsigned: false,
        };
        let installed = super::super::cli::install(&pkg, &state, &trust).unwrap();
        let plugins = plugins_dir(&state);
        let cache = cache_dir(&state);
        let live_before = names(&plugins);
        let cache_before = names(&cache);

        // A crashed install of another version: staging directory and link.
        let staging = plugins.join(".stratum-v1.999.7");
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join(WASM_FILE), b"partial").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(".stratum-v1.999.7", plugins.join(".stratum-v1.999.7.link"))
            .unwrap();
        // A dangling link and an old plain copy moved aside.
        #[cfg(unix)]
        std::os::unix::fs::symlink(".gone.1.2", plugins.join(".gone.1.2.link")).unwrap();
        fs::create_dir(plugins.join(".other.5.6.old")).unwrap();
        // An interrupted cache write and an entry nothing references.
        fs::write(cache.join(".abc.cwasm.999.3.tmp"), b"partial").unwrap();
        let unused = "0".repeat(32) + "-" + &"1".repeat(32);
        fs::write(cache::artifact_path(&cache, &unused), b"old").unwrap();
        fs::write(cache::sidecar_path(&cache, &unused), b"old").unwrap();
        // Something that is not ours stays.
        fs::write(cache.join("notes.txt"), b"mine").unwrap();

        let runtime = Runtime::new().unwrap();
        // Just made: could be an install running right now; only the
        // unreferenced cache entry goes.
        let young = clean_state_dir_at(&runtime, &state, SystemTime::now());
        assert_eq!(
            (young.staging_dirs, young.link_files, young.temp_files),
            (0, 0, 0)
        );
        assert_eq!(young.cache_entries, 1);
        assert!(young.failures.is_empty(), "{:?}", young.failures);
        assert!(staging.is_dir());

        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(60);
        let report = clean_state_dir_at(&runtime, &state, later);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.staging_dirs, 2, "{report:?}");
        #[cfg(unix)]
        assert_eq!(report.link_files, 2, "{report:?}");
        assert_eq!(report.temp_files, 1, "{report:?}");
        assert_eq!(report.cache_entries, 0, "{report:?}");
        assert_eq!(names(&plugins), live_before);
        let mut cache_now = cache_before.clone();
        cache_now.push("notes.txt".into());
        cache_now.sort();
        assert_eq!(names(&cache), cache_now);

        // The installed plugin still loads, from the cache.
        let pkg = super::super::cli::load_installed(&state, "stratum-v1", &trust).unwrap();
        let (_, outcome) = runtime
            .compile_cached(&cache, "stratum-v1", &pkg.wasm)
            .unwrap();
        assert_eq!(outcome, cache::CacheOutcome::Hit);
        assert_eq!(pkg.wasm_sha256, installed.package.wasm_sha256);

        // Nothing left: an empty report; a missing state dir is no error.
        assert!(clean_state_dir(&runtime, &state).is_empty());
        assert!(clean_state_dir(&runtime, &tmp.path().join("none")).is_empty());
    }
}
