//! Plugin packages as one file (`NAME.hwpkg`), so a package can be copied,
//! downloaded or uploaded through the panel as a unit.
//!
//! A `.hwpkg` is a plain (uncompressed) tar archive of the package
//! directory's files — [`MANIFEST_FILE`], [`WASM_FILE`] and, when signed,
//! [`SIG_FILE`] — at the top level and nothing else. It carries no trust of
//! its own: [`unpack`] only recreates the directory, and installing it goes
//! through the same signature and trust checks as a directory.
//!
//! [`unpack`] reads archives from anyone (a panel upload), so it refuses
//! everything a package does not need before writing a byte: links, device
//! nodes and other special entries, `..` or absolute paths, nested or
//! unknown files, duplicates, and sizes above the package limits.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use super::package::{
    MANIFEST_FILE, MAX_MANIFEST_BYTES, MAX_SIG_BYTES, MAX_WASM_BYTES, Manifest, PackageError,
    SIG_FILE, WASM_FILE, read_limited,
};

/// The file name extension of a packed plugin package.
pub const PACKAGE_EXTENSION: &str = "hwpkg";

/// Largest `.hwpkg` accepted, in bytes: the largest files a package
/// directory may hold ([`MAX_WASM_BYTES`] + [`MAX_MANIFEST_BYTES`] +
/// [`MAX_SIG_BYTES`]) plus 64 KiB for tar headers and padding. Tied to the
/// per-file limits so that every package a directory install accepts can
/// also travel as a file, and no larger: an archive is held in memory
/// while it is checked, so this also bounds what an upload can cost.
pub const MAX_PACKAGE_BYTES: u64 = MAX_WASM_BYTES + MAX_MANIFEST_BYTES + MAX_SIG_BYTES + (64 << 10);

/// Why a `.hwpkg` was refused; nothing was written. One variant per
/// reason, so callers (and tests) can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is larger than [`MAX_PACKAGE_BYTES`].
    #[error("the package is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size (or the size its entries add up to).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// One file is larger than that file's limit.
    #[error("{name} in the package is {size} bytes, more than the {max}-byte limit")]
    EntryTooLarge {
        /// The entry's name.
        name: String,
        /// Its size as declared.
        size: u64,
        /// The limit for that file.
        max: u64,
    },
    /// A symbolic or hard link: a package holds plain files only.
    #[error("{name} in the package is a link; a package holds plain files only")]
    Link {
        /// The entry's name.
        name: String,
    },
    /// A character or block device node.
    #[error("{name} in the package is a device node; a package holds plain files only")]
    Device {
        /// The entry's name.
        name: String,
    },
    /// A directory, FIFO or other entry that is not a plain file.
    #[error("{name} in the package is a {kind}; a package holds plain files only")]
    NotAFile {
        /// The entry's name.
        name: String,
        /// What it is instead.
        kind: String,
    },
    /// A path with `..` or an absolute path, which could write outside the
    /// package directory.
    #[error("{name}: a path that leaves the package (`..` or absolute) is not allowed")]
    UnsafePath {
        /// The entry's name.
        name: String,
    },
    /// A file a package does not have (or one in a subdirectory).
    #[error(
        "{name}: unexpected file in the package (only {MANIFEST_FILE}, {WASM_FILE} and {SIG_FILE})"
    )]
    Unexpected {
        /// The entry's name.
        name: String,
    },
    /// The same file twice: which one would count is ambiguous.
    #[error("{name} appears twice in the package")]
    Duplicate {
        /// The entry's name.
        name: String,
    },
    /// A required file is absent.
    #[error("the package has no {file}")]
    Missing {
        /// Which file.
        file: &'static str,
    },
    /// Not a readable tar archive.
    #[error("not a valid plugin package archive: {0}")]
    Malformed(String),
    /// Writing the unpacked files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a package directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A file is missing, too large or unreadable, or the manifest is invalid.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The archive could not be built.
    #[error("cannot build the archive: {0}")]
    Archive(std::io::Error),
}

/// The size limit of each file a package may hold.
fn limit_of(name: &str) -> Option<u64> {
    match name {
        MANIFEST_FILE => Some(MAX_MANIFEST_BYTES),
        WASM_FILE => Some(MAX_WASM_BYTES),
        SIG_FILE => Some(MAX_SIG_BYTES),
        _ => None,
    }
}

/// A packed package and what it holds, for the CLI to report.
#[derive(Debug)]
pub struct Packed {
    /// The `.hwpkg` bytes.
    pub bytes: Vec<u8>,
    /// The package's manifest (checked while packing).
    pub manifest: Manifest,
    /// Whether a `plugin.sig` went in.
    pub signed: bool,
}

/// Packs the package directory `dir` into `.hwpkg` bytes. The manifest
/// must be valid (so a broken package is caught before it is shipped); the
/// signature is copied as is, if there is one, and checked at install.
/// The archive is reproducible: fixed order, owner, mode and time.
pub fn pack(dir: &Path) -> Result<Packed, PackError> {
    let read = |file: &'static str, max: u64| -> Result<Option<Vec<u8>>, PackageError> {
        let path = dir.join(file);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => read_limited(&path, max).map(Some),
        }
    };
    let missing = |file| PackageError::MissingFile {
        dir: dir.to_path_buf(),
        file,
    };
    let manifest_bytes =
        read(MANIFEST_FILE, MAX_MANIFEST_BYTES)?.ok_or_else(|| missing(MANIFEST_FILE))?;
    let wasm = read(WASM_FILE, MAX_WASM_BYTES)?.ok_or_else(|| missing(WASM_FILE))?;
    let sig = read(SIG_FILE, MAX_SIG_BYTES)?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::str::from_utf8(&manifest_bytes).map_err(|_| PackageError::Manifest {
        path: manifest_path.clone(),
        source: super::package::ManifestError::Invalid {
            field: "(file)".into(),
            message: "not UTF-8 text".into(),
        },
    })?;
    let manifest = Manifest::parse(text).map_err(|source| PackageError::Manifest {
        path: manifest_path,
        source,
    })?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut files = vec![(MANIFEST_FILE, &manifest_bytes), (WASM_FILE, &wasm)];
    if let Some(sig) = &sig {
        files.push((SIG_FILE, sig));
    }
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .map_err(PackError::Archive)?;
    }
    let bytes = builder.into_inner().map_err(PackError::Archive)?;
    Ok(Packed {
        bytes,
        manifest,
        signed: sig.is_some(),
    })
}

/// Writes `.hwpkg` bytes to `path` atomically (a crash leaves no half file).
pub fn write_package(path: &Path, bytes: &[u8]) -> Result<(), UnpackError> {
    hashwatt_state::atomic_write(path, bytes).map_err(|source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `.hwpkg` file, refusing one above [`MAX_PACKAGE_BYTES`]
/// before reading it whole.
pub fn read_package(path: &Path) -> Result<Vec<u8>, UnpackError> {
    let io = |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_PACKAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(UnpackError::TooLarge {
            size: fs::metadata(path).map_or(bytes.len() as u64, |m| m.len()),
            max: MAX_PACKAGE_BYTES,
        });
    }
    Ok(bytes)
}

/// Checks the `.hwpkg` `bytes` and writes its files into the directory
/// `into` (created if absent; files already there are never overwritten
/// or followed). Everything is checked before anything is written, so a
/// refused archive leaves `into` as it was.
pub fn unpack(bytes: &[u8], into: &Path) -> Result<(), UnpackError> {
    let files = check(bytes)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { path, source }
    };
    fs::create_dir_all(into).map_err(io(into))?;
    for (name, data) in files {
        let path = into.join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(&data).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
    }
    Ok(())
}

/// Reads and checks every entry of the archive; returns the files by name.
fn check(bytes: &[u8]) -> Result<Vec<(&'static str, Vec<u8>)>, UnpackError> {
    let len = bytes.len() as u64;
    if len > MAX_PACKAGE_BYTES {
        return Err(UnpackError::TooLarge {
            size: len,
            max: MAX_PACKAGE_BYTES,
        });
    }
    let malformed = |e: std::io::Error| UnpackError::Malformed(e.to_string());
    let mut archive = tar::Archive::new(bytes);
    let mut files: HashMap<&'static str, Vec<u8>> = HashMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(malformed)? {
        let entry = entry.map_err(malformed)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = truncate(&raw_name);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(UnpackError::Link { name });
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(UnpackError::Device { name });
            }
            other => {
                let kind = match other {
                    tar::EntryType::Directory => "directory".to_string(),
                    tar::EntryType::Fifo => "FIFO".to_string(),
                    other => format!("tar entry of type {:?}", other.as_byte() as char),
                };
                return Err(UnpackError::NotAFile { name, kind });
            }
        }
        let file = file_name(&raw_name)?;
        let Some(max) = limit_of(file) else {
            return Err(UnpackError::Unexpected { name });
        };
        let file: &'static str = match file {
            MANIFEST_FILE => MANIFEST_FILE,
            WASM_FILE => WASM_FILE,
            _ => SIG_FILE,
        };
        if files.contains_key(file) {
            return Err(UnpackError::Duplicate { name });
        }
        let size = entry.size();
        if size > max {
            return Err(UnpackError::EntryTooLarge { name, size, max });
        }
        total = total.saturating_add(size);
        if total > MAX_PACKAGE_BYTES {
            return Err(UnpackError::TooLarge {
                size: total,
                max: MAX_PACKAGE_BYTES,
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .take(max + 1)
            .read_to_end(&mut data)
            .map_err(malformed)?;
        if data.len() as u64 != size {
            return Err(UnpackError::Malformed(format!(
                "{name}: {} bytes where the header says {size}",
                data.len()
            )));
        }
        files.insert(file, data);
    }
    for required in [MANIFEST_FILE, WASM_FILE] {
        if !files.contains_key(required) {
            return Err(UnpackError::Missing { file: required });
        }
    }
    let mut out: Vec<_> = files.into_iter().collect();
    out.sort_by_key(|(name, _)| *name);
    Ok(out)
}

/// The one file name an entry path may be (`name` or `./name`); refuses
/// `..`, absolute paths and anything nested.
fn file_name(path: &str) -> Result<&str, UnpackError> {
    let name = || truncate(path);
    let mut normal = None;
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => {
                if normal.is_some() {
                    return Err(UnpackError::Unexpected { name: name() });
                }
                normal = Some(part);
            }
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::UnsafePath { name: name() });
            }
        }
    }
    normal
        .and_then(|n| n.to_str())
        .ok_or_else(|| UnpackError::Unexpected { name: name() })
}

/// An entry name as shown in an error: at most 200 characters.
fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_one_plain_name() {
        assert_eq!(file_name("plugin.wasm").unwrap(), "plugin.wasm");
        assert_eq!(file_name("./plugin.toml").unwrap(), "plugin.toml");
        assert!(matches!(
            file_name("../plugin.wasm"),
            Err(UnpackError::UnsafePath { .. })
        ));
        assert!(matches!(
            file_name("/etc/passwd"),
            Err(UnpackError::UnsafePath { .. })
        ));
        assert!(matches!(
            file_name("a/plugin.wasm"),
            Err(UnpackError::Unexpected { .. })
        ));
        assert!(matches!(file_name(""), Err(UnpackError::Unexpected { .. })));
    }

    // The limit holds the largest package a directory may be.
    const _: () = assert!(MAX_PACKAGE_BYTES > MAX_WASM_BYTES + MAX_MANIFEST_BYTES + MAX_SIG_BYTES);
}
