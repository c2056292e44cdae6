//! Wires the appliance together: hashing backend and workers, the miner,
//! the plugin runtime, the pool drivers, the energy meter, the policy
//! engine with its signal sources, and the status reporter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hashwatt_hash::Workers;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::{Config, PolicyEntry, PoolEntry};
use crate::energy::EnergyMeter;
use crate::miner::Miner;
use crate::plugin::cli as plugin_cli;
use crate::plugin::package::{PluginKind, Trust};
use crate::plugin::policy::{PolicyLimits, PolicyPluginFactory, PolicyPluginPre};
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{Limits, Runtime, builtin};
use crate::policy::actuator::{CpuActuator, PowerModel};
use crate::policy::arbiter::{Override, Verdict};
use crate::policy::clock::{Clock, SystemClock};
use crate::policy::engine::{EngineConfig, EngineStatus, FailSafe, PolicyEngine, PolicySpec};
use crate::policy::signal::{SignalHub, SignalSpec};
use crate::policy::sources::{
    AllowList,
    file::FileSource,
    http::HttpSource,
    mqtt::{MqttSource, MqttTopic},
};
use crate::pool::{PoolDriver, PoolSelector};
use crate::status::{Counters, HashrateMeter, Status, format_hashrate};

/// The user agent announced to pools.
pub const USER_AGENT: &str = concat!("hashwatt/", env!("CARGO_PKG_VERSION"));

/// A running appliance.
pub struct App {
    status: Arc<Status>,
    meter: Arc<Mutex<HashrateMeter>>,
    workers: Arc<Workers>,
    engine: Arc<PolicyEngine>,
    hub: Arc<SignalHub>,
    energy: Arc<EnergyMeter>,
    miner: Arc<Miner>,
    _plugin_updates: Vec<watch::Sender<PoolPluginPre>>,
    api_addr: Option<std::net::SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

impl App {
    /// Starts mining as `config` says.
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
        // Energy: meter, signals, policies. The model is calibrated to the
        // configured full-load watts at the calibrated all-thread hashrate.
        let full_rate = selected
            .calibration
            .as_ref()
            .and_then(|c| {
                c.rates
                    .iter()
                    .find(|(n, _)| *n == backend_name_str(&selected))
                    .map(|(_, r)| *r)
            })
            .unwrap_or(1e6)
            * threads as f64;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let hub = Arc::new(SignalHub::new(clock.clone()));
        for (i, sig) in config.signals.iter().enumerate() {
            let mut spec = SignalSpec::new(&sig.name, Duration::from_secs(sig.ttl_secs));
            spec.min = sig.min;
            spec.max = sig.max;
            hub.define(spec)
                .with_context(|| format!("signals[{i}] ({})", sig.name))?;
        }
        let energy = EnergyMeter::open(
            &config.energy,
            &config.state_dir,
            backend_name_str(&selected),
            full_rate,
            &hub,
        )?;
        let actuator = CpuActuator::spawn(
            workers.clone(),
            PowerModel {
                idle_w: config.energy.idle_w,
                k_w: config.energy.full_load_w - config.energy.idle_w,
            },
            Duration::from_millis(100),
        );
        let engine = PolicyEngine::new(
            EngineConfig {
                time_zone: config.energy.time_zone.clone(),
                state_dir: Some(config.state_dir.join("policies")),
                ..EngineConfig::default()
            },
            hub.clone(),
            clock,
            energy.clone(),
            actuator,
        );
        for (i, entry) in config.policies.iter().enumerate() {
            add_policy(&runtime, &config, &engine, entry)
                .with_context(|| format!("policies[{i}] ({})", entry.name))?;
        }
        tasks.extend(spawn_sources(&config, &hub, &shutdown_rx)?);
        // The first verdict applies before any pool connects: a policy that
        // says "pause until the feed is known" never lets a job start hashing.
        let first = engine.step();
        info!(verdict = %first, "energy policy verdict at start");
        tasks.push(tokio::spawn(engine.clone().run(shutdown_rx.clone())));

        // Built-in plugins never change while running; their senders stay here.
        let mut update_senders = Vec::new();
        for (index, (entry, shares)) in config.pools.iter().zip(share_rxs).enumerate() {
            let (plugin, label) = match &entry.plugin {
                None => (builtin_plugin.clone(), "stratum-v1 (built in)".to_string()),
                Some(spec) => {
                    load_pool_plugin(&runtime, &config, entry, spec).with_context(|| {
                        format!("pool {} (pools[{index}]): plugin {spec}", entry.url.url)
                    })?
                }
            };
            status.update_pool(index, |s| s.plugin = label);
            let (update_tx, updates) = watch::channel(plugin.clone());
            if let Some(name) = entry.plugin.as_deref().filter(|s| is_package_name(s)) {
                tasks.push(tokio::spawn(watch_installed(
                    runtime.clone(),
                    config.clone(),
                    index,
                    name.to_string(),
                    update_tx,
                    status.clone(),
                    shutdown_rx.clone(),
                )));
            } else {
                update_senders.push(update_tx);
            }
            let driver = PoolDriver {
                index,
                entry: entry.clone(),
                selector: selector.clone(),
                plugin,
                updates,
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

        let api_addr = match config.api_listen {
            Some(addr) => {
                let state = crate::web::ApiState {
                    status: status.clone(),
                    hashrate: meter.clone(),
                    engine: engine.clone(),
                    hub: hub.clone(),
                    energy: energy.clone(),
                };
                let (bound, task) = crate::web::start(addr, state, shutdown_rx.clone())
                    .await
                    .with_context(|| format!("cannot listen for the HTTP API on {addr}"))?;
                info!(%bound, "HTTP API listening (GET /api/status)");
                tasks.push(task);
                Some(bound)
            }
            None => None,
        };

        tasks.push(tokio::spawn(report(
            workers.clone(),
            status.clone(),
            meter.clone(),
            engine.clone(),
            energy.clone(),
            Duration::from_secs(config.status_interval_secs),
            started,
            shutdown_rx,
        )));
        Ok(App {
            status,
            meter,
            workers,
            engine,
            hub,
            energy,
            _plugin_updates: update_senders,
            api_addr,
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

    /// Manual override above every policy: pause (for `minutes`, or until
    /// cleared) or clear the override.
    pub fn set_paused(&self, paused: bool, minutes: Option<u32>) {
        let now = SystemClock.now_utc_ms();
        self.engine
            .set_override(paused.then(|| Override::pause(now, minutes)));
    }

    /// What the energy policies decided and why.
    pub fn verdict(&self) -> Verdict {
        self.engine.verdict()
    }

    /// Every policy's state, the override and the verdict.
    pub fn policies(&self) -> EngineStatus {
        self.engine.status()
    }

    /// Sets a signal's value from the API (e.g. a home-automation push).
    pub fn set_signal(&self, name: &str, value: f64) -> anyhow::Result<()> {
        Ok(self.hub.set(name, value)?)
    }

    /// The latest power reading and which meter produced it.
    pub fn power(&self) -> (Option<f64>, &'static str) {
        self.energy.power()
    }

    /// Where the HTTP API listens, if enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api_addr
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
        self.energy.checkpoint();
        drop(self.workers);
    }
}

/// Whether a `plugin = "…"` value names an installed package (not a path).
fn is_package_name(spec: &str) -> bool {
    !spec.contains('/') && !spec.ends_with(".wasm")
}

/// Loads the pool plugin a pool entry names: an installed, signature-checked
/// package by name, or a path to a bare `.wasm` component. A bare component
/// carries no signature, so it is only accepted when the operator allowed
/// unsigned plugins. Returns the plugin and a label for status.
fn load_pool_plugin(
    runtime: &Runtime,
    config: &Config,
    entry: &PoolEntry,
    spec: &str,
) -> anyhow::Result<(PoolPluginPre, String)> {
    let cache_dir = plugin_cli::cache_dir(&config.state_dir);
    if is_package_name(spec) {
        let (pre, label, _) = load_installed_pool_plugin(runtime, config, entry, spec)?;
        return Ok((pre, label));
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
    Ok((
        PoolPluginPre::from_component(runtime, &name, &component)?,
        format!("{name} (unsigned file)"),
    ))
}

/// Loads an installed pool plugin package; also returns its identity
/// (sha256 of manifest and wasm) so a watcher can tell when a new version lands.
fn load_installed_pool_plugin(
    runtime: &Runtime,
    config: &Config,
    entry: &PoolEntry,
    name: &str,
) -> anyhow::Result<(PoolPluginPre, String, [u8; 32])> {
    let trust = Trust::from_config(config)?;
    let package = plugin_cli::load_installed(&config.state_dir, name, &trust)?;
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
    let (component, _) = runtime.compile_cached(
        &plugin_cli::cache_dir(&config.state_dir),
        name,
        &package.wasm,
    )?;
    let pre = PoolPluginPre::from_component(runtime, name, &component)?
        .with_capabilities(package.manifest.capabilities.clone());
    Ok((
        pre,
        format!("{name}@{}", package.manifest.version),
        package.wasm_sha256,
    ))
}

/// What makes an installed version distinct: its manifest and its wasm.
fn package_identity(p: &crate::plugin::package::VerifiedPackage) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(p.wasm_sha256);
    h.update(p.manifest_text.as_bytes());
    h.finalize().into()
}

/// Hot install: watches an installed pool plugin and hands a new version to
/// the pool's driver once it has been verified and instantiated on trial.
/// If the new version fails, the running one keeps running and the reason
/// is shown in the pool's status.
async fn watch_installed(
    runtime: Runtime,
    config: Config,
    index: usize,
    name: String,
    updates: watch::Sender<PoolPluginPre>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(entry) = config.pools.get(index).cloned() else {
        return;
    };
    let identity = |c: &Config| -> Option<[u8; 32]> {
        let trust = Trust::from_config(c).ok()?;
        plugin_cli::load_installed(&c.state_dir, &name, &trust)
            .ok()
            .map(|p| package_identity(&p))
    };
    let mut running = identity(&config);
    let mut refused: Option<[u8; 32]> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = identity(&config);
        if now.is_none() || now == running || now == refused {
            continue;
        }
        let trial = load_installed_pool_plugin(&runtime, &config, &entry, &name).and_then(
            |(pre, label, sha)| {
                let pool_config = crate::plugin::pool::PoolConfig {
                    url: entry.url.url.clone(),
                    host: entry.url.host.clone(),
                    port: entry.url.port,
                    user: entry.user.clone(),
                    password: entry.password.clone(),
                    user_agent: USER_AGENT.to_string(),
                    version_rolling: true,
                    settings: Default::default(),
                };
                let limits = Limits {
                    call_timeout: Duration::from_millis(config.plugin_limits.call_timeout_ms),
                    memory_bytes: config.plugin_limits.memory_mib << 20,
                    ..Limits::default()
                };
                crate::plugin::call_blocking(|| pre.instantiate(&pool_config, limits))?;
                Ok((pre, label, sha))
            },
        );
        match trial {
            Ok((pre, label, sha)) => {
                info!(pool = index, plugin = %label, "new plugin version passed its trial; switching");
                status.update_pool(index, |s| {
                    s.plugin = label;
                    s.plugin_error = None;
                });
                running = Some(sha);
                refused = None;
                let _ = updates.send(pre);
            }
            Err(e) => {
                let reason = format!("new version of {name} refused, the running one stays: {e:#}");
                tracing::error!(pool = index, "{reason}");
                status.update_pool(index, |s| s.plugin_error = Some(reason));
                refused = now;
            }
        }
    }
}

fn backend_name_str(selected: &hashwatt_hash::Selected) -> &'static str {
    selected.backend.name()
}

/// Loads and adds one configured policy to the engine.
fn add_policy(
    runtime: &Runtime,
    config: &Config,
    engine: &PolicyEngine,
    entry: &PolicyEntry,
) -> anyhow::Result<()> {
    // First-party policies are trusted with any configured feed; others
    // may only read HTTP feeds their manifest declares (none for a bare file).
    let (wasm, declared_feeds): (std::borrow::Cow<'static, [u8]>, Option<Vec<String>>) =
        if let Some(bytes) = builtin::policy(&entry.plugin) {
            (bytes.into(), None)
        } else if is_package_name(&entry.plugin) {
            let trust = Trust::from_config(config)?;
            let package = plugin_cli::load_installed(&config.state_dir, &entry.plugin, &trust)?;
            package.expect_kind(PluginKind::Policy)?;
            let feeds = package.manifest.capabilities.http_feeds.clone();
            (package.wasm.into(), Some(feeds))
        } else {
            if !config.allow_unsigned_plugins {
                anyhow::bail!(
                    "refusing an unsigned plugin file (install a signed package, or set allow_unsigned_plugins = true)"
                );
            }
            tracing::warn!(
                plugin = entry.plugin,
                "loading an UNSIGNED policy plugin (allow_unsigned_plugins = true)"
            );
            let bytes = std::fs::read(&entry.plugin)
                .with_context(|| format!("cannot read {}", entry.plugin))?;
            (bytes.into(), Some(Vec::new()))
        };
    let pre = PolicyPluginPre::new(runtime, &entry.name, &wasm)?;
    let json = serde_json::to_string(&entry.config)
        .context("policy config is not representable as JSON")?;
    let mut limits = PolicyLimits::default();
    limits.call.call_timeout = Duration::from_millis(config.plugin_limits.call_timeout_ms);
    limits.call.memory_bytes = config.plugin_limits.memory_mib << 20;
    if let Some(declared) = &declared_feeds {
        let trial = crate::plugin::call_blocking(|| pre.instantiate(&json, limits.clone()))?;
        for name in trial.subscriptions() {
            let feed = config
                .signals
                .iter()
                .find(|s| &s.name == name)
                .and_then(|s| s.http.as_ref());
            if let Some(h) = feed
                && !declared.iter().any(|d| d == &h.url)
            {
                anyhow::bail!(
                    "it subscribes to signal {name:?}, fetched from {}, which its manifest does not declare in capabilities.http_feeds",
                    h.url
                );
            }
        }
    }
    let fail_safe = FailSafe::parse(&entry.fail_safe)?;
    engine.add_policy(
        PolicySpec::new(&entry.name, fail_safe),
        Arc::new(PolicyPluginFactory::new(pre, &json, limits)),
    )?;
    info!(
        policy = entry.name,
        plugin = entry.plugin,
        "energy policy enabled"
    );
    Ok(())
}

/// Starts the host-owned source of every configured signal.
fn spawn_sources(
    config: &Config,
    hub: &Arc<SignalHub>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for (i, sig) in config.signals.iter().enumerate() {
        let ctx = || format!("signals[{i}] ({})", sig.name);
        if let Some(h) = &sig.http {
            // The operator wrote this URL into the config: it is both declared and allowed.
            let allow = AllowList::new(vec![h.url.clone()], vec![h.url.clone()]);
            let source = HttpSource {
                signal: sig.name.clone(),
                url: h.url.clone(),
                pointer: h.pointer.clone(),
                interval: Duration::from_secs_f64(h.interval_secs.max(0.1)),
                timeout: Duration::from_secs(5),
            };
            tasks.push(
                source
                    .spawn(hub.clone(), &allow, shutdown.clone())
                    .with_context(ctx)?,
            );
        }
        if let Some(m) = &sig.mqtt {
            let (host, port) = m
                .broker
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
                .with_context(ctx)?;
            let source = MqttSource {
                host,
                port,
                client_id: format!("hashwatt-{}-{i}", std::process::id()),
                topics: vec![MqttTopic {
                    topic: m.topic.clone(),
                    signal: sig.name.clone(),
                    pointer: m.pointer.clone(),
                }],
                keep_alive: Duration::from_secs(30),
            };
            tasks.push(
                source
                    .spawn(hub.clone(), shutdown.clone())
                    .with_context(ctx)?,
            );
        }
        if let Some(f) = &sig.file {
            let poll = Duration::from_millis(f.poll_ms.max(10));
            let source = FileSource {
                signal: sig.name.clone(),
                path: f.path.clone(),
                pointer: f.pointer.clone(),
                poll,
                refresh: poll.max(Duration::from_secs(10)),
            };
            tasks.push(
                source
                    .spawn(hub.clone(), shutdown.clone())
                    .with_context(ctx)?,
            );
        }
    }
    Ok(tasks)
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
#[allow(clippy::too_many_arguments)]
async fn report(
    workers: Arc<Workers>,
    status: Arc<Status>,
    meter: Arc<Mutex<HashrateMeter>>,
    engine: Arc<PolicyEngine>,
    energy: Arc<EnergyMeter>,
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
        let (r1, r10, r60) = {
            let mut m = meter.lock().unwrap_or_else(|p| p.into_inner());
            m.sample(now, workers.hashes());
            (
                m.rate(Duration::from_secs(2)),
                m.rate(Duration::from_secs(10)),
                m.rate(Duration::from_secs(60)),
            )
        };
        let verdict = engine.verdict();
        energy.sample(now, r1, &verdict.mode, &verdict.by, &verdict.reason);
        if now.duration_since(last_line) >= every {
            last_line = now;
            let c = status.snapshot();
            info!(
                target: "hashwatt::status",
                "hashrate {} (10s) {} (1m) | accepted {} rejected {} stale {} | pool {} | {} | power {} | uptime {}s",
                format_hashrate(r10),
                format_hashrate(r60),
                c.accepted,
                c.rejected_total(),
                c.stale,
                c.active_pool
                    .and_then(|i| c.pools.get(i))
                    .map(|p| p.url.as_str())
                    .unwrap_or("none (no healthy pool)"),
                verdict,
                match energy.power() {
                    (Some(w), source) => format!("{w:.0} W ({source})"),
                    (None, _) => "unknown".to_string(),
                },
                started.elapsed().as_secs(),
            );
        }
    }
}
