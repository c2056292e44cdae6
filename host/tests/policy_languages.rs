//! Policies in more than Rust: `hashwatt plugin new --lang python` (built
//! with componentize-py from PyPI) and `--lang javascript` (ComponentizeJS
//! from npm) make the twins of the Rust template policy; all three run in
//! the host under the same sandbox and limits and give the same decision,
//! reason included, on every row of one scenario table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hashwatt::plugin::Runtime;
use hashwatt::plugin::policy::{PolicyLimits, PolicyPluginPre};
use hashwatt::policy::{ClockReading, Energy, Inputs, Mode, Signal, SignalValue};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Rust template policy, built as an author would.
fn rust_twin(tmp: &Path) -> Vec<u8> {
    let krate = tmp.join("ceiling-rs");
    run(
        Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["plugin", "new", "--kind", "policy", "ceiling", "--dir"])
            .arg(&krate),
        "plugin new",
    );
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = repo().join("target/plugin-template");
    run(
        Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["plugin", "build"])
            .arg(&krate)
            .env("CARGO_TARGET_DIR", &target),
        "plugin build",
    );
    std::fs::read(target.join("package/ceiling/plugin.wasm")).unwrap()
}

/// A Python or JavaScript policy from the template (`plugin new --lang`),
/// built with its own tool chain by `plugin build`.
fn from_template(tmp: &Path, lang: &str) -> Vec<u8> {
    let dir = tmp.join(format!("ceiling-{lang}"));
    run(
        Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args([
                "plugin", "new", "--kind", "policy", "--lang", lang, "ceiling", "--dir",
            ])
            .arg(&dir),
        "plugin new",
    );
    run(
        Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["plugin", "build"])
            .arg(&dir),
        &format!("plugin build ({lang})"),
    );
    assert!(dir.join("ceiling.hwpkg").is_file());
    std::fs::read(dir.join("target/plugin.wasm")).unwrap()
}

/// A call budget no busy test machine exceeds (the appliance's 10 ms is
/// tested elsewhere); the figures printed are what the calls took.
fn offline_limits() -> PolicyLimits {
    let mut l = PolicyLimits::default();
    l.call.call_timeout = std::time::Duration::from_secs(1);
    l
}

fn inputs(price: Option<f64>) -> Inputs {
    Inputs {
        now: ClockReading {
            utc_ms: 1_735_689_600_000,
            local_offset_s: 3600,
            time_zone: "Europe/Berlin".into(),
        },
        power_w: Some(3000.0),
        energy: Energy::default(),
        hashrate_hs: 1e14,
        temperatures: Vec::new(),
        signals: vec![Signal {
            name: "price".into(),
            value: match price {
                Some(p) => SignalValue::Number(p),
                None => SignalValue::Unknown("stale (7200 s old)".into()),
            },
            age_ms: 0,
        }],
        applied: Mode::Run,
        applied_for_ms: 0,
        state: Vec::new(),
    }
}

#[test]
fn python_and_javascript_policies_decide_like_their_rust_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = Runtime::new().unwrap();
    let twins = [
        ("rust", rust_twin(tmp.path())),
        ("python", from_template(tmp.path(), "python")),
        ("javascript", from_template(tmp.path(), "javascript")),
    ];
    let table: &[(&str, Option<f64>, Mode, &str)] = &[
        (
            r#"{"signal":"price","max":150}"#,
            Some(120.0),
            Mode::Run,
            "price 120 <= 150",
        ),
        (
            r#"{"signal":"price","max":150}"#,
            Some(150.0),
            Mode::Run,
            "price 150 <= 150",
        ),
        (
            r#"{"signal":"price","max":150}"#,
            Some(150.5),
            Mode::Pause,
            "price 150.5 > 150",
        ),
        (
            r#"{"signal":"price","max":150}"#,
            Some(-3.25),
            Mode::Run,
            "price -3.25 <= 150",
        ),
        (
            r#"{"signal":"price","max":150}"#,
            None,
            Mode::Pause,
            "price",
        ),
        (
            r#"{"signal":"price","max":150,"on_unknown":"run"}"#,
            None,
            Mode::Run,
            "price",
        ),
    ];
    let mut reasons: Vec<Vec<String>> = Vec::new();
    for (lang, wasm) in &twins {
        let t = Instant::now();
        let pre = PolicyPluginPre::new(&runtime, lang, wasm).unwrap();
        let compiled = t.elapsed();
        let mut got = Vec::new();
        let mut instantiate_ms = 0.0;
        for (i, (settings, price, mode, reason)) in table.iter().enumerate() {
            let t = Instant::now();
            let mut p = pre
                .instantiate(settings, offline_limits())
                .unwrap_or_else(|e| panic!("{lang} row {i}: {e}"));
            instantiate_ms += t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(p.subscriptions(), ["price"], "{lang}");
            let d = p
                .evaluate(&inputs(*price))
                .unwrap_or_else(|e| panic!("{lang} row {i}: {e}"));
            assert_eq!(d.mode, *mode, "{lang} row {i}: {d:?}");
            assert!(
                d.reason.contains(reason),
                "{lang} row {i}: {:?} lacks {reason:?}",
                d.reason
            );
            got.push(d.reason);
        }
        // Settings the policy must refuse, naming the field.
        for (bad, field) in [
            (r#"{"signal":"price","maxx":1}"#, "maxx"),
            (r#"{"max":1}"#, "signal"),
        ] {
            let err = pre
                .instantiate(bad, offline_limits())
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(field)),
                "{lang}: {bad} -> {err:?}"
            );
        }
        let stats = runtime.stats_for(&format!("policy:{lang}"));
        eprintln!(
            "{lang}: {} KiB component, compiled in {:.0} ms, instantiate+configure {:.1} ms on average, memory peak {} KiB",
            wasm.len() / 1024,
            compiled.as_secs_f64() * 1e3,
            instantiate_ms / table.len() as f64,
            stats.memory_peak_bytes() / 1024
        );
        reasons.push(got);
    }
    // Known-signal rows give the very same reason in both languages.
    assert_eq!(reasons[0][..4], reasons[1][..4], "python");
    assert_eq!(reasons[0][..4], reasons[2][..4], "javascript");
}
