//! A BM13xx chip chain as a [`Device`]: the chain driver of
//! `hashwatt-asic` on a serial port, the board's rail, sensors and fan, the
//! thermal loop and the autotuner, run by one thread per chain.
//!
//! The thread owns everything that touches the hardware, so nothing else
//! ever blocks on the serial line. Each round it:
//! - hands the chips fresh work every `job_interval` (the newest task, the
//!   next extranonce2, the chips rolling version bits), so they never idle
//!   on stale work;
//! - reads replies; every nonce has already been mapped back to its work
//!   and re-hashed by the chain driver, and becomes a [`Solution`] when it
//!   meets the task's share target (the miner re-checks it once more);
//! - once a second reads the board, runs the thermal controller (fan duty,
//!   throttle, safe stop), follows a power limit, and notices chips that
//!   stopped answering.
//!
//! An autotune result saved for the board is re-used at the next start;
//! without one, the configured goal is searched once and saved.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use hashwatt_asic::autotune::{
    self, Autotuner, Observation, Setting, TuneBounds, TuneGoal, TuneResult, TuneStep,
};
use hashwatt_asic::board::Board;
use hashwatt_asic::chain::{Chain, ChainConfig, ChainEvent, ChainStats, Work};
use hashwatt_asic::serial::{SerialLink, TtyPort};
use hashwatt_asic::thermal::{FrequencyAction, ThermalConfig, ThermalController, ThermalInput};
use hashwatt_work::Target;
use tracing::{info, warn};

use super::{
    Control, Device, DeviceError, DeviceInfo, FanReading, Solution, SolutionSink, Task, Telemetry,
    TempReading, UnitTelemetry,
};
use crate::ratelimit::{LogDecision, LogLimiter};

/// Baud the chips answer at after reset.
const RESET_BAUD: u32 = 115_200;
/// How long one read waits for replies.
const POLL: Duration = Duration::from_millis(20);
/// Board, thermal and power-limit round.
const BOARD_TICK: Duration = Duration::from_secs(1);
/// Wait after switching the rail on before the first frame.
const RAIL_SETTLE: Duration = Duration::from_millis(200);
/// Per-chip counters reach the telemetry this often.
const PUBLISH: Duration = Duration::from_millis(250);
/// Work remembered for mapping nonces back (the chain keeps fewer in flight).
const WORK_MEMORY: usize = 64;

/// How a chain is set up; built from the configuration by the app.
#[derive(Debug, Clone)]
pub struct AsicSettings {
    /// Device name shown to the operator.
    pub name: String,
    /// Serial device (USB-CDC, UART or a pseudo-terminal).
    pub port: PathBuf,
    /// Chip model, clock, baud, ticket and nonce difficulty.
    pub chain: ChainConfig,
    /// Core voltage to set at start, where the rail can be set.
    pub voltage_mv: Option<u32>,
    /// Fan and overheat control.
    pub thermal: ThermalConfig,
    /// Search frequency (and voltage) toward this goal when no saved
    /// result exists.
    pub autotune: Option<TuneGoal>,
    /// Search space of the autotuner.
    pub tune_bounds: Option<TuneBounds>,
    /// How long each autotune setting is measured.
    pub tune_settle: Duration,
    /// Where autotune results are saved, one file per board.
    pub tune_dir: PathBuf,
    /// New work for the chips this often.
    pub job_interval: Duration,
    /// A chip without a verified nonce for this long is reported dead.
    pub dead_after: Duration,
    /// Wait before retrying a chain that failed to start.
    pub retry: Duration,
}

struct InFlight {
    task: Task,
    step: u64,
}

/// What the thread is told by the miner and the controls.
struct Orders {
    tasks: VecDeque<InFlight>,
    /// Set when every earlier task is void (the chips' work too).
    clear: bool,
    paused: bool,
    power_limit_w: Option<f64>,
}

struct Shared {
    orders: Mutex<Orders>,
    telemetry: Mutex<Telemetry>,
    stop: AtomicBool,
    max_tasks: usize,
    sink: OnceLock<(usize, Weak<dyn SolutionSink>)>,
}

/// One BM13xx chain with its board.
pub struct AsicDevice {
    info: DeviceInfo,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AsicDevice {
    /// Starts the chain's thread: it opens `settings.port`, brings the
    /// chain up (retrying while it cannot) and mines what it is assigned.
    pub fn start(settings: AsicSettings, board: Board) -> Arc<AsicDevice> {
        let link = {
            let port = settings.port.clone();
            move || TtyPort::open(&port, RESET_BAUD)
        };
        Self::start_with(settings, board, link)
    }

    /// [`AsicDevice::start`] with the serial link made by `open` (tests
    /// and other transports).
    pub fn start_with<L, F, E>(settings: AsicSettings, board: Board, open: F) -> Arc<AsicDevice>
    where
        L: SerialLink + 'static,
        F: FnMut() -> Result<L, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let mut board = board;
        // A power limit is followed by the rail's reading: without one,
        // say so instead of accepting a limit that is never applied.
        let can_limit = board.rail.power_w().ok().flatten().is_some();
        let model = settings.chain.model;
        let chips = settings.chain.expected_chips.or(Some(board.chips()));
        let info = DeviceInfo {
            name: settings.name.clone(),
            kind: "asic",
            model: format!(
                "{model} × {} on {}",
                chips.map_or("?".into(), |c| c.to_string()),
                settings.port.display()
            ),
            rolls_version: true,
            rolls_ntime: false,
            max_tasks: 4,
            // Shares below this would flood the host: the chips report
            // nonces at the ticket difficulty already.
            min_difficulty: settings.chain.report_difficulty().min(1.0),
            power_limit: can_limit,
        };
        let shared = Arc::new(Shared {
            orders: Mutex::new(Orders {
                tasks: VecDeque::new(),
                clear: false,
                paused: false,
                power_limit_w: None,
            }),
            telemetry: Mutex::new(Telemetry {
                problem: Some("starting".into()),
                ..Telemetry::default()
            }),
            stop: AtomicBool::new(false),
            max_tasks: 4,
            sink: OnceLock::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{}-chain", settings.name))
            .spawn(move || Runner::new(settings, board, s).run(open))
            .ok();
        Arc::new(AsicDevice {
            info,
            shared,
            thread: Mutex::new(thread),
        })
    }
}

impl Drop for AsicDevice {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Device for AsicDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn attach(&self, index: usize, sink: Weak<dyn SolutionSink>) {
        let _ = self.shared.sink.set((index, sink));
    }

    fn assign(&self, task: Task, replace: bool) {
        let mut o = lock(&self.shared.orders);
        if replace {
            o.tasks.clear();
            o.clear = true;
        }
        o.tasks.push_front(InFlight { task, step: 0 });
        o.tasks.truncate(self.shared.max_tasks);
    }

    fn idle(&self) {
        let mut o = lock(&self.shared.orders);
        o.tasks.clear();
        o.clear = true;
    }

    fn control(&self, control: Control) -> Result<(), DeviceError> {
        let mut o = lock(&self.shared.orders);
        match control {
            Control::Pause => o.paused = true,
            Control::Resume => o.paused = false,
            Control::PowerLimit(Some(_)) if !self.info.power_limit => {
                return Err(DeviceError::Unsupported {
                    device: self.info.name.clone(),
                    what: "power limits (its board reports no power reading)",
                });
            }
            Control::PowerLimit(w) => o.power_limit_w = w,
        }
        Ok(())
    }

    fn telemetry(&self) -> Telemetry {
        let mut t = lock(&self.shared.telemetry).clone();
        let o = lock(&self.shared.orders);
        t.paused = o.paused;
        t.power_limit_w = o.power_limit_w;
        t
    }
}

/// What a dispatched work item stands for.
struct Sent {
    tag: u64,
    task: u64,
    extranonce2: Vec<u8>,
    target: Target,
}

/// The autotuner while it runs.
struct Tuning {
    tuner: Autotuner,
    since: Instant,
    hashes_at_start: f64,
    errors_at_start: u64,
    nonces_at_start: u64,
    power: Vec<f64>,
    max_temp: f64,
}

/// The chain thread's state.
struct Runner {
    s: AsicSettings,
    board: Board,
    shared: Arc<Shared>,
    thermal: ThermalController,
    /// Clock the operator or the autotuner chose (thermal and power limit
    /// only ever lower it).
    nominal_mhz: f32,
    /// Clock the power limit allows.
    limit_mhz: Option<f32>,
    sent: VecDeque<Sent>,
    next_tag: u64,
    last_job: Option<Instant>,
    last_board: Option<Instant>,
    started: Instant,
    /// When the chain last came up (after a pause or a stop too): chips
    /// are judged dead only after a whole `dead_after` from here.
    chain_up: Instant,
    /// Overheat or sensor stop in force.
    stopped: Option<String>,
    fan_fault: Option<String>,
    tuning: Option<Tuning>,
    log: LogLimiter,
}

impl Runner {
    fn new(s: AsicSettings, board: Board, shared: Arc<Shared>) -> Runner {
        let thermal = ThermalController::new(s.thermal.clone()).unwrap_or_else(|e| {
            warn!(device = %s.name, "thermal settings refused ({e}); using the defaults");
            ThermalController::new(ThermalConfig::default()).expect("default thermal settings")
        });
        Runner {
            nominal_mhz: s.chain.frequency_mhz,
            s,
            board,
            shared,
            thermal,
            limit_mhz: None,
            sent: VecDeque::new(),
            next_tag: 1,
            last_job: None,
            last_board: None,
            started: Instant::now(),
            chain_up: Instant::now(),
            stopped: None,
            fan_fault: None,
            tuning: None,
            log: LogLimiter::new(Duration::from_secs(60), 5),
        }
    }

    fn paused(&self) -> bool {
        lock(&self.shared.orders).paused
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn set_problem(&self, problem: Option<String>) {
        lock(&self.shared.telemetry).problem = problem;
    }

    /// Sleeps up to `d`, waking early at stop.
    fn nap(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopping() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
    }

    fn run<L, F, E>(mut self, mut open: F)
    where
        L: SerialLink,
        F: FnMut() -> Result<L, E>,
        E: std::fmt::Display,
    {
        self.apply_saved_or_start_tuning();
        while !self.stopping() {
            if self.paused() {
                // Paused: the rail off, so the chips draw nothing; the
                // chain comes up from reset on resume.
                let _ = self.board.rail.set_enabled(false);
                self.nap(POLL * 5);
                continue;
            }
            // Every start is from reset: the rail off, then on, and time
            // for the chips to wake before the first frame.
            let _ = self.board.rail.set_enabled(false);
            self.nap(RAIL_SETTLE);
            let _ = self.board.rail.set_enabled(true);
            self.nap(RAIL_SETTLE);
            if let Some(mv) = self.s.voltage_mv
                && self.board.rail.voltage_range_mv().is_some()
                && let Err(e) = self.board.rail.set_voltage_mv(mv)
            {
                warn!(device = %self.s.name, "cannot set the core voltage to {mv} mV: {e}");
            }
            let link = match open() {
                Ok(l) => l,
                Err(e) => {
                    self.fail(format!("cannot open {}: {e}", self.s.port.display()));
                    continue;
                }
            };
            let mut cfg = self.s.chain.clone();
            cfg.frequency_mhz = self.target_mhz();
            let chain = match Chain::init(link, cfg) {
                Ok(c) => c,
                Err(e) => {
                    self.fail(format!("chain did not start: {e}"));
                    continue;
                }
            };
            info!(
                device = %self.s.name,
                model = %chain.model(),
                chips = chain.chips(),
                mhz = chain.frequency_mhz(),
                "ASIC chain up"
            );
            self.set_problem(None);
            self.chain_up = Instant::now();
            self.mine(chain);
            if self.stopped.is_some() && !self.stopping() {
                // Wait out the overheat stop with the rail off, then bring
                // the chain up again from reset.
                self.cool_down();
            }
        }
        let _ = self.board.rail.set_enabled(false);
    }

    fn fail(&mut self, why: String) {
        if let LogDecision::Write { suppressed } = self.log.check(Instant::now()) {
            warn!(device = %self.s.name, suppressed, "{why}; retrying in {:?}", self.s.retry);
        }
        self.set_problem(Some(why));
        self.nap(self.s.retry);
    }

    /// The clock to run at now: nominal, lowered by the thermal loop and
    /// the power limit.
    fn target_mhz(&self) -> f32 {
        let mut f = self.nominal_mhz;
        if let Some(t) = self.thermal.limit_mhz() {
            f = f.min(t);
        }
        if let Some(l) = self.limit_mhz {
            f = f.min(l);
        }
        let range = self.s.chain.model.frequency_range_mhz();
        f.clamp(*range.start(), *range.end())
    }

    fn mine<L: SerialLink>(&mut self, mut chain: Chain<L>) {
        let mut events = Vec::new();
        let mut last_publish = None;
        while !self.stopping() {
            if self.paused() {
                chain.clear_work();
                self.sent.clear();
                self.publish(&chain);
                return;
            }
            let now = Instant::now();
            if self.last_board.is_none_or(|t| now - t >= BOARD_TICK) {
                self.last_board = Some(now);
                self.board_round(&mut chain);
                if self.stopped.is_some() {
                    chain.clear_work();
                    self.sent.clear();
                    return;
                }
            }
            self.dispatch(&mut chain, now);
            events.clear();
            if let Err(e) = chain.poll(POLL, &mut events) {
                self.set_problem(Some(format!("serial link failed: {e}")));
                warn!(device = %self.s.name, "serial link failed: {e}; restarting the chain");
                self.nap(self.s.retry);
                return;
            }
            for ev in events.drain(..) {
                if let ChainEvent::Nonce(found) = ev {
                    self.deliver(found);
                }
            }
            if last_publish.is_none_or(|t: Instant| t.elapsed() >= PUBLISH) {
                last_publish = Some(Instant::now());
                self.publish(&chain);
            }
        }
    }

    /// New work when due: the newest task's next extranonce2.
    fn dispatch<L: SerialLink>(&mut self, chain: &mut Chain<L>, now: Instant) {
        let mut o = lock(&self.shared.orders);
        if std::mem::take(&mut o.clear) {
            chain.clear_work();
            self.sent.clear();
            self.last_job = None;
        }
        if o.paused {
            return;
        }
        if self.last_job.is_some_and(|t| now - t < self.s.job_interval) {
            return;
        }
        let Some(f) = o.tasks.front_mut() else {
            return;
        };
        let step = f.step;
        f.step += 1;
        let task = f.task.clone();
        drop(o);
        let Some(extranonce2) = task.extranonce2.value(u128::from(step)) else {
            // This task's space is used up.
            lock(&self.shared.orders)
                .tasks
                .retain(|f| f.task.id != task.id);
            return;
        };
        let Ok(root) = task.job.merkle_root(&extranonce2) else {
            return;
        };
        // The chips roll the version bits; a task confined to part of the
        // version space (devices sharing a fixed root) gets none.
        let whole = hashwatt_work::rolling_space(task.job.version_mask());
        let mask = if task.versions.start == 0 && task.versions.end >= whole {
            task.job.version_mask() & self.s.chain.version_mask
        } else {
            0
        };
        let header = task
            .job
            .header(&root, task.job.version(), task.job.ntime(), 0);
        let tag = self.next_tag;
        self.next_tag += 1;
        let work = Work::from_header(tag, &header, mask);
        if let Err(e) = chain.send_work(work) {
            if let LogDecision::Write { suppressed } = self.log.check(Instant::now()) {
                warn!(device = %self.s.name, suppressed, "cannot send work: {e}");
            }
            return;
        }
        self.last_job = Some(now);
        if self.sent.len() == WORK_MEMORY {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            tag,
            task: task.id,
            extranonce2,
            target: task.share_target,
        });
    }

    fn deliver(&mut self, found: hashwatt_asic::chain::FoundNonce) {
        let Some(sent) = self.sent.iter().find(|s| s.tag == found.tag) else {
            return;
        };
        let hash = hashwatt_work::share::sha256d(&found.header);
        if !sent.target.is_met_by(&hash) {
            return;
        }
        if let Some((index, sink)) = self.shared.sink.get()
            && let Some(sink) = sink.upgrade()
        {
            sink.solution(
                *index,
                Solution {
                    task: sent.task,
                    extranonce2: sent.extranonce2.clone(),
                    version: found.version,
                    ntime: found.ntime,
                    nonce: found.nonce,
                },
            );
        }
    }

    /// Reads the board and runs the thermal controller once, the chips at
    /// `frequency_mhz` (0 while the rail is off).
    fn thermal_step(
        &mut self,
        frequency_mhz: f32,
    ) -> (
        Vec<Option<f64>>,
        Option<u32>,
        hashwatt_asic::thermal::ThermalAction,
    ) {
        let temps = self.board.chip_temps();
        let rpm = self.board.fan_rpm();
        let duty = self.board.fan.as_ref().map_or(0.0, |f| f.duty());
        let action = self.thermal.step(
            self.started.elapsed(),
            &ThermalInput {
                chip_temps: &temps,
                fan_rpm: rpm,
                fan_duty_pct: duty,
                frequency_mhz,
            },
        );
        (temps, rpm, action)
    }

    /// Once a second: thermal loop, power limit, dead chips, autotune.
    fn board_round<L: SerialLink>(&mut self, chain: &mut Chain<L>) {
        self.thermal.set_nominal_mhz(self.nominal_mhz);
        let (temps, rpm, action) = self.thermal_step(chain.frequency_mhz());
        if let Some(fan) = self.board.fan.as_mut()
            && let Err(e) = fan.set_duty(action.fan_duty_pct)
            && let LogDecision::Write { suppressed } = self.log.check(Instant::now())
        {
            warn!(device = %self.s.name, suppressed, "cannot set the fan: {e}");
        }
        if action.fan_fault != self.fan_fault {
            if let Some(f) = &action.fan_fault {
                warn!(device = %self.s.name, "{f}");
            }
            self.fan_fault = action.fan_fault.clone();
        }
        if let Some(reason) = action.stop {
            warn!(device = %self.s.name, "{reason}");
            self.stopped = Some(reason.clone());
            self.set_problem(Some(reason));
            let _ = self.board.rail.set_enabled(false);
            return;
        }
        let power = self.board.rail.power_w().ok().flatten();
        self.follow_power_limit(power, chain.frequency_mhz());
        self.tune_round(chain, power, &temps);
        let want = self.target_mhz();
        if (matches!(action.frequency, FrequencyAction::Set(_))
            || (want - chain.frequency_mhz()).abs() >= 0.5)
            && let Err(e) = chain.set_frequency(want)
        {
            warn!(device = %self.s.name, "cannot set {want} MHz: {e}");
        }
        self.update_board_telemetry(&temps, rpm, power, chain.stats());
    }

    /// Keeps the rail's draw under the limit by stepping the clock.
    fn follow_power_limit(&mut self, power: Option<f64>, mhz: f32) {
        let limit = lock(&self.shared.orders).power_limit_w;
        let (Some(limit), Some(power)) = (limit, power) else {
            self.limit_mhz = None;
            return;
        };
        let step = self.s.thermal.throttle_step_mhz.max(1.0);
        let floor = *self.s.chain.model.frequency_range_mhz().start();
        if power > limit {
            // Proportional first guess, at least one step down.
            let scaled = (mhz as f64 * limit / power.max(1e-3)) as f32;
            self.limit_mhz = Some(scaled.min(mhz - step).max(floor));
        } else if power < limit * 0.9
            && let Some(l) = self.limit_mhz
        {
            let up = l + step;
            self.limit_mhz = (up < self.nominal_mhz).then_some(up);
        }
    }

    fn apply_saved_or_start_tuning(&mut self) {
        let model = self.s.chain.model.to_string();
        if let Some(saved) = autotune::load_or_ignore(&self.s.tune_dir, &self.board.id) {
            if saved.model == model && self.s.autotune.is_none_or(|g| g == saved.goal) {
                info!(
                    device = %self.s.name,
                    mhz = saved.frequency_mhz,
                    voltage_mv = ?saved.voltage_mv,
                    "re-using the saved autotune result"
                );
                self.nominal_mhz = saved.frequency_mhz;
                if saved.voltage_mv.is_some() {
                    self.s.voltage_mv = saved.voltage_mv;
                }
                return;
            }
            info!(device = %self.s.name, "saved autotune result is for another model or goal; tuning again");
        }
        let (Some(goal), Some(bounds)) = (self.s.autotune, self.s.tune_bounds) else {
            return;
        };
        let start = Setting {
            frequency_mhz: bounds.min_mhz,
            voltage_mv: bounds.voltage.map(|v| v.0),
        };
        match Autotuner::new(goal, bounds, start) {
            Ok(t) => {
                let mut tuner = t.with_identity(self.board.id.clone(), model);
                if let TuneStep::Apply(first) = tuner.next(None) {
                    self.apply_setting(&first);
                }
                info!(device = %self.s.name, ?goal, "autotune started");
                self.tuning = Some(Tuning {
                    tuner,
                    since: Instant::now(),
                    hashes_at_start: 0.0,
                    errors_at_start: 0,
                    nonces_at_start: 0,
                    power: Vec::new(),
                    max_temp: f64::NEG_INFINITY,
                });
            }
            Err(e) => warn!(device = %self.s.name, "autotune not started: {e}"),
        }
    }

    fn apply_setting(&mut self, s: &Setting) {
        self.nominal_mhz = s.frequency_mhz;
        if let Some(mv) = s.voltage_mv {
            self.s.voltage_mv = Some(mv);
            if let Err(e) = self.board.rail.set_voltage_mv(mv) {
                warn!(device = %self.s.name, "cannot set {mv} mV: {e}");
            }
        }
    }

    fn tune_round<L: SerialLink>(
        &mut self,
        chain: &Chain<L>,
        power: Option<f64>,
        temps: &[Option<f64>],
    ) {
        let Some(t) = self.tuning.as_mut() else {
            return;
        };
        let stats = chain.stats();
        let hashes: f64 = stats.chips.iter().map(|c| c.hashes).sum();
        let errors: u64 = stats.chips.iter().map(|c| c.hardware_errors).sum();
        let nonces: u64 = stats.chips.iter().map(|c| c.nonces).sum();
        if let Some(p) = power {
            t.power.push(p);
        }
        for v in temps.iter().flatten() {
            t.max_temp = t.max_temp.max(*v);
        }
        let elapsed = t.since.elapsed();
        if elapsed < self.s.tune_settle {
            return;
        }
        let observation = (!t.power.is_empty()).then(|| Observation {
            hashrate_hs: (hashes - t.hashes_at_start) / elapsed.as_secs_f64(),
            power_w: t.power.iter().sum::<f64>() / t.power.len() as f64,
            hw_error_rate: {
                let n = (nonces - t.nonces_at_start) + (errors - t.errors_at_start);
                if n == 0 {
                    0.0
                } else {
                    (errors - t.errors_at_start) as f64 / n as f64
                }
            },
            max_temp_c: if t.max_temp.is_finite() {
                t.max_temp
            } else {
                0.0
            },
        });
        let step = t.tuner.next(observation);
        t.since = Instant::now();
        t.hashes_at_start = hashes;
        t.errors_at_start = errors;
        t.nonces_at_start = nonces;
        t.power.clear();
        t.max_temp = f64::NEG_INFINITY;
        match step {
            TuneStep::Apply(s) => self.apply_setting(&s),
            TuneStep::Done(result) => {
                self.tuning = None;
                self.finish_tuning(result);
            }
            TuneStep::Abandoned { reason, fallback } => {
                self.tuning = None;
                warn!(device = %self.s.name, "autotune gave up: {reason}");
                self.apply_setting(&fallback);
            }
        }
    }

    fn finish_tuning(&mut self, result: TuneResult) {
        info!(
            device = %self.s.name,
            mhz = result.frequency_mhz,
            voltage_mv = ?result.voltage_mv,
            watts = result.power_w,
            j_per_th = result.joules_per_th,
            "autotune done"
        );
        self.apply_setting(&result.setting());
        if let Err(e) = autotune::save(&self.s.tune_dir, &result) {
            warn!(device = %self.s.name, "cannot save the autotune result: {e}");
        }
    }

    /// Rail off until the thermal controller lets the chain run again.
    fn cool_down(&mut self) {
        while !self.stopping() {
            self.nap(BOARD_TICK);
            let (temps, _, action) = self.thermal_step(0.0);
            if let Some(fan) = self.board.fan.as_mut() {
                let _ = fan.set_duty(action.fan_duty_pct);
            }
            {
                let mut t = lock(&self.shared.telemetry);
                t.temperatures = chip_temperatures(&temps);
                t.power_w = self.board.rail.power_w().ok().flatten();
            }
            match action.stop {
                Some(reason) => self.set_problem(Some(reason)),
                None => {
                    info!(device = %self.s.name, "cooled down; restarting the chain");
                    self.stopped = None;
                    return;
                }
            }
        }
    }

    fn update_board_telemetry(
        &mut self,
        temps: &[Option<f64>],
        rpm: Option<u32>,
        power: Option<f64>,
        stats: ChainStats,
    ) {
        let now = Instant::now();
        let dead: Vec<usize> = stats
            .chips
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.last_nonce.unwrap_or(self.chain_up) + self.s.dead_after < now
                    && self.chain_up + self.s.dead_after < now
            })
            .map(|(i, _)| i)
            .collect();
        let paused = lock(&self.shared.orders).paused;
        let problem = if paused || self.sent.is_empty() {
            None
        } else if !dead.is_empty() {
            let list: Vec<String> = dead.iter().map(|i| i.to_string()).collect();
            Some(format!(
                "chip{} {} not answering (no nonce for {} s)",
                if dead.len() > 1 { "s" } else { "" },
                list.join(", "),
                self.s.dead_after.as_secs()
            ))
        } else {
            self.fan_fault.clone().or_else(|| {
                self.tuning
                    .as_ref()
                    .map(|_| format!("autotuning: {} MHz", self.nominal_mhz))
            })
        };
        let mut t = lock(&self.shared.telemetry);
        if t.problem != problem
            && let Some(p) = &problem
        {
            warn!(device = %self.s.name, "{p}");
        }
        t.problem = problem;
        t.temperatures = chip_temperatures(temps);
        t.fans = self
            .board
            .fan
            .as_ref()
            .map(|f| FanReading {
                label: f.label().to_string(),
                rpm,
                percent: Some(f.duty()),
            })
            .into_iter()
            .collect();
        t.power_w = power;
    }

    /// Per-chip counters into the shared telemetry.
    fn publish<L: SerialLink>(&self, chain: &Chain<L>) {
        let stats = chain.stats();
        let mut t = lock(&self.shared.telemetry);
        t.units = stats
            .chips
            .iter()
            .enumerate()
            .map(|(i, c)| UnitTelemetry {
                name: format!("chip-{i}"),
                hashes: c.hashes as u64,
                hardware_errors: c.hardware_errors,
            })
            .collect();
        t.tasks_in_flight = self.sent.len().min(hashwatt_asic::chain::MAX_IN_FLIGHT);
    }
}

fn chip_temperatures(temps: &[Option<f64>]) -> Vec<TempReading> {
    temps
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            t.map(|c| TempReading {
                label: format!("chip-{i}"),
                temp_c: c,
            })
        })
        .collect()
}

/// The rail of a board whose regulator the host cannot see: nothing to
/// measure, nothing to switch (pause then only stops handing out work).
pub struct NoRail;

impl hashwatt_asic::board::PowerRail for NoRail {
    fn label(&self) -> &str {
        "none"
    }
    fn voltage_mv(&mut self) -> Result<Option<u32>, hashwatt_asic::board::BoardError> {
        Ok(None)
    }
    fn set_voltage_mv(&mut self, _mv: u32) -> Result<(), hashwatt_asic::board::BoardError> {
        Err(hashwatt_asic::board::BoardError::Unsupported(
            "no regulator configured".into(),
        ))
    }
    fn voltage_range_mv(&self) -> Option<(u32, u32)> {
        None
    }
    fn power_w(&mut self) -> Result<Option<f64>, hashwatt_asic::board::BoardError> {
        Ok(None)
    }
    fn set_enabled(&mut self, _on: bool) -> Result<(), hashwatt_asic::board::BoardError> {
        Ok(())
    }
}

/// The board of a configured chain from Linux hwmon: the temperature
/// sensor (shared by every chip), the fan and the regulator where named.
pub fn hwmon_board(
    entry: &crate::config::asic::AsicEntry,
    id: &str,
) -> Result<Board, hashwatt_asic::board::BoardError> {
    use hashwatt_asic::board::hwmon::{HwmonDevice, HwmonFan, HwmonRail, HwmonTemp, RailConfig};
    use hashwatt_asic::board::{Fan, PowerRail, TempSensor};
    let b = &entry.board;
    let root = b.hwmon_root.as_path();
    let name = b.temp_sensor.as_deref().unwrap_or_default();
    let sensor = HwmonTemp::discover(root, name, b.temp_label.as_deref())?;
    let fan: Option<Box<dyn Fan>> = match &b.fan {
        Some(f) => Some(Box::new(HwmonFan::discover(root, f)?)),
        None => None,
    };
    let rail: Box<dyn PowerRail> = match &b.rail {
        Some(r) => Box::new(HwmonRail::open(
            &HwmonDevice::find(root, r)?,
            RailConfig {
                label: r.clone(),
                voltage_channel: Some(1),
                power_channel: Some(1),
                ..RailConfig::default()
            },
        )?),
        None => Box::new(NoRail),
    };
    let sensors: Vec<Box<dyn TempSensor>> = vec![Box::new(sensor)];
    Board::new(id, rail, sensors, vec![0; entry.chips], fan)
}

/// The driver settings of a configured chain.
pub fn settings_from_config(
    entry: &crate::config::asic::AsicEntry,
    index: usize,
    state_dir: &std::path::Path,
) -> Option<AsicSettings> {
    use crate::config::asic::AutotuneMode;
    let model = entry.parsed_model()?;
    let mut chain = ChainConfig::new(model);
    chain.expected_chips = Some(entry.chips);
    if let Some(f) = entry.frequency_mhz {
        chain.frequency_mhz = f;
    }
    chain.fast_baud = entry.baud;
    chain.min_nonce_difficulty = entry.min_nonce_difficulty;
    if let Some(t) = entry.ticket_difficulty {
        chain.ticket_difficulty = t;
    }
    let autotune = match entry.autotune {
        AutotuneMode::Off => None,
        AutotuneMode::Power => entry.power_target_w.map(TuneGoal::PowerTarget),
        AutotuneMode::Efficiency => Some(TuneGoal::BestEfficiency),
    };
    Some(AsicSettings {
        name: entry.name_at(index),
        port: entry.port.clone(),
        chain,
        voltage_mv: entry.voltage_mv,
        thermal: entry.thermal.config(),
        autotune,
        tune_bounds: Some(TuneBounds {
            min_mhz: entry.tune_min_mhz,
            max_mhz: entry.tune_max_mhz,
            step_mhz: entry.tune_step_mhz,
            voltage: None,
        }),
        tune_settle: Duration::from_secs(entry.tune_settle_secs),
        tune_dir: state_dir.join("asic"),
        job_interval: Duration::from_millis(entry.job_interval_ms),
        dead_after: Duration::from_secs(60),
        retry: Duration::from_secs(10),
    })
}
