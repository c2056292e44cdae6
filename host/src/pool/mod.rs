//! Pool connections: the host owns the TCP socket, the timers and the
//! reconnect policy; the pool plugin only turns bytes into actions.

mod backoff;
mod failover;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, error, info, info_span, trace, warn};

pub use backoff::Backoff;
pub use failover::Failover;

use crate::config::PoolEntry;
use crate::miner::{FoundShare, Miner};
use crate::plugin::pool::{
    CallOutput, LogLevel, PoolAction, PoolConfig, PoolPlugin, PoolPluginPre, ShareSubmission,
    wake_delay,
};
use crate::plugin::{Limits, PluginError, call_blocking};
use crate::status::{PoolState, Status};

/// Time allowed for a TCP connect or a write to the pool.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest delay a pool may ask for in `client.reconnect`.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(300);
/// A plugin failing this many times within [`FAILURE_WINDOW`] is disabled.
pub const MAX_PLUGIN_FAILURES: usize = 5;
/// The window in which plugin failures are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(600);

/// Chooses the pool to mine on from the drivers' health reports.
pub struct PoolSelector {
    failover: Mutex<Failover>,
    miner: Arc<Miner>,
    status: Arc<Status>,
}

impl PoolSelector {
    /// A selector over `pools` pools with fail-back hold time `hold`.
    pub fn new(pools: usize, hold: Duration, miner: Arc<Miner>, status: Arc<Status>) -> Arc<Self> {
        Arc::new(PoolSelector {
            failover: Mutex::new(Failover::new(pools, hold)),
            miner,
            status,
        })
    }

    /// Pool `index` became (un)healthy: re-decide at once.
    pub fn set_healthy(&self, index: usize, healthy: bool) {
        let mut f = self.failover.lock().unwrap_or_else(|p| p.into_inner());
        f.set_healthy(index, healthy, Instant::now());
        self.apply(&mut f);
    }

    /// Re-evaluates hold timers; call periodically.
    pub fn tick(&self) {
        let mut f = self.failover.lock().unwrap_or_else(|p| p.into_inner());
        self.apply(&mut f);
    }

    fn apply(&self, f: &mut Failover) {
        let before = f.active();
        let after = f.decide(Instant::now());
        if before != after {
            let url = |i: Option<usize>| {
                i.and_then(|i| self.status.snapshot().pools.get(i).map(|p| p.url.clone()))
                    .unwrap_or_else(|| "none".into())
            };
            match after {
                Some(_) => info!(from = %url(before), to = %url(after), "switching pools"),
                None => {
                    warn!(from = %url(before), "no healthy pool: hashing idles until one recovers")
                }
            }
        }
        self.miner.set_active(after);
        self.status.update(|c| c.active_pool = after);
    }
}

/// Drives one pool: its connection, its plugin instance, its shares.
pub struct PoolDriver {
    /// Index of this pool in priority order.
    pub index: usize,
    /// The pool's configuration.
    pub entry: PoolEntry,
    /// Reports this pool's health.
    pub selector: Arc<PoolSelector>,
    /// The compiled pool plugin.
    pub plugin: PoolPluginPre,
    /// Newer versions of the plugin, already validated by a trial
    /// instantiation; the driver switches to them at once.
    pub updates: watch::Receiver<PoolPluginPre>,
    /// Limits for each plugin instance.
    pub limits: Limits,
    /// Where jobs go.
    pub miner: Arc<Miner>,
    /// Where counters go.
    pub status: Arc<Status>,
    /// Shares the miner found for this pool's jobs.
    pub shares: mpsc::UnboundedReceiver<FoundShare>,
    /// Follow `client.reconnect` to another host name.
    pub allow_redirect: bool,
    /// User agent to announce.
    pub user_agent: String,
}

/// How a connection ended and what to do next.
enum Next {
    /// Wait out the back-off, then connect again (or to the next pool).
    Backoff,
    /// The pool asked to be reconnected to.
    Reconnect {
        host: String,
        port: u16,
        after: Duration,
    },
    /// The plugin died: make a new instance, then back off.
    PluginDead,
    /// A validated new version of the plugin replaces the running one.
    Upgrade,
    /// The host is shutting down.
    Shutdown,
}

struct Ended {
    reason: String,
    next: Next,
}

impl Ended {
    fn new(reason: impl Into<String>, next: Next) -> Self {
        Ended {
            reason: reason.into(),
            next,
        }
    }
}

impl From<PluginError> for Ended {
    fn from(e: PluginError) -> Self {
        Ended::new(e.to_string(), Next::PluginDead)
    }
}

/// A share submitted and not yet answered.
struct Pending {
    job_id: String,
    difficulty: f64,
}

impl PoolDriver {
    /// Keeps this pool connected until `shutdown` turns true or its plugin
    /// is disabled.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let clock = Instant::now();
        let entry = self.entry.clone();
        let index = self.index;
        let span = info_span!("pool", index, url = %entry.url.url);
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut plugin_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let mut failures: VecDeque<Instant> = VecDeque::new();
        let mut plugin: Option<PoolPlugin> = None;
        let mut redirect: Option<(String, u16)> = None;
        let mut connection = 0u64;
        let mut next_share_id = 1u64;
        let config = PoolConfig {
            url: entry.url.url.clone(),
            host: entry.url.host.clone(),
            port: entry.url.port,
            user: entry.user.clone(),
            password: entry.password.clone(),
            user_agent: self.user_agent.clone(),
            version_rolling: true,
            settings: Default::default(),
        };
        while !*shutdown.borrow() {
            if plugin.is_none() {
                match call_blocking(|| self.plugin.instantiate(&config, self.limits.clone())) {
                    Ok(p) => plugin = Some(p),
                    Err(e) => {
                        span.in_scope(|| error!("cannot start pool plugin: {e}"));
                        if self.plugin_failed(&span, e.to_string(), &mut failures) {
                            return;
                        }
                        if sleep_or_shutdown(plugin_backoff.next_delay(), &mut shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(p) = plugin.as_mut() else { continue };
            let (host, port) = redirect
                .clone()
                .unwrap_or((entry.url.host.clone(), entry.url.port));
            let stream =
                match tokio::time::timeout(IO_TIMEOUT, TcpStream::connect((host.as_str(), port)))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        self.connect_failed(
                            &span,
                            format!("cannot connect to {host}:{port}: {e}"),
                            &mut redirect,
                        );
                        if sleep_or_shutdown(backoff.next_delay(), &mut shutdown).await {
                            return;
                        }
                        continue;
                    }
                    Err(_) => {
                        self.connect_failed(
                            &span,
                            format!("connecting to {host}:{port} timed out"),
                            &mut redirect,
                        );
                        if sleep_or_shutdown(backoff.next_delay(), &mut shutdown).await {
                            return;
                        }
                        continue;
                    }
                };
            let _ = stream.set_nodelay(true);
            connection += 1;
            self.status.update(|c| c.connects += 1);
            self.status.update_pool(index, |s| {
                s.connects += 1;
                s.state = PoolState::Connecting;
            });
            span.in_scope(|| info!(connection, %host, port, "connected"));
            let mut got_job = false;
            let ended = self
                .session(
                    stream,
                    p,
                    connection,
                    clock,
                    &mut next_share_id,
                    &mut got_job,
                    &mut shutdown,
                )
                .instrument(span.clone())
                .await;
            // Record a plugin failure before anyone can see the pool go
            // unhealthy, so status always carries the reason for a failover.
            let disabled = matches!(ended.next, Next::PluginDead)
                && self.plugin_failed(&span, ended.reason.clone(), &mut failures);
            self.selector.set_healthy(index, false);
            self.miner.clear(index);
            if p.dead().is_none()
                && let Err(e) = call_blocking(|| p.disconnected(&ended.reason))
            {
                span.in_scope(|| warn!("plugin failed on disconnect: {e}"));
            }
            self.status.update(|c| {
                c.in_flight = 0;
                c.last_disconnect = Some(ended.reason.clone());
            });
            self.status.update_pool(index, |s| {
                if s.state != PoolState::Disabled {
                    s.state = PoolState::Connecting;
                }
                s.last_disconnect = Some(ended.reason.clone());
            });
            if got_job {
                backoff.reset();
                if failures
                    .back()
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    plugin_backoff.reset();
                }
            }
            match ended.next {
                Next::Shutdown => return,
                Next::Upgrade => {
                    self.plugin = self.updates.borrow_and_update().clone();
                    plugin = None;
                    span.in_scope(|| {
                        info!(
                            plugin = self.plugin.name(),
                            "switched to the new plugin version"
                        )
                    });
                }
                Next::Backoff => {
                    span.in_scope(|| warn!(reason = %ended.reason, "disconnected from pool"));
                    if sleep_or_shutdown(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                }
                Next::PluginDead => {
                    plugin = None;
                    if disabled {
                        return;
                    }
                    let delay = plugin_backoff.next_delay();
                    span.in_scope(|| error!(reason = %ended.reason, ?delay, "pool plugin failed; restarting it"));
                    if sleep_or_shutdown(delay, &mut shutdown).await {
                        return;
                    }
                }
                Next::Reconnect {
                    host: new_host,
                    port: new_port,
                    after,
                } => {
                    let target_host = if new_host.is_empty() {
                        host.clone()
                    } else {
                        new_host
                    };
                    let target_port = if new_port == 0 { port } else { new_port };
                    if !self.plugin.allows_endpoint(&target_host, target_port) {
                        span.in_scope(|| {
                            warn!(
                                "pool asked to reconnect to {target_host}:{target_port}; refused: the plugin's \
                                 manifest does not allow that endpoint (pool_endpoints); reconnecting to the configured pool"
                            )
                        });
                        redirect = None;
                    } else if target_host != entry.url.host && !self.allow_redirect {
                        span.in_scope(|| {
                            warn!(
                                "pool asked to reconnect to another host ({target_host}:{target_port}); refused \
                                 (set allow_pool_redirect = true to allow); reconnecting to the configured pool"
                            )
                        });
                        redirect = None;
                    } else {
                        span.in_scope(|| {
                            info!("pool asked to reconnect to {target_host}:{target_port}")
                        });
                        redirect = Some((target_host, target_port));
                    }
                    if sleep_or_shutdown(after.min(MAX_RECONNECT_DELAY), &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Records a plugin failure; returns true when the plugin is now disabled.
    fn plugin_failed(
        &self,
        span: &tracing::Span,
        reason: String,
        failures: &mut VecDeque<Instant>,
    ) -> bool {
        let now = Instant::now();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
        {
            failures.pop_front();
        }
        let disabled = failures.len() >= MAX_PLUGIN_FAILURES;
        self.status.update_pool(self.index, |s| {
            s.plugin_restarts += u64::from(!disabled);
            s.plugin_error = Some(reason.clone());
            if disabled {
                s.state = PoolState::Disabled;
                s.disabled = Some(format!(
                    "plugin failed {} times within {} s; last: {reason}",
                    failures.len(),
                    FAILURE_WINDOW.as_secs()
                ));
            }
        });
        if disabled {
            span.in_scope(|| error!(%reason, "pool plugin disabled after repeated failures"));
        }
        disabled
    }

    fn connect_failed(
        &self,
        span: &tracing::Span,
        reason: String,
        redirect: &mut Option<(String, u16)>,
    ) {
        span.in_scope(|| warn!("{reason}"));
        self.status
            .update(|c| c.last_disconnect = Some(reason.clone()));
        self.status
            .update_pool(self.index, |s| s.last_disconnect = Some(reason));
        // A redirect target that cannot be reached is forgotten.
        *redirect = None;
    }

    #[allow(clippy::too_many_arguments)]
    async fn session(
        &mut self,
        stream: TcpStream,
        plugin: &mut PoolPlugin,
        connection: u64,
        clock: Instant,
        next_share_id: &mut u64,
        got_job: &mut bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (mut reader, mut writer) = stream.into_split();
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        let now_ms = || clock.elapsed().as_millis() as u64;
        // Shares found before this connection existed belong to dead jobs.
        while let Ok(old) = self.shares.try_recv() {
            self.status.update(|c| c.stale += 1);
            trace!(job = old.job_id, "dropping share of an earlier connection");
        }
        // When the plugin next wants a `tick` (it asks with `wake-at`; every
        // connection starts without a request).
        let mut wake: Option<tokio::time::Instant> = None;
        let out = match call_blocking(|| plugin.connected(now_ms())) {
            Ok(out) => out,
            Err(e) => return e.into(),
        };
        if let Some(at) = out.wake_at_ms {
            wake = Some(tokio::time::Instant::now() + wake_delay(at, now_ms()));
        }
        if let Err(ended) = self
            .apply(out, &mut writer, connection, &mut pending, got_job)
            .await
        {
            return ended;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let out = tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) => return Ended::new("pool closed the connection", Next::Backoff),
                    Ok(n) => call_blocking(|| plugin.received(now_ms(), &buf[..n])),
                    Err(e) => return Ended::new(format!("read error: {e}"), Next::Backoff),
                },
                Some(share) = self.shares.recv() => {
                    if share.pool != self.index || share.connection != connection || !self.miner.is_live(share.job_seq) {
                        self.status.update(|c| c.stale += 1);
                        debug!(job = share.job_id, "share of a cleared job dropped");
                        continue;
                    }
                    let id = *next_share_id;
                    *next_share_id += 1;
                    pending.insert(id, Pending { job_id: share.job_id.clone(), difficulty: share.difficulty });
                    self.status.update(|c| c.in_flight = pending.len() as u64);
                    let submission = ShareSubmission {
                        id,
                        job_id: share.job_id,
                        extranonce2: share.extranonce2,
                        ntime: share.ntime,
                        nonce: share.nonce,
                        version: share.version,
                    };
                    call_blocking(|| plugin.share_found(now_ms(), &submission))
                }
                // Ticks only when the plugin asked; the request is used up.
                _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                    wake = None;
                    call_blocking(|| plugin.tick(now_ms()))
                }
                _ = shutdown.changed() => return Ended::new("shutting down", Next::Shutdown),
                Ok(()) = self.updates.changed() => return Ended::new("plugin updated", Next::Upgrade),
            };
            let out = match out {
                Ok(out) => out,
                Err(e) => return e.into(),
            };
            if let Some(at) = out.wake_at_ms {
                wake = Some(tokio::time::Instant::now() + wake_delay(at, now_ms()));
            }
            if let Err(ended) = self
                .apply(out, &mut writer, connection, &mut pending, got_job)
                .await
            {
                return ended;
            }
        }
    }

    /// Carries out a plugin's actions in order.
    async fn apply(
        &self,
        out: CallOutput,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        connection: u64,
        pending: &mut HashMap<u64, Pending>,
        got_job: &mut bool,
    ) -> Result<(), Ended> {
        for refused in out.rejected {
            warn!("{refused}");
            self.status.update(|c| {
                c.refused_actions += 1;
                c.last_refused_action = Some(refused.to_string());
            });
        }
        for action in out.actions {
            match action {
                PoolAction::Send(bytes) => {
                    match tokio::time::timeout(IO_TIMEOUT, writer.write_all(&bytes)).await {
                        Ok(Ok(())) => trace!(bytes = bytes.len(), "sent"),
                        Ok(Err(e)) => {
                            return Err(Ended::new(format!("write error: {e}"), Next::Backoff));
                        }
                        Err(_) => return Err(Ended::new("write to pool timed out", Next::Backoff)),
                    }
                }
                PoolAction::NewJob(job) => {
                    debug!(job = job.id(), clean = job.clean(), "new job");
                    self.miner.new_job(self.index, connection, job);
                    if !*got_job {
                        *got_job = true;
                        self.status
                            .update_pool(self.index, |s| s.state = PoolState::Healthy);
                        self.selector.set_healthy(self.index, true);
                    }
                }
                PoolAction::SetShareTarget(target) => {
                    self.miner.set_share_target(self.index, target)
                }
                PoolAction::ShareResult { id, outcome } => {
                    let share = pending.remove(&id);
                    let job = share.as_ref().map(|s| s.job_id.as_str()).unwrap_or("?");
                    let difficulty = share.as_ref().map(|s| s.difficulty).unwrap_or(0.0);
                    match outcome {
                        Ok(()) => {
                            info!(
                                share = id,
                                job,
                                difficulty = format_args!("{difficulty:.4}"),
                                "share accepted"
                            );
                            self.status.update(|c| c.accepted += 1);
                            self.status.update_pool(self.index, |s| s.accepted += 1);
                        }
                        Err(reason) => {
                            warn!(share = id, job, %reason, "share rejected");
                            self.status
                                .update(|c| *c.rejected.entry(reason).or_default() += 1);
                        }
                    }
                    self.status.update(|c| c.in_flight = pending.len() as u64);
                }
                PoolAction::Reconnect { host, port, after } => {
                    return Err(Ended::new(
                        "pool requested a reconnect",
                        Next::Reconnect { host, port, after },
                    ));
                }
                PoolAction::Log { level, message } => match level {
                    LogLevel::Trace => trace!(target: "hashwatt::plugin", "{message}"),
                    LogLevel::Debug => debug!(target: "hashwatt::plugin", "{message}"),
                    LogLevel::Info => info!(target: "hashwatt::plugin", "{message}"),
                    LogLevel::Warn => warn!(target: "hashwatt::plugin", "{message}"),
                    LogLevel::Error => error!(target: "hashwatt::plugin", "{message}"),
                },
                PoolAction::Fail(reason) => return Err(Ended::new(reason, Next::Backoff)),
            }
        }
        Ok(())
    }
}

/// Sleeps for `d`; returns true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
