//! CPU hashing workers: one pinned thread per core scanning work units.
//!
//! The host hands work out through [`WorkSource`]; workers pull a unit when
//! they start, when it is exhausted and after [`Workers::notify`]. Between
//! small batches (sized to ~0.2 ms) a worker only reads two atomics (the
//! notify generation and the pause/stop flags), so new work is picked up well
//! within a millisecond while the inner loop stays free of synchronisation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Prepared};

/// A header to scan over an inclusive nonce range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkUnit {
    /// The 80-byte header; its nonce field is ignored.
    pub header: [u8; 80],
    /// The target, big-endian (display order).
    pub target: [u8; 32],
    /// First nonce to scan.
    pub nonce_start: u32,
    /// Last nonce to scan (inclusive).
    pub nonce_end: u32,
    /// Caller's id, echoed in [`WorkSource::found`].
    pub tag: u64,
}

/// Where workers get work from and report results to.
pub trait WorkSource: Send + Sync + 'static {
    /// A worker needs work: at start, after `Workers::notify`, and when its
    /// unit is exhausted. `None` = nothing to mine; the worker parks until
    /// the next notify.
    fn next_work(&self, worker: usize) -> Option<WorkUnit>;
    /// Called on the worker thread for every nonce of `unit` whose SHA-256d
    /// meets `unit.target`. Must return quickly (the host just pushes to a
    /// channel).
    fn found(&self, worker: usize, unit: &WorkUnit, nonce: u32);
}

const FLAG_PAUSED: u32 = 1;
const FLAG_STOP: u32 = 2;

/// Batch sizing: aim for batches of 100–300 µs so notify latency stays far
/// below 1 ms on any backend while per-batch overhead stays negligible.
const BATCH_MIN: u64 = 64;
const BATCH_MAX: u64 = 1 << 20;
const BATCH_START: u64 = 2048;
const BATCH_LOW: Duration = Duration::from_micros(100);
const BATCH_HIGH: Duration = Duration::from_micros(300);

/// A per-worker hash counter on its own cache lines, so workers never
/// contend on counter writes.
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

struct Shared {
    generation: AtomicU64,
    flags: AtomicU32,
    counters: Box<[Counter]>,
}

/// A running pool of hashing threads; dropping it stops and joins them.
pub struct Workers {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    backend_name: &'static str,
}

impl Workers {
    /// Starts `threads` workers (0 = one per core) scanning with `backend`,
    /// pinned one per core if `pin`. Threads that cannot be spawned are
    /// logged and left out ([`Workers::threads`] tells how many run).
    pub fn start(
        backend: Arc<dyn Backend>,
        threads: usize,
        pin: bool,
        source: Arc<dyn WorkSource>,
    ) -> Workers {
        let n = if threads == 0 {
            default_threads()
        } else {
            threads
        };
        let cores = if pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            flags: AtomicU32::new(0),
            counters: (0..n).map(|_| Counter::default()).collect(),
        });
        let mut handles = Vec::with_capacity(n);
        for id in 0..n {
            let core = if cores.is_empty() {
                None
            } else {
                cores.get(id % cores.len()).copied()
            };
            let shared = shared.clone();
            let backend = backend.clone();
            let source = source.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hash-{id}"))
                .spawn(move || {
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core)
                    {
                        tracing::debug!(
                            worker = id,
                            core = core.id,
                            "could not pin hashing thread"
                        );
                    }
                    lower_priority(id);
                    worker_loop(id, &shared, &*backend, &*source);
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "could not spawn hashing thread")
                }
            }
        }
        let threads = handles.iter().map(|h| h.thread().clone()).collect();
        tracing::info!(
            backend = backend.name(),
            threads = handles.len(),
            pin,
            "hashing workers started"
        );
        Workers {
            shared,
            threads,
            handles,
            backend_name: backend.name(),
        }
    }

    /// New work: every worker abandons its unit and calls `next_work` again.
    pub fn notify(&self) {
        self.shared.generation.fetch_add(1, Ordering::Release);
        self.wake_all();
    }

    /// Paused workers park (no CPU) and keep their unit; resuming continues
    /// it (or fetches new work if a notify came in between).
    pub fn set_paused(&self, paused: bool) {
        if paused {
            self.shared.flags.fetch_or(FLAG_PAUSED, Ordering::Release);
        } else {
            self.shared.flags.fetch_and(!FLAG_PAUSED, Ordering::Release);
            self.wake_all();
        }
    }

    /// Total nonces hashed so far by all workers (monotonic), for hashrate.
    pub fn hashes(&self) -> u64 {
        self.shared
            .counters
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Nonces hashed so far by each worker thread (monotonic), for
    /// per-thread rates.
    pub fn thread_hashes(&self) -> Vec<u64> {
        self.shared
            .counters
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .collect()
    }

    /// Number of running worker threads.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    /// Name of the backend the workers scan with.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    fn wake_all(&self) {
        for t in &self.threads {
            t.unpark();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.flags.fetch_or(FLAG_STOP, Ordering::Release);
        self.wake_all();
        let me = std::thread::current().id();
        for h in self.handles.drain(..) {
            // The last owner may let go on a worker thread itself (a
            // callback holding the source): that thread ends on its own
            // once it sees the stop flag; joining it would deadlock.
            if h.thread().id() == me {
                continue;
            }
            if h.join().is_err() {
                tracing::error!("a hashing thread panicked");
            }
        }
    }
}

/// One worker per core the process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Parks until the generation moves past `generation` or the pool stops.
fn park_until_notify(shared: &Shared, generation: u64) {
    while shared.generation.load(Ordering::Acquire) == generation
        && shared.flags.load(Ordering::Acquire) & FLAG_STOP == 0
    {
        std::thread::park();
    }
}

fn worker_loop(id: usize, shared: &Shared, backend: &dyn Backend, source: &dyn WorkSource) {
    let Some(counter) = shared.counters.get(id) else {
        return;
    };
    let mut batch = BATCH_START;
    'fetch: loop {
        let flags = shared.flags.load(Ordering::Acquire);
        if flags & FLAG_STOP != 0 {
            return;
        }
        if flags & FLAG_PAUSED != 0 {
            std::thread::park();
            continue;
        }
        let generation = shared.generation.load(Ordering::Acquire);
        let Some(unit) = source.next_work(id) else {
            park_until_notify(shared, generation);
            continue;
        };
        if unit.nonce_start > unit.nonce_end {
            tracing::warn!(
                worker = id,
                tag = unit.tag,
                "empty nonce range in work unit; waiting for new work"
            );
            park_until_notify(shared, generation);
            continue;
        }
        let job = Prepared::new(&unit.header, &unit.target);
        let mut pos = unit.nonce_start as u64;
        let end = unit.nonce_end as u64 + 1;
        let mut report = |nonce: u32| source.found(id, &unit, nonce);
        while pos < end {
            if shared.generation.load(Ordering::Relaxed) != generation {
                continue 'fetch;
            }
            let flags = shared.flags.load(Ordering::Relaxed);
            if flags != 0 {
                if flags & FLAG_STOP != 0 {
                    return;
                }
                // Paused: keep the unit, park until resumed, stopped or notified.
                while shared.flags.load(Ordering::Acquire) == FLAG_PAUSED
                    && shared.generation.load(Ordering::Acquire) == generation
                {
                    std::thread::park();
                }
                continue;
            }
            let n = batch.min(end - pos);
            let t0 = Instant::now();
            // `pos < 2^32` and `pos + n <= 2^32`, as `scan` requires.
            backend.scan(&job, pos as u32, n as u32, &mut report);
            counter.0.fetch_add(n, Ordering::Relaxed);
            pos += n;
            if n == batch {
                let dt = t0.elapsed();
                if dt < BATCH_LOW {
                    batch = (batch * 2).min(BATCH_MAX);
                } else if dt > BATCH_HIGH {
                    batch = (batch / 2).max(BATCH_MIN);
                }
            }
        }
    }
}

/// Niceness of hashing threads. Hashing uses every spare cycle; the control
/// plane (pool I/O, plugin calls with wall-clock budgets, policies) must win
/// the CPU whenever it needs it, or a busy core could make a plugin miss its
/// time budget. On an otherwise idle appliance the hashrate is unchanged.
const WORKER_NICENESS: i32 = 10;

/// Lowers the calling (worker) thread's scheduling priority.
fn lower_priority(worker: usize) {
    #[cfg(target_os = "linux")]
    {
        // On Linux, PRIO_PROCESS with who = 0 applies to the calling thread.
        // SAFETY: setpriority only reads its integer arguments.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICENESS) };
        if rc != 0 {
            tracing::debug!(worker, "could not lower hashing thread priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (worker, WORKER_NICENESS);
}
