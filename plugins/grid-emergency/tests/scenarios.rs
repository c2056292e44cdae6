//! Scenario tests on simulated time for `grid-emergency`.

use hashwatt_policy_sdk::testing::{Harness, check};
use hashwatt_policy_sdk::{Inputs, Mode, Policy};
use policy_grid_emergency::GridEmergency;

const T0: i64 = 1_780_000_000_000;

fn policy(json: &str) -> GridEmergency {
    let mut p = GridEmergency::default();
    p.configure(json).unwrap();
    p
}

/// (seconds after T0, signal value or None = stale, mode, reason part)
type Row = (i64, Option<f64>, Mode, &'static str);

fn run(json: &str, rows: &[Row]) -> Vec<u32> {
    let mut h = Harness::new(policy(json), Mode::Run);
    let mut evals = Vec::new();
    for (i, (t, v, mode, part)) in rows.iter().enumerate() {
        let inputs = Inputs::at(T0 + t * 1000, 3600);
        let inputs = match v {
            Some(v) => inputs.with_signal("dr", *v),
            None => inputs.with_unknown("dr", "stale"),
        };
        let d = h.step(inputs);
        check(&format!("row {i} t={t}"), &d, *mode, part);
        evals.push(d.next_eval_ms);
    }
    evals
}

#[test]
fn emergency_pauses_at_once_and_releases_after_delay() {
    let evals = run(
        r#"{"signal":"dr","release_delay_s":600}"#,
        &[
            (
                0,
                Some(0.0),
                Mode::Run,
                "no demand-response emergency (dr = 0)",
            ),
            (10, Some(1.0), Mode::Pause, "emergency active (dr = 1)"),
            (400, Some(2.0), Mode::Pause, "emergency active (dr = 2)"),
            (
                500,
                Some(0.0),
                Mode::Pause,
                "cleared 0 s ago; releasing in 600 s",
            ),
            (
                800,
                Some(0.0),
                Mode::Pause,
                "cleared 300 s ago; releasing in 300 s",
            ),
            (1099, Some(0.0), Mode::Pause, "releasing in 1 s"),
            (1100, Some(0.0), Mode::Run, "released after 600 s delay"),
            (1200, Some(0.0), Mode::Run, "no demand-response emergency"),
        ],
    );
    // Polls quickly while releasing.
    assert!(evals[3] <= 1000 && evals[4] <= 1000, "{evals:?}");
}

#[test]
fn emergency_during_release_restarts_the_delay() {
    run(
        r#"{"signal":"dr","release_delay_s":60}"#,
        &[
            (0, Some(1.0), Mode::Pause, "active"),
            (10, Some(0.0), Mode::Pause, "releasing in 60 s"),
            (40, Some(1.0), Mode::Pause, "active"),
            (50, Some(0.0), Mode::Pause, "releasing in 60 s"),
            (100, Some(0.0), Mode::Pause, "releasing in 10 s"),
            (110, Some(0.0), Mode::Run, "released"),
        ],
    );
}

#[test]
fn unknown_signal_follows_on_unknown() {
    run(
        r#"{"signal":"dr"}"#,
        &[
            (
                0,
                None,
                Mode::Pause,
                "dr unknown (stale); on_unknown = pause",
            ),
            (1, Some(0.0), Mode::Run, "no demand-response"),
        ],
    );
    run(
        r#"{"signal":"dr","on_unknown":"run","release_delay_s":30}"#,
        &[
            (0, None, Mode::Run, "dr unknown (stale); on_unknown = run"),
            (1, Some(1.0), Mode::Pause, "active"),
            // Unknown keeps the release state; the delay counts from the first clear.
            (2, Some(0.0), Mode::Pause, "releasing in 30 s"),
            (3, None, Mode::Run, "on_unknown = run"),
            (20, Some(0.0), Mode::Pause, "releasing in 12 s"),
            (32, Some(0.0), Mode::Run, "released"),
        ],
    );
}

#[test]
fn nan_and_missing_signals_are_unknown() {
    let mut p = policy(r#"{"signal":"dr"}"#);
    let d = p.evaluate(&Inputs::at(T0, 0).with_signal("dr", f64::NAN));
    check("nan", &d, Mode::Pause, "dr unknown (NaN)");
    let d = p.evaluate(&Inputs::at(T0, 0));
    check("missing", &d, Mode::Pause, "dr unknown (missing)");
}

#[test]
fn release_survives_a_restart_via_state() {
    let mut h = Harness::new(policy(r#"{"signal":"dr","release_delay_s":60}"#), Mode::Run);
    h.step(Inputs::at(T0, 0).with_signal("dr", 1.0));
    h.step(Inputs::at(T0 + 1000, 0).with_signal("dr", 0.0));
    let mut fresh = policy(r#"{"signal":"dr","release_delay_s":60}"#);
    let mut inputs = Inputs::at(T0 + 31_000, 0).with_signal("dr", 0.0);
    inputs.state = h.state().to_vec();
    check(
        "restart",
        &fresh.evaluate(&inputs),
        Mode::Pause,
        "releasing in 30 s",
    );
}

#[test]
fn config_errors_are_clear() {
    let mut p = GridEmergency::default();
    let e = p.configure(r#"{"signal":"dr","delay":5}"#).unwrap_err();
    assert!(e.contains("unknown field `delay`"), "{e}");
    let e = p.configure(r#"{"release_delay_s":5}"#).unwrap_err();
    assert!(e.contains("missing field `signal`"), "{e}");
    let e = p
        .configure(r#"{"signal":"dr","on_unknown":"maybe"}"#)
        .unwrap_err();
    assert!(e.contains("unknown variant `maybe`"), "{e}");
    assert_eq!(p.subscriptions(), Vec::<String>::new());
    p.configure(r#"{"signal":"dr"}"#).unwrap();
    assert_eq!(p.subscriptions(), vec!["dr".to_string()]);
}
