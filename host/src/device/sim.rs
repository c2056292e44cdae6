//! A simulated hashing device that behaves like an ASIC chain from the
//! miner's side: it keeps several tasks in flight, rolls version bits and
//! ntime itself, scans only part of each header's nonce range and reports
//! solutions with the rolled fields. It hashes for real (with a CPU
//! backend), so its solutions are real shares. Used by the tests to prove
//! the miner and the pool driver have no device-specific code, and handy
//! for demos.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use hashwatt_hash::{Backend, Prepared};

use super::{
    Control, Device, DeviceError, DeviceInfo, Solution, SolutionSink, Task, Telemetry,
    UnitTelemetry,
};

/// Nonces scanned per header before the device rolls version or ntime.
const NONCES_PER_HEADER: u32 = 1 << 20;
/// Largest ntime offset the device uses (within the task's allowance).
const MAX_NTIME_OFFSET: u32 = 30;

struct InFlight {
    task: Task,
    step: u64,
}

struct State {
    tasks: VecDeque<InFlight>,
    next: usize,
    paused: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stop: AtomicBool,
    hashes: AtomicU64,
    max_tasks: usize,
    sink: OnceLock<(usize, Weak<dyn SolutionSink>)>,
}

/// A device with `max_tasks` tasks in flight that rolls version and ntime.
pub struct SimDevice {
    info: DeviceInfo,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SimDevice {
    /// Starts the device's hashing thread on `backend`.
    pub fn start(name: &str, backend: Arc<dyn Backend>, max_tasks: usize) -> Arc<SimDevice> {
        let max_tasks = max_tasks.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tasks: VecDeque::new(),
                next: 0,
                paused: false,
            }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            hashes: AtomicU64::new(0),
            max_tasks,
            sink: OnceLock::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-core"))
            .spawn(move || run(&s, &*backend))
            .ok();
        Arc::new(SimDevice {
            info: DeviceInfo {
                name: name.into(),
                kind: "simulated",
                model: format!("simulated chain, {max_tasks} tasks in flight"),
                rolls_version: true,
                rolls_ntime: true,
                max_tasks,
                min_difficulty: 1e-6,
                power_limit: false,
            },
            shared,
            thread: Mutex::new(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The header fields of step `step` of `task`: extranonce2 index, version, ntime.
fn step_fields(task: &Task, step: u64) -> Option<(Vec<u8>, u32, u32)> {
    let ntimes = u64::from(task.ntime_roll.min(MAX_NTIME_OFFSET)) + 1;
    let versions = task.versions.end.saturating_sub(task.versions.start).max(1);
    // Rolled ntime first (offset 1, 2, …, then the job's own), like versions.
    let offset = ((step + 1) % ntimes) as u32;
    let v = task.versions.start + (step / ntimes) % versions;
    let en2_index = u128::from(step / ntimes / versions);
    let en2 = task.extranonce2.value(en2_index)?;
    let version = task.version(v);
    Some((en2, version, task.job.ntime().saturating_add(offset)))
}

fn run(shared: &Shared, backend: &dyn Backend) {
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        // Pick the next task round-robin and take one step of it.
        let picked = {
            let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.paused || s.tasks.is_empty() {
                let _ = shared.wake.wait_timeout(s, Duration::from_millis(200));
                continue;
            }
            let i = s.next % s.tasks.len();
            s.next = s.next.wrapping_add(1);
            s.tasks.get_mut(i).map(|f| {
                let step = f.step;
                f.step += 1;
                (f.task.clone(), step)
            })
        };
        let Some((task, step)) = picked else { continue };
        let Some((en2, version, ntime)) = step_fields(&task, step) else {
            // This task's space is used up: drop it.
            let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            s.tasks.retain(|f| f.task.id != task.id);
            continue;
        };
        let Ok(root) = task.job.merkle_root(&en2) else {
            continue;
        };
        let header = task.job.header(&root, version, ntime, 0);
        let prepared = Prepared::new(&header, task.share_target.as_be_bytes());
        let mut found = Vec::new();
        backend.scan(&prepared, 0, NONCES_PER_HEADER, &mut |n| found.push(n));
        shared
            .hashes
            .fetch_add(u64::from(NONCES_PER_HEADER), Ordering::Relaxed);
        if let Some((index, sink)) = shared.sink.get()
            && let Some(sink) = sink.upgrade()
        {
            for nonce in found {
                sink.solution(
                    *index,
                    Solution {
                        task: task.id,
                        extranonce2: en2.clone(),
                        version,
                        ntime,
                        nonce,
                    },
                );
            }
        }
    }
}

impl Device for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn attach(&self, index: usize, sink: Weak<dyn SolutionSink>) {
        let _ = self.shared.sink.set((index, sink));
    }

    fn assign(&self, task: Task, replace: bool) {
        let mut s = self.lock();
        if replace {
            s.tasks.clear();
        }
        s.tasks.push_front(InFlight { task, step: 0 });
        let max = self.shared.max_tasks;
        s.tasks.truncate(max);
        drop(s);
        self.shared.wake.notify_all();
    }

    fn idle(&self) {
        self.lock().tasks.clear();
    }

    fn control(&self, control: Control) -> Result<(), DeviceError> {
        match control {
            Control::Pause => self.lock().paused = true,
            Control::Resume => {
                self.lock().paused = false;
                self.shared.wake.notify_all();
            }
            Control::PowerLimit(None) => {}
            Control::PowerLimit(Some(_)) => {
                return Err(DeviceError::Unsupported {
                    device: self.info.name.clone(),
                    what: "power limits",
                });
            }
        }
        Ok(())
    }

    fn telemetry(&self) -> Telemetry {
        let s = self.lock();
        Telemetry {
            units: vec![UnitTelemetry {
                name: "core-0".into(),
                hashes: self.shared.hashes.load(Ordering::Relaxed),
                hardware_errors: 0,
            }],
            temperatures: Vec::new(),
            fans: Vec::new(),
            power_w: None,
            paused: s.paused,
            power_limit_w: None,
            tasks_in_flight: s.tasks.len(),
            problem: None,
        }
    }
}
