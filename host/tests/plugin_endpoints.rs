//! An installed pool plugin is only ever connected to endpoints its
//! manifest allows, also when the pool asks it to reconnect elsewhere and
//! the operator allows redirects.

mod common;

use std::time::Duration;

use ed25519_dalek::SigningKey;
use hashwatt::plugin::cli;
use hashwatt::plugin::package::{self, Trust};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_outside_the_manifest_is_refused() {
    common::bounded(Duration::from_secs(120), async {
        let first = common::devpool(0.0005).await;
        let second = common::devpool(0.0005).await;

        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let key = SigningKey::from_bytes(&[9; 32]);
        let dir = root.path().join("pkg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("plugin.wasm"),
            hashwatt::plugin::builtin::STRATUM_V1,
        )
        .unwrap();
        let manifest = format!(
            "name = \"onlyfirst\"\nversion = \"1.0.0\"\nkind = \"pool\"\n\
             world = \"hashwatt:pool/pool-plugin\"\nworld_version = \"0.2.1\"\n\n\
             [capabilities]\npool_endpoints = [\"127.0.0.1:{}\"]\nstate_quota_bytes = 0\n",
            first.local_addr().port()
        );
        std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
        package::sign_package(&dir, &key).unwrap();
        let trust = Trust {
            keys: vec![key.verifying_key()],
            allow_unsigned: false,
        };
        cli::install(&dir, &state, &trust).unwrap();

        let public = package::public_key_hex(&key.verifying_key());
        let app = common::appliance_with(&[first.local_addr()], 1, move |c| {
            c.state_dir = state;
            c.trusted_keys = vec![public];
            c.allow_pool_redirect = true;
            c.pools[0].plugin = Some("onlyfirst".into());
        })
        .await;
        assert!(common::wait_for(Duration::from_secs(30), || first.stats().accepted >= 2).await);
        let before = first.stats().accepted;
        first.send_reconnect("127.0.0.1", second.local_addr().port(), 0);
        // The appliance reconnects, but to the configured pool only.
        assert!(
            common::wait_for(Duration::from_secs(30), || first.stats().connections >= 2
                && first.stats().accepted >= before + 2)
            .await,
            "mining did not go on at the allowed pool: {:?}",
            first.stats()
        );
        assert_eq!(
            second.stats().connections,
            0,
            "connected to an endpoint the manifest does not allow"
        );
        app.shutdown().await;
    })
    .await;
}
