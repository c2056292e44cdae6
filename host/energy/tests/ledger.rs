//! Local-time counters: day and month rollover, DST, splitting, pauses.

use hashwatt_energy::{
    JOULES_PER_KWH,
    ledger::{EnergyLedger, Interval, LedgerConfig, MAX_REASONS_PER_POLICY, OTHER},
};
use jiff::{Timestamp, civil::date, tz::TimeZone};

fn berlin() -> EnergyLedger {
    EnergyLedger::new(LedgerConfig::new("Europe/Berlin")).unwrap()
}

/// A local wall-clock time in Berlin.
fn local(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
    date(y, m, d)
        .at(h, min, 0, 0)
        .to_zoned(TimeZone::get("Europe/Berlin").unwrap())
        .unwrap()
        .timestamp()
}

/// One interval of `secs` at `watts`, ending at `end`.
fn iv(end: Timestamp, secs: f64, watts: f64) -> Interval {
    Interval {
        end,
        secs,
        joules: watts * secs,
        hashes: 1e6 * secs,
        mining: true,
        grid_g_per_kwh: None,
    }
}

/// Records `hours` of 1 kW in one-minute intervals starting at `start`.
fn run_kw(l: &mut EnergyLedger, start: Timestamp, minutes: i64) {
    for i in 1..=minutes {
        let end = start
            .checked_add(jiff::SignedDuration::from_mins(i))
            .unwrap();
        l.record(&iv(end, 60.0, 1000.0)).unwrap();
    }
}

#[test]
fn unknown_time_zone_is_an_error() {
    let err = EnergyLedger::new(LedgerConfig::new("Mars/Olympus")).unwrap_err();
    assert!(err.to_string().contains("Mars/Olympus"));
}

#[test]
fn day_rolls_over_at_local_midnight() {
    let mut l = berlin();
    // 23:30 to 00:30 local at 1 kW: half a kWh on each day.
    run_kw(&mut l, local(2026, 6, 10, 23, 30), 60);
    assert!((l.day(date(2026, 6, 10)).unwrap().kwh - 0.5).abs() < 1e-9);
    assert!((l.day(date(2026, 6, 11)).unwrap().kwh - 0.5).abs() < 1e-9);
    let c = l.counters(local(2026, 6, 11, 0, 30));
    assert_eq!(c.date, date(2026, 6, 11));
    assert!((c.today_kwh - 0.5).abs() < 1e-9);
    assert!((c.month_kwh - 1.0).abs() < 1e-9);
    assert!((c.total_kwh - 1.0).abs() < 1e-9);
    // Midnight is 22:00 UTC in summer: 22:15 UTC is already the 11th.
    let utc = "2026-06-10T22:15:00Z".parse::<Timestamp>().unwrap();
    assert_eq!(l.local_date(utc), date(2026, 6, 11));
}

#[test]
fn interval_straddling_midnight_is_split() {
    let mut l = berlin();
    // One 10-minute sample from 23:55 to 00:05.
    l.record(&iv(local(2026, 6, 11, 0, 5), 600.0, 600.0))
        .unwrap();
    let a = l.day(date(2026, 6, 10)).unwrap();
    let b = l.day(date(2026, 6, 11)).unwrap();
    assert!((a.kwh * JOULES_PER_KWH - 180_000.0).abs() < 1e-6);
    assert!((b.kwh * JOULES_PER_KWH - 180_000.0).abs() < 1e-6);
    assert!((a.metered_s - 300.0).abs() < 1e-9 && (b.mining_s - 300.0).abs() < 1e-9);
    assert!((a.hashes - 3e8).abs() < 1e-3);
}

#[test]
fn month_rolls_over_on_the_first() {
    let mut l = berlin();
    run_kw(&mut l, local(2026, 1, 31, 23, 0), 120);
    let c = l.counters(local(2026, 2, 1, 1, 0));
    assert!((c.today_kwh - 1.0).abs() < 1e-9);
    assert!(
        (c.month_kwh - 1.0).abs() < 1e-9,
        "January's kWh not in February"
    );
    assert!((c.total_kwh - 2.0).abs() < 1e-9);
    let jan = l.counters(local(2026, 1, 31, 12, 0));
    assert!((jan.month_kwh - 1.0).abs() < 1e-9);
    // Later in February everything of February counts; a new day is 0.
    let c = l.counters(local(2026, 2, 20, 12, 0));
    assert_eq!(c.today_kwh, 0.0);
    assert!((c.month_kwh - 1.0).abs() < 1e-9);
}

#[test]
fn dst_spring_forward_day_has_23_hours() {
    let mut l = berlin();
    // Run at 1 kW from local midnight 2026-03-29 for 24 real hours.
    run_kw(&mut l, local(2026, 3, 29, 0, 0), 24 * 60);
    let d = l.day(date(2026, 3, 29)).unwrap();
    assert!((d.kwh - 23.0).abs() < 1e-9, "{}", d.kwh);
    assert!((d.metered_s - 23.0 * 3600.0).abs() < 1e-6);
    // The last real hour falls on the 30th.
    assert!((l.day(date(2026, 3, 30)).unwrap().kwh - 1.0).abs() < 1e-9);
    let r = l.report(hashwatt_energy::Period::Day, local(2026, 3, 29, 12, 0));
    assert!((r.period_hours - 23.0).abs() < 1e-9);
}

#[test]
fn dst_fall_back_day_has_25_hours() {
    let mut l = berlin();
    run_kw(&mut l, local(2026, 10, 25, 0, 0), 26 * 60);
    assert!((l.day(date(2026, 10, 25)).unwrap().kwh - 25.0).abs() < 1e-9);
    assert!((l.day(date(2026, 10, 26)).unwrap().kwh - 1.0).abs() < 1e-9);
}

#[test]
fn other_time_zones_roll_over_at_their_midnight() {
    let mut l = EnergyLedger::new(LedgerConfig::new("America/New_York")).unwrap();
    // 04:30 UTC on 2026-01-02 is still 23:30 on the 1st in New York.
    let end = "2026-01-02T04:30:00Z".parse::<Timestamp>().unwrap();
    l.record(&iv(end, 60.0, 1000.0)).unwrap();
    assert!(l.day(date(2026, 1, 1)).is_some());
    assert!(l.day(date(2026, 1, 2)).is_none());
}

#[test]
fn pauses_by_policy_and_reason() {
    let mut l = berlin();
    let t = local(2026, 5, 1, 12, 0);
    l.record_pause(t, 30.0, "surplus-only", "export 0.2 kW < 1 kW")
        .unwrap();
    l.record_pause(t, 15.0, "surplus-only", "export 0.2 kW < 1 kW")
        .unwrap();
    l.record_pause(t, 60.0, "quota", "daily quota 5 kWh reached")
        .unwrap();
    let d = l.day(date(2026, 5, 1)).unwrap();
    assert_eq!(d.paused["surplus-only"]["export 0.2 kW < 1 kW"], 45.0);
    assert_eq!(d.paused["quota"]["daily quota 5 kWh reached"], 60.0);
    assert_eq!(d.paused_s(), 105.0);
    // A pause spanning midnight lands on both days.
    l.record_pause(local(2026, 5, 2, 0, 1), 120.0, "quota", "q")
        .unwrap();
    assert_eq!(l.day(date(2026, 5, 1)).unwrap().paused["quota"]["q"], 60.0);
    assert_eq!(l.day(date(2026, 5, 2)).unwrap().paused["quota"]["q"], 60.0);
}

#[test]
fn pause_reasons_are_bounded_and_sanitized() {
    let mut l = berlin();
    let t = local(2026, 5, 1, 12, 0);
    for i in 0..100 {
        l.record_pause(t, 1.0, "surplus", &format!("export {i} W"))
            .unwrap();
    }
    l.record_pause(t, 1.0, "evil", "line\n\x1b[31mred").unwrap();
    l.record_pause(t, 1.0, "long", &"é".repeat(10_000)).unwrap();
    let d = l.day(date(2026, 5, 1)).unwrap();
    assert_eq!(d.paused["surplus"].len(), MAX_REASONS_PER_POLICY + 1);
    assert_eq!(
        d.paused["surplus"][OTHER],
        (100 - MAX_REASONS_PER_POLICY) as f64
    );
    assert_eq!(d.paused_s(), 102.0);
    assert!(d.paused["evil"].contains_key("line  [31mred"));
    assert!(d.paused["long"].keys().all(|k| k.chars().count() == 160));
}

#[test]
fn co2_from_config_or_per_interval() {
    let mut cfg = LedgerConfig::new("Europe/Berlin");
    cfg.co2_g_per_kwh = Some(400.0);
    let mut l = EnergyLedger::new(cfg).unwrap();
    let t = local(2026, 5, 1, 12, 0);
    l.record(&iv(t, 3600.0, 1000.0)).unwrap(); // 1 kWh at 400 g
    let mut green = iv(local(2026, 5, 1, 14, 0), 3600.0, 500.0); // 0.5 kWh at 100 g
    green.grid_g_per_kwh = Some(100.0);
    l.record(&green).unwrap();
    let c = l.counters(t);
    assert!((c.today_co2_g - 450.0).abs() < 1e-9);
    assert!((c.month_co2_g - 450.0).abs() < 1e-9);
}

#[test]
fn invalid_inputs_are_refused_and_change_nothing() {
    let mut l = berlin();
    let t = local(2026, 5, 1, 12, 0);
    for bad in [
        Interval {
            joules: f64::NAN,
            ..iv(t, 1.0, 1.0)
        },
        Interval {
            joules: -1.0,
            ..iv(t, 1.0, 1.0)
        },
        Interval {
            secs: -1.0,
            ..iv(t, 1.0, 1.0)
        },
        Interval {
            secs: 1e12,
            ..iv(t, 1.0, 1.0)
        },
        Interval {
            hashes: f64::INFINITY,
            ..iv(t, 1.0, 1.0)
        },
        Interval {
            grid_g_per_kwh: Some(-5.0),
            ..iv(t, 1.0, 1.0)
        },
    ] {
        assert!(l.record(&bad).is_err(), "{bad:?}");
    }
    assert!(l.record_pause(t, f64::NAN, "p", "r").is_err());
    assert_eq!(l.days().count(), 0);
    assert_eq!(l.counters(t).total_kwh, 0.0);
}

#[test]
fn history_is_bounded() {
    let mut cfg = LedgerConfig::new("UTC");
    cfg.history_days = 10;
    let mut l = EnergyLedger::new(cfg).unwrap();
    let t0 = "2026-01-01T12:00:00Z".parse::<Timestamp>().unwrap();
    for day in 0..30 {
        let t = t0
            .checked_add(jiff::SignedDuration::from_hours(24 * day))
            .unwrap();
        l.record(&iv(t, 3600.0, 1000.0)).unwrap();
    }
    assert_eq!(l.days().count(), 10);
    assert_eq!(l.days().next().unwrap().0, date(2026, 1, 21));
    assert!(
        (l.counters(t0).total_kwh - 30.0).abs() < 1e-9,
        "total survives pruning"
    );
}

#[test]
fn interval_from_sample_converts_units() {
    let s = hashwatt_energy::Sample {
        watts: Some(80.0),
        joules: 160.0,
        interval: std::time::Duration::from_millis(2000),
        source: "model",
    };
    let end = local(2026, 5, 1, 12, 0);
    let i = Interval::from_sample(end, &s, 5e6, true, Some(200.0));
    assert_eq!(i.secs, 2.0);
    assert_eq!(i.joules, 160.0);
    assert_eq!(i.hashes, 1e7);
    let mut l = berlin();
    l.record(&i).unwrap();
    let d = l.day(date(2026, 5, 1)).unwrap();
    assert!((d.co2_g - 160.0 / JOULES_PER_KWH * 200.0).abs() < 1e-12);
}
