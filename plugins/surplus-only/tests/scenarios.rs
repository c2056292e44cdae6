//! Scenario tests on simulated time for `surplus-only`.

use hashwatt_policy_sdk::testing::{Harness, check};
use hashwatt_policy_sdk::{Inputs, Mode, Policy};
use policy_surplus_only::SurplusOnly;

const T0: i64 = 1_780_000_000_000;

fn policy(json: &str) -> SurplusOnly {
    let mut p = SurplusOnly::default();
    p.configure(json).unwrap();
    p
}

/// (seconds after T0, export kW or None = stale, expected mode, reason part)
type Row = (i64, Option<f64>, Mode, &'static str);

fn run(json: &str, initial: Mode, rows: &[Row]) {
    let mut h = Harness::new(policy(json), initial);
    for (i, (t, v, mode, part)) in rows.iter().enumerate() {
        let inputs = Inputs::at(T0 + t * 1000, 7200);
        let inputs = match v {
            Some(v) => inputs.with_signal("export", *v),
            None => inputs.with_unknown("export", "stale"),
        };
        check(&format!("row {i} t={t}"), &h.step(inputs), *mode, part);
    }
}

const HYST: &str = r#"{"signal":"export","threshold_kw":1.0,"hysteresis_kw":0.2}"#;

#[test]
fn hysteresis_band() {
    run(
        HYST,
        Mode::Pause,
        &[
            (0, Some(0.4), Mode::Pause, "grid export 0.4 kW < 1.0 kW"),
            (1, Some(0.9), Mode::Pause, "0.9 kW < 1.0 kW"),
            (2, Some(1.0), Mode::Run, "grid export 1.0 kW ≥ 1.0 kW"),
            (3, Some(0.85), Mode::Run, "0.85 kW ≥ 0.8 kW stop level"),
            (4, Some(0.8), Mode::Run, "≥ 0.8 kW"),
            (5, Some(0.79), Mode::Pause, "0.79 kW < 0.8 kW stop level"),
            (6, Some(0.95), Mode::Pause, "< 1.0 kW"),
            (7, Some(1.3), Mode::Run, "1.3 kW ≥ 1.0 kW"),
        ],
    );
}

#[test]
fn minimum_on_and_off_times() {
    run(
        r#"{"signal":"export","threshold_kw":1.0,"min_on_s":300,"min_off_s":120}"#,
        Mode::Pause,
        &[
            (0, Some(2.0), Mode::Run, "2.0 kW ≥ 1.0 kW"),
            (
                10,
                Some(0.2),
                Mode::Run,
                "but min_on 300 s: stopping in 290 s",
            ),
            (299, Some(0.2), Mode::Run, "stopping in 1 s"),
            (300, Some(0.2), Mode::Pause, "0.2 kW < 1.0 kW stop level"),
            (
                360,
                Some(3.0),
                Mode::Pause,
                "but min_off 120 s: starting in 60 s",
            ),
            (419, Some(3.0), Mode::Pause, "starting in 1 s"),
            (420, Some(3.0), Mode::Run, "3.0 kW ≥ 1.0 kW"),
            // Surplus recovered within min_on: no stop pending any more.
            (430, Some(0.5), Mode::Run, "stopping in 290 s"),
            (440, Some(1.5), Mode::Run, "stop level"),
        ],
    );
}

#[test]
fn first_run_uses_applied_for_min_times() {
    // The box has been running for 10 s when the policy first evaluates.
    let mut p = policy(r#"{"signal":"export","threshold_kw":1.0,"min_on_s":60}"#);
    let d = p.evaluate(
        &Inputs::at(T0, 0)
            .with_signal("export", 0.1)
            .with_applied(Mode::Run, 10_000),
    );
    check("first", &d, Mode::Run, "stopping in 50 s");
    assert!(d.next_eval_ms <= 50_000);
    assert!(d.state.is_some());
}

#[test]
fn signal_in_watts_and_custom_label() {
    run(
        r#"{"signal":"export","signal_unit":"W","label":"PV surplus","threshold_kw":1.5}"#,
        Mode::Pause,
        &[
            (0, Some(400.0), Mode::Pause, "PV surplus 0.4 kW < 1.5 kW"),
            (1, Some(1600.0), Mode::Run, "PV surplus 1.6 kW ≥ 1.5 kW"),
        ],
    );
}

#[test]
fn unknown_signal_with_both_settings() {
    run(
        HYST,
        Mode::Run,
        &[
            (0, Some(2.0), Mode::Run, "≥"),
            (
                1,
                None,
                Mode::Pause,
                "export unknown (stale); on_unknown = pause",
            ),
            (2, Some(0.9), Mode::Pause, "0.9 kW < 1.0 kW"),
        ],
    );
    run(
        r#"{"signal":"export","threshold_kw":1.0,"on_unknown":"run"}"#,
        Mode::Pause,
        &[
            (0, Some(0.1), Mode::Pause, "<"),
            (
                1,
                None,
                Mode::Run,
                "export unknown (stale); on_unknown = run",
            ),
        ],
    );
    let mut p = policy(HYST);
    check(
        "nan",
        &p.evaluate(&Inputs::at(T0, 0).with_signal("export", f64::NAN)),
        Mode::Pause,
        "export unknown (NaN)",
    );
    check(
        "missing",
        &p.evaluate(&Inputs::at(T0, 0)),
        Mode::Pause,
        "export unknown (missing)",
    );
}

#[test]
fn config_errors_are_clear() {
    let mut p = SurplusOnly::default();
    for (json, part) in [
        (r#"{"signal":"x"}"#, "missing field `threshold_kw`"),
        (
            r#"{"signal":"x","threshold_kw":1,"hysteresis":1}"#,
            "unknown field `hysteresis`",
        ),
        (
            r#"{"signal":"x","threshold_kw":1,"hysteresis_kw":-1}"#,
            "hysteresis_kw must not be negative",
        ),
        (
            r#"{"signal":"x","threshold_kw":1,"signal_unit":"MW"}"#,
            "unknown variant `MW`",
        ),
        (
            r#"{"signal":"","threshold_kw":1}"#,
            "signal must name a signal",
        ),
    ] {
        let e = p.configure(json).unwrap_err();
        assert!(e.contains(part), "{json}: {e}");
    }
}
