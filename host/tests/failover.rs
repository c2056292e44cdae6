//! Pool failover over real loopback TCP with two devpools: the primary dies,
//! mining moves to the secondary; the primary returns, mining moves back
//! after the hold time; every share is credited to the pool whose job it
//! solves (a share sent to the wrong pool would be rejected there).

mod common;

use std::time::{Duration, Instant};

use hashwatt_devpool::DevPoolConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_and_back_with_shares_on_the_right_pool() {
    common::bounded(Duration::from_secs(120), async {
        let primary = common::devpool(0.0005).await;
        let secondary = common::devpool(0.0005).await;
        let primary_addr = primary.local_addr();
        let app = common::appliance_with(&[primary_addr, secondary.local_addr()], 1, |c| {
            c.failback_secs = 3
        })
        .await;

        assert!(common::wait_for(Duration::from_secs(30), || primary.stats().accepted >= 3).await);
        assert_eq!(app.counters().active_pool, Some(0));
        assert!(
            common::wait_for(Duration::from_secs(10), || app.counters().pools[1].state
                == hashwatt::status::PoolState::Healthy)
            .await,
            "the failover pool is kept connected and ready"
        );

        // Kill the primary: mining moves to the secondary within 2 s.
        let before = secondary.stats().accepted;
        primary.clone().shutdown().await;
        let killed = Instant::now();
        let switched = common::wait_for(Duration::from_secs(2), || {
            app.counters().active_pool == Some(1)
        })
        .await;
        eprintln!("switched to the failover pool after {:?}", killed.elapsed());
        assert!(
            switched,
            "still on {:?} 2 s after the primary died",
            app.counters().active_pool
        );
        assert!(
            common::wait_for(Duration::from_secs(20), || secondary.stats().accepted
                >= before + 3)
            .await,
            "shares did not continue on the secondary"
        );

        // Bring the primary back on the same address: mining returns after
        // it has been healthy for the 3 s hold time, not before.
        let primary = hashwatt_devpool::start(DevPoolConfig {
            listen: primary_addr,
            difficulty: 0.0005,
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(
            common::wait_for(Duration::from_secs(20), || app.counters().pools[0].state
                == hashwatt::status::PoolState::Healthy)
            .await
        );
        let healthy_at = Instant::now();
        assert_eq!(
            app.counters().active_pool,
            Some(1),
            "no fail-back before the hold time"
        );
        assert!(
            common::wait_for(Duration::from_secs(15), || app.counters().active_pool
                == Some(0))
            .await
        );
        let held = healthy_at.elapsed();
        eprintln!("failed back after the primary was healthy for {held:?}");
        assert!(
            held >= Duration::from_millis(2500),
            "failed back too early: {held:?}"
        );
        assert!(common::wait_for(Duration::from_secs(20), || primary.stats().accepted >= 3).await);

        for (name, pool) in [("primary", &primary), ("secondary", &secondary)] {
            let s = pool.stats();
            assert_eq!(
                s.rejected_total, s.stale,
                "{name}: shares rejected for other reasons than staleness: {:?}",
                s.rejected
            );
        }
        assert_eq!(app.counters().hardware_errors, 0);
        app.shutdown().await;
    })
    .await;
}
