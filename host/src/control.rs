//! The control plane: one handle that owns the running appliance.
//!
//! Every front end reads one [`Snapshot`] and changes things through one
//! command path, [`Appliance::execute`]: a [`Command`] is validated against
//! the whole configuration (the same checks as a file), applied while
//! mining wherever possible, and persisted by rewriting the configuration
//! file atomically, so a crash or power cut mid-write leaves the old or the
//! new file, never a torn one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, PolicyEntry, PoolEntry};
use crate::device::Devices;
use crate::energy::EnergyMeter;
use crate::miner::{Miner, PoolId};
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{Limits, Runtime};
use crate::policy::arbiter::Override;
use crate::policy::clock::{Clock, SystemClock};
use crate::policy::engine::PolicyEngine;
use crate::policy::signal::SignalHub;
use crate::pool::probe::{PoolTest, ProbeDeadlines};
use crate::pool::{PoolDriver, PoolSelector};
use crate::state::{DeviceSnapshot, Snapshot};
use crate::status::{HashrateMeter, PoolState, Status};

/// A change to the running appliance.
#[derive(Clone, Debug)]
pub enum Command {
    /// Adds a pool at `position` in priority order (`None`: last).
    AddPool {
        /// The pool.
        pool: PoolEntry,
        /// Where in the priority order.
        position: Option<usize>,
    },
    /// Replaces pool `id`'s settings (it reconnects).
    EditPool {
        /// Which pool.
        id: PoolId,
        /// Its new settings.
        pool: PoolEntry,
    },
    /// Moves pool `id` to `position` in priority order.
    MovePool {
        /// Which pool.
        id: PoolId,
        /// The new position (clamped to the list).
        position: usize,
    },
    /// Enables or disables pool `id` (a disabled pool stays configured).
    SetPoolEnabled {
        /// Which pool.
        id: PoolId,
        /// Use it or not.
        enabled: bool,
    },
    /// Removes pool `id`.
    RemovePool {
        /// Which pool.
        id: PoolId,
    },
    /// Adds an energy policy.
    AddPolicy(PolicyEntry),
    /// Enables or disables a policy.
    SetPolicyEnabled {
        /// The policy's name.
        name: String,
        /// Take part in arbitration or not.
        enabled: bool,
    },
    /// Replaces a policy's settings (its `config` table).
    ConfigurePolicy {
        /// The policy's name.
        name: String,
        /// The new settings.
        config: toml::Table,
    },
    /// Removes a policy.
    RemovePolicy {
        /// The policy's name.
        name: String,
    },
    /// Installs a signed plugin package from a directory.
    InstallPlugin {
        /// The package directory (plugin.wasm, plugin.toml, plugin.sig).
        dir: PathBuf,
    },
    /// Installs a signed plugin package uploaded as one `.hwpkg` file (see
    /// [`crate::plugin::archive`]); verified exactly like [`Self::InstallPlugin`].
    InstallPluginPackage {
        /// The `.hwpkg` bytes (at most [`crate::plugin::archive::MAX_PACKAGE_BYTES`]).
        bytes: Vec<u8>,
    },
    /// Verifies a signed A/B update bundle and installs it into the
    /// inactive slot (through RAUC), to boot once on trial.
    InstallUpdate {
        /// The bundle file (an upload kept in the state directory).
        bundle: PathBuf,
    },
    /// Removes an installed plugin package that no pool or policy uses.
    RemovePlugin {
        /// The package name.
        name: String,
    },
    /// Manual pause above every policy, for `minutes` (`None`: until resumed).
    Pause {
        /// How long.
        minutes: Option<u32>,
    },
    /// Clears the manual override.
    Resume,
    /// Sets a signal's value (e.g. pushed by home automation).
    SetSignal {
        /// The signal.
        name: String,
        /// Its value.
        value: f64,
    },
    /// Re-reads the configuration file and applies what changed (SIGHUP).
    Reload,
    /// Stops cleanly and starts again (the panel's and cgminer's restart).
    Restart,
    /// Reboots the appliance through the init system (to start an
    /// installed update on trial). `HASHWATT_REBOOT_COMMAND` names another
    /// program to run instead of `systemctl reboot`.
    Reboot,
}

/// Why a command was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The change would make the configuration invalid.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// It names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// One of its own arguments is out of range or malformed (a pause of
    /// a year, a signal value of NaN): the caller's mistake, not the
    /// appliance's, so every front end answers it as bad input.
    #[error("{0}")]
    BadArgument(String),
    /// It cannot be applied (plugin load failure, I/O).
    #[error("{0}")]
    Failed(String),
}

/// Longest manual pause, minutes: a week. Longer is almost certainly a
/// typo, and "until resumed" exists for the open-ended case.
pub const MAX_PAUSE_MINUTES: u32 = 7 * 24 * 60;

/// A pool the appliance knows, with its driver if it runs.
struct PoolSlot {
    id: PoolId,
    entry: PoolEntry,
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Hashrate meters per device and per unit.
struct Meters {
    total: HashrateMeter,
    devices: Vec<HashrateMeter>,
    units: Vec<Vec<HashrateMeter>>,
}

/// What the pool drivers need that does not change while running.
pub(crate) struct PoolWiring {
    pub runtime: Runtime,
    pub builtin: PoolPluginPre,
    pub user_agent: String,
    /// Where pool sessions are recorded as transcripts (`run --record`).
    pub record_dir: Option<PathBuf>,
}

/// The running appliance. Shared by every front end as a [`Handle`].
pub struct Appliance {
    config: Mutex<Config>,
    config_path: Option<PathBuf>,
    /// Checks every command's configuration; keeps what it compiled.
    checker: Mutex<crate::config::Checker>,
    wiring: PoolWiring,
    miner: Arc<Miner>,
    selector: Arc<PoolSelector>,
    status: Arc<Status>,
    engine: Arc<PolicyEngine>,
    hub: Arc<SignalHub>,
    energy: Arc<EnergyMeter>,
    meters: Mutex<Meters>,
    history: Mutex<crate::history::History>,
    pools: tokio::sync::Mutex<Vec<PoolSlot>>,
    next_pool_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    started: Instant,
    restart: tokio::sync::Notify,
    /// Test connections that may run at once (each holds a plugin
    /// instance and a socket), so the panel cannot be used to open many.
    probes: tokio::sync::Semaphore,
    /// One backtest at a time: each replays up to a year through a plugin
    /// on a core the miner would otherwise use.
    backtests: tokio::sync::Semaphore,
}

/// Test connections that may run at the same time.
const MAX_CONCURRENT_PROBES: usize = 2;

/// The handle front ends hold.
pub type Handle = Arc<Appliance>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Appliance {
    /// Assembles the handle; pools start with [`Appliance::start_pools`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        config_path: Option<PathBuf>,
        wiring: PoolWiring,
        miner: Arc<Miner>,
        selector: Arc<PoolSelector>,
        status: Arc<Status>,
        engine: Arc<PolicyEngine>,
        hub: Arc<SignalHub>,
        energy: Arc<EnergyMeter>,
        shutdown: watch::Receiver<bool>,
    ) -> Handle {
        let devices = miner.devices();
        let meters = Meters {
            total: HashrateMeter::new(Duration::from_secs(60)),
            devices: devices
                .iter()
                .map(|_| HashrateMeter::new(Duration::from_secs(60)))
                .collect(),
            units: devices.iter().map(|_| Vec::new()).collect(),
        };
        let checker = crate::config::Checker::new(wiring.runtime.clone())
            .with_pool_plugin(crate::plugin::builtin::STRATUM_V1, wiring.builtin.clone());
        Arc::new(Appliance {
            config: Mutex::new(config),
            config_path,
            checker: Mutex::new(checker),
            wiring,
            miner,
            selector,
            status,
            engine,
            hub,
            energy,
            meters: Mutex::new(meters),
            history: Mutex::new(crate::history::History::default()),
            pools: tokio::sync::Mutex::new(Vec::new()),
            next_pool_id: AtomicU64::new(0),
            shutdown,
            started: Instant::now(),
            restart: tokio::sync::Notify::new(),
            probes: tokio::sync::Semaphore::new(MAX_CONCURRENT_PROBES),
            backtests: tokio::sync::Semaphore::new(1),
        })
    }

    /// Checks the configuration in force once, so the plugins the command
    /// path checks against are compiled before the first command.
    pub(crate) fn warm_checker(&self) {
        let config = self.config();
        if let Err(e) = config.validate(&self.config_name(), &mut lock(&self.checker)) {
            warn!("the running configuration no longer passes its checks: {e}");
        }
    }

    /// Resolves when a [`Command::Restart`] asks the binary to stop and
    /// start again.
    pub async fn restart_requested(&self) {
        self.restart.notified().await
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// The devices mined with.
    pub fn devices(&self) -> &Devices {
        self.miner.devices()
    }

    /// Share counters and pools.
    pub fn counters(&self) -> crate::status::Counters {
        self.status.snapshot()
    }

    /// The policy engine.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The energy meter.
    pub fn energy(&self) -> &Arc<EnergyMeter> {
        &self.energy
    }

    /// Total hashes since start, all devices.
    pub fn hashes(&self) -> u64 {
        self.devices().iter().map(|d| d.telemetry().hashes()).sum()
    }

    /// Average total hashrate over `window` (sampled every second).
    pub fn hashrate(&self, window: Duration) -> f64 {
        lock(&self.meters).total.rate(window)
    }

    /// Samples every device's counters (once a second), and feeds the
    /// energy meter with the hashrate, the verdict and the temperatures.
    pub(crate) fn sample(&self, now: Instant) {
        let telemetry: Vec<_> = self.devices().iter().map(|d| d.telemetry()).collect();
        let rate = {
            let mut m = lock(&self.meters);
            let total: u64 = telemetry.iter().map(|t| t.hashes()).sum();
            m.total.sample(now, total);
            for (i, t) in telemetry.iter().enumerate() {
                if let Some(dm) = m.devices.get_mut(i) {
                    dm.sample(now, t.hashes());
                }
                if let Some(units) = m.units.get_mut(i) {
                    units.resize_with(t.units.len(), || {
                        HashrateMeter::new(Duration::from_secs(60))
                    });
                    for (u, um) in t.units.iter().zip(units.iter_mut()) {
                        um.sample(now, u.hashes);
                    }
                }
            }
            let ten = Duration::from_secs(10);
            lock(&self.history).record(
                SystemClock.now_utc_ms(),
                m.total.rate(ten),
                m.devices.iter().map(|d| d.rate(ten)).collect(),
                &self.engine.verdict(),
            );
            m.total.rate(Duration::from_secs(2))
        };
        let temps = telemetry
            .iter()
            .flat_map(|t| t.temperatures.iter())
            .map(|t| crate::policy::Temperature {
                name: t.label.clone(),
                celsius: t.temp_c,
            })
            .collect();
        let verdict = self.engine.verdict();
        // Measured by the hardware itself only if every device measures.
        let device_power_w = telemetry
            .iter()
            .map(|t| t.power_w)
            .sum::<Option<f64>>()
            .filter(|_| !telemetry.is_empty());
        self.energy.sample(
            now,
            rate,
            device_power_w,
            &verdict.mode,
            &verdict.by,
            &verdict.reason,
            temps,
        );
    }

    /// The dashboard's charts: an hour of hashrate, a day of decisions.
    pub fn history(&self) -> crate::history::HistoryView {
        let names: Vec<String> = self
            .devices()
            .iter()
            .map(|d| d.info().name.clone())
            .collect();
        lock(&self.history).view(&names)
    }

    /// The configuration file changes are written to, if any.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// The configured pools with their ids, in priority order.
    pub async fn pools(&self) -> Vec<(PoolId, PoolEntry)> {
        self.pools
            .lock()
            .await
            .iter()
            .map(|s| (s.id, s.entry.clone()))
            .collect()
    }

    /// The one state snapshot every front end reads.
    pub fn snapshot(&self) -> Snapshot {
        let shares = self.status.snapshot();
        let energy = self.engine.status();
        let (power_w, power_source) = self.energy.power();
        let ten = Duration::from_secs(10);
        let m = lock(&self.meters);
        let devices = self
            .devices()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let t = d.telemetry();
                let counters = shares.devices.get(i);
                DeviceSnapshot {
                    info: d.info().clone(),
                    hashrate_10s_hs: m.devices.get(i).map_or(0.0, |h| h.rate(ten)),
                    unit_hashrates_10s_hs: (0..t.units.len())
                        .map(|u| {
                            m.units
                                .get(i)
                                .and_then(|v| v.get(u))
                                .map_or(0.0, |h| h.rate(ten))
                        })
                        .collect(),
                    telemetry: t,
                    solutions: counters.map_or(0, |c| c.solutions),
                    hardware_errors: counters.map_or(0, |c| c.hardware_errors),
                }
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            uptime_secs: self.started.elapsed().as_secs(),
            hashrate_10s_hs: m.total.rate(ten),
            hashrate_1m_hs: m.total.rate(Duration::from_secs(60)),
            devices,
            decision: energy.verdict.to_string(),
            efficiency_j_th: power_w
                .zip(Some(m.total.rate(ten)))
                .filter(|(_, hs)| *hs > 0.0)
                .map(|(w, hs)| w / (hs / 1e12)),
            shares,
            energy,
            power_w,
            power_source,
        }
    }

    /// Every plugin the appliance has (built in, installed, or a file the
    /// configuration names) with who signed it, what uses it, its health
    /// and its memory and call time, for the panel. Installed packages are
    /// verified again (off the async threads), so the list shows one that
    /// stopped verifying as `invalid` with the reason.
    pub async fn plugins(&self) -> Vec<crate::plugin::info::PluginInfo> {
        let config = self.config();
        let pools: Vec<(u64, Option<String>)> = self
            .pools
            .lock()
            .await
            .iter()
            .map(|s| (s.id, s.entry.plugin.clone()))
            .collect();
        let state_dir = config.state_dir.clone();
        let trust = crate::plugin::package::Trust::from_config(&config);
        let installed = tokio::task::spawn_blocking(move || {
            let trust = trust
                .map_err(|e| warn!("cannot list installed plugins: {e}"))
                .ok()?;
            crate::plugin::cli::list(&state_dir, &trust)
                .map_err(|e| warn!("cannot list installed plugins: {e}"))
                .ok()
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        let pool_status = self.status.snapshot().pools;
        let policies = self.engine.status().policies;
        let runtime = &self.wiring.runtime;
        crate::plugin::info::build(crate::plugin::info::Inputs {
            config: &config,
            pools,
            pool_status: &pool_status,
            policies: &policies,
            installed,
            stats: &|key| runtime.stats_of(key),
        })
    }

    /// Tries `pool` once, without saving or mining on it: connects through
    /// the plugin a pool entry with these settings would use, waits for
    /// subscription, authorization and the first job, then disconnects
    /// (15 s at most). Never touches the running pools or their shares.
    pub async fn test_pool(&self, pool: PoolEntry) -> PoolTest {
        self.test_pool_with(pool, ProbeDeadlines::default()).await
    }

    /// Replays a series through a configured policy or a policy plugin on
    /// simulated time (see [`crate::policy::backtest`]), with the
    /// appliance's power model and hashrate unless the request gives
    /// others. Changes nothing: the running policies never see it.
    pub async fn backtest(
        &self,
        req: crate::policy::backtest::BacktestRequest,
    ) -> Result<crate::policy::backtest::BacktestSummary, CommandError> {
        use crate::policy::backtest::{self, BacktestConfig, PriceUnit, Series};
        let Ok(_permit) = self.backtests.try_acquire() else {
            return Err(CommandError::Failed(
                "another backtest is running; try again when it has finished".into(),
            ));
        };
        let config = self.config();
        let (name, plugin, settings) = match (&req.policy, &req.plugin) {
            (Some(_), Some(_)) => {
                return Err(CommandError::BadArgument(
                    "give a configured policy or a plugin, not both".into(),
                ));
            }
            (None, None) => {
                return Err(CommandError::BadArgument(
                    "give a configured policy (policy) or a policy plugin (plugin)".into(),
                ));
            }
            (Some(p), None) => {
                let entry = config
                    .policies
                    .iter()
                    .find(|e| &e.name == p)
                    .ok_or_else(|| CommandError::NotFound(format!("no policy named {p:?}")))?;
                (
                    entry.name.clone(),
                    entry.plugin.clone(),
                    entry.config.clone(),
                )
            }
            (None, Some(p)) => (p.clone(), p.clone(), toml::Table::new()),
        };
        let settings = match &req.config {
            None => serde_json::to_string(&settings),
            Some(v) if v.is_object() => serde_json::to_string(v),
            Some(_) => {
                return Err(CommandError::BadArgument("config must be an object".into()));
            }
        }
        .map_err(|e| CommandError::BadArgument(format!("config: {e}")))?;
        let time_zone = config.energy.time_zone.clone();
        let series = Series::parse(&req.series, &time_zone)
            .map_err(|e| CommandError::BadArgument(e.to_string()))?;
        let price_unit = match req.price_unit.as_deref() {
            None => PriceUnit::PerKwh,
            Some(u) => <PriceUnit as clap::ValueEnum>::from_str(u, false).map_err(|_| {
                CommandError::BadArgument(format!(
                    "price_unit must be per-kwh or per-mwh, not {u:?}"
                ))
            })?,
        };
        let hashrate_hs = match req.terahash {
            Some(th) => th * 1e12,
            None => {
                let now = self.hashrate(Duration::from_secs(60));
                if now <= 0.0 {
                    return Err(CommandError::BadArgument(
                        "the appliance is not hashing now: give its hashrate (terahash)".into(),
                    ));
                }
                now
            }
        };
        let cfg = BacktestConfig {
            full_w: req.watts.unwrap_or(config.energy.full_load_w),
            idle_w: req.idle_watts.unwrap_or(config.energy.idle_w),
            hashrate_hs,
            price_column: series.column_or(req.price_column.as_deref(), "price"),
            price_unit,
            co2_column: series.column_or(None, "co2"),
            co2_g_per_kwh: req.co2.or(config.energy.co2_g_per_kwh),
            hashprice: req.hashprice,
            ..BacktestConfig::new(&time_zone)
        };
        let runtime = self.wiring.runtime.clone();
        let job = move || -> Result<_, CommandError> {
            let (wasm, _) = crate::plugin::loader::policy_wasm(&config, &plugin)
                .map_err(|e| CommandError::NotFound(format!("policy plugin {plugin:?}: {e:#}")))?;
            let pre = crate::plugin::policy::PolicyPluginPre::new(&runtime, &name, &wasm)
                .map_err(|e| CommandError::Failed(format!("cannot load {plugin}: {e:#}")))?;
            let mut limits = crate::plugin::policy::PolicyLimits::default();
            limits.call.memory_bytes = config.plugin_limits.memory_mib << 20;
            // The appliance's budget is for a live call on an idle core;
            // a replay shares the core with the miner, so it gets the
            // offline tools' budget and counts slow calls, not failures.
            limits.call.call_timeout =
                Duration::from_millis(config.plugin_limits.call_timeout_ms.max(1000));
            let factory = Arc::new(crate::plugin::policy::PolicyPluginFactory::new(
                pre, &settings, limits,
            ));
            // The replay's engine logs each verdict as the live one does; a
            // year of them is not the appliance's log (the summary counts
            // failures).
            let quiet = tracing::Dispatch::none();
            let report = tracing::dispatcher::with_default(&quiet, || {
                backtest::run(&name, factory, &series, &cfg)
            })
            .map_err(|e| match e {
                backtest::BacktestError::Policy(_) => CommandError::Failed(e.to_string()),
                _ => CommandError::BadArgument(e.to_string()),
            })?;
            Ok(report.summary(&cfg))
        };
        let summary = tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| CommandError::Failed(format!("the backtest stopped: {e}")))??;
        info!(
            policy = summary.policy,
            rows = summary.rows,
            elapsed_ms = summary.elapsed_ms,
            "backtest run"
        );
        Ok(summary)
    }

    /// [`Self::test_pool`] with the step deadlines given (tests use short ones).
    pub async fn test_pool_with(&self, pool: PoolEntry, deadlines: ProbeDeadlines) -> PoolTest {
        let Ok(_permit) = self.probes.try_acquire() else {
            return PoolTest::refused(
                "other test connections are running; try again when they have finished",
            );
        };
        if pool.user.trim().is_empty() {
            return PoolTest::refused("a worker name (user) is needed to test a pool");
        }
        let config = self.config();
        let loaded = crate::plugin::call_blocking(|| self.prepare_pool(&config, &pool));
        let (plugin, label) = match loaded {
            Ok(p) => p,
            Err(e) => return PoolTest::refused(format!("cannot load the pool's plugin: {e:#}")),
        };
        let schemes = plugin.url_schemes().unwrap_or_default();
        if !schemes.contains(&pool.url.scheme) {
            return PoolTest::refused(format!(
                "plugin {label} does not speak {}:// (it speaks {})",
                pool.url.scheme,
                schemes.join(", ")
            ));
        }
        if !plugin.allows_endpoint(&pool.url.host, pool.url.port) {
            return PoolTest::refused(format!(
                "plugin {label} may not connect to {}:{} (its manifest's pool_endpoints)",
                pool.url.host, pool.url.port
            ));
        }
        let limits = Limits {
            call_timeout: Duration::from_millis(config.plugin_limits.call_timeout_ms),
            memory_bytes: config.plugin_limits.memory_mib << 20,
            ..Limits::default()
        };
        let settings = crate::plugin::pool::settings_map(&pool.settings);
        let json = crate::plugin::pool::settings_json(&settings);
        match plugin.validate_settings(&json, limits.clone()) {
            Ok(Ok(())) => {}
            Ok(Err(m)) => {
                return PoolTest::refused(format!("plugin {label} refused the settings: {m}"));
            }
            Err(e) => return PoolTest::refused(format!("plugin {label} failed: {e}")),
        }
        let pool_config = crate::plugin::pool::PoolConfig {
            url: pool.url.url.clone(),
            host: pool.url.host.clone(),
            port: pool.url.port,
            user: pool.user.clone(),
            password: pool.password.clone(),
            user_agent: self.wiring.user_agent.clone(),
            version_rolling: self.miner.can_roll_version(),
            settings,
        };
        // Accounted apart: the panel's plugin figures are the running pools'.
        let plugin = plugin.with_stats(Arc::default());
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            test = crate::pool::probe::probe(&plugin, pool_config, limits, deadlines) => test,
            _ = shutdown.wait_for(|s| *s) => PoolTest::refused("the appliance is shutting down"),
        }
    }

    /// Starts a driver for every configured pool.
    pub(crate) async fn start_pools(&self) -> anyhow::Result<()> {
        let config = self.config();
        let mut slots = Vec::new();
        for (i, entry) in config.pools.iter().enumerate() {
            let id = self.next_pool_id.fetch_add(1, Ordering::Relaxed);
            let plugin = self
                .prepare_pool(&config, entry)
                .map_err(|e| anyhow::anyhow!("pool {} (pools[{i}]): {e}", entry.url.url))?;
            slots.push(self.spawn_pool(&config, id, entry.clone(), plugin));
        }
        *self.pools.lock().await = slots;
        self.publish_pools(&self.pools.lock().await);
        Ok(())
    }

    /// Loads the plugin a pool needs (before anything is persisted).
    fn prepare_pool(
        &self,
        config: &Config,
        entry: &PoolEntry,
    ) -> anyhow::Result<(PoolPluginPre, String)> {
        match &entry.plugin {
            None => Ok((
                self.wiring.builtin.clone(),
                "stratum-v1 (built in)".to_string(),
            )),
            Some(spec) => {
                crate::plugin::loader::load_pool_plugin(&self.wiring.runtime, config, entry, spec)
            }
        }
    }

    /// Starts pool `id`'s driver (and its plugin watcher), unless disabled.
    fn spawn_pool(
        &self,
        config: &Config,
        id: PoolId,
        entry: PoolEntry,
        (plugin, label): (PoolPluginPre, String),
    ) -> PoolSlot {
        self.miner.add_pool(id);
        self.status.ensure_pool(id, &entry.url.url, &entry.user);
        if !entry.enabled {
            return PoolSlot {
                id,
                entry,
                stop: None,
                tasks: Vec::new(),
            };
        }
        let (stop, stop_rx) = watch::channel(false);
        // The appliance's shutdown stops every pool too.
        let mut global = self.shutdown.clone();
        let stop_on_shutdown = stop.clone();
        let mut tasks = vec![tokio::spawn(async move {
            let _ = global.wait_for(|s| *s).await;
            let _ = stop_on_shutdown.send(true);
        })];
        let (update_tx, updates) = watch::channel(plugin.clone());
        if let Some(name) = entry
            .plugin
            .as_deref()
            .filter(|s| crate::plugin::loader::is_package_name(s))
        {
            tasks.push(tokio::spawn(crate::plugin::loader::watch_installed(
                self.wiring.runtime.clone(),
                config.clone(),
                entry.clone(),
                id,
                name.to_string(),
                update_tx,
                self.status.clone(),
                stop_rx.clone(),
            )));
        } else {
            // Built-in plugins never change while running.
            tasks.push(tokio::spawn(async move {
                let _keep = update_tx;
                std::future::pending::<()>().await
            }));
        }
        let driver = PoolDriver {
            id,
            entry: entry.clone(),
            selector: self.selector.clone(),
            plugin,
            updates,
            limits: Limits {
                call_timeout: Duration::from_millis(config.plugin_limits.call_timeout_ms),
                memory_bytes: config.plugin_limits.memory_mib << 20,
                ..Limits::default()
            },
            miner: self.miner.clone(),
            status: self.status.clone(),
            allow_redirect: config.allow_pool_redirect,
            user_agent: self.wiring.user_agent.clone(),
            record_dir: self.wiring.record_dir.clone(),
        };
        tasks.insert(0, tokio::spawn(driver.run(stop_rx)));
        self.status.update_pool(id, |s| s.plugin = label);
        PoolSlot {
            id,
            entry,
            stop: Some(stop),
            tasks,
        }
    }

    /// Stops a pool's driver and waits for it (the pool stays known).
    async fn stop_pool(&self, slot: &mut PoolSlot) {
        if let Some(stop) = slot.stop.take() {
            let _ = stop.send(true);
        }
        let mut tasks = std::mem::take(&mut slot.tasks);
        if let Some(driver) = (!tasks.is_empty()).then(|| tasks.remove(0)) {
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        }
        for t in tasks {
            t.abort();
        }
        self.selector.set_healthy(slot.id, false);
        self.miner.clear(slot.id);
    }

    /// Shows the pools in their order and hands the enabled ones to the selector.
    fn publish_pools(&self, slots: &[PoolSlot]) {
        let shown: Vec<(u64, String, String)> = slots
            .iter()
            .map(|s| (s.id, s.entry.url.url.clone(), s.entry.user.clone()))
            .collect();
        self.status.set_pools(&shown);
        for s in slots {
            if !s.entry.enabled {
                self.status.update_pool(s.id, |p| p.state = PoolState::Off);
            } else if p_state_off(&self.status, s.id) {
                self.status
                    .update_pool(s.id, |p| p.state = PoolState::Connecting);
            }
        }
        self.selector.set_order(
            slots
                .iter()
                .filter(|s| s.entry.enabled)
                .map(|s| s.id)
                .collect(),
        );
    }

    /// Writes `config` to the configuration file, atomically.
    fn persist(&self, config: &Config) -> Result<(), CommandError> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let text = config
            .to_toml()
            .map_err(|e| CommandError::Failed(format!("cannot write the configuration: {e}")))?;
        let text = format!(
            "# Written by hashwatt; changes made through the panel, API or commands land here.\n{text}"
        );
        hashwatt_state::atomic_write(path, text.as_bytes())
            .map_err(|e| CommandError::Failed(format!("cannot save {}: {e}", path.display())))
    }

    fn config_name(&self) -> PathBuf {
        self.config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("(configuration)"))
    }

    /// Validates, applies and persists one command. Commands run one at a
    /// time; a refused command changes nothing.
    pub async fn execute(&self, command: Command) -> Result<String, CommandError> {
        let mut slots = self.pools.lock().await;
        let current = self.config();
        let mut next = current.clone();
        let now = SystemClock.now_utc_ms();
        match command {
            Command::Pause { minutes } => {
                if let Some(m) = minutes
                    && !(1..=MAX_PAUSE_MINUTES).contains(&m)
                {
                    return Err(CommandError::BadArgument(format!(
                        "minutes must be in 1..={MAX_PAUSE_MINUTES} (a week), not {m}; \
                         give none to pause until resumed"
                    )));
                }
                self.engine
                    .set_override(Some(Override::pause(now, minutes)));
                return Ok(self.engine.verdict().to_string());
            }
            Command::Resume => {
                self.engine.set_override(None);
                return Ok(self.engine.verdict().to_string());
            }
            Command::SetSignal { name, value } => {
                if !value.is_finite() {
                    return Err(CommandError::BadArgument(format!(
                        "signal {name}: a value must be a finite number, not {value}"
                    )));
                }
                self.hub
                    .set(&name, value)
                    .map_err(|e| CommandError::NotFound(e.to_string()))?;
                return Ok(format!("{name} = {value}"));
            }
            Command::InstallPlugin { dir } => {
                let trust = crate::plugin::package::Trust::from_config(&current)
                    .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                let dir2 = dir.clone();
                let state_dir = current.state_dir.clone();
                let installed = tokio::task::spawn_blocking(move || {
                    crate::plugin::cli::install(&dir2, &state_dir, &trust)
                })
                .await
                .map_err(|e| CommandError::Failed(e.to_string()))?
                .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                let m = &installed.package.manifest;
                return Ok(format!("installed {} {} ({})", m.name, m.version, m.kind));
            }
            Command::InstallUpdate { bundle } => {
                let result = tokio::task::spawn_blocking(move || {
                    crate::update::Rauc::default().install(&bundle, env!("CARGO_PKG_VERSION"))
                })
                .await
                .map_err(|e| CommandError::Failed(e.to_string()))?;
                return match result {
                    Ok(m) => {
                        tracing::info!("{m}");
                        Ok(m)
                    }
                    Err(e @ crate::update::UpdateError::Refused(_)) => {
                        tracing::warn!("{e}");
                        Err(CommandError::BadArgument(e.to_string()))
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        Err(CommandError::Failed(e.to_string()))
                    }
                };
            }
            Command::InstallPluginPackage { bytes } => {
                let trust = crate::plugin::package::Trust::from_config(&current)
                    .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                let state_dir = current.state_dir.clone();
                let installed = tokio::task::spawn_blocking(move || {
                    crate::plugin::cli::install_archive(&bytes, &state_dir, &trust)
                })
                .await
                .map_err(|e| CommandError::Failed(e.to_string()))?
                .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                let m = &installed.package.manifest;
                return Ok(format!("installed {} {} ({})", m.name, m.version, m.kind));
            }
            Command::RemovePlugin { name } => {
                let used = current
                    .pools
                    .iter()
                    .any(|p| p.plugin.as_deref() == Some(&name))
                    || current.policies.iter().any(|p| p.plugin == name);
                if used {
                    return Err(CommandError::Failed(format!(
                        "plugin {name} is in use; remove or change the pools and policies that use it first"
                    )));
                }
                crate::plugin::cli::remove(&current.state_dir, &name)
                    .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                return Ok(format!("removed {name}"));
            }
            Command::Reboot => {
                info!("reboot requested");
                let out = tokio::task::spawn_blocking(|| {
                    match std::env::var_os("HASHWATT_REBOOT_COMMAND") {
                        Some(program) => std::process::Command::new(program).output(),
                        None => std::process::Command::new("systemctl")
                            .arg("reboot")
                            .output(),
                    }
                })
                .await
                .map_err(|e| CommandError::Failed(e.to_string()))?;
                return match out {
                    Ok(o) if o.status.success() => Ok("rebooting".into()),
                    Ok(o) => Err(CommandError::Failed(format!(
                        "cannot reboot: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))),
                    Err(e) => Err(CommandError::Failed(format!("cannot reboot: {e}"))),
                };
            }
            Command::Restart => {
                info!("restart requested");
                self.restart.notify_one();
                return Ok("restarting".into());
            }
            Command::Reload => {
                let Some(path) = &self.config_path else {
                    return Err(CommandError::Failed(
                        "this appliance runs without a configuration file".into(),
                    ));
                };
                let text = crate::config::read(path)?;
                next = Config::parse(path, &text)?;
                crate::plugin::call_blocking(|| lock(&self.checker).check(&next, path, &text))?;
                let restart = restart_needed(&current, &next);
                if !restart.is_empty() {
                    warn!(
                        "configuration reloaded; {} only take effect after a restart",
                        restart.join(", ")
                    );
                }
                // Pools keep their identity (and counters) where URL and user match.
                let order: Vec<Option<PoolId>> = next
                    .pools
                    .iter()
                    .map(|p| {
                        slots
                            .iter()
                            .find(|s| s.entry.url.url == p.url.url && s.entry.user == p.user)
                            .map(|s| s.id)
                    })
                    .collect();
                self.apply_pools(&mut slots, &next, order).await?;
                self.apply_policies(&current, &next)?;
                *lock(&self.config) = next;
                info!("configuration reloaded");
                return Ok("configuration reloaded".into());
            }
            Command::AddPool { pool, position } => {
                let at = position.unwrap_or(next.pools.len()).min(next.pools.len());
                next.pools.insert(at, pool);
            }
            Command::EditPool { id, pool } => {
                let i = position_of(&slots, id)?;
                next.pools[i] = pool;
            }
            Command::MovePool { id, position } => {
                let i = position_of(&slots, id)?;
                let p = next.pools.remove(i);
                let to = position.min(next.pools.len());
                next.pools.insert(to, p);
            }
            Command::SetPoolEnabled { id, enabled } => {
                let i = position_of(&slots, id)?;
                next.pools[i].enabled = enabled;
            }
            Command::RemovePool { id } => {
                let i = position_of(&slots, id)?;
                next.pools.remove(i);
            }
            Command::AddPolicy(entry) => next.policies.push(entry),
            Command::SetPolicyEnabled { name, enabled } => {
                policy_mut(&mut next, &name)?.enabled = enabled;
            }
            Command::ConfigurePolicy { name, config } => {
                policy_mut(&mut next, &name)?.config = config;
            }
            Command::RemovePolicy { name } => {
                let before = next.policies.len();
                next.policies.retain(|p| p.name != name);
                if next.policies.len() == before {
                    return Err(CommandError::NotFound(format!(
                        "no policy is named {name:?}"
                    )));
                }
            }
        }
        // The same checks as a file at start, through the plugins too
        // (compiled once, then only instantiated), off the async threads.
        let name = self.config_name();
        crate::plugin::call_blocking(|| next.validate(&name, &mut lock(&self.checker)))?;
        // Which running pool each configured pool is (None: new), so the
        // drivers of pools that stay keep running.
        let order = pool_identities(&slots, &current, &next);
        // Plugins of new or changed pools load before anything is written.
        for (entry, id) in next.pools.iter().zip(&order) {
            let unchanged = id
                .and_then(|id| slots.iter().find(|s| s.id == id))
                .is_some_and(|s| same_pool(&s.entry, entry));
            if !unchanged && entry.enabled {
                self.prepare_pool(&next, entry)
                    .map_err(|e| CommandError::Failed(format!("pool {}: {e:#}", entry.url.url)))?;
            }
        }
        self.persist(&next)?;
        self.apply_pools(&mut slots, &next, order).await?;
        self.apply_policies(&current, &next)?;
        *lock(&self.config) = next;
        Ok("applied".into())
    }

    /// Brings the running pools in line with `next.pools`; `order[i]` is
    /// the running pool that `next.pools[i]` is (None: a new pool).
    async fn apply_pools(
        &self,
        slots: &mut Vec<PoolSlot>,
        next: &Config,
        order: Vec<Option<PoolId>>,
    ) -> Result<(), CommandError> {
        let mut old: HashMap<PoolId, PoolSlot> = slots.drain(..).map(|s| (s.id, s)).collect();
        let mut new_slots = Vec::with_capacity(next.pools.len());
        for (entry, id) in next.pools.iter().zip(order) {
            let kept = id.and_then(|id| old.remove(&id));
            match kept {
                Some(slot) if same_pool(&slot.entry, entry) => new_slots.push(slot),
                Some(mut slot) => {
                    self.stop_pool(&mut slot).await;
                    let plugin = self
                        .prepare_pool(next, entry)
                        .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                    new_slots.push(self.spawn_pool(next, slot.id, entry.clone(), plugin));
                }
                None => {
                    let id = self.next_pool_id.fetch_add(1, Ordering::Relaxed);
                    let plugin = self
                        .prepare_pool(next, entry)
                        .map_err(|e| CommandError::Failed(format!("{e:#}")))?;
                    new_slots.push(self.spawn_pool(next, id, entry.clone(), plugin));
                }
            }
        }
        for (_, mut gone) in old {
            self.stop_pool(&mut gone).await;
            self.miner.remove_pool(gone.id);
            self.selector.forget(gone.id);
        }
        *slots = new_slots;
        self.publish_pools(slots);
        Ok(())
    }

    /// Brings the policy engine in line with `next.policies`.
    fn apply_policies(&self, current: &Config, next: &Config) -> Result<(), CommandError> {
        for old in &current.policies {
            match next.policies.iter().find(|p| p.name == old.name) {
                None => {
                    let _ = self.engine.remove_policy(&old.name);
                }
                Some(new)
                    if new.plugin != old.plugin
                        || new.config != old.config
                        || new.fail_safe != old.fail_safe =>
                {
                    let _ = self.engine.remove_policy(&old.name);
                    crate::plugin::loader::add_policy(
                        &self.wiring.runtime,
                        next,
                        &self.engine,
                        new,
                    )
                    .map_err(|e| CommandError::Failed(format!("policy {}: {e:#}", new.name)))?;
                }
                Some(new) => {
                    if new.enabled != old.enabled {
                        let _ = self.engine.set_enabled(&new.name, new.enabled);
                    }
                }
            }
        }
        for new in &next.policies {
            if !current.policies.iter().any(|p| p.name == new.name) {
                crate::plugin::loader::add_policy(&self.wiring.runtime, next, &self.engine, new)
                    .map_err(|e| CommandError::Failed(format!("policy {}: {e:#}", new.name)))?;
            }
        }
        Ok(())
    }

    /// Stops every pool driver (shutdown).
    pub(crate) async fn stop_all(&self) {
        // Pools going away from now on are the shutdown, not a failure.
        self.selector.stopping();
        let mut slots = self.pools.lock().await;
        for slot in slots.iter_mut() {
            self.stop_pool(slot).await;
        }
    }
}

fn p_state_off(status: &Status, id: PoolId) -> bool {
    status
        .snapshot()
        .pools
        .iter()
        .any(|p| p.id == id && p.state == PoolState::Off)
}

/// Whether two pool entries need no reconnect between them.
fn same_pool(a: &PoolEntry, b: &PoolEntry) -> bool {
    a.url == b.url
        && a.user == b.user
        && a.password == b.password
        && a.plugin == b.plugin
        && a.enabled == b.enabled
}

fn position_of(slots: &[PoolSlot], id: PoolId) -> Result<usize, CommandError> {
    slots
        .iter()
        .position(|s| s.id == id)
        .ok_or_else(|| CommandError::NotFound(format!("no pool has id {id}")))
}

fn policy_mut<'a>(config: &'a mut Config, name: &str) -> Result<&'a mut PolicyEntry, CommandError> {
    config
        .policies
        .iter_mut()
        .find(|p| p.name == name)
        .ok_or_else(|| CommandError::NotFound(format!("no policy is named {name:?}")))
}

/// For each pool of `next`, the running pool it is: matched by position
/// among the pools of `current` that stay, in order.
fn pool_identities(slots: &[PoolSlot], current: &Config, next: &Config) -> Vec<Option<PoolId>> {
    let mut used = vec![false; slots.len()];
    let mut out = Vec::with_capacity(next.pools.len());
    // First exact matches (moved, untouched), then same URL+user (edited).
    let mut pending = Vec::new();
    for (i, p) in next.pools.iter().enumerate() {
        let hit = slots
            .iter()
            .enumerate()
            .find(|(j, s)| !used[*j] && same_pool(&s.entry, p))
            .map(|(j, _)| j);
        match hit {
            Some(j) => {
                used[j] = true;
                out.push(Some(slots[j].id));
            }
            None => {
                out.push(None);
                pending.push(i);
            }
        }
    }
    // An edit keeps the pool's identity: the one unmatched old pool at the
    // same place (a single edit changes exactly one entry).
    let unmatched: Vec<usize> = (0..slots.len()).filter(|j| !used[*j]).collect();
    if pending.len() == 1 && unmatched.len() == 1 && current.pools.len() == next.pools.len() {
        out[pending[0]] = Some(slots[unmatched[0]].id);
    }
    out
}

/// Settings a reload cannot apply while running.
fn restart_needed(a: &Config, b: &Config) -> Vec<&'static str> {
    let changed = [
        ("threads", a.threads != b.threads),
        ("backend", a.backend != b.backend),
        ("state_dir", a.state_dir != b.state_dir),
        ("[web]", a.web != b.web),
        ("[cgminer]", a.cgminer != b.cgminer),
        ("[esp_miner]", a.esp_miner != b.esp_miner),
        ("[energy]", a.energy != b.energy),
        ("[[signals]]", a.signals != b.signals),
        ("plugin_limits", a.plugin_limits != b.plugin_limits),
        ("failback_secs", a.failback_secs != b.failback_secs),
    ];
    changed
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}
