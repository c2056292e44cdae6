//! `hashwatt-devpool`: a real Stratum V1 pool server for demos and tests.
//!
//! The appliance's demo mode needs a pool that is always there, and the host's
//! integration tests need a strict peer. This crate serves synthetic jobs over
//! TCP (loopback by default) at a configurable difficulty and validates every
//! submitted share *independently* of the miner: it rebuilds the coinbase,
//! merkle root and header with its own code and hashes with the `sha2` crate's
//! plain double SHA-256. It rejects like real pools do (standard error codes
//! 20–25), so interoperability bugs show up here first.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hashwatt_devpool::DevPoolError> {
//! let pool = hashwatt_devpool::start(Default::default()).await?;
//! println!("stratum+tcp://{}", pool.local_addr());
//! pool.shutdown().await;
//! # Ok(()) }
//! ```

mod conn;
mod job;
mod line;
mod share;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::job::{EXTRANONCE1_SIZE, Job, Tip};

/// Largest extranonce2 size accepted in [`DevPoolConfig`] (keeps the
/// coinbase scriptSig within the consensus limit of 100 bytes).
pub const MAX_EXTRANONCE2_SIZE: u8 = 32;
/// Largest number of merkle branches accepted in [`DevPoolConfig`].
pub const MAX_MERKLE_BRANCHES: usize = 32;

/// How the devpool listens and what work it hands out.
#[derive(Debug, Clone, PartialEq)]
pub struct DevPoolConfig {
    /// Address to bind; port 0 picks a free port (see [`DevPool::local_addr`]).
    pub listen: SocketAddr,
    /// Initial share difficulty (pool difficulty 1 = 2^32 hashes per share).
    pub difficulty: f64,
    /// Period of the background job generator (new jobs with clean_jobs=false).
    pub job_interval: Duration,
    /// Size of the miner-chosen extranonce2, in bytes (1..=32).
    pub extranonce2_size: u8,
    /// Version bits the pool lets miners roll (BIP 310); 0 disables rolling.
    pub version_mask: u32,
    /// Number of (random) merkle branches per job, so miners exercise merkle code.
    pub merkle_branches: usize,
    /// Compact network target of the jobs. Mainnet-like by default;
    /// `0x207fffff` serves regtest work, whose block target is far easier
    /// than any share target (a miner must still only submit shares).
    pub nbits: u32,
    /// Refuse every n-th valid share (code 20), so miners' rejected-share
    /// handling and counters can be exercised; `None`: refuse none.
    pub reject_every: Option<u64>,
}

impl Default for DevPoolConfig {
    /// Loopback on a free port, difficulty 0.01 (a share every ~43 M hashes:
    /// a few seconds on a CPU), a new job every 30 s, 8-byte extranonce2,
    /// the usual ASICBoost mask and 3 merkle branches.
    fn default() -> Self {
        DevPoolConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            difficulty: 0.01,
            job_interval: Duration::from_secs(30),
            extranonce2_size: 8,
            version_mask: 0x1fff_e000,
            merkle_branches: 3,
            nbits: job::JOB_NBITS,
            reject_every: None,
        }
    }
}

/// Why the devpool could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevPoolError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A config value is out of range.
    #[error("invalid devpool config: {0}")]
    InvalidConfig(String),
}

/// A snapshot of what the pool has seen, for demos, logs and test assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted since start (cumulative).
    pub connections: u64,
    /// Connections open right now.
    pub active_connections: u64,
    /// Shares accepted.
    pub accepted: u64,
    /// Accepted shares whose header version differs from the job version.
    pub accepted_version_rolled: u64,
    /// Accepted shares whose header ntime differs from the job's.
    pub accepted_ntime_rolled: u64,
    /// Rejected shares by Stratum error code (20..=25).
    pub rejected: BTreeMap<i64, u64>,
    /// Sum of all rejected shares.
    pub rejected_total: u64,
    /// Rejected shares whose job was superseded by a clean job (a subset of
    /// `rejected[21]`; unknown job ids count only in `rejected[21]`).
    pub stale: u64,
    /// Accepted shares per worker name as given in mining.submit.
    pub by_user: BTreeMap<String, u64>,
    /// When the last share was accepted.
    pub last_accepted: Option<Instant>,
}

/// Something every connection must react to.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Notify(Arc<Job>),
    Difficulty(f64),
    Raw(Arc<[u8]>),
    Reconnect {
        host: Arc<str>,
        port: u16,
        wait_s: u32,
    },
    Drop,
}

/// The chain tip, current job and difficulty; one lock so that broadcasts
/// happen in job order.
struct PoolState {
    difficulty: f64,
    tip: Tip,
    current: Arc<Job>,
    next_seq: u64,
}

/// State shared by the accept loop, the job generator and every connection.
pub(crate) struct Shared {
    pub(crate) config: DevPoolConfig,
    state: Mutex<PoolState>,
    stats: Mutex<Stats>,
    events: broadcast::Sender<Event>,
    next_extranonce1: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn difficulty(&self) -> f64 {
        lock(&self.state).difficulty
    }

    pub(crate) fn current(&self) -> (f64, Arc<Job>) {
        let st = lock(&self.state);
        (st.difficulty, st.current.clone())
    }

    pub(crate) fn next_extranonce1(&self) -> [u8; EXTRANONCE1_SIZE] {
        self.next_extranonce1
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes()
    }

    /// Make a new job (on a new tip if `new_block`), optionally after a
    /// difficulty change, and broadcast it while holding the state lock so
    /// every connection sees events in order.
    fn publish(&self, new_block: bool, difficulty: Option<f64>) {
        let mut st = lock(&self.state);
        if new_block {
            st.tip = st.tip.next();
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let job = Arc::new(job::generate(
            seq,
            &st.tip,
            usize::from(self.config.extranonce2_size),
            self.config.merkle_branches,
            self.config.nbits,
            new_block,
        ));
        st.current = job.clone();
        if let Some(d) = difficulty {
            st.difficulty = d;
            let _ = self.events.send(Event::Difficulty(d));
        }
        debug!(job_id = %job.id, clean = new_block, "new job");
        let _ = self.events.send(Event::Notify(job));
    }

    fn broadcast(&self, ev: Event) {
        let _ = self.events.send(ev);
    }

    fn connection_opened(&self) {
        let mut s = lock(&self.stats);
        s.connections += 1;
        s.active_connections += 1;
    }

    pub(crate) fn connection_closed(&self) {
        let mut s = lock(&self.stats);
        s.active_connections = s.active_connections.saturating_sub(1);
    }

    pub(crate) fn record_accepted(&self, user: &str, version_rolled: bool, ntime_rolled: bool) {
        let mut s = lock(&self.stats);
        s.accepted += 1;
        if version_rolled {
            s.accepted_version_rolled += 1;
        }
        if ntime_rolled {
            s.accepted_ntime_rolled += 1;
        }
        *s.by_user.entry(user.to_string()).or_default() += 1;
        s.last_accepted = Some(Instant::now());
    }

    pub(crate) fn record_rejected(&self, code: i64, stale: bool) {
        let mut s = lock(&self.stats);
        *s.rejected.entry(code).or_default() += 1;
        s.rejected_total += 1;
        if stale {
            s.stale += 1;
        }
    }
}

/// Owns the background tasks; dropping the last handle stops the pool.
struct Handle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A running devpool. Cheap to clone; all clones control the same server.
/// The server stops on [`DevPool::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct DevPool {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for DevPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPool")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

fn validate(config: &DevPoolConfig) -> Result<(), DevPoolError> {
    let bad = |m: String| Err(DevPoolError::InvalidConfig(m));
    if !(config.difficulty.is_finite() && config.difficulty > 0.0) {
        return bad(format!("difficulty must be > 0, got {}", config.difficulty));
    }
    if config.job_interval.is_zero() {
        return bad("job_interval must be > 0".into());
    }
    if config.extranonce2_size == 0 || config.extranonce2_size > MAX_EXTRANONCE2_SIZE {
        return bad(format!(
            "extranonce2_size must be 1..={MAX_EXTRANONCE2_SIZE}, got {}",
            config.extranonce2_size
        ));
    }
    if config.merkle_branches > MAX_MERKLE_BRANCHES {
        return bad(format!(
            "merkle_branches must be at most {MAX_MERKLE_BRANCHES}, got {}",
            config.merkle_branches
        ));
    }
    Ok(())
}

/// Bind the listener, spawn the accept loop and job generator, and return a
/// handle immediately. Must be called inside a tokio runtime.
pub async fn start(config: DevPoolConfig) -> Result<DevPool, DevPoolError> {
    validate(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DevPoolError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| DevPoolError::Bind {
        addr: config.listen,
        source,
    })?;

    let tip = Tip::random();
    let first = Arc::new(job::generate(
        1,
        &tip,
        usize::from(config.extranonce2_size),
        config.merkle_branches,
        config.nbits,
        true,
    ));
    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        state: Mutex::new(PoolState {
            difficulty: config.difficulty,
            tip,
            current: first,
            next_seq: 2,
        }),
        stats: Mutex::new(Stats::default()),
        events,
        next_extranonce1: AtomicU32::new(rand::random()),
        config,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);

    let accept = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx.clone()));
    let jobs = tokio::spawn(job_loop(shared.clone(), shutdown_rx));
    info!(%local_addr, difficulty = shared.config.difficulty, "devpool listening");
    Ok(DevPool {
        inner: Arc::new(Handle {
            shared,
            local_addr,
            shutdown,
            tasks: Mutex::new(vec![accept, jobs]),
        }),
    })
}

/// Resolves once shutdown was requested (or every handle is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The Ref is dropped here so callers' futures stay Send.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    shared.connection_opened();
                    let events = shared.events.subscribe();
                    conns.spawn(conn::serve(stream, peer, shared.clone(), events, conn_stop.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    conns.shutdown().await;
    debug!("devpool accept loop stopped");
}

async fn job_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = shared.config.job_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => shared.publish(false, None),
            () = stopped(&mut stop) => break,
        }
    }
}

impl DevPool {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.inner.shared.stats).clone()
    }

    /// The pool difficulty applied to jobs sent from now on.
    pub fn difficulty(&self) -> f64 {
        self.inner.shared.difficulty()
    }

    /// Simulate a new block: broadcast a new job on a new prevhash with
    /// clean_jobs=true, making every older job stale.
    pub fn new_block(&self) {
        self.inner.shared.publish(true, None);
    }

    /// Broadcast a new job on the same prevhash with clean_jobs=false (older
    /// jobs stay valid).
    pub fn new_job(&self) {
        self.inner.shared.publish(false, None);
    }

    /// Send mining.set_difficulty to all clients, then a new job (clean=false)
    /// that carries it. Jobs sent earlier keep the difficulty they were sent
    /// with. Non-finite or non-positive values are ignored with a warning.
    pub fn set_difficulty(&self, d: f64) {
        if !(d.is_finite() && d > 0.0) {
            warn!(difficulty = d, "ignoring invalid devpool difficulty");
            return;
        }
        self.inner.shared.publish(false, Some(d));
    }

    /// Write raw bytes to every connected client (garbage / over-long line tests).
    pub fn send_raw(&self, bytes: &[u8]) {
        self.inner.shared.broadcast(Event::Raw(Arc::from(bytes)));
    }

    /// Send `client.reconnect [host, port, wait_s]` to every connected client.
    pub fn send_reconnect(&self, host: &str, port: u16, wait_s: u32) {
        self.inner.shared.broadcast(Event::Reconnect {
            host: Arc::from(host),
            port,
            wait_s,
        });
    }

    /// Close every client connection; the server keeps listening.
    pub fn drop_connections(&self) {
        self.inner.shared.broadcast(Event::Drop);
    }

    /// Stop listening, close every connection and wait for the tasks to end.
    pub async fn shutdown(self) {
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
        info!(local_addr = %self.inner.local_addr, "devpool stopped");
    }
}
