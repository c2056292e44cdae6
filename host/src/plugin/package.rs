//! Plugin packages: a manifest, a component and an ed25519 signature over
//! both, so the appliance only runs code an operator-trusted key vouched for.
//!
//! A package is a directory holding three files:
//! - `plugin.toml`: the [`Manifest`] (name, version, kind, world, capabilities);
//! - `plugin.wasm`: the WebAssembly component;
//! - `plugin.sig`: which key signed it and the signature (see [`SignatureFile`]).
//!
//! The signature covers a domain-separated digest of the exact manifest bytes
//! and of the component's SHA-256 (see [`signed_digest`]), so neither file can
//! be changed or swapped without the signature failing.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::warn;

/// File name of the manifest inside a package.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// File name of the component inside a package.
pub const WASM_FILE: &str = "plugin.wasm";
/// File name of the signature inside a package.
pub const SIG_FILE: &str = "plugin.sig";

/// Domain separator of the signed digest: a signature made for anything
/// else (another format version, another program) never verifies here.
pub const SIGNATURE_DOMAIN: &[u8] = b"hashwatt-plugin-v1\0";

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// Largest component accepted, in bytes.
pub const MAX_WASM_BYTES: u64 = 64 << 20;
/// Largest signature file accepted, in bytes.
pub const MAX_SIG_BYTES: u64 = 4 << 10;
/// Largest persistent-state quota a plugin may ask for.
pub const MAX_STATE_QUOTA_BYTES: u64 = 1 << 20;

/// First line of a `plugin.sig` file.
const SIG_HEADER: &str = "hashwatt-plugin-signature v1";
/// First line of a secret key file.
const SECRET_KEY_HEADER: &str = "hashwatt-plugin-secret-key v1";

/// Errors reading, checking, signing or verifying a package. Each refusal
/// reason is its own variant so callers (and tests) can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file of the package is absent.
    #[error("package {dir}: {file} is missing")]
    MissingFile {
        /// The package directory.
        dir: PathBuf,
        /// Which file.
        file: &'static str,
    },
    /// A file is larger than its limit.
    #[error("{path}: {size} bytes is larger than the {max}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The package has no `plugin.sig` and unsigned plugins are not allowed.
    #[error("package {0}: not signed (no plugin.sig) and unsigned plugins are not allowed")]
    MissingSignature(PathBuf),
    /// `plugin.sig` is not in the expected format.
    #[error("package {dir}: malformed plugin.sig: {reason}")]
    MalformedSignature {
        /// The package directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signing key is not among the trusted keys.
    #[error("package {dir}: signed by key {key_id}, which is not a trusted key")]
    UnknownKey {
        /// The package directory.
        dir: PathBuf,
        /// Key id from the signature file.
        key_id: String,
    },
    /// The signature does not verify with the key it names.
    #[error("package {dir}: the signature by key {key_id} is not valid")]
    BadSignature {
        /// The package directory.
        dir: PathBuf,
        /// Key id from the signature file.
        key_id: String,
    },
    /// `plugin.wasm` is not the component that was signed.
    #[error(
        "package {dir}: plugin.wasm was modified after signing (sha256 {actual}, signed {signed})"
    )]
    TamperedWasm {
        /// The package directory.
        dir: PathBuf,
        /// SHA-256 of the file found.
        actual: String,
        /// SHA-256 that was signed.
        signed: String,
    },
    /// `plugin.toml` is not the manifest that was signed.
    #[error("package {dir}: plugin.toml was modified after signing")]
    TamperedManifest {
        /// The package directory.
        dir: PathBuf,
    },
    /// The manifest is not valid.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest file (or a description of where it came from).
        path: PathBuf,
        /// What is wrong with it.
        source: ManifestError,
    },
    /// A plugin of one kind was offered where another kind is needed.
    #[error("plugin {name} is a {actual} plugin, expected a {expected} plugin")]
    KindMismatch {
        /// Plugin name.
        name: String,
        /// The kind wanted.
        expected: PluginKind,
        /// The kind the manifest declares.
        actual: PluginKind,
    },
    /// A public or secret key could not be parsed.
    #[error("invalid key: {0}")]
    Key(String),
    /// The component does not implement what its manifest declares.
    #[error("plugin {name}: the component does not match its manifest: {reason}")]
    ComponentMismatch {
        /// Plugin name.
        name: String,
        /// What differs.
        reason: String,
    },
}

/// What is wrong with a manifest; always names the field.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML, an unknown field, a missing field or a wrong type.
    #[error("line {line}: field `{field}`: {message}")]
    Syntax {
        /// 1-based line (0 if unknown).
        line: usize,
        /// Dotted field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A field has a value outside what is allowed.
    #[error("field `{field}`: {message}")]
    Invalid {
        /// Dotted field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest targets a world or world version this host cannot run.
    #[error("field `{field}`: {message}")]
    UnsupportedWorld {
        /// `world` or `world_version`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The declared kind does not match the world's package.
    #[error("field `kind`: kind `{kind}` does not match world `{world}`")]
    KindMismatch {
        /// Declared kind.
        kind: PluginKind,
        /// Declared world.
        world: String,
    },
}

/// What a plugin is for; decides which world it must implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A pool protocol (`hashwatt:pool`).
    Pool,
    /// An energy / mining policy (`hashwatt:policy`).
    Policy,
}

impl PluginKind {
    /// The WIT package a plugin of this kind must target.
    pub fn wit_package(self) -> &'static str {
        match self {
            PluginKind::Pool => "hashwatt:pool",
            PluginKind::Policy => "hashwatt:policy",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Pool => "pool",
            PluginKind::Policy => "policy",
        })
    }
}

/// WIT package versions this host implements: `(package, major, minor,
/// patch)`. A plugin built for any patch up to that one runs; a later patch
/// may import what this host lacks (0.2.1 added `hashwatt:pool/status`), so
/// it is refused with a message instead of a link error.
pub const SUPPORTED_WORLDS: &[(&str, u64, u64, u64)] =
    &[("hashwatt:pool", 0, 2, 1), ("hashwatt:policy", 0, 1, 0)];

/// A parsed and checked `plugin.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Unique plugin name: lowercase `[a-z0-9-]`, 1..=64 characters; it is
    /// also the directory name of the installed plugin.
    pub name: String,
    /// The plugin's own version.
    pub version: semver::Version,
    /// What the plugin is for.
    pub kind: PluginKind,
    /// The world it implements, `package/world` (e.g. `hashwatt:pool/pool-plugin`).
    pub world: String,
    /// The version of the world's WIT package it was built against.
    pub world_version: semver::Version,
    /// What the plugin asks to be allowed to do.
    pub capabilities: Capabilities,
}

/// The permissions a plugin asks for. The host grants at most these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Pool plugins: `host:port` endpoints the plugin may be connected to;
    /// `"*"` means any endpoint the operator configures.
    pub pool_endpoints: Vec<String>,
    /// Policy plugins: `https://` URLs of feeds (prices, grid signals) the
    /// host may fetch on the plugin's behalf.
    pub http_feeds: Vec<String>,
    /// Bytes of persistent state the plugin may keep (at most 1 MiB).
    pub state_quota_bytes: u64,
}

impl Capabilities {
    /// Whether this plugin may be connected to `host:port` (`*` allows any).
    pub fn allows_endpoint(&self, host: &str, port: u16) -> bool {
        self.pool_endpoints.iter().any(|e| {
            e == "*"
                || split_endpoint(e).is_ok_and(|(h, p)| p == port && h.eq_ignore_ascii_case(host))
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    kind: PluginKind,
    world: String,
    world_version: String,
    #[serde(default)]
    capabilities: RawCapabilities,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    pool_endpoints: Vec<String>,
    #[serde(default)]
    http_feeds: Vec<String>,
    #[serde(default)]
    state_quota_bytes: u64,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Splits `host:port` (IPv6 as `[addr]:port`) and checks both parts.
fn split_endpoint(e: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = e.strip_prefix('[') {
        v6.split_once("]:")
            .ok_or_else(|| format!("`{e}`: expected [addr]:port"))?
    } else {
        e.rsplit_once(':')
            .ok_or_else(|| format!("`{e}` is not host:port"))?
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
    if !host_ok {
        return Err(format!("`{e}` has no valid host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{e}` has an invalid port `{port}`"))?;
    if port == 0 {
        return Err(format!("`{e}`: port 0 is not allowed"));
    }
    Ok((host, port))
}

fn check_feed(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("`{url}` is not an https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{url}` has no valid host"));
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` is not a plausible URL"));
    }
    Ok(())
}

impl Manifest {
    /// Parses and checks manifest text; errors name the field (and line).
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            crate::config::parse_toml(text).map_err(|p| ManifestError::Syntax {
                line: p.line,
                field: p.field,
                message: p.message,
            })?;
        Manifest::check(raw)
    }

    fn check(raw: RawManifest) -> Result<Manifest, ManifestError> {
        let name_ok = (1..=64).contains(&raw.name.len())
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.name.starts_with('-');
        if !name_ok {
            return Err(invalid(
                "name",
                format!(
                    "`{}` is not a valid name: 1 to 64 characters of a-z, 0-9 and `-`, not starting with `-`",
                    raw.name
                ),
            ));
        }
        let version = semver::Version::parse(&raw.version).map_err(|e| {
            invalid(
                "version",
                format!("`{}` is not a semantic version: {e}", raw.version),
            )
        })?;
        let world_version = semver::Version::parse(&raw.world_version).map_err(|e| {
            invalid(
                "world_version",
                format!("`{}` is not a semantic version: {e}", raw.world_version),
            )
        })?;
        let (package, world_name) = raw.world.split_once('/').ok_or_else(|| {
            invalid(
                "world",
                format!("`{}` is not `namespace:package/world`", raw.world),
            )
        })?;
        let ident_ok = |s: &str| {
            !s.is_empty()
                && s.split('-').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        };
        let package_ok = package
            .split_once(':')
            .is_some_and(|(ns, pkg)| ident_ok(ns) && ident_ok(pkg));
        if !package_ok || !ident_ok(world_name) {
            return Err(invalid(
                "world",
                format!("`{}` is not `namespace:package/world`", raw.world),
            ));
        }
        let Some(&(_, major, minor, patch)) = SUPPORTED_WORLDS.iter().find(|(p, ..)| *p == package)
        else {
            return Err(ManifestError::UnsupportedWorld {
                field: "world".into(),
                message: format!(
                    "world package `{package}` is not supported by this host (supported: {})",
                    supported_list()
                ),
            });
        };
        if world_version.major != major
            || world_version.minor != minor
            || world_version.patch > patch
            || !world_version.pre.is_empty()
        {
            return Err(ManifestError::UnsupportedWorld {
                field: "world_version".into(),
                message: format!(
                    "`{package}@{world_version}` is not supported by this host (supported: {})",
                    supported_list()
                ),
            });
        }
        if raw.kind.wit_package() != package {
            return Err(ManifestError::KindMismatch {
                kind: raw.kind,
                world: raw.world,
            });
        }
        let caps = raw.capabilities;
        for (i, e) in caps.pool_endpoints.iter().enumerate() {
            if raw.kind != PluginKind::Pool {
                return Err(invalid(
                    "capabilities.pool_endpoints",
                    "only pool plugins may ask for pool endpoints",
                ));
            }
            if e != "*" {
                split_endpoint(e)
                    .map_err(|m| invalid(format!("capabilities.pool_endpoints[{i}]"), m))?;
            }
        }
        for (i, url) in caps.http_feeds.iter().enumerate() {
            if raw.kind != PluginKind::Policy {
                return Err(invalid(
                    "capabilities.http_feeds",
                    "only policy plugins may ask for http feeds",
                ));
            }
            check_feed(url).map_err(|m| invalid(format!("capabilities.http_feeds[{i}]"), m))?;
        }
        if caps.pool_endpoints.len() > 256 || caps.http_feeds.len() > 256 {
            return Err(invalid("capabilities", "at most 256 endpoints or feeds"));
        }
        if caps.state_quota_bytes > MAX_STATE_QUOTA_BYTES {
            return Err(invalid(
                "capabilities.state_quota_bytes",
                format!(
                    "{} bytes is more than the {MAX_STATE_QUOTA_BYTES}-byte maximum",
                    caps.state_quota_bytes
                ),
            ));
        }
        Ok(Manifest {
            name: raw.name,
            version,
            kind: raw.kind,
            world: raw.world,
            world_version,
            capabilities: Capabilities {
                pool_endpoints: caps.pool_endpoints,
                http_feeds: caps.http_feeds,
                state_quota_bytes: caps.state_quota_bytes,
            },
        })
    }
}

fn supported_list() -> String {
    SUPPORTED_WORLDS
        .iter()
        .map(|(p, major, minor, patch)| match patch {
            0 => format!("{p}@{major}.{minor}.0"),
            _ => format!("{p}@{major}.{minor}.0 to {major}.{minor}.{patch}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The keys whose signatures the host accepts, and whether it runs
/// packages no trusted key signed.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Trusted ed25519 public keys.
    pub keys: Vec<VerifyingKey>,
    /// Load packages that are unsigned or signed by an unknown key (with a
    /// warning). Packages whose signature is present but wrong, or whose
    /// files do not match what was signed, are refused regardless: that is
    /// corruption or tampering, not merely a missing signature.
    pub allow_unsigned: bool,
}

impl Trust {
    /// Builds the trust from the configuration's hex-encoded keys.
    pub fn from_config(config: &crate::config::Config) -> Result<Trust, PackageError> {
        let keys = config
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                parse_public_key(k)
                    .map_err(|e| PackageError::Key(format!("trusted_keys[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust {
            keys,
            allow_unsigned: config.allow_unsigned_plugins,
        })
    }
}

/// A package whose signature (if any) checked out and whose manifest is valid.
#[derive(Clone, Debug)]
pub struct VerifiedPackage {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The exact manifest text that was verified.
    pub manifest_text: String,
    /// The component.
    pub wasm: Vec<u8>,
    /// SHA-256 of [`Self::wasm`].
    pub wasm_sha256: [u8; 32],
    /// Key id of the trusted key that signed it; `None` if it was loaded
    /// unsigned because [`Trust::allow_unsigned`] is set.
    pub signer: Option<String>,
    /// The signature file as read (absent if unsigned).
    pub signature: Option<String>,
}

impl VerifiedPackage {
    /// Refuses the package unless it is of `kind`.
    pub fn expect_kind(&self, kind: PluginKind) -> Result<(), PackageError> {
        if self.manifest.kind == kind {
            Ok(())
        } else {
            Err(PackageError::KindMismatch {
                name: self.manifest.name.clone(),
                expected: kind,
                actual: self.manifest.kind,
            })
        }
    }
}

/// Checks that a compiled component exports the interfaces of the WIT
/// package its manifest's kind needs, at a supported version, so a pool
/// manifest wrapped around a policy component (or anything else) is
/// refused at install time rather than at first use.
pub fn check_component(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
    manifest: &Manifest,
) -> Result<(), PackageError> {
    let mismatch = |reason: String| PackageError::ComponentMismatch {
        name: manifest.name.clone(),
        reason,
    };
    let wanted = format!("{}/", manifest.kind.wit_package());
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let ours: Vec<&String> = exports.iter().filter(|n| n.starts_with(&wanted)).collect();
    if ours.is_empty() {
        return Err(mismatch(format!(
            "a {} plugin must export interfaces of {}; it exports [{}]",
            manifest.kind,
            manifest.kind.wit_package(),
            exports.join(", ")
        )));
    }
    for name in ours {
        let version = name.split_once('@').map(|(_, v)| v).unwrap_or("");
        // A component built for a later patch than its manifest declares
        // may import what the declared version lacks (a 0.2.1 pool plugin
        // imports `status`): hosts judge a package by its manifest, so the
        // manifest must not understate it.
        let ok = semver::Version::parse(version).is_ok_and(|v| {
            v.major == manifest.world_version.major
                && v.minor == manifest.world_version.minor
                && v.patch <= manifest.world_version.patch
        });
        if !ok {
            return Err(mismatch(format!(
                "export `{name}` is not at the declared world version {} \
                 (set world_version in plugin.toml to the version it was built for)",
                manifest.world_version
            )));
        }
    }
    Ok(())
}

/// The contents of `plugin.sig`.
///
/// ```text
/// hashwatt-plugin-signature v1
/// key-id <16 hex digits>
/// manifest-sha256 <64 hex digits>
/// wasm-sha256 <64 hex digits>
/// signature <128 hex digits>
/// ```
///
/// The two hashes let a verifier say *which* file changed; they are
/// covered by the signature, so forging them only yields "bad signature".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureFile {
    /// Id of the signing key ([`key_id`]).
    pub key_id: String,
    /// SHA-256 of the signed manifest bytes.
    pub manifest_sha256: [u8; 32],
    /// SHA-256 of the signed component.
    pub wasm_sha256: [u8; 32],
    /// The ed25519 signature over [`signed_digest`].
    pub signature: Signature,
}

impl SignatureFile {
    /// Parses the text format; strict: every line required, nothing extra.
    pub fn parse(text: &str) -> Result<SignatureFile, String> {
        let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
        if lines.next() != Some(SIG_HEADER) {
            return Err(format!("first line must be `{SIG_HEADER}`"));
        }
        let mut field = |name: &str| -> Result<String, String> {
            let line = lines
                .next()
                .ok_or_else(|| format!("missing `{name}` line"))?;
            let value = line
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or_else(|| format!("expected `{name} <hex>`, found `{}`", truncate(line)))?;
            Ok(value.trim().to_string())
        };
        let key_id = field("key-id")?;
        if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("key-id must be 16 hex digits".into());
        }
        let manifest_sha256 = hex32("manifest-sha256", &field("manifest-sha256")?)?;
        let wasm_sha256 = hex32("wasm-sha256", &field("wasm-sha256")?)?;
        let sig_hex = field("signature")?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&sig_hex, &mut sig)
            .map_err(|_| "signature must be 128 hex digits".to_string())?;
        if lines.next().is_some() {
            return Err("unexpected text after the signature line".into());
        }
        Ok(SignatureFile {
            key_id: key_id.to_ascii_lowercase(),
            manifest_sha256,
            wasm_sha256,
            signature: Signature::from_bytes(&sig),
        })
    }

    /// Renders the text format.
    pub fn render(&self) -> String {
        format!(
            "{SIG_HEADER}\nkey-id {}\nmanifest-sha256 {}\nwasm-sha256 {}\nsignature {}\n",
            self.key_id,
            hex::encode(self.manifest_sha256),
            hex::encode(self.wasm_sha256),
            hex::encode(self.signature.to_bytes())
        )
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn hex32(what: &str, s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| format!("{what} must be 64 hex digits"))?;
    Ok(out)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The digest a package signature signs:
/// `sha256("hashwatt-plugin-v1\0" ‖ sha256(manifest) ‖ sha256(wasm))`.
/// Fixed-size fields make the encoding unambiguous.
pub fn signed_digest(manifest_sha256: &[u8; 32], wasm_sha256: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SIGNATURE_DOMAIN);
    h.update(manifest_sha256);
    h.update(wasm_sha256);
    h.finalize().into()
}

/// Short, stable id of a public key: the first 8 bytes of its SHA-256, in
/// hex. Shown to operators and written into `plugin.sig`.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = sha256(key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or(&digest))
}

/// Parses a hex-encoded ed25519 public key (64 hex digits).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, PackageError> {
    let bytes = hex32("public key", text.trim()).map_err(PackageError::Key)?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| PackageError::Key("not a valid ed25519 public key".into()))
}

/// Hex encoding of a public key, as written in `trusted_keys`.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Generates a new signing key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, PackageError> {
    use rand::TryRngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| PackageError::Key(format!("no randomness from the OS: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// Writes a secret key file readable only by its owner. Refuses to
/// overwrite an existing file (a lost key cannot be recovered).
pub fn write_secret_key(path: &Path, key: &SigningKey) -> Result<(), PackageError> {
    let io = |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(io)?;
    let text = format!("{SECRET_KEY_HEADER}\n{}\n", hex::encode(key.to_bytes()));
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a secret key file written by [`write_secret_key`]. Refuses files
/// that group or others may read.
pub fn read_secret_key(path: &Path) -> Result<SigningKey, PackageError> {
    let io = |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(PackageError::Key(format!(
                "{}: secret key file is accessible by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            )));
        }
    }
    let text = String::from_utf8(read_limited(path, 1024)?)
        .map_err(|_| PackageError::Key(format!("{}: not a secret key file", path.display())))?;
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some(SECRET_KEY_HEADER) {
        return Err(PackageError::Key(format!(
            "{}: not a hashwatt secret key file",
            path.display()
        )));
    }
    let seed = hex32("secret key", lines.next().unwrap_or(""))
        .map_err(|e| PackageError::Key(format!("{}: {e}", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a whole file, refusing it if it is larger than `max` bytes.
pub(crate) fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, PackageError> {
    let io = |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > max {
        return Err(PackageError::TooLarge {
            path: path.to_path_buf(),
            size,
            max,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > max {
        return Err(PackageError::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            max,
        });
    }
    Ok(buf)
}

/// Reads a package file, or `None` if it does not exist.
fn read_optional(
    dir: &Path,
    file: &'static str,
    max: u64,
) -> Result<Option<Vec<u8>>, PackageError> {
    let path = dir.join(file);
    match read_limited(&path, max) {
        Ok(b) => Ok(Some(b)),
        Err(PackageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn read_required(dir: &Path, file: &'static str, max: u64) -> Result<Vec<u8>, PackageError> {
    read_optional(dir, file, max)?.ok_or_else(|| PackageError::MissingFile {
        dir: dir.to_path_buf(),
        file,
    })
}

fn parse_manifest(path: PathBuf, bytes: &[u8]) -> Result<(Manifest, String), PackageError> {
    let text = std::str::from_utf8(bytes).map_err(|_| PackageError::Manifest {
        path: path.clone(),
        source: invalid("(top level)", "not UTF-8 text"),
    })?;
    let manifest =
        Manifest::parse(text).map_err(|source| PackageError::Manifest { path, source })?;
    Ok((manifest, text.to_string()))
}

/// Signs manifest and component bytes, returning the `plugin.sig` contents.
pub fn sign(manifest: &[u8], wasm: &[u8], key: &SigningKey) -> SignatureFile {
    let manifest_sha256 = sha256(manifest);
    let wasm_sha256 = sha256(wasm);
    let signature = key.sign(&signed_digest(&manifest_sha256, &wasm_sha256));
    SignatureFile {
        key_id: key_id(&key.verifying_key()),
        manifest_sha256,
        wasm_sha256,
        signature,
    }
}

/// Signs the package in `dir` (which must hold a valid `plugin.toml` and a
/// `plugin.wasm`) and writes `plugin.sig`, replacing any previous one.
pub fn sign_package(dir: &Path, key: &SigningKey) -> Result<SignatureFile, PackageError> {
    let manifest = read_required(dir, MANIFEST_FILE, MAX_MANIFEST_BYTES)?;
    let wasm = read_required(dir, WASM_FILE, MAX_WASM_BYTES)?;
    // Refuse to vouch for a manifest the host would refuse anyway.
    parse_manifest(dir.join(MANIFEST_FILE), &manifest)?;
    let sig = sign(&manifest, &wasm, key);
    let path = dir.join(SIG_FILE);
    hashwatt_state::atomic_write(&path, sig.render().as_bytes())
        .map_err(|source| PackageError::Io { path, source })?;
    Ok(sig)
}

/// Reads and verifies the package in `dir` against `trust`.
///
/// Order of checks: files present and within limits; signature present
/// (else refused unless `allow_unsigned`); signature well-formed; key
/// trusted (else refused unless `allow_unsigned`); signature valid; both
/// files match what was signed; manifest valid and supported.
pub fn load_package(dir: &Path, trust: &Trust) -> Result<VerifiedPackage, PackageError> {
    let manifest_bytes = read_required(dir, MANIFEST_FILE, MAX_MANIFEST_BYTES)?;
    let wasm = read_required(dir, WASM_FILE, MAX_WASM_BYTES)?;
    let sig_bytes = read_optional(dir, SIG_FILE, MAX_SIG_BYTES)?;
    let wasm_sha256 = sha256(&wasm);
    let mut signer = None;
    let mut signature = None;
    match sig_bytes {
        None if trust.allow_unsigned => {
            warn!(package = %dir.display(), "loading an UNSIGNED plugin package (allow_unsigned_plugins is on)");
        }
        None => return Err(PackageError::MissingSignature(dir.to_path_buf())),
        Some(bytes) => {
            let malformed = |reason: String| PackageError::MalformedSignature {
                dir: dir.to_path_buf(),
                reason,
            };
            let text = String::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text".into()))?;
            let sig = SignatureFile::parse(&text).map_err(malformed)?;
            match trust.keys.iter().find(|k| key_id(k) == sig.key_id) {
                None if trust.allow_unsigned => {
                    warn!(package = %dir.display(), key_id = %sig.key_id,
                        "loading a plugin package signed by an UNTRUSTED key (allow_unsigned_plugins is on)");
                }
                None => {
                    return Err(PackageError::UnknownKey {
                        dir: dir.to_path_buf(),
                        key_id: sig.key_id,
                    });
                }
                Some(key) => {
                    let digest = signed_digest(&sig.manifest_sha256, &sig.wasm_sha256);
                    key.verify_strict(&digest, &sig.signature).map_err(|_| {
                        PackageError::BadSignature {
                            dir: dir.to_path_buf(),
                            key_id: sig.key_id.clone(),
                        }
                    })?;
                    if sig.wasm_sha256 != wasm_sha256 {
                        return Err(PackageError::TamperedWasm {
                            dir: dir.to_path_buf(),
                            actual: hex::encode(wasm_sha256),
                            signed: hex::encode(sig.wasm_sha256),
                        });
                    }
                    if sig.manifest_sha256 != sha256(&manifest_bytes) {
                        return Err(PackageError::TamperedManifest {
                            dir: dir.to_path_buf(),
                        });
                    }
                    signer = Some(sig.key_id.clone());
                }
            }
            signature = Some(text);
        }
    }
    let (manifest, manifest_text) = parse_manifest(dir.join(MANIFEST_FILE), &manifest_bytes)?;
    Ok(VerifiedPackage {
        manifest,
        manifest_text,
        wasm,
        wasm_sha256,
        signer,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "name = \"stratum-v1\"\nversion = \"1.2.3\"\nkind = \"pool\"\nworld = \"hashwatt:pool/pool-plugin\"\nworld_version = \"0.2.0\"\n[capabilities]\npool_endpoints = [\"*\", \"pool.example.com:3333\", \"[::1]:4444\"]\nstate_quota_bytes = 4096\n";

    fn err(text: &str) -> String {
        Manifest::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn valid_manifest_parses() {
        let m = Manifest::parse(POOL).unwrap();
        assert_eq!(m.name, "stratum-v1");
        assert_eq!(m.version, semver::Version::new(1, 2, 3));
        assert_eq!(m.kind, PluginKind::Pool);
        assert_eq!(m.capabilities.state_quota_bytes, 4096);
        assert!(m.capabilities.allows_endpoint("anything", 1));
        let policy = "name = \"tariff\"\nversion = \"0.1.0\"\nkind = \"policy\"\nworld = \"hashwatt:policy/policy-plugin\"\nworld_version = \"0.1.0\"\n[capabilities]\nhttp_feeds = [\"https://prices.example.com/v1?zone=de\"]\n";
        let m = Manifest::parse(policy).unwrap();
        assert_eq!(m.kind, PluginKind::Policy);
        assert_eq!(m.capabilities.http_feeds.len(), 1);
    }

    #[test]
    fn endpoints_without_wildcard() {
        let m = Manifest::parse(&POOL.replace("\"*\", ", "")).unwrap();
        assert!(m.capabilities.allows_endpoint("POOL.example.com", 3333));
        assert!(m.capabilities.allows_endpoint("::1", 4444));
        assert!(!m.capabilities.allows_endpoint("pool.example.com", 3334));
        assert!(!m.capabilities.allows_endpoint("evil.example.com", 3333));
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(&POOL.replace("stratum-v1", "Stratum_V1"));
        assert!(e.contains("field `name`"), "{e}");
        let e = err(&POOL.replace("\"1.2.3\"", "\"1.2\""));
        assert!(e.contains("field `version`"), "{e}");
        let e = err(&POOL.replace("kind = \"pool\"", "kind = \"miner\""));
        assert!(e.contains("field `kind`") && e.contains("line 3"), "{e}");
        let e = err(&format!("{POOL}colour = 1\n"));
        assert!(e.contains("colour"), "{e}");
        let e = err(&POOL.replace("world = \"hashwatt:pool/pool-plugin\"\n", ""));
        assert!(e.contains("world"), "{e}");
        let e = err(&POOL.replace("4096", "2000000"));
        assert!(e.contains("capabilities.state_quota_bytes"), "{e}");
        let e = err(&POOL.replace("\"[::1]:4444\"", "\"host:0\""));
        assert!(e.contains("capabilities.pool_endpoints[2]"), "{e}");
        let e = err(&POOL.replace("\"[::1]:4444\"", "\"no-port\""));
        assert!(e.contains("capabilities.pool_endpoints[2]"), "{e}");
        let e = err(&format!("{POOL}http_feeds = [\"https://x\"]\n"));
        assert!(e.contains("capabilities.http_feeds"), "{e}");
        let e = err(&format!(
            "{}{}",
            "x".repeat(0),
            POOL.replace("stratum-v1", &"a".repeat(65))
        ));
        assert!(e.contains("field `name`"), "{e}");
        let e = err("name = = 1\n");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn world_checks() {
        let e = Manifest::parse(&POOL.replace("0.2.0", "0.3.0")).unwrap_err();
        assert!(
            matches!(&e, ManifestError::UnsupportedWorld { field, .. } if field == "world_version"),
            "{e}"
        );
        let e = Manifest::parse(&POOL.replace("0.2.0", "0.2.0-rc.1")).unwrap_err();
        assert!(matches!(e, ManifestError::UnsupportedWorld { .. }), "{e}");
        let e = Manifest::parse(&POOL.replace("hashwatt:pool/", "acme:pool/")).unwrap_err();
        assert!(
            matches!(&e, ManifestError::UnsupportedWorld { field, .. } if field == "world"),
            "{e}"
        );
        let policy_world = POOL
            .replace("hashwatt:pool/pool-plugin", "hashwatt:policy/p")
            .replace("0.2.0", "0.1.0");
        let e = Manifest::parse(&policy_world).unwrap_err();
        assert!(matches!(e, ManifestError::KindMismatch { .. }), "{e}");
        let e = Manifest::parse(&POOL.replace("hashwatt:pool/pool-plugin", "hashwatt-pool"))
            .unwrap_err();
        assert!(matches!(e, ManifestError::Invalid { .. }), "{e}");
        // 0.2.0 and 0.2.1 run; a later patch may import what this host
        // lacks, so it is refused with the range this host supports.
        assert!(Manifest::parse(&POOL.replace("0.2.0", "0.2.1")).is_ok());
        let e = Manifest::parse(&POOL.replace("0.2.0", "0.2.9")).unwrap_err();
        assert!(
            e.to_string().contains("hashwatt:pool@0.2.0 to 0.2.1"),
            "{e}"
        );
        // A manifest for the previous pool contract is refused too.
        assert!(Manifest::parse(&POOL.replace("0.2.0", "0.1.0")).is_err());
    }

    #[test]
    fn feeds_must_be_https() {
        let base = "name = \"p\"\nversion = \"0.1.0\"\nkind = \"policy\"\nworld = \"hashwatt:policy/policy-plugin\"\nworld_version = \"0.1.0\"\n[capabilities]\n";
        for bad in [
            "http://x.example",
            "https://",
            "https://user@x/",
            "https://x/a b",
        ] {
            let e = err(&format!("{base}http_feeds = [\"{bad}\"]\n"));
            assert!(e.contains("capabilities.http_feeds[0]"), "{bad}: {e}");
        }
        let e = err(&format!("{base}pool_endpoints = [\"*\"]\n"));
        assert!(e.contains("capabilities.pool_endpoints"), "{e}");
    }

    #[test]
    fn signature_file_round_trip_and_strictness() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let sig = sign(b"m", b"w", &key);
        let text = sig.render();
        assert_eq!(SignatureFile::parse(&text).unwrap(), sig);
        assert!(SignatureFile::parse(&format!("{text}extra 1\n")).is_err());
        assert!(SignatureFile::parse(&text.replace("key-id", "kid")).is_err());
        assert!(
            SignatureFile::parse(&text.replace(SIG_HEADER, "hashwatt-plugin-signature v2"))
                .is_err()
        );
        let short: String = text.lines().take(4).collect::<Vec<_>>().join("\n");
        assert!(SignatureFile::parse(&short).is_err());
        let digest = signed_digest(&sha256(b"m"), &sha256(b"w"));
        key.verifying_key()
            .verify_strict(&digest, &sig.signature)
            .unwrap();
        // The domain separator matters: the same data without it does not verify.
        let mut plain = Sha256::new();
        plain.update(sha256(b"m"));
        plain.update(sha256(b"w"));
        let plain: [u8; 32] = plain.finalize().into();
        assert!(
            key.verifying_key()
                .verify_strict(&plain, &sig.signature)
                .is_err()
        );
    }

    #[test]
    fn public_keys_parse() {
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let hex = public_key_hex(&key);
        assert_eq!(parse_public_key(&hex).unwrap(), key);
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
        assert_eq!(key_id(&key).len(), 16);
    }

    #[test]
    fn secret_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = generate_key().unwrap();
        write_secret_key(&path, &key).unwrap();
        assert!(write_secret_key(&path, &key).is_err(), "must not overwrite");
        assert_eq!(read_secret_key(&path).unwrap().to_bytes(), key.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(read_secret_key(&path).is_err());
        }
        assert_ne!(generate_key().unwrap().to_bytes(), key.to_bytes());
    }
}
