//! Energy accounting survives `kill -9`: the real binary runs with a model
//! meter drawing 3.6 kW (1 Wh per second), is killed without warning, and
//! the ledger on disk must hold all but at most one minute of the energy;
//! a restarted appliance continues from there.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hashwatt starts")
}

/// Today's kWh according to `hashwatt energy report --csv`.
fn kwh_on_disk(config: &std::path::Path) -> f64 {
    let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args([
            "energy",
            "report",
            "--period",
            "month",
            "--csv",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = header
        .iter()
        .position(|h| h.trim() == "kwh")
        .unwrap_or_else(|| panic!("no kwh column in {text}"));
    let total = lines
        .find(|l| l.starts_with("total"))
        .unwrap_or_else(|| panic!("no total row in {text}"));
    total.split(',').nth(col).unwrap().trim().parse().unwrap()
}

fn kill9(mut child: Child) {
    let pid = child.id() as i32;
    // SAFETY: kill only sends a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
}

#[test]
fn ledger_loses_at_most_a_minute_on_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hashwatt.toml");
    // No reachable pool: nothing is mined, the model draws idle_w = 3.6 kW.
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nthreads = 1\nbackend = \"scalar\"\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:9\"\nuser = \"w\"\n\
             [energy]\nidle_w = 3600.0\nfull_load_w = 3700.0\npowercap_root = \"/nonexistent\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();

    let child = start(&config);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(75));
    let ran = t0.elapsed().as_secs_f64();
    kill9(child);
    let saved = kwh_on_disk(&config);
    let used = ran / 1000.0; // 1 Wh per second, in kWh
    eprintln!("ran {ran:.1} s ≈ {used:.4} kWh; after kill -9 the ledger holds {saved:.4} kWh");
    assert!(saved <= used + 0.002, "more energy than possible: {saved}");
    assert!(
        saved >= used - 0.060 - 0.003,
        "lost more than a minute of energy: {saved} of {used}"
    );

    // A restarted appliance continues from the saved counters.
    let child = start(&config);
    std::thread::sleep(Duration::from_secs(5));
    kill9(child);
    let after = kwh_on_disk(&config);
    eprintln!("after a restart and another kill -9: {after:.4} kWh");
    assert!(after >= saved, "counters went backwards: {after} < {saved}");
}
