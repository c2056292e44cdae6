//! The plugin runtime: one wasmtime [`Engine`] for the whole host, a
//! [`Store`] per plugin instance, and the limits that keep a plugin from
//! hurting the appliance.
//!
//! Plugins are WebAssembly components. They get an empty WASI context (no
//! files, sockets, environment or arguments; only clocks and random), a
//! bounded memory, and a wall-clock budget per call enforced with epoch
//! interruption. Everything they want done comes back as actions that the
//! host validates before acting on them.

pub mod bench;
pub mod builtin;
pub mod cache;
pub mod clean;
pub mod cli;
pub mod package;
pub mod policy;
pub mod pool;

pub use clean::{CleanReport, clean_state_dir};

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, StoreLimits, StoreLimitsBuilder};
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

/// The per-instance host state a plugin's [`wasmtime::Store`] carries.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl PluginState {
    fn new(limits: &Limits) -> Self {
        PluginState {
            // Grants nothing: no preopened dirs, no env, no args, no network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(4)
                .tables(8)
                .table_elements(10_000)
                .memories(2)
                .trap_on_grow_failure(true)
                .build(),
        }
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
        })
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
fn limited_store(runtime: &Runtime, limits: &Limits) -> (wasmtime::Store<PluginState>, u64) {
    let mut store = wasmtime::Store::new(runtime.engine(), PluginState::new(limits));
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    let setup = deadline_ticks(limits.call_timeout.max(SETUP_BUDGET));
    store.set_epoch_deadline(setup);
    (store, setup)
}

/// Converts a call budget into epoch ticks (at least one).
fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

/// Describes a wasmtime error from a call in one line: the trap, or the
/// limit that was hit (the wasm backtrace goes to the debug log only).
fn describe_trap(e: &wasmtime::Error) -> String {
    tracing::debug!("plugin error detail: {e:?}");
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => "call exceeded its time budget".into(),
            wasmtime::Trap::StackOverflow => "stack overflow".into(),
            other => other.to_string(),
        };
    }
    let root = e.root_cause().to_string();
    if root.contains("growing memory") || root.contains("memory limit") {
        format!("memory limit exceeded ({root})")
    } else {
        root.lines().next().unwrap_or("unknown error").to_string()
    }
}
