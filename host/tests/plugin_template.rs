//! A plugin author's path, as they would walk it: `hashwatt plugin new`
//! makes a crate, its own tests pass natively, `hashwatt plugin build`
//! turns it into a signed package, the appliance installs it, and the
//! host runs it in the sandbox against a signal series (backtest).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn hashwatt(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    common::succeeded(out, what)
}

#[test]
fn a_policy_from_the_template_builds_signs_installs_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let out = hashwatt(&["plugin", "new", "--kind", "policy", "my-ceiling"], root);
    let stdout = ok(&out, "plugin new");
    let krate = root.join("my-ceiling");
    for f in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "tests/scenarios.rs",
        "README.md",
    ] {
        assert!(krate.join(f).is_file(), "{f} missing; {stdout}");
    }
    // The lines an author writes for a minimal policy: the template's source.
    let lines = std::fs::read_to_string(krate.join("src/lib.rs"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .count();
    eprintln!("template policy: {lines} lines of Rust (without comments and blank lines)");

    let test_out = common::test_template_crate(&krate);
    assert!(test_out.contains("3 passed"), "{test_out}");

    // Refusals: a second `new` into the same place, a bad name.
    let again = hashwatt(&["plugin", "new", "--kind", "policy", "my-ceiling"], root);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let bad = hashwatt(&["plugin", "new", "--kind", "policy", "My_Policy"], root);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid plugin name"));

    // Sign and pack in one command.
    let key = root.join("author.key");
    let public = ok(
        &hashwatt(&["plugin", "keygen", "--out", key.to_str().unwrap()], root),
        "keygen",
    );
    let build = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args([
            "plugin",
            "build",
            krate.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .env("CARGO_TARGET_DIR", common::template_target_dir())
        .output()
        .unwrap();
    let built = ok(&build, "plugin build");
    assert!(built.contains("signed"), "{built}");
    let hwpkg = krate.join("my-ceiling.hwpkg");
    assert!(hwpkg.is_file(), "{built}");

    // The appliance installs it only with the author's key trusted.
    let state = root.join("state");
    let config = root.join("hashwatt.toml");
    let write_config = |keys: &str| {
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\ntrusted_keys = [{keys}]\n\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"w\"\n"
            ),
        )
        .unwrap();
    };
    write_config("");
    let refused = hashwatt(
        &[
            "plugin",
            "install",
            hwpkg.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        root,
    );
    assert!(
        !refused.status.success(),
        "an untrusted package was installed"
    );
    write_config(&format!("{:?}", public.trim()));
    let installed = ok(
        &hashwatt(
            &[
                "plugin",
                "install",
                hwpkg.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
            root,
        ),
        "plugin install",
    );
    assert!(
        installed.contains("installed my-ceiling 0.1.0"),
        "{installed}"
    );

    // Live in the appliance: the installed policy follows a signal feed
    // (a watched file) and the verdict says why.
    let price = root.join("price.txt");
    std::fs::write(&price, "180\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\nthreads = 1\ntrusted_keys = [{:?}]\n[web]\nlisten = \"127.0.0.1:0\"\n\n\
             [[pools]]\nurl = \"stratum+tcp://127.0.0.1:9\"\nuser = \"w\"\n\n\
             [[signals]]\nname = \"price\"\nttl_secs = 60\nfile = {{ path = {price:?}, poll_ms = 100 }}\n\n\
             [[policies]]\nname = \"my-ceiling\"\nplugin = \"my-ceiling\"\nconfig = {{ signal = \"price\", max = 150.0 }}\n",
            public.trim()
        ),
    )
    .unwrap();
    let log_path = root.join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let wait_log = |needle: &str| {
        for _ in 0..600 {
            if std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let paused = wait_log("paused by my-ceiling: price 180 > 150");
    std::fs::write(&price, "120\n").unwrap();
    let resumed = paused && wait_log("running by my-ceiling: price 120 <= 150");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        paused && resumed,
        "the policy did not follow the feed:\n{log}"
    );

    // The host runs it in the sandbox over a signal series.
    let series = root.join("prices.csv");
    std::fs::write(
        &series,
        "time,price\n2025-01-01T00:00:00Z,120\n2025-01-01T01:00:00Z,180\n2025-01-01T02:00:00Z,140\n2025-01-01T03:00:00Z,200\n",
    )
    .unwrap();
    let report = ok(
        &hashwatt(
            &[
                "policy",
                "backtest",
                hwpkg.to_str().unwrap(),
                "--series",
                series.to_str().unwrap(),
                "--config",
                krate.join("settings.toml").to_str().unwrap(),
                "--price-unit",
                "per-mwh",
            ],
            root,
        ),
        "backtest",
    );
    let paused = report
        .lines()
        .find(|l| l.starts_with("hours paused"))
        .unwrap_or_default()
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert_eq!(paused, "2.0", "{report}");
    assert!(report.contains("my-ceiling: price N > N"), "{report}");
}

/// The SDK crates as `cargo publish` would upload them carry everything
/// they need (the contract's WIT included): a template crate built against
/// the packaged copies, not the workspace, becomes a package of each kind.
#[test]
fn the_sdk_crates_build_plugins_as_published() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args([
            "package",
            "--allow-dirty",
            "--no-verify",
            "-p",
            "hashwatt-policy-sdk",
            "-p",
            "hashwatt-pool-sdk",
        ])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", root.join("packaged"))
        .output()
        .unwrap();
    ok(&out, "cargo package");
    for (kind, sdk) in [
        ("policy", "hashwatt-policy-sdk"),
        ("pool", "hashwatt-pool-sdk"),
    ] {
        let krate_file = root
            .join("packaged/package")
            .join(format!("{sdk}-{}.crate", env!("CARGO_PKG_VERSION")));
        let untar = Command::new("tar")
            .arg("xzf")
            .arg(&krate_file)
            .arg("-C")
            .arg(root)
            .output()
            .unwrap();
        ok(&untar, "tar");
        let unpacked = root.join(format!("{sdk}-{}", env!("CARGO_PKG_VERSION")));
        assert!(
            std::fs::read_dir(unpacked.join("wit")).unwrap().count() > 0,
            "{sdk} ships its WIT"
        );
        let name = format!("published-{kind}");
        ok(
            &hashwatt(
                &[
                    "plugin",
                    "new",
                    "--kind",
                    kind,
                    &name,
                    "--sdk",
                    unpacked.to_str().unwrap(),
                ],
                root,
            ),
            "plugin new",
        );
        std::fs::copy(
            workspace.join("Cargo.lock"),
            root.join(&name).join("Cargo.lock"),
        )
        .unwrap();
        let built = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["plugin", "build", &name])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", common::template_target_dir())
            .output()
            .unwrap();
        let said = ok(&built, "plugin build against the packaged SDK");
        assert!(
            root.join(&name).join(format!("{name}.hwpkg")).is_file(),
            "{said}"
        );
    }
}
