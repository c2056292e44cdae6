//! Day and month energy reports for operators and spreadsheets.
//!
//! A report answers "what did mining cost and how efficiently?": kWh,
//! average power, joules per terahash, hashes per kWh, CO₂ and why the
//! miner was paused. [`Report`] prints as a table (`Display`) and as CSV
//! ([`Report::to_csv`]) for `hashwatt energy report`.

use std::{collections::BTreeMap, fmt};

use jiff::{Timestamp, civil::Date};
use serde::{Deserialize, Serialize};

use crate::{
    JOULES_PER_KWH,
    ledger::{DayRecord, EnergyLedger},
};

/// Which local calendar period a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The local day.
    Day,
    /// The local calendar month.
    Month,
}

/// Why a report period name was not understood.
#[derive(Debug, thiserror::Error)]
#[error("unknown report period {0:?} (expected \"day\" or \"month\")")]
pub struct PeriodError(String);

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            other => Err(PeriodError(other.chars().take(40).collect())),
        }
    }
}

/// Time paused by one policy for one reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseLine {
    /// The policy that paused the miner.
    pub policy: String,
    /// Its reason.
    pub reason: String,
    /// Seconds paused.
    pub secs: f64,
}

/// Figures of one day, or the whole period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportLine {
    /// `2026-03-29`, or `total`.
    pub label: String,
    /// Energy used, kWh.
    pub kwh: f64,
    /// Seconds covered by meter samples.
    pub metered_s: f64,
    /// Seconds spent mining.
    pub mining_s: f64,
    /// Hashes computed.
    pub hashes: f64,
    /// CO₂ grams.
    pub co2_g: f64,
    /// Pauses by policy and reason, longest first.
    pub paused: Vec<PauseLine>,
}

impl ReportLine {
    fn from_days<'a>(label: String, days: impl IntoIterator<Item = &'a DayRecord>) -> Self {
        let mut line = Self {
            label,
            kwh: 0.0,
            metered_s: 0.0,
            mining_s: 0.0,
            hashes: 0.0,
            co2_g: 0.0,
            paused: Vec::new(),
        };
        let mut paused: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for d in days {
            line.kwh += d.kwh;
            line.metered_s += d.metered_s;
            line.mining_s += d.mining_s;
            line.hashes += d.hashes;
            line.co2_g += d.co2_g;
            for (p, reasons) in &d.paused {
                for (r, s) in reasons {
                    *paused.entry((p, r)).or_default() += s;
                }
            }
        }
        line.paused = paused
            .into_iter()
            .map(|((p, r), secs)| PauseLine {
                policy: p.to_owned(),
                reason: r.to_owned(),
                secs,
            })
            .collect();
        line.paused.sort_by(|a, b| b.secs.total_cmp(&a.secs));
        line
    }

    /// Average power while metered, in watts (`None` without samples).
    pub fn avg_w(&self) -> Option<f64> {
        (self.metered_s > 0.0).then(|| self.kwh * JOULES_PER_KWH / self.metered_s)
    }

    /// Efficiency in joules per terahash (`None` without hashes).
    pub fn j_per_th(&self) -> Option<f64> {
        (self.hashes > 0.0).then(|| self.kwh * JOULES_PER_KWH / (self.hashes / 1e12))
    }

    /// Hashes per kWh (`None` without energy).
    pub fn hashes_per_kwh(&self) -> Option<f64> {
        (self.kwh > 0.0).then(|| self.hashes / self.kwh)
    }

    /// Total seconds paused.
    pub fn paused_s(&self) -> f64 {
        self.paused.iter().fold(0.0, |a, p| a + p.secs)
    }
}

/// A day or month report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The period kind.
    pub period: Period,
    /// `2026-03-29` for a day, `2026-03` for a month.
    pub label: String,
    /// IANA time zone the days are in.
    pub time_zone: String,
    /// Hours in the period (23 or 25 on DST days), for context.
    pub period_hours: f64,
    /// One line per day with records, oldest first.
    pub days: Vec<ReportLine>,
    /// The whole period.
    pub total: ReportLine,
}

impl EnergyLedger {
    /// Report for the local day or month containing `at`.
    pub fn report(&self, period: Period, at: Timestamp) -> Report {
        let date = self.local_date(at);
        let (first, last, label) = match period {
            Period::Day => (date, date, date.to_string()),
            Period::Month => (
                date.first_of_month(),
                date.last_of_month(),
                format!("{:04}-{:02}", date.year(), date.month()),
            ),
        };
        let days: Vec<(Date, &DayRecord)> = self
            .days()
            .filter(|(d, _)| (first..=last).contains(d))
            .collect();
        let period_hours = last
            .tomorrow()
            .ok()
            .and_then(|next| Some((self.start_of(first).ok()?, self.start_of(next).ok()?)))
            .map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64() / 3600.0);
        Report {
            period,
            label: label.clone(),
            time_zone: self.config().time_zone.clone(),
            period_hours,
            days: days
                .iter()
                .map(|(d, r)| ReportLine::from_days(d.to_string(), [*r]))
                .collect(),
            total: ReportLine::from_days("total".into(), days.iter().map(|(_, r)| *r)),
        }
    }
}

/// One CSV field, quoted when needed and defused against spreadsheet
/// formula injection (reasons come from plugins).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(String::new, |v| format!("{v:.prec$}"))
}

fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

impl Report {
    /// CSV in long format: one `day` row per day, a `pause` row per policy
    /// and reason of that day, then a `total` row and its `pause` rows.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "record,date,policy,reason,kwh,avg_w,mining_s,paused_s,hashes,j_per_th,hashes_per_kwh,co2_g\n",
        );
        for (kind, line) in self
            .days
            .iter()
            .map(|l| ("day", l))
            .chain([("total", &self.total)])
        {
            let date = if kind == "total" {
                &self.label
            } else {
                &line.label
            };
            out.push_str(&format!(
                "{kind},{},,,{:.6},{},{:.0},{:.0},{:.0},{},{},{:.3}\n",
                csv_field(date),
                line.kwh,
                opt(line.avg_w(), 2),
                line.mining_s,
                line.paused_s(),
                line.hashes,
                opt(line.j_per_th(), 3),
                opt(line.hashes_per_kwh(), 0),
                line.co2_g
            ));
            for p in &line.paused {
                out.push_str(&format!(
                    "pause,{},{},{},,,,{:.0},,,,\n",
                    csv_field(date),
                    csv_field(&p.policy),
                    csv_field(&p.reason),
                    p.secs
                ));
            }
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.period {
            Period::Day => "day",
            Period::Month => "month",
        };
        writeln!(
            f,
            "Energy report, {kind} {} ({}, {:.0} h)",
            self.label, self.time_zone, self.period_hours
        )?;
        writeln!(
            f,
            "{:<10} {:>10} {:>9} {:>10} {:>10} {:>14} {:>10} {:>16} {:>10}",
            "date", "kWh", "avg W", "mining", "paused", "hashes", "J/TH", "hashes/kWh", "CO2 g"
        )?;
        for line in self.days.iter().chain([&self.total]) {
            writeln!(
                f,
                "{:<10} {:>10.3} {:>9} {:>10} {:>10} {:>14.4e} {:>10} {:>16} {:>10.1}",
                line.label,
                line.kwh,
                opt(line.avg_w(), 1),
                hms(line.mining_s),
                hms(line.paused_s()),
                line.hashes,
                opt(line.j_per_th(), 1),
                line.hashes_per_kwh()
                    .map_or_else(String::new, |v| format!("{v:.4e}")),
                line.co2_g
            )?;
        }
        if !self.total.paused.is_empty() {
            writeln!(f, "\nPaused by policy:")?;
            for p in &self.total.paused {
                writeln!(f, "  {:>10}  {}: {}", hms(p.secs), p.policy, p.reason)?;
            }
        }
        Ok(())
    }
}
