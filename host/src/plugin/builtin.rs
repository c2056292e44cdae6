//! First-party plugins embedded in the host binary at build time (see
//! `host/build.rs`), so an appliance always has a working pool protocol.

/// The Stratum V1 pool plugin component (`plugins/stratum-v1`).
pub const STRATUM_V1: &[u8] = include_bytes!(env!("HASHWATT_STRATUM_V1_WASM"));
