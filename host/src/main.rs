//! The `hashwatt` command: runs the appliance, the development pool, hashing
//! tools and benchmarks. It only parses arguments and wires library parts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hashwatt::app::{App, StartOptions};
use hashwatt::config::{self, Config, ConfigError, PoolEntry};
use hashwatt::control::Command as ControlCommand;
use tracing::{error, info};

#[derive(Parser)]
#[command(name = "hashwatt", version, about = "Bitcoin mining appliance runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: mine on the configured pools.
    Run(RunArgs),
    /// Hashing tools.
    #[command(subcommand)]
    Hash(HashCommand),
    /// Run a development Stratum V1 pool (for demos and tests).
    Devpool(DevpoolArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Energy accounting.
    #[command(subcommand)]
    Energy(EnergyCommand),
    /// Energy policies: try one offline before enabling it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Plugin packages: signing keys, signing, install, list, remove.
    #[command(subcommand)]
    Plugin(hashwatt::plugin::cli::PluginCommand),
    /// Whether the running appliance is healthy (panel up, devices hashing
    /// or saying why not, a pool connected or the reason known): exit
    /// status 0 if so. The boot check of an A/B update runs it.
    Health(HealthArgs),
    /// A/B updates of the appliance image (through RAUC).
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Emulate a BM13xx chip chain on a pseudo-terminal (for trying the
    /// ASIC driver without hardware): prints the port to configure.
    AsicEmulator(AsicEmulatorArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Replay a time series (prices, surplus, grid signals) through a
    /// policy on simulated time: hours mined, kWh, cost, CO₂, and what it
    /// forgoes against mining non-stop, with a chart.
    Backtest(hashwatt::policy::backtest::cli::BacktestArgs),
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Both root slots: versions, which is booted, good or bad, and a
    /// rolled-back update with the reason.
    Status {
        /// Configuration file (for the failed trial boots recorded in its
        /// state directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Verify a signed bundle and install it into the inactive slot.
    Install {
        /// The `.raucb` bundle.
        file: PathBuf,
    },
}

#[derive(Args)]
struct HealthArgs {
    /// Configuration file (for the state directory).
    #[arg(long, short)]
    config: PathBuf,
    /// Wait up to this many seconds for a healthy answer.
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

#[derive(Args)]
struct AsicEmulatorArgs {
    /// Chip model: BM1366, BM1368 or BM1370.
    #[arg(long, default_value = "BM1370")]
    model: hashwatt_asic::model::Model,
    /// Chips on the chain.
    #[arg(long, default_value_t = 1)]
    chips: usize,
    /// Whole-chain hashrate at the stock clock, H/s (the CPU really
    /// hashes this much).
    #[arg(long, default_value_t = 2.0e6)]
    hashrate: f64,
    /// Difficulty the emulated chips report nonces at (scaled down from
    /// the real chips' 256 so a CPU can find them).
    #[arg(long, default_value_t = 1.0 / 1_048_576.0)]
    difficulty: f64,
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (TOML).
    #[arg(long, short, required_unless_present = "demo")]
    config: Option<PathBuf>,
    /// Start a development pool on loopback and mine against it.
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// With --demo: mine with an emulated BM1370 chain of this many chips
    /// (on a pseudo-terminal, through the real ASIC driver) instead of the
    /// CPU.
    #[arg(long, requires = "demo", value_parser = clap::value_parser!(u16).range(1..=16))]
    asic_chips: Option<u16>,
    /// Record every pool session (what the pool plugin was given and
    /// answered) as a transcript in this directory, passwords redacted,
    /// for `hashwatt plugin test --transcript`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
}

#[derive(Subcommand)]
enum HashCommand {
    /// Print the block hash (display order) of an 80-byte header given in hex.
    Header {
        /// 160 hex digits.
        header: String,
    },
    /// Print the nonces (8 hex digits, as Stratum submits them) whose hash meets a target.
    Scan {
        /// 80-byte header in hex (its nonce field is ignored).
        #[arg(long)]
        header: String,
        /// First nonce.
        #[arg(long, default_value_t = 0)]
        start: u32,
        /// Number of nonces.
        #[arg(long)]
        count: u64,
        /// 256-bit target, 64 hex digits, big-endian (display order).
        #[arg(long)]
        target: String,
        /// Backend to use (default: calibrate).
        #[arg(long)]
        backend: Option<String>,
    },
}

#[derive(Args)]
struct DevpoolArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3333")]
    listen: SocketAddr,
    /// Share difficulty.
    #[arg(long)]
    difficulty: Option<f64>,
    /// Network target of the jobs as compact nbits in hex (`207fffff`: regtest).
    #[arg(long, value_parser = parse_nbits)]
    nbits: Option<u32>,
}

fn parse_nbits(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| format!("{s:?} is not 8 hex digits (e.g. 207fffff)"))
}

#[derive(Subcommand)]
enum EnergyCommand {
    /// kWh, average W, J/TH, hashes per kWh, CO₂ and time paused per policy.
    Report {
        /// Configuration file (for the state dir and time zone).
        #[arg(long, short)]
        config: PathBuf,
        /// `day` or `month` (the current one).
        #[arg(long, default_value = "day")]
        period: hashwatt_energy::Period,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Hashrate per backend, single- and all-thread, and work hand-off latency.
    Hash {
        /// Backend name, or `all`.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Threads for the all-thread figure (0 = every core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Instead: what each mining shortcut (midstate, precomputed
        /// schedule, constant padding, early exit) gains on the 4-lane
        /// SHA-NI kernel, one thread.
        #[arg(long, conflicts_with_all = ["backend", "threads"])]
        ablation: bool,
    },
    /// The panel and APIs under load: dashboard size, REST latency with
    /// many clients, `/metrics` render time, hashrate cost of live streams.
    Api {
        /// Concurrent REST clients and event streams.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Requests per REST client.
        #[arg(long, default_value_t = 50)]
        requests: usize,
        /// Seconds per hashrate measurement.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Plugin call overhead, notify-to-work latency, instantiation, cached load, RSS.
    Plugin {
        /// Calls per measurement.
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
    },
    /// The ASIC device against the chip emulator on a pty: solution rate
    /// vs the configured rate, nonce-to-solution latency, host CPU.
    Asic {
        /// Chip model emulated.
        #[arg(long, default_value = "BM1370")]
        model: hashwatt_asic::model::Model,
        /// Chips on the chain.
        #[arg(long, default_value_t = 4)]
        chips: usize,
        /// Nonces per second the emulator delivers.
        #[arg(long, default_value_t = 400.0)]
        rate: f64,
        /// Nonces to measure over.
        #[arg(long, default_value_t = 2000)]
        nonces: u64,
    },
}

/// Whether log lines get ANSI colours: only on a terminal (not in a file
/// or journald), and never when `NO_COLOR` is set to anything non-empty.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // Offline tools replay thousands of decisions: only problems.
        let default = match cli.command {
            Command::Policy(_) => "warn",
            _ => "info",
        };
        // One filter for the console and the panel's log tail.
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(log_colours()),
            )
            .with(hashwatt::logtail::TailLayer)
            .init();
    }
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Hash(cmd) => hash(cmd),
        Command::Devpool(args) => devpool(args),
        Command::Bench(cmd) => bench(cmd),
        Command::Plugin(cmd) => hashwatt::plugin::cli::run(cmd),
        Command::Policy(PolicyCommand::Backtest(args)) => {
            hashwatt::policy::backtest::cli::run(args)
        }
        Command::AsicEmulator(args) => asic_emulator(args),
        Command::Health(args) => health(args),
        Command::Update(UpdateCommand::Status { config }) => (|| {
            let rauc = hashwatt::update::Rauc::default();
            let status = match config {
                Some(c) => rauc.status_with_history(&Config::load(&c)?.state_dir)?,
                None => rauc.status()?,
            };
            print!("{status}");
            Ok(())
        })(),
        Command::Update(UpdateCommand::Install { file }) => (|| {
            let msg =
                hashwatt::update::Rauc::default().install(&file, env!("CARGO_PKG_VERSION"))?;
            println!("{msg}");
            Ok(())
        })(),
        Command::Energy(EnergyCommand::Report {
            config,
            period,
            csv,
        }) => (|| {
            let config = Config::load(&config)?;
            let report =
                hashwatt::energy::report_from_disk(&config.energy, &config.state_dir, period)?;
            if csv {
                print!("{}", report.to_csv());
            } else {
                println!("{report}");
            }
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("hashwatt: invalid configuration: {ce}");
                return ExitCode::from(2);
            }
            eprintln!("hashwatt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    // Validate the config before anything starts: a bad file changes
    // nothing (no state dir, no workers) and exits with status 2.
    let config = match &args.config {
        Some(path) => {
            let text = config::read(path)?;
            let config = Config::parse(path, &text)?;
            config::preflight(&config, path, &text)?;
            Some(config)
        }
        None => None,
    };
    runtime()?.block_on(async move {
        let mut devices = None;
        let mut _chain = None;
        let (config, _pool) = match config {
            Some(c) => (c, None),
            None => {
                let mut pool_config = hashwatt_devpool::DevPoolConfig::default();
                if args.asic_chips.is_some() {
                    // The emulated chips hash on this CPU: an easier share.
                    pool_config.difficulty = 1.0 / 4096.0;
                }
                let pool = hashwatt_devpool::start(pool_config)
                    .await
                    .context("cannot start the demo pool")?;
                let addr = pool.local_addr();
                info!(%addr, "demo: development pool listening on loopback");
                let url = format!("stratum+tcp://{addr}")
                    .parse()
                    .map_err(anyhow::Error::msg)?;
                let config = Config {
                    pools: vec![PoolEntry {
                        url,
                        user: "demo.worker1".into(),
                        password: String::new(),
                        plugin: None,
                        enabled: true,
                        settings: Default::default(),
                    }],
                    threads: 0,
                    backend: "auto".into(),
                    state_dir: std::env::temp_dir().join("hashwatt-demo"),
                    status_interval_secs: 10,
                    allow_pool_redirect: false,
                    failback_secs: 60,
                    trusted_keys: Vec::new(),
                    allow_unsigned_plugins: false,
                    plugin_limits: Default::default(),
                    web: Default::default(),
                    cgminer: Default::default(),
                    esp_miner: Default::default(),
                    energy: Default::default(),
                    signals: Vec::new(),
                    policies: Vec::new(),
                    asic: Vec::new(),
                    cpu_mining: None,
                };
                if let Some(chips) = args.asic_chips {
                    let chain = hashwatt::device::asic_emulated::EmulatedChain::start(
                        hashwatt_asic::model::Model::BM1370,
                        usize::from(chips),
                        2.0e6,
                        1.0 / 1_048_576.0,
                        Default::default(),
                        1,
                    )
                    .context("cannot start the emulated ASIC chain")?;
                    info!(
                        port = %chain.emulator.tty_path().display(),
                        chips,
                        "demo: emulated BM1370 chain on a pseudo-terminal"
                    );
                    let settings = chain.settings("asic0", &config.state_dir.join("asic"));
                    devices = Some(vec![
                        chain.device(settings) as std::sync::Arc<dyn hashwatt::device::Device>
                    ]);
                    _chain = Some(chain);
                }
                (config, Some(pool))
            }
        };
        let app = App::start_with(
            config,
            StartOptions {
                config_path: args.config.clone(),
                devices,
                record_dir: args.record.clone(),
            },
        )
        .await?;
        hashwatt::service::ready(&format!(
            "mining; panel {}",
            app.api_addr().map_or("off".into(), |a| a.to_string())
        ));
        let (watchdog_stop, watchdog_rx) = tokio::sync::watch::channel(false);
        if let Some(period) = hashwatt::service::watchdog_period() {
            tokio::spawn(hashwatt::service::watchdog(
                app.handle().clone(),
                period,
                watchdog_rx,
            ));
        }
        let restart = wait_for_stop(&app).await?;
        hashwatt::service::stopping();
        let _ = watchdog_stop.send(true);
        // systemd waits 90 s before SIGKILL; an appliance should be done in 5.
        if tokio::time::timeout(Duration::from_secs(5), app.shutdown())
            .await
            .is_err()
        {
            error!("clean shutdown took longer than 5 s; exiting anyway");
        }
        info!("stopped");
        if restart {
            restart_self();
        }
        Ok(())
    })
}

/// Replaces this process with a fresh start of the same binary and
/// arguments (the sockets and state were released by the clean stop).
fn restart_self() {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let exe = std::env::current_exe().ok();
    let _argv0 = args.next();
    if let Some(exe) = exe {
        info!("restarting");
        let e = std::process::Command::new(exe).args(args).exec();
        error!("cannot restart: {e}");
    }
}

/// Waits for SIGTERM (systemd, the image) or SIGINT (Ctrl-C), or a
/// restart command (then returns true); SIGHUP reloads the configuration
/// through the command path meanwhile.
async fn wait_for_stop(app: &App) -> anyhow::Result<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                info!("SIGTERM: shutting down");
                return Ok(false);
            }
            _ = int.recv() => {
                info!("interrupted: shutting down");
                return Ok(false);
            }
            _ = app.handle().restart_requested() => {
                info!("restart: shutting down first");
                return Ok(true);
            }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                match app.execute(ControlCommand::Reload).await {
                    Ok(m) => info!("{m}"),
                    Err(e) => error!("reload refused, the running configuration stays: {e}"),
                }
            }
        }
    }
}

fn parse_hex<const N: usize>(what: &str, s: &str) -> anyhow::Result<[u8; N]> {
    let bytes = hex::decode(s.trim()).with_context(|| format!("{what} is not valid hex"))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| {
        anyhow::anyhow!(
            "{what} must be {N} bytes ({} hex digits), got {len} bytes",
            N * 2
        )
    })
}

fn hash(cmd: HashCommand) -> anyhow::Result<()> {
    match cmd {
        HashCommand::Header { header } => {
            let header: [u8; 80] = parse_hex("header", &header)?;
            println!(
                "{}",
                hashwatt_work::hash_to_display(&hashwatt_hash::sha256d(&header))
            );
        }
        HashCommand::Scan {
            header,
            start,
            count,
            target,
            backend,
        } => {
            let header: [u8; 80] = parse_hex("header", &header)?;
            let target: [u8; 32] = parse_hex("target", &target)?;
            if count > (1u64 << 32) - u64::from(start) {
                bail!("--start {start} --count {count} runs past the last nonce (2^32 - 1)");
            }
            let selected = hashwatt_hash::select(backend.as_deref())?;
            for nonce in
                hashwatt_hash::scan(selected.backend.as_ref(), &header, &target, start, count)
            {
                println!("{nonce:08x}");
            }
        }
    }
    Ok(())
}

fn devpool(args: DevpoolArgs) -> anyhow::Result<()> {
    let mut config = hashwatt_devpool::DevPoolConfig {
        listen: args.listen,
        ..Default::default()
    };
    if let Some(d) = args.difficulty {
        if !(d.is_finite() && d > 0.0) {
            bail!("--difficulty must be a positive number, got {d}");
        }
        config.difficulty = d;
    }
    if let Some(n) = args.nbits {
        config.nbits = n;
    }
    runtime()?.block_on(async move {
        let pool = hashwatt_devpool::start(config).await.context("cannot start the development pool")?;
        info!(addr = %pool.local_addr(), "development pool listening");
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let s = pool.stats();
                    info!(connections = s.connections, accepted = s.accepted, rejected = s.rejected_total, "devpool");
                }
                r = tokio::signal::ctrl_c() => {
                    if let Err(e) = r { error!("cannot wait for Ctrl-C: {e}"); }
                    break;
                }
            }
        }
        pool.shutdown().await;
        Ok(())
    })
}

fn bench(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Hash {
            backend,
            threads,
            seconds,
            json,
            ablation,
        } => {
            if ablation {
                let report = hashwatt_hash::bench::ablation(seconds)?;
                if json {
                    println!("{}", report.to_json());
                } else {
                    println!("{report}");
                }
                return Ok(());
            }
            let opts = hashwatt_hash::bench::BenchOptions {
                backend: (backend != "all").then_some(backend),
                threads,
                seconds,
            };
            let report = hashwatt_hash::bench::run(&opts)?;
            if json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
        }
        BenchCommand::Api {
            clients,
            requests,
            seconds,
        } => {
            print!("{}", hashwatt::web::bench::run(clients, requests, seconds)?);
        }
        BenchCommand::Plugin { iterations } => {
            println!("{}", hashwatt::plugin::bench::run(iterations)?);
        }
        BenchCommand::Asic {
            model,
            chips,
            rate,
            nonces,
        } => {
            print!(
                "{}",
                hashwatt::device::asic_bench::run(&hashwatt::device::asic_bench::AsicBench {
                    model,
                    chips,
                    nonce_rate: rate,
                    nonces,
                })?
            );
        }
    }
    Ok(())
}

/// `hashwatt asic-emulator`: an emulated chain until Ctrl-C or SIGTERM.
fn asic_emulator(args: AsicEmulatorArgs) -> anyhow::Result<()> {
    use hashwatt_asic::emulator::{Emulator, EmulatorConfig};
    let emu = Emulator::spawn(EmulatorConfig {
        model: args.model,
        chips: args.chips,
        hashrate_hs: args.hashrate,
        difficulty: args.difficulty,
    })
    .map_err(|e| anyhow::anyhow!("cannot start the emulator: {e}"))?;
    println!(
        "emulated {} chain of {} chip(s) on {}\n\
         configure it with:\n\n[[asic]]\nport = \"{}\"\nmodel = \"{}\"\nchips = {}\n\
         min_nonce_difficulty = {:e}\n[asic.board]\ntemp_sensor = \"…\"  # the board's hwmon sensor\n",
        args.model,
        args.chips,
        emu.tty_path().display(),
        emu.tty_path().display(),
        args.model,
        args.chips,
        args.difficulty,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    let s = emu.stats();
    println!(
        "stopped: {} nonces sent ({:?} per chip), {} jobs, {} frames rejected",
        s.nonces.iter().sum::<u64>(),
        s.nonces,
        s.jobs,
        s.frames_rejected
    );
    Ok(())
}

/// `hashwatt health`: the running host's own answer, waited for.
fn health(args: HealthArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait);
    loop {
        let answer = hashwatt::health::read(&config.state_dir);
        let last = match &answer {
            Ok(h) if h.healthy => {
                println!("{h}");
                return Ok(());
            }
            Ok(h) => h.to_string(),
            Err(e) => e.clone(),
        };
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("{last}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
