//! Host side of the `hashwatt:policy` world: instantiates a policy plugin,
//! configures it, and turns its decisions into validated
//! [`crate::policy::Decision`]s. Same design as the pool bindings: one
//! store per instance, a wall-clock budget per call, and an instance that
//! trapped is dead for good (create a new one from [`PolicyPluginPre`]).

use std::sync::Arc;

use wasmtime::Store;

use super::{
    Limits, PluginError, PluginState, PluginStats, Runtime, call_blocking, deadline_ticks,
    describe_trap, limited_store,
};
use crate::policy::{
    Decision, DecisionLimits, Inputs, Mode, PolicyBackend, PolicyFactory, SignalValue,
    validate_decision,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/policy",
        world: "policy-plugin",
    });
}

use bindings::hashwatt::policy::types as wit;

/// Limits of a policy instance.
#[derive(Clone, Debug)]
pub struct PolicyLimits {
    /// Call budget and memory (the string and action limits are unused).
    pub call: Limits,
    /// Reason length and state quota.
    pub decision: DecisionLimits,
    /// Most signals one policy may subscribe to.
    pub max_subscriptions: usize,
    /// Longest signal name accepted in a subscription, bytes.
    pub max_signal_name: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            call: Limits::default(),
            decision: DecisionLimits::default(),
            max_subscriptions: 32,
            max_signal_name: 128,
        }
    }
}

/// A compiled policy plugin, cheap to instantiate again after a failure.
#[derive(Clone)]
pub struct PolicyPluginPre {
    name: String,
    runtime: Runtime,
    pre: bindings::PolicyPluginPre<PluginState>,
    /// Where its instances' memory and call time are accounted.
    stats: Arc<PluginStats>,
}

impl PolicyPluginPre {
    /// Compiles and links a policy plugin component.
    pub fn new(runtime: &Runtime, name: &str, wasm: &[u8]) -> Result<Self, PluginError> {
        let component = runtime.compile(name, wasm)?;
        let load_err = |e: wasmtime::Error| PluginError::Load {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(load_err)?;
        let pre = bindings::PolicyPluginPre::new(instance_pre).map_err(load_err)?;
        Ok(PolicyPluginPre {
            name: name.into(),
            runtime: runtime.clone(),
            pre,
            stats: runtime.stats_for(&format!("policy:{name}")),
        })
    }

    /// The plugin's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Instantiates the plugin, calls `configure(config_json)`, then
    /// `subscriptions`. A refused configuration is a [`PluginError::Load`].
    pub fn instantiate(
        &self,
        config_json: &str,
        limits: PolicyLimits,
    ) -> Result<PolicyPlugin, PluginError> {
        let (mut store, setup) = limited_store(&self.runtime, &limits.call, self.stats.clone());
        let trap = |store: &mut Store<PluginState>, e: wasmtime::Error| PluginError::Trap {
            name: self.name.clone(),
            reason: describe_trap(store, &e),
        };
        let instance =
            call_blocking(|| self.pre.instantiate(&mut store)).map_err(|e| trap(&mut store, e))?;
        store.set_epoch_deadline(setup);
        let guest = instance.hashwatt_policy_policy();
        call_blocking(|| guest.call_configure(&mut store, config_json))
            .map_err(|e| trap(&mut store, e))?
            .map_err(|msg| PluginError::Load {
                name: self.name.clone(),
                reason: format!(
                    "configuration refused: {}",
                    truncate(&msg, limits.decision.max_reason_bytes)
                ),
            })?;
        store.set_epoch_deadline(setup);
        let subscriptions = call_blocking(|| guest.call_subscriptions(&mut store))
            .map_err(|e| trap(&mut store, e))?;
        let limit = |reason: String| PluginError::Limit {
            name: self.name.clone(),
            reason,
        };
        if subscriptions.len() > limits.max_subscriptions {
            return Err(limit(format!(
                "{} subscriptions (at most {})",
                subscriptions.len(),
                limits.max_subscriptions
            )));
        }
        if let Some(bad) = subscriptions
            .iter()
            .find(|s| s.is_empty() || s.len() > limits.max_signal_name)
        {
            return Err(limit(format!(
                "signal name of {} bytes (1..={})",
                bad.len(),
                limits.max_signal_name
            )));
        }
        Ok(PolicyPlugin {
            name: self.name.clone(),
            store,
            instance,
            subscriptions,
            limits,
            dead: None,
        })
    }
}

/// A live, configured policy plugin instance.
pub struct PolicyPlugin {
    name: String,
    store: Store<PluginState>,
    instance: bindings::PolicyPlugin,
    subscriptions: Vec<String>,
    limits: PolicyLimits,
    dead: Option<String>,
}

impl PolicyPlugin {
    /// The signals the plugin subscribed to, in its order.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// The reason this instance died, if it did.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    /// Calls `evaluate` and validates the decision: a reason over the cap,
    /// a non-finite or negative limit, or a state over the quota is a
    /// [`PluginError::Limit`]; a trap or timeout kills the instance.
    pub fn evaluate(&mut self, inputs: &Inputs) -> Result<Decision, PluginError> {
        if let Some(reason) = &self.dead {
            return Err(PluginError::Trap {
                name: self.name.clone(),
                reason: reason.clone(),
            });
        }
        let wit_inputs = to_wit(inputs);
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call.call_timeout));
        let guest = self.instance.hashwatt_policy_policy();
        let store = &mut self.store;
        let started = std::time::Instant::now();
        let result = call_blocking(|| guest.call_evaluate(&mut *store, &wit_inputs));
        self.store.data().stats().record_call(started.elapsed());
        let raw = match result {
            Ok(d) => d,
            Err(e) => {
                let reason = describe_trap(&mut self.store, &e);
                self.dead = Some(reason.clone());
                return Err(PluginError::Trap {
                    name: self.name.clone(),
                    reason,
                });
            }
        };
        let decision = Decision {
            mode: match raw.mode {
                wit::Mode::Run => Mode::Run,
                wit::Mode::Limit(w) => Mode::Limit(w),
                wit::Mode::Pause => Mode::Pause,
            },
            reason: raw.reason,
            next_eval_ms: raw.next_eval_ms,
            state: raw.state,
        };
        validate_decision(&decision, &self.limits.decision).map_err(|e| PluginError::Limit {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(decision)
    }
}

impl PolicyBackend for PolicyPlugin {
    fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.clone()
    }

    fn evaluate(&mut self, inputs: &Inputs) -> Result<Decision, String> {
        PolicyPlugin::evaluate(self, inputs).map_err(|e| e.to_string())
    }
}

/// Creates configured instances of one plugin for the engine (first start
/// and every restart after a failure).
#[derive(Clone)]
pub struct PolicyPluginFactory {
    pre: PolicyPluginPre,
    config_json: Arc<str>,
    limits: PolicyLimits,
}

impl PolicyPluginFactory {
    /// A factory for `pre` configured with `config_json`.
    pub fn new(pre: PolicyPluginPre, config_json: &str, limits: PolicyLimits) -> Self {
        PolicyPluginFactory {
            pre,
            config_json: config_json.into(),
            limits,
        }
    }
}

impl PolicyFactory for PolicyPluginFactory {
    fn create(&self) -> Result<Box<dyn PolicyBackend>, String> {
        self.pre
            .instantiate(&self.config_json, self.limits.clone())
            .map(|p| Box::new(p) as Box<dyn PolicyBackend>)
            .map_err(|e| e.to_string())
    }
}

fn to_wit(i: &Inputs) -> wit::Inputs {
    wit::Inputs {
        now: wit::Clock {
            utc_ms: i.now.utc_ms,
            local_offset_s: i.now.local_offset_s,
            time_zone: i.now.time_zone.clone(),
        },
        power_w: i.power_w,
        energy: wit::Energy {
            today_kwh: i.energy.today_kwh,
            month_kwh: i.energy.month_kwh,
            total_kwh: i.energy.total_kwh,
        },
        hashrate_hs: i.hashrate_hs,
        temperatures: i
            .temperatures
            .iter()
            .map(|t| wit::Temperature {
                name: t.name.clone(),
                celsius: t.celsius,
            })
            .collect(),
        signals: i
            .signals
            .iter()
            .map(|s| wit::Signal {
                name: s.name.clone(),
                value: match &s.value {
                    SignalValue::Number(v) => wit::SignalValue::Number(*v),
                    SignalValue::Unknown(why) => wit::SignalValue::Unknown(why.clone()),
                },
                age_ms: s.age_ms,
            })
            .collect(),
        applied: match i.applied {
            Mode::Run => wit::Mode::Run,
            Mode::Limit(w) => wit::Mode::Limit(w),
            Mode::Pause => wit::Mode::Pause,
        },
        applied_for_ms: i.applied_for_ms,
        state: i.state.clone(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}
