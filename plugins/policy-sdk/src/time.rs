//! Civil-calendar arithmetic for local wall-clock time.
//!
//! The host passes the time zone offset valid at this instant, so a plugin
//! needs no time zone database: local time is `utc + offset`, and only the
//! proleptic Gregorian calendar has to be computed here.

use serde::{Deserialize, Serialize};

/// Milliseconds in one day, used to split local time into date and time of day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Day of the week; schedules are written per weekday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// All days, Monday first, so callers can iterate and index by
    /// [`Weekday::index`].
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// 0 for Monday .. 6 for Sunday, for compact bit sets of days.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The day before, for windows that started yesterday and cross midnight.
    pub fn pred(self) -> Weekday {
        Weekday::ALL[(self.index() + 6) % 7]
    }

    /// Three-letter English name for reasons ("Mon").
    pub fn name(self) -> &'static str {
        match self {
            Weekday::Mon => "Mon",
            Weekday::Tue => "Tue",
            Weekday::Wed => "Wed",
            Weekday::Thu => "Thu",
            Weekday::Fri => "Fri",
            Weekday::Sat => "Sat",
            Weekday::Sun => "Sun",
        }
    }
}

/// A calendar date; policies compare dates to detect day and month rollover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    /// Year (proleptic Gregorian), e.g. 2026.
    pub year: i32,
    /// Month 1..=12.
    pub month: u8,
    /// Day of month 1..=31.
    pub day: u8,
}

impl Date {
    /// Days since 1970-01-01 for this date, the inverse of [`Date::from_days`].
    pub fn to_days(self) -> i64 {
        let m = i64::from(self.month);
        let d = i64::from(self.day);
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01 (negative: before).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            // Any i64 ms timestamp maps to a year well inside i32.
            year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
            month: month as u8,
            day: day as u8,
        }
    }

    /// Day of the week of this date.
    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday (index 3).
        let idx = (self.to_days() + 3).rem_euclid(7) as usize;
        Weekday::ALL[idx]
    }

    /// Number of days in this date's month, for pro-rata monthly quotas.
    pub fn days_in_month(self) -> u8 {
        match self.month {
            4 | 6 | 9 | 11 => 30,
            2 if is_leap(self.year) => 29,
            2 => 28,
            _ => 31,
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Whether `year` has a 29 February.
pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Local wall-clock time, split the way schedules and quotas need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Local calendar date.
    pub date: Date,
    /// Local day of the week.
    pub weekday: Weekday,
    /// Hour 0..=23.
    pub hour: u8,
    /// Minute 0..=59.
    pub minute: u8,
    /// Second 0..=59.
    pub second: u8,
    /// Milliseconds since local midnight (0..86_400_000).
    pub ms_of_day: u32,
}

impl LocalTime {
    /// Local time for a UTC instant and the offset valid at that instant.
    pub fn from_utc(utc_ms: i64, offset_s: i32) -> LocalTime {
        let local = utc_ms.saturating_add(i64::from(offset_s) * 1000);
        let days = local.div_euclid(MS_PER_DAY);
        let ms = local.rem_euclid(MS_PER_DAY);
        let date = Date::from_days(days);
        let secs = ms / 1000;
        LocalTime {
            date,
            weekday: date.weekday(),
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
            ms_of_day: ms as u32,
        }
    }

    /// Minutes since local midnight, the unit schedule windows use.
    pub fn minute_of_day(&self) -> u32 {
        u32::from(self.hour) * 60 + u32::from(self.minute)
    }

    /// Fraction of the local day elapsed, 0.0..1.0 (a day counts as 24 h,
    /// also on the 23 h and 25 h days of a DST change).
    pub fn day_fraction(&self) -> f64 {
        f64::from(self.ms_of_day) / MS_PER_DAY as f64
    }

    /// Fraction of the local month elapsed, 0.0..1.0.
    pub fn month_fraction(&self) -> f64 {
        (f64::from(self.date.day - 1) + self.day_fraction()) / f64::from(self.date.days_in_month())
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:02}:{:02}",
            self.weekday.name(),
            self.date,
            self.hour,
            self.minute
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_thursday_1970_01_01() {
        let t = LocalTime::from_utc(0, 0);
        assert_eq!(
            t.date,
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(t.weekday, Weekday::Thu);
        assert_eq!((t.hour, t.minute, t.second), (0, 0, 0));
    }

    #[test]
    fn known_dates_round_trip() {
        // 2026-03-29 is a Sunday (EU DST start); 2000-02-29 a Tuesday.
        for (y, m, d, wd) in [
            (2026, 3, 29, Weekday::Sun),
            (2026, 10, 25, Weekday::Sun),
            (2000, 2, 29, Weekday::Tue),
            (1969, 12, 31, Weekday::Wed),
            (2024, 12, 31, Weekday::Tue),
        ] {
            let date = Date {
                year: y,
                month: m,
                day: d,
            };
            assert_eq!(Date::from_days(date.to_days()), date);
            assert_eq!(date.weekday(), wd, "{date}");
        }
        assert_eq!(
            Date {
                year: 2026,
                month: 3,
                day: 29
            }
            .to_days(),
            20_541
        );
    }

    #[test]
    fn every_day_round_trips_over_centuries() {
        let mut prev = Date::from_days(-200_000);
        for days in -199_999..200_000 {
            let date = Date::from_days(days);
            assert_eq!(date.to_days(), days);
            assert!(date > prev);
            assert!(date.day >= 1 && date.day <= date.days_in_month());
            prev = date;
        }
    }

    #[test]
    fn offset_moves_the_wall_clock_across_midnight() {
        // 2026-03-28T23:30Z is 2026-03-29 00:30 in CET (+1 h).
        let utc = Date {
            year: 2026,
            month: 3,
            day: 28,
        }
        .to_days()
            * MS_PER_DAY
            + 23 * 3_600_000
            + 30 * 60_000;
        let t = LocalTime::from_utc(utc, 3600);
        assert_eq!(
            t.date,
            Date {
                year: 2026,
                month: 3,
                day: 29
            }
        );
        assert_eq!((t.hour, t.minute), (0, 30));
        assert_eq!(t.weekday, Weekday::Sun);
        let west = LocalTime::from_utc(utc, -8 * 3600);
        assert_eq!((west.date.day, west.hour), (28, 15));
    }

    #[test]
    fn fractions() {
        let t = LocalTime::from_utc(
            Date {
                year: 2026,
                month: 2,
                day: 15,
            }
            .to_days()
                * MS_PER_DAY
                + 43_200_000,
            0,
        );
        assert!((t.day_fraction() - 0.5).abs() < 1e-12);
        assert!((t.month_fraction() - 14.5 / 28.0).abs() < 1e-12);
    }
}
