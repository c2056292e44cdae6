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
    /// Where each worker is in this job's search space, kept with the job
    /// so that returning to it (after a pool switch) never repeats work.
    search: Search,
}

/// The unused part of a job's search space.
enum Search {
    /// Host-built coinbase: hand out fresh extranonce2 values per worker.
    Extranonce(Extranonce2Space),
    /// Fixed merkle root: each worker's next index in its version slice.
    Versions(Vec<u64>),
    /// The extranonce2 space could not be split (logged once).
    Unusable,
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
            let search = if job.extranonce2_size() == 0 {
                let space = rolling_space(job.version_mask());
                let threads = self.threads.max(1) as u64;
                Search::Versions((0..threads).map(|w| w * space / threads).collect())
            } else {
                match Extranonce2Space::new(job.extranonce2_size(), self.threads) {
                    Ok(space) => Search::Extranonce(space),
                    Err(e) => {
                        error!(
                            job = job.id(),
                            "cannot split the extranonce2 space between workers: {e}"
                        );
                        Search::Unusable
                    }
                }
            };
            p.jobs.push_front(ActiveJob {
                seq,
                pool,
                connection,
                job,
                share_target,
                search,
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
        let active_pool = s.active?;
        let active = s.pools.get_mut(active_pool)?;
        let share_target_now = active.share_target;
        let newest = active.jobs.front_mut()?;
        let (seq, pool, connection, job) = (
            newest.seq,
            newest.pool,
            newest.connection,
            newest.job.clone(),
        );
        let share_target = newest.share_target.min(share_target_now);
        let space = rolling_space(job.version_mask());
        let threads = self.threads.max(1) as u64;
        let cursor = s.cursors.get_mut(worker)?;
        // With a fixed merkle root only version rolling varies the header, so
        // each worker owns a slice of the version space.
        let end_version = match newest.search {
            Search::Versions(_) => (worker as u64 + 1) * space / threads,
            _ => space,
        };
        if cursor.job_seq != seq || cursor.next_version >= end_version {
            match &mut newest.search {
                Search::Versions(next) => {
                    let start = *next.get(worker)?;
                    if start >= end_version {
                        return None; // this worker's version slice is used up
                    }
                    cursor.extranonce2 = Vec::new();
                    cursor.merkle_root = job.merkle_root(&[]).ok()?;
                    cursor.next_version = start;
                }
                Search::Extranonce(space) => {
                    let Some(en2) = space.next(worker) else {
                        warn!(
                            job = job.id(),
                            worker, "extranonce2 space exhausted; waiting for a new job"
                        );
                        return None;
                    };
                    cursor.merkle_root = match job.merkle_root(&en2) {
                        Ok(r) => r,
                        Err(e) => {
                            error!(job = job.id(), "cannot build merkle root: {e}");
                            return None;
                        }
                    };
                    cursor.extranonce2 = en2;
                    cursor.next_version = 0;
                }
                Search::Unusable => return None,
            }
            cursor.job_seq = seq;
        }
        // Rolled versions first (index 1, 2, …, then the base version last):
        // a bijection on the space, so worker slices stay disjoint.
        let version = rolled_version(
            job.version(),
            job.version_mask(),
            (cursor.next_version + 1) % space,
        );
        cursor.next_version += 1;
        if let Search::Versions(next) = &mut newest.search
            && let Some(n) = next.get_mut(worker)
        {
            *n = cursor.next_version;
        }
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
        let (info, live, share_target) = {
            let s = self.lock();
            let Some(info) = s
                .units
                .get(worker)
                .and_then(|u| u.clone())
                .filter(|u| u.tag == unit.tag)
            else {
                return;
            };
            let pool = s.pools.get(info.pool);
            let live = pool.is_some_and(|p| p.jobs.iter().any(|j| j.seq == info.job_seq));
            // A difficulty raised since the unit was made applies at once:
            // pools that retarget without a new job reject easier shares.
            let share_target =
                pool.map_or(info.share_target, |p| info.share_target.min(p.share_target));
            (info, live, share_target)
        };
        let mut header = unit.header;
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        let network = info.job.network_target();
        let check = check_header(&header, &share_target, &network);
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

#[cfg(test)]
mod tests {
    use super::*;
    use hashwatt_work::{JobSpec, WorkKindSpec};
    use std::collections::HashSet;

    fn job(id: &str, mask: u32, fixed_root: bool) -> Job {
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
            nbits: 0x1d00_ffff,
            ntime: 1_700_000_000,
            clean: false,
        })
        .unwrap()
    }

    fn miner(pools: usize, threads: usize) -> Arc<Miner> {
        let txs = (0..pools)
            .map(|_| tokio::sync::mpsc::unbounded_channel().0)
            .collect();
        Miner::new(threads, txs, Arc::new(Status::default()))
    }

    #[test]
    fn switching_pools_back_and_forth_never_repeats_a_header() {
        for (mask, fixed) in [(0x1fff_e000, false), (0, false), (0x1fff_e000, true)] {
            let m = miner(2, 2);
            m.new_job(0, 1, job("a", mask, fixed));
            m.new_job(1, 1, job("b", mask, fixed));
            let mut seen = HashSet::new();
            for round in 0..20 {
                m.set_active(Some(round % 2));
                for worker in 0..2 {
                    let unit = m.next_work(worker).expect("work available");
                    assert!(
                        seen.insert(unit.header),
                        "header repeated (mask {mask:#x}, fixed root {fixed})"
                    );
                }
            }
        }
    }

    #[test]
    fn no_work_without_an_active_pool_and_after_clear() {
        let m = miner(2, 1);
        m.new_job(0, 1, job("a", 0, false));
        assert!(m.next_work(0).is_none(), "no pool chosen yet");
        m.set_active(Some(0));
        assert!(m.next_work(0).is_some());
        m.clear(0);
        assert!(m.next_work(0).is_none());
    }

    #[test]
    fn a_difficulty_raised_mid_unit_applies_to_the_next_share() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let m = Miner::new(1, vec![tx], Arc::new(Status::default()));
        m.set_share_target(0, Target::MAX);
        m.new_job(0, 1, job("a", 0, false));
        m.set_active(Some(0));
        let unit = m.next_work(0).expect("work");
        m.found(0, &unit, 1);
        assert!(rx.try_recv().is_ok(), "every hash meets the MAX target");
        // The pool retargets without a new job: the unit in flight keeps its
        // easy filter, but the share check uses the harder target.
        let mut hard = [0u8; 32];
        hard[31] = 1;
        m.set_share_target(0, Target(hard));
        m.found(0, &unit, 2);
        assert!(rx.try_recv().is_err(), "an easier share was still sent");
    }

    #[test]
    fn fixed_root_slices_are_disjoint_between_workers() {
        let m = miner(1, 3);
        m.new_job(0, 1, job("a", 0x0000_0700, true)); // 8 versions
        m.set_active(Some(0));
        let mut seen = HashSet::new();
        for worker in 0..3 {
            while let Some(unit) = m.next_work(worker) {
                assert!(seen.insert(unit.header));
            }
        }
        assert_eq!(seen.len(), 8, "all versions mined exactly once");
    }
}
