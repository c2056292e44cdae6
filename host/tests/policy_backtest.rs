//! `hashwatt policy backtest`: a year of hourly prices replayed through the
//! first-party policies on simulated time, checked against sums computed
//! by hand from the same rows; and the command line as an operator runs it.

use std::process::Command;
use std::sync::Arc;

use hashwatt::plugin::Runtime;
use hashwatt::plugin::builtin;
use hashwatt::plugin::policy::{PolicyLimits, PolicyPluginFactory, PolicyPluginPre};
use hashwatt::policy::backtest::{self, BacktestConfig, PriceUnit, Series};

const HOURS: usize = 8760;
/// 2025-01-01T00:00:00Z.
const START_S: i64 = 1_735_689_600;

/// A year of hourly day-ahead prices, EUR/MWh: a daily and a seasonal
/// swing plus noise from a fixed LCG, always with a fractional .25 part so
/// no price equals a threshold.
fn prices() -> Vec<f64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..HOURS)
        .map(|h| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let noise = (x >> 40) % 80;
            let hour = (h % 24) as f64;
            let day = (h / 24) as f64;
            let daily = 60.0 * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0);
            let seasonal = 40.0 * (2.0 * std::f64::consts::PI * day / 365.0).cos();
            (70.0 + daily + seasonal + noise as f64).round() + 0.25
        })
        .collect()
}

fn csv(prices: &[f64]) -> String {
    let mut s = String::from("time,price\n");
    for (h, p) in prices.iter().enumerate() {
        s.push_str(&format!("{},{p}\n", START_S + 3600 * h as i64));
    }
    s
}

fn factory(runtime: &Runtime, name: &str, settings: &str) -> Arc<PolicyPluginFactory> {
    let wasm = builtin::policy(name).expect("first-party policy");
    let pre = PolicyPluginPre::new(runtime, name, wasm).expect("compiles");
    Arc::new(PolicyPluginFactory::new(pre, settings, offline_limits()))
}

/// A call budget no busy test machine exceeds: a call that timed out would
/// apply the fail-safe and change the sums (the appliance's own 10 ms
/// budget is tested elsewhere).
fn offline_limits() -> PolicyLimits {
    let mut l = PolicyLimits::default();
    l.call.call_timeout = std::time::Duration::from_secs(1);
    l
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn a_year_of_prices_through_a_threshold_matches_the_hand_computed_sums() {
    let prices = prices();
    let series = Series::parse(&csv(&prices), "UTC").unwrap();
    assert_eq!(series.times_ms.len(), HOURS);
    let runtime = Runtime::new().unwrap();
    let ceiling = 150.0;
    let f = factory(
        &runtime,
        "price",
        &format!(r#"{{"signal":"price","unit":"EUR/MWh","max_price":{ceiling}}}"#),
    );
    let mut cfg = BacktestConfig::new("UTC");
    cfg.full_w = 3000.0;
    cfg.idle_w = 10.0;
    cfg.hashrate_hs = 100e12;
    cfg.price_column = Some("price".into());
    cfg.price_unit = PriceUnit::PerMwh;
    cfg.hashprice = Some(0.05);
    let report = backtest::run("price", f, &series, &cfg).unwrap();
    eprintln!("{}", report.render(&cfg));

    // By hand: an hour above the ceiling is paused (10 W), any other runs (3 kW).
    let above: Vec<f64> = prices.iter().copied().filter(|p| *p > ceiling).collect();
    let below: Vec<f64> = prices.iter().copied().filter(|p| *p <= ceiling).collect();
    assert!(
        above.len() > 500 && below.len() > 5000,
        "{} hours above",
        above.len()
    );
    let kwh = below.len() as f64 * 3.0 + above.len() as f64 * 0.010;
    let cost =
        below.iter().sum::<f64>() / 1000.0 * 3.0 + above.iter().sum::<f64>() / 1000.0 * 0.010;
    let w = &report.with_policy;
    assert!(close(w.hours_paused, above.len() as f64), "{w:?}");
    assert!(close(w.hours_mining, below.len() as f64), "{w:?}");
    assert!(close(w.kwh, kwh), "{} kWh, by hand {kwh}", w.kwh);
    assert!(close(w.cost, cost), "cost {}, by hand {cost}", w.cost);
    assert!(close(w.hashes, below.len() as f64 * 3600.0 * 100e12));
    // 0.05 per TH/s per day: 100 TH/s for one day earns 5.
    assert!(close(w.revenue.unwrap(), below.len() as f64 / 24.0 * 5.0));

    let o = &report.always_on;
    assert!(close(o.hours_mining, HOURS as f64) && o.hours_paused == 0.0);
    assert!(close(o.kwh, HOURS as f64 * 3.0));
    assert!(close(o.cost, prices.iter().sum::<f64>() / 1000.0 * 3.0));
    assert_eq!(report.failures, 0);
    assert_eq!(report.timeline.len(), HOURS);
    let paused_rows = report.timeline.iter().filter(|r| r.duty == 0.0).count();
    assert_eq!(paused_rows, above.len());
    assert!(
        report.pauses[0].0.starts_with("price: "),
        "{:?}",
        report.pauses
    );
    let svg = report.chart_svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn a_daily_quota_counts_local_days_from_the_simulated_meter() {
    // Europe/Berlin: the UTC year starts at 01:00 local, so the last local
    // day (1 January 2026) has one hour in the series.
    let series = Series::parse(&csv(&prices()), "Europe/Berlin").unwrap();
    let runtime = Runtime::new().unwrap();
    let f = factory(&runtime, "quota", r#"{"daily_kwh":6.0}"#);
    let mut cfg = BacktestConfig::new("Europe/Berlin");
    cfg.full_w = 3000.0;
    cfg.idle_w = 0.0;
    let report = backtest::run("quota", f, &series, &cfg).unwrap();
    // 6 kWh at 3 kW is two hours of every local day (eight 15-minute
    // steps), the last day's single hour included.
    let w = &report.with_policy;
    assert!(close(w.hours_mining, 365.0 * 2.0 + 1.0), "{w:?}");
    assert!(close(w.kwh, (365.0 * 2.0 + 1.0) * 3.0), "{w:?}");
}

#[test]
fn the_command_line_writes_report_chart_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("prices.csv");
    std::fs::write(&series, csv(&prices()[..48])).unwrap();
    let settings = dir.path().join("price.toml");
    std::fs::write(
        &settings,
        "signal = \"price\"\nmax_price = 100.0\nunit = \"EUR/MWh\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["policy", "backtest", "price", "--series"])
        .arg(&series)
        .arg("--config")
        .arg(&settings)
        .args(["--price-unit", "per-mwh", "--watts", "1500"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("hours mining") && stdout.contains("energy cost"),
        "{stdout}"
    );
    let prefix = dir.path().join("prices-backtest");
    let svg = std::fs::read_to_string(prefix.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    let rows = std::fs::read_to_string(prefix.with_extension("csv")).unwrap();
    assert_eq!(rows.lines().count(), 49, "{rows}");
    assert!(
        std::fs::read_to_string(prefix.with_extension("txt"))
            .unwrap()
            .contains("always on")
    );

    let backtest = || {
        Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["policy", "backtest", "price", "--series"])
            .arg(&series)
            .arg("--config")
            .arg(&settings)
            .output()
            .unwrap()
    };
    // Bad input: a clear message naming the line, exit status non-zero.
    std::fs::write(&series, "time,price\n1735689600,12\n1735693200,twelve\n").unwrap();
    let out = backtest();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 3") && stderr.contains("\"twelve\" is not a number"),
        "{stderr}"
    );

    // A setting the policy refuses is reported as such.
    std::fs::write(&series, csv(&prices()[..4])).unwrap();
    std::fs::write(&settings, "signal = \"price\"\n").unwrap();
    let out = backtest();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("max_price"),
        "{stderr}"
    );
}
