//! Cache of precompiled plugin components, so a restart does not pay
//! Cranelift compilation again.
//!
//! Entries are keyed by the SHA-256 of the component and by the engine's
//! [`Engine::precompile_compatibility_hash`]: a new host version or engine
//! setting gets a different key instead of loading incompatible code.
//!
//! [`Component::deserialize`] trusts its input completely: it maps the
//! bytes as executable code in the host process. So only bytes this host
//! wrote are ever deserialized, and "this host wrote them" is checked with
//! a key, not with a plain checksum anyone could recompute:
//!
//! - the cache directory holds a host secret, [`KEY_FILE`]: 32 random bytes
//!   created on first use with mode 0600 (see [`load_component`] for how a
//!   damaged or too widely readable key is handled);
//! - each `<key>.cwasm` has a sidecar `<key>.cwasm.meta` holding an
//!   HMAC-SHA256 under that secret over the component's SHA-256, the
//!   engine's compatibility hash, the artifact's length and its bytes
//!   (see [`render_meta`] for the format); the sidecar is written after the
//!   artifact, and the old sidecar is removed before it, so a crash in
//!   between leaves an entry that is refused rather than trusted;
//! - the artifact is read into memory once, its MAC verified, and those
//!   same bytes are deserialized (nothing is read twice).
//!
//! Anything that does not verify (a forged or older-format sidecar, a
//! changed byte, truncation, a copied entry, a regenerated key) is never
//! deserialized: the component is recompiled from the wasm, the entry is
//! rewritten with a fresh MAC, a warning is logged, and the outcome says
//! why ([`CacheOutcome::Recompiled`]). Someone who can write the cache
//! directory can still make the host recompile, but cannot make it run
//! native code of their choosing unless they can also read [`KEY_FILE`].

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::package::sha256;
use super::{PluginError, Runtime};

/// Largest artifact the cache will read back, in bytes.
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;
/// Largest sidecar the cache will read, in bytes.
const MAX_META_BYTES: u64 = 4 << 10;
/// First line of a sidecar file.
const META_HEADER: &str = "hashwatt-cwasm v2";
/// First line of the unauthenticated sidecars older hosts wrote (a plain
/// SHA-256 that anyone able to write the directory could recompute).
const OLD_META_HEADER: &str = "hashwatt-cwasm v1";
/// Domain separator of the artifact MAC: a MAC made by this key for any
/// other purpose never verifies here.
const MAC_DOMAIN: &[u8] = b"hashwatt-cwasm-mac-v1\0";
/// File name of the host secret inside the cache directory.
pub const KEY_FILE: &str = "host.key";
/// Length of the host secret in bytes.
const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Errors of the cache's own files (the host key, writing entries). They
/// never fail a load: the component is compiled without the cache instead.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or directory of the cache could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The operating system gave no randomness for a new host key.
    #[error("no randomness from the OS for a new plugin-cache key: {0}")]
    Random(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why an existing cache entry was not loaded. Each reason is its own
/// variant so callers and tests can tell them apart without reading text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The artifact has no sidecar (a crash while storing, or a file
    /// dropped in by someone else).
    #[error("the artifact has no sidecar")]
    MissingSidecar,
    /// The sidecar has no artifact.
    #[error("the sidecar has no artifact")]
    MissingArtifact,
    /// The sidecar is in the format of older hosts, which has no MAC: its
    /// artifact cannot be told apart from a forgery.
    #[error("the sidecar is in the old unauthenticated format")]
    Unauthenticated,
    /// The sidecar is not in the expected format.
    #[error("the sidecar is malformed: {0}")]
    MalformedSidecar(String),
    /// The sidecar names another entry (copied or renamed).
    #[error("the sidecar is for entry {0}")]
    ForeignSidecar(String),
    /// The artifact does not have the length its sidecar records.
    #[error("the artifact is {actual} bytes, its sidecar says {expected}")]
    SizeMismatch {
        /// Length found.
        actual: u64,
        /// Length recorded.
        expected: u64,
    },
    /// The sidecar records a length above the cache's limit.
    #[error("the sidecar claims {0} bytes, more than the cache accepts")]
    TooLarge(u64),
    /// The MAC does not verify under this host's key: the artifact or its
    /// sidecar was changed, or written under another key.
    #[error("the artifact's MAC does not verify under this host's key")]
    BadMac,
    /// A file of the entry could not be read.
    #[error("cannot read the entry: {0}")]
    Unreadable(String),
    /// The artifact was authentic but wasmtime refused it.
    #[error("wasmtime refused the artifact: {0}")]
    Deserialize(String),
}

/// How a component was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// An authentic precompiled artifact was found and loaded.
    Hit,
    /// No entry existed; the component was compiled and stored.
    Miss,
    /// An entry existed but was not loaded (`reason`); the component was
    /// recompiled from the wasm and the entry rewritten with a fresh MAC.
    Recompiled {
        /// Why the entry was refused.
        reason: Rejection,
    },
    /// The cache could not be used at all (its directory or key is not
    /// readable or writable); the component was compiled without it.
    Unavailable {
        /// What failed, for the operator.
        reason: String,
    },
}

/// Sha-256 based [`Hasher`], so the engine's compatibility hash becomes a
/// stable 256-bit value instead of a process-seeded 64-bit one.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The engine's precompilation compatibility hash as 32 stable bytes.
fn engine_hash_bytes(engine: &Engine) -> [u8; 32] {
    let mut h = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().into()
}

/// Hex digest of the engine's precompilation compatibility hash.
pub fn engine_hash(engine: &Engine) -> String {
    hex::encode(engine_hash_bytes(engine))
}

/// The cache key of `wasm` for `engine`: `<sha256(wasm)>-<engine hash>`,
/// both in hex (truncated to 128 bits each to keep file names short).
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    EntryId::new(engine_hash_bytes(engine), wasm).key
}

/// What identifies one cache entry: the file-name key and the full hashes
/// the MAC binds.
#[derive(Clone, Debug)]
struct EntryId {
    key: String,
    wasm_sha256: [u8; 32],
    engine_hash: [u8; 32],
}

impl EntryId {
    fn new(engine_hash: [u8; 32], wasm: &[u8]) -> Self {
        let wasm_sha256 = sha256(wasm);
        let wasm_hex = hex::encode(wasm_sha256);
        let engine_hex = hex::encode(engine_hash);
        EntryId {
            key: format!(
                "{}-{}",
                wasm_hex.get(..32).unwrap_or(&wasm_hex),
                engine_hex.get(..32).unwrap_or(&engine_hex)
            ),
            wasm_sha256,
            engine_hash,
        }
    }
}

/// Path of the artifact for `key` in `cache_dir`.
pub fn artifact_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.cwasm"))
}

/// Path of the sidecar for `key` in `cache_dir`.
pub fn sidecar_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.cwasm.meta"))
}

/// The host secret that authenticates artifacts. Wiped when dropped.
struct HostKey([u8; KEY_LEN]);

impl Drop for HostKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// Reads the host key in `cache_dir`, creating the directory and the key
/// (mode 0600, atomically) when there is none. A key file of the wrong
/// size or type is replaced by a new key (every entry is then recompiled
/// once); a key file others may access gets mode 0600 and a warning.
fn host_key(cache_dir: &Path) -> Result<HostKey, CacheError> {
    fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    let path = cache_dir.join(KEY_FILE);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {
            if let Some(key) = read_key(&path)? {
                return Ok(key);
            }
            warn!(path = %path.display(),
                "plugin-cache key has the wrong size; generating a new one (cached plugins will be recompiled once)");
        }
        Ok(_) => warn!(path = %path.display(),
            "plugin-cache key is not a regular file; generating a new one (cached plugins will be recompiled once)"),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let mut key = HostKey([0; KEY_LEN]);
    {
        use rand::TryRngCore;
        rand::rngs::OsRng
            .try_fill_bytes(&mut key.0)
            .map_err(|e| CacheError::Random(e.to_string()))?;
    }
    hashwatt_state::atomic_write_with_mode(&path, &key.0, 0o600).map_err(io_err(&path))?;
    Ok(key)
}

/// Reads an existing key file; `None` if it does not hold exactly
/// [`KEY_LEN`] bytes. Narrows the file's permissions to 0600 if needed.
fn read_key(path: &Path) -> Result<Option<HostKey>, CacheError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io_err(path))?.permissions().mode() & 0o777;
        if mode & !0o600 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io_err(path))?;
            warn!(path = %path.display(), mode = format!("{mode:o}"),
                "plugin-cache key was accessible beyond its owner; its mode is now 600");
        }
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    file.take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .ok()
        .map(HostKey);
    bytes.fill(0);
    Ok(key)
}

/// The MAC of an artifact: HMAC-SHA256 under the host key over
/// `"hashwatt-cwasm-mac-v1\0" ‖ sha256(wasm) ‖ engine hash ‖ len (u64 LE) ‖
/// artifact`. Fixed-size fields make the encoding unambiguous.
fn artifact_mac(key: &HostKey, id: &EntryId, artifact: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; 32 bytes are hashed into the block.
    let mut mac = HmacSha256::new_from_slice(&key.0)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(MAC_DOMAIN);
    mac.update(&id.wasm_sha256);
    mac.update(&id.engine_hash);
    mac.update(&(artifact.len() as u64).to_le_bytes());
    mac.update(artifact);
    mac
}

/// The sidecar of an artifact:
///
/// ```text
/// hashwatt-cwasm v2
/// key <cache key>
/// len <artifact length in bytes>
/// hmac-sha256 <64 hex digits>
/// ```
fn render_meta(key: &HostKey, id: &EntryId, artifact: &[u8]) -> String {
    format!(
        "{META_HEADER}\nkey {}\nlen {}\nhmac-sha256 {}\n",
        id.key,
        artifact.len(),
        hex::encode(artifact_mac(key, id, artifact).finalize().into_bytes())
    )
}

/// Reads at most `max` bytes of `path`; `Ok(None)` if it does not exist.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, Rejection> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Rejection::Unreadable(format!("{}: {e}", path.display()))),
    };
    let mut bytes = Vec::new();
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| Rejection::Unreadable(format!("{}: {e}", path.display())))?;
    Ok(Some(bytes))
}

/// Reads the cached artifact of `id` and verifies its MAC.
/// `Ok(None)` = no entry; `Err(reason)` = an entry that must not be used.
fn read_checked(
    cache_dir: &Path,
    id: &EntryId,
    key: &HostKey,
) -> Result<Option<Vec<u8>>, Rejection> {
    let artifact_path = artifact_path(cache_dir, &id.key);
    let Some(meta) = read_bounded(&sidecar_path(cache_dir, &id.key), MAX_META_BYTES)? else {
        return if artifact_path.exists() {
            Err(Rejection::MissingSidecar)
        } else {
            Ok(None)
        };
    };
    let malformed = |what: &str| Rejection::MalformedSidecar(what.to_string());
    let meta = String::from_utf8(meta).map_err(|_| malformed("not text"))?;
    let mut lines = meta.lines();
    match lines.next() {
        Some(META_HEADER) => {}
        Some(OLD_META_HEADER) => return Err(Rejection::Unauthenticated),
        _ => return Err(malformed("wrong header")),
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| malformed(&format!("no `{name}` line")))
    };
    let meta_key = field("key")?;
    let meta_len: u64 = field("len")?
        .parse()
        .map_err(|_| malformed("invalid length"))?;
    let mut meta_mac = [0u8; 32];
    hex::decode_to_slice(field("hmac-sha256")?, &mut meta_mac)
        .map_err(|_| malformed("the MAC is not 64 hex digits"))?;
    if lines.next().is_some() {
        return Err(malformed("text after the MAC"));
    }
    if meta_key != id.key {
        return Err(Rejection::ForeignSidecar(meta_key));
    }
    if meta_len > MAX_ARTIFACT_BYTES {
        return Err(Rejection::TooLarge(meta_len));
    }
    let artifact = read_bounded(&artifact_path, meta_len.saturating_add(1))?
        .ok_or(Rejection::MissingArtifact)?;
    if artifact.len() as u64 != meta_len {
        return Err(Rejection::SizeMismatch {
            actual: fs::metadata(&artifact_path)
                .map(|m| m.len())
                .unwrap_or(artifact.len() as u64),
            expected: meta_len,
        });
    }
    artifact_mac(key, id, &artifact)
        .verify_slice(&meta_mac)
        .map_err(|_| Rejection::BadMac)?;
    Ok(Some(artifact))
}

/// Writes the artifact, then its sidecar (each atomically), so a crash in
/// between leaves an entry that is refused rather than trusted.
fn store(cache_dir: &Path, id: &EntryId, key: &HostKey, artifact: &[u8]) -> Result<(), CacheError> {
    fs::create_dir_all(cache_dir).map_err(io_err(cache_dir))?;
    // Drop the old sidecar first: until the new one is written, the entry
    // is not trusted.
    let sidecar = sidecar_path(cache_dir, &id.key);
    match fs::remove_file(&sidecar) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&sidecar)(e)),
    }
    let path = artifact_path(cache_dir, &id.key);
    hashwatt_state::atomic_write(&path, artifact).map_err(io_err(&path))?;
    hashwatt_state::atomic_write(&sidecar, render_meta(key, id, artifact).as_bytes())
        .map_err(io_err(&sidecar))
}

/// Loads the component for `wasm`, from the cache in `cache_dir` when an
/// authentic entry exists, else by compiling it and storing the result
/// under a fresh MAC.
///
/// The host key ([`KEY_FILE`] in `cache_dir`) is created on first use. A
/// key file of the wrong size or type is replaced by a new key; one that
/// group or others may access is narrowed to mode 0600 with a warning.
/// An entry that does not verify is logged, recompiled and rewritten
/// ([`CacheOutcome::Recompiled`]). Failing to read the key or to write the
/// cache is logged and does not fail the load.
pub fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    name: &str,
    wasm: &[u8],
) -> Result<(Component, CacheOutcome), PluginError> {
    let id = EntryId::new(engine_hash_bytes(engine), wasm);
    let key = &id.key;
    let load_err = |e: wasmtime::Error| PluginError::Load {
        name: name.into(),
        reason: format!("{e:#}"),
    };
    let host_key = host_key(cache_dir);
    let outcome = match &host_key {
        Err(e) => {
            warn!(
                plugin = name,
                "plugin cache unavailable, compiling without it: {e}"
            );
            CacheOutcome::Unavailable {
                reason: e.to_string(),
            }
        }
        Ok(host_key) => match read_checked(cache_dir, &id, host_key) {
            Ok(Some(artifact)) => {
                // SAFETY: `artifact` is exactly what this host wrote for this
                // entry: its HMAC under the host's secret key verified over
                // these very bytes (read once, into memory), the component's
                // SHA-256 and the engine's compatibility hash.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(component) => {
                        debug!(plugin = name, %key, "loaded precompiled plugin from cache");
                        return Ok((component, CacheOutcome::Hit));
                    }
                    Err(e) => CacheOutcome::Recompiled {
                        reason: Rejection::Deserialize(format!("{e:#}")),
                    },
                }
            }
            Ok(None) => CacheOutcome::Miss,
            Err(reason) => CacheOutcome::Recompiled { reason },
        },
    };
    if let CacheOutcome::Recompiled { reason } = &outcome {
        warn!(plugin = name, %key, %reason,
            "cached plugin artifact not loaded; recompiling it from the wasm");
    }
    let artifact = engine.precompile_component(wasm).map_err(load_err)?;
    if let Ok(host_key) = &host_key
        && let Err(e) = store(cache_dir, &id, host_key, &artifact)
    {
        warn!(plugin = name, %key, "cannot write plugin cache: {e}");
    }
    // SAFETY: `artifact` was produced just now by this engine from `wasm`.
    let component = unsafe { Component::deserialize(engine, &artifact) }.map_err(load_err)?;
    Ok((component, outcome))
}

/// Removes cache entries whose key is not in `keep` (e.g. for plugins no
/// longer installed or a previous engine version). Returns how many
/// artifacts were removed. The host key and other files are left alone.
pub fn prune(cache_dir: &Path, keep: &[String]) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(cache_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let key = name
            .strip_suffix(".cwasm.meta")
            .or_else(|| name.strip_suffix(".cwasm"));
        if let Some(key) = key
            && !key.starts_with('.')
            && !keep.iter().any(|k| k == key)
        {
            fs::remove_file(entry.path())?;
            if name.ends_with(".cwasm") {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

impl Runtime {
    /// [`load_component`] with this runtime's engine.
    pub fn compile_cached(
        &self,
        cache_dir: &Path,
        name: &str,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome), PluginError> {
        load_component(self.engine(), cache_dir, name, wasm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(wasm: &[u8]) -> EntryId {
        EntryId::new([0xaa; 32], wasm)
    }

    #[test]
    fn key_depends_on_wasm_and_engine() {
        let a = EntryId::new([0xaa; 32], b"one").key;
        let b = EntryId::new([0xaa; 32], b"two").key;
        let c = EntryId::new([0xbb; 32], b"one").key;
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, EntryId::new([0xaa; 32], b"one").key);
        assert_eq!(a.len(), 65);
    }

    #[test]
    fn engine_hash_is_stable_and_config_sensitive() {
        let e1 = Engine::default();
        let e2 = Engine::default();
        assert_eq!(engine_hash(&e1), engine_hash(&e2));
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        let e3 = Engine::new(&cfg).unwrap();
        assert_ne!(engine_hash(&e1), engine_hash(&e3));
    }

    #[test]
    fn sidecar_checks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hk = host_key(d).unwrap();
        let one = id(b"one");
        let k = &one.key;
        assert_eq!(read_checked(d, &one, &hk), Ok(None));
        store(d, &one, &hk, b"artifact bytes").unwrap();
        assert_eq!(
            read_checked(d, &one, &hk),
            Ok(Some(b"artifact bytes".to_vec()))
        );
        // One changed byte: the MAC fails.
        fs::write(artifact_path(d, k), b"artifact bytez").unwrap();
        assert_eq!(read_checked(d, &one, &hk), Err(Rejection::BadMac));
        fs::write(artifact_path(d, k), b"short").unwrap();
        assert_eq!(
            read_checked(d, &one, &hk),
            Err(Rejection::SizeMismatch {
                actual: 5,
                expected: 14
            })
        );
        // A forged sidecar in the old plain-sha256 format is not trusted.
        let forged = format!(
            "{OLD_META_HEADER}\nkey {k}\nsha256 {}\nlen 5\n",
            hex::encode(sha256(b"short"))
        );
        fs::write(sidecar_path(d, k), forged).unwrap();
        assert_eq!(read_checked(d, &one, &hk), Err(Rejection::Unauthenticated));
        // A MAC under another key does not verify.
        let other = HostKey([7; KEY_LEN]);
        fs::write(sidecar_path(d, k), render_meta(&other, &one, b"short")).unwrap();
        assert_eq!(read_checked(d, &one, &hk), Err(Rejection::BadMac));
        // The MAC binds the engine: same wasm, same file, other engine hash.
        let other_engine = EntryId {
            engine_hash: [0xcc; 32],
            ..one.clone()
        };
        fs::write(
            sidecar_path(d, k),
            render_meta(&hk, &other_engine, b"short"),
        )
        .unwrap();
        assert_eq!(read_checked(d, &one, &hk), Err(Rejection::BadMac));
        fs::write(sidecar_path(d, k), "nonsense").unwrap();
        assert!(matches!(
            read_checked(d, &one, &hk),
            Err(Rejection::MalformedSidecar(_))
        ));
        fs::remove_file(sidecar_path(d, k)).unwrap();
        assert_eq!(read_checked(d, &one, &hk), Err(Rejection::MissingSidecar));
        // A sidecar copied from another entry is refused.
        let two = id(b"two");
        store(d, &two, &hk, b"x").unwrap();
        fs::copy(sidecar_path(d, &two.key), sidecar_path(d, k)).unwrap();
        assert_eq!(
            read_checked(d, &one, &hk),
            Err(Rejection::ForeignSidecar(two.key.clone()))
        );
        fs::remove_file(artifact_path(d, k)).unwrap();
        store(d, &one, &hk, b"y").unwrap();
        fs::remove_file(artifact_path(d, k)).unwrap();
        assert_eq!(read_checked(d, &one, &hk), Err(Rejection::MissingArtifact));
        assert_eq!(prune(d, std::slice::from_ref(&two.key)).unwrap(), 0);
        assert_eq!(read_checked(d, &two, &hk), Ok(Some(b"x".to_vec())));
        assert_eq!(read_checked(d, &one, &hk), Ok(None));
        assert!(d.join(KEY_FILE).is_file(), "prune keeps the key");
    }

    #[test]
    fn host_key_is_created_kept_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("plugin-cache");
        let path = cache.join(KEY_FILE);
        let first = host_key(&cache).unwrap();
        assert_eq!(fs::read(&path).unwrap(), first.0);
        assert_ne!(first.0, [0; KEY_LEN]);
        assert_eq!(host_key(&cache).unwrap().0, first.0, "stable");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = || fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(), 0o600);
            // Too wide: narrowed, the key itself kept.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(host_key(&cache).unwrap().0, first.0);
            assert_eq!(mode(), 0o600);
        }
        // Wrong size: replaced by a new random key.
        fs::write(&path, b"short").unwrap();
        let second = host_key(&cache).unwrap();
        assert_ne!(second.0, first.0);
        assert_eq!(fs::read(&path).unwrap(), second.0);
        fs::write(&path, [1u8; KEY_LEN + 1]).unwrap();
        let third = host_key(&cache).unwrap();
        assert_ne!(third.0, [1; KEY_LEN]);
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);
        // A file where the cache directory should be: an error.
        let blocked = dir.path().join("blocked");
        fs::write(&blocked, b"x").unwrap();
        assert!(matches!(host_key(&blocked), Err(CacheError::Io { .. })));
    }
}
