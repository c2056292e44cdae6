//! The thermal loop driving an emulated board on virtual time.

use std::time::Duration;

use hashwatt_asic::board::Board;
use hashwatt_asic::board::emulated::EmulatedBoard;
use hashwatt_asic::thermal::{
    FrequencyAction, ThermalAction, ThermalConfig, ThermalController, ThermalError, ThermalInput,
};

const TICK: Duration = Duration::from_secs(1);
const NOMINAL: f32 = 525.0;

/// A board, its controller and a caller that applies every action the way
/// the miner would: fan duty, frequency, rail off while stopped.
struct Rig {
    emu: EmulatedBoard,
    board: Board,
    ctl: ThermalController,
    now: Duration,
    frequency: f32,
    actions: Vec<ThermalAction>,
}

impl Rig {
    fn new(chips: usize) -> Self {
        Self::with_config(chips, ThermalConfig::default())
    }

    fn with_config(chips: usize, config: ThermalConfig) -> Self {
        let emu = EmulatedBoard::new(chips, 25.0);
        emu.set_all_load(f64::from(NOMINAL)).unwrap();
        let mut board = emu.board("emu");
        if let Some(fan) = board.fan.as_mut() {
            fan.set_duty(20.0).unwrap();
        }
        Self {
            board,
            emu,
            ctl: ThermalController::new(config).unwrap(),
            now: Duration::ZERO,
            frequency: NOMINAL,
            actions: Vec::new(),
        }
    }

    fn tick(&mut self) -> ThermalAction {
        let temps = self.board.chip_temps();
        let rpm = self.board.fan_rpm();
        let duty = self.board.fan.as_ref().map_or(0.0, |f| f.duty());
        let action = self.ctl.step(
            self.now,
            &ThermalInput {
                chip_temps: &temps,
                fan_rpm: rpm,
                fan_duty_pct: duty,
                frequency_mhz: self.frequency,
            },
        );
        if let Some(fan) = self.board.fan.as_mut() {
            fan.set_duty(action.fan_duty_pct).unwrap();
        }
        if let FrequencyAction::Set(f) = action.frequency {
            self.frequency = f;
            self.emu.set_all_load(f64::from(f)).unwrap();
        }
        self.board.rail.set_enabled(action.stop.is_none()).unwrap();
        self.emu.advance(TICK);
        self.now += TICK;
        self.actions.push(action.clone());
        action
    }

    fn run(&mut self, secs: u32) {
        for _ in 0..secs {
            self.tick();
        }
    }

    fn temp(&self, chip: usize) -> f64 {
        self.emu.chip_temp_c(chip).unwrap()
    }

    fn hottest(&self) -> f64 {
        (0..self.emu.chips())
            .map(|c| self.temp(c))
            .fold(f64::MIN, f64::max)
    }
}

#[test]
fn default_config_is_valid_and_bad_ones_name_the_field() {
    ThermalConfig::default().validate().unwrap();
    let field = |edit: fn(&mut ThermalConfig)| {
        let mut c = ThermalConfig::default();
        edit(&mut c);
        match c.validate() {
            Err(ThermalError::Invalid { field, .. }) => field,
            Ok(()) => "valid",
        }
    };
    assert_eq!(field(|c| c.target_c = 85.0), "target_c");
    assert_eq!(field(|c| c.throttle_c = 95.0), "throttle_c");
    assert_eq!(field(|c| c.stop_c = 70.0), "throttle_c");
    assert_eq!(field(|c| c.resume_c = 90.0), "resume_c");
    assert_eq!(field(|c| c.restore_c = 80.0), "restore_c");
    assert_eq!(field(|c| c.fan_min_pct = 120.0), "fan_min_pct");
    assert_eq!(field(|c| c.fan_min_pct = 100.0), "valid");
    assert_eq!(field(|c| c.fan_max_pct = 10.0), "fan_min_pct");
    assert_eq!(field(|c| c.kp = -1.0), "kp");
    assert_eq!(field(|c| c.ki = f64::NAN), "ki");
    assert_eq!(field(|c| c.throttle_step_mhz = 0.0), "throttle_step_mhz");
    assert_eq!(field(|c| c.min_frequency_mhz = -5.0), "min_frequency_mhz");
    assert_eq!(field(|c| c.stall_after = Duration::ZERO), "stall_after");
    assert_eq!(field(|c| c.stop_c = f64::INFINITY), "stop_c");
    let bad = ThermalConfig {
        target_c: 85.0,
        ..ThermalConfig::default()
    };
    assert!(ThermalController::new(bad).is_err());
}

#[test]
fn fan_pid_converges_to_target() {
    let mut rig = Rig::new(4);
    rig.run(600);
    let tail = &rig.actions[480..];
    assert!((rig.hottest() - 60.0).abs() <= 2.0, "{}", rig.hottest());
    for a in tail {
        let (_, t) = a.hottest.unwrap();
        assert!((t - 60.0).abs() <= 2.0, "{a:?}");
        assert!(a.stop.is_none() && a.fan_fault.is_none());
        assert_eq!(a.frequency, FrequencyAction::Keep);
        assert!((20.0..=100.0).contains(&a.fan_duty_pct));
    }
    assert_eq!(rig.frequency, NOMINAL, "no throttling at target");
    // The fan is neither pinned at minimum nor at maximum: the PID is working.
    let duty = tail.last().unwrap().fan_duty_pct;
    assert!(duty > 25.0 && duty < 95.0, "{duty}");
}

#[test]
fn pid_follows_a_change_of_ambient() {
    let mut rig = Rig::new(1);
    rig.run(600);
    let before = rig.actions.last().unwrap().fan_duty_pct;
    rig.emu.set_ambient(35.0);
    rig.run(600);
    let after = rig.actions.last().unwrap().fan_duty_pct;
    assert!(after > before + 5.0, "{before} -> {after}");
    assert!((rig.temp(0) - 60.0).abs() <= 2.0, "{}", rig.temp(0));
}

#[test]
fn hot_chip_throttles_then_stops_naming_it_then_recovers() {
    let mut rig = Rig::new(4);
    rig.run(300);
    rig.emu.set_extra_heat(3, 60.0).unwrap();
    let mut sets = Vec::new();
    let mut stop = None;
    for _ in 0..300 {
        let a = rig.tick();
        if let FrequencyAction::Set(f) = a.frequency {
            sets.push(f);
        }
        if a.stop.is_some() {
            stop = a.stop;
            break;
        }
    }
    let reason = stop.expect("the hot chip must stop the board");
    assert!(reason.contains("chip 3"), "{reason}");
    assert!(reason.contains("90 °C"), "{reason}");
    assert!(!sets.is_empty(), "throttled before stopping");
    let mut prev = NOMINAL;
    for f in &sets {
        assert_eq!(prev - f, 25.0, "one step at a time: {sets:?}");
        prev = *f;
    }
    assert!(!rig.emu.rail_enabled());
    assert_eq!(rig.actions.last().unwrap().fan_duty_pct, 100.0);

    // Latched while cooling down to resume_c, even below stop_c.
    rig.emu.set_extra_heat(3, 0.0).unwrap();
    let mut released_at = None;
    for _ in 0..600 {
        let hottest_before = rig.hottest();
        let a = rig.tick();
        if a.stop.is_none() {
            assert!(hottest_before < 70.0, "released at {hottest_before}");
            released_at = Some(rig.actions.len());
            break;
        }
        assert!(a.stop.as_deref() == Some(reason.as_str()), "reason kept");
    }
    let released_at = released_at.expect("stop released after cooling");
    assert!(
        rig.actions[..released_at - 1]
            .iter()
            .rev()
            .take(5)
            .all(|a| a.stop.is_some())
    );
    // Restart at the minimum, then restored step by step to nominal.
    rig.run(600);
    let restored: Vec<f32> = rig.actions[released_at - 1..]
        .iter()
        .filter_map(|a| match a.frequency {
            FrequencyAction::Set(f) => Some(f),
            FrequencyAction::Keep => None,
        })
        .collect();
    assert_eq!(restored.first(), Some(&200.0), "{restored:?}");
    assert_eq!(restored.last(), Some(&NOMINAL), "{restored:?}");
    assert!(
        restored
            .windows(2)
            .all(|w| w[1] > w[0] && w[1] - w[0] <= 25.0)
    );
    assert!(rig.emu.rail_enabled());
    assert!((rig.hottest() - 60.0).abs() <= 2.0);
}

#[test]
fn moderate_heat_throttles_and_holds_without_stopping() {
    let mut rig = Rig::new(4);
    rig.run(300);
    rig.emu.set_extra_heat(3, 35.0).unwrap();
    rig.run(900);
    assert!(rig.actions.iter().all(|a| a.stop.is_none()));
    assert!(
        rig.frequency < NOMINAL && rig.frequency > 200.0,
        "{}",
        rig.frequency
    );
    assert!(rig.hottest() < 80.5, "{}", rig.hottest());
    // Removing the heat restores the nominal frequency.
    rig.emu.set_extra_heat(3, 0.0).unwrap();
    rig.run(600);
    assert_eq!(rig.frequency, NOMINAL);
}

#[test]
fn no_temperature_reading_is_a_stop_with_fan_at_max() {
    let mut rig = Rig::new(2);
    rig.run(200);
    rig.emu.fail_sensor(0, true).unwrap();
    let a = rig.tick();
    assert!(a.stop.is_none(), "one sensor left is enough");
    rig.emu.fail_sensor(1, true).unwrap();
    let a = rig.tick();
    assert_eq!(a.stop.as_deref(), Some("stopped: no temperature reading"));
    assert_eq!(a.fan_duty_pct, 100.0);
    assert_eq!(a.hottest, None);
    rig.run(30);
    rig.emu.fail_sensor(0, false).unwrap();
    rig.emu.fail_sensor(1, false).unwrap();
    rig.run(600);
    assert!(rig.actions.last().unwrap().stop.is_none());
    assert_eq!(rig.frequency, NOMINAL);
}

#[test]
fn stalled_fan_is_a_fault_after_stall_after_and_throttles() {
    let mut rig = Rig::new(1);
    rig.run(300);
    rig.emu.stall_fan(true);
    for _ in 0..10 {
        let a = rig.tick();
        assert!(a.fan_fault.is_none(), "not before stall_after: {a:?}");
    }
    let a = rig.tick();
    let fault = a.fan_fault.clone().expect("stall detected");
    assert!(fault.starts_with("fan stopped: 0 rpm at "), "{fault}");
    assert!(fault.ends_with("duty for 10 s"), "{fault}");
    assert_eq!(a.fan_duty_pct, 100.0);
    rig.run(30);
    assert!(rig.frequency < NOMINAL, "cooling failed, so throttle");
    rig.emu.stall_fan(false);
    let a = rig.tick();
    assert!(a.fan_fault.is_none());
    rig.run(900);
    assert_eq!(rig.frequency, NOMINAL);
}

#[test]
fn stall_needs_enough_duty_and_a_tachometer() {
    let config = ThermalConfig::default();
    let mut ctl = ThermalController::new(config).unwrap();
    let temps = [Some(60.0)];
    for s in 0..60 {
        for (rpm, duty) in [(Some(0), 10.0), (None, 80.0)] {
            let a = ctl.step(
                Duration::from_secs(s),
                &ThermalInput {
                    chip_temps: &temps,
                    fan_rpm: rpm,
                    fan_duty_pct: duty,
                    frequency_mhz: 500.0,
                },
            );
            assert!(a.fan_fault.is_none());
        }
    }
}

fn input(temps: &[Option<f64>], duty: f64) -> ThermalInput<'_> {
    ThermalInput {
        chip_temps: temps,
        fan_rpm: Some(3000),
        fan_duty_pct: duty,
        frequency_mhz: 500.0,
    }
}

#[test]
fn integral_does_not_wind_up_at_max() {
    let mut ctl = ThermalController::new(ThermalConfig::default()).unwrap();
    let hot = [Some(75.0)];
    let mut duty = 50.0;
    for s in 0..3600 {
        duty = ctl
            .step(Duration::from_secs(s), &input(&hot, duty))
            .fan_duty_pct;
    }
    assert_eq!(duty, 100.0);
    // A sudden drop below target must bring the fan down within seconds,
    // not after an hour of accumulated error unwinds.
    let cool = [Some(55.0)];
    let mut t = Duration::from_secs(3600);
    let mut steps = 0;
    while duty > 90.0 && steps < 5 {
        duty = ctl.step(t, &input(&cool, duty)).fan_duty_pct;
        t += TICK;
        steps += 1;
    }
    assert!(duty < 90.0, "fan still {duty} after {steps} steps");
}

#[test]
fn output_stays_in_fan_range_and_time_going_backwards_is_harmless() {
    let config = ThermalConfig {
        fan_min_pct: 30.0,
        fan_max_pct: 80.0,
        ..ThermalConfig::default()
    };
    let mut ctl = ThermalController::new(config).unwrap();
    let mut duty = 0.0;
    for (s, t) in [
        (10, 20.0),
        (5, 99.0),
        (5, 89.0),
        (100, f64::NAN),
        (101, 30.0),
    ] {
        let temps = [Some(t), Some(f64::INFINITY)];
        let a = ctl.step(Duration::from_secs(s), &input(&temps, duty));
        assert!((30.0..=80.0).contains(&a.fan_duty_pct), "{a:?}");
        duty = a.fan_duty_pct;
    }
}

#[test]
fn throttle_never_goes_below_minimum() {
    let mut ctl = ThermalController::new(ThermalConfig::default()).unwrap();
    let hot = [Some(85.0)];
    let mut f = 300.0;
    for s in 0..300 {
        let a = ctl.step(
            Duration::from_secs(s),
            &ThermalInput {
                chip_temps: &hot,
                fan_rpm: None,
                fan_duty_pct: 100.0,
                frequency_mhz: f,
            },
        );
        if let FrequencyAction::Set(n) = a.frequency {
            assert!(n >= 200.0 && n < f, "{n} from {f}");
            f = n;
        }
    }
    assert_eq!(f, 200.0);
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_input_gives_a_sane_action(
            steps in proptest::collection::vec(
                (0u64..100_000, proptest::collection::vec(proptest::option::of(prop_oneof![
                    -50.0f64..150.0, Just(f64::NAN), Just(f64::INFINITY)]), 0..6),
                 proptest::option::of(0u32..10_000), prop_oneof![0.0f64..100.0, Just(f64::NAN)],
                 prop_oneof![1.0f32..1000.0, Just(0.0f32), Just(f32::NAN)]),
                1..50)
        ) {
            let mut ctl = ThermalController::new(ThermalConfig::default()).unwrap();
            let mut seen = Vec::new();
            for (ms, temps, rpm, duty, f) in steps {
                seen.push(f);
                let a = ctl.step(Duration::from_millis(ms), &ThermalInput {
                    chip_temps: &temps, fan_rpm: rpm, fan_duty_pct: duty, frequency_mhz: f,
                });
                prop_assert!((20.0..=100.0).contains(&a.fan_duty_pct), "{:?}", a);
                if let FrequencyAction::Set(n) = a.frequency {
                    // Never throttled below the floor; lower only when restoring
                    // a nominal frequency the caller ran at itself.
                    prop_assert!(n.is_finite() && (n >= 200.0 || seen.contains(&n)), "{:?}", a);
                }
                if temps.iter().all(|t| t.is_none_or(|t| !t.is_finite())) {
                    prop_assert!(a.stop.is_some());
                }
            }
        }
    }
}
