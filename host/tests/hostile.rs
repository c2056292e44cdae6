//! The hostile test plugin (`plugins/hostile`) driven through the host's
//! plugin runtime: every way it misbehaves must end in a typed error (or in
//! refused actions) without hurting the host, the plugin's neighbours, or
//! the ability to start it again.
//!
//! The plugin is a correct Stratum V1 client until a pool line contains
//! `hostile.trigger`; the mode comes from the pool password.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hashwatt::plugin::pool::{CallOutput, PoolAction, PoolConfig, PoolPlugin, PoolPluginPre};
use hashwatt::plugin::{Limits, PluginError, Runtime, builtin};
use serde_json::{Value, json};

const VECTORS: &str = include_str!("data/stratum-v1.json");
const TRIGGER: &[u8] = b"{\"id\":null,\"method\":\"hostile.trigger\",\"params\":[]}\n";

/// One runtime for every test (and so for every plugin instance), as in the
/// host: what one instance does must not reach the others.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().unwrap())
}

fn hostile_pre() -> &'static PoolPluginPre {
    static PRE: OnceLock<PoolPluginPre> = OnceLock::new();
    PRE.get_or_init(|| {
        let wasm = std::fs::read(env!("HASHWATT_HOSTILE_WASM")).unwrap();
        PoolPluginPre::new(runtime(), "hostile", &wasm).unwrap()
    })
}

fn stratum_pre() -> &'static PoolPluginPre {
    static PRE: OnceLock<PoolPluginPre> = OnceLock::new();
    PRE.get_or_init(|| PoolPluginPre::new(runtime(), "stratum-v1", builtin::STRATUM_V1).unwrap())
}

fn config(password: &str) -> PoolConfig {
    PoolConfig {
        url: "stratum+tcp://127.0.0.1:3333".into(),
        host: "127.0.0.1".into(),
        port: 3333,
        user: "worker".into(),
        password: password.into(),
        user_agent: "hashwatt-test".into(),
        version_rolling: false,
        settings: Default::default(),
    }
}

fn hostile_with(password: &str, limits: Limits) -> PoolPlugin {
    hostile_pre()
        .instantiate(&config(password), limits)
        .unwrap()
}

/// Default limits except a call budget that survives a loaded machine (the
/// budget is wall-clock): what these tests prove must not depend on timing.
fn patient() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

fn hostile(password: &str) -> PoolPlugin {
    hostile_with(password, patient())
}

/// Limits wide enough for the full-size `big-send` and `flood` to be built
/// by the plugin, so the host's own output limits are what stops them.
fn roomy() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(20),
        memory_bytes: 1 << 30,
        ..Limits::default()
    }
}

/// The request lines a call asked to send.
fn requests(out: &CallOutput) -> Vec<Value> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            PoolAction::Send(b) => Some(b),
            _ => None,
        })
        .flat_map(|b| {
            String::from_utf8(b.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Pool answers to the client's requests.
fn answers(requests: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in requests {
        let result = match r["method"].as_str().unwrap_or("") {
            "mining.subscribe" => json!([[["mining.notify", "ae6812eb"]], "08000002", 4]),
            _ => json!(true),
        };
        let line = json!({"id": r["id"], "result": result, "error": null});
        out.extend(serde_json::to_vec(&line).unwrap());
        out.push(b'\n');
    }
    out
}

fn notify() -> Vec<u8> {
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    let params = &vectors["stratum_v1"][0]["notify_params"];
    format!(
        "{}\n",
        json!({"id": null, "method": "mining.notify", "params": params})
    )
    .into_bytes()
}

fn jobs(out: &CallOutput) -> Vec<&str> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            PoolAction::NewJob(j) => Some(j.id()),
            _ => None,
        })
        .collect()
}

fn logs(out: &CallOutput) -> Vec<&str> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            PoolAction::Log { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// Subscribes, authorizes and gets one job, as a correct client must.
fn handshake(p: &mut PoolPlugin) {
    let hello = p.connected(0).unwrap();
    let more = p.received(0, &answers(&requests(&hello))).unwrap();
    p.received(0, &answers(&requests(&more))).unwrap();
    let out = p.received(0, &notify()).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(jobs(&out), vec!["bf"], "{:?}", out.actions);
}

/// Handshakes, then sends the trigger line and times the call.
fn trigger(p: &mut PoolPlugin) -> (Result<CallOutput, PluginError>, Duration) {
    handshake(p);
    let start = Instant::now();
    let result = p.received(0, TRIGGER);
    (result, start.elapsed())
}

fn trap_reason(result: Result<CallOutput, PluginError>) -> String {
    match result {
        Err(PluginError::Trap { name, reason }) => {
            assert_eq!(name, "hostile");
            reason
        }
        Err(other) => panic!("expected a trap, got {other}"),
        Ok(out) => panic!("expected a trap, got {:?}", out.actions.len()),
    }
}

fn limit_reason(result: Result<CallOutput, PluginError>) -> String {
    match result {
        Err(PluginError::Limit { name, reason }) => {
            assert_eq!(name, "hostile");
            reason
        }
        Err(other) => panic!("expected a limit error, got {other}"),
        Ok(out) => panic!("expected a limit error, got {} actions", out.actions.len()),
    }
}

/// After a trap the instance stays dead with the same reason, and a new
/// instance from the same pre-compiled plugin works.
fn assert_dead_then_restartable(mut p: PoolPlugin, reason: &str) {
    assert_eq!(p.dead(), Some(reason));
    for again in [p.received(0, &notify()), p.tick(1_000), p.connected(2_000)] {
        assert_eq!(trap_reason(again), reason);
    }
    assert!(matches!(
        p.disconnected("test"),
        Err(PluginError::Trap { .. })
    ));
    let mut fresh = hostile("x");
    handshake(&mut fresh);
    assert!(fresh.dead().is_none());
}

#[test]
fn infinite_loop_is_stopped_by_the_call_budget() {
    let (result, took) = trigger(&mut hostile_with("loop", Limits::default()));
    eprintln!("loop: trapped after {took:?} (budget 10 ms)");
    let mut p = hostile_with("loop", Limits::default());
    let (result2, took2) = trigger(&mut p);
    eprintln!("loop: trapped after {took2:?} (second instance)");
    assert_eq!(trap_reason(result), "call exceeded its time budget");
    let reason = trap_reason(result2);
    assert_eq!(reason, "call exceeded its time budget");
    assert!(took < Duration::from_secs(5) && took2 < Duration::from_secs(5));
    assert_dead_then_restartable(p, &reason);
}

#[test]
fn memory_exhaustion_traps_at_the_memory_limit() {
    // With time to spare, the 16 MiB memory limit is what stops it.
    let mut p = hostile("memory");
    let (result, took) = trigger(&mut p);
    let reason = trap_reason(result);
    eprintln!("memory: {reason:?} after {took:?}");
    assert!(reason.starts_with("memory limit exceeded"), "{reason}");
    assert!(took < Duration::from_secs(5));
    assert_dead_then_restartable(p, &reason);
    // Under the default 10 ms budget, whichever limit comes first stops it.
    let (result, took) = trigger(&mut hostile_with("memory", Limits::default()));
    eprintln!(
        "memory, default limits: {:?} after {took:?}",
        trap_reason(result)
    );
}

#[test]
fn unreachable_panic_and_stack_overflow_trap() {
    for mode in ["unreachable", "panic", "stack"] {
        let mut p = hostile(mode);
        let (result, took) = trigger(&mut p);
        let reason = trap_reason(result);
        eprintln!("{mode}: {reason:?} after {took:?}");
        assert_dead_then_restartable(p, &reason);
    }
}

#[test]
fn oversized_send_is_refused() {
    // Just over the 1 MiB per-call send limit: the plugin builds it easily.
    let mut p = hostile("big-send:1100000");
    let (result, _) = trigger(&mut p);
    let reason = limit_reason(result);
    assert!(reason.contains("send"), "{reason}");
    // A limit error drops the output but leaves the instance usable.
    assert!(p.dead().is_none());
    let out = p.received(0, &notify()).unwrap();
    assert_eq!(jobs(&out), vec!["bf"]);

    // The full 100 MB: under default limits the plugin cannot even build it.
    let (result, took) = trigger(&mut hostile_with("big-send", Limits::default()));
    eprintln!("big-send 100 MB, default limits: {result:?} after {took:?}");
    trap_reason(result);
    // With room to build it, the host refuses it.
    let (result, took) = trigger(&mut hostile_with("big-send", roomy()));
    eprintln!("big-send 100 MB, 1 GiB memory: {result:?} after {took:?}");
    let reason = limit_reason(result);
    assert!(reason.contains("100000000"), "{reason}");
}

#[test]
fn action_flood_is_refused() {
    let mut p = hostile("flood:2000");
    let (result, _) = trigger(&mut p);
    let reason = limit_reason(result);
    // 2000 floods plus the session's own log of the trigger notification.
    assert!(reason.contains("2001 actions in one call"), "{reason}");
    assert!(p.dead().is_none());

    let (result, took) = trigger(&mut hostile_with("flood", Limits::default()));
    eprintln!("flood 1e6, default limits: {result:?} after {took:?}");
    trap_reason(result);
    let (result, took) = trigger(&mut hostile_with("flood", roomy()));
    eprintln!("flood 1e6, 1 GiB memory: {result:?} after {took:?}");
    // Even with room to build a million actions, wasmtime's own cap on data
    // lifted from a guest in one call stops them before the host's count.
    let reason = trap_reason(result);
    assert!(reason.contains("too much data"), "{reason}");
}

#[test]
fn invalid_jobs_are_rejected_and_the_session_goes_on() {
    let mut p = hostile("invalid-job");
    let (result, took) = trigger(&mut p);
    let out = result.unwrap();
    eprintln!("invalid-job: {} rejected in {took:?}", out.rejected.len());
    // Nine broken jobs and one 31-byte share target, each refused.
    assert_eq!(out.rejected.len(), 10, "{:?}", out.rejected);
    let reasons: Vec<String> = out.rejected.iter().map(|r| r.to_string()).collect();
    for expected in [
        "prev-hash must be 32 bytes, got 31",
        "10000 merkle branches",
        "extranonce2 size must be 1..=16 bytes, got 0",
        "merkle branch 1 must be 32 bytes, got 31",
        "coinbase prefix is 100000 bytes",
        "job id is empty",
        "merkle root must be 32 bytes, got 31",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no {expected:?} in {reasons:#?}"
        );
    }
    assert!(reasons.iter().any(|r| r.contains("share target")));
    assert!(jobs(&out).is_empty(), "{:?}", jobs(&out));
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a, PoolAction::SetShareTarget(_)))
    );
    // Still a working client afterwards.
    assert_eq!(jobs(&p.received(0, &notify()).unwrap()), vec!["bf"]);
}

/// Runs a probe mode and returns its log lines (`<area>: …`).
fn probe(area: &str) -> Vec<String> {
    let mut p = hostile(area);
    let (result, took) = trigger(&mut p);
    let out = result.unwrap();
    let lines: Vec<String> = logs(&out)
        .into_iter()
        .filter(|l| l.starts_with(&format!("{area}: ")))
        .map(str::to_string)
        .collect();
    eprintln!("{area} probe ({took:?}):\n  {}", lines.join("\n  "));
    // Still a working client afterwards.
    assert_eq!(jobs(&p.received(0, &notify()).unwrap()), vec!["bf"]);
    lines
}

/// Each probe line says denied or empty; none says it got anything.
fn assert_all_denied(lines: &[String], expected: usize) {
    assert_eq!(lines.len(), expected, "{lines:?}");
    for line in lines {
        assert!(
            line.contains(": denied: ") || line.contains(": empty: "),
            "sandbox leak: {line}"
        );
        for breach in [
            "READ",
            "LISTED",
            "WROTE",
            "CONNECTED",
            "LISTENING",
            "BOUND",
            "RESOLVED",
            "FOUND",
        ] {
            assert!(!line.contains(breach), "sandbox leak: {line}");
        }
    }
}

#[test]
fn filesystem_is_out_of_reach() {
    let marker = std::path::Path::new("/tmp/hostile-plugin-was-here");
    let _ = std::fs::remove_file(marker);
    let lines = probe("fs");
    assert_all_denied(&lines, 4);
    assert!(lines[0].starts_with("fs: denied: read /etc/passwd"));
    assert!(!marker.exists(), "the plugin wrote {}", marker.display());
}

#[test]
fn sockets_are_out_of_reach() {
    let lines = probe("socket");
    assert_all_denied(&lines, 4);
    assert!(lines[0].starts_with("socket: denied: connect 127.0.0.1:22"));
}

#[test]
fn environment_is_empty() {
    // The host process has variables and arguments; the plugin sees none.
    assert!(std::env::vars_os().next().is_some());
    let lines = probe("env");
    assert_all_denied(&lines, 3);
    assert!(lines.contains(&"env: empty: 0 environment variables".to_string()));
    assert!(lines.contains(&"env: empty: 0 arguments".to_string()));
}

#[test]
fn misbehaving_in_the_constructor_or_on_connect_traps() {
    for password in ["loop@new", "panic@new", "memory@new"] {
        let start = Instant::now();
        let result = hostile_pre().instantiate(&config(password), patient());
        let took = start.elapsed();
        match result {
            Err(PluginError::Trap { reason, .. }) => {
                eprintln!("{password}: {reason:?} after {took:?}")
            }
            Err(other) => panic!("{password}: {other}"),
            Ok(_) => panic!("{password}: instantiated"),
        }
        assert!(took < Duration::from_secs(5));
    }
    for password in ["loop@connected", "unreachable@connected", "stack@connected"] {
        let mut p = hostile(password);
        let reason = trap_reason(p.connected(0));
        eprintln!("{password}: {reason:?}");
        assert_dead_then_restartable(p, &reason);
    }
    let mut p = hostile("flood:5000@connected");
    assert!(matches!(p.connected(0), Err(PluginError::Limit { .. })));
    // Actions made in the constructor come with the first call.
    let mut p = hostile("flood:5000@new");
    assert!(matches!(p.connected(0), Err(PluginError::Limit { .. })));
    handshake(&mut p);
}

#[test]
fn without_a_mode_it_is_a_correct_client() {
    let mut p = hostile("x");
    handshake(&mut p);
    let out = p.received(0, TRIGGER).unwrap();
    assert!(out.rejected.is_empty());
    assert!(
        logs(&out)
            .iter()
            .all(|l| l.contains("hostile.trigger") || l.is_empty()),
        "{:?}",
        logs(&out)
    );
}

#[test]
fn neighbours_are_unaffected() {
    let mut neighbour = stratum_pre().instantiate(&config("x"), patient()).unwrap();
    handshake(&mut neighbour);
    let mut survivor = hostile("invalid-job");
    handshake(&mut survivor);
    for mode in [
        "loop",
        "memory",
        "unreachable",
        "panic",
        "stack",
        "big-send",
        "flood:2000",
        "fs",
    ] {
        let (result, took) = trigger(&mut hostile_with(mode, Limits::default()));
        eprintln!("{mode}: {:?} in {took:?}", result.as_ref().err());
        // The real plugin and another hostile instance carry on as before.
        let out = neighbour.received(0, &notify()).unwrap();
        assert_eq!(jobs(&out), vec!["bf"], "neighbour after {mode}");
        let out = survivor.received(0, &notify()).unwrap();
        assert_eq!(jobs(&out), vec!["bf"], "survivor after {mode}");
        let out = neighbour.tick(1_000).unwrap();
        assert!(out.rejected.is_empty());
    }
    assert!(neighbour.dead().is_none() && survivor.dead().is_none());
}

/// `validate-settings` runs on a throwaway instance before anything else:
/// whatever the plugin does there ends in a typed error (or a refusal the
/// host cuts to size) and leaves the plugin loadable.
#[test]
fn validate_settings_is_sandboxed_and_limited() {
    let check = |mode: &str, limits: Limits| {
        let settings = json!({ "hostile": mode }).to_string();
        let start = Instant::now();
        let verdict = hostile_pre().validate_settings(&settings, limits);
        (verdict, start.elapsed())
    };
    for mode in ["loop", "memory", "unreachable", "panic", "stack"] {
        let (verdict, took) = check(mode, Limits::default());
        match verdict {
            Err(PluginError::Trap { name, reason }) => {
                eprintln!("validate-settings {mode}: {reason:?} after {took:?}");
                assert_eq!(name, "hostile");
            }
            other => panic!("{mode}: expected a trap, got {other:?}"),
        }
        assert!(took < Duration::from_secs(5), "{mode} took {took:?}");
    }
    // A refusal longer than the string limit is cut, not refused outright.
    let limits = Limits::default();
    let max = limits.max_string_bytes;
    let (verdict, _) = check(&format!("big-send:{}", 4 * max), limits);
    let message = verdict.unwrap().unwrap_err();
    assert!(message.len() <= max + 4, "{} bytes", message.len());
    // The sandbox holds here too.
    let (verdict, _) = check("fs", patient());
    let message = verdict.unwrap().unwrap_err();
    let lines: Vec<String> = message
        .trim_start_matches("hostile Fs: ")
        .split("; ")
        .map(str::to_string)
        .collect();
    assert_all_denied(&lines, 4);
    // And nothing stuck to the plugin: settings check and sessions work.
    assert_eq!(
        hostile_pre()
            .validate_settings("{}", Limits::default())
            .unwrap(),
        Ok(())
    );
    assert_eq!(hostile_pre().url_schemes().unwrap(), vec!["stratum+tcp"]);
    handshake(&mut hostile("x"));
}

/// The host ticks only when asked: a session that is never answered still
/// times out, from the wake-up it asked for.
#[test]
fn requested_wake_ups_drive_the_timeouts() {
    let mut p = hostile("x");
    let hello = p.connected(0).unwrap();
    assert_eq!(hello.wake_at_ms, Some(30_000));
    let out = p.tick(30_000).unwrap();
    assert!(
        out.actions
            .iter()
            .any(|a| matches!(a, PoolAction::Fail(r) if r == "mining.subscribe timed out")),
        "{:?}",
        out.actions
    );
}
