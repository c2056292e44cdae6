//! The wasm glue: bindings for `hashwatt:policy@0.1.0` `policy-plugin`,
//! conversions between generated and mirror types, and the one policy
//! instance a component holds. Used through [`crate::export_policy!`].

use std::cell::RefCell;

use crate::Policy;
use crate::types as core;

/// Generated bindings; `pub` because the exported macro expands in the
/// plugin crate and refers to them through `$crate`.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "policy-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_policy_plugin",
        default_bindings_module: "hashwatt_policy_sdk::component::bindings",
        runtime_path: "hashwatt_policy_sdk::component::rt",
    });
}

/// The wit-bindgen runtime, re-exported so plugin crates need no direct
/// wit-bindgen dependency.
#[doc(hidden)]
pub use wit_bindgen::rt;

use bindings::hashwatt::policy::types as wit;

thread_local! {
    /// The component's policy; a component instance runs one policy.
    static POLICY: RefCell<Option<Box<dyn Policy>>> = const { RefCell::new(None) };
}

/// `configure`: configures a fresh `policy` and keeps it on success.
pub fn configure(mut policy: Box<dyn Policy>, json: &str) -> Result<(), String> {
    policy.configure(json)?;
    POLICY.with(|p| *p.borrow_mut() = Some(policy));
    Ok(())
}

/// `subscriptions`: the configured policy's signal names.
pub fn subscriptions() -> Vec<String> {
    POLICY.with(|p| {
        p.borrow()
            .as_ref()
            .map(|p| p.subscriptions())
            .unwrap_or_default()
    })
}

/// `evaluate`: converts, evaluates, converts back; pauses if unconfigured.
pub fn evaluate(inputs: wit::Inputs) -> wit::Decision {
    let inputs = from_wit(inputs);
    let decision = POLICY.with(|p| match p.borrow_mut().as_mut() {
        Some(policy) => policy.evaluate(&inputs),
        None => core::Decision::pause("policy not configured"),
    });
    to_wit(decision)
}

fn mode_from(m: wit::Mode) -> core::Mode {
    match m {
        wit::Mode::Run => core::Mode::Run,
        wit::Mode::Limit(w) => core::Mode::Limit(w),
        wit::Mode::Pause => core::Mode::Pause,
    }
}

fn from_wit(i: wit::Inputs) -> core::Inputs {
    core::Inputs {
        now: core::Clock {
            utc_ms: i.now.utc_ms,
            local_offset_s: i.now.local_offset_s,
            time_zone: i.now.time_zone,
        },
        power_w: i.power_w,
        energy: core::Energy {
            today_kwh: i.energy.today_kwh,
            month_kwh: i.energy.month_kwh,
            total_kwh: i.energy.total_kwh,
        },
        hashrate_hs: i.hashrate_hs,
        temperatures: i
            .temperatures
            .into_iter()
            .map(|t| core::Temperature {
                name: t.name,
                celsius: t.celsius,
            })
            .collect(),
        signals: i
            .signals
            .into_iter()
            .map(|s| core::Signal {
                name: s.name,
                value: match s.value {
                    wit::SignalValue::Number(v) => core::SignalValue::Number(v),
                    wit::SignalValue::Unknown(why) => core::SignalValue::Unknown(why),
                },
                age_ms: s.age_ms,
            })
            .collect(),
        applied: mode_from(i.applied),
        applied_for_ms: i.applied_for_ms,
        state: i.state,
    }
}

fn to_wit(d: core::Decision) -> wit::Decision {
    wit::Decision {
        mode: match d.mode {
            core::Mode::Run => wit::Mode::Run,
            core::Mode::Limit(w) => wit::Mode::Limit(w),
            core::Mode::Pause => wit::Mode::Pause,
        },
        reason: d.reason,
        next_eval_ms: d.next_eval_ms,
        state: d.state,
    }
}
