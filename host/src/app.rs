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

use crate::config::Config;
use crate::control::{Appliance, Command, CommandError, Handle, PoolWiring};
use crate::device::cpu::CpuDevice;
use crate::device::{Control, Devices};
use crate::energy::EnergyMeter;
use crate::miner::Miner;
use crate::plugin::cli as plugin_cli;
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{Runtime, builtin};
use crate::policy::Mode;
use crate::policy::actuator::{Actuator, PowerModel};
use crate::policy::arbiter::{Override, Verdict};
use crate::policy::clock::{Clock, SystemClock};
use crate::policy::engine::{EngineConfig, EngineStatus, PolicyEngine};
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
    /// Record every pool plugin session as a transcript in this directory
    /// (`hashwatt run --record`; passwords redacted).
    pub record_dir: Option<PathBuf>,
}

/// A running appliance.
pub struct App {
    handle: Handle,
    api_addr: Option<std::net::SocketAddr>,
    web_auth: Option<std::sync::Arc<crate::web::auth::Auth>>,
    redirect_addr: Option<std::net::SocketAddr>,
    esp_miner_addr: Option<std::net::SocketAddr>,
    cgminer_addr: Option<std::net::SocketAddr>,
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
                let mut devices: Devices = Vec::new();
                for (i, entry) in config.asic.iter().enumerate() {
                    let Some(settings) =
                        crate::device::asic::settings_from_config(entry, i, &config.state_dir)
                    else {
                        anyhow::bail!("asic[{i}]: unknown model {:?}", entry.model);
                    };
                    let board = crate::device::asic::hwmon_board(entry, &settings.name)
                        .with_context(|| {
                            format!(
                                "asic[{i}] ({}): cannot open the board's parts",
                                settings.name
                            )
                        })?;
                    info!(device = %settings.name, port = %entry.port.display(), model = %entry.model, chips = entry.chips, "ASIC chain configured");
                    devices.push(crate::device::asic::AsicDevice::start(settings, board));
                }
                if config.cpu_mining.unwrap_or(config.asic.is_empty()) {
                    let backend_name =
                        (config.backend != "auto").then_some(config.backend.as_str());
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
                    devices.push(cpu);
                    (devices, name, rate)
                } else {
                    (devices, "asic", 1e6)
                }
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
        let builtin_plugin = PoolPluginPre::from_component(&runtime, "stratum-v1", &component)?
            .with_stats(runtime.stats_for(builtin::STRATUM_V1_STATS_KEY));

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
            crate::plugin::loader::add_policy(&runtime, &config, &engine, entry)
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
                record_dir: options.record_dir,
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
        // Compile what the command path checks against now, off the async
        // threads, so the first command does not pay for it.
        let warm = handle.clone();
        tokio::task::spawn_blocking(move || warm.warm_checker());
        tasks.push(tokio::spawn(select_loop(selector, shutdown_rx.clone())));
        tasks.push(tokio::spawn(sample_loop(
            handle.clone(),
            shutdown_rx.clone(),
        )));

        let (api_addr, web_auth, redirect_addr) = match config.web.listen {
            Some(addr) => {
                let started =
                    crate::web::start(addr, &config.web, handle.clone(), shutdown_rx.clone())
                        .await
                        .with_context(|| format!("cannot listen for the panel on {addr}"))?;
                let scheme = if config.web.tls { "https" } else { "http" };
                info!(bound = %started.addr, "panel and API listening on {scheme}://{}/", started.addr);
                if let Some(fp) = &started.fingerprint {
                    info!("panel certificate SHA-256 fingerprint {fp}");
                    println!("hashwatt: panel certificate SHA-256 fingerprint {fp}");
                }
                if let Some(r) = started.redirect_addr {
                    info!(bound = %r, "plain HTTP redirects to the panel");
                }
                if let Some(token) = started.auth.setup_token() {
                    info!("no admin password yet: open the panel and enter setup token {token}");
                    println!(
                        "hashwatt: no admin password yet: open {scheme}://{}/ and enter setup token {token}",
                        started.addr
                    );
                }
                tasks.extend(started.tasks);
                (
                    Some(started.addr),
                    Some(started.auth),
                    started.redirect_addr,
                )
            }
            None => (None, None, None),
        };

        // --- ESP-Miner-compatible surface (opt-in): its own plain-HTTP listener.
        let esp_miner_addr = if config.esp_miner.enabled {
            let s = &config.esp_miner;
            let limiter = crate::web::limits::ConnLimiter::new(
                config.web.max_connections,
                config.web.max_connections_per_client,
            );
            let (bound, task) = crate::web::esp_miner::start(
                s.listen,
                handle.clone(),
                s.writes,
                limiter,
                shutdown_rx.clone(),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot listen for the ESP-Miner-compatible API on {}",
                    s.listen
                )
            })?;
            info!(%bound, writes = s.writes, "ESP-Miner-compatible API listening (GET /api/system/info)");
            tasks.push(task);
            Some(bound)
        } else {
            None
        };
        // --- end of the ESP-Miner-compatible surface.

        // --- cgminer-compatible API (opt-in): TCP 4028, its own listener.
        let cgminer_addr = if config.cgminer.enabled {
            let s = &config.cgminer;
            let (bound, task) =
                crate::web::cgminer::start(s.listen, s, handle.clone(), shutdown_rx.clone())
                    .await
                    .with_context(|| {
                        format!(
                            "cannot listen for the cgminer-compatible API on {}",
                            s.listen
                        )
                    })?;
            info!(%bound, privileged = s.privileged.len(), "cgminer-compatible API listening");
            tasks.push(task);
            Some(bound)
        } else {
            None
        };
        // --- end of the cgminer-compatible API.

        // The answer an A/B update's boot check reads.
        tasks.push(tokio::spawn(crate::health::publish(
            handle.clone(),
            config.state_dir.clone(),
            api_addr.is_some(),
            config.web.listen.is_some(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(report(
            handle.clone(),
            Duration::from_secs(config.status_interval_secs),
            shutdown_rx,
        )));
        Ok(App {
            handle,
            api_addr,
            web_auth,
            redirect_addr,
            esp_miner_addr,
            cgminer_addr,
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

    /// The plain-HTTP listener that redirects to the HTTPS panel, if any.
    pub fn redirect_addr(&self) -> Option<std::net::SocketAddr> {
        self.redirect_addr
    }

    /// The panel's accounts (setup token, API tokens), when it runs.
    pub fn web_auth(&self) -> Option<&std::sync::Arc<crate::web::auth::Auth>> {
        self.web_auth.as_ref()
    }

    /// Where the ESP-Miner-compatible API listens, if enabled.
    pub fn esp_miner_addr(&self) -> Option<std::net::SocketAddr> {
        self.esp_miner_addr
    }

    /// Where the cgminer-compatible API listens, if enabled.
    pub fn cgminer_addr(&self) -> Option<std::net::SocketAddr> {
        self.cgminer_addr
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
        // A device that is not hashing as it should says why, in the line.
        let problems: String = s
            .device_problems()
            .iter()
            .map(|p| format!(" | {p}"))
            .collect();
        info!(
            target: "hashwatt::status",
            "hashrate {} (10s) {} (1m) | accepted {} rejected {} stale {} | pool {} | {} | power {} | uptime {}s{}",
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
            problems,
        );
    }
}
