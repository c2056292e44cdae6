//! What the dashboard charts: the hashrate over the last hour (a point
//! every 10 s, total and per device) and every change of the mining
//! decision over the last 24 hours, each with who made it and why.
//! Bounded ring buffers, fed by the once-a-second sampler.

use std::collections::VecDeque;

use serde::Serialize;

use crate::policy::Mode;
use crate::policy::arbiter::Verdict;

/// Seconds between hashrate points.
pub const INTERVAL_SECS: u64 = 10;

/// Hashrate points kept: one hour.
const POINTS: usize = 360;

/// Decisions kept at most (and none older than a day).
const DECISIONS: usize = 2_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// One change of the mining decision.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Decision {
    /// When it took effect, UTC ms.
    pub at_ms: i64,
    /// `run`, `limit` or `pause`.
    pub mode: &'static str,
    /// The power limit, for `limit`.
    pub watts: Option<f64>,
    /// Who decided (a policy, `manual`, `default`).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A device's hashrate series.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceSeries {
    /// The device.
    pub name: String,
    /// H/s at each of `t_ms` (`null` before the device existed).
    pub hs: Vec<Option<f64>>,
}

/// The hashrate chart's data.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HashrateSeries {
    /// Seconds between points.
    pub interval_secs: u64,
    /// Times, UTC ms, oldest first.
    pub t_ms: Vec<i64>,
    /// Total H/s at each time.
    pub total_hs: Vec<Option<f64>>,
    /// Per device.
    pub devices: Vec<DeviceSeries>,
}

/// The dashboard's history.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// The last hour of hashrate.
    pub hashrate: HashrateSeries,
    /// Decision changes of the last 24 h, oldest first.
    pub decisions: Vec<Decision>,
}

/// The ring buffers.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<(i64, f64, Vec<f64>)>,
    last_point_ms: Option<i64>,
    decisions: VecDeque<Decision>,
}

fn mode_parts(mode: &Mode) -> (&'static str, Option<f64>) {
    match mode {
        Mode::Run => ("run", None),
        Mode::Limit(w) => ("limit", Some(*w)),
        Mode::Pause => ("pause", None),
    }
}

impl History {
    /// Records the state at `now_ms`: a hashrate point every
    /// [`INTERVAL_SECS`], and a decision row when the mode or the deciding
    /// party changed. A reason that only rewords itself (a countdown, a
    /// signal's new value) updates the current row instead, so a
    /// manual pause or a moving price cannot flood the timeline.
    pub fn record(&mut self, now_ms: i64, total_hs: f64, devices_hs: Vec<f64>, verdict: &Verdict) {
        let due = self
            .last_point_ms
            .is_none_or(|t| now_ms - t >= (INTERVAL_SECS * 1000) as i64);
        if due {
            self.last_point_ms = Some(now_ms);
            if self.points.len() == POINTS {
                self.points.pop_front();
            }
            self.points.push_back((now_ms, total_hs, devices_hs));
        }
        let (mode, watts) = mode_parts(&verdict.mode);
        let last = self.decisions.back_mut();
        let changed = last
            .as_ref()
            .is_none_or(|d| d.mode != mode || d.watts != watts || d.by != verdict.by);
        if !changed {
            if let Some(d) = last
                && d.reason != verdict.reason
            {
                d.reason.clone_from(&verdict.reason);
            }
        } else {
            if self.decisions.len() == DECISIONS {
                self.decisions.pop_front();
            }
            self.decisions.push_back(Decision {
                at_ms: now_ms,
                mode,
                watts,
                by: verdict.by.clone(),
                reason: verdict.reason.clone(),
            });
        }
        // Keep the decision in force a day ago (the timeline's start).
        while self.decisions.len() > 1 && self.decisions[1].at_ms <= now_ms - DAY_MS {
            self.decisions.pop_front();
        }
    }

    /// The chart data, with `names` for the devices.
    pub fn view(&self, names: &[String]) -> HistoryView {
        let devices = names
            .iter()
            .enumerate()
            .map(|(i, name)| DeviceSeries {
                name: name.clone(),
                hs: self
                    .points
                    .iter()
                    .map(|(_, _, d)| d.get(i).copied())
                    .collect(),
            })
            .collect();
        HistoryView {
            hashrate: HashrateSeries {
                interval_secs: INTERVAL_SECS,
                t_ms: self.points.iter().map(|p| p.0).collect(),
                total_hs: self.points.iter().map(|p| Some(p.1)).collect(),
                devices,
            },
            decisions: self.decisions.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(mode: Mode, by: &str, reason: &str) -> Verdict {
        Verdict {
            mode,
            by: by.into(),
            reason: reason.into(),
            since_ms: 0,
        }
    }

    #[test]
    fn keeps_an_hour_of_points_and_a_day_of_decisions() {
        let mut h = History::default();
        let run = verdict(Mode::Run, "default", "no policy restricts mining");
        let pause = verdict(Mode::Pause, "surplus-only", "export 0.4 kW < 1.0 kW");
        for s in 0..7200i64 {
            let v = if (1000..2000).contains(&s) {
                &pause
            } else {
                &run
            };
            h.record(s * 1000, 10.0, vec![4.0, 6.0], v);
        }
        let view = h.view(&["cpu".into(), "sim".into()]);
        assert_eq!(view.hashrate.t_ms.len(), 360);
        assert_eq!(*view.hashrate.t_ms.last().unwrap(), 7190 * 1000);
        assert_eq!(view.hashrate.devices[1].hs[0], Some(6.0));
        let modes: Vec<_> = view.decisions.iter().map(|d| (d.at_ms, d.mode)).collect();
        assert_eq!(
            modes,
            [(0, "run"), (1_000_000, "pause"), (2_000_000, "run")]
        );
        // A reworded reason updates the current row; a new decider adds one.
        h.record(
            7_201_000,
            10.0,
            vec![],
            &verdict(Mode::Run, "default", "59 min left"),
        );
        h.record(
            7_202_000,
            10.0,
            vec![],
            &verdict(Mode::Run, "default", "58 min left"),
        );
        let last = h.view(&[]).decisions.last().cloned().unwrap();
        assert_eq!(
            (last.at_ms, last.reason.as_str()),
            (2_000_000, "58 min left")
        );
        h.record(
            7_203_000,
            10.0,
            vec![],
            &verdict(Mode::Run, "price", "cheap"),
        );
        assert_eq!(h.view(&[]).decisions.len(), 4);
        // A day later only the decision in force then remains.
        h.record(
            7_203_000 + DAY_MS + 1,
            0.0,
            vec![],
            &verdict(Mode::Run, "price", "cheap"),
        );
        assert_eq!(h.view(&[]).decisions.len(), 1);
    }
}
