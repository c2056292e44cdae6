//! Energy counters and per-day records in the operator's local time.
//!
//! Operators are billed per local day and month, and quotas ("at most
//! 5 kWh a day") reset at local midnight, so every interval is attributed
//! to local calendar days of the configured IANA time zone. Intervals that
//! straddle midnight are split in proportion to the time on each side, and
//! day lengths come from the time-zone database (a spring-forward day in
//! Europe/Berlin has 23 hours).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::JOULES_PER_KWH;

/// Longest interval accepted in one call; more means the clock jumped.
pub const MAX_INTERVAL_S: f64 = 31.0 * 86_400.0;
/// Distinct pausing policies kept per day; more are merged.
pub const MAX_POLICIES_PER_DAY: usize = 32;
/// Distinct pause reasons kept per policy and day; more are merged, since
/// reasons often embed live numbers ("export 0.4 kW < 1.0 kW").
pub const MAX_REASONS_PER_POLICY: usize = 32;
/// Longest policy name or reason stored, in characters.
pub const MAX_LABEL_CHARS: usize = 160;
/// Key under which policies or reasons beyond the limits are merged.
pub const OTHER: &str = "(other)";

/// Why the ledger refused an input.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The configured time zone is not in the time-zone database.
    #[error("unknown time zone {name:?}: {reason}")]
    TimeZone {
        /// The configured name.
        name: String,
        /// What jiff said.
        reason: String,
    },
    /// A number is NaN, infinite, negative or absurdly large.
    #[error("invalid {what}: {value}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// Date arithmetic went out of the supported range (year -9999..9999).
    #[error("time out of range: {0}")]
    Time(#[from] jiff::Error),
}

/// How the ledger attributes and keeps energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerConfig {
    /// IANA time zone of the operator, e.g. `Europe/Berlin`; days and
    /// months start at local midnight there.
    pub time_zone: String,
    /// Grid carbon intensity used when an interval carries none, in grams
    /// of CO₂ per kWh; `None` means unknown (no CO₂ is counted).
    pub co2_g_per_kwh: Option<f64>,
    /// Number of per-day records kept for reports (newest dates win).
    pub history_days: usize,
}

impl LedgerConfig {
    /// Defaults for `time_zone`: unknown carbon intensity, 400 days kept.
    pub fn new(time_zone: &str) -> Self {
        Self {
            time_zone: time_zone.to_owned(),
            co2_g_per_kwh: None,
            history_days: 400,
        }
    }
}

/// Everything known about one local calendar day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayRecord {
    /// Energy used, kWh.
    pub kwh: f64,
    /// Seconds covered by metered intervals (for average power).
    pub metered_s: f64,
    /// Seconds spent mining.
    pub mining_s: f64,
    /// Hashes computed.
    pub hashes: f64,
    /// CO₂ attributed, grams (only intervals with a known intensity).
    pub co2_g: f64,
    /// Seconds paused, by policy name and then by reason.
    pub paused: BTreeMap<String, BTreeMap<String, f64>>,
}

impl DayRecord {
    /// Total seconds paused by any policy.
    pub fn paused_s(&self) -> f64 {
        self.paused
            .values()
            .flat_map(|r| r.values())
            .fold(0.0, |a, s| a + s)
    }
}

/// The live counters policies and status pages need.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyCounters {
    /// Local date the counters refer to.
    pub date: Date,
    /// kWh since local midnight.
    pub today_kwh: f64,
    /// kWh since the first of the local month, 00:00.
    pub month_kwh: f64,
    /// kWh since the ledger was created.
    pub total_kwh: f64,
    /// CO₂ grams since local midnight.
    pub today_co2_g: f64,
    /// CO₂ grams since the first of the local month.
    pub month_co2_g: f64,
    /// Hashes since the ledger was created.
    pub total_hashes: f64,
}

/// One metered interval, as the host reports it after sampling a
/// [`crate::PowerSource`]. The interval is `[end - secs, end]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Wall-clock end of the interval.
    pub end: Timestamp,
    /// Length in seconds ([`crate::Sample::interval`]).
    pub secs: f64,
    /// Energy used ([`crate::Sample::joules`]).
    pub joules: f64,
    /// Hashes computed in the interval.
    pub hashes: f64,
    /// Whether the miner was hashing during the interval.
    pub mining: bool,
    /// Grid carbon intensity for this interval (g CO₂/kWh), overriding the
    /// configured default, e.g. from a grid-intensity signal.
    pub grid_g_per_kwh: Option<f64>,
}

impl Interval {
    /// The interval covered by `sample`, ending now at `end`, with the
    /// hashes of `hashrate_hs` over its length. Saves the host from
    /// converting units by hand.
    pub fn from_sample(
        end: Timestamp,
        sample: &crate::Sample,
        hashrate_hs: f64,
        mining: bool,
        grid_g_per_kwh: Option<f64>,
    ) -> Self {
        let secs = sample.interval.as_secs_f64();
        Self {
            end,
            secs,
            joules: sample.joules,
            hashes: hashrate_hs * secs,
            mining,
            grid_g_per_kwh,
        }
    }
}

/// The persisted form of a ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LedgerState {
    pub(crate) time_zone: String,
    pub(crate) total_kwh: f64,
    pub(crate) total_hashes: f64,
    pub(crate) days: Vec<(Date, DayRecord)>,
}

/// Energy counters plus bounded per-day history.
#[derive(Debug, Clone)]
pub struct EnergyLedger {
    config: LedgerConfig,
    tz: TimeZone,
    total_kwh: f64,
    total_hashes: f64,
    days: BTreeMap<Date, DayRecord>,
}

fn check(what: &'static str, value: f64, max: f64) -> Result<f64, LedgerError> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        Ok(value)
    } else {
        Err(LedgerError::InvalidInput { what, value })
    }
}

/// Truncates to [`MAX_LABEL_CHARS`] on a character boundary and replaces
/// control characters (plugin-supplied reasons end up on terminals).
fn label(s: &str) -> String {
    s.chars()
        .take(MAX_LABEL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl EnergyLedger {
    /// An empty ledger; fails if the time zone is unknown or the CO₂
    /// intensity is not a non-negative number.
    pub fn new(config: LedgerConfig) -> Result<Self, LedgerError> {
        let tz = TimeZone::get(&config.time_zone).map_err(|e| LedgerError::TimeZone {
            name: config.time_zone.clone(),
            reason: e.to_string(),
        })?;
        if let Some(g) = config.co2_g_per_kwh {
            check("CO2 intensity", g, f64::MAX)?;
        }
        Ok(Self {
            config,
            tz,
            total_kwh: 0.0,
            total_hashes: 0.0,
            days: BTreeMap::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The configured time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Local calendar date of `at`.
    pub fn local_date(&self, at: Timestamp) -> Date {
        at.to_zoned(self.tz.clone()).date()
    }

    /// The instant local `date` begins (its first moment, even when
    /// midnight is skipped by a DST transition).
    pub fn start_of(&self, date: Date) -> Result<Timestamp, LedgerError> {
        Ok(date.to_zoned(self.tz.clone())?.timestamp())
    }

    /// The record of one local day, if anything happened that day.
    pub fn day(&self, date: Date) -> Option<&DayRecord> {
        self.days.get(&date)
    }

    /// All kept day records, oldest first.
    pub fn days(&self) -> impl Iterator<Item = (Date, &DayRecord)> {
        self.days.iter().map(|(d, r)| (*d, r))
    }

    /// Splits `[end - secs, end]` into `(local date, seconds)` pieces.
    fn split(&self, end: Timestamp, secs: f64) -> Result<Vec<(Date, f64)>, LedgerError> {
        let secs = check("interval seconds", secs, MAX_INTERVAL_S)?;
        if secs == 0.0 {
            return Ok(vec![(self.local_date(end), 0.0)]);
        }
        let start = end.checked_sub(SignedDuration::try_from_secs_f64(secs)?)?;
        let mut pieces = Vec::new();
        let mut cur = start;
        while cur < end {
            let date = self.local_date(cur);
            let next = self.start_of(date.tomorrow()?)?;
            if next <= cur {
                // Cannot happen with a sane tz database; never loop forever.
                return Err(LedgerError::InvalidInput {
                    what: "day boundary",
                    value: next.as_second() as f64,
                });
            }
            let piece_end = next.min(end);
            pieces.push((date, piece_end.duration_since(cur).as_secs_f64()));
            cur = piece_end;
        }
        Ok(pieces)
    }

    /// Adds a metered interval, split across local days as needed.
    pub fn record(&mut self, iv: &Interval) -> Result<(), LedgerError> {
        let joules = check("joules", iv.joules, f64::MAX)?;
        let hashes = check("hashes", iv.hashes, f64::MAX)?;
        let intensity = match iv.grid_g_per_kwh {
            Some(g) => Some(check("grid CO2 intensity", g, f64::MAX)?),
            None => self.config.co2_g_per_kwh,
        };
        let pieces = self.split(iv.end, iv.secs)?;
        let kwh = joules / JOULES_PER_KWH;
        for (date, piece_s) in pieces {
            let share = if iv.secs > 0.0 {
                piece_s / iv.secs
            } else {
                1.0
            };
            let day = self.days.entry(date).or_default();
            day.kwh += kwh * share;
            day.metered_s += piece_s;
            day.hashes += hashes * share;
            if iv.mining {
                day.mining_s += piece_s;
            }
            if let Some(g) = intensity {
                day.co2_g += kwh * share * g;
            }
        }
        self.total_kwh += kwh;
        self.total_hashes += hashes;
        self.prune();
        Ok(())
    }

    /// Adds `secs` of pause ending at `end`, decided by `policy` for
    /// `reason` (the winning policy's decision reason).
    pub fn record_pause(
        &mut self,
        end: Timestamp,
        secs: f64,
        policy: &str,
        reason: &str,
    ) -> Result<(), LedgerError> {
        let pieces = self.split(end, secs)?;
        let (policy, reason) = (label(policy), label(reason));
        for (date, piece_s) in pieces {
            let day = self.days.entry(date).or_default();
            let p = if day.paused.contains_key(&policy) || day.paused.len() < MAX_POLICIES_PER_DAY {
                policy.clone()
            } else {
                OTHER.to_owned()
            };
            let reasons = day.paused.entry(p).or_default();
            let r = if reasons.contains_key(&reason) || reasons.len() < MAX_REASONS_PER_POLICY {
                reason.clone()
            } else {
                OTHER.to_owned()
            };
            *reasons.entry(r).or_default() += piece_s;
        }
        self.prune();
        Ok(())
    }

    /// Drops the oldest day records beyond [`LedgerConfig::history_days`].
    /// Counting records rather than comparing with "now" means one sample
    /// with a wildly wrong clock cannot wipe the real history.
    fn prune(&mut self) {
        while self.days.len() > self.config.history_days.max(1) {
            self.days.pop_first();
        }
    }

    /// Counters for the local day and month containing `at`.
    pub fn counters(&self, at: Timestamp) -> EnergyCounters {
        let date = self.local_date(at);
        let today = self.days.get(&date);
        let (month_kwh, month_co2_g) = self
            .days
            .range(date.first_of_month()..=date.last_of_month())
            .fold((0.0, 0.0), |(k, c), (_, d)| (k + d.kwh, c + d.co2_g));
        EnergyCounters {
            date,
            today_kwh: today.map_or(0.0, |d| d.kwh),
            month_kwh,
            total_kwh: self.total_kwh,
            today_co2_g: today.map_or(0.0, |d| d.co2_g),
            month_co2_g,
            total_hashes: self.total_hashes,
        }
    }

    pub(crate) fn to_state(&self) -> LedgerState {
        LedgerState {
            time_zone: self.config.time_zone.clone(),
            total_kwh: self.total_kwh,
            total_hashes: self.total_hashes,
            days: self.days.iter().map(|(d, r)| (*d, r.clone())).collect(),
        }
    }

    /// Rebuilds a ledger from saved state under the current `config`. Days
    /// keep the dates they were recorded under even if the time zone was
    /// changed since.
    pub(crate) fn from_state(
        config: LedgerConfig,
        state: LedgerState,
    ) -> Result<Self, LedgerError> {
        if state.time_zone != config.time_zone {
            tracing::warn!(
                saved = %state.time_zone,
                configured = %config.time_zone,
                "energy time zone changed; past days keep their dates"
            );
        }
        let mut ledger = Self::new(config)?;
        ledger.total_kwh = check("saved total kWh", state.total_kwh, f64::MAX)?;
        ledger.total_hashes = check("saved total hashes", state.total_hashes, f64::MAX)?;
        ledger.days = state.days.into_iter().collect();
        ledger.prune();
        Ok(ledger)
    }
}
