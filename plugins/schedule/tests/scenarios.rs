//! Scenario tests on simulated time for `schedule`, including the
//! Europe/Berlin DST changes of 2026 (offsets as the host supplies them).

use hashwatt_policy_sdk::testing::{Harness, check};
use hashwatt_policy_sdk::{Date, Inputs, Mode, Policy};
use policy_schedule::Schedule;

/// UTC ms of a UTC date and time.
fn utc(year: i32, month: u8, day: u8, hour: i64, minute: i64) -> i64 {
    Date { year, month, day }.to_days() * 86_400_000 + hour * 3_600_000 + minute * 60_000
}

/// Europe/Berlin offset in 2026, as the host's tz database would give it:
/// CEST (+2 h) from 2026-03-29 01:00 UTC to 2026-10-25 01:00 UTC.
fn berlin_offset(utc_ms: i64) -> i32 {
    if (utc(2026, 3, 29, 1, 0)..utc(2026, 10, 25, 1, 0)).contains(&utc_ms) {
        7200
    } else {
        3600
    }
}

fn policy(json: &str) -> Schedule {
    let mut p = Schedule::default();
    p.configure(json).unwrap();
    p
}

fn berlin(utc_ms: i64) -> Inputs {
    let mut i = Inputs::at(utc_ms, berlin_offset(utc_ms));
    i.now.time_zone = "Europe/Berlin".into();
    i
}

/// (UTC ms, expected mode, reason part)
type Row = (i64, Mode, &'static str);

fn run(json: &str, rows: &[Row]) {
    let mut h = Harness::new(policy(json), Mode::Run);
    for (i, (t, mode, part)) in rows.iter().enumerate() {
        check(&format!("row {i}"), &h.step(berlin(*t)), *mode, part);
    }
}

const SUN_0230: &str =
    r#"{"windows":[{"days":"sun","start":"02:00","end":"03:00","mode":"pause"}]}"#;

#[test]
fn spring_forward_skips_the_0200_hour() {
    run(
        SUN_0230,
        &[
            (
                utc(2026, 3, 29, 0, 30),
                Mode::Run,
                "local Sun 2026-03-29 01:30 Europe/Berlin",
            ),
            (utc(2026, 3, 29, 0, 59), Mode::Run, "01:59"),
            // 01:00 UTC is 03:00 CEST: local 02:xx never happens.
            (
                utc(2026, 3, 29, 1, 0),
                Mode::Run,
                "local Sun 2026-03-29 03:00",
            ),
            (
                utc(2026, 3, 29, 1, 30),
                Mode::Run,
                "outside all windows: run (local Sun 2026-03-29 03:30",
            ),
        ],
    );
    // A week earlier (CET all night) the window applies for one hour.
    run(
        SUN_0230,
        &[
            (
                utc(2026, 3, 22, 1, 30),
                Mode::Pause,
                "window Sun 02:00-03:00: pause (local Sun 2026-03-22 02:30",
            ),
            (utc(2026, 3, 22, 2, 0), Mode::Run, "03:00"),
        ],
    );
}

#[test]
fn fall_back_repeats_the_0200_hour() {
    run(
        SUN_0230,
        &[
            (
                utc(2026, 10, 24, 23, 59),
                Mode::Run,
                "local Sun 2026-10-25 01:59",
            ),
            (
                utc(2026, 10, 25, 0, 0),
                Mode::Pause,
                "local Sun 2026-10-25 02:00",
            ),
            (utc(2026, 10, 25, 0, 30), Mode::Pause, "02:30"),
            // 01:00 UTC: clocks go back to 02:00 CET, still in the window.
            (utc(2026, 10, 25, 1, 0), Mode::Pause, "02:00"),
            (utc(2026, 10, 25, 1, 30), Mode::Pause, "02:30"),
            (
                utc(2026, 10, 25, 2, 0),
                Mode::Run,
                "local Sun 2026-10-25 03:00",
            ),
        ],
    );
}

#[test]
fn daytime_window_follows_the_wall_clock_after_dst() {
    let json = r#"{"default":"pause","windows":[{"name":"day","days":"all","start":"06:00","end":"22:00","mode":{"limit_w":500}}]}"#;
    run(
        json,
        &[
            // Saturday before the change: 06:00 CET = 05:00 UTC.
            (
                utc(2026, 3, 28, 4, 59),
                Mode::Pause,
                "outside all windows: pause (local Sat 2026-03-28 05:59",
            ),
            (
                utc(2026, 3, 28, 5, 0),
                Mode::Limit(500.0),
                "window \"day\" (daily 06:00-22:00): limit 500 W",
            ),
            // Monday after: 06:00 CEST = 04:00 UTC.
            (utc(2026, 3, 30, 3, 59), Mode::Pause, "05:59"),
            (
                utc(2026, 3, 30, 4, 0),
                Mode::Limit(500.0),
                "local Mon 2026-03-30 06:00",
            ),
            (utc(2026, 3, 30, 19, 59), Mode::Limit(500.0), "21:59"),
            (utc(2026, 3, 30, 20, 0), Mode::Pause, "22:00"),
        ],
    );
}

#[test]
fn windows_crossing_midnight_belong_to_their_start_day() {
    // 2026-03-27 is a Friday.
    let json = r#"{"windows":[
        {"days":["fri"],"start":"22:00","end":"06:00","mode":"pause"},
        {"days":"sun","start":"23:00","end":"01:00","mode":{"limit_w":300}}]}"#;
    run(
        json,
        &[
            (
                utc(2026, 3, 27, 20, 59),
                Mode::Run,
                "local Fri 2026-03-27 21:59",
            ),
            (
                utc(2026, 3, 27, 21, 0),
                Mode::Pause,
                "window Fri 22:00-06:00: pause (local Fri",
            ),
            (
                utc(2026, 3, 28, 4, 59),
                Mode::Pause,
                "local Sat 2026-03-28 05:59",
            ),
            (
                utc(2026, 3, 28, 5, 0),
                Mode::Run,
                "local Sat 2026-03-28 06:00",
            ),
            (
                utc(2026, 3, 28, 21, 30),
                Mode::Run,
                "local Sat 2026-03-28 22:30",
            ),
            // The week wraps: Sunday 23:00 into Monday 01:00 (CEST now).
            (
                utc(2026, 3, 29, 21, 0),
                Mode::Limit(300.0),
                "local Sun 2026-03-29 23:00",
            ),
            (
                utc(2026, 3, 29, 22, 59),
                Mode::Limit(300.0),
                "local Mon 2026-03-30 00:59",
            ),
            (
                utc(2026, 3, 29, 23, 0),
                Mode::Run,
                "local Mon 2026-03-30 01:00",
            ),
        ],
    );
}

#[test]
fn first_match_wins_and_full_day_windows() {
    let json = r#"{"default":"pause","windows":[
        {"name":"lunch","days":"weekdays","start":"12:00","end":"13:00","mode":{"limit_w":100}},
        {"name":"weekdays","days":"weekdays","start":"00:00","end":"24:00","mode":"run"},
        {"name":"sat","days":"sat","start":"08:00","end":"08:00","mode":{"limit_w":700}}]}"#;
    run(
        json,
        &[
            (
                utc(2026, 3, 27, 11, 30),
                Mode::Limit(100.0),
                "window \"lunch\"",
            ),
            (
                utc(2026, 3, 27, 13, 0),
                Mode::Run,
                "window \"weekdays\" (Mon-Fri 00:00-24:00)",
            ),
            (
                utc(2026, 3, 27, 22, 59),
                Mode::Run,
                "local Fri 2026-03-27 23:59",
            ),
            (
                utc(2026, 3, 27, 23, 0),
                Mode::Pause,
                "outside all windows: pause (local Sat 2026-03-28 00:00",
            ),
            (utc(2026, 3, 28, 7, 0), Mode::Limit(700.0), "window \"sat\""),
            (
                utc(2026, 3, 29, 5, 59),
                Mode::Limit(700.0),
                "local Sun 2026-03-29 07:59",
            ),
            (
                utc(2026, 3, 29, 6, 0),
                Mode::Pause,
                "local Sun 2026-03-29 08:00",
            ),
        ],
    );
}

#[test]
fn next_evaluation_at_the_next_minute() {
    let mut p = policy(SUN_0230);
    let d = p.evaluate(&berlin(utc(2026, 3, 22, 1, 30) + 45_500));
    assert_eq!(d.next_eval_ms, 14_500);
}

#[test]
fn config_errors_are_clear() {
    let mut p = Schedule::default();
    for (json, part) in [
        (
            r#"{"windows":[{"days":"funday","start":"01:00","end":"02:00","mode":"run"}]}"#,
            "unknown day \"funday\"",
        ),
        (
            r#"{"windows":[{"days":[],"start":"01:00","end":"02:00","mode":"run"}]}"#,
            "non-empty list",
        ),
        (
            r#"{"windows":[{"days":"all","start":"25:00","end":"02:00","mode":"run"}]}"#,
            "\"HH:MM\" between 00:00 and 24:00",
        ),
        (
            r#"{"windows":[{"days":"all","start":"1:5","end":"02:00","mode":"run"}]}"#,
            "got \"1:5\"",
        ),
        (
            r#"{"windows":[{"days":"all","start":"24:00","end":"02:00","mode":"run"}]}"#,
            "cannot start at 24:00",
        ),
        (
            r#"{"windows":[{"days":"all","start":"01:00","end":"02:00","mode":"slow"}]}"#,
            "mode must be \"run\", \"pause\" or",
        ),
        (
            r#"{"windows":[{"days":"all","start":"01:00","end":"02:00","mode":{"limit_w":-5}}]}"#,
            "limit_w",
        ),
        (
            r#"{"windows":[{"days":"all","start":"01:00","end":"02:00"}]}"#,
            "missing field `mode`",
        ),
        (
            r#"{"windows":[{"days":"all","start":"01:00","end":"02:00","mode":"run","prio":1}]}"#,
            "unknown field `prio`",
        ),
        (r#"{"defaults":"run"}"#, "unknown field `defaults`"),
    ] {
        let e = p.configure(json).unwrap_err();
        assert!(e.contains(part), "{json}: {e}");
    }
    assert!(p.subscriptions().is_empty());
}
