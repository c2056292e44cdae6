//! First-party Stratum V1 pool plugin for hashwatt.
//!
//! The protocol logic is a pure-Rust, sans-IO core ([`Session`]) that
//! compiles natively for tests and fuzzing, built on the pool SDK
//! (`hashwatt-pool-sdk`). On `wasm32` the SDK's `export_pool!` wraps it in
//! the `hashwatt:pool@0.2.1` `pool-plugin` world: it
//! claims the `stratum+tcp` URL scheme and accepts the per-pool
//! [`settings`] `suggest_difficulty`.
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
//! // The handshake: one `mining.subscribe` line to send, and a wake-up for
//! // its 30 s timeout (the host ticks the session only when asked).
//! let actions = session.connected(0);
//! assert!(matches!(&actions[..], [Action::Send(line), Action::WakeAt(30_000)] if line.ends_with(b"\n")));
//! // Bytes from the pool at 5 ms, chunked however TCP delivered them: half
//! // a line changes nothing but the reminder of the pending timeout.
//! let actions = session.received(5, b"{\"id\":1,\"result\":[[],\"0800\",4],");
//! assert_eq!(actions, [Action::WakeAt(30_000)]);
//! let actions = session.received(5, b"\"error\":null}\n");
//! // Default share target (difficulty 1), what the session negotiated
//! // (for the operator), then authorize and
//! // extranonce.subscribe requests, timed from 5 ms.
//! assert!(matches!(actions[0], Action::SetShareTarget(_)));
//! assert!(matches!(&actions[1], Action::Session(s) if s.protocol == "Stratum V1"));
//! assert_eq!(actions.iter().filter(|a| matches!(a, Action::Send(_))).count(), 2);
//! assert_eq!(actions.last(), Some(&Action::WakeAt(30_005)));
//! ```

#![warn(missing_docs)]

pub mod jsonrpc;
pub mod session;
pub mod settings;

/// Framing, targets and the contract's types come from the pool SDK.
pub use hashwatt_pool_sdk::{framing, hex, target, types};

hashwatt_pool_sdk::export_pool!(Session);

pub use session::{Session, SessionError};
pub use types::{
    Action, ExtendedWork, Job, LogEntry, LogLevel, PoolConfig, PoolMachine, ReconnectRequest,
    Share, ShareOutcome, ShareResult, WorkKind,
};
