//! Hot install of a signed pool plugin into a running appliance: a new
//! version that passes its trial instantiation replaces the running one; a
//! new version that fails to instantiate is refused and the old one keeps
//! mining, with the reason in the pool's status.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use hashwatt::plugin::cli;
use hashwatt::plugin::package::{self, Trust};

fn manifest(version: &str) -> String {
    format!(
        "name = \"mypool\"\nversion = \"{version}\"\nkind = \"pool\"\nworld = \"hashwatt:pool/pool-plugin\"\n\
         world_version = \"0.2.1\"\n\n[capabilities]\npool_endpoints = [\"*\"]\nstate_quota_bytes = 0\n"
    )
}

fn package_dir(root: &Path, version: &str, wasm: &[u8], key: &SigningKey) -> PathBuf {
    let dir = root.join(format!("pkg-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.wasm"), wasm).unwrap();
    std::fs::write(dir.join("plugin.toml"), manifest(version)).unwrap();
    package::sign_package(&dir, key).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_versions_are_swapped_in_atomically_and_broken_ones_refused() {
    common::bounded(Duration::from_secs(120), async {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let key = SigningKey::from_bytes(&[7; 32]);
        let trust = Trust {
            keys: vec![key.verifying_key()],
            allow_unsigned: false,
        };
        let stratum = hashwatt::plugin::builtin::STRATUM_V1;
        cli::install(
            &package_dir(root.path(), "1.0.0", stratum, &key),
            &state,
            &trust,
        )
        .unwrap();

        let pool = common::devpool(0.0005).await;
        let public = package::public_key_hex(&key.verifying_key());
        let state_dir = state.clone();
        let app = common::appliance_with(&[pool.local_addr()], 1, move |c| {
            c.state_dir = state_dir;
            c.trusted_keys = vec![public];
            c.pools[0].plugin = Some("mypool".into());
            // The stratum plugin ignores this password; the hostile one
            // (version 1.1.0 below) reads it and traps in its constructor.
            c.pools[0].password = "unreachable@new".into();
        })
        .await;
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 2).await);
        assert_eq!(app.counters().pools[0].plugin, "mypool@1.0.0");

        // 1.1.0 installs (it is a valid, signed component) but cannot be
        // instantiated for this pool: refused, 1.0.0 keeps mining.
        let hostile = std::fs::read(env!("HASHWATT_HOSTILE_WASM")).unwrap();
        cli::install(
            &package_dir(root.path(), "1.1.0", &hostile, &key),
            &state,
            &trust,
        )
        .unwrap();
        assert!(
            common::wait_for(Duration::from_secs(10), || app.counters().pools[0]
                .plugin_error
                .as_deref()
                .is_some_and(|e| e.contains("refused")))
            .await,
            "no refusal recorded: {:?}",
            app.counters().pools[0]
        );
        assert_eq!(app.counters().pools[0].plugin, "mypool@1.0.0");
        let accepted = pool.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(20), || pool.stats().accepted
                >= accepted + 2)
            .await
        );
        assert_eq!(
            app.counters().pools[0].plugin_restarts,
            0,
            "the running plugin was never disturbed"
        );

        // 1.2.0 works: it replaces the running one and mining goes on.
        cli::install(
            &package_dir(root.path(), "1.2.0", stratum, &key),
            &state,
            &trust,
        )
        .unwrap();
        assert!(
            common::wait_for(Duration::from_secs(10), || app.counters().pools[0].plugin
                == "mypool@1.2.0")
            .await,
            "{:?}",
            app.counters().pools[0]
        );
        let accepted = pool.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(20), || pool.stats().accepted
                >= accepted + 2)
            .await
        );
        assert_eq!(
            pool.stats().rejected_total,
            pool.stats().stale,
            "{:?}",
            pool.stats().rejected
        );
        app.shutdown().await;
    })
    .await;
}
