//! The emulated board's physics: deterministic, monotone where it should be.

use std::time::Duration;

use hashwatt_asic::board::emulated::{EmulatedBoard, EmulatedParams};
use hashwatt_asic::board::{BoardError, Fan, PowerRail, RepeatLog, TempSensor};

const S: Duration = Duration::from_secs(1);

fn settle(emu: &EmulatedBoard, secs: u32) {
    for _ in 0..secs {
        emu.advance(S);
    }
}

#[test]
fn power_scales_with_frequency_and_voltage_squared() {
    let emu = EmulatedBoard::new(2, 25.0);
    let p = EmulatedParams::default();
    assert_eq!(emu.chip_power_w(0), Some(p.static_w));
    emu.set_chip_load(0, 500.0).unwrap();
    let dynamic = |w: f64| w - p.static_w;
    let at_500 = dynamic(emu.chip_power_w(0).unwrap());
    emu.set_chip_load(0, 1000.0).unwrap();
    let at_1000 = dynamic(emu.chip_power_w(0).unwrap());
    assert!((at_1000 / at_500 - 2.0).abs() < 1e-9);
    let mut rail = emu.rail();
    rail.set_voltage_mv(1000).unwrap();
    let low = dynamic(emu.chip_power_w(0).unwrap());
    rail.set_voltage_mv(1400).unwrap();
    let high = dynamic(emu.chip_power_w(0).unwrap());
    assert!((high / low - 1.96).abs() < 1e-9);
    let total = rail.power_w().unwrap().unwrap();
    assert!((total - emu.chip_power_w(0).unwrap() - emu.chip_power_w(1).unwrap()).abs() < 1e-9);
    rail.set_enabled(false).unwrap();
    assert_eq!(rail.power_w().unwrap(), Some(0.0));
    assert_eq!(rail.voltage_mv().unwrap(), Some(0));
}

#[test]
fn temperature_lags_toward_ambient_plus_power_times_resistance() {
    let emu = EmulatedBoard::new(1, 25.0);
    emu.set_chip_load(0, 525.0).unwrap();
    emu.fan().set_duty(100.0).unwrap();
    let p = EmulatedParams::default();
    let steady = 25.0 + emu.chip_power_w(0).unwrap() * p.r_th_full;
    emu.advance(p.tau);
    let after_tau = emu.chip_temp_c(0).unwrap();
    let expected = 25.0 + (steady - 25.0) * (1.0 - (-1.0f64).exp());
    assert!(
        (after_tau - expected).abs() < 1e-9,
        "{after_tau} vs {expected}"
    );
    settle(&emu, 600);
    assert!((emu.chip_temp_c(0).unwrap() - steady).abs() < 0.01);
    // Less airflow, hotter.
    emu.fan().set_duty(30.0).unwrap();
    settle(&emu, 600);
    assert!(emu.chip_temp_c(0).unwrap() > steady + 10.0);
}

#[test]
fn same_inputs_same_trajectory() {
    let run = || {
        let emu = EmulatedBoard::new(4, 22.0);
        emu.set_all_load(490.0).unwrap();
        emu.set_extra_heat(2, 7.5).unwrap();
        let mut fan = emu.fan();
        let mut trace = Vec::new();
        for i in 0..200 {
            fan.set_duty(f64::from(i % 100)).unwrap();
            emu.advance(Duration::from_millis(700));
            trace.push(emu.chip_temp_c(2).unwrap());
        }
        trace
    };
    assert_eq!(run(), run());
}

#[test]
fn extra_heat_makes_one_chip_hot() {
    let emu = EmulatedBoard::new(4, 25.0);
    emu.set_all_load(500.0).unwrap();
    emu.fan().set_duty(60.0).unwrap();
    emu.set_extra_heat(3, 10.0).unwrap();
    settle(&emu, 300);
    let t: Vec<f64> = (0..4).map(|c| emu.chip_temp_c(c).unwrap()).collect();
    assert!(t[3] > t[0] + 10.0, "{t:?}");
    assert!((t[0] - t[1]).abs() < 1e-9);
    assert!(matches!(
        emu.set_extra_heat(4, 1.0),
        Err(BoardError::Config(_))
    ));
    assert!(matches!(
        emu.set_chip_load(0, f64::NAN),
        Err(BoardError::OutOfRange { .. })
    ));
}

#[test]
fn fan_rpm_follows_duty_unless_stalled_and_stall_heats() {
    let emu = EmulatedBoard::new(1, 25.0);
    emu.set_chip_load(0, 525.0).unwrap();
    let mut fan = emu.fan();
    fan.set_duty(50.0).unwrap();
    assert_eq!(fan.rpm().unwrap(), Some(3000));
    settle(&emu, 300);
    let cooled = emu.chip_temp_c(0).unwrap();
    emu.stall_fan(true);
    assert_eq!(fan.rpm().unwrap(), Some(0));
    assert_eq!(fan.duty(), 50.0);
    settle(&emu, 300);
    assert!(emu.chip_temp_c(0).unwrap() > cooled + 20.0);
    assert!(fan.set_duty(101.0).is_err());
}

#[test]
fn sensor_faults_and_fixed_rail() {
    let params = EmulatedParams {
        voltage_range_mv: None,
        ..EmulatedParams::default()
    };
    let emu = EmulatedBoard::with_params(2, 25.0, params);
    let mut board = emu.board("emu-0");
    assert_eq!(board.chip_temps(), [Some(25.0), Some(25.0)]);
    emu.fail_sensor(1, true).unwrap();
    assert_eq!(board.chip_temps(), [Some(25.0), None]);
    assert!(matches!(emu.sensor(1).read_c(), Err(BoardError::Fault(_))));
    assert_eq!(board.rail.voltage_range_mv(), None);
    assert!(matches!(
        board.rail.set_voltage_mv(1200),
        Err(BoardError::Unsupported(_))
    ));
    assert!(
        EmulatedBoard::new(1, 25.0)
            .rail()
            .set_voltage_mv(900)
            .is_err()
    );
}

#[test]
fn repeat_log_backs_off_and_reports_recovery() {
    let mut log = RepeatLog::default();
    let logged: Vec<u64> = (0..100).filter_map(|_| log.failure("s", "boom")).collect();
    assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64]);
    assert_eq!(
        log.failure("s", "other"),
        Some(1),
        "a new message logs at once"
    );
    assert_eq!(log.success("s"), Some(1));
    assert_eq!(log.success("s"), None, "recovery logs once");
}
