//! The miner: the one place that decides what is mined and what a result
//! is worth.
//!
//! Data flows one way: pool drivers hand in validated jobs and share
//! targets; the miner turns the active pool's newest job into a [`Task`]
//! per device (each device its own part of the search space) and receives
//! the devices' [`Solution`]s. Every solution is rebuilt into a header and
//! re-hashed with the host's own SHA-256d; only a hash that meets the pool's
//! share target becomes a share (block candidates are found among those).
//! Staleness is decided here and nowhere else: when a solution arrives and
//! again when the pool driver takes the share to submit it. Shares wait in a
//! bounded queue per pool and leave it at a bounded rate, so neither a
//! device nor a hostile pool can make the host flood the pool, the log or
//! its own memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hashwatt_work::{Job, Target, check_header, hash_to_display, rolling_space};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::device::{Devices, Extranonce2Range, Solution, SolutionSink, Task};
use crate::ratelimit::{LogDecision, LogLimiter, TokenBucket};
use crate::status::Status;

/// A pool's identity, stable while pools are added, moved and removed.
pub type PoolId = u64;

/// Jobs kept (for shares still being found on them) besides the newest.
const KEPT_JOBS: usize = 8;
/// Shares waiting for their pool driver, per pool; more are dropped (counted).
pub const SHARE_QUEUE: usize = 256;
/// Submits per second per pool, on average…
pub const SUBMIT_RATE: f64 = 50.0;
/// …and in a burst.
pub const SUBMIT_BURST: f64 = 100.0;
/// Parts of a job's search space handed out per device: a job can be
/// re-assigned this many times (pool switches) without repeating work.
const CHUNKS_PER_DEVICE: u128 = 64;
/// Seconds a device that rolls ntime may add to a job's ntime.
pub const NTIME_ROLL: u32 = 60;

/// A share on its way to the pool whose job it solves.
#[derive(Clone, Debug)]
pub struct FoundShare {
    /// The pool.
    pub pool: PoolId,
    /// The pool connection the job came from.
    pub connection: u64,
    /// Miner-wide job sequence number.
    pub job_seq: u64,
    /// The pool's job id.
    pub job_id: String,
    /// The extranonce2 used.
    pub extranonce2: Vec<u8>,
    /// The ntime used.
    pub ntime: u32,
    /// The nonce (header bytes 76..80, little-endian).
    pub nonce: u32,
    /// The full header version used.
    pub version: u32,
    /// The difficulty the hash achieves (for logs).
    pub difficulty: f64,
    /// The device that found it.
    pub device: usize,
}

/// What [`Miner::take_share`] has for a pool driver.
#[derive(Debug)]
pub enum Take {
    /// Submit this share now.
    Share(FoundShare),
    /// Shares are waiting, but the submit rate is used up: try again after this.
    Wait(Duration),
    /// Nothing to submit.
    Empty,
}

struct ActiveJob {
    seq: u64,
    connection: u64,
    job: Job,
    /// Next part of the search space to hand out.
    next_chunk: u128,
}

struct PoolJobs {
    jobs: VecDeque<ActiveJob>,
    share_target: Target,
    queue: VecDeque<FoundShare>,
    bucket: TokenBucket,
    ready: Arc<Notify>,
}

struct TaskRecord {
    pool: PoolId,
    job_seq: u64,
    connection: u64,
    device: usize,
    task: Task,
}

struct State {
    pools: HashMap<PoolId, PoolJobs>,
    active: Option<PoolId>,
    next_seq: u64,
    next_task: u64,
    tasks: HashMap<u64, TaskRecord>,
    /// Logs about device results that a broken device could repeat.
    hw_log: LogLimiter,
    drop_log: LogLimiter,
}

/// Feeds the devices from the active pool's jobs and judges their solutions.
pub struct Miner {
    state: Mutex<State>,
    devices: Devices,
    status: Arc<Status>,
    min_difficulty: f64,
}

impl Miner {
    /// A miner driving `devices`; it attaches itself as their solution sink.
    pub fn new(devices: Devices, status: Arc<Status>) -> Arc<Self> {
        let min_difficulty = devices
            .iter()
            .map(|d| d.info().min_difficulty)
            .fold(0.0, f64::max);
        let miner = Arc::new(Miner {
            state: Mutex::new(State {
                pools: HashMap::new(),
                active: None,
                next_seq: 1,
                next_task: 1,
                tasks: HashMap::new(),
                hw_log: LogLimiter::new(Duration::from_secs(60), 5),
                drop_log: LogLimiter::new(Duration::from_secs(60), 3),
            }),
            devices,
            status,
            min_difficulty,
        });
        let sink: Arc<dyn SolutionSink> = miner.clone();
        let weak: Weak<dyn SolutionSink> = Arc::downgrade(&sink);
        for (i, d) in miner.devices.iter().enumerate() {
            d.attach(i, weak.clone());
        }
        miner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The devices mined with.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// Whether every device rolls version bits (so pools may offer it).
    pub fn can_roll_version(&self) -> bool {
        !self.devices.is_empty() && self.devices.iter().all(|d| d.info().rolls_version)
    }

    /// The easiest share difficulty every device can be asked for.
    pub fn min_difficulty(&self) -> f64 {
        self.min_difficulty
    }

    /// Starts tracking pool `pool` (idempotent).
    pub fn add_pool(&self, pool: PoolId) {
        self.lock().pools.entry(pool).or_insert_with(|| PoolJobs {
            jobs: VecDeque::new(),
            share_target: Target::DIFF1,
            queue: VecDeque::new(),
            bucket: TokenBucket::new(SUBMIT_RATE, SUBMIT_BURST),
            ready: Arc::new(Notify::new()),
        });
    }

    /// Forgets pool `pool` (removed by the operator).
    pub fn remove_pool(&self, pool: PoolId) {
        self.clear(pool);
        let mut s = self.lock();
        s.pools.remove(&pool);
        if s.active == Some(pool) {
            s.active = None;
        }
    }

    /// Woken whenever a share for `pool` is queued.
    pub fn share_ready(&self, pool: PoolId) -> Option<Arc<Notify>> {
        self.lock().pools.get(&pool).map(|p| p.ready.clone())
    }

    /// A new job from `pool` on its connection `connection`.
    pub fn new_job(&self, pool: PoolId, connection: u64, job: Job) {
        let assign = {
            let mut guard = self.lock();
            let s = &mut *guard;
            let seq = s.next_seq;
            s.next_seq += 1;
            let Some(p) = s.pools.get_mut(&pool) else {
                return;
            };
            let clean = job.clean();
            if clean {
                p.jobs.clear();
            }
            // Jobs of an older connection are worthless on this one.
            p.jobs.retain(|j| j.connection == connection);
            p.jobs.push_front(ActiveJob {
                seq,
                connection,
                job,
                next_chunk: 0,
            });
            p.jobs.truncate(KEPT_JOBS + 1);
            let live: Vec<u64> = p.jobs.iter().map(|j| j.seq).collect();
            s.tasks
                .retain(|_, t| t.pool != pool || live.contains(&t.job_seq));
            (s.active == Some(pool)).then_some(clean)
        };
        self.status.update(|c| c.jobs += 1);
        if let Some(clean) = assign {
            self.assign_newest(clean);
        }
    }

    /// Pool `pool` set its share target. Refused (with the reason) when it is
    /// easier than the devices can be asked for or impossible to meet.
    pub fn set_share_target(&self, pool: PoolId, target: Target) -> Result<(), String> {
        let d = target.difficulty();
        if !d.is_finite() || target == Target([0; 32]) {
            return Err(format!(
                "share target {target} can never be met; keeping the previous one"
            ));
        }
        if d < self.min_difficulty {
            return Err(format!(
                "share difficulty {d:e} is below the devices' minimum {:e}; keeping the previous one",
                self.min_difficulty
            ));
        }
        let changed = {
            let mut s = self.lock();
            let Some(p) = s.pools.get_mut(&pool) else {
                return Ok(());
            };
            let changed = p.share_target != target;
            p.share_target = target;
            changed
        };
        if changed {
            info!(
                pool,
                difficulty = format_args!("{d:.6}"),
                "share target set"
            );
        }
        Ok(())
    }

    /// Drops every job and queued share of `pool` (connection lost): if it
    /// was the active pool, the devices idle until another pool is chosen.
    pub fn clear(&self, pool: PoolId) {
        let (was_active, dropped) = {
            let mut s = self.lock();
            let dropped = s.pools.get_mut(&pool).map_or(0, |p| {
                p.jobs.clear();
                std::mem::take(&mut p.queue).len() as u64
            });
            s.tasks.retain(|_, t| t.pool != pool);
            (s.active == Some(pool), dropped)
        };
        if dropped > 0 {
            self.status.update(|c| c.stale += dropped);
            self.status.update_pool(pool, |p| p.stale += dropped);
        }
        if was_active {
            for d in &self.devices {
                d.idle();
            }
        }
    }

    /// Mines on `pool`'s jobs from now on (`None`: nothing to mine).
    pub fn set_active(&self, pool: Option<PoolId>) {
        let changed = {
            let mut s = self.lock();
            let changed = s.active != pool;
            s.active = pool;
            changed
        };
        if changed {
            self.assign_newest(true);
        }
    }

    /// The pool being mined on.
    pub fn active(&self) -> Option<PoolId> {
        self.lock().active
    }

    /// Hands the active pool's newest job to every device (or idles them).
    fn assign_newest(&self, replace: bool) {
        let tasks = {
            let mut guard = self.lock();
            let s = &mut *guard;
            let n = self.devices.len();
            let mut tasks = Vec::with_capacity(n);
            if let Some(pool) = s.active
                && let Some(p) = s.pools.get_mut(&pool)
                && let Some(newest) = p.jobs.front_mut()
            {
                for (device, d) in self.devices.iter().enumerate() {
                    let info = d.info();
                    let Some((extranonce2, versions)) = next_chunk(newest, n) else {
                        warn!(
                            job = newest.job.id(),
                            "search space of this job used up; waiting for a new job"
                        );
                        break;
                    };
                    let id = s.next_task;
                    s.next_task += 1;
                    let versions = if info.rolls_version {
                        versions
                    } else {
                        versions.start..versions.start + 1
                    };
                    let task = Task {
                        id,
                        job: newest.job.clone(),
                        extranonce2,
                        versions,
                        ntime_roll: if info.rolls_ntime { NTIME_ROLL } else { 0 },
                        share_target: p.share_target,
                    };
                    s.tasks.insert(
                        id,
                        TaskRecord {
                            pool,
                            job_seq: newest.seq,
                            connection: newest.connection,
                            device,
                            task: task.clone(),
                        },
                    );
                    tasks.push((device, task));
                }
            }
            tasks
        };
        if tasks.is_empty() {
            for d in &self.devices {
                d.idle();
            }
            return;
        }
        for (device, task) in tasks {
            if let Some(d) = self.devices.get(device) {
                d.assign(task, replace);
            }
        }
    }

    /// The next share `pool`'s driver may submit on its connection
    /// `connection` at `now`: still live, within the submit rate.
    pub fn take_share(&self, pool: PoolId, connection: u64, now: Instant) -> Take {
        let mut stale = 0u64;
        let out = {
            let mut guard = self.lock();
            let s = &mut *guard;
            let Some(p) = s.pools.get_mut(&pool) else {
                return Take::Empty;
            };
            loop {
                let Some(front) = p.queue.front() else {
                    break Take::Empty;
                };
                let live =
                    front.connection == connection && p.jobs.iter().any(|j| j.seq == front.job_seq);
                if !live {
                    p.queue.pop_front();
                    stale += 1;
                    continue;
                }
                match p.bucket.take(now) {
                    Ok(()) => match p.queue.pop_front() {
                        Some(share) => break Take::Share(share),
                        None => break Take::Empty,
                    },
                    Err(wait) => break Take::Wait(wait),
                }
            }
        };
        if stale > 0 {
            self.status.update(|c| c.stale += stale);
            self.status.update_pool(pool, |p| p.stale += stale);
        }
        out
    }

    fn hardware_error(&self, device: usize, why: std::fmt::Arguments<'_>) {
        self.status
            .update_device(device, |d| d.hardware_errors += 1);
        self.status.update(|c| c.hardware_errors += 1);
        let decision = self.lock().hw_log.check(Instant::now());
        if let LogDecision::Write { suppressed } = decision {
            warn!(
                device,
                suppressed, "device result refused by the host's re-check: {why}"
            );
        }
    }
}

/// The next part of `job`'s search space for one of `devices` devices.
fn next_chunk(
    job: &mut ActiveJob,
    devices: usize,
) -> Option<(Extranonce2Range, std::ops::Range<u64>)> {
    let space = rolling_space(job.job.version_mask());
    let size = job.job.extranonce2_size();
    let wanted = CHUNKS_PER_DEVICE * devices.max(1) as u128;
    let chunk = job.next_chunk;
    if size == 0 {
        // Fixed merkle root: devices share it, so they split the versions.
        let parts = wanted.min(u128::from(space));
        if chunk >= parts {
            return None;
        }
        job.next_chunk += 1;
        let each = u128::from(space) / parts;
        let start = (chunk * each) as u64;
        Some((Extranonce2Range::NONE, start..start + each as u64))
    } else {
        let total: u128 = if size >= 16 {
            u128::MAX
        } else {
            1u128 << (8 * size)
        };
        let parts = wanted.min(total);
        if chunk >= parts {
            return None;
        }
        job.next_chunk += 1;
        let range = Extranonce2Range::slice(size, chunk as usize, parts as usize).ok()?;
        Some((range, 0..space))
    }
}

impl SolutionSink for Miner {
    fn solution(&self, device: usize, sol: Solution) {
        // Everything about the task, read under one lock.
        let found = {
            let s = self.lock();
            s.tasks.get(&sol.task).map(|t| {
                let pool = s.pools.get(&t.pool);
                let live = pool.is_some_and(|p| {
                    p.jobs
                        .iter()
                        .any(|j| j.seq == t.job_seq && j.connection == t.connection)
                });
                let share_target = pool.map_or(t.task.share_target, |p| p.share_target);
                (
                    t.pool,
                    t.job_seq,
                    t.connection,
                    t.device,
                    t.task.clone(),
                    live,
                    share_target,
                )
            })
        };
        self.status.update_device(device, |d| d.solutions += 1);
        let Some((pool, job_seq, connection, owner, task, live, share_target)) = found else {
            // The task's job is gone (cleared, superseded): stale.
            self.status.update(|c| c.stale += 1);
            return;
        };
        if owner != device {
            return self.hardware_error(device, format_args!("task {} is not its own", task.id));
        }
        let job = &task.job;
        if !task.extranonce2.contains(&sol.extranonce2) {
            return self.hardware_error(device, format_args!("extranonce2 outside its task"));
        }
        if !job.version_allowed(sol.version) {
            return self.hardware_error(
                device,
                format_args!("version {:08x} outside the job's mask", sol.version),
            );
        }
        if sol.ntime < job.ntime() || sol.ntime > job.ntime().saturating_add(task.ntime_roll) {
            return self.hardware_error(device, format_args!("ntime {} out of range", sol.ntime));
        }
        let header = match job.header_for(&sol.extranonce2, sol.version, sol.ntime, sol.nonce) {
            Ok(h) => h,
            Err(e) => return self.hardware_error(device, format_args!("{e}")),
        };
        // A difficulty raised since the task was made applies at once.
        let share_target = share_target.min(task.share_target);
        let check = check_header(&header, &share_target, &job.network_target());
        if !task.share_target.is_met_by(&check.hash) {
            return self.hardware_error(
                device,
                format_args!(
                    "nonce {:08x} does not meet its task's target (hash {})",
                    sol.nonce,
                    hash_to_display(&check.hash)
                ),
            );
        }
        if !check.meets_share {
            debug!(device, "solution below the pool's raised difficulty");
            return;
        }
        if check.meets_network {
            self.status.update(|c| c.blocks += 1);
            info!(hash = %hash_to_display(&check.hash), "block candidate found");
        }
        if !live {
            self.status.update(|c| c.stale += 1);
            self.status.update_pool(pool, |p| p.stale += 1);
            return;
        }
        let share = FoundShare {
            pool,
            connection,
            job_seq,
            job_id: job.id().to_string(),
            extranonce2: sol.extranonce2,
            ntime: sol.ntime,
            nonce: sol.nonce,
            version: sol.version,
            difficulty: hashwatt_work::hash_difficulty(&check.hash),
            device,
        };
        let (ready, dropped, log) = {
            let mut guard = self.lock();
            let s = &mut *guard;
            let Some(p) = s.pools.get_mut(&pool) else {
                return;
            };
            let dropped = p.queue.len() >= SHARE_QUEUE;
            if !dropped {
                p.queue.push_back(share);
            }
            let log = dropped.then(|| s.drop_log.check(Instant::now()));
            (p.ready.clone(), dropped, log)
        };
        if dropped {
            self.status.update(|c| c.throttled += 1);
            self.status.update_pool(pool, |p| p.throttled += 1);
            if let Some(LogDecision::Write { suppressed }) = log {
                warn!(
                    pool,
                    suppressed,
                    "share queue full ({SHARE_QUEUE}): shares come faster than {SUBMIT_RATE}/s may be submitted; dropping"
                );
            }
        } else {
            ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashwatt_work::{JobSpec, WorkKindSpec};

    fn job(id: &str, mask: u32, fixed_root: bool, nbits: u32) -> Job {
        let kind = if fixed_root {
            WorkKindSpec::MerkleRoot(vec![9; 32])
        } else {
            WorkKindSpec::Extended {
                coinbase_prefix: vec![1; 50],
                extranonce1: vec![2; 4],
                extranonce2_size: 4,
                coinbase_suffix: vec![3; 50],
                merkle_branches: vec![vec![4; 32]],
            }
        };
        Job::validate(JobSpec {
            id: id.into(),
            kind,
            prev_hash: vec![id.as_bytes()[0]; 32],
            version: 0x2000_0000,
            version_mask: mask,
            nbits,
            ntime: 1_700_000_000,
            clean: false,
        })
        .unwrap()
    }

    /// A device that never hashes: the tests hand in solutions themselves.
    struct Quiet(crate::device::DeviceInfo);

    impl crate::device::Device for Quiet {
        fn info(&self) -> &crate::device::DeviceInfo {
            &self.0
        }
        fn attach(&self, _: usize, _: Weak<dyn SolutionSink>) {}
        fn assign(&self, _: Task, _: bool) {}
        fn idle(&self) {}
        fn control(&self, _: crate::device::Control) -> Result<(), crate::device::DeviceError> {
            Ok(())
        }
        fn telemetry(&self) -> crate::device::Telemetry {
            crate::device::Telemetry::default()
        }
    }

    fn quiet() -> Arc<dyn crate::device::Device> {
        Arc::new(Quiet(crate::device::DeviceInfo {
            name: "quiet".into(),
            kind: "simulated",
            model: String::new(),
            rolls_version: true,
            rolls_ntime: false,
            max_tasks: 1,
            min_difficulty: 1e-6,
            power_limit: false,
        }))
    }

    /// Device 0 reports `nonce` on `task` with its job's own version and ntime.
    fn report(m: &Miner, task: &Task, en2: &[u8], nonce: u32) {
        m.solution(
            0,
            Solution {
                task: task.id,
                extranonce2: en2.to_vec(),
                version: task.job.version(),
                ntime: task.job.ntime(),
                nonce,
            },
        );
    }

    #[test]
    fn chunks_are_disjoint_for_extended_and_fixed_root_jobs() {
        for fixed in [false, true] {
            let mut j = ActiveJob {
                seq: 1,
                connection: 1,
                job: job("a", 0x1fff_e000, fixed, 0x1d00_ffff),
                next_chunk: 0,
            };
            let mut seen_en2 = Vec::new();
            let mut seen_versions = Vec::new();
            for _ in 0..10 {
                let (en2, v) = next_chunk(&mut j, 2).unwrap();
                if fixed {
                    assert!(
                        seen_versions
                            .iter()
                            .all(|r: &std::ops::Range<u64>| r.end <= v.start || v.end <= r.start)
                    );
                    seen_versions.push(v);
                } else {
                    let first = en2.value(0).unwrap();
                    assert!(
                        !seen_en2
                            .iter()
                            .any(|r: &Extranonce2Range| r.contains(&first))
                    );
                    seen_en2.push(en2);
                }
            }
        }
    }

    #[test]
    fn absurd_share_targets_are_refused() {
        let m = Miner::new(vec![quiet()], Arc::default());
        m.add_pool(1);
        assert!(m.set_share_target(1, Target([0; 32])).is_err());
        assert!(
            m.set_share_target(1, Target::MAX).is_err(),
            "difficulty ~1e-10 is below the minimum"
        );
        assert!(
            m.set_share_target(1, Target::from_difficulty(0.001).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn regtest_network_target_does_not_make_shares() {
        // Regtest nbits: the block target is far easier than the share target.
        let m = Miner::new(vec![quiet()], Arc::default());
        m.add_pool(1);
        m.set_share_target(1, Target::from_difficulty(1.0).unwrap())
            .unwrap();
        m.new_job(1, 1, job("r", 0, false, 0x207f_ffff));
        // Find a nonce that meets the regtest target (nearly every other one)
        // but not difficulty 1.
        let task = m.lock().tasks.values().next().map(|t| t.task.clone());
        assert!(task.is_none(), "no active pool yet: no task");
        m.set_active(Some(1));
        let task = m.lock().tasks.values().next().unwrap().task.clone();
        let en2 = task.extranonce2.value(0).unwrap();
        let mut submitted = 0;
        for nonce in 0..200u32 {
            report(&m, &task, &en2, nonce);
            while let Take::Share(_) = m.take_share(1, 1, Instant::now()) {
                submitted += 1;
            }
        }
        assert_eq!(
            submitted, 0,
            "hashes meeting only the regtest target are not shares"
        );
        assert!(
            m.status.snapshot().hardware_errors > 0,
            "a device claiming them is wrong"
        );
    }

    #[test]
    fn queue_is_bounded_and_submits_rate_limited() {
        let status = Arc::new(Status::default());
        let m = Miner::new(vec![quiet()], status.clone());
        m.add_pool(7);
        m.set_share_target(7, Target::from_difficulty(1e-6).unwrap())
            .unwrap();
        m.new_job(7, 3, job("q", 0, false, 0x1d00_ffff));
        m.set_active(Some(7));
        // Force the share target to MAX to make every nonce a share.
        {
            let mut s = m.lock();
            s.pools.get_mut(&7).unwrap().share_target = Target::MAX;
            for t in s.tasks.values_mut() {
                t.task.share_target = Target::MAX;
            }
        }
        let task = m
            .lock()
            .tasks
            .values()
            .find(|t| t.device == 0)
            .unwrap()
            .task
            .clone();
        let en2 = task.extranonce2.value(0).unwrap();
        for nonce in 0..(SHARE_QUEUE as u32 + 50) {
            report(&m, &task, &en2, nonce);
        }
        assert_eq!(status.snapshot().throttled, 50);
        let t0 = Instant::now();
        let mut taken = 0;
        while let Take::Share(_) = m.take_share(7, 3, t0) {
            taken += 1;
        }
        assert_eq!(taken, SUBMIT_BURST as usize);
        assert!(matches!(m.take_share(7, 3, t0), Take::Wait(_)));
        // A share of another connection is stale, never submitted.
        assert!(matches!(
            m.take_share(7, 4, t0 + Duration::from_secs(10)),
            Take::Empty
        ));
        assert!(status.snapshot().stale > 0);
    }
}
