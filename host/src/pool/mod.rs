//! Pool connections: the host owns the TCP socket, the timers and the
//! reconnect policy; the pool plugin only turns bytes into actions.

mod backoff;
mod failover;
pub mod probe;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{Instrument, debug, error, info, info_span, trace, warn};

pub use backoff::Backoff;
pub use failover::Failover;

use crate::config::PoolEntry;
use crate::miner::{Miner, PoolId, Take};
use crate::plugin::pool::{
    CallOutput, LogLevel, PoolAction, PoolConfig, PoolPlugin, PoolPluginPre, ShareSubmission,
    wake_delay,
};
use crate::plugin::{Limits, PluginError, call_blocking};
use crate::ratelimit::{LogDecision, LogLimiter};
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
    /// The appliance is shutting down: pools going away is expected, not
    /// a warning.
    stopping: std::sync::atomic::AtomicBool,
}

/// Now on tokio's clock: virtual in tests on a paused clock, real otherwise.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl PoolSelector {
    /// A selector over the pools `order` (ids, priority order) with
    /// fail-back hold time `hold`.
    pub fn new(
        order: Vec<PoolId>,
        hold: Duration,
        miner: Arc<Miner>,
        status: Arc<Status>,
    ) -> Arc<Self> {
        let mut failover = Failover::new(0, hold);
        failover.set_order(order);
        Arc::new(PoolSelector {
            failover: Mutex::new(failover),
            miner,
            status,
            stopping: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failover> {
        self.failover.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pool `id` became (un)healthy: re-decide at once.
    pub fn set_healthy(&self, id: PoolId, healthy: bool) {
        let mut f = self.lock();
        f.set_healthy(id, healthy, now());
        self.apply(&mut f);
    }

    /// The pools in priority order changed (added, moved, removed, enabled
    /// or disabled): re-decide at once.
    pub fn set_order(&self, order: Vec<PoolId>) {
        let mut f = self.lock();
        f.set_order(order);
        self.apply(&mut f);
    }

    /// Forgets a removed pool.
    pub fn forget(&self, id: PoolId) {
        let mut f = self.lock();
        f.forget(id);
        self.apply(&mut f);
    }

    /// The appliance is shutting down (not one pool stopping for an edit):
    /// pools closing from now on are not reported as a loss of every pool.
    pub fn stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Re-evaluates hold timers; call periodically.
    pub fn tick(&self) {
        let mut f = self.lock();
        self.apply(&mut f);
    }

    fn apply(&self, f: &mut Failover) {
        let before = f.active();
        let after = f.decide(now());
        if before != after {
            let url = |i: Option<PoolId>| {
                i.and_then(|i| {
                    self.status
                        .snapshot()
                        .pools
                        .iter()
                        .find(|p| p.id == i)
                        .map(|p| p.url.clone())
                })
                .unwrap_or_else(|| "none".into())
            };
            match after {
                Some(_) => info!(from = %url(before), to = %url(after), "switching pools"),
                None if self.stopping.load(std::sync::atomic::Ordering::Relaxed) => {
                    debug!(from = %url(before), "pool closed for shutdown")
                }
                None => {
                    warn!(from = %url(before), "no healthy pool: hashing idles until one recovers")
                }
            }
        }
        self.miner.set_active(after);
        let position = after.and_then(|id| self.status.position(id));
        self.status.update(|c| {
            c.active_pool = position;
            c.active_pool_id = after;
        });
    }
}

/// Drives one pool: its connection, its plugin instance, its shares.
pub struct PoolDriver {
    /// The pool's stable id.
    pub id: PoolId,
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
    /// Where jobs go and shares come from.
    pub miner: Arc<Miner>,
    /// Where counters go.
    pub status: Arc<Status>,
    /// Follow `client.reconnect` to another host name.
    pub allow_redirect: bool,
    /// User agent to announce.
    pub user_agent: String,
    /// Record each plugin instance's calls into a transcript here.
    pub record_dir: Option<std::path::PathBuf>,
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
    /// The host is shutting down (or this pool was removed or disabled).
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

/// A session that lasted this long with work counts as healthy: the
/// back-off starts from its minimum again after it.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// Per-driver log limits, so a peer repeating itself cannot flood the log.
struct Logs {
    accepted: LogLimiter,
    rejected: LogLimiter,
    refused: LogLimiter,
    session: LogLimiter,
}

impl Logs {
    fn new() -> Self {
        Logs {
            accepted: LogLimiter::new(Duration::from_secs(10), 5),
            rejected: LogLimiter::new(Duration::from_secs(10), 5),
            refused: LogLimiter::new(Duration::from_secs(60), 5),
            session: LogLimiter::new(Duration::from_secs(60), 5),
        }
    }
}

impl PoolDriver {
    /// Keeps this pool connected until `shutdown` turns true or its plugin
    /// is disabled.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let clock = now();
        let entry = self.entry.clone();
        let id = self.id;
        let span = info_span!("pool", id, url = %entry.url.url);
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut plugin_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let mut failures: VecDeque<Instant> = VecDeque::new();
        let mut plugin: Option<PoolPlugin> = None;
        let mut redirect: Option<(String, u16)> = None;
        let mut connection = 0u64;
        let mut next_share_id = 1u64;
        let mut logs = Logs::new();
        self.miner.add_pool(id);
        let config = self.pool_config();
        while !*shutdown.borrow() {
            if plugin.is_none() {
                match call_blocking(|| self.plugin.instantiate(&config, self.limits.clone())) {
                    Ok(mut p) => {
                        if let Some(dir) = &self.record_dir {
                            let name = format!("pool{id}");
                            match crate::plugin::transcript::Recorder::create(
                                dir,
                                &name,
                                self.plugin.name(),
                                &config,
                            ) {
                                Ok(r) => {
                                    span.in_scope(|| info!(path = %r.path().display(), "recording the pool session"));
                                    p.record_to(r);
                                }
                                Err(e) => span.in_scope(|| {
                                    warn!(
                                        "cannot record the pool session in {}: {e}",
                                        dir.display()
                                    )
                                }),
                            }
                        }
                        plugin = Some(p)
                    }
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
            let connect =
                tokio::time::timeout(IO_TIMEOUT, TcpStream::connect((host.as_str(), port)));
            let stream = tokio::select! {
                r = connect => r,
                _ = shutdown.changed() => return,
            };
            let failure = match stream {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
                Err(_) => Err(format!("connecting to {host}:{port} timed out")),
            };
            let stream = match failure {
                Ok(s) => s,
                Err(reason) => {
                    self.connect_failed(&span, reason, &mut redirect);
                    if sleep_or_shutdown(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            connection += 1;
            self.status.update(|c| c.connects += 1);
            self.status.update_pool(id, |s| {
                s.connects += 1;
                s.state = PoolState::Connecting;
            });
            span.in_scope(|| info!(connection, %host, port, "connected"));
            let mut got_job = false;
            let started = now();
            let ended = self
                .session(
                    stream,
                    p,
                    connection,
                    clock,
                    &mut next_share_id,
                    &mut got_job,
                    &mut logs,
                    &mut shutdown,
                )
                .instrument(span.clone())
                .await;
            // Record a plugin failure before anyone can see the pool go
            // unhealthy, so status always carries the reason for a failover.
            let disabled = matches!(ended.next, Next::PluginDead)
                && self.plugin_failed(&span, ended.reason.clone(), &mut failures);
            self.selector.set_healthy(id, false);
            self.miner.clear(id);
            if p.dead().is_none()
                && let Err(e) = call_blocking(|| p.disconnected(&ended.reason))
            {
                span.in_scope(|| warn!("plugin failed on disconnect: {e}"));
            }
            self.status
                .update(|c| c.last_disconnect = Some(ended.reason.clone()));
            self.status.update_pool(id, |s| {
                if s.state != PoolState::Disabled {
                    s.state = PoolState::Connecting;
                }
                s.in_flight = 0;
                s.last_disconnect = Some(ended.reason.clone());
                // What the connection negotiated ended with it.
                s.session = None;
            });
            // Only a session that worked for a while resets the back-off: a
            // pool that hands out a job and drops us (or asks to reconnect)
            // at once is retried ever more slowly, never in a tight loop.
            let healthy = got_job && now().saturating_duration_since(started) >= HEALTHY_SESSION;
            if healthy
                && failures
                    .back()
                    .is_none_or(|t| now().saturating_duration_since(*t) > Duration::from_secs(60))
            {
                plugin_backoff.reset();
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
                    let delay = retry_delay(&mut backoff, healthy, None);
                    span.in_scope(
                        || warn!(reason = %ended.reason, ?delay, "disconnected from pool"),
                    );
                    if sleep_or_shutdown(delay, &mut shutdown).await {
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
                    let delay = retry_delay(&mut backoff, healthy, Some(after));
                    if sleep_or_shutdown(delay, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// What the plugin is told about this pool.
    fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            url: self.entry.url.url.clone(),
            host: self.entry.url.host.clone(),
            port: self.entry.url.port,
            user: self.entry.user.clone(),
            password: self.entry.password.clone(),
            user_agent: self.user_agent.clone(),
            version_rolling: self.miner.can_roll_version(),
            settings: crate::plugin::pool::settings_map(&self.entry.settings),
        }
    }

    /// Records a plugin failure; returns true when the plugin is now disabled.
    fn plugin_failed(
        &self,
        span: &tracing::Span,
        reason: String,
        failures: &mut VecDeque<Instant>,
    ) -> bool {
        let t = now();
        failures.push_back(t);
        while failures
            .front()
            .is_some_and(|f| t.saturating_duration_since(*f) > FAILURE_WINDOW)
        {
            failures.pop_front();
        }
        let disabled = failures.len() >= MAX_PLUGIN_FAILURES;
        self.status.update_pool(self.id, |s| {
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
            .update_pool(self.id, |s| s.last_disconnect = Some(reason));
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
        logs: &mut Logs,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (mut reader, mut writer) = stream.into_split();
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        let now_ms = || now().saturating_duration_since(clock).as_millis() as u64;
        let Some(ready) = self.miner.share_ready(self.id) else {
            return Ended::new("pool was removed", Next::Shutdown);
        };
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
            .apply(out, &mut writer, connection, &mut pending, got_job, logs)
            .await
        {
            return ended;
        }
        let mut buf = vec![0u8; 16 * 1024];
        // When the submit rate is used up: wait this long before the next take.
        let mut submit_wait: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
        loop {
            let wait_until = submit_wait;
            let out = tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) => return Ended::new("pool closed the connection", Next::Backoff),
                    Ok(n) => call_blocking(|| plugin.received(now_ms(), &buf[..n])),
                    Err(e) => return Ended::new(format!("read error: {e}"), Next::Backoff),
                },
                _ = ready.notified(), if wait_until.is_none() => {
                    submit_wait = Some(tokio::time::Instant::now());
                    continue;
                }
                _ = sleep_until_opt(wait_until) => {
                    match self.miner.take_share(self.id, connection, now()) {
                        Take::Empty => {
                            submit_wait = None;
                            continue;
                        }
                        Take::Wait(d) => {
                            submit_wait = Some(tokio::time::Instant::now() + d);
                            continue;
                        }
                        Take::Share(share) => {
                            // More may be waiting: look again right after this one.
                            submit_wait = Some(tokio::time::Instant::now());
                            let id = *next_share_id;
                            *next_share_id += 1;
                            pending.insert(id, Pending { job_id: share.job_id.clone(), difficulty: share.difficulty });
                            let in_flight = pending.len() as u64;
                            self.status.update_pool(self.id, |p| p.in_flight = in_flight);
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
                    }
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
                .apply(out, &mut writer, connection, &mut pending, got_job, logs)
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
        logs: &mut Logs,
    ) -> Result<(), Ended> {
        for refused in out.rejected {
            self.refused(refused.to_string(), logs);
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
                    self.miner.new_job(self.id, connection, job);
                    if !*got_job {
                        *got_job = true;
                        self.status
                            .update_pool(self.id, |s| s.state = PoolState::Healthy);
                        self.selector.set_healthy(self.id, true);
                    }
                }
                PoolAction::SetShareTarget(target) => {
                    if let Err(reason) = self.miner.set_share_target(self.id, target) {
                        self.refused(reason, logs);
                    }
                }
                PoolAction::ShareResult { id, outcome } => {
                    let share = pending.remove(&id);
                    let job = share.as_ref().map(|s| s.job_id.as_str()).unwrap_or("?");
                    let difficulty = share.as_ref().map(|s| s.difficulty).unwrap_or(0.0);
                    let t = now();
                    match outcome {
                        Ok(()) => {
                            if let LogDecision::Write { suppressed } = logs.accepted.check(t) {
                                info!(
                                    share = id,
                                    job,
                                    difficulty = format_args!("{difficulty:.4}"),
                                    more_since_last_line = suppressed,
                                    "share accepted"
                                );
                            }
                            self.status.update(|c| c.accepted += 1);
                            self.status.update_pool(self.id, |s| s.accepted += 1);
                        }
                        Err(reason) => {
                            if let LogDecision::Write { suppressed } = logs.rejected.check(t) {
                                warn!(share = id, job, %reason, more_since_last_line = suppressed, "share rejected");
                            }
                            self.status
                                .update(|c| *c.rejected.entry(reason).or_default() += 1);
                            self.status.update_pool(self.id, |s| s.rejected += 1);
                        }
                    }
                    let in_flight = pending.len() as u64;
                    self.status
                        .update_pool(self.id, |p| p.in_flight = in_flight);
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
                PoolAction::Session(info) => {
                    let mut changed = false;
                    self.status.update_pool(self.id, |s| {
                        changed = s.session.as_ref() != Some(&info);
                        s.session = Some(info.clone());
                    });
                    // Once per change, and a plugin flipping between two
                    // reports is rate-limited like its other output.
                    if changed && let LogDecision::Write { suppressed } = logs.session.check(now())
                    {
                        info!(target: "hashwatt::plugin", more_since_last_line = suppressed, "session: {info}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a refused plugin action and logs it, rate-limited.
    fn refused(&self, reason: String, logs: &mut Logs) {
        if let LogDecision::Write { suppressed } = logs.refused.check(now()) {
            warn!(more_since_last_line = suppressed, "{reason}");
        }
        self.status.update(|c| {
            c.refused_actions += 1;
            c.last_refused_action = Some(reason);
        });
    }
}

/// How long to wait before connecting again. A session that worked for a
/// while (`healthy`) starts the back-off over; otherwise every retry waits
/// longer, whatever ended it — a pool that drops us, or asks to be
/// reconnected to (`requested`: its own delay, capped), at once and again
/// is retried ever more slowly, never in a tight loop.
fn retry_delay(backoff: &mut Backoff, healthy: bool, requested: Option<Duration>) -> Duration {
    if healthy {
        backoff.reset();
    }
    let delay = backoff.next_delay();
    match requested {
        Some(after) => after.min(MAX_RECONNECT_DELAY).max(delay),
        None => delay,
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps for `d`; returns true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_reconnect_requests_back_off_like_failures() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        // A pool answering every connection with `client.reconnect` (wait 0).
        let waits: Vec<Duration> = (0..8)
            .map(|_| retry_delay(&mut b, false, Some(Duration::ZERO)))
            .collect();
        let total: Duration = waits.iter().sum();
        for pair in waits.windows(2) {
            assert!(pair[1] > pair[0].mul_f64(0.5), "{waits:?}");
        }
        // 250 ms doubling: 63.75 s over eight tries, ±25 % jitter.
        assert!(total >= Duration::from_secs(47), "{total:?}");
        // A healthy session in between starts over at the shortest delay.
        assert!(retry_delay(&mut b, true, Some(Duration::ZERO)) <= Duration::from_millis(313));
        // The pool's own delay is honoured, but capped.
        assert_eq!(
            retry_delay(&mut b, true, Some(Duration::from_secs(3600))),
            MAX_RECONNECT_DELAY
        );
    }
}
