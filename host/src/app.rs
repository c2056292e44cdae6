//! Wires the appliance together: hashing backend and workers, the miner,
//! the plugin runtime, the pool driver and the status reporter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hashwatt_hash::Workers;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::{Config, PoolEntry};
use crate::miner::Miner;
use crate::plugin::cli as plugin_cli;
use crate::plugin::package::{PluginKind, Trust};
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{Limits, Runtime, builtin};
use crate::pool::{PoolDriver, PoolSelector};
use crate::status::{Counters, HashrateMeter, Status, format_hashrate};

/// The user agent announced to pools.
pub const USER_AGENT: &str = concat!("hashwatt/", env!("CARGO_PKG_VERSION"));

/// A running appliance.
pub struct App {
    status: Arc<Status>,
    meter: Arc<Mutex<HashrateMeter>>,
    workers: Arc<Workers>,
    miner: Arc<Miner>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

impl App {
    /// Starts mining as `config` says, with the built-in Stratum V1 plugin.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;
        let backend_name = (config.backend != "auto").then_some(config.backend.as_str());
        let selected =
            hashwatt_hash::select(backend_name).context("cannot choose a hashing backend")?;
        let backend = selected.backend.clone();
        let threads = if config.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            config.threads
        };
        info!(
            backend = backend.name(),
            threads, "hashing backend selected"
        );

        let runtime = Runtime::new()?;
        let cache_dir = plugin_cli::cache_dir(&config.state_dir);
        let (component, outcome) =
            runtime.compile_cached(&cache_dir, "stratum-v1", builtin::STRATUM_V1)?;
        tracing::debug!(?outcome, "built-in stratum-v1 plugin loaded");
        let builtin_plugin = PoolPluginPre::from_component(&runtime, "stratum-v1", &component)?;

        let urls: Vec<String> = config.pools.iter().map(|p| p.url.url.clone()).collect();
        let status = Arc::new(Status::new(&urls));
        let (share_txs, share_rxs): (Vec<_>, Vec<_>) = config
            .pools
            .iter()
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let miner = Miner::new(threads, share_txs, status.clone());
        let workers = Arc::new(Workers::start(backend, threads, true, miner.clone()));
        miner.attach(Arc::downgrade(&workers));
        let selector = PoolSelector::new(
            config.pools.len(),
            Duration::from_secs(config.failback_secs),
            miner.clone(),
            status.clone(),
        );

        let (shutdown, shutdown_rx) = watch::channel(false);
        let meter = Arc::new(Mutex::new(HashrateMeter::new(Duration::from_secs(60))));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (index, (entry, shares)) in config.pools.iter().zip(share_rxs).enumerate() {
            let plugin = match &entry.plugin {
                None => builtin_plugin.clone(),
                Some(spec) => {
                    load_pool_plugin(&runtime, &config, entry, spec).with_context(|| {
                        format!("pool {} (pools[{index}]): plugin {spec}", entry.url.url)
                    })?
                }
            };
            let driver = PoolDriver {
                index,
                entry: entry.clone(),
                selector: selector.clone(),
                plugin,
                limits: Limits {
                    call_timeout: Duration::from_millis(config.plugin_limits.call_timeout_ms),
                    memory_bytes: config.plugin_limits.memory_mib << 20,
                    ..Limits::default()
                },
                miner: miner.clone(),
                status: status.clone(),
                shares,
                allow_redirect: config.allow_pool_redirect,
                user_agent: USER_AGENT.to_string(),
            };
            tasks.push(tokio::spawn(driver.run(shutdown_rx.clone())));
        }
        tasks.push(tokio::spawn(select_loop(selector, shutdown_rx.clone())));
        tasks.push(tokio::spawn(report(
            workers.clone(),
            status.clone(),
            meter.clone(),
            Duration::from_secs(config.status_interval_secs),
            started,
            shutdown_rx,
        )));
        Ok(App {
            status,
            meter,
            workers,
            miner,
            shutdown,
            tasks,
            started,
        })
    }

    /// Share counters and pool state.
    pub fn counters(&self) -> Counters {
        self.status.snapshot()
    }

    /// Average hashrate over `window` (sampled every second).
    pub fn hashrate(&self, window: Duration) -> f64 {
        self.meter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rate(window)
    }

    /// Total nonces hashed since start.
    pub fn hashes(&self) -> u64 {
        self.workers.hashes()
    }

    /// Pauses or resumes hashing (manual override; energy policies later).
    pub fn set_paused(&self, paused: bool) {
        self.workers.set_paused(paused);
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops mining and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.miner.set_active(None);
        drop(self.workers);
    }
}

/// Loads the pool plugin a pool entry names: an installed, signature-checked
/// package by name, or a path to a bare `.wasm` component. A bare component
/// carries no signature, so it is only accepted when the operator allowed
/// unsigned plugins.
fn load_pool_plugin(
    runtime: &Runtime,
    config: &Config,
    entry: &PoolEntry,
    spec: &str,
) -> anyhow::Result<PoolPluginPre> {
    let cache_dir = plugin_cli::cache_dir(&config.state_dir);
    if !spec.contains('/') && !spec.ends_with(".wasm") {
        let trust = Trust::from_config(config)?;
        let package = plugin_cli::load_installed(&config.state_dir, spec, &trust)?;
        package.expect_kind(PluginKind::Pool)?;
        if !package
            .manifest
            .capabilities
            .allows_endpoint(&entry.url.host, entry.url.port)
        {
            anyhow::bail!(
                "its manifest does not allow the endpoint {}:{} (pool_endpoints)",
                entry.url.host,
                entry.url.port
            );
        }
        let (component, _) = runtime.compile_cached(&cache_dir, spec, &package.wasm)?;
        return Ok(PoolPluginPre::from_component(runtime, spec, &component)?);
    }
    if !config.allow_unsigned_plugins {
        anyhow::bail!(
            "refusing an unsigned plugin file (install a signed package, or set allow_unsigned_plugins = true)"
        );
    }
    let wasm = std::fs::read(spec).with_context(|| format!("cannot read {spec}"))?;
    tracing::warn!(
        plugin = spec,
        "loading an UNSIGNED pool plugin (allow_unsigned_plugins = true)"
    );
    let name = std::path::Path::new(spec)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    let (component, _) = runtime.compile_cached(&cache_dir, &name, &wasm)?;
    Ok(PoolPluginPre::from_component(runtime, &name, &component)?)
}

/// Re-evaluates the fail-back hold timers four times a second.
async fn select_loop(selector: Arc<PoolSelector>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => selector.tick(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Samples the hash counter every second and logs a status line every `every`.
async fn report(
    workers: Arc<Workers>,
    status: Arc<Status>,
    meter: Arc<Mutex<HashrateMeter>>,
    every: Duration,
    started: Instant,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let (r10, r60) = {
            let mut m = meter.lock().unwrap_or_else(|p| p.into_inner());
            m.sample(now, workers.hashes());
            (
                m.rate(Duration::from_secs(10)),
                m.rate(Duration::from_secs(60)),
            )
        };
        if now.duration_since(last_line) >= every {
            last_line = now;
            let c = status.snapshot();
            info!(
                target: "hashwatt::status",
                "hashrate {} (10s) {} (1m) | accepted {} rejected {} stale {} | pool {} | uptime {}s",
                format_hashrate(r10),
                format_hashrate(r60),
                c.accepted,
                c.rejected_total(),
                c.stale,
                c.active_pool
                    .and_then(|i| c.pools.get(i))
                    .map(|p| p.url.as_str())
                    .unwrap_or("none (no healthy pool)"),
                started.elapsed().as_secs(),
            );
        }
    }
}
