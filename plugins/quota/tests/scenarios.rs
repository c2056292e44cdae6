//! Scenario tests on simulated time for `quota` (Europe/Berlin winter time,
//! offset +3600 as the host supplies it).

use hashwatt_policy_sdk::testing::{Harness, check};
use hashwatt_policy_sdk::{Date, Inputs, Mode, Policy};
use policy_quota::Quota;

const CET: i32 = 3600;

/// UTC ms of a *local* (CET) date and time.
fn local(year: i32, month: u8, day: u8, hour: i64, minute: i64) -> i64 {
    Date { year, month, day }.to_days() * 86_400_000 + hour * 3_600_000 + minute * 60_000
        - i64::from(CET) * 1000
}

fn policy(json: &str) -> Quota {
    let mut p = Quota::default();
    p.configure(json).unwrap();
    p
}

/// (UTC ms, today kWh, month kWh, expected mode, reason part)
type Row = (i64, f64, f64, Mode, &'static str);

fn run(json: &str, rows: &[Row]) {
    let mut h = Harness::new(policy(json), Mode::Run);
    for (i, (t, today, month, mode, part)) in rows.iter().enumerate() {
        let inputs = Inputs::at(*t, CET).with_energy(*today, *month);
        check(&format!("row {i}"), &h.step(inputs), *mode, part);
    }
}

#[test]
fn daily_cap_and_rollover_at_local_midnight() {
    run(
        r#"{"daily_kwh":10}"#,
        &[
            (
                local(2026, 1, 14, 20, 0),
                9.5,
                100.0,
                Mode::Run,
                "today 9.5 of 10.0 kWh daily quota",
            ),
            (
                local(2026, 1, 14, 22, 0),
                10.0,
                100.5,
                Mode::Pause,
                "today 10.0 kWh ≥ daily quota 10.0 kWh",
            ),
            (
                local(2026, 1, 14, 23, 59),
                10.0,
                100.5,
                Mode::Pause,
                "≥ daily quota",
            ),
            // 00:00 local is 23:00 UTC the day before.
            (
                local(2026, 1, 15, 0, 0),
                0.0,
                100.5,
                Mode::Run,
                "new day: daily quota reset; today 0.0 of 10.0 kWh",
            ),
            (
                local(2026, 1, 15, 0, 1),
                0.02,
                100.52,
                Mode::Run,
                "today 0.02 of 10.0",
            ),
        ],
    );
}

#[test]
fn monthly_cap_and_rollover_on_the_first() {
    run(
        r#"{"daily_kwh":20,"monthly_kwh":300}"#,
        &[
            (
                local(2026, 1, 31, 12, 0),
                5.0,
                299.0,
                Mode::Run,
                "today 5.0 of 20.0 kWh daily quota; month 299.0 of 300.0 kWh monthly quota",
            ),
            (
                local(2026, 1, 31, 16, 0),
                6.0,
                300.0,
                Mode::Pause,
                "month 300.0 kWh ≥ monthly quota 300.0 kWh",
            ),
            (
                local(2026, 1, 31, 23, 59),
                6.0,
                300.0,
                Mode::Pause,
                "monthly quota",
            ),
            (
                local(2026, 2, 1, 0, 0),
                0.0,
                0.0,
                Mode::Run,
                "new month: quota reset; today 0.0",
            ),
            (
                local(2026, 2, 1, 0, 1),
                0.0,
                0.0,
                Mode::Run,
                "today 0.0 of 20.0",
            ),
            (
                local(2026, 2, 1, 22, 0),
                20.5,
                20.5,
                Mode::Pause,
                "today 20.5 kWh ≥ daily quota 20.0 kWh",
            ),
        ],
    );
}

#[test]
fn daily_pace_with_hysteresis() {
    run(
        r#"{"daily_kwh":24,"pace":true}"#,
        &[
            (
                local(2026, 1, 14, 0, 0),
                0.0,
                50.0,
                Mode::Run,
                "today 0.0 kWh within pace 0.0 kWh",
            ),
            (
                local(2026, 1, 14, 6, 0),
                5.0,
                55.0,
                Mode::Run,
                "today 5.0 kWh within pace 6.0 kWh (daily quota 24.0 kWh × 25 % of day)",
            ),
            (
                local(2026, 1, 14, 6, 10),
                6.5,
                56.5,
                Mode::Pause,
                "today 6.5 kWh ahead of pace 6.17 kWh",
            ),
            // Allowance 6.5, but resuming needs 0.1 kWh behind pace.
            (
                local(2026, 1, 14, 6, 30),
                6.5,
                56.5,
                Mode::Pause,
                "ahead of pace 6.5 kWh",
            ),
            (
                local(2026, 1, 14, 6, 35),
                6.5,
                56.5,
                Mode::Pause,
                "ahead of pace 6.58 kWh",
            ),
            (
                local(2026, 1, 14, 6, 36),
                6.5,
                56.5,
                Mode::Run,
                "within pace 6.6 kWh",
            ),
            // Running again: no hysteresis on the way to pausing.
            (
                local(2026, 1, 14, 6, 37),
                6.7,
                56.7,
                Mode::Pause,
                "today 6.7 kWh ahead of pace 6.62 kWh",
            ),
            // The hard cap still applies with pace.
            (
                local(2026, 1, 14, 23, 0),
                24.0,
                74.0,
                Mode::Pause,
                "today 24.0 kWh ≥ daily quota 24.0 kWh",
            ),
            (
                local(2026, 1, 15, 0, 0),
                0.0,
                74.0,
                Mode::Run,
                "new day: daily quota reset; today 0.0 kWh within pace",
            ),
        ],
    );
}

#[test]
fn monthly_pace_over_february() {
    // 2026-02 has 28 days: on the 15th at 00:00, 50 % of the month is gone.
    run(
        r#"{"monthly_kwh":280,"pace":true,"pace_hysteresis_kwh":0}"#,
        &[
            (
                local(2026, 2, 15, 0, 0),
                0.0,
                139.0,
                Mode::Run,
                "month 139.0 kWh within pace 140.0 kWh (monthly quota 280.0 kWh × 50 % of month)",
            ),
            (
                local(2026, 2, 15, 0, 0),
                0.0,
                141.0,
                Mode::Pause,
                "month 141.0 kWh ahead of pace 140.0 kWh",
            ),
            (
                local(2026, 2, 28, 12, 0),
                0.0,
                270.0,
                Mode::Run,
                "within pace 275.0 kWh",
            ),
            (
                local(2026, 3, 1, 0, 0),
                0.0,
                0.0,
                Mode::Run,
                "new month: quota reset; month 0.0 kWh within pace 0.0",
            ),
        ],
    );
}

#[test]
fn unusable_counters_follow_on_unknown() {
    run(
        r#"{"daily_kwh":10}"#,
        &[
            (
                local(2026, 1, 14, 1, 0),
                f64::NAN,
                1.0,
                Mode::Pause,
                "energy counter today-kwh unknown (NaN); on_unknown = pause",
            ),
            (
                local(2026, 1, 14, 2, 0),
                -1.0,
                1.0,
                Mode::Pause,
                "today-kwh unknown (negative)",
            ),
            (
                local(2026, 1, 14, 3, 0),
                1.0,
                f64::NAN,
                Mode::Run,
                "today 1.0 of 10.0",
            ),
        ],
    );
    run(
        r#"{"monthly_kwh":10,"on_unknown":"run"}"#,
        &[(
            local(2026, 1, 14, 1, 0),
            0.0,
            f64::INFINITY,
            Mode::Run,
            "month-kwh unknown (NaN); on_unknown = run",
        )],
    );
}

#[test]
fn config_errors_are_clear() {
    let mut p = Quota::default();
    for (json, part) in [
        (r#"{}"#, "set daily_kwh and/or monthly_kwh"),
        (r#"{"pace":true}"#, "set daily_kwh and/or monthly_kwh"),
        (r#"{"daily_kwh":-3}"#, "daily_kwh must not be negative"),
        (r#"{"daily":3}"#, "unknown field `daily`"),
        (r#"{"daily_kwh":"3"}"#, "invalid type"),
    ] {
        let e = p.configure(json).unwrap_err();
        assert!(e.contains(part), "{json}: {e}");
    }
    assert!(policy(r#"{"daily_kwh":1}"#).subscriptions().is_empty());
}
