//! Policy engine behaviour with native test policies (no wasm): arbitration,
//! override, fail-safe and restarts, signals and TTL, persistent state,
//! evaluation triggers, the CPU actuator and signal-to-actuator latency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashwatt::policy::actuator::{Actuator, CpuActuator, PauseSwitch, PowerModel};
use hashwatt::policy::arbiter::{BY_DEFAULT, BY_OVERRIDE, Override};
use hashwatt::policy::clock::{Clock, ManualClock, SystemClock};
use hashwatt::policy::engine::{
    EngineConfig, FailSafe, HostReadings, InputProvider, PolicyEngine, PolicySpec,
};
use hashwatt::policy::signal::{SignalHub, SignalSpec};
use hashwatt::policy::{Decision, Inputs, Mode, PolicyBackend, PolicyFactory, SignalValue};

type Rule = dyn Fn(&Inputs) -> Result<Decision, String> + Send + Sync;

/// A native policy: a rule over the inputs, with an evaluation counter.
struct Native {
    subs: Vec<String>,
    rule: Arc<Rule>,
    evals: Arc<AtomicUsize>,
}

impl PolicyBackend for Native {
    fn subscriptions(&self) -> Vec<String> {
        self.subs.clone()
    }
    fn evaluate(&mut self, inputs: &Inputs) -> Result<Decision, String> {
        self.evals.fetch_add(1, Ordering::SeqCst);
        (self.rule)(inputs)
    }
}

struct NativeFactory {
    subs: Vec<String>,
    rule: Arc<Rule>,
    evals: Arc<AtomicUsize>,
    creates: AtomicUsize,
    refuse: AtomicBool,
}

impl NativeFactory {
    fn new(
        subs: &[&str],
        rule: impl Fn(&Inputs) -> Result<Decision, String> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(NativeFactory {
            subs: subs.iter().map(|s| s.to_string()).collect(),
            rule: Arc::new(rule),
            evals: Arc::new(AtomicUsize::new(0)),
            creates: AtomicUsize::new(0),
            refuse: AtomicBool::new(false),
        })
    }
    fn evals(&self) -> usize {
        self.evals.load(Ordering::SeqCst)
    }
}

impl PolicyFactory for NativeFactory {
    fn create(&self) -> Result<Box<dyn PolicyBackend>, String> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        if self.refuse.load(Ordering::SeqCst) {
            return Err("refused".into());
        }
        Ok(Box::new(Native {
            subs: self.subs.clone(),
            rule: self.rule.clone(),
            evals: self.evals.clone(),
        }))
    }
}

fn decide(mode: Mode, reason: &str) -> Result<Decision, String> {
    Ok(Decision {
        mode,
        reason: reason.into(),
        next_eval_ms: 60_000,
        state: None,
    })
}

fn constant(mode: Mode, reason: &'static str) -> Arc<NativeFactory> {
    NativeFactory::new(&[], move |_| decide(mode, reason))
}

#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<(Mode, Instant)>>,
    notify: tokio::sync::Notify,
}

impl Recorder {
    fn modes(&self) -> Vec<Mode> {
        self.applied.lock().unwrap().iter().map(|a| a.0).collect()
    }
    fn last(&self) -> Option<Mode> {
        self.modes().last().copied()
    }
}

impl Actuator for Recorder {
    fn apply(&self, mode: &Mode) {
        self.applied.lock().unwrap().push((*mode, Instant::now()));
        self.notify.notify_waiters();
    }
}

struct Fixed(HostReadings);
impl InputProvider for Fixed {
    fn readings(&self) -> HostReadings {
        self.0.clone()
    }
}

struct Rig {
    clock: Arc<ManualClock>,
    hub: Arc<SignalHub>,
    engine: Arc<PolicyEngine>,
    act: Arc<Recorder>,
}

const T0: i64 = 1_752_580_800_000; // 2025-07-15 12:00 UTC

fn rig_with(cfg: EngineConfig) -> Rig {
    let clock = Arc::new(ManualClock::new(T0));
    let hub = Arc::new(SignalHub::new(clock.clone()));
    hub.define(SignalSpec::new("export_kw", Duration::from_secs(60)).with_range(-100.0, 100.0))
        .unwrap();
    let act = Arc::new(Recorder::default());
    let provider = Arc::new(Fixed(HostReadings {
        power_w: Some(120.0),
        hashrate_hs: 5e7,
        ..HostReadings::default()
    }));
    let engine = PolicyEngine::new(cfg, hub.clone(), clock.clone(), provider, act.clone());
    Rig {
        clock,
        hub,
        engine,
        act,
    }
}

fn rig() -> Rig {
    rig_with(EngineConfig::default())
}

#[test]
fn no_policy_runs_by_default() {
    let r = rig();
    let v = r.engine.step();
    assert_eq!((v.mode, v.by.as_str()), (Mode::Run, BY_DEFAULT));
    assert_eq!(r.act.modes(), vec![Mode::Run]);
}

#[test]
fn most_restrictive_policy_wins_and_display_names_it() {
    let r = rig();
    let add = |n: &str, f: Arc<NativeFactory>| {
        r.engine
            .add_policy(PolicySpec::new(n, FailSafe::Run), f)
            .unwrap()
    };
    add(
        "price",
        constant(Mode::Limit(400.0), "price 21 ct/kWh > 20"),
    );
    add("quota", constant(Mode::Limit(250.0), "quota 80% used"));
    add("heater", constant(Mode::Run, "room 19 °C < 21 °C"));
    let v = r.engine.step();
    assert_eq!(v.mode, Mode::Limit(250.0));
    assert_eq!(v.to_string(), "limited to 250 W by quota: quota 80% used");
    add(
        "surplus-only",
        constant(Mode::Pause, "grid export 0.4 kW < 1.0 kW"),
    );
    let v = r.engine.step();
    assert_eq!(
        v.to_string(),
        "paused by surplus-only: grid export 0.4 kW < 1.0 kW"
    );
    assert_eq!(v.since_ms, T0);
    assert_eq!(r.act.modes(), vec![Mode::Limit(250.0), Mode::Pause]);
    // Disabling the pausing policy lets the limit through again.
    r.engine.set_enabled("surplus-only", false).unwrap();
    assert_eq!(r.engine.step().mode, Mode::Limit(250.0));
    let st = r.engine.status();
    assert_eq!(st.policies.len(), 4);
    assert_eq!(st.policies[1].last_mode, Some(Mode::Limit(250.0)));
    assert!(!st.policies[3].enabled);
    assert!(
        r.engine
            .add_policy(
                PolicySpec::new("quota", FailSafe::Run),
                constant(Mode::Run, "")
            )
            .is_err()
    );
    assert!(
        r.engine
            .add_policy(
                PolicySpec::new("../x", FailSafe::Run),
                constant(Mode::Run, "")
            )
            .is_err()
    );
}

#[test]
fn manual_override_sits_above_all_policies() {
    let r = rig();
    r.engine
        .add_policy(
            PolicySpec::new("always-run", FailSafe::Run),
            constant(Mode::Run, "fine"),
        )
        .unwrap();
    assert_eq!(r.engine.step().mode, Mode::Run);
    r.engine
        .set_override(Some(Override::pause(r.clock.now_utc_ms(), Some(10))));
    // Applied at once, before any round: the command's answer and the next
    // status read already show the pause, and the miner has it.
    let v = r.engine.verdict();
    assert_eq!((v.mode, v.by.as_str()), (Mode::Pause, BY_OVERRIDE));
    assert_eq!(r.act.modes().last(), Some(&Mode::Pause));
    let v = r.engine.step();
    assert_eq!((v.mode, v.by.as_str()), (Mode::Pause, BY_OVERRIDE));
    assert!(
        v.to_string().starts_with("paused by manual override"),
        "{v}"
    );
    r.clock.advance_ms(9 * 60_000);
    assert_eq!(r.engine.step().mode, Mode::Pause);
    r.clock.advance_ms(60_000);
    let v = r.engine.step();
    assert_eq!((v.mode, v.by.as_str()), (Mode::Run, "always-run"));
    assert!(
        r.engine.status().manual.is_none(),
        "expired override is cleared"
    );

    r.engine
        .add_policy(
            PolicySpec::new("never", FailSafe::Pause),
            constant(Mode::Pause, "no"),
        )
        .unwrap();
    assert_eq!(r.engine.step().mode, Mode::Pause);
    r.engine.set_override(Some(Override::force_run()));
    assert_eq!(r.engine.step().mode, Mode::Run);
    r.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(r.engine.step().mode, Mode::Run, "until cleared");
    r.engine.set_override(None);
    assert_eq!(r.engine.verdict().mode, Mode::Pause, "cleared at once");
    assert_eq!(r.engine.step().mode, Mode::Pause);
    assert_eq!(
        r.act.modes(),
        vec![
            Mode::Run,
            Mode::Pause,
            Mode::Run,
            Mode::Pause,
            Mode::Run,
            Mode::Pause
        ]
    );
}

#[test]
fn failing_policy_gets_its_fail_safe_and_restarts_with_back_off() {
    let r = rig();
    let fail = Arc::new(AtomicBool::new(true));
    let f2 = fail.clone();
    let flaky = NativeFactory::new(&[], move |_| {
        if f2.load(Ordering::SeqCst) {
            Err("trapped: unreachable".into())
        } else {
            decide(Mode::Run, "healthy")
        }
    });
    r.engine
        .add_policy(PolicySpec::new("flaky", FailSafe::Pause), flaky.clone())
        .unwrap();
    let v = r.engine.step();
    assert_eq!((v.mode, v.by.as_str()), (Mode::Pause, "flaky"));
    assert!(v.reason.contains("fail-safe"), "{}", v.reason);
    let st = &r.engine.status().policies[0];
    assert_eq!(st.failures, 1);
    assert!(!st.running);
    assert!(st.fail_safe_active);
    assert_eq!(st.last_error.as_deref(), Some("trapped: unreachable"));

    // Back-off 1 s: no restart before it.
    r.clock.advance_ms(500);
    r.engine.step();
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 1);
    r.clock.advance_ms(500);
    r.engine.step();
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 2);
    assert_eq!(r.engine.status().policies[0].failures, 2);
    // Next back-off is 2 s.
    r.clock.advance_ms(1_000);
    r.engine.step();
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 2);
    r.clock.advance_ms(1_000);
    fail.store(false, Ordering::SeqCst);
    let v = r.engine.step();
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 3);
    assert_eq!((v.mode, v.reason.as_str()), (Mode::Run, "healthy"));
    let st = &r.engine.status().policies[0];
    assert!(st.running && !st.fail_safe_active);
    assert_eq!(st.failures, 2);

    // A failing restart counts too.
    let r = rig();
    let broken = NativeFactory::new(&[], |_| Err("boom".into()));
    r.engine
        .add_policy(PolicySpec::new("heater", FailSafe::Run), broken.clone())
        .unwrap();
    assert_eq!(r.engine.step().mode, Mode::Run, "fail-safe run");
    broken.refuse.store(true, Ordering::SeqCst);
    r.clock.advance_ms(1_000);
    r.engine.step();
    let st = &r.engine.status().policies[0];
    assert_eq!(st.failures, 2);
    assert!(st.last_error.as_deref().unwrap().contains("restart failed"));
}

#[test]
fn invalid_decisions_count_as_failures() {
    let cases: Vec<(&str, Decision)> = vec![
        (
            "nan-limit",
            Decision {
                mode: Mode::Limit(f64::NAN),
                reason: "x".into(),
                next_eval_ms: 1000,
                state: None,
            },
        ),
        (
            "negative-limit",
            Decision {
                mode: Mode::Limit(-5.0),
                reason: "x".into(),
                next_eval_ms: 1000,
                state: None,
            },
        ),
        (
            "long-reason",
            Decision {
                mode: Mode::Run,
                reason: "r".repeat(10_000),
                next_eval_ms: 1000,
                state: None,
            },
        ),
        (
            "fat-state",
            Decision {
                mode: Mode::Run,
                reason: "x".into(),
                next_eval_ms: 1000,
                state: Some(vec![0; 1 << 20]),
            },
        ),
    ];
    for (name, d) in cases {
        let r = rig();
        r.engine
            .add_policy(
                PolicySpec::new(name, FailSafe::Pause),
                NativeFactory::new(&[], move |_| Ok(d.clone())),
            )
            .unwrap();
        assert_eq!(r.engine.step().mode, Mode::Pause, "{name}");
        let st = &r.engine.status().policies[0];
        assert_eq!(st.failures, 1, "{name}");
        assert!(
            st.last_error
                .as_deref()
                .unwrap()
                .starts_with("invalid decision"),
            "{name}: {:?}",
            st.last_error
        );
    }
}

/// Surplus-only in miniature: run while export >= 1 kW, pause otherwise
/// (including when the signal is unknown).
fn surplus_rule(i: &Inputs) -> Result<Decision, String> {
    let s = i.signals.first().ok_or("no signal")?;
    match &s.value {
        SignalValue::Number(kw) if *kw >= 1.0 => decide(Mode::Run, &format!("export {kw} kW")),
        SignalValue::Number(kw) => decide(Mode::Pause, &format!("export {kw} kW < 1.0 kW")),
        SignalValue::Unknown(why) => decide(Mode::Pause, &format!("export unknown: {why}")),
    }
}

#[test]
fn signals_reach_policies_with_ttl_and_trigger_evaluation() {
    let r = rig();
    let f = NativeFactory::new(&["export_kw"], surplus_rule);
    r.engine
        .add_policy(PolicySpec::new("surplus", FailSafe::Pause), f.clone())
        .unwrap();
    let v = r.engine.step();
    assert_eq!(v.mode, Mode::Pause);
    assert_eq!(v.reason, "export unknown: missing");
    assert_eq!(f.evals(), 1);
    // No change, no time: not evaluated again.
    r.engine.step();
    assert_eq!(f.evals(), 1);
    // A changed signal triggers evaluation at once.
    r.hub.set("export_kw", 2.5).unwrap();
    assert_eq!(r.engine.step().mode, Mode::Run);
    assert_eq!(f.evals(), 2);
    // The same value again is no change.
    r.hub.set("export_kw", 2.5).unwrap();
    r.engine.step();
    assert_eq!(f.evals(), 2);
    // Each second: evaluated again even without a change.
    r.clock.advance_ms(1_000);
    r.engine.step();
    assert_eq!(f.evals(), 3);
    // Past the TTL the value is stale.
    r.clock.advance_ms(92_000);
    let v = r.engine.step();
    assert_eq!(v.mode, Mode::Pause);
    assert_eq!(v.reason, "export unknown: stale (age 93 s > ttl 60 s)");
    r.hub.set("export_kw", 500.0).unwrap();
    assert!(r.engine.step().reason.contains("out of range"));
    r.hub.set("export_kw", f64::NAN).unwrap();
    assert!(r.engine.step().reason.ends_with("NaN"));
}

#[test]
fn inputs_carry_clock_readings_and_applied_mode() {
    let r = rig_with(EngineConfig {
        time_zone: "Europe/Berlin".into(),
        ..EngineConfig::default()
    });
    let seen: Arc<Mutex<Vec<Inputs>>> = Arc::default();
    let s2 = seen.clone();
    r.engine
        .add_policy(
            PolicySpec::new("spy", FailSafe::Run),
            NativeFactory::new(&["export_kw", "undefined"], move |i| {
                s2.lock().unwrap().push(i.clone());
                decide(Mode::Pause, "spying")
            }),
        )
        .unwrap();
    r.engine.step();
    r.clock.advance_ms(1_500);
    r.engine.step();
    let seen = seen.lock().unwrap();
    let (a, b) = (&seen[0], &seen[1]);
    assert_eq!(a.now.utc_ms, T0);
    assert_eq!(a.now.local_offset_s, 7200, "CEST in July");
    assert_eq!(a.now.time_zone, "Europe/Berlin");
    assert_eq!(a.power_w, Some(120.0));
    assert_eq!(a.hashrate_hs, 5e7);
    assert_eq!(a.signals.len(), 2);
    assert_eq!(a.signals[1].name, "undefined");
    assert!(matches!(&a.signals[1].value, SignalValue::Unknown(w) if w.starts_with("missing")));
    assert_eq!(b.applied, Mode::Pause);
    assert_eq!(b.applied_for_ms, 1_500);
}

#[test]
fn state_persists_across_engines_and_quota_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let counter = || {
        NativeFactory::new(&[], |i| {
            let n = i.state.first().copied().unwrap_or(0);
            Ok(Decision {
                mode: Mode::Run,
                reason: format!("count {n}"),
                next_eval_ms: 1000,
                state: Some(vec![n + 1]),
            })
        })
    };
    let cfg = EngineConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..EngineConfig::default()
    };
    let r = rig_with(cfg.clone());
    r.engine
        .add_policy(PolicySpec::new("counter", FailSafe::Run), counter())
        .unwrap();
    for _ in 0..3 {
        r.engine.step();
        r.clock.advance_ms(1_000);
    }
    assert_eq!(r.engine.verdict().reason, "count 2");
    drop(r);
    let r = rig_with(cfg);
    r.engine
        .add_policy(PolicySpec::new("counter", FailSafe::Run), counter())
        .unwrap();
    assert_eq!(
        r.engine.step().reason,
        "count 3",
        "state survived the restart"
    );
    assert!(dir.path().join("policy-state/counter.bin").exists());
}

#[test]
fn next_eval_ms_brings_evaluation_forward() {
    let r = rig();
    let f = NativeFactory::new(&[], |_| {
        Ok(Decision {
            mode: Mode::Run,
            reason: "soon".into(),
            next_eval_ms: 200,
            state: None,
        })
    });
    r.engine
        .add_policy(PolicySpec::new("eager", FailSafe::Run), f.clone())
        .unwrap();
    r.engine.step();
    r.clock.advance_ms(100);
    r.engine.step();
    assert_eq!(f.evals(), 1);
    r.clock.advance_ms(100);
    r.engine.step();
    assert_eq!(f.evals(), 2);
}

/// A pause switch that records every transition and the time spent unpaused.
#[derive(Default)]
struct Switch {
    state: Mutex<(bool, Option<Instant>, Duration, usize)>, // paused, running since, run time, toggles
}

impl PauseSwitch for Switch {
    fn set_paused(&self, paused: bool) {
        let mut s = self.state.lock().unwrap();
        if s.0 != paused {
            s.3 += 1;
        }
        if paused {
            if let Some(t) = s.1.take() {
                s.2 += t.elapsed();
            }
        } else if s.1.is_none() {
            s.1 = Some(Instant::now());
        }
        s.0 = paused;
    }
}

impl Switch {
    fn paused(&self) -> bool {
        self.state.lock().unwrap().0
    }
    fn take_stats(&self) -> (Duration, usize) {
        let mut s = self.state.lock().unwrap();
        let mut run = s.2;
        if let Some(t) = s.1 {
            run += t.elapsed();
            s.1 = Some(Instant::now());
        }
        let toggles = s.3;
        s.2 = Duration::ZERO;
        s.3 = 0;
        (run, toggles)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_actuator_pauses_runs_and_duty_cycles_limits() {
    let switch = Arc::new(Switch::default());
    let model = PowerModel {
        idle_w: 20.0,
        k_w: 100.0,
    };
    let act = CpuActuator::spawn(switch.clone(), model, Duration::from_millis(100));
    act.apply(&Mode::Pause);
    assert!(switch.paused(), "pause acts synchronously");
    act.apply(&Mode::Run);
    assert!(!switch.paused(), "run acts synchronously");
    // 70 W = idle 20 + 100 × 0.5: half of each 100 ms slice.
    act.apply(&Mode::Limit(70.0));
    switch.take_stats();
    let window = Duration::from_millis(1_000);
    tokio::time::sleep(window).await;
    let (run, toggles) = switch.take_stats();
    let duty = run.as_secs_f64() / window.as_secs_f64();
    println!("duty cycle for 70 W (model 20 + 100·d): measured {duty:.2}, {toggles} toggles");
    assert!(
        toggles >= 4,
        "a limit must alternate run and park ({toggles})"
    );
    assert!(duty > 0.05 && duty < 0.95, "duty {duty}");
    // Limit below idle parks; above full runs.
    act.apply(&Mode::Limit(10.0));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(switch.paused());
    switch.take_stats();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(switch.take_stats().1, 0, "no toggling at duty 0");
    act.apply(&Mode::Limit(1_000.0));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!switch.paused());
    act.apply(&Mode::Limit(70.0));
    tokio::time::sleep(Duration::from_millis(130)).await;
    act.apply(&Mode::Pause);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(switch.paused(), "pause after a limit stays paused");
    assert_eq!(act.current(), Some(Mode::Pause));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_change_reaches_the_actuator_within_a_second() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hub = Arc::new(SignalHub::new(clock.clone()));
    hub.define(SignalSpec::new("export_kw", Duration::from_secs(60)))
        .unwrap();
    let act = Arc::new(Recorder::default());
    let engine = PolicyEngine::new(
        EngineConfig::default(),
        hub.clone(),
        clock,
        Arc::new(Fixed(HostReadings::default())),
        act.clone(),
    );
    engine
        .add_policy(
            PolicySpec::new("surplus", FailSafe::Pause),
            NativeFactory::new(&["export_kw"], surplus_rule),
        )
        .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.clone().run(stop_rx));
    while act.applied.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut samples = Vec::new();
    for i in 0..60 {
        // Alternate between surplus (run) and none (pause).
        let (kw, want) = if i % 2 == 0 {
            (2.0 + f64::from(i), Mode::Run)
        } else {
            (0.1, Mode::Pause)
        };
        let before = act.applied.lock().unwrap().len();
        let notified = act.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let t = Instant::now();
        hub.set("export_kw", kw).unwrap();
        tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if act.applied.lock().unwrap().len() > before {
                    return;
                }
                notified.as_mut().await;
                notified.set(act.notify.notified());
                notified.as_mut().enable();
            }
        })
        .await
        .expect("signal change must reach the actuator within 1 s");
        let (mode, at) = *act.applied.lock().unwrap().last().unwrap();
        assert_eq!(mode, want);
        samples.push(at.duration_since(t));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples.sort();
    println!(
        "signal → actuator latency over {} changes: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().unwrap()
    );
    assert!(*samples.last().unwrap() <= Duration::from_secs(1));
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(act.last(), Some(Mode::Pause));
}
