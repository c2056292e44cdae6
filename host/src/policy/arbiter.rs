//! Arbitration between policies: the most restrictive decision wins
//! (pause > the lowest power limit > run); a manual override by the
//! operator sits above all policies.

use std::cmp::Ordering;
use std::fmt;

use super::Mode;

/// Who decided when no policy is enabled.
pub const BY_DEFAULT: &str = "default";
/// Who decided when the operator's override applies.
pub const BY_OVERRIDE: &str = "manual override";

/// The operator's manual override.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Override {
    /// The mode to force (pause, a limit, or run).
    pub mode: Mode,
    /// UTC ms at which it ends by itself; `None` = until cleared.
    pub until_ms: Option<i64>,
    /// Free text shown in the reason (e.g. who set it).
    pub note: String,
}

impl Override {
    /// Pause for `minutes` from `now_ms` (`None`: until cleared).
    pub fn pause(now_ms: i64, minutes: Option<u32>) -> Self {
        Override {
            mode: Mode::Pause,
            until_ms: minutes.map(|m| now_ms.saturating_add(i64::from(m) * 60_000)),
            note: String::new(),
        }
    }

    /// Force full power, ignoring every policy, until cleared.
    pub fn force_run() -> Self {
        Override {
            mode: Mode::Run,
            until_ms: None,
            note: String::new(),
        }
    }

    /// Whether the override still applies at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }

    fn reason(&self, now_ms: i64) -> String {
        let base = match self.until_ms {
            None => "set by the operator until cleared".to_string(),
            Some(until) => {
                let left_s = until.saturating_sub(now_ms).max(0) / 1000;
                format!(
                    "set by the operator, {} min {} s left",
                    left_s / 60,
                    left_s % 60
                )
            }
        };
        if self.note.is_empty() {
            base
        } else {
            format!("{base} ({})", self.note)
        }
    }
}

/// The outcome of arbitration, applied to the hardware and shown to the operator.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Verdict {
    /// What the appliance does.
    pub mode: Mode,
    /// The policy that decided, [`BY_OVERRIDE`] or [`BY_DEFAULT`].
    pub by: String,
    /// Why (the winning policy's reason).
    pub reason: String,
    /// UTC ms since which `mode` applies.
    pub since_ms: i64,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}: {}", self.mode, self.by, self.reason)
    }
}

/// Orders modes by restrictiveness: `Greater` = more restrictive.
pub fn restrictiveness(a: &Mode, b: &Mode) -> Ordering {
    match (a, b) {
        (Mode::Pause, Mode::Pause) | (Mode::Run, Mode::Run) => Ordering::Equal,
        (Mode::Pause, _) | (_, Mode::Run) => Ordering::Greater,
        (_, Mode::Pause) | (Mode::Run, _) => Ordering::Less,
        // Lower watts = more restrictive. Limits are validated finite.
        (Mode::Limit(x), Mode::Limit(y)) => y.partial_cmp(x).unwrap_or(Ordering::Equal),
    }
}

/// One policy's effective decision (its own or its fail-safe).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Policy name.
    pub name: String,
    /// Its mode.
    pub mode: Mode,
    /// Its reason.
    pub reason: String,
}

/// Picks the mode, who decided and why: an active override first, then
/// the most restrictive candidate (the first one listed on ties).
pub fn arbitrate(
    candidates: &[Candidate],
    manual: Option<&Override>,
    now_ms: i64,
) -> (Mode, String, String) {
    if let Some(o) = manual.filter(|o| o.active(now_ms)) {
        return (o.mode, BY_OVERRIDE.into(), o.reason(now_ms));
    }
    let mut best: Option<&Candidate> = None;
    for c in candidates {
        if best.is_none_or(|b| restrictiveness(&c.mode, &b.mode) == Ordering::Greater) {
            best = Some(c);
        }
    }
    match best {
        Some(c) => (c.mode, c.name.clone(), c.reason.clone()),
        None => (
            Mode::Run,
            BY_DEFAULT.into(),
            "no energy policy enabled".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, mode: Mode) -> Candidate {
        Candidate {
            name: name.into(),
            mode,
            reason: format!("{name} says so"),
        }
    }

    #[test]
    fn most_restrictive_wins() {
        let all = [
            c("a", Mode::Run),
            c("b", Mode::Limit(500.0)),
            c("c", Mode::Limit(300.0)),
            c("d", Mode::Limit(300.0)),
        ];
        assert_eq!(arbitrate(&all, None, 0).1, "c");
        let mut with_pause = all.to_vec();
        with_pause.insert(0, c("p", Mode::Limit(0.0)));
        with_pause.push(c("q", Mode::Pause));
        assert_eq!(arbitrate(&with_pause, None, 0).0, Mode::Pause);
        assert_eq!(arbitrate(&with_pause, None, 0).1, "q");
        assert_eq!(
            arbitrate(&[c("a", Mode::Run), c("b", Mode::Run)], None, 0).1,
            "a"
        );
        assert_eq!(arbitrate(&[], None, 0).1, BY_DEFAULT);
    }

    #[test]
    fn override_sits_above_policies_until_it_expires() {
        let all = [c("p", Mode::Pause)];
        let o = Override::force_run();
        assert_eq!(arbitrate(&all, Some(&o), 0).0, Mode::Run);
        let o = Override::pause(0, Some(10));
        let (mode, by, reason) = arbitrate(&[c("a", Mode::Run)], Some(&o), 60_000);
        assert_eq!((mode, by.as_str()), (Mode::Pause, BY_OVERRIDE));
        assert!(reason.contains("9 min 0 s left"), "{reason}");
        assert_eq!(arbitrate(&[c("a", Mode::Run)], Some(&o), 600_000).1, "a");
    }

    #[test]
    fn verdict_display() {
        let v = Verdict {
            mode: Mode::Pause,
            by: "surplus-only".into(),
            reason: "grid export 0.4 kW < 1.0 kW".into(),
            since_ms: 0,
        };
        assert_eq!(
            v.to_string(),
            "paused by surplus-only: grid export 0.4 kW < 1.0 kW"
        );
        let v = Verdict {
            mode: Mode::Limit(350.0),
            ..v
        };
        assert!(v.to_string().starts_with("limited to 350 W by"));
    }
}
