//! Scenario tests on simulated time for `heater`.

use hashwatt_policy_sdk::testing::{Harness, check};
use hashwatt_policy_sdk::{Inputs, Mode, Policy};
use policy_heater::Heater;

const T0: i64 = 1_780_000_000_000;

fn policy(json: &str) -> Heater {
    let mut p = Heater::default();
    p.configure(json).unwrap();
    p
}

/// (minute after T0, room °C or None = sensor absent, mode, reason part)
type Row = (i64, Option<f64>, Mode, &'static str);

fn run(json: &str, initial: Mode, rows: &[Row]) {
    let mut h = Harness::new(policy(json), initial);
    for (i, (min, v, mode, part)) in rows.iter().enumerate() {
        let mut inputs = Inputs::at(T0 + min * 60_000, 0).with_temperature("chip0", 70.0);
        if let Some(v) = v {
            inputs = inputs.with_temperature("room", *v);
        }
        check(&format!("row {i} min={min}"), &h.step(inputs), *mode, part);
    }
}

const ROOM: &str = r#"{"sensor":"room","target_c":21.0,"hysteresis_c":0.5}"#;

#[test]
fn thermostat_with_dead_band() {
    run(
        ROOM,
        Mode::Pause,
        &[
            (0, Some(19.0), Mode::Run, "room 19.0 °C < 20.5 °C: heating"),
            (
                10,
                Some(20.8),
                Mode::Run,
                "room 20.8 °C within 20.5..21.5 °C: keep heating",
            ),
            (20, Some(21.5), Mode::Run, "keep heating"),
            (
                30,
                Some(21.6),
                Mode::Pause,
                "room 21.6 °C > 21.5 °C: warm enough",
            ),
            (
                40,
                Some(21.0),
                Mode::Pause,
                "room 21.0 °C within 20.5..21.5 °C: stay off",
            ),
            (50, Some(20.5), Mode::Pause, "stay off"),
            (60, Some(20.49), Mode::Run, "room 20.49 °C < 20.5 °C"),
        ],
    );
}

#[test]
fn first_run_in_band_keeps_applied_mode() {
    run(
        ROOM,
        Mode::Run,
        &[(0, Some(21.0), Mode::Run, "keep heating")],
    );
    run(
        ROOM,
        Mode::Pause,
        &[(0, Some(21.0), Mode::Pause, "stay off")],
    );
}

#[test]
fn signal_source_and_subscription() {
    let mut p = policy(r#"{"signal":"room_temp","target_c":20,"hysteresis_c":1}"#);
    assert_eq!(p.subscriptions(), vec!["room_temp".to_string()]);
    let d = p.evaluate(&Inputs::at(T0, 0).with_signal("room_temp", 18.9));
    check("cold", &d, Mode::Run, "room_temp 18.9 °C < 19.0 °C");
    let d = p.evaluate(&Inputs::at(T0, 0).with_unknown("room_temp", "stale"));
    check(
        "stale",
        &d,
        Mode::Pause,
        "room_temp unknown (stale); on_unknown = pause",
    );
    assert!(policy(ROOM).subscriptions().is_empty());
}

#[test]
fn unknown_temperature_with_both_settings() {
    run(
        ROOM,
        Mode::Run,
        &[
            (
                0,
                None,
                Mode::Pause,
                "room unknown (missing); on_unknown = pause",
            ),
            (1, Some(f64::NAN), Mode::Pause, "room unknown (NaN)"),
            (
                2,
                Some(85.0),
                Mode::Pause,
                "room unknown (85.0 °C out of range -40.0..60.0 °C)",
            ),
            (3, Some(20.0), Mode::Run, "heating"),
        ],
    );
    run(
        r#"{"sensor":"room","target_c":21.0,"on_unknown":"run"}"#,
        Mode::Pause,
        &[(
            0,
            None,
            Mode::Run,
            "room unknown (missing); on_unknown = run",
        )],
    );
}

#[test]
fn config_errors_are_clear() {
    let mut p = Heater::default();
    for (json, part) in [
        (r#"{"target_c":21}"#, "set exactly one of sensor or signal"),
        (
            r#"{"sensor":"a","signal":"b","target_c":21}"#,
            "set exactly one of sensor or signal",
        ),
        (r#"{"sensor":"room"}"#, "missing field `target_c`"),
        (
            r#"{"sensor":"room","target_c":21,"target":1}"#,
            "unknown field `target`",
        ),
        (
            r#"{"sensor":"room","target_c":21,"hysteresis_c":-1}"#,
            "hysteresis_c must not be negative",
        ),
        (
            r#"{"sensor":"room","target_c":21,"valid_min_c":50,"valid_max_c":10}"#,
            "valid_min_c must be below",
        ),
    ] {
        let e = p.configure(json).unwrap_err();
        assert!(e.contains(part), "{json}: {e}");
    }
}
