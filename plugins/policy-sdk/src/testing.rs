//! A tiny simulator for scenario tests on simulated time: it feeds a policy
//! one [`Inputs`] after another and, like the host, carries the returned
//! state forward and tracks the applied mode and for how long it applies.

use crate::Policy;
use crate::types::{Decision, Inputs, Mode};

/// Drives a policy the way the host does (single policy, no arbitration).
#[derive(Debug)]
pub struct Harness<P> {
    /// The policy under test.
    pub policy: P,
    state: Vec<u8>,
    applied: Mode,
    applied_since_ms: Option<i64>,
}

impl<P: Policy> Harness<P> {
    /// A harness around an already configured policy; the appliance starts
    /// in `initial` mode (as if applied since forever).
    pub fn new(policy: P, initial: Mode) -> Harness<P> {
        Harness {
            policy,
            state: Vec::new(),
            applied: initial,
            applied_since_ms: None,
        }
    }

    /// Evaluates `inputs` with this harness's state, applied mode and
    /// applied-for time filled in, then applies the decision.
    pub fn step(&mut self, mut inputs: Inputs) -> Decision {
        let now = inputs.now.utc_ms;
        inputs.state = self.state.clone();
        inputs.applied = self.applied;
        inputs.applied_for_ms = match self.applied_since_ms {
            Some(since) => u64::try_from(now.saturating_sub(since)).unwrap_or(0),
            None => u64::from(u32::MAX),
        };
        let decision = self.policy.evaluate(&inputs);
        if let Some(state) = &decision.state {
            self.state = state.clone();
        }
        if decision.mode != self.applied {
            self.applied = decision.mode;
            self.applied_since_ms = Some(now);
        }
        decision
    }

    /// The currently stored state bytes (to simulate a restart elsewhere).
    pub fn state(&self) -> &[u8] {
        &self.state
    }
}

/// Asserts a decision's mode and that its reason contains `reason_part`,
/// with a message that shows the whole decision (row `label`).
pub fn check(label: &str, decision: &Decision, mode: Mode, reason_part: &str) {
    assert_eq!(decision.mode, mode, "{label}: mode; decision {decision:?}");
    assert!(
        decision.reason.contains(reason_part),
        "{label}: reason {:?} lacks {reason_part:?}",
        decision.reason
    );
}
