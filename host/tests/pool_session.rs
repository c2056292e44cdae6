//! What a pool session negotiated reaches the operator (contract 0.2.1,
//! `hashwatt:pool/status`), and plugins built for 0.2.0, which cannot
//! report, still mine on this host.
//!
//! `tests/fixtures/stratum-v1-0.2.0.wasm` is the Stratum V1 plugin as
//! released for contract 0.2.0 (built from commit 5392264 with `cargo
//! build --target wasm32-wasip2 --profile plugin -p stratum-v1`), kept so
//! the host's promise to old plugins is tested against a real one.

mod common;

use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

fn fixture_0_2_0() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stratum-v1-0.2.0.wasm")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_report_shows_in_status_and_ends_with_the_connection() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance(&[pool.local_addr()], 1).await;
        let reported = common::wait_for(Duration::from_secs(30), || {
            app.counters().pools[0].session.is_some()
        })
        .await;
        assert!(reported, "no session report: {:?}", app.counters().pools[0]);
        let session = app.counters().pools[0].session.clone().unwrap();
        assert_eq!(session.protocol, "Stratum V1");
        assert_eq!(session.channel, None);
        assert!(!session.encrypted);
        assert_eq!(session.authority, None);
        assert!(
            session
                .details
                .contains(&("extranonce2".to_string(), "8 bytes".to_string())),
            "{session:?}"
        );
        assert!(
            session
                .details
                .iter()
                .any(|(label, _)| label == "version rolling"),
            "{session:?}"
        );

        // The pool goes away: while there is no connection there is no
        // report (not the last one, stale); a pool back on the same port
        // gets a fresh one.
        let addr = pool.local_addr();
        let connects = app.counters().pools[0].connects;
        pool.shutdown().await;
        let cleared = common::wait_for(Duration::from_secs(20), || {
            app.counters().pools[0].session.is_none()
        })
        .await;
        assert!(
            cleared,
            "the report outlived its connection: {:?}",
            app.counters().pools[0]
        );
        let back = hashwatt_devpool::start(hashwatt_devpool::DevPoolConfig {
            listen: addr,
            difficulty: 0.0005,
            ..Default::default()
        })
        .await
        .expect("the pool comes back on its port");
        let again = common::wait_for(Duration::from_secs(60), || {
            let p = &app.counters().pools[0];
            p.connects > connects && p.session.is_some()
        })
        .await;
        assert!(again, "{:?}", app.counters().pools[0]);
        drop(back);
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_contract_0_2_0_still_mines_without_a_report() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.pools[0].plugin = Some(fixture_0_2_0());
            c.allow_unsigned_plugins = true;
        })
        .await;
        let mined = common::wait_for(Duration::from_secs(45), || pool.stats().accepted >= 3).await;
        let p = app.counters().pools[0].clone();
        assert!(mined, "the 0.2.0 plugin did not mine: {p:?}");
        assert_eq!(pool.stats().rejected_total, 0);
        assert!(p.plugin_error.is_none(), "{p:?}");
        // It cannot report: the status says nothing rather than a guess.
        assert_eq!(p.session, None);
        app.shutdown().await;
    })
    .await;
}
