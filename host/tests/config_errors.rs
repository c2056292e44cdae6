//! Every configuration error is found before anything starts: the real
//! binary, given a bad file, exits with status 2 and names the file, line
//! and field, without creating its state dir or starting to hash.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The state dir and a valid pool, then `rest` (from line 5 on). A `rest`
/// starting with `top:` holds top-level settings and goes on line 2.
fn config(state_dir: &Path, rest: &str) -> String {
    let pool = "[[pools]]\nurl = \"stratum+tcp://127.0.0.1:9\"\nuser = \"w\"\n";
    match rest.strip_prefix("top:") {
        Some(top) => format!("state_dir = {state_dir:?}\n{top}{pool}"),
        None => format!("state_dir = {state_dir:?}\n{pool}{rest}"),
    }
}

/// (name, what the file adds, line, field, part of the message).
const CASES: &[(&str, &str, usize, &str, &str)] = &[
    (
        "idle-nan",
        "[energy]\nidle_w = nan\n",
        6,
        "energy.idle_w",
        "finite number of watts",
    ),
    (
        "time-zone",
        "[energy]\ntime_zone = \"Mars/Olympus_Mons\"\n",
        6,
        "energy.time_zone",
        "unknown time zone",
    ),
    (
        "min-over-max",
        "[[signals]]\nname = \"s\"\nmin = 2.0\nmax = 1.0\n",
        7,
        "signals[0].min",
        "greater than max",
    ),
    (
        "interval-inf",
        "[[signals]]\nname = \"s\"\nhttp = { url = \"http://127.0.0.1:9/x\", interval_secs = inf }\n",
        7,
        "signals[0].http.interval_secs",
        "outside 0.1..=86400 s",
    ),
    (
        "policy-typo",
        "[[signals]]\nname = \"grid_export\"\n[[policies]]\nname = \"surplus\"\nplugin = \"surplus-only\"\nconfig = { signal = \"grid_export\", treshold_kw = 1.0 }\n",
        10,
        "policies[0].config",
        "unknown field `treshold_kw`",
    ),
    (
        "plugin-path",
        "[[pools]]\nurl = \"stratum+tcp://127.0.0.1:10\"\nuser = \"w\"\nplugin = \"../../etc/passwd\"\n",
        8,
        "pools[1].plugin",
        "neither a package name",
    ),
    (
        "long-password",
        "[[pools]]\nurl = \"stratum+tcp://127.0.0.1:10\"\nuser = \"w\"\npassword = \"PASSWORD\"\n",
        8,
        "pools[1].password",
        "too long (at most 512)",
    ),
    (
        "duplicate-pool",
        "[[pools]]\nurl = \"stratum+tcp://127.0.0.1:9\"\nuser = \"w\"\n",
        6,
        "pools[1].url",
        "same pool and user as pools[0]",
    ),
    (
        "port-clash",
        "top:[web]\ntls = true\nredirect_listen = \"0.0.0.0:80\"\n[esp_miner]\nenabled = true\nlisten = \"0.0.0.0:80\"\n",
        7,
        "esp_miner.listen",
        "same port as web.redirect_listen",
    ),
    (
        "redirect-without-tls",
        "top:[web]\nredirect_listen = \"0.0.0.0:80\"\n",
        3,
        "web.redirect_listen",
        "tls = true",
    ),
    (
        "backend",
        "top:backend = \"turbo\"\n",
        2,
        "backend",
        "unknown hash backend \"turbo\"; usable here: auto,",
    ),
    (
        "fail-safe",
        "[[policies]]\nname = \"p\"\nplugin = \"price\"\nfail_safe = \"stop\"\n",
        8,
        "policies[0].fail_safe",
        "expected `pause` or `run`",
    ),
    (
        "scheme",
        "[[pools]]\nurl = \"stratum2+tcp://127.0.0.1:10/KEY\"\nuser = \"w\"\n",
        6,
        "pools[1].url",
        "the built-in Stratum V1 plugin handles `stratum+tcp://`",
    ),
];

#[test]
fn bad_configs_exit_2_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (name, rest, line, field, what) in CASES {
        let state = dir.path().join(format!("state-{name}"));
        let path = dir.path().join(format!("{name}.toml"));
        // 4 MiB: as refused as 50 MB, and quick to parse in a debug build.
        let rest = rest.replace("PASSWORD", &"x".repeat(4 << 20));
        std::fs::write(&path, config(&state, &rest)).unwrap();
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .output()
            .expect("binary runs");
        let took = t0.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("{}:{line}: field `{field}`: ", path.display());
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&want) && stderr.contains(what),
            "{name}: want {want}…{what}…, got: {stderr}"
        );
        assert!(
            !stderr.contains("hashing backend selected") && !stderr.contains(" INFO "),
            "{name}: something started: {stderr}"
        );
        assert!(!state.exists(), "{name}: the state dir was created");
        assert!(
            took < Duration::from_secs(20),
            "{name}: took {took:?} to refuse"
        );
    }
}

#[test]
fn log_lines_have_no_colour_codes_off_a_terminal() {
    // `hash scan --backend` logs the backend it selected; stderr is a pipe.
    let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["hash", "scan", "--header", &"00".repeat(80), "--count", "1"])
        .args(["--target", &"ff".repeat(32), "--backend", "scalar"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("INFO"), "no log line to look at: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in {stderr:?}");
}
