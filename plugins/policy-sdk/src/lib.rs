//! # Writing a hashwatt energy policy
//!
//! A policy is a sandboxed WebAssembly component implementing the
//! `hashwatt:policy@0.1.0` world `policy-plugin` (`wit/policy.wit` in this
//! crate is the contract). It is a pure function of its inputs: the host gathers
//! the clock, the energy counters, temperatures and the signals the policy
//! subscribed to, calls `evaluate`, and applies the returned [`Decision`]
//! (run, limit to N watts, or pause, with a human reason). With several
//! policies the most restrictive decision wins.
//!
//! This crate lets you write one as ordinary, natively testable Rust:
//!
//! 1. Create a library crate with `crate-type = ["cdylib", "rlib"]` that
//!    depends on `hashwatt-policy-sdk` and `serde`.
//! 2. Implement [`Policy`] for a `Default` type: parse the operator's JSON
//!    config in [`Policy::configure`] (reject unknown fields, explain
//!    errors), name the signals you need in [`Policy::subscriptions`], and
//!    decide in [`Policy::evaluate`].
//! 3. Add one line, `hashwatt_policy_sdk::export_policy!(MyPolicy);`. On
//!    `wasm32` it generates the component exports; natively it does nothing.
//! 4. Build with `cargo build --target wasm32-wasip2 --profile plugin`
//!    (or `--release`); the `.wasm` in `target/wasm32-wasip2/` is the plugin.
//!
//! Rules of thumb:
//!
//! * Reasons carry the numbers ("grid export 0.4 kW < 1.0 kW"); the host
//!   prefixes "paused by <policy>:".
//! * Use [`Inputs::signal`]: it turns stale, missing and NaN values into an
//!   [`UnknownSignal`] error, and [`OnUnknown`] turns that into the
//!   operator's chosen fail-safe decision.
//! * Local time comes from [`Clock::local_time`]; the host passes the UTC
//!   offset valid now, so DST needs no time zone database.
//! * State that must survive restarts goes into [`Decision::with_state`]
//!   and comes back via [`state::load`] from [`Inputs::state`]; keep it
//!   small and return it only when it changed.
//! * Never panic: a trap makes the host apply your fail-safe and restart you.
//!
//! ```
//! use hashwatt_policy_sdk::{config, Decision, Inputs, OnUnknown, Policy};
//!
//! #[derive(Default)]
//! struct MinPrice {
//!     max: f64,
//!     on_unknown: OnUnknown,
//! }
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     max: f64,
//!     #[serde(default)]
//!     on_unknown: OnUnknown,
//! }
//!
//! impl Policy for MinPrice {
//!     fn configure(&mut self, json: &str) -> Result<(), String> {
//!         let c: Config = config::parse(json)?;
//!         self.max = c.max;
//!         self.on_unknown = c.on_unknown;
//!         Ok(())
//!     }
//!     fn subscriptions(&self) -> Vec<String> {
//!         vec!["price".into()]
//!     }
//!     fn evaluate(&mut self, inputs: &Inputs) -> Decision {
//!         match inputs.signal("price") {
//!             Err(unknown) => self.on_unknown.decide(&unknown),
//!             Ok(p) if p > self.max => Decision::pause(format!("price {p} > {}", self.max)),
//!             Ok(p) => Decision::run(format!("price {p} <= {}", self.max)),
//!         }
//!     }
//! }
//! hashwatt_policy_sdk::export_policy!(MinPrice);
//!
//! let mut p = MinPrice::default();
//! p.configure(r#"{"max": 100}"#).unwrap();
//! let d = p.evaluate(&Inputs::at(0, 0).with_signal("price", 120.0));
//! assert_eq!(d.reason, "price 120 > 100");
//! assert!(p.configure(r#"{"maxx": 1}"#).is_err());
//! ```

#![warn(missing_docs)]

// The generated bindings name this crate by path, also from inside it.
extern crate self as hashwatt_policy_sdk;

pub mod config;
pub mod fmt;
pub mod state;
pub mod testing;
pub mod time;
pub mod types;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod component;

pub use config::{ConfigError, OnUnknown};
pub use time::{Date, LocalTime, Weekday};
pub use types::{
    Clock, Decision, Energy, Inputs, Mode, Signal, SignalValue, Temperature, UnknownSignal,
};

/// An energy policy: the logic behind a `policy-plugin` component. Object
/// safe, so the component glue can hold any policy behind one pointer.
pub trait Policy {
    /// Applies the operator's JSON config; an `Err` is shown to the
    /// operator and the policy stays disabled.
    fn configure(&mut self, config_json: &str) -> Result<(), String>;

    /// Signal names wanted in [`Inputs::signals`], in order.
    fn subscriptions(&self) -> Vec<String>;

    /// Decides what the appliance may do now.
    fn evaluate(&mut self, inputs: &Inputs) -> Decision;
}

/// Exports a `Default + Policy` type as the component's `policy` interface
/// on `wasm32`; expands to nothing on other targets. Use once per crate.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __HashwattPolicyExport;

            impl $crate::component::bindings::exports::hashwatt::policy::policy::Guest
                for __HashwattPolicyExport
            {
                fn configure(
                    config_json: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::component::configure(
                        ::std::boxed::Box::new(<$ty as ::core::default::Default>::default()),
                        &config_json,
                    )
                }

                fn subscriptions() -> ::std::vec::Vec<::std::string::String> {
                    $crate::component::subscriptions()
                }

                fn evaluate(
                    inputs: $crate::component::bindings::hashwatt::policy::types::Inputs,
                ) -> $crate::component::bindings::hashwatt::policy::types::Decision {
                    $crate::component::evaluate(inputs)
                }
            }

            $crate::component::bindings::__export_policy_plugin!(
                __HashwattPolicyExport with_types_in $crate::component::bindings
            );
        };
    };
}
