//! Scenario tests on simulated time for `price`.

use hashwatt_policy_sdk::testing::{Harness, check};
use hashwatt_policy_sdk::{Inputs, Mode, Policy};
use policy_price::Price;

const T0: i64 = 1_780_000_000_000;

fn policy(json: &str) -> Price {
    let mut p = Price::default();
    p.configure(json).unwrap();
    p
}

/// (hour after T0, price or None = stale, expected mode, reason part)
type Row = (i64, Option<f64>, Mode, &'static str);

fn run(json: &str, rows: &[Row]) {
    let mut h = Harness::new(policy(json), Mode::Run);
    for (i, (hour, v, mode, part)) in rows.iter().enumerate() {
        let inputs = Inputs::at(T0 + hour * 3_600_000, 3600);
        let inputs = match v {
            Some(v) => inputs.with_signal("price", *v),
            None => inputs.with_unknown("price", "stale"),
        };
        check(&format!("row {i} h={hour}"), &h.step(inputs), *mode, part);
    }
}

#[test]
fn pause_above_max_price() {
    run(
        r#"{"signal":"price","unit":"ct/kWh","max_price":25}"#,
        &[
            (
                0,
                Some(18.5),
                Mode::Run,
                "price 18.5 ct/kWh ≤ max 25.0 ct/kWh",
            ),
            (1, Some(25.0), Mode::Run, "≤ max"),
            (
                2,
                Some(25.01),
                Mode::Pause,
                "price 25.01 ct/kWh > max 25.0 ct/kWh",
            ),
            (3, Some(-2.0), Mode::Run, "price -2.0 ct/kWh"),
        ],
    );
}

const LIMIT: &str = r#"{"signal":"price","max_price":150,"mode":"limit","price_full":50,
    "full_power_w":3000,"min_power_w":1000}"#;

#[test]
fn limit_scales_linearly() {
    run(
        LIMIT,
        &[
            (
                0,
                Some(20.0),
                Mode::Run,
                "price 20.0 EUR/MWh ≤ 50.0 EUR/MWh: full power",
            ),
            (1, Some(50.0), Mode::Run, "full power"),
            (
                2,
                Some(75.0),
                Mode::Limit(2500.0),
                "between 50.0 and 150.0 EUR/MWh: limit 2500 W",
            ),
            (3, Some(100.0), Mode::Limit(2000.0), "limit 2000 W"),
            (4, Some(149.0), Mode::Limit(1020.0), "limit 1020 W"),
            (5, Some(150.0), Mode::Limit(1000.0), "limit 1000 W"),
            (
                6,
                Some(150.5),
                Mode::Pause,
                "price 150.5 EUR/MWh > max 150.0 EUR/MWh",
            ),
        ],
    );
}

#[test]
fn unknown_price_with_both_settings() {
    run(
        LIMIT,
        &[
            (
                0,
                None,
                Mode::Pause,
                "price unknown (stale); on_unknown = pause",
            ),
            (1, Some(f64::NAN), Mode::Pause, "price unknown (NaN)"),
        ],
    );
    run(
        r#"{"signal":"price","max_price":100,"on_unknown":"run"}"#,
        &[(
            0,
            None,
            Mode::Run,
            "price unknown (stale); on_unknown = run",
        )],
    );
    let mut p = policy(LIMIT);
    check(
        "missing",
        &p.evaluate(&Inputs::at(T0, 0)),
        Mode::Pause,
        "price unknown (missing)",
    );
    let out_of_range = Inputs::at(T0, 0).with_unknown("price", "out of range");
    check(
        "range",
        &p.evaluate(&out_of_range),
        Mode::Pause,
        "price unknown (out of range)",
    );
}

#[test]
fn config_errors_are_clear() {
    let mut p = Price::default();
    for (json, part) in [
        (r#"{"signal":"price"}"#, "missing field `max_price`"),
        (
            r#"{"signal":"price","max_price":1,"max":2}"#,
            "unknown field `max`",
        ),
        (
            r#"{"signal":"price","max_price":100,"mode":"limit"}"#,
            "needs price_full",
        ),
        (
            r#"{"signal":"price","max_price":100,"mode":"limit","price_full":100,"full_power_w":1,"min_power_w":0}"#,
            "price_full (100) must be below max_price (100)",
        ),
        (
            r#"{"signal":"price","max_price":100,"mode":"limit","price_full":10,"full_power_w":1,"min_power_w":5}"#,
            "min_power_w (5) must not exceed full_power_w (1)",
        ),
        (
            r#"{"signal":"price","max_price":100,"price_full":10}"#,
            "need mode = \"limit\"",
        ),
        (
            r#"{"signal":"price","max_price":100,"mode":"cheap"}"#,
            "unknown variant `cheap`",
        ),
    ] {
        let e = p.configure(json).unwrap_err();
        assert!(e.contains(part), "{json}: {e}");
    }
    p.configure(LIMIT).unwrap();
    assert_eq!(p.subscriptions(), vec!["price".to_string()]);
}
