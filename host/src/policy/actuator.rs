//! Applying a verdict to the hardware. For CPU hashing: pause parks the
//! workers; a power limit becomes a duty cycle (run/park in short time
//! slices) chosen with a linear power model `watts ≈ idle + k × duty`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Mode;

/// Applies the engine's arbitrated mode; implemented by the host.
pub trait Actuator: Send + Sync {
    /// Makes the appliance do `mode` from now on. Must return quickly.
    fn apply(&self, mode: &Mode);
}

/// Something that can stop and resume hashing (the CPU workers).
pub trait PauseSwitch: Send + Sync {
    /// Parks (`true`) or resumes (`false`) hashing.
    fn set_paused(&self, paused: bool);
}

impl PauseSwitch for hashwatt_hash::Workers {
    fn set_paused(&self, paused: bool) {
        hashwatt_hash::Workers::set_paused(self, paused);
    }
}

/// Linear power model of the appliance: `watts = idle_w + k_w × duty`,
/// duty in 0..=1 (the share of time the hashing threads run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerModel {
    /// Draw with hashing parked, watts.
    pub idle_w: f64,
    /// Extra draw at full hashing, watts.
    pub k_w: f64,
}

impl PowerModel {
    /// The duty cycle that meets `watts` (0..=1; 0 if even idle exceeds it).
    pub fn duty_for(&self, watts: f64) -> f64 {
        if !(self.k_w.is_finite() && self.k_w > 0.0 && watts.is_finite()) {
            return 0.0;
        }
        ((watts - self.idle_w) / self.k_w).clamp(0.0, 1.0)
    }
}

/// CPU actuator: pause/run act immediately on the [`PauseSwitch`]; a limit
/// is duty-cycled by a timer task with period `period`.
pub struct CpuActuator {
    switch: Arc<dyn PauseSwitch>,
    model: PowerModel,
    mode: watch::Sender<Mode>,
    last: Mutex<Option<Mode>>,
}

impl CpuActuator {
    /// Creates the actuator and spawns its duty-cycle task on the current
    /// tokio runtime (it ends when the actuator is dropped).
    pub fn spawn(switch: Arc<dyn PauseSwitch>, model: PowerModel, period: Duration) -> Arc<Self> {
        let (tx, rx) = watch::channel(Mode::Run);
        tokio::spawn(duty_loop(switch.clone(), model, period, rx));
        Arc::new(CpuActuator {
            switch,
            model,
            mode: tx,
            last: Mutex::new(None),
        })
    }

    /// The power model in use.
    pub fn model(&self) -> PowerModel {
        self.model
    }

    /// The mode last applied.
    pub fn current(&self) -> Option<Mode> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Actuator for CpuActuator {
    fn apply(&self, mode: &Mode) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(*mode);
        match mode {
            Mode::Pause => self.switch.set_paused(true),
            Mode::Run => self.switch.set_paused(false),
            Mode::Limit(_) => {}
        }
        self.mode.send_replace(*mode);
    }
}

/// Runs `switch` at the duty cycle `mode` asks for until the sender is
/// dropped; run and pause are applied as they come.
pub(crate) async fn duty_loop(
    switch: Arc<dyn PauseSwitch>,
    model: PowerModel,
    period: Duration,
    mut rx: watch::Receiver<Mode>,
) {
    loop {
        let mode = *rx.borrow_and_update();
        let duty = match mode {
            Mode::Limit(w) => model.duty_for(w),
            // Run and pause were applied synchronously by `apply`; applying
            // them again here undoes a slice this task may have switched
            // on or off in between.
            Mode::Run | Mode::Pause => {
                switch.set_paused(mode == Mode::Pause);
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        if duty >= 0.999 || duty <= 0.001 {
            switch.set_paused(duty <= 0.001);
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        let on = period.mul_f64(duty);
        let off = period.saturating_sub(on);
        for (paused, slice) in [(false, on), (true, off)] {
            switch.set_paused(paused);
            tokio::select! {
                _ = tokio::time::sleep(slice) => {}
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // Start over with the new mode at once.
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duty_from_model() {
        let m = PowerModel {
            idle_w: 20.0,
            k_w: 100.0,
        };
        assert_eq!(m.duty_for(70.0), 0.5);
        assert_eq!(m.duty_for(10.0), 0.0);
        assert_eq!(m.duty_for(500.0), 1.0);
        assert_eq!(m.duty_for(f64::NAN), 0.0);
        let broken = PowerModel {
            idle_w: 0.0,
            k_w: 0.0,
        };
        assert_eq!(broken.duty_for(100.0), 0.0);
    }
}
