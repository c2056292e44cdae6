//! Builds the first-party plugins for `wasm32-wasip2` and embeds them in the
//! host binary, so `cargo run` and `cargo test` always use plugins built from
//! the same checkout (and an appliance image needs no separate plugin files).

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Plugin crates: (package name, artifact file stem, env var the host reads).
const PLUGINS: &[(&str, &str, &str)] = &[
    ("stratum-v1", "stratum_v1", "HASHWATT_STRATUM_V1_WASM"),
    // Test-only: misbehaves on demand so tests can prove the sandbox holds.
    ("hostile", "hostile", "HASHWATT_HOSTILE_WASM"),
    (
        "hostile-policy",
        "hostile_policy",
        "HASHWATT_HOSTILE_POLICY_WASM",
    ),
    // First-party energy policies.
    (
        "policy-surplus-only",
        "policy_surplus_only",
        "HASHWATT_POLICY_SURPLUS_ONLY_WASM",
    ),
    ("policy-price", "policy_price", "HASHWATT_POLICY_PRICE_WASM"),
    ("policy-quota", "policy_quota", "HASHWATT_POLICY_QUOTA_WASM"),
    (
        "policy-schedule",
        "policy_schedule",
        "HASHWATT_POLICY_SCHEDULE_WASM",
    ),
    (
        "policy-heater",
        "policy_heater",
        "HASHWATT_POLICY_HEATER_WASM",
    ),
    (
        "policy-grid-emergency",
        "policy_grid_emergency",
        "HASHWATT_POLICY_GRID_EMERGENCY_WASM",
    ),
];

/// The plugins' target. rustup installs the targets `rust-toolchain.toml`
/// lists only when it installs the toolchain itself; where the pinned
/// toolchain already exists without it (a common fresh-machine state), the
/// build adds it here, so `cargo run` works before any other command.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the wasm target's standard library is installed, adding it
/// through rustup when it is not; fails with what to run where it cannot.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let installed = |rustc: &str| -> bool {
        Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                    .join("lib/rustlib")
                    .join(WASM_TARGET)
                    .join("lib")
                    .is_dir()
            })
            .unwrap_or(false)
    };
    if installed(&rustc) {
        return;
    }
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    println!(
        "cargo:warning=the {WASM_TARGET} target is missing; installing it with rustup (plugins are built for it)"
    );
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", WASM_TARGET]);
    if let Some(t) = &toolchain {
        cmd.args(["--toolchain", t]);
    }
    match cmd.status() {
        Ok(s) if s.success() && installed(&rustc) => {}
        Ok(s) => panic!(
            "`rustup target add {WASM_TARGET}` failed ({s}); the plugins cannot be built. \
             Install the target and build again: rustup target add {WASM_TARGET}"
        ),
        Err(e) => panic!(
            "the {WASM_TARGET} target is not installed and rustup cannot be run ({e}); \
             install the target for this toolchain (rustup target add {WASM_TARGET}) and build again"
        ),
    }
}

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_wasm_target();
    let target_dir = root.join("target").join("plugins");
    // One cargo invocation for all plugins: they share dependencies.
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in PLUGINS {
        cmd.args(["--package", package]);
    }
    // The nested build is a plain build for another target: none of the
    // outer build's wrappers (clippy, coverage) or host flags apply.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed ({status}); \
             is the target installed? run: rustup target add wasm32-wasip2"
        );
    }
    for (package, stem, var) in PLUGINS {
        let wasm = target_dir
            .join("wasm32-wasip2")
            .join("plugin")
            .join(format!("{stem}.wasm"));
        if !wasm.exists() {
            panic!("plugin {package} built but {} is missing", wasm.display());
        }
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}
