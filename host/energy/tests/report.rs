//! Report figures on a constructed history.

use hashwatt_energy::{
    Period,
    ledger::{EnergyLedger, Interval, LedgerConfig},
};
use jiff::{Timestamp, civil::date, tz::TimeZone};

fn local(y: i16, m: i8, d: i8, h: i8) -> Timestamp {
    date(y, m, d)
        .at(h, 0, 0, 0)
        .to_zoned(TimeZone::get("Europe/Berlin").unwrap())
        .unwrap()
        .timestamp()
}

/// Two days in March 2026 and one in April:
/// * 03-10: 2 h at 100 W mining 5 MH/s, grid 300 g/kWh (default)
/// * 03-11: 1 h at 200 W mining 10 MH/s at 100 g/kWh, then 30 min paused
///   by two policies
/// * 04-01: 1 h at 100 W (must not appear in March)
fn history() -> EnergyLedger {
    let mut cfg = LedgerConfig::new("Europe/Berlin");
    cfg.co2_g_per_kwh = Some(300.0);
    let mut l = EnergyLedger::new(cfg).unwrap();
    let rec = |l: &mut EnergyLedger, end, secs: f64, w: f64, hs: f64, g| {
        l.record(&Interval {
            end,
            secs,
            joules: w * secs,
            hashes: hs * secs,
            mining: hs > 0.0,
            grid_g_per_kwh: g,
        })
        .unwrap();
    };
    rec(&mut l, local(2026, 3, 10, 11), 3600.0, 100.0, 5e6, None);
    rec(&mut l, local(2026, 3, 10, 12), 3600.0, 100.0, 5e6, None);
    rec(
        &mut l,
        local(2026, 3, 11, 9),
        3600.0,
        200.0,
        10e6,
        Some(100.0),
    );
    l.record_pause(
        local(2026, 3, 11, 10),
        1200.0,
        "surplus-only",
        "export 0.2 kW < 1.0 kW",
    )
    .unwrap();
    l.record_pause(
        local(2026, 3, 11, 10),
        600.0,
        "tou, peak",
        "\"peak\" =tariff",
    )
    .unwrap();
    rec(&mut l, local(2026, 4, 1, 9), 3600.0, 100.0, 5e6, None);
    l
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn day_report_figures() {
    let r = history().report(Period::Day, local(2026, 3, 10, 20));
    assert_eq!(r.label, "2026-03-10");
    assert_eq!(r.days.len(), 1);
    let t = &r.total;
    assert!(close(t.kwh, 0.2));
    assert!(close(t.avg_w().unwrap(), 100.0));
    // 100 W / 5 MH/s = 20 µJ/H = 20e6 J/TH.
    assert!(close(t.j_per_th().unwrap(), 20e6));
    assert!(close(t.hashes_per_kwh().unwrap(), 3.6e10 / 0.2));
    assert!(close(t.co2_g, 60.0));
    assert!(t.paused.is_empty());
    assert!(close(r.period_hours, 24.0));
}

#[test]
fn month_report_figures() {
    let r = history().report(Period::Month, local(2026, 3, 31, 23));
    assert_eq!(r.label, "2026-03");
    assert_eq!(r.days.len(), 2);
    // March 2026 in Berlin has 31 days minus the DST hour.
    assert!(close(r.period_hours, 743.0));
    let t = &r.total;
    assert!(close(t.kwh, 0.4));
    assert!(close(t.metered_s, 3.0 * 3600.0));
    assert!(close(t.avg_w().unwrap(), 0.4 * 3.6e6 / 10800.0));
    let hashes = 5e6 * 7200.0 + 10e6 * 3600.0;
    assert!(close(t.hashes, hashes));
    assert!(close(t.j_per_th().unwrap(), 0.4 * 3.6e6 / (hashes / 1e12)));
    assert!(close(t.hashes_per_kwh().unwrap(), hashes / 0.4));
    assert!(close(t.co2_g, 60.0 + 20.0));
    assert!(close(t.mining_s, 10800.0));
    assert!(close(t.paused_s(), 1800.0));
    assert_eq!(t.paused[0].policy, "surplus-only");
    assert!(close(t.paused[0].secs, 1200.0));
    let april = history().report(Period::Month, local(2026, 4, 15, 12));
    assert!(close(april.total.kwh, 0.1));
}

#[test]
fn empty_period_has_no_ratios() {
    let r = history().report(Period::Day, local(2026, 5, 5, 12));
    assert!(r.days.is_empty());
    assert_eq!(r.total.kwh, 0.0);
    assert_eq!(r.total.avg_w(), None);
    assert_eq!(r.total.j_per_th(), None);
    assert_eq!(r.total.hashes_per_kwh(), None);
    assert!(r.to_string().contains("total"));
}

#[test]
fn csv_rows_and_escaping() {
    let csv = history()
        .report(Period::Month, local(2026, 3, 15, 12))
        .to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "record,date,policy,reason,kwh,avg_w,mining_s,paused_s,hashes,j_per_th,hashes_per_kwh,co2_g"
    );
    assert_eq!(
        lines[1],
        "day,2026-03-10,,,0.200000,100.00,7200,0,36000000000,20000000.000,180000000000,60.000"
    );
    assert!(lines[2].starts_with("day,2026-03-11,,,0.200000,200.00,3600,1800,"));
    assert_eq!(
        lines[3],
        "pause,2026-03-11,surplus-only,export 0.2 kW < 1.0 kW,,,,1200,,,,"
    );
    assert_eq!(
        lines[4],
        "pause,2026-03-11,\"tou, peak\",\"\"\"peak\"\" =tariff\",,,,600,,,,"
    );
    assert!(lines[5].starts_with("total,2026-03,,,0.400000,"));
    assert_eq!(lines.len(), 8);
    for l in &lines[1..] {
        assert_eq!(split_csv(l).len(), 12, "{l}");
    }
}

#[test]
fn csv_defuses_formulas() {
    let mut l = EnergyLedger::new(LedgerConfig::new("UTC")).unwrap();
    let t: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
    l.record_pause(t, 1.0, "=HYPERLINK(\"x\")", "-1+1").unwrap();
    let csv = l.report(Period::Day, t).to_csv();
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\",'-1+1"), "{csv}");
}

#[test]
fn table_shows_figures_and_pauses() {
    let text = history()
        .report(Period::Month, local(2026, 3, 15, 12))
        .to_string();
    assert!(
        text.starts_with("Energy report, month 2026-03 (Europe/Berlin, 743 h)"),
        "{text}"
    );
    assert!(text.contains("2026-03-10"));
    assert!(text.contains("Paused by policy:"));
    assert!(
        text.contains("0:20:00  surplus-only: export 0.2 kW < 1.0 kW"),
        "{text}"
    );
    assert!(text.contains("20000000.0"), "{text}");
}

#[test]
fn period_parses() {
    assert_eq!("day".parse::<Period>().unwrap(), Period::Day);
    assert_eq!("month".parse::<Period>().unwrap(), Period::Month);
    assert!("week".parse::<Period>().is_err());
}

/// Minimal CSV splitter for the test (quotes, doubled quotes).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}
