//! The panel's plugin list (`Appliance::plugins`) on a real appliance
//! mining on a devpool, and packages uploaded as one `.hwpkg` through the
//! command path (`Command::InstallPluginPackage`).

mod common;

use std::fs;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use hashwatt::control::Command;
use hashwatt::plugin::archive;
use hashwatt::plugin::builtin;
use hashwatt::plugin::package::{self, MANIFEST_FILE, WASM_FILE};
use hashwatt::status::PoolState;

const LIMIT: Duration = Duration::from_secs(90);

const MANIFEST: &str = "name = \"uploaded-pool\"\nversion = \"2.1.0\"\nkind = \"pool\"\nworld = \"hashwatt:pool/pool-plugin\"\nworld_version = \"0.2.1\"\n\n[capabilities]\npool_endpoints = [\"*\"]\n";

/// A `.hwpkg` of the Stratum V1 component under [`MANIFEST`], signed by `key`.
fn hwpkg(root: &std::path::Path, sub: &str, key: &SigningKey) -> Vec<u8> {
    let dir = root.join(sub);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(WASM_FILE), builtin::STRATUM_V1).unwrap();
    fs::write(dir.join(MANIFEST_FILE), MANIFEST).unwrap();
    package::sign_package(&dir, key).unwrap();
    archive::pack(&dir).unwrap().bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mining_appliance_lists_its_plugins_with_what_they_cost() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.01).await;
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = package::public_key_hex(&key.verifying_key());
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.trusted_keys = vec![public.clone()];
        })
        .await;
        let healthy = common::wait_for(Duration::from_secs(30), || {
            app.counters()
                .pools
                .first()
                .is_some_and(|p| p.state == PoolState::Healthy)
        })
        .await;
        assert!(healthy, "the pool never got work");
        let handle = app.handle().clone();
        let id = handle.pools().await[0].0;

        let list = handle.plugins().await;
        let stratum = list
            .iter()
            .find(|p| p.name == "stratum-v1" && p.built_in)
            .unwrap_or_else(|| panic!("no built-in stratum-v1 in {list:#?}"));
        assert_eq!(stratum.kind, "pool");
        assert_eq!(stratum.used_by, [id.to_string()]);
        assert_eq!(stratum.state, "running");
        assert!(stratum.trusted && !stratum.signed && stratum.signer.is_none());
        assert_eq!(stratum.restarts, 0);
        assert!(stratum.memory_bytes.is_some_and(|m| m > 0), "{stratum:?}");
        assert!(stratum.time_ms.is_some_and(|t| t > 0.0), "{stratum:?}");
        // The built-in policies are listed too, unused.
        let surplus = list.iter().find(|p| p.name == "surplus-only").unwrap();
        assert_eq!(
            (surplus.kind.as_str(), surplus.state.as_str()),
            ("policy", "idle")
        );
        assert!(surplus.used_by.is_empty() && surplus.memory_bytes.is_none());

        // An upload goes through the same verification as the CLI.
        let tmp = tempfile::tempdir().unwrap();
        let bytes = hwpkg(tmp.path(), "good", &key);
        let said = handle
            .execute(Command::InstallPluginPackage { bytes })
            .await
            .unwrap();
        assert_eq!(said, "installed uploaded-pool 2.1.0 (pool)");
        let untrusted = hwpkg(tmp.path(), "bad", &SigningKey::from_bytes(&[8; 32]));
        let e = handle
            .execute(Command::InstallPluginPackage { bytes: untrusted })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a trusted key"), "{e}");
        let e = handle
            .execute(Command::InstallPluginPackage {
                bytes: vec![b'x'; 1024],
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a valid plugin package"), "{e}");

        let list = handle.plugins().await;
        let uploaded = list
            .iter()
            .find(|p| p.name == "uploaded-pool")
            .unwrap_or_else(|| panic!("not listed: {list:#?}"));
        assert_eq!(uploaded.version, "2.1.0");
        assert_eq!(uploaded.kind, "pool");
        assert!(uploaded.signed && uploaded.trusted && !uploaded.built_in);
        assert_eq!(
            uploaded.signer.as_deref(),
            Some(package::key_id(&key.verifying_key()).as_str())
        );
        assert_eq!(uploaded.state, "idle");
        assert!(uploaded.used_by.is_empty());
        assert_eq!(uploaded.memory_bytes, None);
        let json = serde_json::to_value(&list).unwrap();
        assert!(json.as_array().is_some_and(|a| a.len() == list.len()));
        app.shutdown().await;
    })
    .await;
}
