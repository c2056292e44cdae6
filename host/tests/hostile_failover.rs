//! Hostile pool plugins over real loopback TCP: the primary pool's plugin
//! misbehaves (loops, eats memory, traps, floods…); the appliance stays up,
//! mining moves to the failover pool (whose Stratum V1 plugin is unaffected)
//! within 2 s, the reason is recorded, the plugin is restarted with back-off,
//! and a plugin that keeps failing is disabled with its reason.

mod common;

use std::time::{Duration, Instant};

use hashwatt::status::PoolState;

const TRIGGER: &[u8] = b"{\"id\":null,\"method\":\"hostile.trigger\",\"params\":[]}\n";

type Setup = (
    hashwatt_devpool::DevPool,
    hashwatt_devpool::DevPool,
    hashwatt::app::App,
);

/// Primary pool with the hostile plugin in `mode`, secondary with the real one.
async fn setup(mode: &str) -> Setup {
    // A generous call budget, so that on a loaded CI machine the
    // misbehaviour under test (trap, output cap, sandbox probe) is what
    // stops the plugin, not a descheduled thread missing 10 ms. The time
    // budget itself is tested with the production 10 ms (`infinite_loop`).
    setup_with_budget(mode, 200).await
}

/// [`setup`] with a per-call plugin budget of `budget_ms`.
async fn setup_with_budget(mode: &str, budget_ms: u64) -> Setup {
    let primary = common::devpool(0.0005).await;
    let secondary = common::devpool(0.0005).await;
    let mode = mode.to_string();
    let app = common::appliance_with(
        &[primary.local_addr(), secondary.local_addr()],
        1,
        move |c| {
            c.allow_unsigned_plugins = true;
            // No fail-back by the clock: the test hands mining back to the
            // primary itself once the failover pool has proved it mines, so
            // nothing here depends on hashrate or wall-clock time (the hold
            // itself is tested on an explicit clock in pool::failover).
            c.failback_secs = 3600;
            // The failover pool joins once the primary has mined (see
            // `enable_secondary`), so mining starts on the primary whichever
            // pool answers first.
            c.pools[1].enabled = false;
            c.pools[0].plugin = Some(env!("HASHWATT_HOSTILE_WASM").to_string());
            c.pools[0].password = mode;
            c.plugin_limits.call_timeout_ms = budget_ms;
        },
    )
    .await;
    (primary, secondary, app)
}

/// Enables the failover pool through the command path and waits until it
/// is connected and ready.
async fn enable_secondary(app: &hashwatt::app::App) {
    let id = app.counters().pools[1].id;
    app.execute(hashwatt::control::Command::SetPoolEnabled { id, enabled: true })
        .await
        .expect("enable the failover pool");
    assert!(
        common::wait_for(Duration::from_secs(30), || app.counters().pools[1].state
            == PoolState::Healthy)
        .await,
        "the failover pool did not become ready: {:?}",
        app.counters().pools[1]
    );
}

/// `expected` lists acceptable recorded reasons: when several limits can
/// stop a misbehaviour (building 100 MB hits the memory limit, a slow build
/// of a huge output the time budget), whichever comes first is right.
async fn plugin_failure_fails_over(mode: &str, expected: &[&str]) {
    plugin_failure_fails_over_with_budget(mode, expected, 200).await;
}

/// [`plugin_failure_fails_over`] with a per-call budget of `budget_ms`.
async fn plugin_failure_fails_over_with_budget(mode: &str, expected: &[&str], budget_ms: u64) {
    common::bounded(Duration::from_secs(200), async {
        let (primary, secondary, app) = setup_with_budget(mode, budget_ms).await;
        assert!(
            common::wait_for(Duration::from_secs(30), || primary.stats().accepted >= 2).await,
            "{mode}: the hostile plugin should mine normally until triggered"
        );
        assert_eq!(app.counters().active_pool, Some(0));
        enable_secondary(&app).await;
        assert_eq!(
            app.counters().active_pool,
            Some(0),
            "no fail-back hold passed"
        );
        let before = secondary.stats().accepted;

        primary.send_raw(TRIGGER);
        let t0 = Instant::now();
        let moved = common::wait_for(Duration::from_secs(2), || {
            app.counters().active_pool == Some(1)
        })
        .await;
        eprintln!("{mode}: failed over after {:?}", t0.elapsed());
        assert!(
            moved,
            "{mode}: mining did not move to the failover pool within 2 s"
        );

        let pool = app.counters().pools[0].clone();
        let reason = pool.plugin_error.unwrap_or_default();
        assert!(
            expected.iter().any(|e| reason.contains(e)),
            "{mode}: recorded reason {reason:?}"
        );
        assert!(pool.plugin_restarts >= 1, "{mode}: no restart recorded");
        assert!(
            common::wait_for(Duration::from_secs(45), || secondary.stats().accepted
                >= before + 2)
            .await,
            "{mode}: shares did not continue on the failover pool"
        );
        // The restarted plugin (fresh instance from the pre-instance) is
        // healthy again: with the failover pool disabled through the command
        // path, mining returns to it.
        assert!(
            common::wait_for(Duration::from_secs(30), || app.counters().pools[0].state
                == PoolState::Healthy)
            .await,
            "{mode}: the restarted plugin is not healthy: {:?}",
            app.counters().pools[0]
        );
        let secondary_id = app.counters().pools[1].id;
        app.execute(hashwatt::control::Command::SetPoolEnabled {
            id: secondary_id,
            enabled: false,
        })
        .await
        .expect("disable the failover pool");
        assert!(
            common::wait_for(Duration::from_secs(30), || app.counters().active_pool
                == Some(0))
            .await,
            "{mode}: the restarted plugin did not take over again: {:?}",
            app.counters().pools[0]
        );
        let accepted = primary.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(20), || primary.stats().accepted
                >= accepted + 2)
            .await
        );
        assert_eq!(
            secondary.stats().rejected_total,
            0,
            "{:?}",
            secondary.stats().rejected
        );
        assert_eq!(app.counters().hardware_errors, 0);
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop() {
    // The production budget: 10 ms per call.
    plugin_failure_fails_over_with_budget("loop", &["time budget"], 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_memory() {
    plugin_failure_fails_over("memory", &["memory limit exceeded", "time budget"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_trap() {
    plugin_failure_fails_over("unreachable", &["unreachable"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_panic() {
    plugin_failure_fails_over("panic", &["wasm trap"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflow() {
    plugin_failure_fails_over("stack", &["wasm trap", "stack overflow"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_over_one_mebibyte_hits_the_send_limit() {
    plugin_failure_fails_over("big-send:1200000", &["exceeded a limit"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_send() {
    // The plugin cannot even build 100 MB: its memory limit stops it first.
    plugin_failure_fails_over("big-send", &["memory limit exceeded", "time budget"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_flood() {
    plugin_failure_fails_over("flood:2000", &["exceeded a limit"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_are_refused_and_mining_goes_on() {
    common::bounded(Duration::from_secs(90), async {
        // Building ten absurd jobs (20 000 branches) takes the plugin ~25 ms:
        // give it the budget, the point here is the host's validation.
        let (primary, _secondary, app) = setup_with_budget("invalid-job", 500).await;
        assert!(common::wait_for(Duration::from_secs(30), || primary.stats().accepted >= 2).await);
        primary.send_raw(TRIGGER);
        assert!(
            common::wait_for(Duration::from_secs(5), || app.counters().refused_actions
                >= 1)
            .await
        );
        let reason = app.counters().last_refused_action.unwrap_or_default();
        assert!(reason.starts_with("invalid"), "{reason}");
        let accepted = primary.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(20), || primary.stats().accepted
                >= accepted + 2)
            .await
        );
        assert_eq!(
            primary.stats().rejected_total,
            0,
            "{:?}",
            primary.stats().rejected
        );
        assert_eq!(
            app.counters().active_pool,
            Some(0),
            "refused jobs are not a plugin failure"
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_probes_change_nothing() {
    for mode in ["fs", "socket", "env"] {
        common::bounded(Duration::from_secs(90), async {
            let (primary, _secondary, app) = setup(mode).await;
            assert!(
                common::wait_for(Duration::from_secs(30), || primary.stats().accepted >= 2).await
            );
            primary.send_raw(TRIGGER);
            let accepted = primary.stats().accepted;
            assert!(
                common::wait_for(Duration::from_secs(20), || primary.stats().accepted
                    >= accepted + 2)
                .await,
                "{mode}: mining stopped"
            );
            assert_eq!(
                app.counters().pools[0].plugin_restarts,
                0,
                "{mode}: probing the sandbox is not a trap"
            );
            app.shutdown().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_failing_is_disabled_with_its_reason() {
    common::bounded(Duration::from_secs(90), async {
        let (_primary, secondary, app) = setup("loop@connected").await;
        enable_secondary(&app).await;
        let disabled = common::wait_for(Duration::from_secs(30), || {
            app.counters().pools[0].state == PoolState::Disabled
        })
        .await;
        let pool = app.counters().pools[0].clone();
        assert!(disabled, "not disabled: {pool:?}");
        let why = pool.disabled.unwrap_or_default();
        assert!(
            why.contains("failed 5 times") && why.contains("time budget"),
            "{why}"
        );
        assert_eq!(
            pool.plugin_restarts, 4,
            "restarted after each failure but the last"
        );
        assert!(
            common::wait_for(Duration::from_secs(30), || secondary.stats().accepted >= 3).await
        );
        assert_eq!(app.counters().active_pool, Some(1));
        app.shutdown().await;
    })
    .await;
}
