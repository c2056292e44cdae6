//! Host side of the `hashwatt:pool@0.2.1` world (0.2.0 components run
//! unchanged): checks that a component
//! was built for it, asks it which URL schemes it speaks and whether a
//! pool's settings suit it, instantiates it, drives its session and turns
//! what it returns into validated [`PoolAction`]s and a wake-up time.
//! Nothing a plugin returns reaches the miner unchecked.

use std::sync::Arc;
use std::time::Duration;

use hashwatt_work::{Job, JobSpec, Target, WorkKindSpec};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

pub use super::wake::{MAX_WAKE_DELAY, MIN_WAKE_DELAY, wake_delay};
use super::{
    Limits, PluginError, PluginState, PluginStats, Runtime, call_blocking, deadline_ticks,
    describe_trap, limited_store,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/pool",
        world: "pool-plugin",
    });
}

use bindings::exports::hashwatt::pool::session as wit_session;
use bindings::hashwatt::pool::types as wit;

/// The WIT package pool plugins implement.
pub const POOL_PACKAGE: &str = "hashwatt:pool";
/// The version of [`POOL_PACKAGE`] this host implements (`wit/pool`); a
/// component built for another minor version (any other major), or for a
/// later patch, is refused with [`PluginError::WorldVersion`]; earlier
/// patches of the same minor run (0.2.0 components do not import `status`).
pub const POOL_WORLD_VERSION: &str = "0.2.1";
/// The interface whose export version decides which contract a component
/// was built for.
const SESSION_INTERFACE: &str = "hashwatt:pool/session";

/// Most URL schemes one plugin may claim.
pub const MAX_URL_SCHEMES: usize = 16;
/// Longest URL scheme a plugin may claim, in bytes.
pub const MAX_URL_SCHEME_LEN: usize = 32;

/// The pool as the plugin sees it.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The configured URL.
    pub url: String,
    /// Host part of the URL.
    pub host: String,
    /// Port part of the URL.
    pub port: u16,
    /// Worker name.
    pub user: String,
    /// Worker password.
    pub password: String,
    /// User agent to announce.
    pub user_agent: String,
    /// Whether the host can roll versions (BIP 320); the plugin offers
    /// version rolling to the pool only when this is true.
    pub version_rolling: bool,
    /// The pool's `settings` table from the operator's configuration, for
    /// the plugin (empty when none); check it first with
    /// [`PoolPluginPre::validate_settings`].
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl PoolConfig {
    /// [`Self::settings`] as the JSON object text the plugin receives.
    pub fn settings_json(&self) -> String {
        settings_json(&self.settings)
    }
}

/// A pool's `settings` table from the configuration as the JSON object the
/// contract hands to the plugin (TOML dates become strings).
pub fn settings_map(table: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(table) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Settings as the JSON object text plugins receive (WIT `pool-config.settings`
/// and `plugin-info.validate-settings`).
pub fn settings_json(settings: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(settings.clone()).to_string()
}

/// A share handed to the plugin for submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSubmission {
    /// Host-chosen id, quoted back in [`PoolAction::ShareResult`].
    pub id: u64,
    /// The job the share solves.
    pub job_id: String,
    /// The extranonce2 used.
    pub extranonce2: Vec<u8>,
    /// The ntime used.
    pub ntime: u32,
    /// The nonce (header bytes 76..80 as little-endian u32).
    pub nonce: u32,
    /// The full header version used.
    pub version: u32,
}

/// Severity of a plugin log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Developer diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Recovered problem.
    Warn,
    /// Failure.
    Error,
}

/// A validated action from a pool plugin.
#[derive(Clone, Debug)]
pub enum PoolAction {
    /// Write bytes to the pool.
    Send(Vec<u8>),
    /// Mine this job.
    NewJob(Job),
    /// Shares must meet this target from now on.
    SetShareTarget(Target),
    /// The pool's verdict on a share: `Ok` accepted, `Err(reason)` rejected.
    ShareResult {
        /// The share id.
        id: u64,
        /// Verdict.
        outcome: Result<(), String>,
    },
    /// Reconnect (empty host / port 0 = unchanged).
    Reconnect {
        /// Host to go to.
        host: String,
        /// Port to go to.
        port: u16,
        /// Delay before connecting.
        after: Duration,
    },
    /// A plugin log line.
    Log {
        /// Severity.
        level: LogLevel,
        /// Text.
        message: String,
    },
    /// The session cannot continue.
    Fail(String),
    /// What the connection negotiated, for the operator (the plugin called
    /// `status.report-session` during the call; the latest report wins).
    Session(crate::status::SessionInfo),
}

/// An action the plugin returned that the host refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A job that fails validation (wrong lengths, absurd branch counts...).
    #[error("invalid job {id:?} from plugin: {reason}")]
    InvalidJob {
        /// The job id the plugin gave (truncated).
        id: String,
        /// Why it was refused.
        reason: hashwatt_work::JobError,
    },
    /// A share target that is not 32 bytes.
    #[error("invalid share target from plugin: {0}")]
    InvalidTarget(hashwatt_work::TargetError),
    /// A session report past the contract's limits.
    #[error("invalid session report from plugin: {0}")]
    InvalidSessionInfo(String),
}

/// What one call into the plugin produced.
#[derive(Debug, Default)]
pub struct CallOutput {
    /// Valid actions, in the plugin's order.
    pub actions: Vec<PoolAction>,
    /// Actions the host refused, with reasons (to be logged).
    pub rejected: Vec<ActionError>,
    /// The last `wake-at` of the call: when (on the `now_ms` clock) the
    /// plugin wants its next `tick`. `None` leaves an earlier request as it
    /// was. Turn it into a wait with [`wake_delay`], which clamps it.
    pub wake_at_ms: Option<u64>,
}

/// A compiled pool plugin, ready to be instantiated cheaply many times.
#[derive(Clone)]
pub struct PoolPluginPre {
    name: String,
    runtime: Runtime,
    pre: bindings::PoolPluginPre<PluginState>,
    /// The endpoints an installed package's manifest allows (`None`: any
    /// the operator configures, for built-in and operator-supplied files).
    endpoints: Option<Arc<crate::plugin::package::Capabilities>>,
    /// What `plugin-info.url-schemes` answered when the plugin was loaded.
    url_schemes: Arc<[String]>,
    /// Where its session instances' memory and call time are accounted.
    stats: Arc<PluginStats>,
}

impl PoolPluginPre {
    /// Compiles and links a pool plugin component.
    pub fn new(runtime: &Runtime, name: &str, wasm: &[u8]) -> Result<Self, PluginError> {
        let component = runtime.compile(name, wasm)?;
        Self::from_component(runtime, name, &component)
    }

    /// Links an already compiled (e.g. cached) pool plugin component.
    ///
    /// Refuses a component built for another version of the contract with
    /// [`PluginError::WorldVersion`] (decided from its exports, before
    /// linking, so the operator learns what to rebuild), and one whose
    /// `plugin-info.url-schemes` traps or claims invalid schemes with
    /// [`PluginError::Trap`] / [`PluginError::Load`]; the schemes are asked
    /// once, here, on a throwaway instance with the default [`Limits`].
    pub fn from_component(
        runtime: &Runtime,
        name: &str,
        component: &wasmtime::component::Component,
    ) -> Result<Self, PluginError> {
        check_world(runtime, name, component)?;
        let load_err = |e: wasmtime::Error| PluginError::Load {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let instance_pre = runtime
            .linker()
            .instantiate_pre(component)
            .map_err(load_err)?;
        let pre = bindings::PoolPluginPre::new(instance_pre).map_err(load_err)?;
        let mut plugin = PoolPluginPre {
            name: name.into(),
            runtime: runtime.clone(),
            pre,
            endpoints: None,
            url_schemes: Arc::from(Vec::new()),
            stats: runtime.stats_for(&format!("pool:{name}")),
        };
        let limits = Limits::default();
        let schemes = plugin.with_throwaway(&limits, |info, store| info.call_url_schemes(store))?;
        plugin.url_schemes = Arc::from(check_url_schemes(name, schemes)?);
        Ok(plugin)
    }

    /// The URL schemes the plugin claims (e.g. `["stratum+tcp"]`), lowercase
    /// and checked, as `plugin-info.url-schemes` answered when the plugin was
    /// loaded. The host picks a pool's plugin by its URL's scheme.
    ///
    /// Never fails today (the answer is taken and checked in
    /// [`Self::from_component`]); the `Result` leaves room to ask lazily.
    pub fn url_schemes(&self) -> Result<Vec<String>, PluginError> {
        Ok(self.url_schemes.to_vec())
    }

    /// Asks the plugin whether `settings_json` (a pool's `settings` as a
    /// JSON object, see [`settings_json`]) suits it, before anything starts,
    /// on a throwaway instance under `limits`.
    ///
    /// `Ok(Err(message))`: the plugin refused the settings; the message
    /// (cut to `limits.max_string_bytes`) names the key and is for the
    /// operator. `Err(_)`: the plugin trapped or ran out of time or memory.
    pub fn validate_settings(
        &self,
        settings_json: &str,
        limits: Limits,
    ) -> Result<Result<(), String>, PluginError> {
        let verdict = self.with_throwaway(&limits, |info, store| {
            info.call_validate_settings(store, settings_json)
        })?;
        Ok(verdict.map_err(|m| truncate(&m, limits.max_string_bytes)))
    }

    /// Runs `f` against `plugin-info` on a fresh instance in its own
    /// limited store (dropped afterwards), under the setup time budget.
    fn with_throwaway<T>(
        &self,
        limits: &Limits,
        f: impl FnOnce(
            &bindings::exports::hashwatt::pool::plugin_info::Guest,
            &mut Store<PluginState>,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let trap = |store: &mut Store<PluginState>, e: wasmtime::Error| PluginError::Trap {
            name: self.name.clone(),
            reason: describe_trap(store, &e),
        };
        call_blocking(|| {
            // Throwaway instances are not sessions: accounted nowhere.
            let (mut store, setup_budget) = limited_store(&self.runtime, limits, Arc::default());
            let instance = match self.pre.instantiate(&mut store) {
                Ok(i) => i,
                Err(e) => return Err(trap(&mut store, e)),
            };
            store.set_epoch_deadline(setup_budget);
            match f(instance.hashwatt_pool_plugin_info(), &mut store) {
                Ok(v) => Ok(v),
                Err(e) => Err(trap(&mut store, e)),
            }
        })
    }

    /// Restricts where the host will connect this plugin to what its
    /// manifest allows, including later `reconnect` requests.
    pub fn with_capabilities(mut self, caps: crate::plugin::package::Capabilities) -> Self {
        self.endpoints = Some(std::sync::Arc::new(caps));
        self
    }

    /// Whether the host may connect this plugin to `host:port`.
    pub fn allows_endpoint(&self, host: &str, port: u16) -> bool {
        self.endpoints
            .as_ref()
            .is_none_or(|c| c.allows_endpoint(host, port))
    }

    /// The plugin's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Memory and call time of this plugin's sessions (shared by clones).
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    /// Accounts this plugin's sessions in `stats` instead: the built-in
    /// plugin apart from an installed one of the same name, or a test
    /// connection apart from the running pools.
    pub fn with_stats(mut self, stats: Arc<PluginStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Instantiates the plugin and creates a session for `config`.
    pub fn instantiate(
        &self,
        config: &PoolConfig,
        limits: Limits,
    ) -> Result<PoolPlugin, PluginError> {
        let (mut store, setup_budget) = limited_store(&self.runtime, &limits, self.stats.clone());
        let trap = |store: &mut Store<PluginState>, e: wasmtime::Error| PluginError::Trap {
            name: self.name.clone(),
            reason: describe_trap(store, &e),
        };
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| trap(&mut store, e))?;
        let wit_config = wit::PoolConfig {
            url: config.url.clone(),
            host: config.host.clone(),
            port: config.port,
            user: config.user.clone(),
            password: config.password.clone(),
            user_agent: config.user_agent.clone(),
            version_rolling: config.version_rolling,
            settings: config.settings_json(),
        };
        store.set_epoch_deadline(setup_budget);
        let session = instance
            .hashwatt_pool_session()
            .session()
            .call_constructor(&mut store, &wit_config)
            .map_err(|e| trap(&mut store, e))?;
        Ok(PoolPlugin {
            name: self.name.clone(),
            store,
            instance,
            session,
            limits,
            dead: None,
            recorder: None,
        })
    }
}

/// A live pool plugin instance with its session.
///
/// After a trap the instance is unusable: every further call returns the
/// same [`PluginError::Trap`]; instantiate a new one from [`PoolPluginPre`].
pub struct PoolPlugin {
    name: String,
    store: Store<PluginState>,
    instance: bindings::PoolPlugin,
    session: ResourceAny,
    limits: Limits,
    dead: Option<String>,
    recorder: Option<super::transcript::Recorder>,
}

impl PoolPlugin {
    /// Writes every call's input and answer to `recorder` from now on
    /// (`hashwatt run --record`).
    pub fn record_to(&mut self, recorder: super::transcript::Recorder) {
        self.recorder = Some(recorder);
    }

    fn recorded(
        &mut self,
        result: Result<CallOutput, PluginError>,
    ) -> Result<CallOutput, PluginError> {
        if let Some(r) = self.recorder.as_mut() {
            r.answered(&result);
        }
        result
    }

    /// A new connection to the pool is open.
    pub fn connected(&mut self, now_ms: u64) -> Result<CallOutput, PluginError> {
        if let Some(r) = self.recorder.as_mut() {
            r.connected(now_ms);
        }
        let result = self.call(|i, s, r| i.call_connected(s, r, now_ms));
        self.recorded(result)
    }

    /// Bytes arrived from the pool at `now_ms`.
    pub fn received(&mut self, now_ms: u64, bytes: &[u8]) -> Result<CallOutput, PluginError> {
        if let Some(r) = self.recorder.as_mut() {
            r.received(now_ms, bytes);
        }
        let result = self.call(|i, s, r| i.call_received(s, r, now_ms, bytes));
        self.recorded(result)
    }

    /// The wake-up the plugin asked for ([`CallOutput::wake_at_ms`]) is
    /// due; call only then.
    pub fn tick(&mut self, now_ms: u64) -> Result<CallOutput, PluginError> {
        if let Some(r) = self.recorder.as_mut() {
            r.tick(now_ms);
        }
        let result = self.call(|i, s, r| i.call_tick(s, r, now_ms));
        self.recorded(result)
    }

    /// The host found a share at `now_ms`.
    pub fn share_found(
        &mut self,
        now_ms: u64,
        share: &ShareSubmission,
    ) -> Result<CallOutput, PluginError> {
        let wit_share = wit::Share {
            id: share.id,
            job_id: share.job_id.clone(),
            extranonce2: share.extranonce2.clone(),
            ntime: share.ntime,
            nonce: share.nonce,
            version: share.version,
        };
        if let Some(r) = self.recorder.as_mut() {
            r.share(now_ms, share);
        }
        let result = self.call(|i, s, r| i.call_share_found(s, r, now_ms, &wit_share));
        self.recorded(result)
    }

    /// The connection closed.
    pub fn disconnected(&mut self, reason: &str) -> Result<(), PluginError> {
        if let Some(r) = self.recorder.as_mut() {
            r.disconnected(reason);
        }
        self.guard()?;
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        let session = self.instance.hashwatt_pool_session().session();
        let started = std::time::Instant::now();
        let result = session.call_disconnected(&mut self.store, self.session, reason);
        self.store.data().stats().record_call(started.elapsed());
        result.map_err(|e| self.kill(&e))
    }

    /// The reason this instance died, if it did.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    fn guard(&self) -> Result<(), PluginError> {
        match &self.dead {
            Some(reason) => Err(PluginError::Trap {
                name: self.name.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn kill(&mut self, e: &wasmtime::Error) -> PluginError {
        let reason = describe_trap(&mut self.store, e);
        self.dead = Some(reason.clone());
        PluginError::Trap {
            name: self.name.clone(),
            reason,
        }
    }

    fn call<F>(&mut self, f: F) -> Result<CallOutput, PluginError>
    where
        F: FnOnce(
            &wit_session::GuestSession<'_>,
            &mut Store<PluginState>,
            ResourceAny,
        ) -> wasmtime::Result<Vec<wit::Action>>,
    {
        self.guard()?;
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        // Only reports made during this call count: one left by the
        // constructor or `disconnected` describes no connection.
        self.store.data_mut().session_report = None;
        let guest = self.instance.hashwatt_pool_session();
        let started = std::time::Instant::now();
        let result = f(&guest.session(), &mut self.store, self.session);
        self.store.data().stats().record_call(started.elapsed());
        let report = self.store.data_mut().session_report.take();
        match result {
            Ok(actions) => {
                let mut out = convert(&self.name, &self.limits, actions)?;
                match report {
                    Some(Ok(info)) => out.actions.insert(0, PoolAction::Session(info)),
                    Some(Err(reason)) => out.rejected.push(ActionError::InvalidSessionInfo(reason)),
                    None => {}
                }
                Ok(out)
            }
            Err(e) => Err(self.kill(&e)),
        }
    }
}

/// Checks a plugin's raw actions against `limits` and the work crate's job
/// validation; the only way plugin output reaches the rest of the host.
fn convert(
    name: &str,
    limits: &Limits,
    actions: Vec<wit::Action>,
) -> Result<CallOutput, PluginError> {
    let limit = |reason: String| PluginError::Limit {
        name: name.to_string(),
        reason,
    };
    if actions.len() > limits.max_actions {
        return Err(limit(format!(
            "{} actions in one call (at most {})",
            actions.len(),
            limits.max_actions
        )));
    }
    let mut out = CallOutput::default();
    let mut sent = 0usize;
    let max_str = limits.max_string_bytes;
    for action in actions {
        match action {
            wit::Action::Send(bytes) => {
                sent = sent.saturating_add(bytes.len());
                if sent > limits.max_send_bytes {
                    return Err(limit(format!(
                        "asked to send {sent} bytes in one call (at most {})",
                        limits.max_send_bytes
                    )));
                }
                out.actions.push(PoolAction::Send(bytes));
            }
            wit::Action::NewJob(job) => {
                let id = truncate(&job.id, 64);
                match Job::validate(job_spec(job)) {
                    Ok(job) => out.actions.push(PoolAction::NewJob(job)),
                    Err(reason) => out.rejected.push(ActionError::InvalidJob { id, reason }),
                }
            }
            wit::Action::SetShareTarget(bytes) => match Target::from_slice(&bytes) {
                Ok(t) => out.actions.push(PoolAction::SetShareTarget(t)),
                Err(e) => out.rejected.push(ActionError::InvalidTarget(e)),
            },
            wit::Action::ShareResult(r) => out.actions.push(PoolAction::ShareResult {
                id: r.id,
                outcome: match r.outcome {
                    wit::ShareOutcome::Accepted => Ok(()),
                    wit::ShareOutcome::Rejected(reason) => Err(truncate(&reason, max_str)),
                },
            }),
            wit::Action::Reconnect(r) => out.actions.push(PoolAction::Reconnect {
                host: truncate(&r.host, 253),
                port: r.port,
                after: Duration::from_millis(u64::from(r.after_ms)),
            }),
            wit::Action::Log(entry) => out.actions.push(PoolAction::Log {
                level: match entry.level {
                    wit::LogLevel::Trace => LogLevel::Trace,
                    wit::LogLevel::Debug => LogLevel::Debug,
                    wit::LogLevel::Info => LogLevel::Info,
                    wit::LogLevel::Warn => LogLevel::Warn,
                    wit::LogLevel::Error => LogLevel::Error,
                },
                message: truncate(&entry.message, max_str),
            }),
            wit::Action::Fail(reason) => out
                .actions
                .push(PoolAction::Fail(truncate(&reason, max_str))),
            // Any u64 is a time; `wake_delay` clamps it when it is used.
            wit::Action::WakeAt(at_ms) => out.wake_at_ms = Some(at_ms),
        }
    }
    Ok(out)
}

/// Most (label, value) pairs in one session report.
pub const MAX_SESSION_DETAILS: usize = 8;

impl bindings::hashwatt::pool::status::Host for PluginState {
    fn report_session(&mut self, info: bindings::hashwatt::pool::status::SessionInfo) {
        self.session_report = Some(check_session_info(info));
    }
}

/// Adds `hashwatt:pool/status` (what 0.2.1 plugins import) to `linker`.
pub(crate) fn add_status_to_linker(
    linker: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    bindings::hashwatt::pool::status::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |s| s,
    )
}

/// Checks a session report against the contract's limits (WIT
/// `status.session-info`); the error says which limit it broke.
fn check_session_info(
    info: bindings::hashwatt::pool::status::SessionInfo,
) -> Result<crate::status::SessionInfo, String> {
    let within = |what: &str, s: &str, max: usize| {
        if s.len() > max {
            Err(format!("{what} is {} bytes (at most {max})", s.len()))
        } else {
            Ok(())
        }
    };
    if info.protocol.is_empty() {
        return Err("protocol is empty".into());
    }
    within("protocol", &info.protocol, 32)?;
    if let Some(c) = &info.channel {
        within("channel", c, 32)?;
    }
    if let Some(a) = &info.authority {
        within("authority", a, 128)?;
    }
    if info.details.len() > MAX_SESSION_DETAILS {
        return Err(format!(
            "{} details (at most {MAX_SESSION_DETAILS})",
            info.details.len()
        ));
    }
    for (label, value) in &info.details {
        within("a detail's label", label, 32)?;
        within("a detail's value", value, 128)?;
    }
    // Display text: control characters (a newline forging a log line)
    // become spaces.
    let clean = |s: String| s.replace(char::is_control, " ");
    Ok(crate::status::SessionInfo {
        protocol: clean(info.protocol),
        channel: info.channel.map(clean),
        encrypted: info.encrypted,
        authority: info.authority.map(clean),
        details: info
            .details
            .into_iter()
            .map(|(l, v)| (clean(l), clean(v)))
            .collect(),
    })
}

/// Refuses a component that does not export the session interface at the
/// contract version this host implements, saying which version it was
/// built for. Decided from the component's type, not from a link error.
fn check_world(
    runtime: &Runtime,
    name: &str,
    component: &wasmtime::component::Component,
) -> Result<(), PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let supported = semver::Version::parse(POOL_WORLD_VERSION)
        .map_err(|e| PluginError::Engine(format!("bad POOL_WORLD_VERSION: {e}")))?;
    let mut found = None;
    for export in &exports {
        let Some(rest) = export.strip_prefix(SESSION_INTERFACE) else {
            continue;
        };
        let Some(version) = rest.strip_prefix('@') else {
            // `hashwatt:pool/session` without a version, or another
            // interface that merely starts with the same letters.
            continue;
        };
        match semver::Version::parse(version) {
            // A later patch may import what this host lacks.
            Ok(v)
                if v.major == supported.major
                    && v.minor == supported.minor
                    && v.patch <= supported.patch
                    && v.pre.is_empty() =>
            {
                return Ok(());
            }
            _ => found = Some(version.to_string()),
        }
    }
    match found {
        Some(found) => Err(PluginError::WorldVersion {
            name: name.into(),
            package: POOL_PACKAGE,
            found,
            supported: POOL_WORLD_VERSION,
            wit: "wit/pool",
        }),
        None => Err(PluginError::Load {
            name: name.into(),
            reason: format!(
                "it does not export {SESSION_INTERFACE}@{POOL_WORLD_VERSION}, so it is not a pool \
                 plugin for this host (it exports [{}])",
                truncate(&exports.join(", "), 512)
            ),
        }),
    }
}

/// Checks what `plugin-info.url-schemes` answered: 1..=16 schemes, each a
/// lowercase URL scheme (RFC 3986: a letter, then letters, digits, `+`,
/// `-`, `.`) of at most 32 bytes. Duplicates are dropped.
fn check_url_schemes(name: &str, schemes: Vec<String>) -> Result<Vec<String>, PluginError> {
    let refuse = |reason: String| PluginError::Load {
        name: name.into(),
        reason,
    };
    if schemes.is_empty() || schemes.len() > MAX_URL_SCHEMES {
        return Err(refuse(format!(
            "it claims {} URL schemes (1..={MAX_URL_SCHEMES})",
            schemes.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(schemes.len());
    for scheme in schemes {
        let valid = scheme.len() <= MAX_URL_SCHEME_LEN
            && scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase())
            && scheme.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
            });
        if !valid {
            return Err(refuse(format!(
                "it claims the invalid URL scheme {:?} (expected a lowercase letter, then \
                 lowercase letters, digits, `+`, `-` or `.`; at most {MAX_URL_SCHEME_LEN} bytes)",
                truncate(&scheme, 64)
            )));
        }
        if !out.contains(&scheme) {
            out.push(scheme);
        }
    }
    Ok(out)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A WIT job as the work crate's unvalidated spec.
fn job_spec(job: wit::Job) -> JobSpec {
    JobSpec {
        id: job.id,
        kind: match job.kind {
            wit::WorkKind::Extended(e) => WorkKindSpec::Extended {
                coinbase_prefix: e.coinbase_prefix,
                extranonce1: e.extranonce1,
                extranonce2_size: e.extranonce2_size,
                coinbase_suffix: e.coinbase_suffix,
                merkle_branches: e.merkle_branches,
            },
            wit::WorkKind::MerkleRoot(root) => WorkKindSpec::MerkleRoot(root),
        },
        prev_hash: job.prev_hash,
        version: job.version,
        version_mask: job.version_mask,
        nbits: job.nbits,
        ntime: job.ntime,
        clean: job.clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report(details: usize) -> bindings::hashwatt::pool::status::SessionInfo {
        bindings::hashwatt::pool::status::SessionInfo {
            protocol: "Stratum V2".into(),
            channel: Some("extended".into()),
            encrypted: true,
            authority: Some("89:c8:96:89:61:69:ed:f6".into()),
            details: (0..details)
                .map(|i| (format!("k{i}"), "v\nforged log line".into()))
                .collect(),
        }
    }

    #[test]
    fn session_reports_are_bounded_and_cleaned() {
        let ok = check_session_info(report(MAX_SESSION_DETAILS)).unwrap();
        assert_eq!(ok.protocol, "Stratum V2");
        assert_eq!(ok.details.len(), MAX_SESSION_DETAILS);
        // Control characters cannot forge a log or status line.
        assert_eq!(ok.details[0].1, "v forged log line");
        let refuse = |f: &dyn Fn(&mut bindings::hashwatt::pool::status::SessionInfo)| {
            let mut r = report(1);
            f(&mut r);
            check_session_info(r).unwrap_err()
        };
        assert_eq!(
            check_session_info(report(MAX_SESSION_DETAILS + 1)).unwrap_err(),
            "9 details (at most 8)"
        );
        assert_eq!(refuse(&|r| r.protocol.clear()), "protocol is empty");
        assert_eq!(
            refuse(&|r| r.protocol = "x".repeat(33)),
            "protocol is 33 bytes (at most 32)"
        );
        assert_eq!(
            refuse(&|r| r.authority = Some("a".repeat(129))),
            "authority is 129 bytes (at most 128)"
        );
        assert_eq!(
            refuse(&|r| r.details[0].0 = "l".repeat(33)),
            "a detail's label is 33 bytes (at most 32)"
        );
    }

    fn good_job() -> wit::Job {
        wit::Job {
            id: "j1".into(),
            kind: wit::WorkKind::Extended(wit::ExtendedWork {
                coinbase_prefix: vec![1; 60],
                extranonce1: vec![2; 4],
                extranonce2_size: 8,
                coinbase_suffix: vec![3; 60],
                merkle_branches: vec![vec![4; 32]; 3],
            }),
            prev_hash: vec![5; 32],
            version: 0x2000_0000,
            version_mask: 0x1fff_e000,
            nbits: 0x1d00_ffff,
            ntime: 1_700_000_000,
            clean: true,
        }
    }

    fn with_kind(f: impl FnOnce(&mut wit::ExtendedWork)) -> wit::Job {
        let mut job = good_job();
        if let wit::WorkKind::Extended(e) = &mut job.kind {
            f(e);
        }
        job
    }

    fn convert_one(action: wit::Action) -> CallOutput {
        convert("test", &Limits::default(), vec![action]).unwrap()
    }

    #[test]
    fn valid_job_passes() {
        let out = convert_one(wit::Action::NewJob(good_job()));
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert!(matches!(&out.actions[..], [PoolAction::NewJob(j)] if j.id() == "j1"));
    }

    #[test]
    fn invalid_jobs_are_rejected_with_a_reason() {
        let mut short_prev = good_job();
        short_prev.prev_hash.pop();
        let mut bad_nbits = good_job();
        bad_nbits.nbits = 0;
        let mut no_id = good_job();
        no_id.id.clear();
        let cases = [
            ("short prev-hash", short_prev),
            (
                "absurd branch count",
                with_kind(|e| e.merkle_branches = vec![vec![0; 32]; 10_000]),
            ),
            (
                "branch length",
                with_kind(|e| e.merkle_branches[1] = vec![0; 31]),
            ),
            ("extranonce2 size 0", with_kind(|e| e.extranonce2_size = 0)),
            (
                "extranonce2 size 200",
                with_kind(|e| e.extranonce2_size = 200),
            ),
            (
                "huge coinbase",
                with_kind(|e| e.coinbase_prefix = vec![0; 1 << 20]),
            ),
            ("nbits 0", bad_nbits),
            ("empty id", no_id),
        ];
        for (what, job) in cases {
            let out = convert_one(wit::Action::NewJob(job));
            assert!(out.actions.is_empty(), "{what}: job was accepted");
            assert_eq!(out.rejected.len(), 1, "{what}");
            let reason = out.rejected[0].to_string();
            assert!(reason.starts_with("invalid job"), "{what}: {reason}");
        }
    }

    #[test]
    fn bad_targets_and_limits() {
        let out = convert_one(wit::Action::SetShareTarget(vec![0; 31]));
        assert!(out.actions.is_empty() && out.rejected.len() == 1);
        let limits = Limits::default();
        let flood = vec![wit::Action::Send(vec![b'x']); limits.max_actions + 1];
        assert!(matches!(
            convert("t", &limits, flood),
            Err(PluginError::Limit { .. })
        ));
        let big = vec![
            wit::Action::Send(vec![0; limits.max_send_bytes]),
            wit::Action::Send(vec![0; 1]),
        ];
        assert!(matches!(
            convert("t", &limits, big),
            Err(PluginError::Limit { .. })
        ));
        let long_log = wit::Action::Log(wit::LogEntry {
            level: wit::LogLevel::Info,
            message: "é".repeat(limits.max_string_bytes),
        });
        match &convert_one(long_log).actions[..] {
            [PoolAction::Log { message, .. }] => {
                assert!(message.len() <= limits.max_string_bytes + 4)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_last_wake_at_of_a_call_counts() {
        let out = convert(
            "t",
            &Limits::default(),
            vec![
                wit::Action::WakeAt(5_000),
                wit::Action::Send(b"x\n".to_vec()),
                wit::Action::WakeAt(3_000),
            ],
        )
        .unwrap();
        assert_eq!(out.wake_at_ms, Some(3_000));
        assert!(matches!(&out.actions[..], [PoolAction::Send(_)]));
        assert_eq!(convert_one(wit::Action::Fail("x".into())).wake_at_ms, None);
        // Wake-ups count against the action limit like any action.
        let limits = Limits::default();
        let flood = vec![wit::Action::WakeAt(1); limits.max_actions + 1];
        assert!(matches!(
            convert("t", &limits, flood),
            Err(PluginError::Limit { .. })
        ));
    }

    #[test]
    fn wake_delays_are_clamped() {
        let ms = Duration::from_millis;
        assert_eq!(wake_delay(31_000, 1_000), ms(30_000));
        assert_eq!(wake_delay(1_000, 1_000), MIN_WAKE_DELAY);
        assert_eq!(wake_delay(0, u64::MAX), MIN_WAKE_DELAY);
        assert_eq!(wake_delay(1_005, 1_000), MIN_WAKE_DELAY);
        assert_eq!(wake_delay(u64::MAX, 0), MAX_WAKE_DELAY);
        assert_eq!(wake_delay(7_200_000, 0), MAX_WAKE_DELAY);
    }

    #[test]
    fn url_schemes_are_checked() {
        let ok = |v: &[&str]| check_url_schemes("t", v.iter().map(|s| s.to_string()).collect());
        assert_eq!(ok(&["stratum+tcp"]).unwrap(), vec!["stratum+tcp"]);
        assert_eq!(
            ok(&["stratum2+tcp", "stratum2+ssl", "stratum2+tcp"]).unwrap(),
            vec!["stratum2+tcp", "stratum2+ssl"]
        );
        assert_eq!(ok(&["a.b-c+1"]).unwrap(), vec!["a.b-c+1"]);
        let long = "a".repeat(MAX_URL_SCHEME_LEN + 1);
        let many = vec!["s"; MAX_URL_SCHEMES + 1];
        for bad in [
            &[][..],
            &many[..],
            &["Stratum+tcp"],
            &["1stratum"],
            &["stratum+tcp://"],
            &["strat um"],
            &[""],
            &[long.as_str()],
        ] {
            let e = ok(bad).unwrap_err();
            assert!(
                matches!(&e, PluginError::Load { reason, .. } if reason.contains("URL scheme")),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn the_world_version_matches_what_packages_may_declare() {
        let v = semver::Version::parse(POOL_WORLD_VERSION).unwrap();
        assert!(
            crate::plugin::package::SUPPORTED_WORLDS.contains(&(
                POOL_PACKAGE,
                v.major,
                v.minor,
                v.patch
            )),
            "package.rs SUPPORTED_WORLDS must list {POOL_PACKAGE}@{POOL_WORLD_VERSION}"
        );
        let wit = include_str!("../../../wit/pool/pool.wit");
        assert!(
            wit.contains(&format!("package {POOL_PACKAGE}@{POOL_WORLD_VERSION};")),
            "wit/pool/pool.wit is not {POOL_PACKAGE}@{POOL_WORLD_VERSION}"
        );
    }

    #[test]
    fn settings_travel_as_a_json_object() {
        let mut settings = serde_json::Map::new();
        assert_eq!(settings_json(&settings), "{}");
        settings.insert("suggest_difficulty".into(), serde_json::json!(512));
        assert_eq!(settings_json(&settings), r#"{"suggest_difficulty":512}"#);
    }

    proptest! {
        #[test]
        fn any_wake_time_gives_a_bounded_delay(at in any::<u64>(), now in any::<u64>()) {
            let d = wake_delay(at, now);
            prop_assert!((MIN_WAKE_DELAY..=MAX_WAKE_DELAY).contains(&d));
        }

        #[test]
        fn arbitrary_jobs_never_panic(
            id in ".{0,300}",
            prefix in proptest::collection::vec(any::<u8>(), 0..200),
            en1 in proptest::collection::vec(any::<u8>(), 0..40),
            en2_size in any::<u8>(),
            branches in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..40),
            prev in proptest::collection::vec(any::<u8>(), 0..40),
            root in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            version in any::<u32>(), mask in any::<u32>(), nbits in any::<u32>(), ntime in any::<u32>(), clean in any::<bool>(),
        ) {
            let kind = match root {
                Some(r) => wit::WorkKind::MerkleRoot(r),
                None => wit::WorkKind::Extended(wit::ExtendedWork {
                    coinbase_prefix: prefix.clone(),
                    extranonce1: en1,
                    extranonce2_size: en2_size,
                    coinbase_suffix: prefix,
                    merkle_branches: branches,
                }),
            };
            let job = wit::Job { id, kind, prev_hash: prev, version, version_mask: mask, nbits, ntime, clean };
            let out = convert_one(wit::Action::NewJob(job));
            prop_assert_eq!(out.actions.len() + out.rejected.len(), 1);
        }
    }
}
