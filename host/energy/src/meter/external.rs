//! An external meter whose readings the host pushes in.
//!
//! Smart plugs, DIN-rail meters and home-energy systems publish power (W)
//! or a cumulative energy register (kWh) over HTTP or MQTT. The host owns
//! that I/O and pushes each reading here; this source turns the readings
//! into per-interval joules. A cumulative register is preferred when
//! present (it cannot miss energy between readings); otherwise the latest
//! power reading is held over the interval.

use std::time::{Duration, Instant};

use super::{MeterError, PowerSource, Sample, avg_watts, elapsed};
use crate::JOULES_PER_KWH;

const NAME: &str = "external";

/// Readings pushed by the host, turned into samples.
#[derive(Debug, Clone)]
pub struct ExternalSource {
    max_age: Duration,
    watts: Option<(Instant, f64)>,
    kwh: Option<(Instant, f64)>,
    prev_kwh_reading: Option<(Instant, f64)>,
    kwh_baseline: Option<f64>,
    last: Option<Instant>,
}

fn check(what: &'static str, value: f64) -> Result<f64, MeterError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(MeterError::InvalidInput { what, value })
    }
}

impl ExternalSource {
    /// A source whose readings are trusted for at most `max_age`; older
    /// readings make [`PowerSource::sample`] fail with
    /// [`MeterError::Stale`] so the host falls back to the model.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            watts: None,
            kwh: None,
            prev_kwh_reading: None,
            kwh_baseline: None,
            last: None,
        }
    }

    /// Records a power reading in watts, taken at `at`.
    pub fn push_watts(&mut self, at: Instant, watts: f64) -> Result<(), MeterError> {
        self.watts = Some((at, check("external watts", watts)?));
        Ok(())
    }

    /// Records a reading of a cumulative energy register in kWh, taken at
    /// `at`. A value lower than the previous one means the meter was reset
    /// or replaced; counting restarts from it.
    pub fn push_total_kwh(&mut self, at: Instant, kwh: f64) -> Result<(), MeterError> {
        let kwh = check("external kWh", kwh)?;
        self.prev_kwh_reading = self.kwh;
        self.kwh = Some((at, kwh));
        Ok(())
    }

    fn fresh<T: Copy>(&self, r: Option<(Instant, T)>, now: Instant) -> Option<T> {
        r.filter(|(at, _)| now.saturating_duration_since(*at) <= self.max_age)
            .map(|(_, v)| v)
    }

    /// Power implied by the last two register readings.
    fn register_watts(&self) -> Option<f64> {
        let (t0, e0) = self.prev_kwh_reading?;
        let (t1, e1) = self.kwh?;
        let dt = t1.saturating_duration_since(t0).as_secs_f64();
        (dt > 0.0 && e1 >= e0).then(|| (e1 - e0) * JOULES_PER_KWH / dt)
    }
}

impl PowerSource for ExternalSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample(&mut self, now: Instant, _hashrate_hs: f64) -> Result<Sample, MeterError> {
        let fresh_watts = self.fresh(self.watts, now);
        let fresh_kwh = self.fresh(self.kwh, now);
        if fresh_watts.is_none() && fresh_kwh.is_none() {
            // Energy counted during the outage belongs to the fallback;
            // restart the interval when readings resume.
            self.last = None;
            self.kwh_baseline = None;
            let newest = [self.watts.map(|r| r.0), self.kwh.map(|r| r.0)]
                .into_iter()
                .flatten()
                .max();
            return Err(match newest {
                Some(at) => MeterError::Stale {
                    age_s: now.saturating_duration_since(at).as_secs_f64(),
                    max_s: self.max_age.as_secs_f64(),
                },
                None => MeterError::Unavailable {
                    source_name: NAME,
                    reason: "no reading received yet".into(),
                },
            });
        }
        let had_baseline = self.last.is_some();
        let interval = if had_baseline {
            elapsed(self.last, now)
        } else {
            Duration::ZERO
        };
        self.last = Some(now);
        let joules = if let Some(kwh) = fresh_kwh {
            let base = self.kwh_baseline.replace(kwh);
            match base {
                Some(b) if kwh >= b && had_baseline => (kwh - b) * JOULES_PER_KWH,
                Some(b) if kwh < b => {
                    self.last = None;
                    return Err(MeterError::BadCounter {
                        path: "external kWh register".into(),
                        content: format!("went back from {b} to {kwh} (meter reset?)"),
                    });
                }
                _ => 0.0,
            }
        } else {
            // The register (if any) is stale: restart it when it resumes so
            // this interval is not counted twice.
            self.kwh_baseline = None;
            fresh_watts.unwrap_or(0.0) * interval.as_secs_f64()
        };
        let watts = fresh_watts
            .or_else(|| fresh_kwh.and(self.register_watts()))
            .or_else(|| avg_watts(joules, interval));
        Ok(Sample {
            watts,
            joules,
            interval,
            source: NAME,
        })
    }
}
