//! The pool "test connection": one short session with a pool, through the
//! same plugin a real pool entry would use, to tell an operator *before*
//! saving a pool whether the address, the worker name and the protocol work.
//!
//! The probe has its own plugin instance and its own TCP connection; it
//! never touches the miner, the pool selector or the status counters, and
//! it never submits a share (no work is ever handed to a device). It
//! disconnects as soon as the pool has sent its first job.
//!
//! The pool contract (`wit/pool`) has no "subscribed" or "authorized"
//! events, so those steps are derived from what the plugin does:
//! - *subscribe*: the pool answered and the plugin carried on with its
//!   handshake (sent its next request, e.g. `mining.authorize`, or produced
//!   work), rather than failing;
//! - *authorize*: the plugin logged a line starting with `authorized`
//!   (the built-in Stratum V1 plugin logs `authorized as <worker>`), or, for
//!   a plugin that reports no such line, the pool sent work and did not
//!   refuse the worker within a short settle time (the step's `detail` says
//!   it was inferred);
//! - a plugin `fail` whose reason mentions authorization or subscription
//!   fails that step, with the pool's reason.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::plugin::Limits;
use crate::plugin::call_blocking;
use crate::plugin::pool::{PoolAction, PoolConfig, PoolPlugin, PoolPluginPre, wake_delay};

/// Name of the first step: the TCP connection.
pub const STEP_CONNECT: &str = "connect";
/// Name of the second step: the pool answered the plugin's handshake.
pub const STEP_SUBSCRIBE: &str = "subscribe";
/// Name of the third step: the pool accepted the worker.
pub const STEP_AUTHORIZE: &str = "authorize";
/// Name of the last step: the pool sent work.
pub const STEP_FIRST_JOB: &str = "first job";

/// The outcome of a test connection, for the panel and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PoolTest {
    /// Whether every step succeeded: the pool would be mined on.
    pub ok: bool,
    /// The steps in order (`connect`, `subscribe`, `authorize`,
    /// `first job`); steps after the first failed one are left out.
    pub steps: Vec<PoolTestStep>,
    /// What the session negotiated, if the plugin reported it (protocol,
    /// channel, the pool's verified identity).
    pub session: Option<crate::status::SessionInfo>,
}

/// One step of a test connection, so the operator sees where it broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PoolTestStep {
    /// `connect`, `subscribe`, `authorize` or `first job`.
    pub step: String,
    /// Whether this step succeeded.
    pub ok: bool,
    /// What happened, in plain words (e.g. "connection refused",
    /// "authorization rejected by pool: …", "no job within 10 s").
    pub detail: String,
    /// Milliseconds from the end of the previous step to this step's
    /// outcome (`None` when the step never started, e.g. a plugin that
    /// cannot be loaded).
    pub ms: Option<u64>,
}

impl PoolTest {
    /// A test that stopped before connecting (bad plugin, settings, scheme):
    /// the reason is reported as a failed `connect` step.
    pub fn refused(detail: impl Into<String>) -> PoolTest {
        PoolTest {
            ok: false,
            steps: vec![PoolTestStep {
                step: STEP_CONNECT.into(),
                ok: false,
                detail: detail.into(),
                ms: None,
            }],
            session: None,
        }
    }

    /// The step called `name`, if it was reached.
    pub fn step(&self, name: &str) -> Option<&PoolTestStep> {
        self.steps.iter().find(|s| s.step == name)
    }
}

/// How long each step of a test connection may take. Injectable so tests
/// (and callers with other needs) do not wait out production timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeDeadlines {
    /// The whole test, whatever the steps allow.
    pub overall: Duration,
    /// The TCP connection.
    pub connect: Duration,
    /// The pool's answer to the handshake, from the connection.
    pub subscribe: Duration,
    /// The pool's verdict on the worker, from the subscription.
    pub authorize: Duration,
    /// The first job, from the connection.
    pub first_job: Duration,
    /// After a job, how long to wait for an authorization verdict from a
    /// plugin that has not reported one (before inferring it).
    pub settle: Duration,
}

impl Default for ProbeDeadlines {
    /// 15 s in all: 5 s to connect, 5 s per handshake step, 10 s for work.
    fn default() -> Self {
        ProbeDeadlines {
            overall: Duration::from_secs(15),
            connect: Duration::from_secs(5),
            subscribe: Duration::from_secs(5),
            authorize: Duration::from_secs(5),
            first_job: Duration::from_secs(10),
            settle: Duration::from_secs(1),
        }
    }
}

/// Why the session ended before every step succeeded.
#[derive(Debug)]
enum Ended {
    /// The plugin gave up (`fail`), with its reason.
    Failed(String),
    /// The connection broke or the plugin misbehaved; plain words.
    Broken(String),
    /// A step's deadline (or the overall one) passed.
    Timeout { overall: bool },
}

/// What the session showed so far (times on tokio's clock).
struct Progress {
    connected: Instant,
    subscribed: Option<Instant>,
    authorized: Option<(Instant, String)>,
    job: Option<(Instant, String)>,
    /// The last action the host refused (e.g. an invalid job), for context.
    refused: Option<String>,
    /// The plugin's latest session report.
    session: Option<crate::status::SessionInfo>,
}

impl Progress {
    fn done(&self) -> bool {
        self.subscribed.is_some() && self.authorized.is_some() && self.job.is_some()
    }
}

/// Runs one test session against `config.host:config.port` with a fresh
/// instance of `plugin` under `limits`, and disconnects.
pub async fn probe(
    plugin: &PoolPluginPre,
    config: PoolConfig,
    limits: Limits,
    deadlines: ProbeDeadlines,
) -> PoolTest {
    let start = Instant::now();
    let overall_end = start + deadlines.overall;
    let mut instance = match call_blocking(|| plugin.instantiate(&config, limits)) {
        Ok(p) => p,
        Err(e) => return PoolTest::refused(format!("the pool plugin cannot start: {e}")),
    };
    let (host, port) = (config.host.clone(), config.port);
    let connect_end = overall_end.min(start + deadlines.connect);
    let connected =
        tokio::time::timeout_at(connect_end, TcpStream::connect((host.as_str(), port))).await;
    let connect_ms = ms(start.elapsed());
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return failed_connect(connect_error(&e, &host, port), connect_ms);
        }
        Err(_) => {
            let limit = deadlines.connect.min(deadlines.overall);
            return failed_connect(
                format!("no connection to {host}:{port} within {}", human(limit)),
                connect_ms,
            );
        }
    };
    let _ = stream.set_nodelay(true);
    let mut progress = Progress {
        connected: Instant::now(),
        subscribed: None,
        authorized: None,
        job: None,
        refused: None,
        session: None,
    };
    let ended = session(
        stream,
        &mut instance,
        start,
        overall_end,
        &deadlines,
        &mut progress,
    )
    .await;
    if instance.dead().is_none() {
        let _ = call_blocking(|| instance.disconnected("test connection finished"));
    }
    let mut test = report(
        plugin.name(),
        &config.user,
        &format!("{host}:{port}"),
        connect_ms,
        &progress,
        ended,
        &deadlines,
    );
    test.session = progress.session.take();
    test
}

fn failed_connect(detail: String, connect_ms: u64) -> PoolTest {
    PoolTest {
        ok: false,
        steps: vec![PoolTestStep {
            step: STEP_CONNECT.into(),
            ok: false,
            detail,
            ms: Some(connect_ms),
        }],
        session: None,
    }
}

/// A connect error in plain words.
fn connect_error(e: &std::io::Error, host: &str, port: u16) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => {
            format!("connection refused (nothing accepts connections on {host}:{port})")
        }
        K::TimedOut => format!("connecting to {host}:{port} timed out"),
        K::HostUnreachable => format!("host {host} is unreachable"),
        K::NetworkUnreachable => format!("network unreachable for {host}"),
        K::ConnectionReset => format!("connection reset by {host}:{port}"),
        _ => format!("cannot connect to {host}:{port}: {e}"),
    }
}

/// Drives the session until every step has succeeded, the plugin fails,
/// the connection breaks or a deadline passes. `None`: all steps done.
async fn session(
    stream: TcpStream,
    plugin: &mut PoolPlugin,
    start: Instant,
    overall_end: Instant,
    d: &ProbeDeadlines,
    progress: &mut Progress,
) -> Option<Ended> {
    let (mut reader, mut writer) = stream.into_split();
    let now_ms = || ms(start.elapsed());
    let mut wake: Option<Instant> = None;
    let mut received_any = false;
    let out = call_blocking(|| plugin.connected(now_ms()));
    let mut out = match out {
        Ok(out) => out,
        Err(e) => return Some(Ended::Broken(format!("the pool plugin failed: {e}"))),
    };
    let mut from_pool = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(at) = out.wake_at_ms {
            wake = Some(Instant::now() + wake_delay(at, now_ms()));
        }
        for refused in &out.rejected {
            progress.refused = Some(refused.to_string());
        }
        let mut sent = false;
        for action in std::mem::take(&mut out.actions) {
            match action {
                PoolAction::Send(bytes) => {
                    sent = true;
                    let until = overall_end.min(Instant::now() + Duration::from_secs(10));
                    match tokio::time::timeout_at(until, writer.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            return Some(Ended::Broken(format!("cannot write to the pool: {e}")));
                        }
                        Err(_) => {
                            return Some(Ended::Broken("writing to the pool timed out".into()));
                        }
                    }
                }
                PoolAction::NewJob(job) => {
                    progress.subscribed.get_or_insert_with(Instant::now);
                    progress
                        .job
                        .get_or_insert_with(|| (Instant::now(), job.id().to_string()));
                }
                PoolAction::Log { message, .. } => {
                    if is_authorized_line(&message) && progress.authorized.is_none() {
                        progress.subscribed.get_or_insert_with(Instant::now);
                        progress.authorized = Some((Instant::now(), message));
                    }
                }
                PoolAction::Fail(reason) => return Some(Ended::Failed(reason)),
                PoolAction::Reconnect { host, port, .. } => {
                    let to = match (host.is_empty(), port) {
                        (true, 0) => String::new(),
                        (true, p) => format!(" (port {p})"),
                        (false, 0) => format!(" ({host})"),
                        (false, p) => format!(" ({host}:{p})"),
                    };
                    return Some(Ended::Broken(format!(
                        "the pool asked to reconnect elsewhere{to}; a test connection does not follow redirects"
                    )));
                }
                // A test submits nothing, so share results cannot come;
                // the target only matters to a miner.
                PoolAction::ShareResult { .. } | PoolAction::SetShareTarget(_) => {}
                PoolAction::Session(info) => progress.session = Some(info),
            }
        }
        // The pool answered and the plugin went on with its handshake.
        if from_pool && sent && received_any {
            progress.subscribed.get_or_insert_with(Instant::now);
        }
        if progress.done() {
            return None;
        }
        let deadline = next_deadline(progress, d).min(overall_end);
        out = tokio::select! {
            read = reader.read(&mut buf) => {
                from_pool = true;
                match read {
                    Ok(0) => return Some(Ended::Broken("the pool closed the connection".into())),
                    Ok(n) => {
                        received_any = true;
                        match call_blocking(|| plugin.received(now_ms(), &buf[..n])) {
                            Ok(out) => out,
                            Err(e) => return Some(Ended::Broken(format!("the pool plugin failed: {e}"))),
                        }
                    }
                    Err(e) => return Some(Ended::Broken(format!("cannot read from the pool: {e}"))),
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(deadline)), if wake.is_some() => {
                from_pool = false;
                wake = None;
                match call_blocking(|| plugin.tick(now_ms())) {
                    Ok(out) => out,
                    Err(e) => return Some(Ended::Broken(format!("the pool plugin failed: {e}"))),
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if progress.job.is_some() && progress.authorized.is_none() && deadline < overall_end {
                    // Settled (or the authorize deadline passed) with work and no refusal.
                    return None;
                }
                return Some(Ended::Timeout { overall: deadline >= overall_end });
            }
        };
    }
}

/// When the step being waited for runs out of time.
fn next_deadline(p: &Progress, d: &ProbeDeadlines) -> Instant {
    let job_end = p.connected + d.first_job;
    match (p.subscribed, &p.authorized, &p.job) {
        (None, _, _) => p.connected + d.subscribe,
        (Some(s), None, None) => (s + d.authorize).min(job_end),
        (Some(s), None, Some((at, _))) => (s + d.authorize).min(*at + d.settle),
        (Some(_), Some(_), _) => job_end,
    }
}

/// Whether a plugin log line reports that the pool accepted the worker.
fn is_authorized_line(message: &str) -> bool {
    message
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("authorized"))
}

/// Which step a plugin's failure reason is about, by its words.
fn mentions(reason: &str, word: &str) -> bool {
    reason.to_ascii_lowercase().contains(word)
}

/// Turns what the session showed into the steps the operator sees.
fn report(
    plugin: &str,
    user: &str,
    endpoint: &str,
    connect_ms: u64,
    p: &Progress,
    ended: Option<Ended>,
    d: &ProbeDeadlines,
) -> PoolTest {
    let mut steps = vec![PoolTestStep {
        step: STEP_CONNECT.into(),
        ok: true,
        detail: format!("connected to {endpoint}"),
        ms: Some(connect_ms),
    }];
    let since = |from: Instant| Some(ms(Instant::now().saturating_duration_since(from)));
    let between = |from: Instant, to: Instant| Some(ms(to.saturating_duration_since(from)));
    let step = |name: &str, ok: bool, detail: String, ms: Option<u64>| PoolTestStep {
        step: name.into(),
        ok,
        detail,
        ms,
    };
    let timeout = |what: &str, limit: Duration, overall: bool| {
        if overall {
            format!(
                "{what} before the test's overall deadline of {}",
                human(d.overall)
            )
        } else {
            format!("{what} within {}", human(limit))
        }
    };
    let failure = |reason: &str| -> String {
        if mentions(reason, "authoriz") {
            let pool = reason
                .split_once(": ")
                .map(|(_, r)| r)
                .filter(|_| mentions(reason, "refused") || mentions(reason, "rejected"))
                .unwrap_or(reason);
            format!("authorization rejected by pool: {pool}")
        } else if mentions(reason, "subscri") {
            let pool = reason.split_once(": ").map_or(reason, |(_, r)| r);
            format!("subscription rejected by pool: {pool}")
        } else {
            format!("the plugin gave up: {reason}")
        }
    };
    let ended_detail = |e: &Ended, what: &str, limit: Duration| -> String {
        match e {
            Ended::Failed(r) => failure(r),
            Ended::Broken(r) => r.clone(),
            Ended::Timeout { overall } => timeout(what, limit, *overall),
        }
    };
    // Subscribe.
    let auth_failure = matches!(&ended, Some(Ended::Failed(r)) if mentions(r, "authoriz"));
    let subscribed = match (p.subscribed, &ended) {
        (Some(at), _) => {
            steps.push(step(
                STEP_SUBSCRIBE,
                true,
                "the pool answered the handshake".into(),
                between(p.connected, at),
            ));
            at
        }
        (None, _) if auth_failure => {
            steps.push(step(
                STEP_SUBSCRIBE,
                true,
                "inferred: the pool went on to authorization".into(),
                since(p.connected),
            ));
            Instant::now()
        }
        (None, Some(e)) => {
            let detail = ended_detail(e, "no answer to the subscription", d.subscribe);
            steps.push(step(STEP_SUBSCRIBE, false, detail, since(p.connected)));
            return PoolTest {
                ok: false,
                steps,
                session: None,
            };
        }
        (None, None) => {
            steps.push(step(
                STEP_SUBSCRIBE,
                false,
                "the session ended without an answer".into(),
                since(p.connected),
            ));
            return PoolTest {
                ok: false,
                steps,
                session: None,
            };
        }
    };
    // Authorize.
    let authorized = match (&p.authorized, &ended) {
        (Some((at, line)), _) => {
            let detail = if line.len() > "authorized".len() {
                line.clone()
            } else {
                format!("authorized as {user}")
            };
            steps.push(step(STEP_AUTHORIZE, true, detail, between(subscribed, *at)));
            *at
        }
        (None, Some(e)) if p.job.is_none() || !matches!(e, Ended::Timeout { .. }) => {
            let detail = ended_detail(e, "no answer to the authorization", d.authorize);
            steps.push(step(STEP_AUTHORIZE, false, detail, since(subscribed)));
            return PoolTest {
                ok: false,
                steps,
                session: None,
            };
        }
        (None, _) => {
            // Work came and no refusal: the plugin reports no verdict.
            let at = p.job.as_ref().map_or_else(Instant::now, |(at, _)| *at);
            steps.push(step(
                STEP_AUTHORIZE,
                true,
                format!(
                    "inferred: plugin {plugin} does not report authorization; the pool sent work \
                     and did not refuse worker {user}"
                ),
                between(subscribed, at),
            ));
            at
        }
    };
    // First job.
    match (&p.job, &ended) {
        (Some((at, id)), _) => {
            let after = if *at > authorized { authorized } else { *at };
            steps.push(step(
                STEP_FIRST_JOB,
                true,
                format!("received job {id}"),
                between(after, *at),
            ));
        }
        (None, e) => {
            let mut detail = match e {
                Some(e) => ended_detail(e, "no job", d.first_job),
                None => "no job".into(),
            };
            if let Some(r) = &p.refused {
                detail.push_str(&format!(" (the host refused: {r})"));
            }
            steps.push(step(STEP_FIRST_JOB, false, detail, since(authorized)));
        }
    }
    PoolTest {
        ok: steps.iter().all(|s| s.ok),
        steps,
        session: None,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration the way an operator reads it: "10 s", "250 ms".
fn human(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) && d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(10)), "10 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn authorization_lines_are_recognised() {
        assert!(is_authorized_line("authorized as test.worker"));
        assert!(is_authorized_line("Authorized"));
        assert!(!is_authorized_line("not yet authorized"));
        assert!(!is_authorized_line("unauthorized worker"));
        assert!(!is_authorized_line("auth"));
        assert!(!is_authorized_line("é"));
    }
}
