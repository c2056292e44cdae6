//! The wasm glue: bindings for `hashwatt:pool@0.2.1` `pool-plugin`
//! (`plugin-info` and `session` exported, `status` imported), delegating to a [`PoolMachine`] and
//! converting between the generated WIT types and the SDK's mirror types.
//! Used through [`crate::export_pool!`].

use std::cell::RefCell;
use std::marker::PhantomData;

use bindings::exports::hashwatt::pool::plugin_info;
use bindings::exports::hashwatt::pool::session::{Guest, GuestSession};
use bindings::hashwatt::pool::types as wit;

use crate::types::{self as core, PoolMachine};

/// Generated bindings; `pub` because the exported macro expands in the
/// plugin crate and refers to them through `$crate`.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "pool-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_pool_plugin",
        default_bindings_module: "hashwatt_pool_sdk::component::bindings",
        runtime_path: "hashwatt_pool_sdk::component::rt",
    });
}

/// The wit-bindgen runtime, re-exported so plugin crates need no direct
/// wit-bindgen dependency.
#[doc(hidden)]
pub use wit_bindgen::rt;

/// The component's export root, around machine `M`.
#[doc(hidden)]
pub struct Plugin<M>(PhantomData<M>);

/// The `session` resource; the WIT methods take `&self`, hence the RefCell.
#[doc(hidden)]
pub struct PluginSession<M>(RefCell<M>);

impl<M: PoolMachine> Guest for Plugin<M> {
    type Session = PluginSession<M>;
}

impl<M: PoolMachine> plugin_info::Guest for Plugin<M> {
    fn url_schemes() -> Vec<String> {
        M::url_schemes()
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        M::validate_settings(&settings)
    }
}

impl<M: PoolMachine> GuestSession for PluginSession<M> {
    fn new(config: wit::PoolConfig) -> Self {
        PluginSession(RefCell::new(M::new(core::PoolConfig {
            url: config.url,
            host: config.host,
            port: config.port,
            user: config.user,
            password: config.password,
            user_agent: config.user_agent,
            version_rolling: config.version_rolling,
            settings: config.settings,
        })))
    }

    fn connected(&self, now_ms: u64) -> Vec<wit::Action> {
        convert(self.0.borrow_mut().connected(now_ms))
    }

    fn received(&self, now_ms: u64, bytes: Vec<u8>) -> Vec<wit::Action> {
        convert(self.0.borrow_mut().received(now_ms, &bytes))
    }

    fn tick(&self, now_ms: u64) -> Vec<wit::Action> {
        convert(self.0.borrow_mut().tick(now_ms))
    }

    fn share_found(&self, now_ms: u64, share: wit::Share) -> Vec<wit::Action> {
        convert(self.0.borrow_mut().share_found(
            now_ms,
            core::Share {
                id: share.id,
                job_id: share.job_id,
                extranonce2: share.extranonce2,
                ntime: share.ntime,
                nonce: share.nonce,
                version: share.version,
            },
        ))
    }

    fn disconnected(&self, reason: String) {
        self.0.borrow_mut().disconnected(&reason);
    }
}

fn convert(actions: Vec<core::Action>) -> Vec<wit::Action> {
    actions.into_iter().filter_map(action).collect()
}

/// A WIT action, or `None` for what goes to the host another way (a
/// session report, through the imported `status` interface).
fn action(a: core::Action) -> Option<wit::Action> {
    Some(match a {
        core::Action::Send(bytes) => wit::Action::Send(bytes),
        core::Action::NewJob(job) => wit::Action::NewJob(wit::Job {
            id: job.id,
            kind: match job.kind {
                core::WorkKind::Extended(w) => wit::WorkKind::Extended(wit::ExtendedWork {
                    coinbase_prefix: w.coinbase_prefix,
                    extranonce1: w.extranonce1,
                    extranonce2_size: w.extranonce2_size,
                    coinbase_suffix: w.coinbase_suffix,
                    merkle_branches: w.merkle_branches,
                }),
                core::WorkKind::MerkleRoot(root) => wit::WorkKind::MerkleRoot(root),
            },
            prev_hash: job.prev_hash,
            version: job.version,
            version_mask: job.version_mask,
            nbits: job.nbits,
            ntime: job.ntime,
            clean: job.clean,
        }),
        core::Action::SetShareTarget(t) => wit::Action::SetShareTarget(t),
        core::Action::ShareResult(r) => wit::Action::ShareResult(wit::ShareResult {
            id: r.id,
            outcome: match r.outcome {
                core::ShareOutcome::Accepted => wit::ShareOutcome::Accepted,
                core::ShareOutcome::Rejected(why) => wit::ShareOutcome::Rejected(why),
            },
        }),
        core::Action::Reconnect(r) => wit::Action::Reconnect(wit::ReconnectRequest {
            host: r.host,
            port: r.port,
            after_ms: r.after_ms,
        }),
        core::Action::Log(entry) => wit::Action::Log(wit::LogEntry {
            level: match entry.level {
                core::LogLevel::Trace => wit::LogLevel::Trace,
                core::LogLevel::Debug => wit::LogLevel::Debug,
                core::LogLevel::Info => wit::LogLevel::Info,
                core::LogLevel::Warn => wit::LogLevel::Warn,
                core::LogLevel::Error => wit::LogLevel::Error,
            },
            message: entry.message,
        }),
        core::Action::Fail(reason) => wit::Action::Fail(reason),
        core::Action::WakeAt(at_ms) => wit::Action::WakeAt(at_ms),
        core::Action::Session(info) => {
            bindings::hashwatt::pool::status::report_session(
                &bindings::hashwatt::pool::status::SessionInfo {
                    protocol: info.protocol,
                    channel: info.channel,
                    encrypted: info.encrypted,
                    authority: info.authority,
                    details: info.details,
                },
            );
            return None;
        }
    })
}
