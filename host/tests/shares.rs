//! End to end over real loopback TCP: devpool → real Stratum V1 wasm plugin →
//! host work generation → CPU hashing → shares accepted by the devpool, which
//! checks every share with its own plain SHA-256d.

mod common;

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_shares_accepted_none_rejected_within_30s() {
    common::bounded(Duration::from_secs(60), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance(&[pool.local_addr()], 0).await;
        let start = Instant::now();
        // The pool counts a share when it replies; the host when it has read
        // that reply: wait for both sides.
        let ok = common::wait_for(Duration::from_secs(30), || {
            pool.stats().accepted >= 20 && app.counters().accepted >= 20
        })
        .await;
        let elapsed = start.elapsed();
        let (stats, counters) = (pool.stats(), app.counters());
        assert!(
            ok,
            "only {} shares accepted in 30 s (host counters {counters:?})",
            stats.accepted
        );
        assert_eq!(
            stats.rejected_total, 0,
            "pool rejected shares: {:?}",
            stats.rejected
        );
        assert!(
            counters.accepted >= 20,
            "host saw {} accepted",
            counters.accepted
        );
        assert_eq!(
            counters.rejected_total(),
            0,
            "host saw rejections: {:?}",
            counters.rejected
        );
        assert_eq!(counters.hardware_errors, 0);
        eprintln!(
            "{} shares accepted in {elapsed:?}; hashes {}",
            stats.accepted,
            app.hashes()
        );
        app.shutdown().await;
    })
    .await;
}
