//! Wires the appliance together: devices, the miner, the plugin runtime,
//! the pool drivers, the energy meter, the policy engine with its signal
//! sources, the HTTP API and the status line — all around one control
//! plane ([`crate::control::Appliance`]). Nothing here decides anything.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::{Config, PolicyEntry, PoolEntry};
use crate::control::{Appliance, Command, CommandError, Handle, PoolWiring};
use crate::device::cpu::CpuDevice;
use crate::device::{Control, Devices};
use crate::energy::EnergyMeter;
use crate::miner::Miner;
use crate::plugin::cli as plugin_cli;
use crate::plugin::package::{PluginKind, Trust};
use crate::plugin::policy::{PolicyLimits, PolicyPluginFactory, PolicyPluginPre};
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{Limits, Runtime, builtin};
use crate::policy::Mode;
use crate::policy::actuator::{Actuator, PowerModel};
use crate::policy::arbiter::{Override, Verdict};
use crate::policy::clock::{Clock, SystemClock};
use crate::policy::engine::{EngineConfig, EngineStatus, PolicyEngine, PolicySpec};
use crate::policy::signal::{SignalHub, SignalSpec};
use crate::policy::sources::{
    AllowList,
    file::FileSource,
    http::HttpSource,
    mqtt::{MqttSource, MqttTopic},
};
use crate::pool::PoolSelector;
use crate::status::{Counters, Status, format_hashrate};

/// The user agent announced to pools.
pub const USER_AGENT: &str = concat!("hashwatt/", env!("CARGO_PKG_VERSION"));

/// How to start beyond the configuration itself.
#[derive(Default)]
pub struct StartOptions {
    /// The file the configuration came from: commands rewrite it and
    /// `Reload` re-reads it. `None`: changes live in memory only.
    pub config_path: Option<PathBuf>,
    /// The hashing devices; `None`: the CPU as the configuration says.
    pub devices: Option<Devices>,
}

/// A running appliance.
pub struct App {
    handle: Handle,
    api_addr: Option<std::net::SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

/// Energy-policy verdicts applied to every device through its controls.
struct DeviceActuator {
    devices: Devices,
}

impl Actuator for DeviceActuator {
    fn apply(&self, mode: &Mode) {
        for d in &self.devices {
            let result = match mode {
                Mode::Pause => d.control(Control::Pause),
                Mode::Run => d
                    .control(Control::PowerLimit(None))
                    .and_then(|()| d.control(Control::Resume)),
                Mode::Limit(w) => {
                    let _ = d.control(Control::Resume);
                    d.control(Control::PowerLimit(Some(*w)))
                }
            };
            if let Err(e) = result {
                tracing::warn!(device = %d.info().name, "cannot apply {mode:?}: {e}");
            }
        }
    }
}

impl App {
    /// Starts mining as `config` says, on the CPU, without a config file.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        App::start_with(config, StartOptions::default()).await
    }

    /// Starts mining as `config` says, with `options`.
    pub async fn start_with(config: Config, options: StartOptions) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;
        let threads = if config.threads == 0 {
            hashwatt_hash::workers::default_threads()
        } else {
            config.threads
        };
        // Calibration also tells the energy model the all-thread hashrate.
        let (devices, backend_name, full_rate) = match options.devices {
            Some(devices) => (devices, "external", 1e6),
            None => {
                let backend_name = (config.backend != "auto").then_some(config.backend.as_str());
                let selected = hashwatt_hash::select(backend_name)
                    .context("cannot choose a hashing backend")?;
                let backend = selected.backend.clone();
                let name = backend.name();
                let rate = selected
                    .calibration
                    .as_ref()
                    .and_then(|c| c.rates.iter().find(|(n, _)| *n == name).map(|(_, r)| *r))
                    .unwrap_or(1e6)
                    * threads as f64;
                info!(backend = name, threads, "hashing backend selected");
                let cpu = CpuDevice::start(
                    backend,
                    threads,
                    PowerModel {
                        idle_w: config.energy.idle_w,
                        k_w: config.energy.full_load_w - config.energy.idle_w,
                    },
                    Duration::from_millis(100),
                );
                let devices: Devices = vec![cpu];
                (devices, name, rate)
            }
        };

        let runtime = Runtime::new()?;
        // Whatever a crash left behind (staging dirs, temp files, cache
        // entries nothing refers to) goes before anything is loaded.
        crate::plugin::clean_state_dir(&runtime, &config.state_dir);
        let cache_dir = plugin_cli::cache_dir(&config.state_dir);
        let (component, outcome) =
            runtime.compile_cached(&cache_dir, "stratum-v1", builtin::STRATUM_V1)?;
        tracing::debug!(?outcome, "built-in stratum-v1 plugin loaded");
        let builtin_plugin = PoolPluginPre::from_component(&runtime, "stratum-v1", &component)?;

        let names: Vec<String> = devices.iter().map(|d| d.info().name.clone()).collect();
        let status = Arc::new(Status::new(&names));
        let miner = Miner::new(devices.clone(), status.clone());
        let selector = PoolSelector::new(
            Vec::new(),
            Duration::from_secs(config.failback_secs),
            miner.clone(),
            status.clone(),
        );

        let (shutdown, shutdown_rx) = watch::channel(false);
        let started = Instant::now();
        let mut tasks = Vec::new();
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
            backend_name,
            full_rate,
            &hub,
        )?;
        let actuator = Arc::new(DeviceActuator {
            devices: devices.clone(),
        });
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

        let handle = Appliance::new(
            config.clone(),
            options.config_path,
            PoolWiring {
                runtime,
                builtin: builtin_plugin,
                user_agent: USER_AGENT.to_string(),
            },
            miner,
            selector.clone(),
            status,
            engine,
            hub,
            energy,
            shutdown_rx.clone(),
        );
        handle.start_pools().await?;
        tasks.push(tokio::spawn(select_loop(selector, shutdown_rx.clone())));
        tasks.push(tokio::spawn(sample_loop(
            handle.clone(),
            shutdown_rx.clone(),
        )));

        let api_addr = match config.api_listen {
            Some(addr) => {
                let (bound, task) = crate::web::start(addr, handle.clone(), shutdown_rx.clone())
                    .await
                    .with_context(|| format!("cannot listen for the HTTP API on {addr}"))?;
                info!(%bound, "HTTP API listening (GET /api/status)");
                tasks.push(task);
                Some(bound)
            }
            None => None,
        };

        tasks.push(tokio::spawn(report(
            handle.clone(),
            Duration::from_secs(config.status_interval_secs),
            shutdown_rx,
        )));
        Ok(App {
            handle,
            api_addr,
            shutdown,
            tasks,
            started,
        })
    }

    /// The control plane: the snapshot every front end reads and the one
    /// command path.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs one command through the control plane.
    pub async fn execute(&self, command: Command) -> Result<String, CommandError> {
        self.handle.execute(command).await
    }

    /// Share counters and pool state.
    pub fn counters(&self) -> Counters {
        self.handle.counters()
    }

    /// Average hashrate over `window` (sampled every second).
    pub fn hashrate(&self, window: Duration) -> f64 {
        self.handle.hashrate(window)
    }

    /// Total nonces hashed since start.
    pub fn hashes(&self) -> u64 {
        self.handle.hashes()
    }

    /// Manual override above every policy: pause (for `minutes`, or until
    /// cleared) or clear the override.
    pub fn set_paused(&self, paused: bool, minutes: Option<u32>) {
        let now = SystemClock.now_utc_ms();
        self.handle
            .engine()
            .set_override(paused.then(|| Override::pause(now, minutes)));
    }

    /// What the energy policies decided and why.
    pub fn verdict(&self) -> Verdict {
        self.handle.engine().verdict()
    }

    /// Every policy's state, the override and the verdict.
    pub fn policies(&self) -> EngineStatus {
        self.handle.engine().status()
    }

    /// Sets a signal's value from the API (e.g. a home-automation push).
    pub fn set_signal(&self, name: &str, value: f64) -> anyhow::Result<()> {
        Ok(self.handle.engine().hub().set(name, value)?)
    }

    /// The latest power reading and which meter produced it.
    pub fn power(&self) -> (Option<f64>, &'static str) {
        self.handle.energy().power()
    }

    /// Where the HTTP API listens, if enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api_addr
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops mining: pools are closed cleanly, the energy ledger is written,
    /// the devices stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.handle.stop_all().await;
        for t in self.tasks {
            let _ = t.await;
        }
        for d in self.handle.devices() {
            d.idle();
        }
        self.handle.energy().checkpoint();
    }
}

/// Whether a `plugin = "…"` value names an installed package (not a path).
pub(crate) fn is_package_name(spec: &str) -> bool {
    !spec.contains('/') && !spec.ends_with(".wasm")
}

/// Loads the pool plugin a pool entry names: an installed, signature-checked
/// package by name, or a path to a bare `.wasm` component. A bare component
/// carries no signature, so it is only accepted when the operator allowed
/// unsigned plugins. Returns the plugin and a label for status.
pub(crate) fn load_pool_plugin(
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
#[allow(clippy::too_many_arguments)]
pub(crate) async fn watch_installed(
    runtime: Runtime,
    config: Config,
    entry: PoolEntry,
    index: u64,
    name: String,
    updates: watch::Sender<PoolPluginPre>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
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
                    // A trial only: the driver offers what its devices can do.
                    version_rolling: true,
                    settings: crate::plugin::pool::settings_map(&entry.settings),
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

/// Loads and adds one configured policy to the engine.
pub(crate) fn add_policy(
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
    engine.add_policy(
        PolicySpec::new(&entry.name, entry.fail_safe),
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

/// Samples the devices every second: hashrate meters and energy accounting.
async fn sample_loop(handle: Handle, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        handle.sample(Instant::now());
    }
}

/// Logs a status line every `every`, from the snapshot.
async fn report(handle: Handle, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let s = handle.snapshot();
        let c = &s.shares;
        info!(
            target: "hashwatt::status",
            "hashrate {} (10s) {} (1m) | accepted {} rejected {} stale {} | pool {} | {} | power {} | uptime {}s",
            format_hashrate(s.hashrate_10s_hs),
            format_hashrate(s.hashrate_1m_hs),
            c.accepted,
            c.rejected_total(),
            c.stale,
            c.active_pool
                .and_then(|i| c.pools.get(i))
                .map(|p| p.url.as_str())
                .unwrap_or("none (no healthy pool)"),
            s.decision,
            match s.power_w {
                Some(w) => format!("{w:.0} W ({})", s.power_source),
                None => "unknown".to_string(),
            },
            s.uptime_secs,
        );
    }
}
