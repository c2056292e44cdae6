//! `hashwatt plugin new` and `hashwatt plugin build`: a plugin author's
//! first crate from a template, and one command from source to a signed
//! `.hwpkg`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::archive;
use super::package::{self, MANIFEST_FILE, Manifest, WASM_FILE};

/// The component target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The SDK crate (`policy-sdk` or `pool-sdk`) in this source tree, when
/// the binary runs from one.
fn default_sdk(dir: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(dir);
    p.join("Cargo.toml")
        .is_file()
        .then(|| p.canonicalize().unwrap_or(p))
}

const POOL_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../plugins/templates/pool/Cargo.toml.tmpl"),
    ),
    (
        "plugin.toml",
        include_str!("../../../plugins/templates/pool/plugin.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../plugins/templates/pool/lib.rs.tmpl"),
    ),
    (
        "tests/scenarios.rs",
        include_str!("../../../plugins/templates/pool/scenarios.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../../plugins/templates/pool/README.md.tmpl"),
    ),
];

const POLICY_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../plugins/templates/policy/Cargo.toml.tmpl"),
    ),
    (
        "plugin.toml",
        include_str!("../../../plugins/templates/policy/plugin.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../plugins/templates/policy/lib.rs.tmpl"),
    ),
    (
        "tests/scenarios.rs",
        include_str!("../../../plugins/templates/policy/scenarios.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../../plugins/templates/policy/README.md.tmpl"),
    ),
    (
        "settings.toml",
        include_str!("../../../plugins/templates/policy/settings.toml.tmpl"),
    ),
];

const POLICY_WIT: &str = include_str!("../../../wit/policy/policy.wit");
const MANIFEST_TMPL: &str = include_str!("../../../plugins/templates/policy/plugin.toml.tmpl");
const SETTINGS_TMPL: &str = include_str!("../../../plugins/templates/policy/settings.toml.tmpl");

const PYTHON_FILES: &[(&str, &str)] = &[
    ("plugin.toml", MANIFEST_TMPL),
    ("settings.toml", SETTINGS_TMPL),
    ("wit/policy.wit", POLICY_WIT),
    (
        "src/app.py",
        include_str!("../../../plugins/python-ceiling/src/app.py"),
    ),
    (
        "build",
        include_str!("../../../plugins/python-ceiling/build"),
    ),
    (
        "README.md",
        include_str!("../../../plugins/templates/policy/README-python.md.tmpl"),
    ),
];

const JS_FILES: &[(&str, &str)] = &[
    ("plugin.toml", MANIFEST_TMPL),
    ("settings.toml", SETTINGS_TMPL),
    ("wit/policy.wit", POLICY_WIT),
    (
        "ceiling.js",
        include_str!("../../../plugins/js-ceiling/ceiling.js"),
    ),
    (
        "build.mjs",
        include_str!("../../../plugins/js-ceiling/build.mjs"),
    ),
    ("build", include_str!("../../../plugins/js-ceiling/build")),
    (
        "package.json",
        include_str!("../../../plugins/js-ceiling/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../../plugins/js-ceiling/package-lock.json"),
    ),
    (
        ".gitignore",
        include_str!("../../../plugins/js-ceiling/.gitignore"),
    ),
    (
        "README.md",
        include_str!("../../../plugins/templates/policy/README-javascript.md.tmpl"),
    ),
];

/// The language a plugin is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust on the SDK crate (smallest and fastest components).
    Rust,
    /// Python, built with componentize-py (from PyPI).
    Python,
    /// JavaScript, built with ComponentizeJS (from npm).
    Javascript,
}

/// Kinds of plugin the template command can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateKind {
    /// An energy policy (`hashwatt:policy`), on the policy SDK.
    Policy,
    /// A pool protocol (`hashwatt:pool`), on the pool SDK: a minimal
    /// Stratum V1 client to start from.
    Pool,
}

/// Writes a new plugin crate named `name` into `dir` (which must not
/// exist or be empty); returns the files written.
pub fn new_plugin(
    kind: TemplateKind,
    lang: Lang,
    name: &str,
    dir: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    let name_ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !name_ok {
        bail!(
            "`{name}` is not a valid plugin name: 1 to 64 characters of a-z, 0-9 and `-`, starting with a letter"
        );
    }
    if dir.exists()
        && fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk = match (lang, sdk) {
        (Lang::Rust, sdk) => Some(rust_sdk(kind, sdk)?),
        (_, Some(_)) => bail!("--sdk is for Rust plugins"),
        (_, None) => None,
    };
    let files = match (kind, lang) {
        (TemplateKind::Policy, Lang::Rust) => POLICY_FILES,
        (TemplateKind::Policy, Lang::Python) => PYTHON_FILES,
        (TemplateKind::Policy, Lang::Javascript) => JS_FILES,
        (TemplateKind::Pool, Lang::Rust) => POOL_FILES,
        (TemplateKind::Pool, _) => {
            bail!("pool plugins have a Rust template only (--lang rust)")
        }
    };
    let sdk_str = sdk.map_or(String::new(), |p| p.to_string_lossy().replace('\\', "/"));
    let crate_name = name.replace('-', "_");
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let body = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk_str);
        fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
        if *rel == "build" {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

fn rust_sdk(kind: TemplateKind, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (dir, what) = match kind {
        TemplateKind::Policy => ("policy-sdk", "policy SDK"),
        TemplateKind::Pool => ("pool-sdk", "pool SDK"),
    };
    let sdk = match sdk {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("SDK path {}", p.display()))?,
        None => default_sdk(dir).with_context(|| {
            format!("where is the {what}? pass --sdk PATH (the plugins/{dir} directory of a hashwatt checkout)")
        })?,
    };
    if !sdk.join("Cargo.toml").is_file() {
        bail!("{} is not the {what} (no Cargo.toml)", sdk.display());
    }
    Ok(sdk)
}

/// What `build` produced.
#[derive(Debug)]
pub struct Built {
    /// The package directory (plugin.toml, plugin.wasm, plugin.sig).
    pub package_dir: PathBuf,
    /// The packed `.hwpkg`.
    pub hwpkg: PathBuf,
    /// Component size, bytes.
    pub wasm_bytes: usize,
    /// Whether it was signed.
    pub signed: bool,
}

/// Builds the plugin crate in `dir` for [`WASM_TARGET`] (release), puts
/// the component next to its manifest in `dir/target/package`, checks it
/// against the manifest's world, signs it with `key` if given, and packs
/// it into `out` (default `dir/<name>.hwpkg`).
pub fn build(dir: &Path, key: Option<&Path>, out: Option<&Path>) -> anyhow::Result<Built> {
    // Build scripts and cargo run in the crate: every path they get must
    // mean the same there as here.
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("cannot find {}", dir.display()))?;
    let manifest_text = fs::read_to_string(dir.join(MANIFEST_FILE))
        .with_context(|| format!("cannot read {}", dir.join(MANIFEST_FILE).display()))?;
    let manifest = Manifest::parse(&manifest_text)
        .with_context(|| format!("{}", dir.join(MANIFEST_FILE).display()))?;
    let secret = key
        .map(|k| package::read_secret_key(k).with_context(|| format!("key {}", k.display())))
        .transpose()?;
    let (wasm_path, target_dir) = if dir.join("Cargo.toml").is_file() {
        cargo_build(dir)?
    } else if dir.join("build").is_file() {
        // Python and JavaScript plugins: their own build script makes the
        // component (`build OUT.wasm`).
        let target_dir = dir.join("target");
        fs::create_dir_all(&target_dir)
            .with_context(|| format!("cannot create {}", target_dir.display()))?;
        let wasm_path = target_dir.join("plugin.wasm");
        let status = Command::new("bash")
            .arg(dir.join("build"))
            .arg(&wasm_path)
            .status()
            .context("cannot run bash")?;
        if !status.success() {
            bail!("{} failed ({status})", dir.join("build").display());
        }
        (wasm_path, target_dir)
    } else {
        bail!(
            "{} has neither a Cargo.toml nor a build script",
            dir.display()
        );
    };
    let wasm = fs::read(&wasm_path)
        .with_context(|| format!("the build made no {}", wasm_path.display()))?;
    let runtime = super::Runtime::new()?;
    let component = runtime.compile(&manifest.name, &wasm)?;
    package::check_component(runtime.engine(), &component, &manifest)
        .with_context(|| format!("{} does not match {MANIFEST_FILE}", wasm_path.display()))?;
    let package_dir = target_dir.join("package").join(&manifest.name);
    fs::create_dir_all(&package_dir)
        .with_context(|| format!("cannot create {}", package_dir.display()))?;
    fs::write(package_dir.join(MANIFEST_FILE), &manifest_text)?;
    fs::write(package_dir.join(WASM_FILE), &wasm)?;
    let sig = package_dir.join(package::SIG_FILE);
    if let Some(secret) = &secret {
        package::sign_package(&package_dir, secret)?;
    } else if sig.exists() {
        fs::remove_file(&sig)?;
    }
    let packed = archive::pack(&package_dir)?;
    let hwpkg = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(format!("{}.{}", manifest.name, archive::PACKAGE_EXTENSION)));
    archive::write_package(&hwpkg, &packed.bytes)?;
    Ok(Built {
        package_dir,
        hwpkg,
        wasm_bytes: wasm.len(),
        signed: secret.is_some(),
    })
}

/// `cargo build --release --target wasm32-wasip2` in `dir`; the component
/// and the target directory.
fn cargo_build(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    ensure_target();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| std::path::absolute(&t).unwrap_or(t))
        .unwrap_or_else(|| dir.join("target"));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("cannot run cargo (is Rust installed?)")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let crate_name = cargo_package_name(dir)?.replace('-', "_");
    let wasm_path = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{crate_name}.wasm"));
    if !wasm_path.is_file() {
        bail!("cargo built no {}", wasm_path.display());
    }
    Ok((wasm_path, target_dir))
}

/// Adds the wasm target through rustup when it is missing (the pinned
/// toolchain often exists without it); a failure shows in cargo's error.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == WASM_TARGET)
        });
    if let Ok(false) = installed {
        eprintln!("adding the {WASM_TARGET} target with rustup");
        let _ = Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status();
    }
}

fn cargo_package_name(dir: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(dir.join("Cargo.toml"))
        .with_context(|| format!("cannot read {}", dir.join("Cargo.toml").display()))?;
    let table: toml::Table = toml::from_str(&text).context("Cargo.toml is not valid TOML")?;
    table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .context("Cargo.toml has no [package] name")
}
