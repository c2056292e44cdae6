//! The CPU as one hashing device: pinned worker threads (from
//! `hashwatt-hash`) scanning the newest task, each thread on its own
//! extranonce2 values (or its own slice of the version space when the pool
//! fixed the merkle root). A power limit becomes a duty cycle.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use hashwatt_hash::{Backend, WorkSource, WorkUnit, Workers};
use tokio::sync::watch;
use tracing::{error, warn};

use super::hwmon::CpuSensors;
use super::{
    Control, Device, DeviceError, DeviceInfo, Solution, SolutionSink, Task, Telemetry,
    UnitTelemetry,
};
use crate::policy::Mode;
use crate::policy::actuator::{PowerModel, duty_loop};

/// Easiest share difficulty asked of the CPU: about 4,300 hashes a share,
/// a few thousand shares a second per core at most — beyond that a pool is
/// only flooding the host.
pub const CPU_MIN_DIFFICULTY: f64 = 1e-6;

/// Where each thread is in the current task.
#[derive(Clone, Default)]
struct Cursor {
    task: u64,
    /// Index (within the task's range) of the extranonce2 value in use.
    en2_index: u128,
    extranonce2: Vec<u8>,
    merkle_root: [u8; 32],
    /// Next rolled-version index to use, and the end of this thread's slice.
    next_version: u64,
    end_version: u64,
    started: bool,
}

/// What a thread's current unit is, to rebuild its solutions.
#[derive(Clone)]
struct UnitInfo {
    tag: u64,
    task: u64,
    extranonce2: Vec<u8>,
    version: u32,
    ntime: u32,
}

struct State {
    task: Option<Task>,
    cursors: Vec<Cursor>,
    units: Vec<Option<UnitInfo>>,
    next_tag: u64,
}

/// The work source the threads pull from.
struct Feeder {
    state: Mutex<State>,
    sink: OnceLock<(usize, Weak<dyn SolutionSink>)>,
    threads: usize,
}

impl Feeder {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl WorkSource for Feeder {
    fn next_work(&self, worker: usize) -> Option<WorkUnit> {
        let mut guard = self.lock();
        let s = &mut *guard;
        let task = s.task.as_ref()?;
        let threads = self.threads.max(1) as u128;
        let cursor = s.cursors.get_mut(worker)?;
        let fixed_root = task.extranonce2.size == 0;
        if cursor.task != task.id || !cursor.started {
            *cursor = Cursor {
                task: task.id,
                started: true,
                ..Cursor::default()
            };
            if fixed_root {
                // Threads share one merkle root: each owns a version slice.
                let r = &task.versions;
                let len = r.end.saturating_sub(r.start);
                let t = self.threads.max(1) as u64;
                cursor.next_version = r.start + len * worker as u64 / t;
                cursor.end_version = r.start + len * (worker as u64 + 1) / t;
                cursor.merkle_root = task.job.merkle_root(&[]).ok()?;
            } else {
                cursor.en2_index = worker as u128;
                cursor.next_version = task.versions.end; // forces a first value below
                cursor.end_version = task.versions.end;
            }
        }
        if cursor.next_version >= cursor.end_version {
            if fixed_root {
                return None; // this thread's version slice is used up
            }
            if cursor.extranonce2.is_empty() {
                cursor.en2_index = worker as u128;
            } else {
                cursor.en2_index += threads;
            }
            let Some(en2) = task.extranonce2.value(cursor.en2_index) else {
                warn!(
                    job = task.job.id(),
                    worker, "extranonce2 values of this task used up; waiting for new work"
                );
                return None;
            };
            cursor.merkle_root = match task.job.merkle_root(&en2) {
                Ok(r) => r,
                Err(e) => {
                    error!(job = task.job.id(), "cannot build merkle root: {e}");
                    return None;
                }
            };
            cursor.extranonce2 = en2;
            cursor.next_version = task.versions.start;
            cursor.end_version = task.versions.end;
        }
        let version = task.version(cursor.next_version);
        cursor.next_version += 1;
        let ntime = task.job.ntime();
        let header = task.job.header(&cursor.merkle_root, version, ntime, 0);
        let tag = s.next_tag;
        s.next_tag += 1;
        let info = UnitInfo {
            tag,
            task: task.id,
            extranonce2: cursor.extranonce2.clone(),
            version,
            ntime,
        };
        let target = *task.share_target.as_be_bytes();
        if let Some(slot) = s.units.get_mut(worker) {
            *slot = Some(info);
        }
        Some(WorkUnit {
            header,
            target,
            nonce_start: 0,
            nonce_end: u32::MAX,
            tag,
        })
    }

    fn found(&self, worker: usize, unit: &WorkUnit, nonce: u32) {
        let info = {
            let s = self.lock();
            match s.units.get(worker).and_then(|u| u.clone()) {
                Some(u) if u.tag == unit.tag => u,
                _ => return,
            }
        };
        if let Some((index, sink)) = self.sink.get()
            && let Some(sink) = sink.upgrade()
        {
            sink.solution(
                *index,
                Solution {
                    task: info.task,
                    extranonce2: info.extranonce2,
                    version: info.version,
                    ntime: info.ntime,
                    nonce,
                },
            );
        }
    }
}

/// Operator and policy controls, folded into one mode for the duty loop.
#[derive(Clone, Copy, Default)]
struct Controls {
    paused: bool,
    limit_w: Option<f64>,
}

impl Controls {
    fn mode(&self) -> Mode {
        match (self.paused, self.limit_w) {
            (true, _) => Mode::Pause,
            (false, Some(w)) => Mode::Limit(w),
            (false, None) => Mode::Run,
        }
    }
}

/// The CPU hashing device.
pub struct CpuDevice {
    info: DeviceInfo,
    feeder: Arc<Feeder>,
    workers: Arc<Workers>,
    controls: Mutex<Controls>,
    mode: watch::Sender<Mode>,
    sensors: CpuSensors,
}

impl CpuDevice {
    /// Starts `threads` pinned hashing threads on `backend`. A power limit
    /// is duty-cycled with `model` in slices of `period` (needs a tokio
    /// runtime; without one limits are refused).
    pub fn start(
        backend: Arc<dyn Backend>,
        threads: usize,
        model: PowerModel,
        period: Duration,
    ) -> Arc<CpuDevice> {
        let threads = threads.max(1);
        let feeder = Arc::new(Feeder {
            state: Mutex::new(State {
                task: None,
                cursors: vec![Cursor::default(); threads],
                units: vec![None; threads],
                next_tag: 1,
            }),
            sink: OnceLock::new(),
            threads,
        });
        let name = backend.name();
        let workers = Arc::new(Workers::start(backend, threads, true, feeder.clone()));
        let (mode, rx) = watch::channel(Mode::Run);
        let power_limit = tokio::runtime::Handle::try_current().is_ok();
        if power_limit {
            tokio::spawn(duty_loop(workers.clone(), model, period, rx));
        }
        Arc::new(CpuDevice {
            info: DeviceInfo {
                name: "cpu".into(),
                kind: "cpu",
                model: format!("{name} × {threads} threads"),
                rolls_version: true,
                rolls_ntime: false,
                max_tasks: 1,
                min_difficulty: CPU_MIN_DIFFICULTY,
                power_limit,
            },
            feeder,
            workers,
            controls: Mutex::new(Controls::default()),
            mode,
            sensors: CpuSensors::discover(std::path::Path::new("/sys/class/hwmon")),
        })
    }

    /// Total nonces hashed (monotonic).
    pub fn hashes(&self) -> u64 {
        self.workers.hashes()
    }

    fn apply(&self, f: impl FnOnce(&mut Controls)) {
        let mode = {
            let mut c = self.controls.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c);
            c.mode()
        };
        // Pause and run act at once; the duty loop owns limits.
        match mode {
            Mode::Pause => self.workers.set_paused(true),
            Mode::Run => self.workers.set_paused(false),
            Mode::Limit(_) => {}
        }
        self.mode.send_replace(mode);
    }
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn attach(&self, index: usize, sink: Weak<dyn SolutionSink>) {
        if self.feeder.sink.set((index, sink)).is_err() {
            warn!("cpu device attached twice");
        }
    }

    fn assign(&self, task: Task, _replace: bool) {
        // The CPU mines only the newest task: switching costs nothing.
        self.feeder.lock().task = Some(task);
        self.workers.notify();
    }

    fn idle(&self) {
        self.feeder.lock().task = None;
        self.workers.notify();
    }

    fn control(&self, control: Control) -> Result<(), DeviceError> {
        match control {
            Control::Pause => self.apply(|c| c.paused = true),
            Control::Resume => self.apply(|c| c.paused = false),
            Control::PowerLimit(limit) => {
                if !self.info.power_limit && limit.is_some() {
                    return Err(DeviceError::Unsupported {
                        device: self.info.name.clone(),
                        what: "a power limit outside a tokio runtime",
                    });
                }
                self.apply(|c| c.limit_w = limit)
            }
        }
        Ok(())
    }

    fn telemetry(&self) -> Telemetry {
        let c = *self.controls.lock().unwrap_or_else(|p| p.into_inner());
        Telemetry {
            units: self
                .workers
                .thread_hashes()
                .into_iter()
                .enumerate()
                .map(|(i, hashes)| UnitTelemetry {
                    name: format!("thread-{i}"),
                    hashes,
                    hardware_errors: 0,
                })
                .collect(),
            temperatures: self.sensors.read(),
            fans: Vec::new(),
            power_w: None,
            paused: c.paused,
            power_limit_w: c.limit_w,
            tasks_in_flight: usize::from(self.feeder.lock().task.is_some()),
            problem: None,
        }
    }
}
