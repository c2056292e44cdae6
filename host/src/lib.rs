//! hashwatt: the runtime of a Bitcoin mining appliance.
//!
//! The host drives the hashing hardware natively and loads sandboxed
//! WebAssembly plugins for what changes often or comes from third parties
//! (pool protocols, energy policies). Data flows one way:
//! pool bytes → plugin → job → work → hash → share → plugin → pool.
//!
//! Modules, each owning one concern:
//! - [`config`]: the TOML configuration file;
//! - [`plugin`]: the wasmtime runtime, limits and the pool-plugin bindings;
//! - [`pool`]: TCP connections to pools, reconnects and back-off;
//! - [`device`]: hashing devices (CPU, simulated, ASIC to come) behind one interface;
//! - [`miner`]: jobs → tasks for the devices; solutions → verified shares;
//! - [`control`]: the one handle that owns the running appliance and its command path;
//! - [`state`]: the one snapshot every front end reads;
//! - [`ratelimit`]: submit and log rate limits;
//! - [`status`]: counters and hashrate shown to the operator;
//! - [`energy`]: the power meter and kWh ledger;
//! - [`policy`]: energy policies, signals, arbitration, the CPU actuator;
//! - [`web`]: the HTTP API (status, energy reports, signals, override);
//! - [`app`]: wiring of all of the above.
//!
//! Hashing backends live in the `hashwatt-hash` crate, header assembly and
//! targets in `hashwatt-work`, the development pool in `hashwatt-devpool`,
//! crash-safe writes of state files (`atomic_write`) in `hashwatt-state`.

pub mod app;
pub mod config;
pub mod control;
pub mod device;
pub mod energy;
pub mod health;
pub mod history;
pub mod logtail;
pub mod miner;
pub mod plugin;
pub mod policy;
pub mod pool;
pub mod ratelimit;
pub mod service;
pub mod state;
pub mod status;
pub mod update;
pub mod web;
