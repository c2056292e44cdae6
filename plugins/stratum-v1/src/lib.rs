//! First-party Stratum V1 pool plugin for hashwatt.
//!
//! The protocol logic is a pure-Rust, sans-IO core ([`Session`]) that
//! compiles natively for tests and fuzzing. On `wasm32` the `component`
//! module wraps it in the `hashwatt:pool@0.1.0` `pool-plugin` world.
//!
//! Driving the core natively (as the host's tests or a fuzzer can):
//!
//! ```
//! use stratum_v1::{Action, PoolConfig, Session};
//!
//! let mut session = Session::new(PoolConfig {
//!     user: "worker1".into(),
//!     user_agent: "hashwatt/0.1.0".into(),
//!     ..PoolConfig::default()
//! });
//! // The handshake: one `mining.subscribe` line to send.
//! let actions = session.connected(0);
//! assert!(matches!(&actions[..], [Action::Send(line)] if line.ends_with(b"\n")));
//! // Bytes from the pool, chunked however TCP delivered them.
//! let mut actions = session.received(b"{\"id\":1,\"result\":[[],\"0800\",4],");
//! actions.extend(session.received(b"\"error\":null}\n"));
//! // Default share target (difficulty 1), then authorize and
//! // extranonce.subscribe requests.
//! assert!(matches!(actions[0], Action::SetShareTarget(_)));
//! assert_eq!(actions.iter().filter(|a| matches!(a, Action::Send(_))).count(), 2);
//! ```

#![warn(missing_docs)]

pub mod framing;
pub mod jsonrpc;
pub mod session;
pub mod settings;
pub mod target;
pub mod types;

#[cfg(target_arch = "wasm32")]
mod component;
/// The machine the component exports.
#[cfg(target_arch = "wasm32")]
type Exported = Session;

pub use session::{Session, SessionError};
pub use types::{
    Action, ExtendedWork, Job, LogEntry, LogLevel, PoolConfig, PoolMachine, ReconnectRequest,
    Share, ShareOutcome, ShareResult, WorkKind,
};
