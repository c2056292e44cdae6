//! The plugin runtime: one wasmtime [`Engine`] for the whole host, a
//! [`Store`] per plugin instance, and the limits that keep a plugin from
//! hurting the appliance.
//!
//! Plugins are WebAssembly components. They get an empty WASI context (no
//! files, sockets, environment or arguments; only clocks and random), a
//! bounded memory, and a wall-clock budget per call enforced with epoch
//! interruption. Everything they want done comes back as actions that the
//! host validates before acting on them.

pub mod archive;
pub mod bench;
pub mod builtin;
pub mod cache;
pub mod clean;
pub mod cli;
pub mod info;
pub mod loader;
pub mod package;
pub mod policy;
pub mod pool;
pub mod template;
pub mod transcript;
mod wake;

pub use clean::{CleanReport, clean_state_dir};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; per-call budgets are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Errors of the plugin runtime.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The component could not be compiled or linked.
    #[error("cannot load plugin {name}: {reason}")]
    Load {
        /// Plugin name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The component was built for a version of the plugin contract this
    /// host does not implement (read from its exports): it must be rebuilt.
    #[error(
        "plugin {name} was built for {package}@{found}; this host supports {package}@{supported} \
         — rebuild it against {wit} {supported}"
    )]
    WorldVersion {
        /// Plugin name.
        name: String,
        /// The WIT package, e.g. `hashwatt:pool`.
        package: &'static str,
        /// The version the component exports, e.g. `0.1.0`.
        found: String,
        /// The version this host implements, e.g. `0.2.0`.
        supported: &'static str,
        /// Where the contract lives in the source tree, e.g. `wit/pool`.
        wit: &'static str,
    },
    /// The plugin trapped, ran out of time or memory: the instance is dead.
    #[error("plugin {name} trapped: {reason}")]
    Trap {
        /// Plugin name.
        name: String,
        /// The trap or limit that ended it.
        reason: String,
    },
    /// The plugin returned more than its limits allow; the output was dropped.
    #[error("plugin {name} exceeded a limit: {reason}")]
    Limit {
        /// Plugin name.
        name: String,
        /// Which limit.
        reason: String,
    },
}

/// Per-plugin limits. Defaults are what a pool protocol needs with a wide
/// margin; the host never lets a plugin configure more than these maxima.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock budget of one call into the plugin.
    pub call_timeout: Duration,
    /// Linear memory the plugin may grow to, in bytes.
    pub memory_bytes: usize,
    /// Actions one call may return.
    pub max_actions: usize,
    /// Bytes one call may ask the host to send in total.
    pub max_send_bytes: usize,
    /// Length of any one string (log line, reason, job id) in bytes.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            max_actions: 1024,
            max_send_bytes: 1 << 20,
            max_string_bytes: 64 << 10,
        }
    }
}

/// What the host measured about the instances of one plugin, for the
/// operator to see which plugin costs what. Shared by every instance (and
/// every clone of its compiled form); updated with relaxed atomics only,
/// so the accounting adds no lock to a plugin call.
#[derive(Debug, Default)]
pub struct PluginStats {
    memory_peak: AtomicU64,
    call_nanos: AtomicU64,
    calls: AtomicU64,
}

impl PluginStats {
    /// The most linear memory one instance's store has held, in bytes
    /// (its high-water mark, as the store's limiter granted it).
    pub fn memory_peak_bytes(&self) -> u64 {
        self.memory_peak.load(Ordering::Relaxed)
    }

    /// Wall-clock time spent in calls into the plugin, all instances.
    pub fn call_time(&self) -> Duration {
        Duration::from_nanos(self.call_nanos.load(Ordering::Relaxed))
    }

    /// Calls into the plugin counted in [`Self::call_time`].
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn record_memory(&self, bytes: usize) {
        self.memory_peak
            .fetch_max(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Adds one call that took `d`.
    pub(crate) fn record_call(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.call_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// The per-instance host state a plugin's [`wasmtime::Store`] carries.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// The latest `hashwatt:pool/status.report-session` of the running
    /// call, checked; taken by the pool host after the call.
    pub(crate) session_report: Option<Result<crate::status::SessionInfo, String>>,
}

impl PluginState {
    fn new(limits: &Limits, stats: Arc<PluginStats>) -> Self {
        PluginState {
            // Grants nothing: no preopened dirs, no env, no args, no network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits, stats),
            session_report: None,
        }
    }

    /// Where this instance's memory and call time are accounted.
    pub(crate) fn stats(&self) -> &PluginStats {
        &self.limiter.stats
    }

    /// The growth the limiter refused since the last call, if any.
    fn take_refusal(&mut self) -> Option<Refusal> {
        self.limiter.refused.take()
    }
}

/// Which resource a plugin tried to grow past its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    /// A linear memory, sizes in bytes.
    Memory,
    /// A table, sizes in elements.
    Table,
}

/// A growth the store's limiter refused, as it recorded it: this (not the
/// text of wasmtime's error) is how a trap is classified as a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} limit exceeded ({desired} {unit} asked for, limit {limit})", self.what(), unit = self.unit())]
pub(crate) struct Refusal {
    /// What was to grow.
    pub(crate) resource: Resource,
    /// Its size before the growth.
    pub(crate) current: usize,
    /// The size asked for.
    pub(crate) desired: usize,
    /// The bound it would have exceeded (the host's limit, or the
    /// resource's own declared maximum if smaller).
    pub(crate) limit: usize,
}

impl Refusal {
    fn what(&self) -> &'static str {
        match self.resource {
            Resource::Memory => "memory",
            Resource::Table => "table",
        }
    }

    fn unit(&self) -> &'static str {
        match self.resource {
            Resource::Memory => "bytes",
            Resource::Table => "elements",
        }
    }
}

/// The store's [`ResourceLimiter`]: bounds memories, tables and instances
/// like wasmtime's `StoreLimits` with traps on refused growth, and records
/// the first refusal so the host can say which limit killed a plugin.
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    refused: Option<Refusal>,
    /// Linear memory of this store now (all its memories), in bytes.
    memory_now: usize,
    stats: Arc<PluginStats>,
}

impl Limiter {
    /// Instances one plugin store may create: a component and its
    /// adapters; componentize-py links CPython, libc and adapters as a
    /// dozen core instances. Memory is bounded by `memory_bytes`.
    const INSTANCES: usize = 32;
    /// Tables across those instances.
    const TABLES: usize = 32;
    /// Elements one table may hold.
    const TABLE_ELEMENTS: usize = 100_000;
    /// Linear memories across those instances.
    const MEMORIES: usize = 2;

    fn new(limits: &Limits, stats: Arc<PluginStats>) -> Self {
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: Self::TABLE_ELEMENTS,
            refused: None,
            memory_now: 0,
            stats,
        }
    }

    /// Allows growth to `desired` within `limit` and `maximum`; otherwise
    /// records the refusal and fails, which traps the plugin.
    fn check(
        &mut self,
        resource: Resource,
        current: usize,
        desired: usize,
        limit: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bound = maximum.map_or(limit, |m| m.min(limit));
        if desired <= bound {
            return Ok(true);
        }
        let refusal = Refusal {
            resource,
            current,
            desired,
            limit: bound,
        };
        self.refused.get_or_insert(refusal);
        Err(wasmtime::Error::new(refusal))
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.memory_bytes;
        let granted = self.check(Resource::Memory, current, desired, limit, maximum)?;
        if granted {
            // Called for a memory's creation too (from 0), so this is the
            // store's whole linear memory.
            self.memory_now = self
                .memory_now
                .saturating_sub(current)
                .saturating_add(desired);
            self.stats.record_memory(self.memory_now);
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Allowed but not possible (the OS refused): a trap as well.
        Err(error.context("memory growth failed"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.table_elements;
        self.check(Resource::Table, current, desired, limit, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("table growth failed"))
    }

    fn instances(&self) -> usize {
        Self::INSTANCES
    }

    fn tables(&self) -> usize {
        Self::TABLES
    }

    fn memories(&self) -> usize {
        Self::MEMORIES
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The host's single wasm engine, shared by every plugin.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    /// Accounting per plugin (see [`Runtime::stats_for`]); locked only
    /// when a plugin is loaded or listed, never during a call.
    stats: Arc<Mutex<HashMap<String, Arc<PluginStats>>>>,
}

impl Runtime {
    /// Creates the engine and starts the epoch ticker that enforces call budgets.
    pub fn new() -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(512 << 10);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        pool::add_status_to_linker(&mut linker).map_err(|e| PluginError::Engine(e.to_string()))?;
        let weak = engine.weak();
        thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            stats: Arc::default(),
        })
    }

    /// The accounting of the plugin known as `key` (e.g. `pool:stratum-v1`,
    /// `policy:<policy name>`), created on first use, so every load of the
    /// same plugin (a reload, a hot-installed version) adds to one record.
    pub fn stats_for(&self, key: &str) -> Arc<PluginStats> {
        let mut map = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }

    /// The accounting of `key` if a plugin by that key was ever loaded.
    pub fn stats_of(&self, key: &str) -> Option<Arc<PluginStats>> {
        let map = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    /// Compiles a component from its bytes.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<Component, PluginError> {
        Component::new(&self.engine, wasm).map_err(|e| PluginError::Load {
            name: name.into(),
            reason: format!("{e:#}"),
        })
    }

    /// The engine, for callers that create stores.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with the (empty) WASI imports every plugin may use.
    pub fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }
}

/// Runs a plugin call so that WASI host functions may block: wasmtime-wasi's
/// synchronous bindings drive their async implementations with
/// `Handle::block_on`, which panics on a tokio worker thread. On the
/// multi-threaded runtime the call runs in `block_in_place`; elsewhere
/// (plain threads, tests) it runs directly.
pub fn call_blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Wall-clock budget for instantiating a plugin and its first call
/// (constructor, configure): it touches fresh memory and runs initialisers.
const SETUP_BUDGET: Duration = Duration::from_millis(200);

/// A store for one plugin instance with its memory limits and epoch traps
/// in place, plus the setup deadline (in ticks) its first calls run under.
fn limited_store(
    runtime: &Runtime,
    limits: &Limits,
    stats: Arc<PluginStats>,
) -> (wasmtime::Store<PluginState>, u64) {
    let mut store = wasmtime::Store::new(runtime.engine(), PluginState::new(limits, stats));
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    let setup = deadline_ticks(limits.call_timeout.max(SETUP_BUDGET));
    store.set_epoch_deadline(setup);
    (store, setup)
}

/// Converts a call budget into epoch ticks (at least one).
fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

/// Describes in one line the wasmtime error that ended a call into the
/// plugin of `store`: the limit its limiter refused (as recorded by the
/// limiter, never guessed from the error's text), else the trap, else the
/// error's root cause (the wasm backtrace goes to the debug log only).
fn describe_trap(store: &mut wasmtime::Store<PluginState>, e: &wasmtime::Error) -> String {
    tracing::debug!("plugin error detail: {e:?}");
    classify(e, store.data_mut().take_refusal())
}

/// [`describe_trap`] given what the limiter recorded.
fn classify(e: &wasmtime::Error, refused: Option<Refusal>) -> String {
    if let Some(refusal) = refused {
        return refusal.to_string();
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => "call exceeded its time budget".into(),
            wasmtime::Trap::StackOverflow => "stack overflow".into(),
            other => other.to_string(),
        };
    }
    let root = e.root_cause().to_string();
    root.lines().next().unwrap_or("unknown error").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_records_what_it_refused() {
        let limits = Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        };
        let stats = Arc::new(PluginStats::default());
        let mut l = Limiter::new(&limits, stats.clone());
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(stats.memory_peak_bytes(), 1 << 20);
        assert!(l.table_growing(0, 10_000, None).unwrap());
        assert_eq!(l.refused, None);
        let e = l.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let refusal = Refusal {
            resource: Resource::Memory,
            current: 1 << 20,
            desired: 2 << 20,
            limit: 1 << 20,
        };
        assert_eq!(l.refused, Some(refusal));
        assert_eq!(e.downcast_ref::<Refusal>(), Some(&refusal));
        let reason = classify(&e, l.refused.take());
        assert!(reason.starts_with("memory limit exceeded"), "{reason}");
        assert!(reason.contains("2097152 bytes"), "{reason}");
        // A smaller declared maximum is the bound that refused.
        let _ = l.memory_growing(0, 65_536 * 2, Some(65_536)).unwrap_err();
        assert_eq!(l.refused.map(|r| r.limit), Some(65_536));
        let mut l = Limiter::new(&limits, Arc::default());
        let e = l.table_growing(5, 200_000, None).unwrap_err();
        let reason = classify(&e, l.refused.take());
        assert!(reason.starts_with("table limit exceeded"), "{reason}");
    }

    #[test]
    fn the_limiter_keeps_the_stores_memory_high_water_mark() {
        let limits = Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        };
        let stats = Arc::new(PluginStats::default());
        let mut a = Limiter::new(&limits, stats.clone());
        assert!(a.memory_growing(0, 64 << 10, None).unwrap());
        assert!(a.memory_growing(0, 64 << 10, None).unwrap());
        assert_eq!(stats.memory_peak_bytes(), 128 << 10, "two memories add up");
        assert!(a.memory_growing(64 << 10, 512 << 10, None).unwrap());
        // A refused growth is not memory held.
        let _ = a.memory_growing(512 << 10, 4 << 20, None).unwrap_err();
        assert_eq!(stats.memory_peak_bytes(), (512 + 64) << 10);
        // Another store of the same plugin: the peak is per store.
        let mut b = Limiter::new(&limits, stats.clone());
        assert!(b.memory_growing(0, 64 << 10, None).unwrap());
        assert_eq!(stats.memory_peak_bytes(), (512 + 64) << 10);
        stats.record_call(Duration::from_micros(1500));
        stats.record_call(Duration::from_micros(500));
        assert_eq!(
            (stats.calls(), stats.call_time()),
            (2, Duration::from_millis(2))
        );
    }

    #[test]
    fn the_error_text_alone_is_not_a_limit() {
        // An error that merely reads like a memory limit, without a
        // refusal from the limiter, is reported as what it is.
        let e = wasmtime::Error::msg("forcing trap when growing memory to 1 bytes");
        let reason = classify(&e, None);
        assert!(!reason.starts_with("memory limit exceeded"), "{reason}");
        let e = wasmtime::Error::new(wasmtime::Trap::Interrupt);
        assert_eq!(classify(&e, None), "call exceeded its time budget");
    }
}
