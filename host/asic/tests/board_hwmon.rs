//! hwmon parts against a fake sysfs tree laid out like the kernel's.

use std::fs;
use std::path::{Path, PathBuf};

use hashwatt_asic::board::hwmon::{
    HwmonDevice, HwmonFan, HwmonRail, HwmonTemp, RailConfig, VoltageControl,
};
use hashwatt_asic::board::{Board, BoardError, Fan, PowerRail, TempSensor};

fn write(dir: &Path, file: &str, content: &str) {
    fs::write(dir.join(file), content).unwrap();
}

/// `root/hwmon0` = tps546 (rail), `root/hwmon1` = emc2101 (temps, fan).
fn fake_sysfs() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("class/hwmon");
    let rail = root.join("hwmon0");
    let emc = root.join("hwmon1");
    fs::create_dir_all(&rail).unwrap();
    fs::create_dir_all(&emc).unwrap();
    write(&rail, "name", "tps546\n");
    write(&rail, "in1_input", "12000\n");
    write(&rail, "in1_label", "vin\n");
    write(&rail, "in2_input", "1150\n");
    write(&rail, "in2_label", "vout1\n");
    write(&rail, "power1_input", "15250000\n");
    write(&emc, "name", "emc2101\n");
    write(&emc, "temp1_input", "41250\n");
    write(&emc, "temp1_label", "internal\n");
    write(&emc, "temp2_input", "63500\n");
    write(&emc, "temp2_label", "external\n");
    write(&emc, "pwm1", "128\n");
    write(&emc, "pwm1_enable", "2\n");
    write(&emc, "fan1_input", "4321\n");
    (tmp, root)
}

#[test]
fn discovers_devices_by_name_and_channels_by_label() {
    let (_tmp, root) = fake_sysfs();
    let list = HwmonDevice::list(&root).unwrap();
    let names: Vec<_> = list.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["tps546", "emc2101"]);
    let emc = HwmonDevice::find(&root, "emc2101").unwrap();
    assert_eq!(emc.channel_by_label("temp", "external").unwrap(), 2);
    let tps = HwmonDevice::find(&root, "tps546").unwrap();
    assert_eq!(tps.channel_by_label("in", "vout1").unwrap(), 2);
    assert!(matches!(
        HwmonDevice::find(&root, "tmp1075"),
        Err(BoardError::NotFound(_))
    ));
    assert!(matches!(
        emc.channel_by_label("temp", "nope"),
        Err(BoardError::NotFound(_))
    ));
}

#[test]
fn reads_temperatures_in_millidegrees() {
    let (_tmp, root) = fake_sysfs();
    let mut ext = HwmonTemp::discover(&root, "emc2101", Some("external")).unwrap();
    assert_eq!(ext.label(), "emc2101/external");
    assert_eq!(ext.read_c().unwrap(), 63.5);
    let mut first = HwmonTemp::discover(&root, "emc2101", None).unwrap();
    assert_eq!(first.read_c().unwrap(), 41.25);
    write(&root.join("hwmon1"), "temp2_input", "-1500\n");
    assert_eq!(ext.read_c().unwrap(), -1.5);
}

#[test]
fn garbage_and_missing_temperature_files_are_errors() {
    let (_tmp, root) = fake_sysfs();
    let emc = root.join("hwmon1");
    let mut t = HwmonTemp::discover(&root, "emc2101", Some("external")).unwrap();
    write(&emc, "temp2_input", "hot\n");
    match t.read_c() {
        Err(BoardError::Parse { content, .. }) => assert_eq!(content, "hot"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    write(&emc, "temp2_input", &"9".repeat(5000));
    assert!(matches!(t.read_c(), Err(BoardError::Parse { content, .. }) if content.len() <= 32));
    write(&emc, "temp2_input", "");
    assert!(matches!(t.read_c(), Err(BoardError::Parse { .. })));
    fs::remove_file(emc.join("temp2_input")).unwrap();
    assert!(matches!(t.read_c(), Err(BoardError::NotFound(_))));
    let dev = HwmonDevice::find(&root, "emc2101").unwrap();
    assert!(matches!(
        HwmonTemp::open(&dev, 7),
        Err(BoardError::NotFound(_))
    ));
}

#[test]
fn fan_takes_manual_control_and_scales_duty() {
    let (_tmp, root) = fake_sysfs();
    let emc = root.join("hwmon1");
    let mut fan = HwmonFan::discover(&root, "emc2101").unwrap();
    assert_eq!(
        fs::read_to_string(emc.join("pwm1_enable")).unwrap().trim(),
        "1"
    );
    assert!(
        (fan.duty() - 50.2).abs() < 0.1,
        "initial duty from pwm1=128"
    );
    fan.set_duty(100.0).unwrap();
    assert_eq!(fs::read_to_string(emc.join("pwm1")).unwrap().trim(), "255");
    fan.set_duty(40.0).unwrap();
    assert_eq!(fs::read_to_string(emc.join("pwm1")).unwrap().trim(), "102");
    assert_eq!(fan.duty(), 40.0);
    assert_eq!(fan.rpm().unwrap(), Some(4321));
    for bad in [-1.0, 100.5, f64::NAN] {
        assert!(matches!(
            fan.set_duty(bad),
            Err(BoardError::OutOfRange { .. })
        ));
    }
    assert_eq!(fan.duty(), 40.0, "a rejected duty leaves the last one");
    write(&emc, "fan1_input", "-5\n");
    assert!(matches!(fan.rpm(), Err(BoardError::Parse { .. })));
    write(&emc, "fan1_input", "fast\n");
    assert!(matches!(fan.rpm(), Err(BoardError::Parse { .. })));
}

#[test]
fn fan_without_tachometer_reports_none() {
    let (_tmp, root) = fake_sysfs();
    fs::remove_file(root.join("hwmon1/fan1_input")).unwrap();
    let mut fan = HwmonFan::discover(&root, "emc2101").unwrap();
    assert_eq!(fan.rpm().unwrap(), None);
}

#[test]
fn fixed_rail_reads_voltage_and_power_but_refuses_set() {
    let (_tmp, root) = fake_sysfs();
    let dev = HwmonDevice::find(&root, "tps546").unwrap();
    let config = RailConfig {
        label: "core".into(),
        voltage_channel: Some(dev.channel_by_label("in", "vout1").unwrap()),
        power_channel: Some(1),
        ..RailConfig::default()
    };
    let mut rail = HwmonRail::open(&dev, config).unwrap();
    assert_eq!(rail.voltage_mv().unwrap(), Some(1150));
    assert_eq!(rail.power_w().unwrap(), Some(15.25));
    assert_eq!(rail.voltage_range_mv(), None);
    assert!(matches!(
        rail.set_voltage_mv(1200),
        Err(BoardError::Unsupported(_))
    ));
    assert!(matches!(
        rail.set_enabled(false),
        Err(BoardError::Unsupported(_))
    ));
    write(&root.join("hwmon0"), "power1_input", "lots\n");
    assert!(matches!(rail.power_w(), Err(BoardError::Parse { .. })));
    write(&root.join("hwmon0"), "in2_input", "-3\n");
    assert!(matches!(rail.voltage_mv(), Err(BoardError::Parse { .. })));
}

#[test]
fn settable_rail_writes_scaled_voltage_within_range() {
    let (tmp, root) = fake_sysfs();
    let reg = tmp.path().join("regulator.3");
    fs::create_dir_all(&reg).unwrap();
    write(&reg, "microvolts", "1150000\n");
    write(&reg, "enable", "1\n");
    let dev = HwmonDevice::find(&root, "tps546").unwrap();
    let config = RailConfig {
        label: "core".into(),
        voltage_channel: Some(2),
        power_channel: None,
        control: Some(VoltageControl {
            path: reg.join("microvolts"),
            scale: 1000,
            min_mv: 1000,
            max_mv: 1300,
        }),
        enable: Some(reg.join("enable")),
    };
    let mut rail = HwmonRail::open(&dev, config.clone()).unwrap();
    assert_eq!(rail.voltage_range_mv(), Some((1000, 1300)));
    rail.set_voltage_mv(1200).unwrap();
    assert_eq!(
        fs::read_to_string(reg.join("microvolts")).unwrap().trim(),
        "1200000"
    );
    assert!(matches!(
        rail.set_voltage_mv(1400),
        Err(BoardError::OutOfRange { .. })
    ));
    assert_eq!(
        fs::read_to_string(reg.join("microvolts")).unwrap().trim(),
        "1200000"
    );
    rail.set_enabled(false).unwrap();
    assert_eq!(fs::read_to_string(reg.join("enable")).unwrap().trim(), "0");
    assert_eq!(rail.power_w().unwrap(), None);

    let mut missing = config.clone();
    missing.power_channel = Some(9);
    assert!(matches!(
        HwmonRail::open(&dev, missing),
        Err(BoardError::NotFound(_))
    ));
    let mut inverted = config;
    if let Some(c) = inverted.control.as_mut() {
        c.min_mv = 1400;
    }
    assert!(matches!(
        HwmonRail::open(&dev, inverted),
        Err(BoardError::Config(_))
    ));
}

#[test]
fn board_maps_shared_sensors_to_chips_and_reads_failures_as_none() {
    let (_tmp, root) = fake_sysfs();
    let dev = HwmonDevice::find(&root, "emc2101").unwrap();
    let tps = HwmonDevice::find(&root, "tps546").unwrap();
    let sensors: Vec<Box<dyn TempSensor>> = vec![
        Box::new(HwmonTemp::open(&dev, 1).unwrap()),
        Box::new(HwmonTemp::open(&dev, 2).unwrap()),
    ];
    let rail = Box::new(HwmonRail::open(&tps, RailConfig::default()).unwrap());
    let fan: Option<Box<dyn Fan>> = Some(Box::new(HwmonFan::open(&dev, 1).unwrap()));
    let mut board = Board::new("ultra-1", rail, sensors, vec![1, 1, 0], fan).unwrap();
    assert_eq!(board.chip_temps(), [Some(63.5), Some(63.5), Some(41.25)]);
    assert_eq!(board.fan_rpm(), Some(4321));
    write(&root.join("hwmon1"), "temp2_input", "garbage\n");
    for _ in 0..20 {
        assert_eq!(board.chip_temps(), [None, None, Some(41.25)]);
    }
    write(&root.join("hwmon1"), "temp2_input", "70000\n");
    assert_eq!(board.chip_temps(), [Some(70.0), Some(70.0), Some(41.25)]);
    // Out-of-range indices set directly on the public field read as None.
    board.chip_sensor.push(9);
    assert_eq!(board.chip_temps()[3], None);
}

#[test]
fn board_rejects_chip_mapped_to_missing_sensor() {
    let (_tmp, root) = fake_sysfs();
    let tps = HwmonDevice::find(&root, "tps546").unwrap();
    let rail = Box::new(HwmonRail::open(&tps, RailConfig::default()).unwrap());
    let err = Board::new("b", rail, Vec::new(), vec![0], None).unwrap_err();
    assert!(matches!(err, BoardError::Config(_)), "{err}");
}
