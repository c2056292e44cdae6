//! Helpers shared by the integration tests: a real devpool on loopback and
//! the real appliance (with the real Stratum V1 wasm plugin) mining on it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hashwatt::app::App;
use hashwatt::config::{Config, PoolEntry};
use hashwatt_devpool::{DevPool, DevPoolConfig};

/// Sends the host's logs to the test output (shown for failing tests)
/// and to the panel's log tail, as `hashwatt run` does.
pub fn logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(hashwatt::logtail::TailLayer)
            .try_init();
    });
}

/// Starts a devpool on 127.0.0.1 at `difficulty`.
pub async fn devpool(difficulty: f64) -> DevPool {
    logs();
    hashwatt_devpool::start(DevPoolConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        difficulty,
        ..Default::default()
    })
    .await
    .expect("devpool starts")
}

/// The appliance mining with `threads` workers on the given pools, in order.
pub async fn appliance(pools: &[SocketAddr], threads: usize) -> App {
    appliance_with(pools, threads, |_| {}).await
}

/// Like [`appliance`], with the config adjusted by `tweak` before start.
pub async fn appliance_with(
    pools: &[SocketAddr],
    threads: usize,
    tweak: impl FnOnce(&mut Config),
) -> App {
    try_appliance_with(pools, threads, tweak)
        .await
        .expect("appliance starts")
}

/// Like [`appliance_with`], returning the start error instead of panicking.
pub async fn try_appliance_with(
    pools: &[SocketAddr],
    threads: usize,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<App> {
    logs();
    let mut config = config(pools, threads);
    tweak(&mut config);
    App::start(config).await
}

/// A fresh state dir under cargo's target/tmp.
pub fn state_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "hashwatt-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ))
}

/// The test configuration: the given pools, in order, with a fresh state dir.
pub fn config(pools: &[SocketAddr], threads: usize) -> Config {
    // Under target/tmp (cargo's scratch dir for integration tests), not /tmp.
    let state = state_dir();
    Config {
        pools: pools
            .iter()
            .map(|a| PoolEntry {
                url: format!("stratum+tcp://{a}").parse().unwrap(),
                user: "test.worker".into(),
                password: "x".into(),
                plugin: None,
                enabled: true,
                settings: Default::default(),
            })
            .collect(),
        threads,
        backend: "auto".into(),
        state_dir: state,
        status_interval_secs: 10,
        allow_pool_redirect: false,
        failback_secs: 60,
        trusted_keys: Vec::new(),
        allow_unsigned_plugins: false,
        // Tests share two cores with many parallel tests: a wider call
        // budget than production keeps a descheduled thread from looking
        // like a runaway plugin. Tests of the budget itself set 10 ms.
        plugin_limits: hashwatt::config::PluginLimits {
            call_timeout_ms: 250,
            ..Default::default()
        },
        web: hashwatt::config::WebSettings {
            listen: None,
            ..Default::default()
        },
        cgminer: Default::default(),
        esp_miner: Default::default(),
        energy: Default::default(),
        signals: Vec::new(),
        policies: Vec::new(),
        asic: Vec::new(),
        cpu_mining: None,
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Runs an async test body with a timeout so a hang fails instead of blocking CI.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, f: F) {
    tokio::time::timeout(limit, f)
        .await
        .expect("test finished within its time limit");
}

/// A signal with no source of its own: its values are pushed (API, commands).
pub fn pushed_signal(name: impl Into<String>, ttl_secs: u64) -> hashwatt::config::SignalEntry {
    hashwatt::config::SignalEntry {
        name: name.into(),
        ttl_secs,
        min: None,
        max: None,
        http: None,
        mqtt: None,
        file: None,
    }
}

/// Asserts that a command succeeded, showing its whole output if not;
/// returns its stdout.
pub fn succeeded(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The target directory that crates made from the plugin templates share,
/// so a second run compiles nothing.
pub fn template_target_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-template")
}

/// Runs `cargo test` in a crate made by `hashwatt plugin new`, with the
/// workspace's lock file (no surprise upgrades); returns its stdout.
pub fn test_template_crate(krate: &std::path::Path) -> String {
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", template_target_dir())
        .output()
        .unwrap();
    succeeded(&out, "cargo test in the new crate")
}

/// A child process (a browser driver, a reference pool) killed and reaped
/// when the test lets go of it, pass or fail.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the time of asking, for a child process to
/// listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
