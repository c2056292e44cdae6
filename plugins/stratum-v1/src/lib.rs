//! First-party Stratum V1 pool plugin for hashwatt.
//!
//! The protocol logic is a pure-Rust, sans-IO core ([`Session`]) that
//! compiles natively for tests and fuzzing. On `wasm32` the `component`
//! module wraps it in the `hashwatt:pool@0.1.0` `pool-plugin` world.

pub mod framing;
pub mod jsonrpc;
pub mod session;
pub mod target;
pub mod types;

#[cfg(target_arch = "wasm32")]
mod component;

pub use session::{Session, SessionError};
pub use types::{
    Action, ExtendedWork, Job, LogEntry, LogLevel, PoolConfig, ReconnectRequest, Share,
    ShareOutcome, ShareResult, WorkKind,
};
