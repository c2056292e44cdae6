//! `hashwatt plugin …`: key generation, signing, and installing, listing
//! and removing plugin packages in the appliance's state directory.
//!
//! Installed plugins live in `<state_dir>/plugins/<name>/`. On Unix that
//! path is a symlink to a hidden, fully written directory
//! (`.<name>.<unique>`): installing writes and fsyncs the new directory,
//! then atomically replaces the symlink, so a reader sees either the old
//! version or the new one, never a mix, and a crash leaves the old one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Subcommand;

use super::Runtime;
use super::cache::CacheOutcome;
use super::package::{
    self, MANIFEST_FILE, PackageError, PluginKind, SIG_FILE, Trust, VerifiedPackage, WASM_FILE,
};
use crate::config::Config;

/// Staging directories, `.link` files and temporary files older than this
/// are left over from a crash; younger ones may belong to an install that
/// is still running in another process.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Errors installing, finding or removing plugins.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The package was refused.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The component does not compile or link.
    #[error(transparent)]
    Plugin(#[from] super::PluginError),
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The name is not a valid plugin name.
    #[error("`{0}` is not a valid plugin name")]
    InvalidName(String),
    /// No plugin of that name is installed.
    #[error("no plugin named `{0}` is installed")]
    NotInstalled(String),
    /// A packed package (`.hwpkg`) was refused before verification.
    #[error(transparent)]
    Archive(#[from] super::archive::UnpackError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `hashwatt plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Generate a signing key: writes the secret key (mode 0600) and prints
    /// the public key to add to `trusted_keys`.
    Keygen {
        /// Where to write the secret key; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a package directory holding plugin.wasm and plugin.toml
    /// (writes plugin.sig).
    Sign {
        /// Secret key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The package directory.
        dir: PathBuf,
    },
    /// Start a plugin: a crate from the template, with tests, a manifest
    /// and a README, ready for `cargo test` and `hashwatt plugin build`.
    New {
        /// What kind of plugin.
        #[arg(long, value_enum)]
        kind: super::template::TemplateKind,
        /// Plugin name (a-z, 0-9, `-`); also the directory made, unless --dir.
        name: String,
        /// The language: `rust`, `python` (componentize-py) or
        /// `javascript` (ComponentizeJS).
        #[arg(long, value_enum, default_value = "rust")]
        lang: super::template::Lang,
        /// Where to create the crate (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK crate to depend on (default: this source tree's).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2, check the component against
    /// its plugin.toml, sign it and pack it into a `.hwpkg`: one command
    /// from source to an installable package.
    Build {
        /// The plugin crate (holding Cargo.toml and plugin.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Secret key from `keygen` (without one the package is unsigned).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to write the package (default: DIR/<name>.hwpkg).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Replay a recorded pool session (`hashwatt run --record`) through a
    /// pool plugin offline and show where its answers differ; exit status
    /// 1 if any does.
    Test {
        /// The pool plugin: `stratum-v1`, a package directory, a `.hwpkg`
        /// or a `.wasm`.
        plugin: String,
        /// The transcript (`.jsonl`).
        #[arg(long)]
        transcript: PathBuf,
    },
    /// Pack a package directory (plugin.toml, plugin.wasm, plugin.sig) into
    /// one `.hwpkg` file, to copy or upload as a unit.
    Pack {
        /// The package directory.
        dir: PathBuf,
        /// Where to write the package (default: `<name>.hwpkg` here).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Verify a package and install it into the state directory.
    Install {
        /// The package: a directory, or a `.hwpkg` file from `pack`.
        package: PathBuf,
        /// Configuration file (for state_dir and trusted keys).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List installed plugins.
    List {
        /// Configuration file (for state_dir and trusted keys).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Remove an installed plugin.
    Remove {
        /// Plugin name.
        name: String,
        /// Configuration file (for state_dir).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Loads a plugin for offline tools (backtest, transcript replay): a
/// first-party name, a package directory, a `.hwpkg` file or a bare
/// `.wasm`; returns its name and component bytes. Signatures are not
/// required: nothing is installed and the plugin runs in the sandbox.
pub fn load_offline(plugin: &str, kind: PluginKind) -> anyhow::Result<(String, Vec<u8>)> {
    let builtin = match kind {
        PluginKind::Policy => super::builtin::policy(plugin),
        PluginKind::Pool => (plugin == "stratum-v1").then_some(super::builtin::STRATUM_V1),
    };
    if let Some(bytes) = builtin {
        return Ok((plugin.to_string(), bytes.to_vec()));
    }
    let path = Path::new(plugin);
    if !path.exists() {
        let names: Vec<&str> = match kind {
            PluginKind::Policy => super::builtin::POLICIES.iter().map(|(n, _)| *n).collect(),
            PluginKind::Pool => vec!["stratum-v1"],
        };
        anyhow::bail!(
            "{plugin:?} is neither a first-party {kind} plugin ({}) nor a file or directory",
            names.join(", ")
        );
    }
    let from_dir = |dir: &Path| -> anyhow::Result<(String, Vec<u8>)> {
        let text = fs::read_to_string(dir.join(MANIFEST_FILE))
            .with_context(|| format!("cannot read {}", dir.join(MANIFEST_FILE).display()))?;
        let manifest = package::Manifest::parse(&text)
            .with_context(|| format!("{MANIFEST_FILE} is not a valid manifest"))?;
        if manifest.kind != kind {
            anyhow::bail!(
                "{} is a {} plugin, not a {kind} plugin",
                manifest.name,
                manifest.kind
            );
        }
        let wasm = fs::read(dir.join(WASM_FILE))
            .with_context(|| format!("cannot read {}", dir.join(WASM_FILE).display()))?;
        Ok((manifest.name, wasm))
    };
    if path.is_dir() {
        return from_dir(path);
    }
    if path
        .extension()
        .is_some_and(|e| e == super::archive::PACKAGE_EXTENSION)
    {
        let bytes = super::archive::read_package(path)?;
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let into = dir.path().join("package");
        super::archive::unpack(&bytes, &into)?;
        return from_dir(&into);
    }
    let wasm = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_stem()
        .map_or("plugin".into(), |s| s.to_string_lossy().into_owned());
    Ok((name, wasm))
}

/// Runs a `hashwatt plugin` subcommand, printing results on stdout.
pub fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        PluginCommand::Keygen { out: path } => {
            let key = package::generate_key()?;
            package::write_secret_key(&path, &key)?;
            let public = key.verifying_key();
            writeln!(out, "{}", package::public_key_hex(&public))?;
            eprintln!(
                "secret key written to {} (key id {}); add the public key above to `trusted_keys`",
                path.display(),
                package::key_id(&public)
            );
        }
        PluginCommand::Sign { key, dir } => {
            let key = package::read_secret_key(&key)?;
            let sig = package::sign_package(&dir, &key)?;
            writeln!(
                out,
                "signed {} with key {} (wasm sha256 {})",
                dir.display(),
                sig.key_id,
                hex::encode(sig.wasm_sha256)
            )?;
        }
        PluginCommand::New {
            kind,
            lang,
            name,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = super::template::new_plugin(kind, lang, &name, &dir, sdk.as_deref())?;
            for f in &files {
                writeln!(out, "wrote {}", f.display())?;
            }
            let test = match lang {
                super::template::Lang::Rust => "cargo test && ",
                _ => "",
            };
            writeln!(
                out,
                "next: cd {} && {test}hashwatt plugin build . --key YOUR.key",
                dir.display()
            )?;
        }
        PluginCommand::Build {
            dir,
            key,
            out: path,
        } => {
            let built = super::template::build(&dir, key.as_deref(), path.as_deref())?;
            writeln!(
                out,
                "built {} ({} bytes of component, {}) into {}",
                built.package_dir.display(),
                built.wasm_bytes,
                if built.signed { "signed" } else { "UNSIGNED" },
                built.hwpkg.display()
            )?;
        }
        PluginCommand::Test { plugin, transcript } => {
            let (name, wasm) = load_offline(&plugin, PluginKind::Pool)?;
            let runtime = Runtime::new()?;
            let pre = super::pool::PoolPluginPre::new(&runtime, &name, &wasm)?;
            let text = super::transcript::read(&transcript)?;
            // Offline, a busy machine must not fail a call the appliance
            // would have answered in time: a generous budget.
            let limits = super::Limits {
                call_timeout: Duration::from_secs(1),
                ..super::Limits::default()
            };
            let replay = super::transcript::replay(&pre, &text, limits)
                .with_context(|| format!("{}", transcript.display()))?;
            write!(out, "{}", replay.render())?;
            if !replay.differences.is_empty() {
                out.flush()?;
                std::process::exit(1);
            }
        }
        PluginCommand::Pack { dir, out: path } => {
            let packed = super::archive::pack(&dir)?;
            let m = &packed.manifest;
            let path = path.unwrap_or_else(|| {
                PathBuf::from(format!("{}.{}", m.name, super::archive::PACKAGE_EXTENSION))
            });
            super::archive::write_package(&path, &packed.bytes)?;
            writeln!(
                out,
                "packed {} {} ({}) into {} ({} bytes)",
                m.name,
                m.version,
                m.kind,
                path.display(),
                packed.bytes.len()
            )?;
            if !packed.signed {
                eprintln!(
                    "warning: {} has no {SIG_FILE}; it installs only where unsigned plugins are allowed",
                    dir.display()
                );
            }
        }
        PluginCommand::Install { package, config } => {
            let config = Config::load(&config)?;
            let trust = Trust::from_config(&config)?;
            let installed = if package.is_file() {
                let bytes = super::archive::read_package(&package)?;
                install_archive(&bytes, &config.state_dir, &trust)?
            } else {
                install(&package, &config.state_dir, &trust)?
            };
            let m = &installed.package.manifest;
            writeln!(
                out,
                "installed {} {} ({}) into {}",
                m.name,
                m.version,
                m.kind,
                installed.path.display()
            )?;
        }
        PluginCommand::List { config } => {
            let config = Config::load(&config)?;
            let trust = Trust::from_config(&config)?;
            let entries = list(&config.state_dir, &trust)?;
            writeln!(
                out,
                "{:<24} {:<12} {:<7} {:<16} SHA256",
                "NAME", "VERSION", "KIND", "SIGNER"
            )?;
            for Listed { name, package } in entries {
                match package {
                    Ok(p) => writeln!(
                        out,
                        "{:<24} {:<12} {:<7} {:<16} {}",
                        name,
                        p.manifest.version.to_string(),
                        p.manifest.kind.to_string(),
                        p.signer.as_deref().unwrap_or("unsigned"),
                        hex::encode(p.wasm_sha256)
                    )?,
                    Err(e) => writeln!(out, "{name:<24} INVALID: {e}")?,
                }
            }
        }
        PluginCommand::Remove { name, config } => {
            let config = Config::load(&config)?;
            remove(&config.state_dir, &name)
                .with_context(|| format!("cannot remove plugin {name}"))?;
            writeln!(out, "removed {name}")?;
        }
    }
    Ok(())
}

/// Where installed plugins live under the state directory.
pub fn plugins_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("plugins")
}

/// Where precompiled plugin artifacts are cached under the state directory.
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("plugin-cache")
}

/// A freshly installed plugin.
#[derive(Debug)]
pub struct Installed {
    /// What was installed.
    pub package: VerifiedPackage,
    /// `<state_dir>/plugins/<name>`.
    pub path: PathBuf,
    /// Whether the precompiled artifact was already cached.
    pub cache: CacheOutcome,
}

fn check_name(name: &str) -> Result<(), InstallError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InstallError::InvalidName(name.into()))
    }
}

/// Verifies the package in `package_dir`, checks that its component
/// compiles and implements its declared kind (warming the artifact cache),
/// and installs it as `<state_dir>/plugins/<name>`, atomically replacing
/// any previous version.
pub fn install(
    package_dir: &Path,
    state_dir: &Path,
    trust: &Trust,
) -> Result<Installed, InstallError> {
    let pkg = package::load_package(package_dir, trust)?;
    let runtime = Runtime::new()?;
    let (component, cache) =
        runtime.compile_cached(&cache_dir(state_dir), &pkg.manifest.name, &pkg.wasm)?;
    package::check_component(runtime.engine(), &component, &pkg.manifest)?;
    let path = install_verified(&pkg, &plugins_dir(state_dir))?;
    Ok(Installed {
        package: pkg,
        path,
        cache,
    })
}

/// Installs a packed package (`.hwpkg` bytes, e.g. uploaded through the
/// panel) exactly like a directory: it is unpacked into a private
/// directory under `<state_dir>/plugins/` (which a crash leaves for
/// [`super::clean_state_dir`]), verified and installed by [`install`],
/// and the unpacked copy is removed whatever the outcome.
pub fn install_archive(
    bytes: &[u8],
    state_dir: &Path,
    trust: &Trust,
) -> Result<Installed, InstallError> {
    let plugins = plugins_dir(state_dir);
    fs::create_dir_all(&plugins).map_err(io_err(&plugins))?;
    // `_` cannot occur in a plugin name, so this is never a version directory.
    let temp = plugins.join(format!("._unpack.{}", hashwatt_state::unique_suffix()));
    let result = super::archive::unpack(bytes, &temp)
        .map_err(InstallError::from)
        .and_then(|()| install(&temp, state_dir, trust));
    if let Err(e) = fs::remove_dir_all(&temp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %temp.display(), "cannot remove an unpacked package: {e}");
    }
    result
}

/// Writes one file of a staged package and flushes it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Writes the verified bytes (not a re-read of the source directory) into
/// `plugins_dir` and switches `<name>` to them.
fn install_verified(pkg: &VerifiedPackage, plugins_dir: &Path) -> Result<PathBuf, InstallError> {
    let name = &pkg.manifest.name;
    check_name(name)?;
    fs::create_dir_all(plugins_dir).map_err(io_err(plugins_dir))?;
    let unique = hashwatt_state::unique_suffix();
    let staged_name = format!(".{name}.{unique}");
    let staging = plugins_dir.join(&staged_name);
    fs::create_dir(&staging).map_err(io_err(&staging))?;
    let staged = (|| {
        write_synced(&staging.join(WASM_FILE), &pkg.wasm)?;
        write_synced(&staging.join(MANIFEST_FILE), pkg.manifest_text.as_bytes())?;
        if let Some(sig) = &pkg.signature {
            write_synced(&staging.join(SIG_FILE), sig.as_bytes())?;
        }
        hashwatt_state::sync_dir(&staging).map_err(io_err(&staging))
    })();
    if let Err(e) = staged {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    let dest = plugins_dir.join(name);
    if let Err(e) = switch_to(plugins_dir, &dest, &staged_name) {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    collect_garbage(plugins_dir, name, &staged_name);
    Ok(dest)
}

/// Points `dest` at `plugins_dir/staged_name`, atomically where possible,
/// and removes what it pointed at before.
#[cfg(unix)]
fn switch_to(plugins_dir: &Path, dest: &Path, staged_name: &str) -> Result<(), InstallError> {
    let link_tmp = plugins_dir.join(format!("{staged_name}.link"));
    std::os::unix::fs::symlink(staged_name, &link_tmp).map_err(io_err(&link_tmp))?;
    let mut old_target = None;
    match fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => {
            old_target = fs::read_link(dest).ok();
        }
        Ok(_) => {
            // A plain directory (e.g. copied by hand): move it aside first;
            // this one replacement is not atomic.
            let aside = plugins_dir.join(format!("{staged_name}.old"));
            fs::rename(dest, &aside).map_err(io_err(dest))?;
            old_target = Some(aside);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let _ = fs::remove_file(&link_tmp);
            return Err(io_err(dest)(e));
        }
    }
    if let Err(e) = fs::rename(&link_tmp, dest) {
        let _ = fs::remove_file(&link_tmp);
        return Err(io_err(dest)(e));
    }
    hashwatt_state::sync_dir(plugins_dir).map_err(io_err(plugins_dir))?;
    if let Some(old) = old_target {
        remove_hidden(plugins_dir, &old);
    }
    Ok(())
}

#[cfg(not(unix))]
fn switch_to(plugins_dir: &Path, dest: &Path, staged_name: &str) -> Result<(), InstallError> {
    let aside = plugins_dir.join(format!("{staged_name}.old"));
    let had_old = dest.exists();
    if had_old {
        fs::rename(dest, &aside).map_err(io_err(dest))?;
    }
    fs::rename(plugins_dir.join(staged_name), dest).map_err(io_err(dest))?;
    if had_old {
        let _ = fs::remove_dir_all(&aside);
    }
    Ok(())
}

/// Removes `target` (relative to `plugins_dir` or absolute) if it is one of
/// our hidden entries directly inside `plugins_dir`; anything else a
/// symlink might point to is left alone.
fn remove_hidden(plugins_dir: &Path, target: &Path) {
    let Some(file_name) = target.file_name() else {
        return;
    };
    let is_ours = file_name.to_string_lossy().starts_with('.')
        && (target
            .parent()
            .is_none_or(|p| p.as_os_str().is_empty() || p == plugins_dir));
    if is_ours {
        let path = plugins_dir.join(file_name);
        if let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), "cannot remove old plugin version: {e}");
        }
    }
}

/// Removes staging leftovers of `name` from crashed installs.
fn collect_garbage(plugins_dir: &Path, name: &str, current: &str) {
    let Ok(entries) = fs::read_dir(plugins_dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let stale = entry
            .metadata()
            .is_ok_and(|m| hashwatt_state::is_older(&m, STALE_AFTER, now));
        if file_name.starts_with(&prefix) && file_name != current && stale {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// Loads and verifies the installed plugin `name` (for the host to run).
pub fn load_installed(
    state_dir: &Path,
    name: &str,
    trust: &Trust,
) -> Result<VerifiedPackage, InstallError> {
    check_name(name)?;
    let dir = plugins_dir(state_dir).join(name);
    if !dir.exists() {
        return Err(InstallError::NotInstalled(name.into()));
    }
    Ok(package::load_package(&dir, trust)?)
}

/// One entry of [`list`].
#[derive(Debug)]
pub struct Listed {
    /// Directory name under `<state_dir>/plugins/`.
    pub name: String,
    /// The package, verified again, or why it no longer verifies.
    pub package: Result<VerifiedPackage, PackageError>,
}

/// Every installed plugin by name, each verified again (an entry that no
/// longer verifies is listed with its error rather than hidden).
pub fn list(state_dir: &Path, trust: &Trust) -> Result<Vec<Listed>, InstallError> {
    let dir = plugins_dir(state_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let package = package::load_package(&entry.path(), trust);
        out.push(Listed { name, package });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the installed plugin `name`.
pub fn remove(state_dir: &Path, name: &str) -> Result<(), InstallError> {
    check_name(name)?;
    let dir = plugins_dir(state_dir);
    let dest = dir.join(name);
    match fs::symlink_metadata(&dest) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&dest).map_err(io_err(&dest))?;
            fs::remove_file(&dest).map_err(io_err(&dest))?;
            hashwatt_state::sync_dir(&dir).map_err(io_err(&dir))?;
            remove_hidden(&dir, &target);
        }
        Ok(_) => {
            fs::remove_dir_all(&dest).map_err(io_err(&dest))?;
            hashwatt_state::sync_dir(&dir).map_err(io_err(&dir))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InstallError::NotInstalled(name.into()));
        }
        Err(e) => return Err(io_err(&dest)(e)),
    }
    Ok(())
}
