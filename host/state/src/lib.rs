//! Crash-safe writes of the appliance's state files.
//!
//! An appliance loses power at any moment. Every file hashwatt keeps
//! (energy ledger, policy state, plugin cache, host keys, configuration) is
//! replaced with [`atomic_write`], so after a crash the file on disk is
//! either the old or the new version, never a torn mix:
//!
//! 1. the bytes go to a temporary file in the same directory, named
//!    `.<name>.<pid>.<counter>.tmp` and created exclusively, so a leftover
//!    from a crashed writer is never reused, truncated or renamed;
//! 2. the temporary file is fsynced, so its data is on disk before its name;
//! 3. it is renamed over the target (atomic within one file system);
//! 4. the directory is fsynced, so the rename itself survives a power cut.
//!
//! Temporary files left by a crash between steps 1 and 3 are recognised by
//! [`is_temp_file_name`] and removed by [`remove_stale_temp_files`].
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("energy.json");
//! hashwatt_state::atomic_write(&path, b"{\"version\":1}")?;
//! assert_eq!(std::fs::read(&path)?, b"{\"version\":1}");
//! # Ok(()) }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Suffix of every temporary file this crate creates.
const TEMP_SUFFIX: &str = ".tmp";

/// How many names [`atomic_write`] tries before giving up when earlier
/// crashes left temporary files under the names it would pick.
const MAX_NAME_ATTEMPTS: u32 = 1000;

/// Per-process counter that makes temporary names unique between threads.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically and durably (see the crate
/// documentation for the steps).
///
/// A file that already exists at `path` keeps its permissions (so an
/// operator's `chmod 600` on a file holding passwords survives a rewrite);
/// a new file gets the default mode (0666 less the umask). Use
/// [`atomic_write_with_mode`] for files that must have a fixed mode. A
/// symlink at `path` is replaced by the new file, not followed.
///
/// On error the target is untouched and the temporary file is removed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        match fs::metadata(path) {
            Ok(m) => Some(m.permissions().mode() & 0o777),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        }
    };
    #[cfg(not(unix))]
    let mode = None;
    write_replacing(path, bytes, mode)
}

/// [`atomic_write`] that gives the file exactly the permission bits `mode`
/// (e.g. `0o600` for a secret), whatever the umask and whatever mode a
/// previous version had. The temporary file is created with `mode` from
/// the start, so the bytes are never readable with wider permissions.
/// `mode` is ignored where the platform has no Unix permissions.
pub fn atomic_write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(path, bytes, Some(mode))
}

fn write_replacing(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = parent_dir(path);
    let (tmp, mut file) = create_temp(path, mode)?;
    let result = (|| {
        #[cfg(unix)]
        if let Some(mode) = mode {
            // The creation mode is filtered by the umask; this is not.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Only our own, exclusively created file; never a leftover.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a fresh temporary file next to `path`, skipping names that
/// already exist (leftovers of a crashed process with the same pid).
fn create_temp(path: &Path, mode: Option<u32>) -> io::Result<(PathBuf, File)> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = parent_dir(path);
    let mut last = None;
    for _ in 0..MAX_NAME_ATTEMPTS {
        let tmp = dir.join(format!(
            ".{}.{}{TEMP_SUFFIX}",
            file_name.to_string_lossy(),
            unique_suffix()
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        match opts.open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(ErrorKind::AlreadyExists)))
}

/// A `<pid>.<counter>` suffix that no other live process or thread gets,
/// for sibling names that must not collide (temporary files, staging
/// directories). A crashed process's leftovers may carry the same suffix
/// after pid reuse, so create such names exclusively.
pub fn unique_suffix() -> String {
    format!(
        "{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Flushes a directory's entries (creations, renames, removals) to disk,
/// so a rename done before a power cut is still there after it. A no-op
/// where directories cannot be opened (non-Unix).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether `name` (a file name, not a path) is a temporary file of
/// [`atomic_write`]: `.<name>.<pid>.<counter>.tmp`. Lets a cleaner remove
/// leftovers without knowing the naming scheme.
pub fn is_temp_file_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|r| r.strip_suffix(TEMP_SUFFIX))
    else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let counter = parts.next().unwrap_or("");
    let pid = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(counter) && digits(pid) && !target.is_empty()
}

/// Removes the temporary files of [`atomic_write`] directly inside `dir`
/// whose last modification is more than `older_than` before `now`: those
/// are left over from a crash, while younger ones may belong to a writer
/// that is still running. Returns how many were removed; a missing `dir`
/// has none.
pub fn remove_stale_temp_files(
    dir: &Path,
    older_than: Duration,
    now: SystemTime,
) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_temp_file_name) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() || !is_older(&meta, older_than, now) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Whether `meta` was last modified more than `age` before `now` (a
/// modification time in the future or unknown counts as young).
pub fn is_older(meta: &fs::Metadata, age: Duration, now: SystemTime) -> bool {
    meta.modified()
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|a| a > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        atomic_write(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        atomic_write(&path, b"two, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two, longer");
        atomic_write(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        // Nothing but the target is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn leftover_temp_files_never_replace_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("energy.json");
        atomic_write(&path, b"good").unwrap();
        // A crashed writer of this process (same pid, e.g. after pid reuse)
        // left partial files under the next names this process will pick.
        let next = COUNTER.load(Ordering::Relaxed);
        let leftovers: Vec<PathBuf> = (next..next + 64)
            .map(|c| {
                dir.path()
                    .join(format!(".energy.json.{}.{c}.tmp", std::process::id()))
            })
            .collect();
        for l in &leftovers {
            fs::write(l, b"partial").unwrap();
        }
        // The leftovers are not the target, before or after a new write.
        assert_eq!(fs::read(&path).unwrap(), b"good");
        atomic_write(&path, b"better").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"better");
        for l in &leftovers {
            assert_eq!(fs::read(l).unwrap(), b"partial", "{}", l.display());
        }
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a directory fails after the temp was written.
        let target = dir.path().join("taken");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inner"), b"x").unwrap();
        assert!(atomic_write(&target, b"new").is_err());
        assert!(target.join("inner").is_file());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A missing directory is an error, not a panic.
        assert!(atomic_write(&dir.path().join("no/such/file"), b"x").is_err());
        assert!(atomic_write(Path::new("/"), b"x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_applied_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("host.key");
        atomic_write_with_mode(&secret, b"k1", 0o600).unwrap();
        assert_eq!(mode(&secret), 0o600);
        // A wider previous version does not widen the new one.
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        atomic_write_with_mode(&secret, b"k2", 0o600).unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(fs::read(&secret).unwrap(), b"k2");
        // The mode is applied whatever the umask would allow.
        let wide = dir.path().join("wide");
        atomic_write_with_mode(&wide, b"x", 0o664).unwrap();
        assert_eq!(mode(&wide), 0o664);
        // A plain rewrite keeps the mode the operator chose.
        let config = dir.path().join("hashwatt.toml");
        fs::write(&config, b"old").unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&config, b"new").unwrap();
        assert_eq!(mode(&config), 0o640);
        assert_eq!(fs::read(&config).unwrap(), b"new");
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_file_name(".energy.json.123.0.tmp"));
        assert!(is_temp_file_name(".a.b.c.cwasm.9.42.tmp"));
        for not in [
            "energy.json",
            "energy.json.tmp",
            ".energy.json.tmp",
            "..1.2.tmp",
            ".x.1.a.tmp",
            ".x.1.2.tmpx",
            ".stratum-v1.123.4",
        ] {
            assert!(!is_temp_file_name(not), "{not}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (tmp, _f) = create_temp(&path, None).unwrap();
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_file_name(name), "{name}");
    }

    #[test]
    fn only_stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".a.1.2.tmp"), b"partial").unwrap();
        fs::write(dir.path().join("a"), b"keep").unwrap();
        fs::write(dir.path().join("b.tmp"), b"not ours").unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        // Young: a writer may still be running.
        assert_eq!(remove_stale_temp_files(dir.path(), hour, now).unwrap(), 0);
        assert_eq!(
            remove_stale_temp_files(dir.path(), hour, now + 2 * hour).unwrap(),
            1
        );
        assert!(!dir.path().join(".a.1.2.tmp").exists());
        assert!(dir.path().join("a").exists() && dir.path().join("b.tmp").exists());
        assert_eq!(
            remove_stale_temp_files(&dir.path().join("missing"), hour, now).unwrap(),
            0
        );
    }
}
