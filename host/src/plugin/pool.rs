//! Host side of the `hashwatt:pool` world: instantiates a pool plugin,
//! drives its session and turns what it returns into validated
//! [`PoolAction`]s. Nothing a plugin returns reaches the miner unchecked.

use std::time::Duration;

use hashwatt_work::{Job, JobSpec, Target, WorkKindSpec};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::{
    Limits, PluginError, PluginState, Runtime, deadline_ticks, describe_trap, limited_store,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/pool",
        world: "pool-plugin",
    });
}

use bindings::exports::hashwatt::pool::session as wit_session;
use bindings::hashwatt::pool::types as wit;

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
    /// Whether the host can roll versions (BIP 320).
    pub version_rolling: bool,
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
}

/// What one call into the plugin produced.
#[derive(Debug, Default)]
pub struct CallOutput {
    /// Valid actions, in the plugin's order.
    pub actions: Vec<PoolAction>,
    /// Actions the host refused, with reasons (to be logged).
    pub rejected: Vec<ActionError>,
}

/// A compiled pool plugin, ready to be instantiated cheaply many times.
#[derive(Clone)]
pub struct PoolPluginPre {
    name: String,
    runtime: Runtime,
    pre: bindings::PoolPluginPre<PluginState>,
    /// The endpoints an installed package's manifest allows (`None`: any
    /// the operator configures, for built-in and operator-supplied files).
    endpoints: Option<std::sync::Arc<crate::plugin::package::Capabilities>>,
}

impl PoolPluginPre {
    /// Compiles and links a pool plugin component.
    pub fn new(runtime: &Runtime, name: &str, wasm: &[u8]) -> Result<Self, PluginError> {
        let component = runtime.compile(name, wasm)?;
        Self::from_component(runtime, name, &component)
    }

    /// Links an already compiled (e.g. cached) pool plugin component.
    pub fn from_component(
        runtime: &Runtime,
        name: &str,
        component: &wasmtime::component::Component,
    ) -> Result<Self, PluginError> {
        let load_err = |e: wasmtime::Error| PluginError::Load {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let instance_pre = runtime
            .linker()
            .instantiate_pre(component)
            .map_err(load_err)?;
        let pre = bindings::PoolPluginPre::new(instance_pre).map_err(load_err)?;
        Ok(PoolPluginPre {
            name: name.into(),
            runtime: runtime.clone(),
            pre,
            endpoints: None,
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

    /// Instantiates the plugin and creates a session for `config`.
    pub fn instantiate(
        &self,
        config: &PoolConfig,
        limits: Limits,
    ) -> Result<PoolPlugin, PluginError> {
        let (mut store, setup_budget) = limited_store(&self.runtime, &limits);
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
}

impl PoolPlugin {
    /// A new connection to the pool is open.
    pub fn connected(&mut self, now_ms: u64) -> Result<CallOutput, PluginError> {
        self.call(|i, s, r| i.call_connected(s, r, now_ms))
    }

    /// Bytes arrived from the pool.
    pub fn received(&mut self, bytes: &[u8]) -> Result<CallOutput, PluginError> {
        self.call(|i, s, r| i.call_received(s, r, bytes))
    }

    /// Time passed.
    pub fn tick(&mut self, now_ms: u64) -> Result<CallOutput, PluginError> {
        self.call(|i, s, r| i.call_tick(s, r, now_ms))
    }

    /// The host found a share.
    pub fn share_found(&mut self, share: &ShareSubmission) -> Result<CallOutput, PluginError> {
        let wit_share = wit::Share {
            id: share.id,
            job_id: share.job_id.clone(),
            extranonce2: share.extranonce2.clone(),
            ntime: share.ntime,
            nonce: share.nonce,
            version: share.version,
        };
        self.call(|i, s, r| i.call_share_found(s, r, &wit_share))
    }

    /// The connection closed.
    pub fn disconnected(&mut self, reason: &str) -> Result<(), PluginError> {
        self.guard()?;
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        let session = self.instance.hashwatt_pool_session().session();
        session
            .call_disconnected(&mut self.store, self.session, reason)
            .map_err(|e| self.kill(&e))
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
        let guest = self.instance.hashwatt_pool_session();
        let result = f(&guest.session(), &mut self.store, self.session);
        match result {
            Ok(actions) => convert(&self.name, &self.limits, actions),
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

    proptest! {
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
