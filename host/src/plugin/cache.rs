//! Cache of precompiled plugin components, so a restart does not pay
//! Cranelift compilation again.
//!
//! Entries are keyed by the SHA-256 of the component and by the engine's
//! [`Engine::precompile_compatibility_hash`]: a new host version or engine
//! setting gets a different key instead of loading incompatible code.
//!
//! [`Component::deserialize`] trusts its input completely (it maps the bytes
//! as executable code). So only bytes this host wrote are ever deserialized:
//! each `<key>.cwasm` has a sidecar `<key>.cwasm.meta` with the key and the
//! SHA-256 and length of the artifact, written after the artifact itself,
//! and both are checked before deserializing. Anything that does not match
//! (truncation, corruption, a stale or foreign file) is logged, ignored and
//! overwritten by a fresh compilation. The cache directory must be writable
//! only by the host: the sidecar protects against accidents, not against
//! someone who can write both files.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::package::sha256;
use super::{PluginError, Runtime};

/// Largest artifact the cache will read back, in bytes.
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;
/// First line of a sidecar file.
const META_HEADER: &str = "hashwatt-cwasm v1";

/// How a component was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid precompiled artifact was found and loaded.
    Hit,
    /// No artifact existed; the component was compiled and stored.
    Miss,
    /// An artifact existed but was refused (reason given); the component
    /// was recompiled and the entry overwritten.
    Rejected(String),
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

/// Hex digest of the engine's precompilation compatibility hash.
pub fn engine_hash(engine: &Engine) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(h.0.finalize())
}

/// The cache key of `wasm` for `engine`: `<sha256(wasm)>-<engine hash>`,
/// both in hex (truncated to 128 bits each to keep file names short).
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    cache_key_for(&engine_hash(engine), wasm)
}

fn cache_key_for(engine_hash: &str, wasm: &[u8]) -> String {
    let wasm_hex = hex::encode(sha256(wasm));
    format!(
        "{}-{}",
        wasm_hex.get(..32).unwrap_or(&wasm_hex),
        engine_hash.get(..32).unwrap_or(engine_hash)
    )
}

/// Path of the artifact for `key` in `cache_dir`.
pub fn artifact_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.cwasm"))
}

/// Path of the sidecar for `key` in `cache_dir`.
pub fn sidecar_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.cwasm.meta"))
}

fn render_meta(key: &str, artifact: &[u8]) -> String {
    format!(
        "{META_HEADER}\nkey {key}\nsha256 {}\nlen {}\n",
        hex::encode(sha256(artifact)),
        artifact.len()
    )
}

/// Reads the cached artifact for `key`, checked against its sidecar.
/// `Ok(None)` = no entry; `Err(reason)` = an entry that must not be used.
fn read_checked(cache_dir: &Path, key: &str) -> Result<Option<Vec<u8>>, String> {
    let artifact_path = artifact_path(cache_dir, key);
    let meta_path = sidecar_path(cache_dir, key);
    let meta = match fs::read(&meta_path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if artifact_path.exists() {
                Err("artifact has no sidecar".into())
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(format!("cannot read {}: {e}", meta_path.display())),
    };
    let meta = String::from_utf8(meta).map_err(|_| "sidecar is not text".to_string())?;
    let mut lines = meta.lines();
    if lines.next() != Some(META_HEADER) {
        return Err("sidecar has the wrong header".into());
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| format!("sidecar lacks `{name}`"))
    };
    let meta_key = field("key")?;
    let meta_sha = field("sha256")?;
    let meta_len: u64 = field("len")?
        .parse()
        .map_err(|_| "sidecar has an invalid length".to_string())?;
    if meta_key != key {
        return Err(format!("sidecar is for key {meta_key}"));
    }
    if meta_len > MAX_ARTIFACT_BYTES {
        return Err(format!("sidecar claims {meta_len} bytes"));
    }
    let artifact = match fs::read(&artifact_path) {
        Ok(a) => a,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("sidecar without artifact".into());
        }
        Err(e) => return Err(format!("cannot read {}: {e}", artifact_path.display())),
    };
    if artifact.len() as u64 != meta_len {
        return Err(format!(
            "artifact is {} bytes, sidecar says {meta_len}",
            artifact.len()
        ));
    }
    if hex::encode(sha256(&artifact)) != meta_sha {
        return Err("artifact sha256 does not match its sidecar".into());
    }
    Ok(Some(artifact))
}

/// Writes the artifact, then its sidecar (each atomically), so a crash in
/// between leaves an entry that is rejected rather than trusted.
fn store(cache_dir: &Path, key: &str, artifact: &[u8]) -> Result<(), String> {
    fs::create_dir_all(cache_dir)
        .map_err(|e| format!("cannot create {}: {e}", cache_dir.display()))?;
    // Drop the old sidecar first: until the new one is written, the entry
    // is not trusted.
    let _ = fs::remove_file(sidecar_path(cache_dir, key));
    hashwatt_state::atomic_write(&artifact_path(cache_dir, key), artifact)
        .map_err(|e| e.to_string())?;
    hashwatt_state::atomic_write(
        &sidecar_path(cache_dir, key),
        render_meta(key, artifact).as_bytes(),
    )
    .map_err(|e| e.to_string())
}

/// Loads the component for `wasm`, from the cache in `cache_dir` when a
/// valid entry exists, else by compiling it and storing the result.
///
/// Failing to write the cache is logged and does not fail the load.
pub fn load_component(
    engine: &Engine,
    cache_dir: &Path,
    name: &str,
    wasm: &[u8],
) -> Result<(Component, CacheOutcome), PluginError> {
    let key = cache_key(engine, wasm);
    let load_err = |e: wasmtime::Error| PluginError::Load {
        name: name.into(),
        reason: format!("{e:#}"),
    };
    let outcome = match read_checked(cache_dir, &key) {
        Ok(Some(artifact)) => {
            // SAFETY: `artifact` is byte-for-byte what this host wrote for
            // this key: its length and SHA-256 match the sidecar written
            // after it, and the key binds the engine configuration.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => {
                    debug!(plugin = name, %key, "loaded precompiled plugin from cache");
                    return Ok((component, CacheOutcome::Hit));
                }
                Err(e) => CacheOutcome::Rejected(format!("cannot deserialize: {e:#}")),
            }
        }
        Ok(None) => CacheOutcome::Miss,
        Err(reason) => CacheOutcome::Rejected(reason),
    };
    if let CacheOutcome::Rejected(reason) = &outcome {
        warn!(plugin = name, %key, %reason, "ignoring cached plugin artifact; recompiling");
    }
    let artifact = engine.precompile_component(wasm).map_err(load_err)?;
    if let Err(e) = store(cache_dir, &key, &artifact) {
        warn!(plugin = name, %key, "cannot write plugin cache: {e}");
    }
    // SAFETY: `artifact` was produced just now by this engine from `wasm`.
    let component = unsafe { Component::deserialize(engine, &artifact) }.map_err(load_err)?;
    Ok((component, outcome))
}

/// Removes cache entries whose key is not in `keep` (e.g. for plugins no
/// longer installed or a previous engine version). Returns how many
/// artifacts were removed.
pub fn prune(cache_dir: &Path, keep: &[String]) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(cache_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
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

    #[test]
    fn key_depends_on_wasm_and_engine() {
        let a = cache_key_for("aa".repeat(32).as_str(), b"one");
        let b = cache_key_for("aa".repeat(32).as_str(), b"two");
        let c = cache_key_for("bb".repeat(32).as_str(), b"one");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, cache_key_for("aa".repeat(32).as_str(), b"one"));
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
        let key = "k1";
        assert_eq!(read_checked(dir.path(), key), Ok(None));
        store(dir.path(), key, b"artifact bytes").unwrap();
        assert_eq!(
            read_checked(dir.path(), key),
            Ok(Some(b"artifact bytes".to_vec()))
        );
        fs::write(artifact_path(dir.path(), key), b"artifact bytez").unwrap();
        assert!(
            read_checked(dir.path(), key)
                .unwrap_err()
                .contains("sha256")
        );
        fs::write(artifact_path(dir.path(), key), b"short").unwrap();
        assert!(read_checked(dir.path(), key).unwrap_err().contains("bytes"));
        fs::remove_file(sidecar_path(dir.path(), key)).unwrap();
        assert!(
            read_checked(dir.path(), key)
                .unwrap_err()
                .contains("no sidecar")
        );
        // A sidecar copied from another key is refused.
        store(dir.path(), "k2", b"x").unwrap();
        fs::copy(
            sidecar_path(dir.path(), "k2"),
            sidecar_path(dir.path(), key),
        )
        .unwrap();
        assert!(
            read_checked(dir.path(), key)
                .unwrap_err()
                .contains("key k2")
        );
        assert_eq!(prune(dir.path(), &["k2".to_string()]).unwrap(), 1);
        assert_eq!(read_checked(dir.path(), "k2"), Ok(Some(b"x".to_vec())));
        assert_eq!(read_checked(dir.path(), key), Ok(None));
    }
}
