//! Power sources: RAPL on a fake sysfs tree, fallback, model, external.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use hashwatt_energy::meter::{
    self, FallbackSource, MeterError, PowerSource,
    external::ExternalSource,
    model::{ModelConfig, ModelSource},
    rapl::RaplSource,
};

const MAX: u64 = 262_143_328_850;

fn zone(root: &Path, dir: &str, name: &str, energy: u64, max: u64) {
    let d = root.join(dir);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("name"), format!("{name}\n")).unwrap();
    fs::write(d.join("energy_uj"), format!("{energy}\n")).unwrap();
    fs::write(d.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
}

fn set(root: &Path, dir: &str, energy: u64) {
    fs::write(root.join(dir).join("energy_uj"), format!("{energy}\n")).unwrap();
}

fn model() -> ModelConfig {
    ModelConfig::single("cpu", 20.0, 50.0, 10.0e6)
}

#[test]
fn rapl_wraps_around_max_energy_range() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    zone(root, "intel-rapl:0", "package-0", MAX - 30_000_000, MAX);
    let mut rapl = RaplSource::discover(root).unwrap();
    let t0 = Instant::now();
    let first = rapl.sample(t0, 0.0).unwrap();
    assert_eq!(first.joules, 0.0);
    assert_eq!(first.watts, None);
    // 30 J up to the wrap point, then 20 J past it, in 1 s.
    set(root, "intel-rapl:0", 20_000_000);
    let s = rapl.sample(t0 + Duration::from_secs(1), 0.0).unwrap();
    assert!((s.joules - 50.0).abs() < 1e-9, "{s:?}");
    assert!((s.watts.unwrap() - 50.0).abs() < 1e-9);
    assert_eq!(s.source, "rapl");
    // Normal increment after the wrap.
    set(root, "intel-rapl:0", 65_000_000);
    let s = rapl.sample(t0 + Duration::from_secs(2), 0.0).unwrap();
    assert!((s.joules - 45.0).abs() < 1e-9, "{s:?}");
}

#[test]
fn rapl_sums_packages_and_skips_subzones_and_psys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    zone(root, "intel-rapl:0", "package-0", 1_000_000, MAX);
    zone(root, "intel-rapl:1", "package-1", 5_000_000, MAX);
    zone(root, "intel-rapl:0:0", "core", 0, MAX);
    zone(root, "intel-rapl:2", "psys", 0, MAX);
    zone(root, "intel-rapl-mmio:0", "package-0", 0, MAX);
    let mut rapl = RaplSource::discover(root).unwrap();
    assert_eq!(
        rapl.zones(),
        vec!["intel-rapl:0 (package-0)", "intel-rapl:1 (package-1)"]
    );
    let t0 = Instant::now();
    rapl.sample(t0, 0.0).unwrap();
    set(root, "intel-rapl:0", 11_000_000);
    set(root, "intel-rapl:1", 7_000_000);
    set(root, "intel-rapl:0:0", 99_000_000);
    set(root, "intel-rapl:2", 99_000_000);
    let s = rapl.sample(t0 + Duration::from_secs(2), 0.0).unwrap();
    assert!((s.joules - 12.0).abs() < 1e-9);
    assert!((s.watts.unwrap() - 6.0).abs() < 1e-9);
}

#[test]
fn rapl_missing_tree_falls_back_to_model() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("powercap");
    let err = RaplSource::discover(&missing).unwrap_err();
    assert!(matches!(err, MeterError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let (mut src, why) = meter::auto(&missing, model(), "cpu").unwrap();
    assert!(why.is_some());
    assert_eq!(src.name(), "model");
    let t0 = Instant::now();
    src.sample(t0, 10.0e6).unwrap();
    let s = src.sample(t0 + Duration::from_secs(10), 10.0e6).unwrap();
    assert_eq!(s.source, "model");
    assert!((s.joules - 500.0).abs() < 1e-9);
}

#[test]
fn rapl_without_package_zones_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("intel-rapl")).unwrap();
    let err = RaplSource::discover(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("no RAPL package zone"), "{err}");
}

#[test]
fn rapl_garbage_counter_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    zone(tmp.path(), "intel-rapl:0", "package-0", 0, MAX);
    fs::write(tmp.path().join("intel-rapl:0/energy_uj"), "n/a\n").unwrap();
    let err = RaplSource::discover(tmp.path()).unwrap_err();
    assert!(matches!(err, MeterError::Unavailable { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn rapl_unreadable_counter_falls_back() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    zone(tmp.path(), "intel-rapl:0", "package-0", 0, MAX);
    let f = tmp.path().join("intel-rapl:0/energy_uj");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&f).is_ok() {
        // Running as root: permissions are not enforced; covered by the
        // removal case below instead.
        fs::remove_file(&f).unwrap();
    }
    let err = RaplSource::discover(tmp.path()).unwrap_err();
    assert!(matches!(err, MeterError::Unavailable { .. }), "{err}");
    let (src, why) = meter::auto(tmp.path(), model(), "cpu").unwrap();
    assert_eq!(src.name(), "model");
    assert!(why.unwrap().to_string().contains("energy_uj"));
}

#[test]
fn fallback_covers_rapl_outage_without_double_counting() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    zone(root, "intel-rapl:0", "package-0", 0, MAX);
    let rapl = RaplSource::discover(root).unwrap();
    let model = ModelSource::new(model(), "cpu").unwrap();
    let mut src = FallbackSource::new(Box::new(rapl), Box::new(model));
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    src.sample(at(0), 10.0e6).unwrap();
    set(root, "intel-rapl:0", 40_000_000); // 40 J in 1 s
    let s = src.sample(at(1), 10.0e6).unwrap();
    assert_eq!((s.source, s.joules), ("rapl", 40.0));
    // The counter disappears: the model (50 W) covers seconds 1..3.
    fs::remove_file(root.join("intel-rapl:0/energy_uj")).unwrap();
    let s = src.sample(at(2), 10.0e6).unwrap();
    assert_eq!((s.source, s.joules), ("model", 50.0));
    assert!(src.on_fallback());
    let s = src.sample(at(3), 10.0e6).unwrap();
    assert_eq!((s.source, s.joules), ("model", 50.0));
    // Back, with a big jump in the counter: the first RAPL sample is only a
    // baseline, so the model still covers second 3..4.
    set(root, "intel-rapl:0", 900_000_000);
    let s = src.sample(at(4), 10.0e6).unwrap();
    assert_eq!((s.source, s.joules), ("model", 50.0));
    set(root, "intel-rapl:0", 930_000_000);
    let s = src.sample(at(5), 10.0e6).unwrap();
    assert_eq!((s.source, s.joules), ("rapl", 30.0));
    assert!(!src.on_fallback());
}

#[test]
fn rapl_counter_reset_is_not_a_wrap() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    zone(root, "intel-rapl:0", "package-0", 200_000_000_000, MAX);
    let mut rapl = RaplSource::discover(root).unwrap();
    let t0 = Instant::now();
    rapl.sample(t0, 0.0).unwrap();
    // Driver reload: counter restarts near zero; as a wrap it would be
    // 62 kJ in one second.
    set(root, "intel-rapl:0", 1_000_000);
    let err = rapl.sample(t0 + Duration::from_secs(1), 0.0).unwrap_err();
    assert!(matches!(err, MeterError::BadCounter { .. }), "{err}");
    set(root, "intel-rapl:0", 3_000_000);
    let s = rapl.sample(t0 + Duration::from_secs(2), 0.0).unwrap();
    assert!((s.joules - 2.0).abs() < 1e-9);
}

#[test]
fn model_arithmetic() {
    // 20 W idle, 50 W at 10 MH/s: 3 µJ per hash.
    let mut m = ModelSource::new(model(), "cpu").unwrap();
    assert!((m.joules_per_hash() - 3e-6).abs() < 1e-18);
    assert!((m.watts_at(0.0).unwrap() - 20.0).abs() < 1e-12);
    assert!((m.watts_at(5.0e6).unwrap() - 35.0).abs() < 1e-9);
    assert!((m.watts_at(20.0e6).unwrap() - 80.0).abs() < 1e-9);
    // Capped at the full-load rating, a faster hashrate draws no more.
    let capped = ModelSource::new(model().capped_at(50.0), "cpu").unwrap();
    assert!((capped.watts_at(5.0e6).unwrap() - 35.0).abs() < 1e-9);
    assert!((capped.watts_at(20.0e6).unwrap() - 50.0).abs() < 1e-9);
    let t0 = Instant::now();
    let first = m.sample(t0, 5.0e6).unwrap();
    assert_eq!(first.joules, 0.0);
    assert_eq!(first.watts, Some(35.0));
    let s = m.sample(t0 + Duration::from_millis(2500), 5.0e6).unwrap();
    assert!((s.joules - 87.5).abs() < 1e-9);
    assert!(m.sample(t0, f64::NAN).is_err());
    assert!(m.sample(t0, -1.0).is_err());
}

#[test]
fn model_backends_and_validation() {
    let mut cfg = model();
    cfg.backends.insert(
        "sha-ni".into(),
        hashwatt_energy::meter::model::Calibration {
            ref_hashrate_hs: 40.0e6,
            watts_at_ref: 60.0,
        },
    );
    let mut m = ModelSource::new(cfg.clone(), "cpu").unwrap();
    m.set_backend("sha-ni").unwrap();
    assert!((m.joules_per_hash() - 1e-6).abs() < 1e-18);
    assert!(m.set_backend("gpu").is_err());
    assert!(
        (m.joules_per_hash() - 1e-6).abs() < 1e-18,
        "unchanged on error"
    );

    let bad = [
        ModelConfig::single("cpu", -1.0, 50.0, 1e6),
        ModelConfig::single("cpu", 20.0, 10.0, 1e6),
        ModelConfig::single("cpu", 20.0, 50.0, 0.0),
        ModelConfig::single("cpu", f64::NAN, 50.0, 1e6),
    ];
    for cfg in bad {
        assert!(
            matches!(
                ModelSource::new(cfg.clone(), "cpu"),
                Err(MeterError::InvalidConfig(_))
            ),
            "{cfg:?}"
        );
    }
}

#[test]
fn external_watts_are_held_over_the_interval() {
    let mut e = ExternalSource::new(Duration::from_secs(30));
    let t0 = Instant::now();
    assert!(matches!(
        e.sample(t0, 0.0),
        Err(MeterError::Unavailable { .. })
    ));
    e.push_watts(t0, 100.0).unwrap();
    assert_eq!(e.sample(t0, 0.0).unwrap().joules, 0.0);
    e.push_watts(t0 + Duration::from_secs(2), 120.0).unwrap();
    let s = e.sample(t0 + Duration::from_secs(5), 0.0).unwrap();
    assert!((s.joules - 600.0).abs() < 1e-9);
    assert_eq!(s.watts, Some(120.0));
    assert!(e.push_watts(t0, f64::INFINITY).is_err());
    // Stale after 30 s without a reading.
    let err = e.sample(t0 + Duration::from_secs(40), 0.0).unwrap_err();
    assert!(matches!(err, MeterError::Stale { .. }), "{err}");
}

#[test]
fn external_kwh_register_deltas() {
    let mut e = ExternalSource::new(Duration::from_secs(60));
    let t0 = Instant::now();
    e.push_total_kwh(t0, 1234.5).unwrap();
    assert_eq!(e.sample(t0, 0.0).unwrap().joules, 0.0);
    e.push_total_kwh(t0 + Duration::from_secs(36), 1234.51)
        .unwrap();
    let s = e.sample(t0 + Duration::from_secs(36), 0.0).unwrap();
    assert!((s.joules - 36_000.0).abs() < 1e-3, "{s:?}");
    assert!((s.watts.unwrap() - 1000.0).abs() < 1e-3);
    // Register replaced: counting restarts, the reset interval is refused.
    e.push_total_kwh(t0 + Duration::from_secs(40), 2.0).unwrap();
    assert!(matches!(
        e.sample(t0 + Duration::from_secs(40), 0.0),
        Err(MeterError::BadCounter { .. })
    ));
    e.sample(t0 + Duration::from_secs(41), 0.0).unwrap();
    e.push_total_kwh(t0 + Duration::from_secs(50), 2.001)
        .unwrap();
    let s = e.sample(t0 + Duration::from_secs(50), 0.0).unwrap();
    assert!((s.joules - 3600.0).abs() < 1e-3, "{s:?}");
}
