//! Persistence: round trip, simulated crash, corrupt and future files.

use std::{
    fs,
    time::{Duration, Instant},
};

use hashwatt_energy::{
    Period,
    ledger::{Interval, LedgerConfig},
    store::{CHECKPOINT_EVERY, Checkpoint, EnergyStore, FILE_NAME, RETRY_MAX, StoreError},
};
use jiff::{SignedDuration, Timestamp};

fn cfg() -> LedgerConfig {
    let mut c = LedgerConfig::new("Europe/Berlin");
    c.co2_g_per_kwh = Some(350.0);
    c
}

fn t0() -> Timestamp {
    "2026-03-28T20:00:00Z".parse().unwrap()
}

fn second(store: &mut EnergyStore, end: Timestamp, watts: f64) {
    store
        .ledger_mut()
        .record(&Interval {
            end,
            secs: 1.0,
            joules: watts,
            hashes: 2.0e7,
            mining: true,
            grid_g_per_kwh: None,
        })
        .unwrap();
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, c) = EnergyStore::open(dir.path(), cfg()).unwrap();
    assert!(c.is_none());
    // Across local midnight of the DST day.
    for i in 1..=7200 {
        second(
            &mut s,
            t0().checked_add(SignedDuration::from_secs(i * 3)).unwrap(),
            300.0,
        );
    }
    s.ledger_mut()
        .record_pause(t0(), 600.0, "tou", "peak tariff 0.41 €/kWh")
        .unwrap();
    s.checkpoint().unwrap();
    let before = s.ledger().counters(t0());
    let report = s.ledger().report(Period::Month, t0());
    drop(s);

    let (s2, c) = EnergyStore::open(dir.path(), cfg()).unwrap();
    assert!(c.is_none());
    assert_eq!(s2.ledger().counters(t0()), before);
    assert_eq!(s2.ledger().report(Period::Month, t0()), report);
    assert_eq!(s2.ledger().days().count(), 2);
    assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
}

/// Runs `secs` seconds of 1 s samples with `checkpoint_if_due`, then a
/// power cut (drop without a final checkpoint); returns (live, saved) kWh
/// and the number of writes.
fn run_then_crash(secs: i64, watts: f64) -> (f64, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    let mono0 = Instant::now();
    let mut writes = 0;
    for i in 1..=secs {
        let end = t0().checked_add(SignedDuration::from_secs(i)).unwrap();
        second(&mut s, end, watts);
        match s.checkpoint_if_due(mono0 + Duration::from_secs(i as u64)) {
            Checkpoint::Written { after_failures: 0 } => writes += 1,
            Checkpoint::Skipped => {}
            other => panic!("{other:?}"),
        }
    }
    let live = s.ledger().counters(t0()).total_kwh;
    drop(s);
    let (s2, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    (live, s2.ledger().counters(t0()).total_kwh, writes)
}

#[test]
fn crash_loses_at_most_one_minute() {
    let watts = 250.0;
    let minute_j = watts * CHECKPOINT_EVERY.as_secs_f64();
    for secs in [1, 59, 60, 61, 119, 17 * 60 + 43, 60 * 60] {
        let (live, saved, writes) = run_then_crash(secs, watts);
        assert_eq!(
            writes as i64,
            1 + (secs - 1) / 60,
            "one write per minute ({secs} s)"
        );
        assert!((live * 3.6e6 - watts * secs as f64).abs() < 1e-6);
        let lost_j = (live - saved) * 3.6e6;
        assert!(
            (-1e-6..=minute_j).contains(&lost_j),
            "lost {lost_j} J after {secs} s"
        );
    }
}

#[test]
fn stale_temp_file_from_interrupted_checkpoint_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    second(&mut s, t0(), 7200.0);
    s.checkpoint().unwrap();
    drop(s);
    // A crash between create and rename leaves a partial temp file (the
    // name older versions used, and the one of the atomic-write helper,
    // possibly from this very pid).
    fs::write(dir.path().join(format!("{FILE_NAME}.tmp")), b"{\"vers").unwrap();
    let leftover = dir
        .path()
        .join(format!(".{FILE_NAME}.{}.0.tmp", std::process::id()));
    fs::write(&leftover, b"{\"vers").unwrap();
    let (mut s, c) = EnergyStore::open(dir.path(), cfg()).unwrap();
    assert!(c.is_none());
    assert!((s.ledger().counters(t0()).total_kwh - 0.002).abs() < 1e-12);
    s.checkpoint().unwrap();
    let (s, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    assert!((s.ledger().counters(t0()).total_kwh - 0.002).abs() < 1e-12);
    assert_eq!(fs::read(&leftover).unwrap(), b"{\"vers", "never renamed");
}

#[test]
fn corrupt_file_is_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    fs::write(&path, b"{\"version\":1,\"total_kwh\":12.5,\"days\":[[").unwrap();
    let (mut s, c) = EnergyStore::open(dir.path(), cfg()).unwrap();
    let c = c.expect("corruption reported");
    assert_eq!(c.path, path);
    assert_eq!(
        fs::read(&c.kept_as).unwrap(),
        b"{\"version\":1,\"total_kwh\":12.5,\"days\":[[".to_vec()
    );
    let msg = c.to_string();
    assert!(
        msg.contains("corrupt") && msg.contains(".bad") && msg.contains("zero"),
        "{msg}"
    );
    assert_eq!(s.ledger().counters(t0()).total_kwh, 0.0);
    // The fresh ledger can be checkpointed and then reopens cleanly.
    second(&mut s, t0(), 3600.0);
    s.checkpoint().unwrap();
    let (s2, c2) = EnergyStore::open(dir.path(), cfg()).unwrap();
    assert!(c2.is_none());
    assert!((s2.ledger().counters(t0()).total_kwh - 0.001).abs() < 1e-12);
}

#[test]
fn garbage_and_empty_files_are_corrupt() {
    for content in [&b""[..], b"\xff\xfe\x00", b"null", b"{\"version\":1}"] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), content).unwrap();
        let (_, c) = EnergyStore::open(dir.path(), cfg()).unwrap();
        assert!(c.is_some(), "{content:?}");
    }
}

#[test]
fn newer_version_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    fs::write(&path, b"{\"version\":7,\"something\":\"new\"}").unwrap();
    let err = EnergyStore::open(dir.path(), cfg()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { found: 7, .. }),
        "{err}"
    );
    assert!(fs::read(&path).unwrap().starts_with(b"{\"version\":7"));
}

#[test]
fn bad_time_zone_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = EnergyStore::open(dir.path(), LedgerConfig::new("Nowhere/Land")).unwrap_err();
    assert!(matches!(err, StoreError::Ledger(_)), "{err}");
}

#[test]
fn unwritable_state_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = EnergyStore::open(&file, cfg()).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
}

#[test]
fn time_zone_change_keeps_saved_days() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    second(&mut s, t0(), 3600.0);
    s.checkpoint().unwrap();
    drop(s);
    let (s, _) = EnergyStore::open(dir.path(), LedgerConfig::new("Asia/Tokyo")).unwrap();
    assert_eq!(s.ledger().config().time_zone, "Asia/Tokyo");
    let days: Vec<_> = s.ledger().days().map(|(d, _)| d.to_string()).collect();
    assert_eq!(days, ["2026-03-28"]);
    assert!((s.ledger().counters(t0()).total_kwh - 0.001).abs() < 1e-12);
}

/// A checkpoint that keeps failing (here: a directory squats on the file
/// name, as a full disk would fail the write) is not retried every second:
/// attempts back off, only the first failure and then per-minute summaries
/// are to be logged, and the first success after it says so.
#[test]
fn failing_checkpoints_back_off_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    second(&mut s, t0(), 3600.0);
    let path = dir.path().join(FILE_NAME);
    fs::create_dir(&path).unwrap();
    fs::write(path.join("squatter"), b"x").unwrap();
    let mono0 = Instant::now();
    let mut attempts = 0;
    let mut reports = Vec::new();
    for i in 0..300u64 {
        match s.checkpoint_if_due(mono0 + Duration::from_secs(i)) {
            Checkpoint::Skipped => {}
            Checkpoint::Failed {
                error,
                retry_in,
                report,
            } => {
                assert!(matches!(error, StoreError::Io { .. }), "{error}");
                assert!(retry_in <= RETRY_MAX);
                attempts += 1;
                if let Some(n) = report {
                    reports.push((i, n));
                }
            }
            other => panic!("at {i}: {other:?}"),
        }
    }
    // 0, 1, 3, 7, 15, 31, 63, 123, 183, 243: not 300 attempts.
    assert_eq!(attempts, 10);
    assert_eq!(reports.first(), Some(&(0, 1)));
    assert!(reports.len() <= 6, "{reports:?}");
    fs::remove_dir_all(&path).unwrap();
    // The next attempt is at 303 s; it succeeds and says after how many.
    assert!(matches!(
        s.checkpoint_if_due(mono0 + Duration::from_secs(302)),
        Checkpoint::Skipped
    ));
    assert!(matches!(
        s.checkpoint_if_due(mono0 + Duration::from_secs(303)),
        Checkpoint::Written { after_failures: 10 }
    ));
    // Back to the normal schedule.
    assert!(matches!(
        s.checkpoint_if_due(mono0 + Duration::from_secs(304)),
        Checkpoint::Skipped
    ));
    let (s2, _) = EnergyStore::open(dir.path(), cfg()).unwrap();
    assert!((s2.ledger().counters(t0()).total_kwh - 0.001).abs() < 1e-12);
}
