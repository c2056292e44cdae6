//! # Writing a hashwatt pool plugin
//!
//! A pool plugin speaks one pool protocol for the appliance: it is a
//! sandboxed WebAssembly component implementing the `hashwatt:pool@0.2.1`
//! world `pool-plugin` (`wit/pool.wit` in this crate is the contract). It is
//! sans-IO: the host owns the TCP connection and the clock, hands the
//! plugin what happened (connected, bytes received, a tick it asked for, a
//! share found) and carries out the [`Action`]s it returns (send bytes,
//! mine a job, set the share target, report a share's fate, reconnect,
//! log, fail).
//!
//! This crate lets you write one as ordinary, natively testable Rust:
//!
//! 1. Create a library crate with `crate-type = ["cdylib", "rlib"]` that
//!    depends on `hashwatt-pool-sdk`.
//! 2. Implement [`PoolMachine`] for your session type.
//! 3. Add one line, `hashwatt_pool_sdk::export_pool!(MySession);`. On
//!    `wasm32` it generates the component exports; natively it does
//!    nothing, so `cargo test` drives the machine directly.
//! 4. Build with `cargo build --target wasm32-wasip2 --release`, or
//!    `hashwatt plugin build` to check, sign and pack in one step.
//!
//! Helpers: [`framing::LineBuffer`] reassembles newline-framed messages
//! (JSON-RPC lines) from TCP chunks with a bounded line length, and
//! [`target::difficulty_to_target`] turns a pool difficulty into the
//! 32-byte share target exactly. The first-party Stratum V1 plugin
//! (`plugins/stratum-v1`) is built on this crate.
//!
//! ```
//! use hashwatt_pool_sdk::{Action, PoolConfig, PoolMachine, Share};
//!
//! /// Says hello, then mines nothing.
//! struct Hello(PoolConfig);
//!
//! impl PoolMachine for Hello {
//!     fn url_schemes() -> Vec<String> { vec!["hello+tcp".into()] }
//!     fn validate_settings(_: &str) -> Result<(), String> { Ok(()) }
//!     fn new(config: PoolConfig) -> Self { Hello(config) }
//!     fn connected(&mut self, _now_ms: u64) -> Vec<Action> {
//!         vec![Action::Send(format!("hello {}\n", self.0.user).into_bytes())]
//!     }
//!     fn received(&mut self, _: u64, _: &[u8]) -> Vec<Action> { Vec::new() }
//!     fn tick(&mut self, _: u64) -> Vec<Action> { Vec::new() }
//!     fn share_found(&mut self, _: u64, _: Share) -> Vec<Action> { Vec::new() }
//!     fn disconnected(&mut self, _: &str) {}
//! }
//! hashwatt_pool_sdk::export_pool!(Hello);
//!
//! let mut h = Hello::new(PoolConfig { user: "w1".into(), ..PoolConfig::default() });
//! assert_eq!(h.connected(0), vec![Action::Send(b"hello w1\n".to_vec())]);
//! ```

#![warn(missing_docs)]

// The generated bindings name this crate by path, also from inside it.
extern crate self as hashwatt_pool_sdk;

pub mod framing;
pub mod hex;
pub mod settings;
pub mod target;
pub mod types;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod component;

pub use types::{
    Action, ExtendedWork, Job, LogEntry, LogLevel, PoolConfig, PoolMachine, ReconnectRequest,
    SessionInfo, Share, ShareOutcome, ShareResult, WorkKind,
};

/// Exports a [`PoolMachine`] type as the component's `plugin-info` and
/// `session` interfaces on `wasm32`; expands to nothing on other targets.
/// Use once per crate.
#[macro_export]
macro_rules! export_pool {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __HashwattPoolExport = $crate::component::Plugin<$ty>;
            $crate::component::bindings::__export_pool_plugin!(
                __HashwattPoolExport with_types_in $crate::component::bindings
            );
        };
    };
}
