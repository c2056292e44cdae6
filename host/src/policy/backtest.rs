//! Backtesting an energy policy: replays a time series (prices, surplus,
//! grid signals, temperatures) through a policy on simulated time, with
//! the host's real [`PolicyEngine`] (arbitration, fail-safes, restarts) and
//! energy ledger (local days and months, CO₂), and compares what it would
//! have cost and earned with mining non-stop. An operator sees what a
//! policy would have done over the past year before enabling it.
//!
//! The series is a CSV file: a `time` column (RFC 3339, Unix seconds, or a
//! local date-time such as `2025-01-01 00:00` in the configured time zone),
//! then one column per signal, named as the policy subscribes to it. An
//! empty cell means no new value (the previous one goes stale after twice
//! the series' interval, as a dead feed would). Each row holds until the
//! next; the last row lasts one median interval.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashwatt_energy::{EnergyLedger, Interval, LedgerConfig};
use jiff::Timestamp;

use super::actuator::{Actuator, PowerModel};
use super::clock::{Clock, ManualClock, tz_known};
use super::engine::FailSafe;
use super::engine::{EngineConfig, HostReadings, InputProvider, PolicyEngine, PolicySpec};
use super::signal::{SignalHub, SignalSpec};
use super::{Energy, Mode, PolicyFactory};

/// Most rows accepted (ten years of quarter-hours is ~350,000).
pub const MAX_ROWS: usize = 1_000_000;

/// Why a series or a backtest was refused.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The CSV is malformed; `line` counts from 1 (the header).
    #[error("series line {line}: {reason}")]
    Series {
        /// Line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range.
    #[error("{0}")]
    Setting(String),
    /// The policy could not be started.
    #[error("{0}")]
    Policy(String),
}

fn series_err(line: usize, reason: impl Into<String>) -> BacktestError {
    BacktestError::Series {
        line,
        reason: reason.into(),
    }
}

/// A parsed time series: row times and one column per signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Row times, UTC ms, strictly increasing.
    pub times_ms: Vec<i64>,
    /// Column names (signals), in file order.
    pub columns: Vec<String>,
    /// `values[column][row]`; `None` for an empty cell.
    pub values: Vec<Vec<Option<f64>>>,
}

impl Series {
    /// Parses CSV `text`; local date-times are read in `time_zone`.
    pub fn parse(text: &str, time_zone: &str) -> Result<Series, BacktestError> {
        let tz = jiff::tz::TimeZone::get(time_zone)
            .map_err(|e| BacktestError::Setting(format!("unknown time zone {time_zone:?}: {e}")))?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| series_err(1, e.to_string()))?
            .clone();
        let mut names = header.iter();
        match names.next() {
            Some(first) if first.eq_ignore_ascii_case("time") => {}
            other => {
                return Err(series_err(
                    1,
                    format!(
                        "the first column must be `time`, not {:?}",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
        let columns: Vec<String> = names.map(str::to_owned).collect();
        if columns.is_empty() {
            return Err(series_err(1, "no signal columns after `time`"));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.is_empty() {
                return Err(series_err(1, format!("column {} has no name", i + 2)));
            }
            if columns[..i].contains(c) {
                return Err(series_err(1, format!("column {c:?} appears twice")));
            }
        }
        let mut series = Series {
            times_ms: Vec::new(),
            values: vec![Vec::new(); columns.len()],
            columns,
        };
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line() as usize);
                series_err(line, e.to_string())
            })?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            if series.times_ms.len() == MAX_ROWS {
                return Err(series_err(line, format!("more than {MAX_ROWS} rows")));
            }
            let t = parse_time(record.get(0).unwrap_or(""), &tz)
                .map_err(|reason| series_err(line, reason))?;
            if let Some(&prev) = series.times_ms.last()
                && t <= prev
            {
                return Err(series_err(
                    line,
                    "times must increase from row to row (sort the file; a repeated local time in autumn needs an offset)",
                ));
            }
            series.times_ms.push(t);
            for (i, column) in series.values.iter_mut().enumerate() {
                let cell = record.get(i + 1).unwrap_or("");
                let value = if cell.is_empty() {
                    None
                } else {
                    match cell.parse::<f64>() {
                        Ok(v) if v.is_finite() => Some(v),
                        _ => {
                            return Err(series_err(
                                line,
                                format!(
                                    "{:?} is not a number in column {:?}",
                                    cell, series.columns[i]
                                ),
                            ));
                        }
                    }
                };
                column.push(value);
            }
        }
        if series.times_ms.is_empty() {
            return Err(series_err(2, "no rows"));
        }
        Ok(series)
    }

    /// The values of `name`, if the series has that column.
    pub fn column(&self, name: &str) -> Option<&[Option<f64>]> {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| self.values[i].as_slice())
    }

    /// The column to count from: the one `given`, else `default` if the
    /// series has it (a `price` or `co2` column is used without being named).
    pub fn column_or(&self, given: Option<&str>, default: &str) -> Option<String> {
        given
            .map(str::to_string)
            .or_else(|| self.column(default).map(|_| default.to_string()))
    }

    /// The median gap between rows (one hour for an hourly series), at
    /// least one second; one hour for a single row.
    pub fn median_interval_ms(&self) -> i64 {
        let mut gaps: Vec<i64> = self.times_ms.windows(2).map(|w| w[1] - w[0]).collect();
        if gaps.is_empty() {
            return 3_600_000;
        }
        gaps.sort_unstable();
        gaps[gaps.len() / 2].max(1000)
    }
}

fn parse_time(cell: &str, tz: &jiff::tz::TimeZone) -> Result<i64, String> {
    if cell.is_empty() {
        return Err("empty time".into());
    }
    if let Ok(secs) = cell.parse::<i64>() {
        return secs
            .checked_mul(1000)
            .ok_or_else(|| format!("time {cell} out of range"));
    }
    if let Ok(ts) = cell.parse::<Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil = cell
        .replacen(' ', "T", 1)
        .parse::<jiff::civil::DateTime>()
        .map_err(|_| {
            format!(
                "{cell:?} is not a time (RFC 3339 like 2025-01-01T00:00:00Z, Unix seconds, or a local 2025-01-01 00:00)"
            )
        })?;
    civil
        .to_zoned(tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| format!("{cell:?}: {e}"))
}

/// How prices in the series are quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PriceUnit {
    /// Currency per kWh (e.g. 0.25).
    PerKwh,
    /// Currency per MWh, as day-ahead markets quote (e.g. 250).
    PerMwh,
}

/// The appliance being simulated and what to count.
#[derive(Clone, Debug)]
pub struct BacktestConfig {
    /// IANA time zone: local days, months and local-time CSV cells.
    pub time_zone: String,
    /// Draw at full power, watts.
    pub full_w: f64,
    /// Draw while paused, watts.
    pub idle_w: f64,
    /// Hashrate at full power, H/s (a limit scales it with the duty).
    pub hashrate_hs: f64,
    /// Column holding the electricity price (costs are not counted without one).
    pub price_column: Option<String>,
    /// How that column is quoted.
    pub price_unit: PriceUnit,
    /// Column holding the grid's carbon intensity, g CO₂/kWh.
    pub co2_column: Option<String>,
    /// Carbon intensity where the series has none, g CO₂/kWh.
    pub co2_g_per_kwh: Option<f64>,
    /// Revenue per TH/s per day ("hash price"), in the price's currency.
    pub hashprice: Option<f64>,
    /// Finest evaluation step: the policy is asked at every row and then
    /// at most this often (it may ask for longer gaps).
    pub step: Duration,
    /// What applies while the policy fails.
    pub fail_safe: FailSafe,
}

impl BacktestConfig {
    /// A 3 kW, 100 TH/s appliance idling at 10 W, in `time_zone`,
    /// evaluated every 15 minutes.
    pub fn new(time_zone: &str) -> Self {
        BacktestConfig {
            time_zone: time_zone.into(),
            full_w: 3000.0,
            idle_w: 10.0,
            hashrate_hs: 100e12,
            price_column: None,
            price_unit: PriceUnit::PerKwh,
            co2_column: None,
            co2_g_per_kwh: None,
            hashprice: None,
            step: Duration::from_secs(900),
            fail_safe: FailSafe::Pause,
        }
    }

    fn check(&self, series: &Series) -> Result<(), BacktestError> {
        let bad = |what: &str, v: f64| {
            BacktestError::Setting(format!("{what} must be finite and >= 0, not {v}"))
        };
        for (what, v) in [
            ("full power", self.full_w),
            ("idle power", self.idle_w),
            ("hashrate", self.hashrate_hs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(what, v));
            }
        }
        if self.idle_w > self.full_w {
            return Err(BacktestError::Setting(format!(
                "idle power {} W is above full power {} W",
                self.idle_w, self.full_w
            )));
        }
        if let Some(h) = self.hashprice
            && !(h.is_finite() && h >= 0.0)
        {
            return Err(bad("hash price", h));
        }
        if !tz_known(&self.time_zone) {
            return Err(BacktestError::Setting(format!(
                "unknown time zone {:?}",
                self.time_zone
            )));
        }
        if self.step < Duration::from_secs(1) {
            return Err(BacktestError::Setting(
                "the step must be at least 1 s".into(),
            ));
        }
        for c in [&self.price_column, &self.co2_column].into_iter().flatten() {
            if series.column(c).is_none() {
                return Err(BacktestError::Setting(format!(
                    "the series has no column {c:?} (it has {})",
                    series.columns.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Most bytes of series a backtest request may carry (a year of
/// quarter-hours with a few columns is ~2 MiB).
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// A backtest asked for through the API: which policy, the series as CSV
/// text, and what differs from the appliance's own figures.
#[derive(Clone, Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// A configured policy: its plugin and settings are replayed.
    pub policy: Option<String>,
    /// Or a policy plugin (first-party name or installed package).
    pub plugin: Option<String>,
    /// Settings to replay with (default: the configured policy's, or none).
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// The series: a `time` column, then one column per signal.
    pub series: String,
    /// Draw at full power, W (default: `energy.full_load_w`).
    pub watts: Option<f64>,
    /// Draw while paused, W (default: `energy.idle_w`).
    pub idle_watts: Option<f64>,
    /// Hashrate at full power, TH/s (default: what the appliance hashes now).
    pub terahash: Option<f64>,
    /// Column with the price (default: `price` if present).
    pub price_column: Option<String>,
    /// `per-kwh` (default) or `per-mwh`.
    pub price_unit: Option<String>,
    /// Carbon intensity where the series has none, g CO₂/kWh (default:
    /// `energy.co2_g_per_kwh`).
    pub co2: Option<f64>,
    /// Revenue per TH/s per day.
    pub hashprice: Option<f64>,
}

/// Totals for one way of running the appliance.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Hours with hashing on (full power or limited).
    pub hours_mining: f64,
    /// Hours at a power limit.
    pub hours_limited: f64,
    /// Hours paused.
    pub hours_paused: f64,
    /// Energy used, kWh.
    pub kwh: f64,
    /// Energy cost (only hours with a known price), in the price's currency.
    pub cost: f64,
    /// Energy used in hours without a price, kWh.
    pub kwh_unpriced: f64,
    /// CO₂ attributed, kg (only hours with a known intensity).
    pub co2_kg: f64,
    /// Hashes computed.
    pub hashes: f64,
    /// Revenue at the configured hash price.
    pub revenue: Option<f64>,
}

/// One row's outcome, for the timeline file and the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct RowOutcome {
    /// Row start, UTC ms.
    pub t_ms: i64,
    /// Share of the row spent hashing at full power equivalent (0..=1).
    pub duty: f64,
    /// The mode that applied at the row's start.
    pub mode: Mode,
    /// Who decided it and why.
    pub reason: String,
    /// The row's price, if any.
    pub price: Option<f64>,
}

/// What a backtest found.
#[derive(Clone, Debug)]
pub struct BacktestReport {
    /// Policy name.
    pub policy: String,
    /// Rows replayed.
    pub rows: usize,
    /// First row, UTC ms, and end of the last row.
    pub span_ms: (i64, i64),
    /// With the policy.
    pub with_policy: Totals,
    /// Mining non-stop at full power.
    pub always_on: Totals,
    /// Seconds paused by cause ("policy: reason" with numbers as `N`),
    /// largest first.
    pub pauses: Vec<(String, f64)>,
    /// Policy failures (traps, timeouts, refused decisions).
    pub failures: u64,
    /// Engine rounds run.
    pub rounds: u64,
    /// Wall-clock time the replay took.
    pub elapsed: Duration,
    /// Per-row outcomes.
    pub timeline: Vec<RowOutcome>,
}

/// The meter the simulated policy reads: counters from the ledger, the
/// draw and hashrate of the mode being applied.
struct SimMeter {
    inner: Mutex<HostReadings>,
}

impl InputProvider for SimMeter {
    fn readings(&self) -> HostReadings {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The engine applies modes here; the replay reads the verdict instead.
struct NoActuator;

impl Actuator for NoActuator {
    fn apply(&self, _mode: &Mode) {}
}

/// Replays `series` through the policy `factory` makes (named `name`).
pub fn run(
    name: &str,
    factory: Arc<dyn PolicyFactory>,
    series: &Series,
    cfg: &BacktestConfig,
) -> Result<BacktestReport, BacktestError> {
    cfg.check(series)?;
    let started = Instant::now();
    let interval_ms = series.median_interval_ms();
    let first = series.times_ms[0];
    let clock = Arc::new(ManualClock::new(first));
    let hub = Arc::new(SignalHub::new(clock.clone() as Arc<dyn Clock>));
    let ttl =
        Duration::from_millis(u64::try_from(interval_ms.saturating_mul(2)).unwrap_or(u64::MAX));
    for column in &series.columns {
        hub.define(SignalSpec::new(column, ttl))
            .map_err(|e| BacktestError::Setting(format!("column {column:?}: {e}")))?;
    }
    let meter = Arc::new(SimMeter {
        inner: Mutex::new(HostReadings::default()),
    });
    let engine = PolicyEngine::new(
        EngineConfig {
            time_zone: cfg.time_zone.clone(),
            state_dir: None,
            tick: cfg.step,
            ..EngineConfig::default()
        },
        hub.clone(),
        clock.clone(),
        meter.clone(),
        Arc::new(NoActuator),
    );
    engine
        .add_policy(PolicySpec::new(name, cfg.fail_safe), factory)
        .map_err(|e| BacktestError::Policy(e.to_string()))?;

    let mut ledger_cfg = LedgerConfig::new(&cfg.time_zone);
    ledger_cfg.co2_g_per_kwh = cfg.co2_g_per_kwh;
    ledger_cfg.history_days = 40;
    let mut ledger =
        EnergyLedger::new(ledger_cfg).map_err(|e| BacktestError::Setting(e.to_string()))?;
    let model = PowerModel {
        idle_w: cfg.idle_w,
        k_w: cfg.full_w - cfg.idle_w,
    };
    let prices = cfg.price_column.as_deref().and_then(|c| series.column(c));
    let co2 = cfg.co2_column.as_deref().and_then(|c| series.column(c));
    let price_scale = match cfg.price_unit {
        PriceUnit::PerKwh => 1.0,
        PriceUnit::PerMwh => 0.001,
    };
    let step_ms = i64::try_from(cfg.step.as_millis()).unwrap_or(i64::MAX);

    let mut with = Totals::default();
    let mut on = Totals::default();
    let mut pauses: BTreeMap<String, f64> = BTreeMap::new();
    let mut timeline = Vec::with_capacity(series.times_ms.len());
    let mut rounds = 0u64;
    let n = series.times_ms.len();
    for row in 0..n {
        let start = series.times_ms[row];
        let end = series
            .times_ms
            .get(row + 1)
            .copied()
            .unwrap_or(start.saturating_add(interval_ms));
        clock.set_ms(start);
        for (i, column) in series.columns.iter().enumerate() {
            if let Some(v) = series.values[i][row] {
                hub.set(column, v)
                    .map_err(|e| BacktestError::Setting(format!("column {column:?}: {e}")))?;
            }
        }
        let price = prices.and_then(|p| p[row]).map(|p| p * price_scale);
        let intensity = co2.and_then(|c| c[row]).or(cfg.co2_g_per_kwh);
        let mut t = start;
        let mut row_duty_s = 0.0;
        let mut row_mode = None;
        while t < end {
            clock.set_ms(t);
            let verdict = engine.step();
            rounds += 1;
            let next = t.saturating_add(step_ms).min(end);
            let secs = (next - t) as f64 / 1000.0;
            let duty = match verdict.mode {
                Mode::Run => 1.0,
                Mode::Pause => 0.0,
                Mode::Limit(w) => model.duty_for(w),
            };
            let watts = cfg.idle_w + model.k_w * duty;
            let kwh = watts * secs / 3.6e6;
            let hashes = cfg.hashrate_hs * duty * secs;
            let end_ts = Timestamp::from_millisecond(next)
                .map_err(|e| BacktestError::Setting(format!("time out of range: {e}")))?;
            ledger
                .record(&Interval {
                    end: end_ts,
                    secs,
                    joules: watts * secs,
                    hashes,
                    mining: duty > 0.0,
                    grid_g_per_kwh: intensity,
                })
                .map_err(|e| BacktestError::Setting(e.to_string()))?;
            add(
                &mut with,
                secs,
                duty,
                &verdict.mode,
                kwh,
                price,
                intensity,
                hashes,
            );
            let on_kwh = cfg.full_w * secs / 3.6e6;
            add(
                &mut on,
                secs,
                1.0,
                &Mode::Run,
                on_kwh,
                price,
                intensity,
                cfg.hashrate_hs * secs,
            );
            if verdict.mode == Mode::Pause {
                *pauses
                    .entry(format!(
                        "{}: {}",
                        verdict.by,
                        reason_template(&verdict.reason)
                    ))
                    .or_default() += secs;
            }
            row_duty_s += duty * secs;
            if row_mode.is_none() {
                row_mode = Some((verdict.mode, format!("{}: {}", verdict.by, verdict.reason)));
            }
            // The next round sees this draw and the ledger's counters.
            let counters = ledger.counters(end_ts);
            *meter.inner.lock().unwrap_or_else(|p| p.into_inner()) = HostReadings {
                power_w: Some(watts),
                energy: Energy {
                    today_kwh: counters.today_kwh,
                    month_kwh: counters.month_kwh,
                    total_kwh: counters.total_kwh,
                },
                hashrate_hs: cfg.hashrate_hs * duty,
                temperatures: Vec::new(),
            };
            t = next;
        }
        let (mode, reason) = row_mode.unwrap_or((Mode::Pause, String::new()));
        timeline.push(RowOutcome {
            t_ms: start,
            duty: row_duty_s / ((end - start) as f64 / 1000.0),
            mode,
            reason,
            price,
        });
    }
    if let Some(hp) = cfg.hashprice {
        // Hash price: currency per TH/s per day = per 86,400e12 hashes.
        with.revenue = Some(with.hashes / 86_400e12 * hp);
        on.revenue = Some(on.hashes / 86_400e12 * hp);
    }
    let status = engine.status();
    let failures = status.policies.iter().map(|p| p.failures).sum();
    let mut pauses: Vec<(String, f64)> = pauses.into_iter().collect();
    pauses.sort_by(|a, b| b.1.total_cmp(&a.1));
    let last = series.times_ms[n - 1];
    Ok(BacktestReport {
        policy: name.into(),
        rows: n,
        span_ms: (first, last.saturating_add(interval_ms)),
        with_policy: with,
        always_on: on,
        pauses,
        failures,
        rounds,
        elapsed: started.elapsed(),
        timeline,
    })
}

/// A reason with its numbers replaced by `N`, so pauses group by cause:
/// reasons embed live values ("price 158.25 EUR/MWh > max 150").
fn reason_template(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        let numeric = c.is_ascii_digit() || (in_number && c == '.');
        if numeric {
            if !in_number {
                out.push('N');
            }
        } else {
            out.push(c);
        }
        in_number = numeric;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn add(
    t: &mut Totals,
    secs: f64,
    duty: f64,
    mode: &Mode,
    kwh: f64,
    price: Option<f64>,
    intensity: Option<f64>,
    hashes: f64,
) {
    let hours = secs / 3600.0;
    match mode {
        Mode::Pause => t.hours_paused += hours,
        Mode::Limit(_) if duty <= 0.0 => t.hours_paused += hours,
        Mode::Limit(_) => {
            t.hours_mining += hours;
            t.hours_limited += hours;
        }
        Mode::Run => t.hours_mining += hours,
    }
    t.kwh += kwh;
    match price {
        Some(p) => t.cost += kwh * p,
        None => t.kwh_unpriced += kwh,
    }
    if let Some(g) = intensity {
        t.co2_kg += kwh * g / 1000.0;
    }
    t.hashes += hashes;
}

fn utc(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Time paused for one cause.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PauseCause {
    /// "policy: reason", numbers shown as `N` so causes group.
    pub cause: String,
    /// Hours paused for it.
    pub hours: f64,
}

/// A backtest as the API returns it: the figures the panel shows, the
/// report an operator can keep, and the chart.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BacktestSummary {
    /// Policy (or plugin) replayed.
    pub policy: String,
    /// Rows replayed.
    pub rows: usize,
    /// First row, UTC ms.
    pub start_ms: i64,
    /// End of the last row, UTC ms.
    pub end_ms: i64,
    /// Time zone of local days and local-time cells.
    pub time_zone: String,
    /// Draw at full power assumed, W.
    pub full_w: f64,
    /// Hashrate at full power assumed, H/s.
    pub hashrate_hs: f64,
    /// The column costs were counted from, if any.
    pub price_column: Option<String>,
    /// With the policy.
    pub with_policy: Totals,
    /// Mining non-stop at full power.
    pub always_on: Totals,
    /// Share of always-on's hashes not computed, percent.
    pub hashes_forgone_percent: f64,
    /// Revenue not earned against always-on (with a hash price).
    pub revenue_forgone: Option<f64>,
    /// Energy cost saved against always-on (with a price column).
    pub cost_saved: Option<f64>,
    /// Pause causes, longest first (at most 20).
    pub pauses: Vec<PauseCause>,
    /// Policy failures during the replay (its fail-safe applied).
    pub failures: u64,
    /// Wall-clock time the replay took, ms.
    pub elapsed_ms: f64,
    /// The plain-text report (`policy backtest` prints the same).
    pub report: String,
    /// The chart, an SVG document.
    pub chart_svg: String,
}

impl BacktestReport {
    /// The figures, the report and the chart, for the API.
    pub fn summary(&self, cfg: &BacktestConfig) -> BacktestSummary {
        let (w, o) = (&self.with_policy, &self.always_on);
        BacktestSummary {
            policy: self.policy.clone(),
            rows: self.rows,
            start_ms: self.span_ms.0,
            end_ms: self.span_ms.1,
            time_zone: cfg.time_zone.clone(),
            full_w: cfg.full_w,
            hashrate_hs: cfg.hashrate_hs,
            price_column: cfg.price_column.clone(),
            with_policy: *w,
            always_on: *o,
            hashes_forgone_percent: if o.hashes > 0.0 {
                (o.hashes - w.hashes) / o.hashes * 100.0
            } else {
                0.0
            },
            revenue_forgone: w.revenue.zip(o.revenue).map(|(a, b)| b - a),
            cost_saved: cfg.price_column.as_ref().map(|_| o.cost - w.cost),
            pauses: self
                .pauses
                .iter()
                .take(20)
                .map(|(cause, secs)| PauseCause {
                    cause: cause.clone(),
                    hours: secs / 3600.0,
                })
                .collect(),
            failures: self.failures,
            elapsed_ms: self.elapsed.as_secs_f64() * 1e3,
            report: self.render(cfg),
            chart_svg: self.chart_svg(),
        }
    }

    /// The report an operator reads.
    pub fn render(&self, cfg: &BacktestConfig) -> String {
        let (w, o) = (&self.with_policy, &self.always_on);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "backtest of policy {:?}: {} rows, {} to {} ({})",
            self.policy,
            self.rows,
            utc(self.span_ms.0),
            utc(self.span_ms.1),
            cfg.time_zone
        );
        let _ = writeln!(
            s,
            "appliance: {:.0} W at full power, {:.0} W paused, {:.3} TH/s; policy asked every row and at most every {} s",
            cfg.full_w,
            cfg.idle_w,
            cfg.hashrate_hs / 1e12,
            cfg.step.as_secs()
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<26}{:>16}{:>16}{:>16}",
            "", "with policy", "always on", "difference"
        );
        let mut line = |label: &str, a: f64, b: f64, prec: usize| {
            let _ = writeln!(
                s,
                "{label:<26}{a:>16.prec$}{b:>16.prec$}{:>16.prec$}",
                a - b
            );
        };
        line("hours mining", w.hours_mining, o.hours_mining, 1);
        line("  of which limited", w.hours_limited, o.hours_limited, 1);
        line("hours paused", w.hours_paused, o.hours_paused, 1);
        line("energy, kWh", w.kwh, o.kwh, 1);
        if cfg.price_column.is_some() {
            line("energy cost", w.cost, o.cost, 2);
            if w.kwh_unpriced > 0.0 || o.kwh_unpriced > 0.0 {
                line("  kWh without a price", w.kwh_unpriced, o.kwh_unpriced, 1);
            }
        }
        if cfg.co2_column.is_some() || cfg.co2_g_per_kwh.is_some() {
            line("CO2, kg", w.co2_kg, o.co2_kg, 1);
        }
        line("hashes, EH", w.hashes / 1e18, o.hashes / 1e18, 3);
        if let (Some(a), Some(b)) = (w.revenue, o.revenue) {
            line("revenue", a, b, 2);
            if cfg.price_column.is_some() {
                line("revenue - energy cost", a - w.cost, b - o.cost, 2);
            }
        }
        let _ = writeln!(s);
        let forgone = o.hashes - w.hashes;
        let _ = writeln!(
            s,
            "forgone against always-on: {:.1}% of the hashes{}",
            if o.hashes > 0.0 {
                forgone / o.hashes * 100.0
            } else {
                0.0
            },
            match (w.revenue, o.revenue) {
                (Some(a), Some(b)) => format!(", {:.2} of revenue", b - a),
                _ => String::new(),
            }
        );
        if cfg.price_column.is_some() {
            let _ = writeln!(s, "energy cost saved: {:.2}", o.cost - w.cost);
        }
        if !self.pauses.is_empty() {
            let _ = writeln!(s, "\npaused by (hours; numbers in reasons shown as N):");
            for (reason, secs) in self.pauses.iter().take(8) {
                let _ = writeln!(s, "  {:>9.1}  {}", secs / 3600.0, reason);
            }
            if self.pauses.len() > 8 {
                let rest: f64 = self.pauses[8..].iter().map(|p| p.1).sum();
                let _ = writeln!(
                    s,
                    "  {:>9.1}  ({} other reasons)",
                    rest / 3600.0,
                    self.pauses.len() - 8
                );
            }
        }
        if self.failures > 0 {
            let _ = writeln!(
                s,
                "\nthe policy failed {} time(s); its fail-safe ({:?}) applied meanwhile",
                self.failures, cfg.fail_safe
            );
        }
        let _ = writeln!(
            s,
            "\nreplayed in {:.3} s ({} engine rounds)",
            self.elapsed.as_secs_f64(),
            self.rounds
        );
        s
    }

    /// One line per row: time, mode, duty, price, reason.
    pub fn timeline_csv(&self) -> String {
        let mut s = String::from("time,mode,watts_limit,duty,price,reason\n");
        for r in &self.timeline {
            let (mode, limit) = match r.mode {
                Mode::Run => ("run", String::new()),
                Mode::Pause => ("pause", String::new()),
                Mode::Limit(w) => ("limit", format!("{w}")),
            };
            let _ = writeln!(
                s,
                "{},{mode},{limit},{:.4},{},\"{}\"",
                utc(r.t_ms),
                r.duty,
                r.price.map_or(String::new(), |p| format!("{p}")),
                r.reason.replace('"', "\"\"")
            );
        }
        s
    }

    /// A chart: the price (if any) over time above a strip that is green
    /// while mining, amber while limited and red while paused; long series
    /// are binned to at most 730 columns.
    pub fn chart_svg(&self) -> String {
        const W: f64 = 1000.0;
        const LEFT: f64 = 60.0;
        const PLOT_W: f64 = W - LEFT - 20.0;
        const PRICE_TOP: f64 = 40.0;
        const PRICE_H: f64 = 220.0;
        const STRIP_TOP: f64 = 280.0;
        const STRIP_H: f64 = 40.0;
        let rows = self.timeline.len();
        let bins = rows.clamp(1, 730);
        let mut duty = vec![0.0; bins];
        let mut limited = vec![0.0; bins];
        let mut count = vec![0usize; bins];
        let mut price_sum = vec![0.0; bins];
        let mut price_n = vec![0usize; bins];
        for (i, r) in self.timeline.iter().enumerate() {
            let b = i * bins / rows.max(1);
            duty[b] += r.duty;
            if matches!(r.mode, Mode::Limit(_)) {
                limited[b] += 1.0;
            }
            count[b] += 1;
            if let Some(p) = r.price {
                price_sum[b] += p;
                price_n[b] += 1;
            }
        }
        let prices: Vec<Option<f64>> = (0..bins)
            .map(|b| (price_n[b] > 0).then(|| price_sum[b] / price_n[b] as f64))
            .collect();
        let (lo, hi) = prices
            .iter()
            .flatten()
            .fold((f64::MAX, f64::MIN), |(l, h), &p| (l.min(p), h.max(p)));
        let col_w = PLOT_W / bins as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="360" viewBox="0 0 {W} 360" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="20" font-size="14">{}: {} to {} · mining {:.0} h, paused {:.0} h · {:.0} kWh</text>"#,
            xml(&self.policy),
            utc(self.span_ms.0),
            utc(self.span_ms.1),
            self.with_policy.hours_mining,
            self.with_policy.hours_paused,
            self.with_policy.kwh
        );
        if lo <= hi {
            let span = if hi > lo { hi - lo } else { 1.0 };
            let y = |p: f64| PRICE_TOP + PRICE_H - (p - lo) / span * PRICE_H;
            let mut path = String::new();
            let mut pen_up = true;
            for (b, p) in prices.iter().enumerate() {
                match p {
                    Some(p) => {
                        let x = LEFT + (b as f64 + 0.5) * col_w;
                        let _ = write!(
                            path,
                            "{}{x:.1},{:.1} ",
                            if pen_up { "M" } else { "L" },
                            y(*p)
                        );
                        pen_up = false;
                    }
                    None => pen_up = true,
                }
            }
            let _ = writeln!(
                s,
                r##"<path d="{path}" fill="none" stroke="#1f4e9a" stroke-width="1"/>"##
            );
            for p in [lo, (lo + hi) / 2.0, hi] {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.0}" y="{:.1}" text-anchor="end" fill="#555">{p:.3}</text>"##,
                    LEFT - 6.0,
                    y(p) + 4.0
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{LEFT}" y="{:.0}" fill="#1f4e9a">price (bin average)</text>"##,
                PRICE_TOP - 4.0
            );
        }
        for b in 0..bins {
            let n = count[b].max(1) as f64;
            let d = duty[b] / n;
            let fill = if d <= 0.0 {
                "#c0392b"
            } else if limited[b] / n > 0.5 {
                "#e69b00"
            } else if d >= 0.999 {
                "#2e8b57"
            } else {
                "#8fbc5a"
            };
            let _ = writeln!(
                s,
                r#"<rect x="{:.2}" y="{STRIP_TOP}" width="{:.2}" height="{STRIP_H}" fill="{fill}"/>"#,
                LEFT + b as f64 * col_w,
                col_w + 0.05
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.0}" fill="#333">green: mining · light green: partly · amber: limited · red: paused</text>"##,
            STRIP_TOP + STRIP_H + 18.0
        );
        s.push_str("</svg>\n");
        s
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `hashwatt policy backtest`: the command line.
pub mod cli {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context;

    use super::{BacktestConfig, PriceUnit, Series};
    use crate::plugin::Runtime;
    use crate::plugin::package::PluginKind;
    use crate::plugin::policy::{PolicyLimits, PolicyPluginFactory, PolicyPluginPre};
    use crate::policy::engine::FailSafe;

    /// Replays a CSV time series through a policy plugin on simulated time.
    #[derive(Debug, clap::Args)]
    pub struct BacktestArgs {
        /// The policy: a first-party name (`price`, `quota`, …), a package
        /// directory, a `.hwpkg` file, or a `.wasm` component.
        pub plugin: String,
        /// The time series: `time` column, then one column per signal.
        #[arg(long)]
        pub series: PathBuf,
        /// The policy's settings: a TOML file (the table a `[[policies]]`
        /// entry has under `config`).
        #[arg(long)]
        pub config: Option<PathBuf>,
        /// IANA time zone of the appliance (local days and months, and
        /// local times in the series).
        #[arg(long, default_value = "UTC")]
        pub time_zone: String,
        /// Draw at full power, W.
        #[arg(long, default_value_t = 3000.0)]
        pub watts: f64,
        /// Draw while paused, W.
        #[arg(long, default_value_t = 10.0)]
        pub idle_watts: f64,
        /// Hashrate at full power, TH/s.
        #[arg(long, default_value_t = 100.0)]
        pub terahash: f64,
        /// Column with the electricity price (default: `price` if present).
        #[arg(long)]
        pub price_column: Option<String>,
        /// How the price is quoted.
        #[arg(long, value_enum, default_value = "per-kwh")]
        pub price_unit: PriceUnit,
        /// Column with the grid's carbon intensity, g CO₂/kWh (default:
        /// `co2` if present).
        #[arg(long)]
        pub co2_column: Option<String>,
        /// Carbon intensity where the series has none, g CO₂/kWh.
        #[arg(long)]
        pub co2: Option<f64>,
        /// Revenue per TH/s per day, in the price's currency (the "hash price").
        #[arg(long)]
        pub hashprice: Option<f64>,
        /// Ask the policy at every row and at most this often, seconds.
        #[arg(long, default_value_t = 900)]
        pub step: u64,
        /// What applies while the policy fails: `pause` or `run`.
        #[arg(long, default_value = "pause", value_parser = parse_fail_safe)]
        pub fail_safe: FailSafe,
        /// Linear memory the plugin may use, MiB (as `plugin_limits.memory_mib`
        /// on the appliance; the Python policy needs 32).
        #[arg(long, default_value_t = 16)]
        pub memory_mib: usize,
        /// Time budget of one call, ms. The appliance's is 10
        /// (`plugin_limits.call_timeout_ms`); offline the default is
        /// generous so a busy machine does not turn slow calls into
        /// failures (the report counts them, and what each call took).
        #[arg(long, default_value_t = 1000)]
        pub call_timeout_ms: u64,
        /// Where to write the report (`PREFIX.txt`), the chart
        /// (`PREFIX.svg`) and the per-row decisions (`PREFIX.csv`); default:
        /// next to the series, `<series>-backtest`.
        #[arg(long)]
        pub out: Option<PathBuf>,
    }

    fn parse_fail_safe(s: &str) -> Result<FailSafe, String> {
        match s {
            "pause" => Ok(FailSafe::Pause),
            "run" => Ok(FailSafe::Run),
            _ => Err(format!("{s:?}: expected pause or run")),
        }
    }

    /// Runs the backtest and writes the report, chart and timeline.
    pub fn run(args: BacktestArgs) -> anyhow::Result<()> {
        let (name, wasm) = crate::plugin::cli::load_offline(&args.plugin, PluginKind::Policy)?;
        let settings: toml::Table = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not valid TOML", p.display()))?
            }
            None => toml::Table::new(),
        };
        let json =
            serde_json::to_string(&settings).context("settings are not representable as JSON")?;
        let text = std::fs::read_to_string(&args.series)
            .with_context(|| format!("cannot read {}", args.series.display()))?;
        let series = Series::parse(&text, &args.time_zone)
            .with_context(|| format!("{}", args.series.display()))?;
        let cfg = BacktestConfig {
            time_zone: args.time_zone.clone(),
            full_w: args.watts,
            idle_w: args.idle_watts,
            hashrate_hs: args.terahash * 1e12,
            price_column: series.column_or(args.price_column.as_deref(), "price"),
            price_unit: args.price_unit,
            co2_column: series.column_or(args.co2_column.as_deref(), "co2"),
            co2_g_per_kwh: args.co2,
            hashprice: args.hashprice,
            step: Duration::from_secs(args.step),
            fail_safe: args.fail_safe,
        };
        let runtime = Runtime::new()?;
        let started = Instant::now();
        let pre = PolicyPluginPre::new(&runtime, &name, &wasm)?;
        let compiled = started.elapsed();
        let mut limits = PolicyLimits::default();
        limits.call.memory_bytes = args.memory_mib << 20;
        limits.call.call_timeout = Duration::from_millis(args.call_timeout_ms);
        let factory = Arc::new(PolicyPluginFactory::new(pre, &json, limits));
        let started = Instant::now();
        crate::policy::PolicyFactory::create(factory.as_ref()).map_err(anyhow::Error::msg)?;
        let instantiated = started.elapsed();
        let report = super::run(&name, factory, &series, &cfg)?;
        let stats = runtime.stats_for(&format!("policy:{name}"));
        let calls = stats.calls().max(1);
        let mut text = report.render(&cfg);
        text.push_str(&format!(
            "plugin {name}: {} KiB component, compiled in {:.0} ms, instantiated and configured in {:.1} ms, \
             memory peak {} KiB (limit {} MiB), {} calls of {:.1} µs on average\n",
            wasm.len() / 1024,
            compiled.as_secs_f64() * 1e3,
            instantiated.as_secs_f64() * 1e3,
            stats.memory_peak_bytes() / 1024,
            args.memory_mib,
            stats.calls(),
            stats.call_time().as_secs_f64() * 1e6 / calls as f64
        ));
        print!("{text}");
        let prefix = args.out.unwrap_or_else(|| {
            let stem = args
                .series
                .file_stem()
                .map_or("series".into(), |s| s.to_string_lossy().into_owned());
            args.series.with_file_name(format!("{stem}-backtest"))
        });
        let with_ext = |ext: &str| {
            let mut p = prefix.clone().into_os_string();
            p.push(ext);
            PathBuf::from(p)
        };
        for (ext, body) in [
            (".txt", text),
            (".svg", report.chart_svg()),
            (".csv", report.timeline_csv()),
        ] {
            let path = with_ext(ext);
            std::fs::write(&path, body)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        println!(
            "wrote {} (report), {} (chart), {} (decisions per row)",
            with_ext(".txt").display(),
            with_ext(".svg").display(),
            with_ext(".csv").display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_parse_and_errors() {
        let s = Series::parse(
            "time,price,surplus\n2025-01-01T00:00:00Z,10,\n1735693200,20,1.5\n2025-01-01 02:00,30,2\n",
            "UTC",
        )
        .unwrap();
        assert_eq!(
            s.times_ms,
            vec![1_735_689_600_000, 1_735_693_200_000, 1_735_696_800_000]
        );
        assert_eq!(s.column("surplus").unwrap(), &[None, Some(1.5), Some(2.0)]);
        assert_eq!(s.median_interval_ms(), 3_600_000);
        for (text, want) in [
            ("when,price\n", "first column must be `time`"),
            ("time\n1,2\n", "no signal columns"),
            ("time,a,a\n", "appears twice"),
            ("time,a\n", "no rows"),
            ("time,a\n2,1\n1,1\n", "must increase"),
            ("time,a\n1,x\n", "not a number"),
            ("time,a\n1,NaN\n", "not a number"),
            ("time,a\nyesterday,1\n", "not a time"),
            ("time,a\n1,1,1\n", "line 2"),
        ] {
            let e = Series::parse(text, "UTC").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn reasons_group_by_their_words() {
        assert_eq!(
            reason_template("price 158.25 EUR/MWh > max 150.0 EUR/MWh"),
            "price N EUR/MWh > max N EUR/MWh"
        );
        assert_eq!(reason_template("v1.2 ok, 3"), "vN ok, N");
    }

    #[test]
    fn local_times_follow_the_time_zone() {
        let s = Series::parse("time,p\n2025-07-01 00:00,1\n", "Europe/Berlin").unwrap();
        assert_eq!(s.times_ms[0], 1_751_320_800_000);
    }
}
