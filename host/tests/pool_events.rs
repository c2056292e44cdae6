//! How the appliance reacts to what pools do: new blocks (clean_jobs),
//! dropped connections, garbage, client.reconnect, version rolling.

mod common;

use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_jobs_stop_old_job_shares() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance(&[pool.local_addr()], 1).await;
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 3).await);
        for round in 0..3 {
            pool.new_block();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stale_before = pool.stats().stale;
            let accepted_before = pool.stats().accepted;
            let ok = common::wait_for(Duration::from_secs(20), || {
                pool.stats().accepted >= accepted_before + 3
            })
            .await;
            assert!(ok, "round {round}: mining did not go on after a clean job");
            let stats = pool.stats();
            assert_eq!(
                stats.stale, stale_before,
                "round {round}: stale shares submitted more than 1 s after clean_jobs"
            );
        }
        assert_eq!(
            pool.stats().rejected_total,
            pool.stats().stale,
            "only stale rejections are tolerated"
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_resumes_after_the_pool_closes_the_connection() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance(&[pool.local_addr()], 1).await;
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 2).await);
        let connects = app.counters().connects;
        let accepted = pool.stats().accepted;
        pool.drop_connections();
        assert!(
            common::wait_for(Duration::from_secs(15), || app.counters().connects
                > connects)
            .await,
            "no reconnect"
        );
        assert!(
            common::wait_for(Duration::from_secs(30), || pool.stats().accepted
                >= accepted + 2)
            .await,
            "mining did not resume after reconnect"
        );
        assert_eq!(
            pool.stats().rejected_total,
            0,
            "{:?}",
            pool.stats().rejected
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_overlong_lines_are_survived() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance(&[pool.local_addr()], 1).await;
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 2).await);

        let connects = app.counters().connects;
        pool.send_raw(b"this is not json at all\n");
        assert!(
            common::wait_for(Duration::from_secs(15), || app.counters().connects
                > connects)
            .await
        );
        let reason = app.counters().last_disconnect.unwrap_or_default();
        assert!(
            reason.contains("protocol error"),
            "disconnect reason: {reason}"
        );

        let connects = app.counters().connects;
        let mut long = vec![b'7'; 70 * 1024];
        long.push(b'\n');
        pool.send_raw(&long);
        assert!(
            common::wait_for(Duration::from_secs(15), || app.counters().connects
                > connects)
            .await
        );
        let reason = app.counters().last_disconnect.unwrap_or_default();
        assert!(
            reason.contains("longer than 65536"),
            "disconnect reason: {reason}"
        );

        let accepted = pool.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(30), || pool.stats().accepted
                >= accepted + 2)
            .await,
            "mining did not resume after garbage"
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnect_is_honoured() {
    common::bounded(LIMIT, async {
        let first = common::devpool(0.0005).await;
        let second = common::devpool(0.0005).await;
        let app = common::appliance(&[first.local_addr()], 1).await;
        assert!(common::wait_for(Duration::from_secs(30), || first.stats().accepted >= 2).await);
        first.send_reconnect("127.0.0.1", second.local_addr().port(), 0);
        assert!(
            common::wait_for(Duration::from_secs(30), || second.stats().accepted >= 2).await,
            "no shares reached the pool named in client.reconnect"
        );
        assert_eq!(
            second.stats().rejected_total,
            0,
            "{:?}",
            second.stats().rejected
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_rolled_shares_are_accepted() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance(&[pool.local_addr()], 1).await;
        assert!(
            common::wait_for(Duration::from_secs(30), || pool
                .stats()
                .accepted_version_rolled
                >= 3)
            .await,
            "no version-rolled shares accepted: {:?}",
            pool.stats()
        );
        assert_eq!(
            pool.stats().rejected_total,
            0,
            "{:?}",
            pool.stats().rejected
        );
        app.shutdown().await;
    })
    .await;
}
