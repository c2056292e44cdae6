//! A hostile pool plugin, for testing the host's sandbox and limits only.
//!
//! It is a correct Stratum V1 client (the first-party plugin's sans-IO core)
//! until a line received from the pool contains [`TRIGGER`]. In that same
//! `received` call it then misbehaves the way `pool-config.password` asks
//! (see [`Mode`]): run forever, exhaust memory or the stack, trap, return
//! oversized or invalid actions, or probe the WASI sandbox for files,
//! sockets and environment and log what it found. `validate-settings`
//! misbehaves the same way for settings `{"hostile": "<mode>"}`.
//!
//! Never ship it: it exists so the host's tests can prove that nothing a
//! plugin does hurts the appliance.
//!
//! ```
//! use hostile::{Hostile, Mode, When};
//! use hostile::stratum_v1_core::{Action, PoolConfig, PoolMachine};
//!
//! let (mode, when) = hostile::parse_password("flood:3").unwrap().unwrap();
//! assert_eq!((mode, when), (Mode::Flood(3), When::Trigger));
//! let mut plugin = Hostile::new(PoolConfig { password: "flood:3".into(), ..PoolConfig::default() });
//! plugin.connected(0);
//! let out = plugin.received(1, b"{\"id\":null,\"method\":\"hostile.trigger\",\"params\":[]}\n");
//! let floods = out.iter().filter(|a| matches!(a, Action::Log(l) if l.message.starts_with("flood"))).count();
//! assert_eq!(floods, 3);
//! ```

#![warn(missing_docs)]

// The first-party Stratum V1 core, compiled into this crate from its
// sources. Its modules refer to each other as `crate::…`, so they sit at the
// crate root; `stratum_v1_core` re-exports them under one name.
pub use hashwatt_pool_sdk::{framing, target, types};
#[path = "../../stratum-v1/src/jsonrpc.rs"]
pub mod jsonrpc;
#[path = "../../stratum-v1/src/session.rs"]
pub mod session;
#[path = "../../stratum-v1/src/settings.rs"]
pub mod settings;

pub mod hostile;

// The pool SDK's component glue, around this crate's machine.
hashwatt_pool_sdk::export_pool!(Hostile);

/// The Stratum V1 core types under one name, for users of this crate.
pub mod stratum_v1_core {
    pub use crate::session::{Session, SessionError};
    pub use crate::types::{
        Action, ExtendedWork, Job, LogEntry, LogLevel, PoolConfig, PoolMachine, ReconnectRequest,
        Share, ShareOutcome, ShareResult, WorkKind,
    };
}

pub use hostile::{Hostile, Mode, ModeError, TRIGGER, When, parse_password};
