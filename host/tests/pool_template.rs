//! A pool plugin from the template, as its author would make it: `hashwatt
//! plugin new --kind pool`, its own tests natively, `plugin build` signed,
//! `plugin install`, then the appliance mines through it against the
//! devpool over loopback TCP: shares accepted, none rejected.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn hashwatt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", common::template_target_dir())
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    common::succeeded(out, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_plugin_from_the_template_mines_against_the_devpool() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(
        &hashwatt(&["plugin", "new", "--kind", "pool", "my-pool"], root),
        "plugin new",
    );
    let krate = root.join("my-pool");
    let lines = std::fs::read_to_string(krate.join("src/lib.rs"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .count();
    eprintln!("template pool plugin: {lines} lines of Rust (without comments and blank lines)");
    let test_out = common::test_template_crate(&krate);
    assert!(test_out.contains("3 passed"), "{test_out}");
    let key = root.join("author.key");
    let public = ok(
        &hashwatt(&["plugin", "keygen", "--out", key.to_str().unwrap()], root),
        "keygen",
    );
    let built = ok(
        &hashwatt(
            &[
                "plugin",
                "build",
                krate.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
            root,
        ),
        "plugin build",
    );
    assert!(built.contains("signed"), "{built}");

    let pool = common::devpool(0.0005).await;
    let config = root.join("hashwatt.toml");
    std::fs::write(
        &config,
        format!(
            "threads = 1\nstate_dir = {:?}\ntrusted_keys = [{:?}]\n[web]\nlisten = \"127.0.0.1:0\"\n\n[[pools]]\nurl = \"stratum+tcp://{}\"\nuser = \"tmpl.worker\"\nplugin = \"my-pool\"\n",
            root.join("state"),
            public.trim(),
            pool.local_addr()
        ),
    )
    .unwrap();
    let installed = ok(
        &hashwatt(
            &[
                "plugin",
                "install",
                krate.join("my-pool.hwpkg").to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
            root,
        ),
        "plugin install",
    );
    assert!(
        installed.contains("installed my-pool 0.1.0 (pool)"),
        "{installed}"
    );
    let log = root.join("run.log");
    let record = root.join("transcripts");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--record")
        .arg(&record)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mined = common::wait_for(Duration::from_secs(120), || pool.stats().accepted >= 3).await;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let stats = pool.stats();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        mined,
        "accepted {} share(s); the appliance said:\n{log}",
        stats.accepted
    );
    assert!(
        stats.rejected.is_empty(),
        "rejected: {:?}\n{log}",
        stats.rejected
    );
    // The plugin's own log line: the shares went through it, not the
    // built-in Stratum V1 plugin.
    assert!(log.contains("my-pool: authorized as tmpl.worker"), "{log}");

    // The session it mined replays identically through the same package;
    // through a different plugin (the built-in Stratum V1 client) every
    // answer that differs is shown, recorded (-) against replayed (+).
    let transcript = std::fs::read_dir(&record)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("a transcript");
    let hwpkg = krate.join("my-pool.hwpkg");
    let same = ok(
        &hashwatt(
            &[
                "plugin",
                "test",
                hwpkg.to_str().unwrap(),
                "--transcript",
                transcript.to_str().unwrap(),
            ],
            root,
        ),
        "replay through the same plugin",
    );
    assert!(same.contains("every answer identical"), "{same}");
    let other = hashwatt(
        &[
            "plugin",
            "test",
            "stratum-v1",
            "--transcript",
            transcript.to_str().unwrap(),
        ],
        root,
    );
    let diff = String::from_utf8_lossy(&other.stdout);
    assert!(!other.status.success(), "{diff}");
    assert!(diff.contains("answered differently"), "{diff}");
    assert!(diff.contains("\n  - ") && diff.contains("\n  + "), "{diff}");
    eprintln!("{}", diff.lines().take(12).collect::<Vec<_>>().join("\n"));
}
