//! Rust mirror types of `hashwatt:policy@0.1.0` `types`, so policy logic
//! compiles and is tested natively, without wasm or generated bindings.

use serde::Serialize;

use crate::time::LocalTime;

/// The host's clock (WIT `clock`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Clock {
    /// Milliseconds since the Unix epoch, UTC.
    pub utc_ms: i64,
    /// Offset of the operator's time zone from UTC at this instant, seconds
    /// (daylight saving time included).
    pub local_offset_s: i32,
    /// The IANA time zone name, for reasons only.
    pub time_zone: String,
}

impl Clock {
    /// Local wall-clock time at this instant; the host supplies the offset,
    /// so DST is already accounted for.
    pub fn local_time(&self) -> LocalTime {
        LocalTime::from_utc(self.utc_ms, self.local_offset_s)
    }
}

/// The host's energy counters (WIT `energy`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Energy {
    /// kWh since local midnight.
    pub today_kwh: f64,
    /// kWh since the first day of the local month, 00:00.
    pub month_kwh: f64,
    /// kWh since the counters were created.
    pub total_kwh: f64,
}

/// A temperature reading (WIT `temperature`).
#[derive(Debug, Clone, PartialEq)]
pub struct Temperature {
    /// Sensor name, e.g. `room`.
    pub name: String,
    /// Degrees Celsius.
    pub celsius: f64,
}

/// A signal's value or why it has none (WIT `signal-value`).
#[derive(Debug, Clone, PartialEq)]
pub enum SignalValue {
    /// A usable number.
    Number(f64),
    /// No usable value; the payload says why (stale, missing, NaN, range).
    Unknown(String),
}

/// A subscribed signal (WIT `signal`).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The signal's configured name.
    pub name: String,
    /// Its value or why there is none.
    pub value: SignalValue,
    /// Milliseconds since the value was received.
    pub age_ms: u64,
}

/// What the appliance may do (WIT `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Mode {
    /// Mine at full power.
    #[default]
    Run,
    /// Mine drawing at most this many watts.
    Limit(f64),
    /// Do not mine.
    Pause,
}

impl Mode {
    /// Whether the appliance mines at all in this mode (run or limit).
    pub fn is_mining(self) -> bool {
        !matches!(self, Mode::Pause)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Run => f.write_str("run"),
            Mode::Limit(w) => write!(f, "limit {w:.0} W"),
            Mode::Pause => f.write_str("pause"),
        }
    }
}

/// Why a signal a policy needs has no usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} unknown ({why})")]
pub struct UnknownSignal {
    /// The signal's name.
    pub name: String,
    /// Why: the host's reason, `missing`, or `NaN`.
    pub why: String,
}

/// Everything a policy may base its decision on (WIT `inputs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inputs {
    /// Wall-clock time.
    pub now: Clock,
    /// Power drawn now, watts, if measured.
    pub power_w: Option<f64>,
    /// Energy counters.
    pub energy: Energy,
    /// Hashrate, H/s.
    pub hashrate_hs: f64,
    /// Temperature readings.
    pub temperatures: Vec<Temperature>,
    /// Subscribed signals, in subscription order.
    pub signals: Vec<Signal>,
    /// The mode the host applies now (after arbitration).
    pub applied: Mode,
    /// Milliseconds since `applied` last changed.
    pub applied_for_ms: u64,
    /// This policy's persistent state as last returned (empty at first).
    pub state: Vec<u8>,
}

impl Inputs {
    /// Inputs at `utc_ms` with the given local offset and nothing else, the
    /// starting point for tests and simulations.
    pub fn at(utc_ms: i64, local_offset_s: i32) -> Inputs {
        Inputs {
            now: Clock {
                utc_ms,
                local_offset_s,
                time_zone: String::new(),
            },
            ..Inputs::default()
        }
    }

    /// The usable value of signal `name`: the host's unknown reason, a
    /// signal the host did not send (`missing`) and a non-finite number
    /// (`NaN`) are all errors, so a policy cannot act on garbage by accident.
    pub fn signal(&self, name: &str) -> Result<f64, UnknownSignal> {
        let unknown = |why: &str| UnknownSignal {
            name: name.to_owned(),
            why: why.to_owned(),
        };
        match self.signals.iter().find(|s| s.name == name) {
            None => Err(unknown("missing")),
            Some(Signal {
                value: SignalValue::Unknown(why),
                ..
            }) => Err(unknown(if why.is_empty() { "unknown" } else { why })),
            Some(Signal {
                value: SignalValue::Number(v),
                ..
            }) if !v.is_finite() => Err(unknown("NaN")),
            Some(Signal {
                value: SignalValue::Number(v),
                ..
            }) => Ok(*v),
        }
    }

    /// The reading of temperature sensor `name`, with the same error rules
    /// as [`Inputs::signal`].
    pub fn temperature(&self, name: &str) -> Result<f64, UnknownSignal> {
        match self.temperatures.iter().find(|t| t.name == name) {
            None => Err(UnknownSignal {
                name: name.to_owned(),
                why: "missing".into(),
            }),
            Some(t) if !t.celsius.is_finite() => Err(UnknownSignal {
                name: name.to_owned(),
                why: "NaN".into(),
            }),
            Some(t) => Ok(t.celsius),
        }
    }

    /// Builder: adds a numeric signal (tests, simulations).
    pub fn with_signal(mut self, name: &str, value: f64) -> Inputs {
        self.signals.push(Signal {
            name: name.to_owned(),
            value: SignalValue::Number(value),
            age_ms: 0,
        });
        self
    }

    /// Builder: adds a signal the host marks unknown for `why`.
    pub fn with_unknown(mut self, name: &str, why: &str) -> Inputs {
        self.signals.push(Signal {
            name: name.to_owned(),
            value: SignalValue::Unknown(why.to_owned()),
            age_ms: 0,
        });
        self
    }

    /// Builder: adds a temperature reading.
    pub fn with_temperature(mut self, name: &str, celsius: f64) -> Inputs {
        self.temperatures.push(Temperature {
            name: name.to_owned(),
            celsius,
        });
        self
    }

    /// Builder: sets today's and this month's energy counters.
    pub fn with_energy(mut self, today_kwh: f64, month_kwh: f64) -> Inputs {
        self.energy.today_kwh = today_kwh;
        self.energy.month_kwh = month_kwh;
        self
    }

    /// Builder: sets the applied mode and how long it has been applied.
    pub fn with_applied(mut self, mode: Mode, for_ms: u64) -> Inputs {
        self.applied = mode;
        self.applied_for_ms = for_ms;
        self
    }
}

/// A policy's answer (WIT `decision`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What the appliance may do.
    pub mode: Mode,
    /// Why, for the operator; the host prefixes "<mode> by <policy>:".
    pub reason: String,
    /// Ask again after at most this many milliseconds.
    pub next_eval_ms: u32,
    /// New persistent state, or `None` to keep the stored one.
    pub state: Option<Vec<u8>>,
}

/// Default re-evaluation interval when a policy has no better idea.
pub const DEFAULT_NEXT_EVAL_MS: u32 = 60_000;

impl Decision {
    /// A decision with `mode` and `reason`, re-evaluated after a minute and
    /// keeping the stored state.
    pub fn new(mode: Mode, reason: impl Into<String>) -> Decision {
        Decision {
            mode,
            reason: reason.into(),
            next_eval_ms: DEFAULT_NEXT_EVAL_MS,
            state: None,
        }
    }

    /// Shorthand for [`Decision::new`] with [`Mode::Run`].
    pub fn run(reason: impl Into<String>) -> Decision {
        Decision::new(Mode::Run, reason)
    }

    /// Shorthand for [`Decision::new`] with [`Mode::Pause`].
    pub fn pause(reason: impl Into<String>) -> Decision {
        Decision::new(Mode::Pause, reason)
    }

    /// Shorthand for [`Decision::new`] with [`Mode::Limit`].
    pub fn limit(watts: f64, reason: impl Into<String>) -> Decision {
        Decision::new(Mode::Limit(watts), reason)
    }

    /// Sets when to be asked again (ms, at least 1).
    pub fn next_eval_ms(mut self, ms: u64) -> Decision {
        self.next_eval_ms = u32::try_from(ms).unwrap_or(u32::MAX).max(1);
        self
    }

    /// Stores `state` (serialised as JSON) as the new persistent state.
    pub fn with_state<T: Serialize>(mut self, state: &T) -> Decision {
        self.state = Some(crate::state::encode(state));
        self
    }
}
