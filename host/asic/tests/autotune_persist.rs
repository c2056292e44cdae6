//! Tuning results on disk: survive a restart, bad files never crash.

use std::fs;

use hashwatt_asic::autotune::{
    TuneError, TuneGoal, TuneResult, load, load_or_ignore, result_path, save,
};
use proptest::prelude::*;

fn result(board_id: &str) -> TuneResult {
    TuneResult {
        board_id: board_id.to_owned(),
        model: "BM1370".into(),
        goal: TuneGoal::PowerTarget(15.0),
        frequency_mhz: 475.0,
        voltage_mv: Some(1080),
        hashrate_hs: 9.69e11,
        power_w: 14.86,
        joules_per_th: 15.34,
        tuned_at_unix: 1_700_000_000,
    }
}

#[test]
fn result_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tune");
    assert_eq!(load(&state, "ultra-1").unwrap(), None, "nothing saved yet");
    let saved = result("ultra-1");
    let path = save(&state, &saved).unwrap();
    assert_eq!(path.parent(), Some(state.as_path()));
    // "Restart": nothing in memory, read from disk.
    let loaded = load(&state, "ultra-1").unwrap().unwrap();
    assert_eq!(loaded, saved);
    // Overwrite with a new result; the old one is replaced, no temp files stay.
    let mut newer = saved.clone();
    newer.goal = TuneGoal::BestEfficiency;
    newer.voltage_mv = None;
    save(&state, &newer).unwrap();
    assert_eq!(load(&state, "ultra-1").unwrap().unwrap(), newer);
    let names: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["tune-ultra-1.json"]);
    // Boards do not see each other's results.
    assert_eq!(load(&state, "ultra-2").unwrap(), None);
}

#[test]
fn corrupt_files_are_reported_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = result_path(dir.path(), "gamma").unwrap();
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{\"board_id\":\"gamma\",\"model\":".to_vec(),
        b"\xff\xfe garbage".to_vec(),
        b"[1,2,3]".to_vec(),
        serde_json::to_vec(&serde_json::json!({
            "board_id": "gamma", "model": "BM1370", "goal": "BestEfficiency",
            "frequency_mhz": -5.0, "voltage_mv": null, "hashrate_hs": 1.0,
            "power_w": 1.0, "joules_per_th": 1.0, "tuned_at_unix": 0
        }))
        .unwrap(),
        vec![b' '; 100_000],
    ];
    for bytes in cases {
        fs::write(&path, &bytes).unwrap();
        match load(dir.path(), "gamma") {
            Err(TuneError::Corrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!(
                "{:?}: {other:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            ),
        }
        assert_eq!(load_or_ignore(dir.path(), "gamma"), None);
    }
    // A fresh tuning result replaces the corrupt file.
    save(dir.path(), &result("gamma")).unwrap();
    assert_eq!(load(dir.path(), "gamma").unwrap().unwrap(), result("gamma"));
}

#[test]
fn another_boards_file_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), &result("board-a")).unwrap();
    fs::copy(&a, result_path(dir.path(), "board-b").unwrap()).unwrap();
    match load(dir.path(), "board-b") {
        Err(TuneError::Mismatch {
            expected, found, ..
        }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("board-b", "board-a"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(load_or_ignore(dir.path(), "board-b"), None);
}

#[test]
fn board_ids_are_sanitized_for_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        "../../etc/passwd",
        "usb:1-1.2",
        "usb_1-1.2",
        ".hidden",
        "a/b",
        "a_b",
        "ключ",
    ];
    let mut paths = Vec::new();
    for id in ids {
        let p = result_path(dir.path(), id).unwrap();
        assert_eq!(p.parent(), Some(dir.path()), "{id}");
        save(dir.path(), &result(id)).unwrap();
        assert_eq!(load(dir.path(), id).unwrap().unwrap().board_id, id);
        paths.push(p);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), ids.len(), "distinct ids, distinct files");
    assert!(matches!(
        result_path(dir.path(), ""),
        Err(TuneError::InvalidBoardId(_))
    ));
}

#[test]
fn unsavable_results_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = result("x");
    r.power_w = f64::NAN;
    assert!(matches!(save(dir.path(), &r), Err(TuneError::Invalid(_))));
    assert_eq!(load(dir.path(), "x").unwrap(), None, "nothing written");
}

proptest! {
    #[test]
    fn any_id_names_a_safe_file_inside_the_directory(id in "\\PC{1,80}") {
        let dir = std::path::Path::new("/state/tune");
        let p = result_path(dir, &id).unwrap();
        prop_assert_eq!(p.parent(), Some(dir));
        let name = p.file_name().unwrap().to_str().unwrap();
        prop_assert!(name.starts_with("tune-") && name.ends_with(".json"));
        prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
    }

    #[test]
    fn arbitrary_file_contents_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(result_path(dir.path(), "p").unwrap(), &bytes).unwrap();
        let _ = load(dir.path(), "p");
    }
}
