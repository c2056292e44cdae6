//! The miner: owns the jobs currently worth mining and feeds the hashing
//! workers from them.
//!
//! Data flows one way: the pool driver hands in validated jobs and share
//! targets; the workers pull [`WorkUnit`]s (one header, the whole nonce
//! range) and push back nonces; the miner re-checks each nonce independently
//! and forwards real shares to the pool driver. Nothing here runs per nonce:
//! `next_work` is called once per 2^32 nonces or per new job, `found` once
//! per share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use hashwatt_hash::{WorkSource, WorkUnit, Workers};
use hashwatt_work::{
    Extranonce2Space, Job, Target, check_header, hash_to_display, rolled_version, rolling_space,
};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use crate::status::Status;

/// Jobs kept (for shares still being found on them) besides the newest.
const KEPT_JOBS: usize = 8;

/// A share found by the workers, on its way to the pool that sent the job.
#[derive(Clone, Debug)]
pub struct FoundShare {
    /// Index of the pool (in priority order) whose job this solves.
    pub pool: usize,
    /// The connection the job came from; shares of older connections are stale.
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
}

struct ActiveJob {
    seq: u64,
    pool: usize,
    connection: u64,
    job: Job,
    share_target: Target,
}

/// What a worker is mining, so `found` can rebuild the share.
#[derive(Clone)]
struct UnitInfo {
    tag: u64,
    pool: usize,
    job_seq: u64,
    connection: u64,
    job: Job,
    extranonce2: Vec<u8>,
    version: u32,
    ntime: u32,
    share_target: Target,
}

/// Per-worker position in the newest job's search space.
#[derive(Default)]
struct Cursor {
    job_seq: u64,
    extranonce2: Vec<u8>,
    merkle_root: [u8; 32],
    next_version: u64,
}

/// One pool's jobs, newest first, and its current share target.
struct PoolJobs {
    jobs: VecDeque<ActiveJob>,
    share_target: Target,
}

struct State {
    pools: Vec<PoolJobs>,
    active: Option<usize>,
    next_seq: u64,
    next_tag: u64,
    extranonce: Option<(u64, Extranonce2Space)>,
    cursors: Vec<Cursor>,
    units: Vec<Option<UnitInfo>>,
}

/// Feeds the hashing workers from the active pool's jobs.
pub struct Miner {
    state: Mutex<State>,
    workers: OnceLock<Weak<Workers>>,
    shares: Vec<UnboundedSender<FoundShare>>,
    status: Arc<Status>,
    threads: usize,
}

impl Miner {
    /// A miner for `threads` workers; `shares[i]` receives pool `i`'s shares.
    pub fn new(
        threads: usize,
        shares: Vec<UnboundedSender<FoundShare>>,
        status: Arc<Status>,
    ) -> Arc<Self> {
        Arc::new(Miner {
            state: Mutex::new(State {
                pools: (0..shares.len())
                    .map(|_| PoolJobs {
                        jobs: VecDeque::new(),
                        share_target: Target::DIFF1,
                    })
                    .collect(),
                active: None,
                next_seq: 1,
                next_tag: 1,
                extranonce: None,
                cursors: (0..threads).map(|_| Cursor::default()).collect(),
                units: vec![None; threads],
            }),
            workers: OnceLock::new(),
            shares,
            status,
            threads,
        })
    }

    /// Connects the workers this miner feeds (once). A weak reference: the
    /// workers hold the miner, not the other way round.
    pub fn attach(&self, workers: Weak<Workers>) {
        if self.workers.set(workers).is_err() {
            warn!("miner already has workers attached");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        if let Some(w) = self.workers.get().and_then(Weak::upgrade) {
            w.notify();
        }
    }

    /// A new job from pool `pool` on its connection `connection`.
    pub fn new_job(&self, pool: usize, connection: u64, job: Job) {
        let mine_it = {
            let mut guard = self.lock();
            let s = &mut *guard;
            let seq = s.next_seq;
            s.next_seq += 1;
            let Some(p) = s.pools.get_mut(pool) else {
                return;
            };
            if job.clean() {
                p.jobs.clear();
            }
            // Jobs of an older connection are worthless on this one.
            p.jobs.retain(|j| j.connection == connection);
            let share_target = p.share_target;
            p.jobs.push_front(ActiveJob {
                seq,
                pool,
                connection,
                job,
                share_target,
            });
            p.jobs.truncate(KEPT_JOBS + 1);
            s.active == Some(pool)
        };
        self.status.update(|c| c.jobs += 1);
        if mine_it {
            self.notify();
        }
    }

    /// Pool `pool` changed its share target (applies to its jobs from now on).
    pub fn set_share_target(&self, pool: usize, target: Target) {
        let changed = {
            let mut s = self.lock();
            let Some(p) = s.pools.get_mut(pool) else {
                return;
            };
            let changed = p.share_target != target;
            p.share_target = target;
            changed
        };
        if changed {
            info!(
                pool,
                difficulty = format_args!("{:.6}", target.difficulty()),
                "share target set"
            );
        }
    }

    /// Drops every job of `pool` (connection lost): if it was the active
    /// pool, workers go idle until another pool is chosen.
    pub fn clear(&self, pool: usize) {
        let was_active = {
            let mut s = self.lock();
            if let Some(p) = s.pools.get_mut(pool) {
                p.jobs.clear();
            }
            s.active == Some(pool)
        };
        if was_active {
            self.notify();
        }
    }

    /// Mines on `pool`'s jobs from now on (`None`: nothing to mine).
    pub fn set_active(&self, pool: Option<usize>) {
        let changed = {
            let mut s = self.lock();
            let changed = s.active != pool;
            s.active = pool;
            changed
        };
        if changed {
            self.notify();
        }
    }

    /// The pool being mined on.
    pub fn active(&self) -> Option<usize> {
        self.lock().active
    }

    /// Whether shares of job `seq` may still be submitted.
    pub fn is_live(&self, seq: u64) -> bool {
        self.lock()
            .pools
            .iter()
            .any(|p| p.jobs.iter().any(|j| j.seq == seq))
    }

    /// Builds the next unit for `worker` from the newest job.
    fn make_unit(&self, worker: usize) -> Option<WorkUnit> {
        let mut guard = self.lock();
        let s = &mut *guard;
        let active = s.pools.get(s.active?)?;
        let newest = active.jobs.front()?;
        let (seq, pool, connection, job) = (
            newest.seq,
            newest.pool,
            newest.connection,
            newest.job.clone(),
        );
        let share_target = newest.share_target.min(active.share_target);
        let cursor = s.cursors.get_mut(worker)?;
        let space = rolling_space(job.version_mask());
        let threads = self.threads.max(1) as u64;
        let fixed_root = job.extranonce2_size() == 0;
        // With a fixed merkle root only version rolling varies the header, so
        // each worker takes its own slice of the version space.
        let (first_version, end_version) = if fixed_root {
            (
                worker as u64 * space / threads,
                (worker as u64 + 1) * space / threads,
            )
        } else {
            (0, space)
        };
        if cursor.job_seq != seq || cursor.next_version >= end_version {
            if fixed_root {
                if cursor.job_seq == seq {
                    return None; // this worker's version slice is used up
                }
                cursor.extranonce2 = Vec::new();
                cursor.merkle_root = job.merkle_root(&[]).ok()?;
            } else {
                let fresh = !matches!(&s.extranonce, Some((js, _)) if *js == seq);
                if fresh {
                    match Extranonce2Space::new(job.extranonce2_size(), self.threads) {
                        Ok(space) => s.extranonce = Some((seq, space)),
                        Err(e) => {
                            error!(job = job.id(), "cannot split extranonce2 space: {e}");
                            return None;
                        }
                    }
                }
                let Some(en2) = s.extranonce.as_mut()?.1.next(worker) else {
                    warn!(
                        job = job.id(),
                        worker, "extranonce2 space exhausted; waiting for a new job"
                    );
                    return None;
                };
                let root = match job.merkle_root(&en2) {
                    Ok(r) => r,
                    Err(e) => {
                        error!(job = job.id(), "cannot build merkle root: {e}");
                        return None;
                    }
                };
                let cursor = &mut s.cursors[worker];
                cursor.extranonce2 = en2;
                cursor.merkle_root = root;
            }
            let cursor = &mut s.cursors[worker];
            cursor.job_seq = seq;
            cursor.next_version = first_version;
            if first_version >= end_version {
                return None;
            }
        }
        let cursor = &mut s.cursors[worker];
        // Rolled versions first (index 1, 2, …, then the base version last):
        // a bijection on the space, so worker slices stay disjoint.
        let version = rolled_version(
            job.version(),
            job.version_mask(),
            (cursor.next_version + 1) % space,
        );
        cursor.next_version += 1;
        let ntime = job.ntime();
        let header = job.header(&cursor.merkle_root, version, ntime, 0);
        let tag = s.next_tag;
        s.next_tag += 1;
        let network = job.network_target();
        // Workers filter with the easier of the two targets; `found` decides.
        let filter = share_target.max(network);
        s.units[worker] = Some(UnitInfo {
            tag,
            pool,
            job_seq: seq,
            connection,
            job,
            extranonce2: s.cursors[worker].extranonce2.clone(),
            version,
            ntime,
            share_target,
        });
        Some(WorkUnit {
            header,
            target: *filter.as_be_bytes(),
            nonce_start: 0,
            nonce_end: u32::MAX,
            tag,
        })
    }
}

impl WorkSource for Miner {
    fn next_work(&self, worker: usize) -> Option<WorkUnit> {
        self.make_unit(worker)
    }

    fn found(&self, worker: usize, unit: &WorkUnit, nonce: u32) {
        let (info, live) = {
            let s = self.lock();
            let Some(info) = s
                .units
                .get(worker)
                .and_then(|u| u.clone())
                .filter(|u| u.tag == unit.tag)
            else {
                return;
            };
            let live = s
                .pools
                .get(info.pool)
                .is_some_and(|p| p.jobs.iter().any(|j| j.seq == info.job_seq));
            (info, live)
        };
        let mut header = unit.header;
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        let network = info.job.network_target();
        let check = check_header(&header, &info.share_target, &network);
        let filter = Target::from_be_bytes(unit.target);
        if !filter.is_met_by(&check.hash) {
            // The backend claimed a nonce that does not meet its own target.
            self.status.update(|c| c.hardware_errors += 1);
            error!(backend_nonce = nonce, hash = %hash_to_display(&check.hash), "hashing backend reported an invalid nonce");
            return;
        }
        if check.meets_network {
            self.status.update(|c| c.blocks += 1);
            info!(hash = %hash_to_display(&check.hash), "block candidate found");
        }
        if !check.meets_share && !check.meets_network {
            return;
        }
        if !live {
            self.status.update(|c| c.stale += 1);
            return;
        }
        let share = FoundShare {
            pool: info.pool,
            connection: info.connection,
            job_seq: info.job_seq,
            job_id: info.job.id().to_string(),
            extranonce2: info.extranonce2,
            ntime: info.ntime,
            nonce,
            version: info.version,
            difficulty: hashwatt_work::hash_difficulty(&check.hash),
        };
        // Only the driver of the pool whose job this is gets it; its
        // receiver only disappears at shutdown.
        if let Some(tx) = self.shares.get(info.pool) {
            let _ = tx.send(share);
        }
    }
}
