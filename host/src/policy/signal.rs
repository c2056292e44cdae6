//! The signal hub: the latest value of every named external signal (grid
//! export, price, demand-response flag...), with its receive time, TTL and
//! allowed range. Sources write into it; the engine reads from it and is
//! woken the moment a value changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::SignalValue;
use super::clock::Clock;

/// Errors of the signal hub.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    /// A value for a signal that was never defined.
    #[error("unknown signal {0:?}")]
    Undefined(String),
    /// A definition that makes no sense.
    #[error("invalid definition of signal {name:?}: {reason}")]
    InvalidSpec {
        /// Signal name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// How a signal is judged usable: the operator's definition.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalSpec {
    /// Name policies subscribe to.
    pub name: String,
    /// A value older than this is stale (unknown).
    pub ttl: Duration,
    /// Smallest plausible value, if any.
    pub min: Option<f64>,
    /// Largest plausible value, if any.
    pub max: Option<f64>,
}

impl SignalSpec {
    /// A signal with a TTL and no range limits.
    pub fn new(name: &str, ttl: Duration) -> Self {
        SignalSpec {
            name: name.into(),
            ttl,
            min: None,
            max: None,
        }
    }

    /// Restricts the plausible range.
    pub fn with_range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
}

/// What [`SignalHub::get`] knows about a signal.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Usable number or why not.
    pub value: SignalValue,
    /// Milliseconds since it was received (0 if never).
    pub age_ms: u64,
}

#[derive(Debug)]
struct Entry {
    spec: SignalSpec,
    /// Raw value and receive time (ms since epoch).
    latest: Option<(f64, i64)>,
    /// Bumped on every change of value; the engine compares it.
    seq: u64,
}

/// Latest values of all signals; cheap to share (`Arc`).
pub struct SignalHub {
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, Entry>>,
    changed: watch::Sender<u64>,
}

impl SignalHub {
    /// An empty hub reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        SignalHub {
            clock,
            entries: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Defines (or redefines, keeping the value) a signal.
    pub fn define(&self, spec: SignalSpec) -> Result<(), SignalError> {
        let bad = |reason: &str| SignalError::InvalidSpec {
            name: spec.name.clone(),
            reason: reason.into(),
        };
        if spec.name.is_empty() || spec.name.len() > 128 {
            return Err(bad("name must be 1..=128 bytes"));
        }
        if spec.ttl.is_zero() {
            return Err(bad("ttl must be positive"));
        }
        if spec.min.is_some_and(|v| !v.is_finite()) || spec.max.is_some_and(|v| !v.is_finite()) {
            return Err(bad("range bounds must be finite"));
        }
        if let (Some(lo), Some(hi)) = (spec.min, spec.max)
            && lo > hi
        {
            return Err(bad("min > max"));
        }
        let mut entries = self.lock();
        match entries.get_mut(&spec.name) {
            Some(e) => e.spec = spec,
            None => {
                entries.insert(
                    spec.name.clone(),
                    Entry {
                        spec,
                        latest: None,
                        seq: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// Whether `name` is defined.
    pub fn is_defined(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Stores a new value received now (from a source or the API). Wakes
    /// the engine if the value differs from the previous one or the previous
    /// one had expired.
    pub fn set(&self, name: &str, value: f64) -> Result<(), SignalError> {
        let now = self.clock.now_utc_ms();
        let mut entries = self.lock();
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| SignalError::Undefined(name.into()))?;
        let ttl_ms = i64::try_from(entry.spec.ttl.as_millis()).unwrap_or(i64::MAX);
        let changed = match entry.latest {
            None => true,
            Some((old, at)) => old.to_bits() != value.to_bits() || now.saturating_sub(at) > ttl_ms,
        };
        entry.latest = Some((value, now));
        if changed {
            entry.seq += 1;
            drop(entries);
            self.changed.send_modify(|g| *g = g.wrapping_add(1));
        }
        Ok(())
    }

    /// The value of `name` at `now_ms`, or why it is unusable.
    pub fn get(&self, name: &str, now_ms: i64) -> Reading {
        let entries = self.lock();
        let unknown = |why: String| Reading {
            value: SignalValue::Unknown(why),
            age_ms: 0,
        };
        let Some(entry) = entries.get(name) else {
            return unknown("missing (signal not configured)".into());
        };
        let Some((value, at)) = entry.latest else {
            return unknown("missing".into());
        };
        let age_ms = u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0);
        let ttl_ms = u64::try_from(entry.spec.ttl.as_millis()).unwrap_or(u64::MAX);
        if age_ms > ttl_ms {
            return unknown(format!(
                "stale (age {} s > ttl {} s)",
                age_ms / 1000,
                ttl_ms / 1000
            ));
        }
        if value.is_nan() {
            return unknown("NaN".into());
        }
        let below = entry.spec.min.is_some_and(|lo| value < lo);
        let above = entry.spec.max.is_some_and(|hi| value > hi);
        if below || above || value.is_infinite() {
            return unknown(format!("out of range ({value})"));
        }
        Reading {
            value: SignalValue::Number(value),
            age_ms,
        }
    }

    /// Change counter of `name` (0 if undefined): differs after every change.
    pub fn seq(&self, name: &str) -> u64 {
        self.lock().get(name).map_or(0, |e| e.seq)
    }

    /// A receiver that sees a new value whenever any signal changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Names of all defined signals, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::clock::ManualClock;

    fn hub() -> (Arc<ManualClock>, SignalHub) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let hub = SignalHub::new(clock.clone());
        hub.define(SignalSpec::new("export_kw", Duration::from_secs(60)).with_range(-50.0, 50.0))
            .unwrap();
        (clock, hub)
    }

    fn unknown(r: Reading) -> String {
        match r.value {
            SignalValue::Unknown(s) => s,
            other => panic!("expected unknown, got {other:?}"),
        }
    }

    #[test]
    fn missing_stale_nan_out_of_range() {
        let (clock, hub) = hub();
        let now = clock.now_utc_ms();
        assert_eq!(unknown(hub.get("export_kw", now)), "missing");
        assert!(unknown(hub.get("nope", now)).starts_with("missing"));
        hub.set("export_kw", 1.5).unwrap();
        clock.advance_ms(2_500);
        let r = hub.get("export_kw", clock.now_utc_ms());
        assert_eq!(r.value, SignalValue::Number(1.5));
        assert_eq!(r.age_ms, 2_500);
        clock.advance_ms(90_500);
        assert_eq!(
            unknown(hub.get("export_kw", clock.now_utc_ms())),
            "stale (age 93 s > ttl 60 s)"
        );
        hub.set("export_kw", f64::NAN).unwrap();
        assert_eq!(unknown(hub.get("export_kw", clock.now_utc_ms())), "NaN");
        hub.set("export_kw", 51.0).unwrap();
        assert!(unknown(hub.get("export_kw", clock.now_utc_ms())).starts_with("out of range"));
        assert_eq!(
            hub.set("other", 1.0),
            Err(SignalError::Undefined("other".into()))
        );
    }

    #[test]
    fn changes_bump_seq_and_wake() {
        let (clock, hub) = hub();
        let mut rx = hub.subscribe();
        rx.borrow_and_update();
        hub.set("export_kw", 1.0).unwrap();
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        let s = hub.seq("export_kw");
        hub.set("export_kw", 1.0).unwrap();
        assert_eq!(hub.seq("export_kw"), s, "same value is no change");
        assert!(!rx.has_changed().unwrap());
        clock.advance_ms(61_000);
        hub.set("export_kw", 1.0).unwrap();
        assert_ne!(hub.seq("export_kw"), s, "refresh after expiry is a change");
        hub.set("export_kw", 2.0).unwrap();
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn bad_specs_are_refused() {
        let (_, hub) = hub();
        assert!(
            hub.define(SignalSpec::new("", Duration::from_secs(1)))
                .is_err()
        );
        assert!(hub.define(SignalSpec::new("x", Duration::ZERO)).is_err());
        assert!(
            hub.define(SignalSpec::new("x", Duration::from_secs(1)).with_range(2.0, 1.0))
                .is_err()
        );
        assert!(
            hub.define(SignalSpec::new("x", Duration::from_secs(1)).with_range(f64::NAN, 1.0))
                .is_err()
        );
    }
}
