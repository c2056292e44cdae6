//! Signed plugin packages, installation and the precompiled-artifact cache,
//! exercised with the real Stratum V1 plugin component.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use hashwatt::plugin::archive::{self, MAX_PACKAGE_BYTES, UnpackError};
use hashwatt::plugin::cache::{self, CacheOutcome, Rejection};
use hashwatt::plugin::cli::{self, InstallError};
use hashwatt::plugin::package::{
    self, MANIFEST_FILE, ManifestError, PackageError, PluginKind, SIG_FILE, Trust, WASM_FILE,
};
use hashwatt::plugin::pool::{PoolConfig, PoolPluginPre};
use hashwatt::plugin::{Limits, Runtime, builtin};

const MANIFEST: &str = "name = \"stratum-v1\"\nversion = \"1.0.0\"\nkind = \"pool\"\nworld = \"hashwatt:pool/pool-plugin\"\nworld_version = \"0.2.1\"\n\n[capabilities]\npool_endpoints = [\"*\"]\nstate_quota_bytes = 0\n";

/// Writes an unsigned package with `manifest` and the Stratum V1 component.
fn unsigned_package(root: &Path, sub: &str, manifest: &str) -> PathBuf {
    let dir = root.join(sub);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(WASM_FILE), builtin::STRATUM_V1).unwrap();
    fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
    dir
}

fn signed_package(root: &Path, sub: &str, manifest: &str, key: &SigningKey) -> PathBuf {
    let dir = unsigned_package(root, sub, manifest);
    package::sign_package(&dir, key).unwrap();
    dir
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn trust(keys: &[&SigningKey], allow_unsigned: bool) -> Trust {
    Trust {
        keys: keys.iter().map(|k| k.verifying_key()).collect(),
        allow_unsigned,
    }
}

fn pool_config() -> PoolConfig {
    PoolConfig {
        url: "stratum+tcp://127.0.0.1:3333".into(),
        host: "127.0.0.1".into(),
        port: 3333,
        user: "w".into(),
        password: "x".into(),
        user_agent: "hashwatt-test".into(),
        version_rolling: false,
        settings: Default::default(),
    }
}

/// Runs `f` with the host's logs captured; returns its result and the log text.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn valid_signed_package_loads_and_instantiates() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let dir = signed_package(tmp.path(), "p", MANIFEST, &k);
    let pkg = package::load_package(&dir, &trust(&[&key(2), &k], false)).unwrap();
    assert_eq!(pkg.manifest.name, "stratum-v1");
    assert_eq!(pkg.manifest.kind, PluginKind::Pool);
    assert_eq!(
        pkg.signer.as_deref(),
        Some(package::key_id(&k.verifying_key()).as_str())
    );
    assert_eq!(pkg.wasm, builtin::STRATUM_V1);
    assert_eq!(pkg.wasm_sha256, package::sha256(builtin::STRATUM_V1));
    pkg.expect_kind(PluginKind::Pool).unwrap();
    let runtime = Runtime::new().unwrap();
    let pre = PoolPluginPre::new(&runtime, &pkg.manifest.name, &pkg.wasm).unwrap();
    pre.instantiate(&pool_config(), Limits::default()).unwrap();
}

#[test]
fn tampered_and_untrusted_packages_are_refused_with_the_right_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], false);

    let dir = signed_package(tmp.path(), "wasm", MANIFEST, &k);
    let mut wasm = builtin::STRATUM_V1.to_vec();
    let mid = wasm.len() / 2;
    wasm[mid] ^= 1;
    fs::write(dir.join(WASM_FILE), &wasm).unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::TamperedWasm { .. }), "{e}");
    assert!(e.to_string().contains("plugin.wasm was modified"), "{e}");

    let dir = signed_package(tmp.path(), "manifest", MANIFEST, &k);
    fs::write(dir.join(MANIFEST_FILE), MANIFEST.replace("1.0.0", "1.0.1")).unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::TamperedManifest { .. }), "{e}");

    let dir = signed_package(tmp.path(), "unknown", MANIFEST, &key(3));
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::UnknownKey { .. }), "{e}");
    let e = package::load_package(&dir, &Trust::default()).unwrap_err();
    assert!(matches!(e, PackageError::UnknownKey { .. }), "{e}");

    let dir = unsigned_package(tmp.path(), "unsigned", MANIFEST);
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::MissingSignature(_)), "{e}");

    // Editing the recorded hash to match a swapped wasm breaks the signature.
    let dir = signed_package(tmp.path(), "forged", MANIFEST, &k);
    let sig = fs::read_to_string(dir.join(SIG_FILE)).unwrap();
    let real = hex::encode(package::sha256(builtin::STRATUM_V1));
    let forged = hex::encode(package::sha256(&wasm));
    fs::write(dir.join(SIG_FILE), sig.replace(&real, &forged)).unwrap();
    fs::write(dir.join(WASM_FILE), &wasm).unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::BadSignature { .. }), "{e}");

    // A signature by a trusted key over different content.
    let dir = signed_package(tmp.path(), "badsig", MANIFEST, &k);
    let other = package::sign(b"other", b"content", &k);
    let mut sig =
        package::SignatureFile::parse(&fs::read_to_string(dir.join(SIG_FILE)).unwrap()).unwrap();
    sig.signature = other.signature;
    fs::write(dir.join(SIG_FILE), sig.render()).unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::BadSignature { .. }), "{e}");

    let dir = signed_package(tmp.path(), "garbled", MANIFEST, &k);
    fs::write(dir.join(SIG_FILE), "hello\n").unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::MalformedSignature { .. }), "{e}");

    let dir = tmp.path().join("nowasm");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(MANIFEST_FILE), MANIFEST).unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(
        matches!(
            e,
            PackageError::MissingFile {
                file: WASM_FILE,
                ..
            }
        ),
        "{e}"
    );
}

/// Signs `manifest` + the Stratum component directly (bypassing the
/// checks `sign_package` does) to see what the loader says.
fn force_signed(root: &Path, sub: &str, manifest: &str, k: &SigningKey) -> PathBuf {
    let dir = unsigned_package(root, sub, manifest);
    let sig = package::sign(manifest.as_bytes(), builtin::STRATUM_V1, k);
    fs::write(dir.join(SIG_FILE), sig.render()).unwrap();
    dir
}

#[test]
fn signed_but_invalid_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], false);

    let bad = MANIFEST.replace("stratum-v1", "Stratum V1");
    let e = package::sign_package(&unsigned_package(tmp.path(), "s", &bad), &k).unwrap_err();
    assert!(e.to_string().contains("field `name`"), "{e}");
    let e =
        package::load_package(&force_signed(tmp.path(), "malformed", &bad, &k), &t).unwrap_err();
    assert!(
        matches!(&e, PackageError::Manifest { source: ManifestError::Invalid { field, .. }, .. } if field == "name"),
        "{e}"
    );

    let e = package::load_package(
        &force_signed(
            tmp.path(),
            "unknown-field",
            &format!("{MANIFEST}network = true\n"),
            &k,
        ),
        &t,
    )
    .unwrap_err();
    assert!(e.to_string().contains("network"), "{e}");

    let future = MANIFEST.replace("world_version = \"0.2.1\"", "world_version = \"0.3.0\"");
    let e =
        package::load_package(&force_signed(tmp.path(), "future", &future, &k), &t).unwrap_err();
    assert!(
        matches!(
            &e,
            PackageError::Manifest {
                source: ManifestError::UnsupportedWorld { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("hashwatt:pool@0.2.0 to 0.2.1"),
        "{e}"
    );

    let mixed = MANIFEST.replace("kind = \"pool\"", "kind = \"policy\"");
    let e = package::load_package(&force_signed(tmp.path(), "mixed", &mixed, &k), &t).unwrap_err();
    assert!(
        matches!(
            &e,
            PackageError::Manifest {
                source: ManifestError::KindMismatch { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn policy_manifest_around_a_pool_component_is_a_kind_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], false);
    let policy = "name = \"fake-policy\"\nversion = \"0.1.0\"\nkind = \"policy\"\nworld = \"hashwatt:policy/policy-plugin\"\nworld_version = \"0.1.0\"\n";
    let dir = signed_package(tmp.path(), "p", policy, &k);
    let pkg = package::load_package(&dir, &t).unwrap();
    let e = pkg.expect_kind(PluginKind::Pool).unwrap_err();
    assert!(matches!(e, PackageError::KindMismatch { .. }), "{e}");
    let state = tmp.path().join("state");
    let e = cli::install(&dir, &state, &t).unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Package(PackageError::ComponentMismatch { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("hashwatt:pool/session@0.2.1"), "{e}");
    assert!(
        cli::list(&state, &t).unwrap().is_empty(),
        "nothing installed"
    );
}

#[test]
fn allow_unsigned_loads_with_a_warning_but_never_tampered_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], true);

    let dir = unsigned_package(tmp.path(), "unsigned", MANIFEST);
    let (pkg, logs) = with_logs(|| package::load_package(&dir, &t));
    let pkg = pkg.unwrap();
    assert_eq!(pkg.signer, None);
    assert!(logs.contains("WARN") && logs.contains("UNSIGNED"), "{logs}");
    let runtime = Runtime::new().unwrap();
    PoolPluginPre::new(&runtime, "stratum-v1", &pkg.wasm).unwrap();

    let dir = signed_package(tmp.path(), "untrusted", MANIFEST, &key(5));
    let (pkg, logs) = with_logs(|| package::load_package(&dir, &t));
    assert_eq!(pkg.unwrap().signer, None);
    assert!(logs.contains("UNTRUSTED"), "{logs}");

    let dir = signed_package(tmp.path(), "tampered", MANIFEST, &k);
    fs::write(dir.join(MANIFEST_FILE), MANIFEST.replace("1.0.0", "9.0.0")).unwrap();
    let e = package::load_package(&dir, &t).unwrap_err();
    assert!(matches!(e, PackageError::TamperedManifest { .. }), "{e}");

    // Without the switch, the same signed-by-trusted package loads silently.
    let dir = signed_package(tmp.path(), "ok", MANIFEST, &k);
    let (pkg, logs) = with_logs(|| package::load_package(&dir, &t));
    assert!(pkg.unwrap().signer.is_some());
    assert!(!logs.contains("WARN"), "{logs}");
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn install_replace_list_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let k = key(1);
    let t = trust(&[&k], false);

    let v1 = signed_package(tmp.path(), "v1", MANIFEST, &k);
    let installed = cli::install(&v1, &state, &t).unwrap();
    assert_eq!(installed.path, state.join("plugins").join("stratum-v1"));
    assert_eq!(installed.cache, CacheOutcome::Miss);
    for f in [WASM_FILE, MANIFEST_FILE, SIG_FILE] {
        assert!(installed.path.join(f).is_file(), "{f}");
    }
    let again = cli::load_installed(&state, "stratum-v1", &t).unwrap();
    assert_eq!(again.manifest.version.to_string(), "1.0.0");

    // Upgrading replaces the version and cleans up the old copy.
    let v2 = signed_package(tmp.path(), "v2", &MANIFEST.replace("1.0.0", "1.1.0"), &k);
    let installed = cli::install(&v2, &state, &t).unwrap();
    assert_eq!(installed.cache, CacheOutcome::Hit, "same wasm, same engine");
    let listed = cli::list(&state, &t).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "stratum-v1");
    let entry = listed[0].package.as_ref().unwrap();
    assert_eq!(entry.manifest.version.to_string(), "1.1.0");
    assert_eq!(
        entry.signer.as_deref(),
        Some(package::key_id(&k.verifying_key()).as_str())
    );
    assert_eq!(
        hidden_entries(&state.join("plugins")).len(),
        1,
        "only the live version"
    );

    // A refused package leaves the installed one untouched.
    let bad = signed_package(tmp.path(), "bad", &MANIFEST.replace("1.0.0", "2.0.0"), &k);
    fs::write(bad.join(WASM_FILE), b"\0asm not really").unwrap();
    assert!(cli::install(&bad, &state, &t).is_err());
    let still = cli::load_installed(&state, "stratum-v1", &t).unwrap();
    assert_eq!(still.manifest.version.to_string(), "1.1.0");

    // An installed package that stops verifying is listed as invalid.
    let live = state.join("plugins").join("stratum-v1");
    let e = cli::list(&state, &trust(&[&key(9)], false)).unwrap();
    assert!(matches!(e[0].package, Err(PackageError::UnknownKey { .. })));
    assert!(live.join(SIG_FILE).exists());

    cli::remove(&state, "stratum-v1").unwrap();
    assert!(cli::list(&state, &t).unwrap().is_empty());
    assert!(hidden_entries(&state.join("plugins")).is_empty());
    assert!(matches!(
        cli::remove(&state, "stratum-v1"),
        Err(InstallError::NotInstalled(_))
    ));
    assert!(matches!(
        cli::remove(&state, "../etc"),
        Err(InstallError::InvalidName(_))
    ));
    assert!(matches!(
        cli::load_installed(&state, "stratum-v1", &t),
        Err(InstallError::NotInstalled(_))
    ));
}

#[test]
fn cache_miss_then_hit_and_corruption_is_never_deserialized() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let runtime = Runtime::new().unwrap();
    let wasm = builtin::STRATUM_V1;

    let t0 = Instant::now();
    let (component, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    let miss = t0.elapsed();
    assert_eq!(outcome, CacheOutcome::Miss);
    runtime.linker().instantiate_pre(&component).unwrap();

    let t0 = Instant::now();
    let (component, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    let hit = t0.elapsed();
    assert_eq!(outcome, CacheOutcome::Hit);
    runtime.linker().instantiate_pre(&component).unwrap();
    let t0 = Instant::now();
    runtime.compile("stratum-v1", wasm).unwrap();
    let plain = t0.elapsed();
    eprintln!("stratum-v1: compile+store {miss:?}, plain compile {plain:?}, cached load {hit:?}");

    let key = cache::cache_key(runtime.engine(), wasm);
    let artifact = cache::artifact_path(&cache_dir, &key);
    let sidecar = cache::sidecar_path(&cache_dir, &key);
    assert!(artifact.is_file() && sidecar.is_file());

    // Corrupt the artifact: the MAC check refuses it before any
    // deserialization, and the entry is rewritten.
    let mut bytes = fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&artifact, &bytes).unwrap();
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(
        outcome,
        CacheOutcome::Recompiled {
            reason: Rejection::BadMac
        }
    );
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit, "rewritten after the rejection");

    // A corrupted, foreign-format or missing sidecar is refused too.
    let meta = fs::read_to_string(&sidecar).unwrap();
    fs::write(&sidecar, meta.replace("len ", "len 1")).unwrap();
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert!(
        matches!(
            outcome,
            CacheOutcome::Recompiled {
                reason: Rejection::SizeMismatch { .. }
            }
        ),
        "{outcome:?}"
    );
    fs::write(&sidecar, "nonsense").unwrap();
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert!(
        matches!(
            outcome,
            CacheOutcome::Recompiled {
                reason: Rejection::MalformedSidecar(_)
            }
        ),
        "{outcome:?}"
    );
    fs::remove_file(&sidecar).unwrap();
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(
        outcome,
        CacheOutcome::Recompiled {
            reason: Rejection::MissingSidecar
        }
    );
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);

    // An engine with a different configuration gets a different key and
    // never sees the first engine's artifact.
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let other = wasmtime::Engine::new(&config).unwrap();
    let other_key = cache::cache_key(&other, wasm);
    assert_ne!(other_key, key);
    assert_eq!(&other_key[..32], &key[..32], "same wasm part");
    let (_, outcome) = cache::load_component(&other, &cache_dir, "stratum-v1", wasm).unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    assert!(cache::artifact_path(&cache_dir, &other_key).is_file());

    // An unwritable cache does not stop the plugin from loading.
    let file_not_dir = tmp.path().join("not-a-dir");
    fs::write(&file_not_dir, b"x").unwrap();
    let (component, outcome) = runtime
        .compile_cached(&file_not_dir, "stratum-v1", wasm)
        .unwrap();
    assert_ne!(outcome, CacheOutcome::Hit);
    runtime.linker().instantiate_pre(&component).unwrap();

    // Something that is not a component fails to load, with its name.
    let e = runtime
        .compile_cached(&cache_dir, "junk", b"\0asm\x0d\0\x01\0\xff\xff")
        .unwrap_err();
    assert!(e.to_string().contains("junk"), "{e}");
}

/// Someone who can write the cache directory (but not read the host key)
/// replaces a byte of the artifact and recomputes the plain SHA-256
/// sidecar older hosts trusted: the host does not deserialize it, warns,
/// recompiles from the wasm, and the plugin works.
#[test]
fn forged_artifact_with_recomputed_sha256_sidecar_is_never_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("plugin-cache");
    let runtime = Runtime::new().unwrap();
    let wasm = builtin::STRATUM_V1;
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    let key = cache::cache_key(runtime.engine(), wasm);
    let artifact = cache::artifact_path(&cache_dir, &key);
    let sidecar = cache::sidecar_path(&cache_dir, &key);
    let host_key = cache_dir.join(cache::KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&host_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(fs::read(&host_key).unwrap().len(), 32);

    let mut forged = fs::read(&artifact).unwrap();
    let at = forged.len() / 3;
    forged[at] ^= 0x01;
    fs::write(&artifact, &forged).unwrap();
    let old_style = format!(
        "hashwatt-cwasm v1\nkey {key}\nsha256 {}\nlen {}\n",
        hex::encode(package::sha256(&forged)),
        forged.len()
    );
    fs::write(&sidecar, &old_style).unwrap();

    let ((component, outcome), logs) = with_logs(|| {
        runtime
            .compile_cached(&cache_dir, "stratum-v1", wasm)
            .unwrap()
    });
    assert_eq!(
        outcome,
        CacheOutcome::Recompiled {
            reason: Rejection::Unauthenticated
        }
    );
    assert!(
        logs.contains("WARN") && logs.contains("recompiling"),
        "{logs}"
    );
    // The entry was rewritten: the forgery is gone, a MAC'd sidecar is there.
    assert_ne!(fs::read(&artifact).unwrap(), forged);
    assert_ne!(fs::read_to_string(&sidecar).unwrap(), old_style);
    let pre = PoolPluginPre::from_component(&runtime, "stratum-v1", &component).unwrap();
    let mut plugin = pre.instantiate(&pool_config(), Limits::default()).unwrap();
    let out = plugin.connected(0).unwrap();
    assert!(!out.actions.is_empty(), "the recompiled plugin speaks");

    // The same forgery with a sidecar in the current format but a MAC
    // under a key the forger chose: refused as well.
    fs::write(&artifact, &forged).unwrap();
    let current = fs::read_to_string(&sidecar).unwrap();
    let len_line = format!("len {}", forged.len());
    let forged_meta: String = current
        .lines()
        .map(|l| {
            if l.starts_with("hmac-sha256 ") {
                format!("hmac-sha256 {}\n", "ab".repeat(32))
            } else if l.starts_with("len ") {
                format!("{len_line}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(&sidecar, forged_meta).unwrap();
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(
        outcome,
        CacheOutcome::Recompiled {
            reason: Rejection::BadMac
        }
    );
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);

    // A new host key (the old one lost or replaced) invalidates every entry.
    fs::write(&host_key, b"too short").unwrap();
    let (_, outcome) = runtime
        .compile_cached(&cache_dir, "stratum-v1", wasm)
        .unwrap();
    assert_eq!(
        outcome,
        CacheOutcome::Recompiled {
            reason: Rejection::BadMac
        }
    );
    assert_eq!(fs::read(&host_key).unwrap().len(), 32);
}

/// The operator's workflow through the real binary:
/// keygen → sign → install → list → remove.
#[test]
fn cli_keygen_sign_install_list_remove() {
    use std::process::Command;
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .arg("plugin")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let keyfile = tmp.path().join("signing.key");
    let (ok, public, err) = run(&["keygen".as_ref(), "--out".as_ref(), keyfile.as_os_str()]);
    assert!(ok, "{err}");
    let public = public.trim().to_string();
    let vk = package::parse_public_key(&public).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&keyfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, _, err) = run(&["keygen".as_ref(), "--out".as_ref(), keyfile.as_os_str()]);
    assert!(
        !ok && err.contains("exists"),
        "must refuse to overwrite: {err}"
    );

    let dir = unsigned_package(tmp.path(), "pkg", MANIFEST);
    let (ok, out, err) = run(&[
        "sign".as_ref(),
        "--key".as_ref(),
        keyfile.as_os_str(),
        dir.as_os_str(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&package::key_id(&vk)), "{out}");

    let state = tmp.path().join("state");
    let config = tmp.path().join("hashwatt.toml");
    fs::write(
        &config,
        format!(
            "state_dir = {:?}\ntrusted_keys = [\"{public}\"]\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let c = config.as_os_str();
    let (ok, out, err) = run(&["install".as_ref(), dir.as_os_str(), "--config".as_ref(), c]);
    assert!(ok, "{err}");
    assert!(out.contains("installed stratum-v1 1.0.0 (pool)"), "{out}");

    let (ok, out, err) = run(&["list".as_ref(), "--config".as_ref(), c]);
    assert!(ok, "{err}");
    let sha = hex::encode(package::sha256(builtin::STRATUM_V1));
    let line = out
        .lines()
        .find(|l| l.starts_with("stratum-v1"))
        .unwrap_or("");
    assert!(
        line.contains("1.0.0")
            && line.contains("pool")
            && line.contains(&package::key_id(&vk))
            && line.contains(&sha),
        "{out}"
    );

    // A tampered package is refused by install with the reason.
    fs::write(dir.join(MANIFEST_FILE), MANIFEST.replace("1.0.0", "6.6.6")).unwrap();
    let (ok, _, err) = run(&["install".as_ref(), dir.as_os_str(), "--config".as_ref(), c]);
    assert!(!ok && err.contains("plugin.toml was modified"), "{err}");

    let (ok, out, err) = run(&[
        "remove".as_ref(),
        "stratum-v1".as_ref(),
        "--config".as_ref(),
        c,
    ]);
    assert!(ok && out.contains("removed stratum-v1"), "{err}");
    let (ok, out, _) = run(&["list".as_ref(), "--config".as_ref(), c]);
    assert!(ok && !out.contains("stratum-v1"), "{out}");
    let (ok, _, err) = run(&[
        "remove".as_ref(),
        "stratum-v1".as_ref(),
        "--config".as_ref(),
        c,
    ]);
    assert!(!ok && err.contains("no plugin named"), "{err}");
}

// ---- Packed packages (`.hwpkg`) ----

/// A tar header for `name` (written raw, so even paths the tar crate's
/// builder refuses can be tested) of `kind` and `size`.
fn raw_header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// A tar archive of `(name, kind, data)` entries.
fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = raw_header(name, *kind, data.len() as u64);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_link_name("/etc/passwd").unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn hwpkg_pack_unpack_install_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let k = key(1);
    let t = trust(&[&k], false);
    let dir = signed_package(tmp.path(), "pkg", MANIFEST, &k);
    let packed = archive::pack(&dir).unwrap();
    assert!(packed.signed);
    assert_eq!(packed.manifest.name, "stratum-v1");
    assert!(packed.bytes.len() as u64 <= MAX_PACKAGE_BYTES);
    // Reproducible: the same directory packs to the same bytes.
    assert_eq!(archive::pack(&dir).unwrap().bytes, packed.bytes);

    let out = tmp.path().join("unpacked");
    archive::unpack(&packed.bytes, &out).unwrap();
    for f in [MANIFEST_FILE, WASM_FILE, SIG_FILE] {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(dir.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(fs::read_dir(&out).unwrap().count(), 3);
    package::load_package(&out, &t).unwrap();

    let installed = cli::install_archive(&packed.bytes, &state, &t).unwrap();
    assert_eq!(installed.package.manifest.version.to_string(), "1.0.0");
    assert_eq!(
        installed.package.signer.as_deref(),
        Some(package::key_id(&k.verifying_key()).as_str())
    );
    cli::load_installed(&state, "stratum-v1", &t).unwrap();
    assert_eq!(
        hidden_entries(&state.join("plugins")).len(),
        1,
        "only the live version; the unpacked copy is gone"
    );

    // The same verification as a directory: an untrusted key, a tampered
    // component and a missing signature are refused, and leave nothing.
    let untrusted = cli::install_archive(&packed.bytes, &state, &trust(&[&key(9)], false));
    assert!(
        matches!(
            untrusted,
            Err(InstallError::Package(PackageError::UnknownKey { .. }))
        ),
        "{untrusted:?}"
    );
    let mut tampered = packed.bytes.clone();
    let at = tampered
        .windows(4)
        .position(|w| w == b"\0asm")
        .expect("the component is in the archive");
    tampered[at + 100] ^= 0xff;
    let e = cli::install_archive(&tampered, &state, &t).unwrap_err();
    assert!(
        matches!(e, InstallError::Package(PackageError::TamperedWasm { .. })),
        "{e:?}"
    );
    let unsigned = archive::pack(&unsigned_package(tmp.path(), "u", MANIFEST)).unwrap();
    assert!(!unsigned.signed);
    let e = cli::install_archive(&unsigned.bytes, &state, &t).unwrap_err();
    assert!(
        matches!(e, InstallError::Package(PackageError::MissingSignature(_))),
        "{e:?}"
    );
    assert_eq!(hidden_entries(&state.join("plugins")).len(), 1);
    let still = cli::load_installed(&state, "stratum-v1", &t).unwrap();
    assert_eq!(still.manifest.version.to_string(), "1.0.0");
}

#[test]
fn hwpkg_malformed_archives_are_refused_with_typed_errors() {
    use tar::EntryType as T;
    let tmp = tempfile::tempdir().unwrap();
    let m = MANIFEST.as_bytes();
    let w = builtin::STRATUM_V1;
    let big = vec![b'#'; (package::MAX_MANIFEST_BYTES + 1) as usize];
    type Case = (&'static str, Vec<u8>, fn(&UnpackError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "symlink",
            tar_of(&[(MANIFEST_FILE, T::Regular, m), (WASM_FILE, T::Symlink, b"")]),
            |e| matches!(e, UnpackError::Link { .. }),
        ),
        (
            "hard link",
            tar_of(&[(MANIFEST_FILE, T::Regular, m), (WASM_FILE, T::Link, b"")]),
            |e| matches!(e, UnpackError::Link { .. }),
        ),
        ("device", tar_of(&[(WASM_FILE, T::Char, b"")]), |e| {
            matches!(e, UnpackError::Device { .. })
        }),
        ("block device", tar_of(&[(WASM_FILE, T::Block, b"")]), |e| {
            matches!(e, UnpackError::Device { .. })
        }),
        (
            "directory",
            tar_of(&[("plugins/", T::Directory, b"")]),
            |e| matches!(e, UnpackError::NotAFile { .. }),
        ),
        ("fifo", tar_of(&[(SIG_FILE, T::Fifo, b"")]), |e| {
            matches!(e, UnpackError::NotAFile { .. })
        }),
        (
            "parent dir",
            tar_of(&[("../plugin.wasm", T::Regular, w)]),
            |e| matches!(e, UnpackError::UnsafePath { .. }),
        ),
        (
            "absolute",
            tar_of(&[("/tmp/plugin.wasm", T::Regular, w)]),
            |e| matches!(e, UnpackError::UnsafePath { .. }),
        ),
        (
            "duplicate",
            tar_of(&[
                (MANIFEST_FILE, T::Regular, m),
                (WASM_FILE, T::Regular, w),
                ("./plugin.toml", T::Regular, m),
            ]),
            |e| matches!(e, UnpackError::Duplicate { .. }),
        ),
        (
            "extra file",
            tar_of(&[
                (MANIFEST_FILE, T::Regular, m),
                (WASM_FILE, T::Regular, w),
                ("README", T::Regular, b"hi"),
            ]),
            |e| matches!(e, UnpackError::Unexpected { .. }),
        ),
        (
            "nested file",
            tar_of(&[("x/plugin.wasm", T::Regular, w)]),
            |e| matches!(e, UnpackError::Unexpected { .. }),
        ),
        (
            "missing component",
            tar_of(&[(MANIFEST_FILE, T::Regular, m)]),
            |e| matches!(e, UnpackError::Missing { file } if *file == WASM_FILE),
        ),
        (
            "oversized entry",
            tar_of(&[
                (MANIFEST_FILE, T::Regular, &big),
                (WASM_FILE, T::Regular, w),
            ]),
            |e| matches!(e, UnpackError::EntryTooLarge { .. }),
        ),
        (
            "oversized archive",
            vec![0u8; (MAX_PACKAGE_BYTES + 1) as usize],
            |e| matches!(e, UnpackError::TooLarge { .. }),
        ),
        ("not a tar", vec![b'x'; 1024], |e| {
            matches!(e, UnpackError::Malformed(_))
        }),
        (
            "truncated",
            {
                let t = tar_of(&[(MANIFEST_FILE, T::Regular, m), (WASM_FILE, T::Regular, w)]);
                t[..t.len() / 2].to_vec()
            },
            |e| matches!(e, UnpackError::Malformed(_)),
        ),
    ];
    for (what, bytes, expected) in cases {
        let into = tmp.path().join(what.replace(' ', "-"));
        let e = archive::unpack(&bytes, &into).expect_err(what);
        assert!(expected(&e), "{what}: {e:?}");
        assert!(!e.to_string().is_empty());
        assert!(
            !into.exists(),
            "{what}: nothing is written for a refused archive"
        );
        // Through the install path, the same typed refusal.
        let state = tmp.path().join("state");
        let e = cli::install_archive(&bytes, &state, &trust(&[], true)).unwrap_err();
        assert!(
            matches!(&e, InstallError::Archive(a) if expected(a)),
            "{what}: {e:?}"
        );
    }
    // A good archive still unpacks next to those refusals.
    let good = tar_of(&[
        (MANIFEST_FILE, T::Regular, m),
        ("./plugin.wasm", T::Regular, w),
    ]);
    archive::unpack(&good, &tmp.path().join("good")).unwrap();
}

#[test]
fn cli_pack_and_install_a_hwpkg() {
    use std::process::Command;
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .arg("plugin")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let k = key(3);
    let dir = signed_package(tmp.path(), "pkg", MANIFEST, &k);
    let file = tmp.path().join("stratum.hwpkg");
    let (ok, out, err) = run(&[
        "pack".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        file.as_os_str(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("packed stratum-v1 1.0.0 (pool)"), "{out}");
    assert_eq!(fs::read(&file).unwrap(), archive::pack(&dir).unwrap().bytes);

    let state = tmp.path().join("state");
    let config = tmp.path().join("hashwatt.toml");
    fs::write(
        &config,
        format!(
            "state_dir = {:?}\ntrusted_keys = [\"{}\"]\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\n",
            state.display().to_string(),
            package::public_key_hex(&k.verifying_key())
        ),
    )
    .unwrap();
    let c = config.as_os_str();
    let (ok, out, err) = run(&["install".as_ref(), file.as_os_str(), "--config".as_ref(), c]);
    assert!(ok, "{err}");
    assert!(out.contains("installed stratum-v1 1.0.0 (pool)"), "{out}");
    let t = trust(&[&k], false);
    cli::load_installed(&state, "stratum-v1", &t).unwrap();

    // A file that is no package is refused with the reason.
    let junk = tmp.path().join("junk.hwpkg");
    fs::write(&junk, vec![b'x'; 1024]).unwrap();
    let (ok, _, err) = run(&["install".as_ref(), junk.as_os_str(), "--config".as_ref(), c]);
    assert!(
        !ok && err.contains("not a valid plugin package archive"),
        "{err}"
    );
}

#[test]
fn a_manifest_that_understates_the_components_contract_is_refused() {
    // The built-in Stratum V1 component is built for hashwatt:pool@0.2.1
    // (it imports `status`); a manifest saying 0.2.0 would let a 0.2.0 host
    // accept it and fail at link time, so install refuses it here.
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let t = trust(&[&k], false);
    let old = MANIFEST.replace("world_version = \"0.2.1\"", "world_version = \"0.2.0\"");
    let dir = signed_package(tmp.path(), "understated", &old, &k);
    let e = cli::install(&dir, &tmp.path().join("state"), &t).unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Package(PackageError::ComponentMismatch { .. })
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("@0.2.1` is not at the declared world version 0.2.0")
            && text.contains("set world_version"),
        "{text}"
    );
}
