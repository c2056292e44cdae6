//! The policy engine: evaluates every enabled policy each second and
//! whenever a signal it subscribed to changes, arbitrates (override >
//! pause > lowest limit > run), applies the verdict through an
//! [`Actuator`], and keeps failing policies in their fail-safe while it
//! restarts them with back-off.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};

pub use super::actuator::Actuator;
use super::arbiter::{BY_DEFAULT, Candidate, Override, Verdict, arbitrate};
use super::clock::Clock;
use super::signal::SignalHub;
use super::state::{StateError, StateStore, check_name};
use super::{
    ClockReading, DecisionLimits, Energy, Inputs, Mode, PolicyBackend, PolicyFactory, Signal,
    Temperature, validate_decision,
};

/// Evaluations closer than this to their due time are done now, so a 1 s
/// tick never misses a policy due a few ms later.
const DUE_SLACK_MS: i64 = 50;
/// Shortest re-evaluation interval a policy may ask for.
const MIN_NEXT_EVAL_MS: i64 = 50;

/// Errors of the engine's API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Two policies with one name.
    #[error("a policy named {0:?} already exists")]
    Duplicate(String),
    /// No policy of that name.
    #[error("no policy named {0:?}")]
    NoSuchPolicy(String),
    /// The policy could not be created or configured; it stays disabled.
    #[error("policy {name} cannot start: {reason}")]
    Create {
        /// Policy name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The policy's persistent state could not be loaded.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Measurements the host provides to every evaluation (meter, hashrate,
/// sensors). Implemented by the app on top of its energy meter.
pub trait InputProvider: Send + Sync {
    /// The current readings. Must return quickly.
    fn readings(&self) -> HostReadings;
}

/// The host's measurements at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostReadings {
    /// Power drawn now, watts, if measured.
    pub power_w: Option<f64>,
    /// Energy counters.
    pub energy: Energy,
    /// Hashrate, H/s.
    pub hashrate_hs: f64,
    /// Temperature readings.
    pub temperatures: Vec<Temperature>,
}

/// What applies for a policy that trapped, timed out or broke its limits.
/// In the configuration file: `fail_safe = "pause"` or `"run"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailSafe {
    /// Stop mining (the safe choice where energy is expensive or scarce).
    Pause,
    /// Keep mining (the choice where mining is the point, e.g. a heater).
    Run,
}

impl FailSafe {
    fn mode(self) -> Mode {
        match self {
            FailSafe::Pause => Mode::Pause,
            FailSafe::Run => Mode::Run,
        }
    }
}

/// How the host runs one policy.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    /// Unique name (also the state file's name): `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// Mode used while the policy is failing.
    pub fail_safe: FailSafe,
    /// Whether it takes part in arbitration.
    pub enabled: bool,
    /// Bounds on its decisions (reason length, state quota).
    pub limits: DecisionLimits,
}

impl PolicySpec {
    /// An enabled policy with default limits.
    pub fn new(name: &str, fail_safe: FailSafe) -> Self {
        PolicySpec {
            name: name.into(),
            fail_safe,
            enabled: true,
            limits: DecisionLimits::default(),
        }
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// IANA time zone handed to policies (`local-offset-s` follows it).
    pub time_zone: String,
    /// Directory for persistent policy state (`None`: memory only).
    pub state_dir: Option<PathBuf>,
    /// Evaluate every policy at least this often.
    pub tick: Duration,
    /// First restart delay after a failure (doubles up to `restart_max`).
    pub restart_min: Duration,
    /// Longest restart delay.
    pub restart_max: Duration,
    /// A restarted instance that ran this long without failing resets the back-off.
    pub healthy_after: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            time_zone: "UTC".into(),
            state_dir: None,
            tick: Duration::from_secs(1),
            restart_min: Duration::from_secs(1),
            restart_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
        }
    }
}

/// One policy as shown to the operator.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyStatus {
    /// Name.
    pub name: String,
    /// Whether it takes part in arbitration.
    pub enabled: bool,
    /// Whether a live instance exists (false while waiting for a restart).
    pub running: bool,
    /// Its last effective mode (its decision, or the fail-safe).
    pub last_mode: Option<Mode>,
    /// The reason for `last_mode`.
    pub reason: String,
    /// Whether `last_mode` is the fail-safe.
    pub fail_safe_active: bool,
    /// Failures since start (traps, timeouts, invalid decisions, failed restarts).
    pub failures: u64,
    /// The most recent failure.
    pub last_error: Option<String>,
    /// UTC ms of the last evaluation.
    pub last_eval_ms: Option<i64>,
}

/// The engine as shown to the operator.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct EngineStatus {
    /// What applies now and why.
    pub verdict: Verdict,
    /// The manual override, if one is set (even if expired and not yet cleared).
    pub manual: Option<Override>,
    /// Every policy, in the order added.
    pub policies: Vec<PolicyStatus>,
}

struct Slot {
    spec: PolicySpec,
    factory: Arc<dyn PolicyFactory>,
    backend: Option<Box<dyn PolicyBackend>>,
    subs: Vec<String>,
    seen: Vec<u64>,
    state: Vec<u8>,
    last: Option<(Mode, String)>,
    fail_safe_active: bool,
    next_due_ms: i64,
    restart_at_ms: i64,
    backoff_ms: i64,
    started_ms: i64,
    failures: u64,
    last_error: Option<String>,
    last_eval_ms: Option<i64>,
}

struct Inner {
    slots: Vec<Slot>,
    manual: Option<Override>,
    verdict: Verdict,
    applied: bool,
}

/// Evaluates policies, arbitrates, applies. Share it as `Arc<PolicyEngine>`.
pub struct PolicyEngine {
    cfg: EngineConfig,
    hub: Arc<SignalHub>,
    clock: Arc<dyn Clock>,
    provider: Arc<dyn InputProvider>,
    actuator: Arc<dyn Actuator>,
    store: StateStore,
    inner: Mutex<Inner>,
    wake: Notify,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PolicyEngine {
    /// An engine with no policies (verdict: run by [`BY_DEFAULT`]).
    pub fn new(
        cfg: EngineConfig,
        hub: Arc<SignalHub>,
        clock: Arc<dyn Clock>,
        provider: Arc<dyn InputProvider>,
        actuator: Arc<dyn Actuator>,
    ) -> Arc<Self> {
        let now = clock.now_utc_ms();
        Arc::new(PolicyEngine {
            store: StateStore::new(cfg.state_dir.as_deref()),
            cfg,
            hub,
            clock,
            provider,
            actuator,
            inner: Mutex::new(Inner {
                slots: Vec::new(),
                manual: None,
                verdict: Verdict {
                    mode: Mode::Run,
                    by: BY_DEFAULT.into(),
                    reason: "no energy policy enabled".into(),
                    since_ms: now,
                },
                applied: false,
            }),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a policy: creates its first instance (a configuration error is
    /// returned and the policy is not added) and loads its stored state.
    pub fn add_policy(
        &self,
        spec: PolicySpec,
        factory: Arc<dyn PolicyFactory>,
    ) -> Result<(), EngineError> {
        check_name(&spec.name)?;
        if self.lock().slots.iter().any(|s| s.spec.name == spec.name) {
            return Err(EngineError::Duplicate(spec.name));
        }
        let state = self.store.load(&spec.name, spec.limits.state_quota)?;
        let backend = factory.create().map_err(|reason| EngineError::Create {
            name: spec.name.clone(),
            reason,
        })?;
        let subs = backend.subscriptions();
        let now = self.clock.now_utc_ms();
        let mut inner = self.lock();
        if inner.slots.iter().any(|s| s.spec.name == spec.name) {
            return Err(EngineError::Duplicate(spec.name));
        }
        inner.slots.push(Slot {
            seen: vec![u64::MAX; subs.len()],
            subs,
            backoff_ms: ms(self.cfg.restart_min),
            spec,
            factory,
            backend: Some(backend),
            state,
            last: None,
            fail_safe_active: false,
            next_due_ms: now,
            restart_at_ms: now,
            started_ms: now,
            failures: 0,
            last_error: None,
            last_eval_ms: None,
        });
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Removes a policy (its stored state stays on disk for a re-add).
    pub fn remove_policy(&self, name: &str) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let before = inner.slots.len();
        inner.slots.retain(|s| s.spec.name != name);
        if inner.slots.len() == before {
            return Err(EngineError::NoSuchPolicy(name.into()));
        }
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Enables or disables a policy.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), EngineError> {
        let mut inner = self.lock();
        let slot = inner
            .slots
            .iter_mut()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| EngineError::NoSuchPolicy(name.into()))?;
        slot.spec.enabled = enabled;
        slot.next_due_ms = i64::MIN;
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) the manual override and applies it
    /// at once, against the policies' latest decisions, so the verdict a
    /// caller reads next (and the command's answer) already shows it; the
    /// running loop then re-evaluates the policies as usual.
    pub fn set_override(&self, manual: Option<Override>) {
        let now = self.clock.now_utc_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.manual = manual;
        let candidates: Vec<Candidate> = inner
            .slots
            .iter()
            .filter(|s| s.spec.enabled)
            .map(candidate)
            .collect();
        self.settle(inner, &candidates, now);
        drop(guard);
        self.wake.notify_one();
    }

    /// What applies now.
    pub fn verdict(&self) -> Verdict {
        self.lock().verdict.clone()
    }

    /// Verdict, override and every policy's state, for the status line and API.
    pub fn status(&self) -> EngineStatus {
        let inner = self.lock();
        EngineStatus {
            verdict: inner.verdict.clone(),
            manual: inner.manual.clone(),
            policies: inner
                .slots
                .iter()
                .map(|s| PolicyStatus {
                    name: s.spec.name.clone(),
                    enabled: s.spec.enabled,
                    running: s.backend.is_some(),
                    last_mode: s.last.as_ref().map(|l| l.0),
                    reason: s.last.as_ref().map(|l| l.1.clone()).unwrap_or_default(),
                    fail_safe_active: s.fail_safe_active,
                    failures: s.failures,
                    last_error: s.last_error.clone(),
                    last_eval_ms: s.last_eval_ms,
                })
                .collect(),
        }
    }

    /// The signal hub the engine reads (sources and the API write into it).
    pub fn hub(&self) -> &Arc<SignalHub> {
        &self.hub
    }

    /// One round at the clock's current time: restarts failed policies that
    /// are due, evaluates policies that are due or whose signals changed,
    /// arbitrates and applies a changed mode. Returns the verdict.
    pub fn step(&self) -> Verdict {
        self.step_at().0
    }

    /// [`PolicyEngine::step`], plus the UTC ms at which a round is next needed.
    fn step_at(&self) -> (Verdict, i64) {
        let now = self.clock.now_utc_ms();
        let readings = self.provider.readings();
        let clock = ClockReading {
            utc_ms: now,
            local_offset_s: self.clock.offset_s(&self.cfg.time_zone, now),
            time_zone: self.cfg.time_zone.clone(),
        };
        let mut next_ms = now.saturating_add(ms(self.cfg.tick));
        let mut guard = self.lock();
        let inner = &mut *guard;
        let applied = inner.verdict.mode;
        let applied_for_ms = u64::try_from(now.saturating_sub(inner.verdict.since_ms)).unwrap_or(0);
        let mut candidates = Vec::new();
        for slot in inner.slots.iter_mut().filter(|s| s.spec.enabled) {
            if slot.backend.is_none() && now >= slot.restart_at_ms {
                self.restart(slot, now);
            }
            if let Some(backend) = slot.backend.as_mut() {
                let seqs: Vec<u64> = slot.subs.iter().map(|n| self.hub.seq(n)).collect();
                if seqs != slot.seen || now.saturating_add(DUE_SLACK_MS) >= slot.next_due_ms {
                    let inputs = Inputs {
                        now: clock.clone(),
                        power_w: readings.power_w,
                        energy: readings.energy,
                        hashrate_hs: readings.hashrate_hs,
                        temperatures: readings.temperatures.clone(),
                        signals: slot
                            .subs
                            .iter()
                            .map(|name| {
                                let r = self.hub.get(name, now);
                                Signal {
                                    name: name.clone(),
                                    value: r.value,
                                    age_ms: r.age_ms,
                                }
                            })
                            .collect(),
                        applied,
                        applied_for_ms,
                        state: slot.state.clone(),
                    };
                    slot.seen = seqs;
                    slot.last_eval_ms = Some(now);
                    let result = backend.evaluate(&inputs).and_then(|d| {
                        validate_decision(&d, &slot.spec.limits)
                            .map(|()| d)
                            .map_err(|e| format!("invalid decision: {e}"))
                    });
                    match result {
                        Ok(d) => {
                            let after = i64::from(d.next_eval_ms)
                                .clamp(MIN_NEXT_EVAL_MS, ms(self.cfg.tick));
                            slot.next_due_ms = now.saturating_add(after);
                            if let Some(state) = d.state
                                && state != slot.state
                            {
                                if let Err(e) = self.store.save(&slot.spec.name, &state) {
                                    tracing::warn!(policy = %slot.spec.name, error = %e, "cannot persist policy state");
                                }
                                slot.state = state;
                            }
                            slot.last = Some((d.mode, d.reason));
                            slot.fail_safe_active = false;
                            if now.saturating_sub(slot.started_ms) >= ms(self.cfg.healthy_after) {
                                slot.backoff_ms = ms(self.cfg.restart_min);
                            }
                        }
                        Err(e) => self.fail(slot, now, e),
                    }
                }
            }
            if slot.backend.is_some() {
                next_ms = next_ms.min(slot.next_due_ms);
            } else {
                next_ms = next_ms.min(slot.restart_at_ms);
            }
            candidates.push(candidate(slot));
        }
        if let Some(until) = self.settle(inner, &candidates, now) {
            next_ms = next_ms.min(until);
        }
        (inner.verdict.clone(), next_ms)
    }

    /// Arbitrates `candidates` and the manual override at `now` and applies
    /// a changed mode; returns when the override runs out, if it does.
    fn settle(&self, inner: &mut Inner, candidates: &[Candidate], now: i64) -> Option<i64> {
        let mut until_ms = None;
        if let Some(until) = inner.manual.as_ref().and_then(|o| o.until_ms) {
            if now >= until {
                inner.manual = None;
            } else {
                until_ms = Some(until);
            }
        }
        let (mode, by, reason) = arbitrate(candidates, inner.manual.as_ref(), now);
        let changed = mode != inner.verdict.mode;
        inner.verdict = Verdict {
            mode,
            by,
            reason,
            since_ms: if changed { now } else { inner.verdict.since_ms },
        };
        if changed || !inner.applied {
            inner.applied = true;
            tracing::info!(verdict = %inner.verdict, "energy policy verdict");
            self.actuator.apply(&mode);
        }
        until_ms
    }

    fn fail(&self, slot: &mut Slot, now: i64, error: String) {
        tracing::warn!(policy = %slot.spec.name, error = %error, fail_safe = ?slot.spec.fail_safe, "energy policy failed; applying its fail-safe");
        slot.failures += 1;
        slot.backend = None;
        slot.restart_at_ms = now.saturating_add(slot.backoff_ms);
        slot.backoff_ms = slot
            .backoff_ms
            .saturating_mul(2)
            .min(ms(self.cfg.restart_max));
        slot.last = Some((
            slot.spec.fail_safe.mode(),
            format!("fail-safe after failure: {error}"),
        ));
        slot.last_error = Some(error);
        slot.fail_safe_active = true;
    }

    fn restart(&self, slot: &mut Slot, now: i64) {
        match slot.factory.create() {
            Ok(backend) => {
                tracing::info!(policy = %slot.spec.name, "energy policy restarted");
                slot.subs = backend.subscriptions();
                slot.seen = vec![u64::MAX; slot.subs.len()];
                slot.backend = Some(backend);
                slot.started_ms = now;
                slot.next_due_ms = now;
            }
            Err(e) => self.fail(slot, now, format!("restart failed: {e}")),
        }
    }

    /// Runs rounds until `shutdown` turns true: every `tick`, when a policy
    /// asked to be evaluated sooner, and at once when a signal changes, the
    /// override is set or a policy is added. Evaluation is synchronous and
    /// bounded by each plugin's call budget.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.hub.subscribe();
        loop {
            changes.borrow_and_update();
            let (_, next_ms) = self.step_at();
            let wait_ms = next_ms
                .saturating_sub(self.clock.now_utc_ms())
                .clamp(1, ms(self.cfg.tick).max(1));
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1000));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = changes.changed() => { if r.is_err() { return; } }
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// What a policy slot stands for in arbitration: its latest decision, or
/// its fail-safe before it has decided.
fn candidate(slot: &Slot) -> Candidate {
    let (mode, reason) = match &slot.last {
        Some((m, r)) => (*m, r.clone()),
        None => (
            slot.spec.fail_safe.mode(),
            "fail-safe: not evaluated yet".into(),
        ),
    };
    Candidate {
        name: slot.spec.name.clone(),
        mode,
        reason,
    }
}
