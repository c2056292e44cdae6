//! End-to-end with the first-party policy plugins (wasm32-wasip2
//! components): bindings, validation of their output, and the whole chain
//! MQTT broker / HTTP feed → signal hub → engine → plugin → actuator.
//!
//! The components come from `HASHWATT_POLICY_WASM_DIR` (or the usual
//! build directories); without them the tests say so loudly and return.

mod policy_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashwatt::plugin::policy::{PolicyLimits, PolicyPluginFactory, PolicyPluginPre};
use hashwatt::plugin::{PluginError, Runtime};
use hashwatt::policy::actuator::Actuator;
use hashwatt::policy::clock::{Clock, SystemClock};
use hashwatt::policy::engine::{
    EngineConfig, FailSafe, HostReadings, InputProvider, PolicyEngine, PolicySpec,
};
use hashwatt::policy::signal::{SignalHub, SignalSpec};
use hashwatt::policy::sources::mqtt::{MqttSource, MqttTopic};
use hashwatt::policy::{ClockReading, DecisionLimits, Energy, Inputs, Mode, Signal, SignalValue};
use tokio::sync::watch;

/// The embedded first-party policy `policy_<stem>` (built by host/build.rs).
fn wasm(stem: &str) -> Option<Vec<u8>> {
    let name = stem.replace('_', "-");
    Some(
        hashwatt::plugin::builtin::policy(&name)
            .unwrap_or_else(|| panic!("no built-in policy {name}"))
            .to_vec(),
    )
}

fn inputs(signal: &str, value: SignalValue, utc_ms: i64, state: Vec<u8>) -> Inputs {
    Inputs {
        now: ClockReading {
            utc_ms,
            local_offset_s: 0,
            time_zone: "UTC".into(),
        },
        power_w: None,
        energy: Energy::default(),
        hashrate_hs: 0.0,
        temperatures: vec![],
        signals: vec![Signal {
            name: signal.into(),
            value,
            age_ms: 0,
        }],
        applied: Mode::Run,
        applied_for_ms: 0,
        state,
    }
}

const GRID_CONFIG: &str =
    r#"{"signal":"demand_response","release_delay_s":1,"on_unknown":"pause"}"#;

#[test]
fn grid_emergency_plugin_configures_and_decides() {
    let Some(bytes) = wasm("grid_emergency") else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let pre = PolicyPluginPre::new(&rt, "grid-emergency", &bytes).unwrap();
    let mut p = pre
        .instantiate(GRID_CONFIG, PolicyLimits::default())
        .unwrap();
    assert_eq!(p.subscriptions(), ["demand_response"]);
    let t = 1_752_580_800_000;
    let d = p
        .evaluate(&inputs(
            "demand_response",
            SignalValue::Number(0.0),
            t,
            vec![],
        ))
        .unwrap();
    assert_eq!(d.mode, Mode::Run, "{}", d.reason);
    let d = p
        .evaluate(&inputs(
            "demand_response",
            SignalValue::Number(1.0),
            t,
            vec![],
        ))
        .unwrap();
    assert_eq!(d.mode, Mode::Pause);
    assert!(d.reason.contains("emergency"), "{}", d.reason);
    let held = d.state.clone().expect("emergency is remembered");
    let d = p
        .evaluate(&inputs(
            "demand_response",
            SignalValue::Number(0.0),
            t + 100,
            held,
        ))
        .unwrap();
    assert_eq!(d.mode, Mode::Pause, "release delay holds: {}", d.reason);
    let d = p
        .evaluate(&inputs(
            "demand_response",
            SignalValue::Unknown("missing".into()),
            t,
            vec![],
        ))
        .unwrap();
    assert_eq!(d.mode, Mode::Pause);

    // A refused configuration is a load error with the plugin's message.
    match pre.instantiate(r#"{"bogus":1}"#, PolicyLimits::default()) {
        Err(PluginError::Load { reason, .. }) => {
            assert!(reason.starts_with("configuration refused"), "{reason}")
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("bad config accepted"),
    }
    // Garbage is not a component.
    assert!(PolicyPluginPre::new(&rt, "junk", b"\0asm junk").is_err());
}

#[test]
fn plugin_output_over_limits_is_a_failure() {
    let Some(bytes) = wasm("grid_emergency") else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let pre = PolicyPluginPre::new(&rt, "grid-emergency", &bytes).unwrap();
    let t = 1_752_580_800_000;
    let tight = |max_reason_bytes, state_quota| PolicyLimits {
        decision: DecisionLimits {
            max_reason_bytes,
            state_quota,
        },
        ..PolicyLimits::default()
    };
    let mut p = pre.instantiate(GRID_CONFIG, tight(4, 1 << 10)).unwrap();
    let e = p
        .evaluate(&inputs(
            "demand_response",
            SignalValue::Number(1.0),
            t,
            vec![],
        ))
        .unwrap_err();
    assert!(matches!(e, PluginError::Limit { .. }), "{e}");
    let mut p = pre.instantiate(GRID_CONFIG, tight(512, 0)).unwrap();
    let e = p
        .evaluate(&inputs(
            "demand_response",
            SignalValue::Number(1.0),
            t,
            vec![],
        ))
        .unwrap_err();
    assert!(e.to_string().contains("quota"), "{e}");
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(Mode, Instant)>>);
impl Actuator for Recorder {
    fn apply(&self, mode: &Mode) {
        self.0.lock().unwrap().push((*mode, Instant::now()));
    }
}
impl Recorder {
    /// Waits until the last applied mode is `want`; returns when it was applied.
    async fn wait(&self, want: Mode, limit: Duration) -> Instant {
        let t = Instant::now();
        loop {
            if let Some((m, at)) = self.0.lock().unwrap().last().copied()
                && m == want
            {
                return at;
            }
            assert!(
                t.elapsed() < limit,
                "actuator never got {want:?}: {:?}",
                self.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

struct NoReadings;
impl InputProvider for NoReadings {
    fn readings(&self) -> HostReadings {
        HostReadings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_grid_emergency_pauses_within_a_second_and_releases_after_the_delay() {
    let Some(bytes) = wasm("grid_emergency") else {
        return;
    };
    let Some(broker) = policy_support::start_broker() else {
        eprintln!("!!! SKIPPED: mosquitto not installed (apt-get install -y mosquitto) !!!");
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hub = Arc::new(SignalHub::new(clock.clone()));
    hub.define(SignalSpec::new("demand_response", Duration::from_secs(300)).with_range(0.0, 1.0))
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mqtt = MqttSource {
        host: "127.0.0.1".into(),
        port: broker.port,
        client_id: "hashwatt-e2e".into(),
        topics: vec![MqttTopic {
            topic: "grid/dr".into(),
            signal: "demand_response".into(),
            pointer: None,
        }],
        keep_alive: Duration::from_secs(5),
    }
    .spawn(hub.clone(), stop_rx.clone())
    .unwrap();
    let rt = Runtime::new().unwrap();
    let pre = PolicyPluginPre::new(&rt, "grid-emergency", &bytes).unwrap();
    let act = Arc::new(Recorder::default());
    let engine = PolicyEngine::new(
        EngineConfig::default(),
        hub.clone(),
        clock,
        Arc::new(NoReadings),
        act.clone(),
    );
    engine
        .add_policy(
            PolicySpec::new("grid-emergency", FailSafe::Pause),
            Arc::new(PolicyPluginFactory::new(
                pre,
                GRID_CONFIG,
                PolicyLimits::default(),
            )),
        )
        .unwrap();
    let run = tokio::spawn(engine.clone().run(stop_rx));

    policy_support::publish(broker.port, "grid/dr", "0").await;
    act.wait(Mode::Run, Duration::from_secs(10)).await;

    let t = Instant::now();
    policy_support::publish(broker.port, "grid/dr", "1").await;
    let paused = act.wait(Mode::Pause, Duration::from_secs(5)).await;
    let pause_latency = paused.duration_since(t);
    println!(
        "mqtt → grid-emergency → actuator: paused {pause_latency:?} after publish ({})",
        engine.verdict()
    );
    assert!(pause_latency <= Duration::from_secs(1));
    assert_eq!(engine.verdict().by, "grid-emergency");

    let t = Instant::now();
    policy_support::publish(broker.port, "grid/dr", "0").await;
    let resumed = act.wait(Mode::Run, Duration::from_secs(10)).await;
    let release = resumed.duration_since(t);
    println!("released {release:?} after clear (release delay 1 s)");
    assert!(release >= Duration::from_millis(900), "delay honoured");
    assert!(
        release <= Duration::from_secs(2),
        "within 1 s + release delay"
    );

    let st = engine.status();
    assert_eq!(
        st.policies[0].failures, 0,
        "{:?}",
        st.policies[0].last_error
    );
    stop.send(true).unwrap();
    run.await.unwrap();
    mqtt.await.unwrap();
}

#[test]
fn engine_applies_fail_safe_when_a_real_plugin_breaks_its_limits() {
    let Some(bytes) = wasm("grid_emergency") else {
        return;
    };
    let clock = Arc::new(hashwatt::policy::clock::ManualClock::new(1_752_580_800_000));
    let hub = Arc::new(SignalHub::new(clock.clone()));
    hub.define(SignalSpec::new("demand_response", Duration::from_secs(300)))
        .unwrap();
    hub.set("demand_response", 0.0).unwrap();
    let rt = Runtime::new().unwrap();
    let pre = PolicyPluginPre::new(&rt, "grid-emergency", &bytes).unwrap();
    let act = Arc::new(Recorder::default());
    let engine = PolicyEngine::new(
        EngineConfig::default(),
        hub.clone(),
        clock.clone(),
        Arc::new(NoReadings),
        act.clone(),
    );
    // A state quota of 0: the first emergency's state is over quota.
    let limits = PolicyLimits {
        decision: DecisionLimits {
            max_reason_bytes: 512,
            state_quota: 0,
        },
        ..PolicyLimits::default()
    };
    let mut spec = PolicySpec::new("grid-emergency", FailSafe::Run);
    spec.limits.state_quota = 0;
    engine
        .add_policy(
            spec,
            Arc::new(PolicyPluginFactory::new(pre, GRID_CONFIG, limits)),
        )
        .unwrap();
    assert_eq!(engine.step().mode, Mode::Run);
    hub.set("demand_response", 1.0).unwrap();
    let v = engine.step();
    assert_eq!(v.mode, Mode::Run, "fail-safe run: {v}");
    assert!(v.reason.contains("fail-safe"), "{v}");
    let st = &engine.status().policies[0];
    assert_eq!(st.failures, 1);
    assert!(!st.running);
    assert!(
        st.last_error.as_deref().unwrap().contains("quota"),
        "{st:?}"
    );
    clock.advance_ms(1_000);
    engine.step();
    assert!(
        engine.status().policies[0].failures >= 2,
        "restarted, failed again"
    );
}
