//! The real Stratum V1 `.wasm` component, driven through the host's plugin
//! runtime: the shared test vectors from pool bytes to block hash, chunking
//! independence, and no trap on any input.

use hashwatt::plugin::pool::{CallOutput, PoolAction, PoolConfig, PoolPlugin, PoolPluginPre};
use hashwatt::plugin::{Limits, PluginError, Runtime, builtin};
use hashwatt_work::{Target, hash_to_display};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// The vector file, copied next to the tests so a clean clone has it; the
/// test also checks it matches `../shared/vectors` when that is present.
const VECTORS: &str = include_str!("data/stratum-v1.json");

fn pre() -> &'static PoolPluginPre {
    static PRE: OnceLock<PoolPluginPre> = OnceLock::new();
    PRE.get_or_init(|| {
        let runtime = Runtime::new().unwrap();
        PoolPluginPre::new(&runtime, "stratum-v1", builtin::STRATUM_V1).unwrap()
    })
}

fn plugin(version_rolling: bool) -> PoolPlugin {
    let config = PoolConfig {
        url: "stratum+tcp://127.0.0.1:3333".into(),
        host: "127.0.0.1".into(),
        port: 3333,
        user: "worker".into(),
        password: "x".into(),
        user_agent: "hashwatt-test".into(),
        version_rolling,
        settings: Default::default(),
    };
    pre().instantiate(&config, loaded_machine_limits()).unwrap()
}

/// The default limits with a wider call budget: these tests are about the
/// protocol, not the budget, and share two cores with the whole suite, so a
/// descheduled call must not look like a runaway plugin (the budget itself
/// is tested in `hostile.rs`).
fn loaded_machine_limits() -> Limits {
    Limits {
        call_timeout: std::time::Duration::from_millis(250),
        ..Limits::default()
    }
}

/// JSON lines the plugin asked to send.
fn sent(out: &CallOutput) -> Vec<Value> {
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

/// Answers the handshake requests the plugin sent, as a pool would.
fn answer(requests: &[Value], extranonce1: &str, en2_size: u64, mask: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in requests {
        let id = r["id"].clone();
        let result = match r["method"].as_str().unwrap_or("") {
            "mining.subscribe" => json!([
                [["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]],
                extranonce1,
                en2_size
            ]),
            "mining.configure" => match mask {
                Some(m) => json!({"version-rolling": true, "version-rolling.mask": m}),
                None => json!({"version-rolling": false}),
            },
            _ => json!(true),
        };
        out.extend(
            serde_json::to_vec(&json!({"id": id, "result": result, "error": null})).unwrap(),
        );
        out.push(b'\n');
    }
    out
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn vector_file_matches_shared_copy() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/stratum-v1.json");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        let a: Value = serde_json::from_str(&text).unwrap();
        let b: Value = serde_json::from_str(VECTORS).unwrap();
        assert_eq!(
            a,
            b,
            "host/tests/data/stratum-v1.json differs from {}",
            shared.display()
        );
    }
}

#[test]
fn stratum_vectors_from_pool_bytes_to_block_hash() {
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    for v in vectors["stratum_v1"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let mask = v["version_rolling_mask"].as_str();
        let mut p = plugin(mask.is_some());
        let hello = p.connected(0).unwrap();
        let reqs = sent(&hello);
        let mut out = p
            .received(
                0,
                &answer(
                    &reqs,
                    v["extranonce1"].as_str().unwrap(),
                    v["extranonce2_size"].as_u64().unwrap(),
                    mask,
                ),
            )
            .unwrap();
        // authorize and extranonce.subscribe follow the subscribe result.
        let more = answer(&sent(&out), "", 0, None);
        out.actions.extend(p.received(0, &more).unwrap().actions);
        if let Some(d) = v["difficulty"].as_f64() {
            let line = format!(
                "{}\n",
                json!({"id": null, "method": "mining.set_difficulty", "params": [d]})
            );
            out.actions
                .extend(p.received(0, line.as_bytes()).unwrap().actions);
        }
        let notify = format!(
            "{}\n",
            json!({"id": null, "method": "mining.notify", "params": v["notify_params"]})
        );
        out.actions
            .extend(p.received(0, notify.as_bytes()).unwrap().actions);
        assert!(out.rejected.is_empty(), "{name}: {:?}", out.rejected);

        let job = out
            .actions
            .iter()
            .find_map(|a| match a {
                PoolAction::NewJob(j) => Some(j.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no job from {:?}", out.actions));
        let submit = &v["submit"];
        let en2 = hex::decode(submit["extranonce2"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(job.coinbase(&en2).unwrap()),
            v["coinbase"].as_str().unwrap(),
            "{name}: coinbase"
        );
        let root = job.merkle_root(&en2).unwrap();
        assert_eq!(
            hex::encode(root),
            v["merkle_root_header_bytes"].as_str().unwrap(),
            "{name}: merkle root"
        );
        let ntime = u32::from_str_radix(submit["ntime"].as_str().unwrap(), 16).unwrap();
        let nonce = u32::from_str_radix(submit["nonce"].as_str().unwrap(), 16).unwrap();
        let version = match submit["version_bits"].as_str() {
            Some(bits) => {
                let bits = u32::from_str_radix(bits, 16).unwrap();
                assert_eq!(job.version_mask(), 0x1fffe000, "{name}: negotiated mask");
                (job.version() & !job.version_mask()) | (bits & job.version_mask())
            }
            None => job.version(),
        };
        let header = job.header(&root, version, ntime, nonce);
        assert_eq!(
            hex::encode(header),
            v["header"].as_str().unwrap(),
            "{name}: header"
        );
        let hash = hashwatt_hash::sha256d(&header);
        assert_eq!(
            hash_to_display(&hash),
            v["hash_display"].as_str().unwrap(),
            "{name}: hash"
        );
        if let Some(t) = v["share_target_hex"].as_str() {
            let target = out
                .actions
                .iter()
                .rev()
                .find_map(|a| match a {
                    PoolAction::SetShareTarget(t) => Some(*t),
                    _ => None,
                })
                .unwrap();
            assert_eq!(
                target,
                Target::from_be_bytes(hex32(t)),
                "{name}: share target"
            );
            assert!(target.is_met_by(&hash), "{name}: share meets its target");
        }

        // The plugin submits the share with exactly the vector's fields.
        let share = hashwatt::plugin::pool::ShareSubmission {
            id: 7,
            job_id: job.id().to_string(),
            extranonce2: en2,
            ntime,
            nonce,
            version,
        };
        let submit_req = sent(&p.share_found(0, &share).unwrap());
        let params = submit_req[0]["params"].as_array().unwrap();
        assert_eq!(submit_req[0]["method"], "mining.submit");
        assert_eq!(params[1], submit["job_id"]);
        assert_eq!(params[2], submit["extranonce2"]);
        assert_eq!(params[3], submit["ntime"]);
        assert_eq!(params[4], submit["nonce"]);
        if let Some(bits) = submit["version_bits"].as_str() {
            assert_eq!(params[5], bits);
        }
    }
}

/// A realistic pool transcript after the handshake.
fn transcript() -> Vec<u8> {
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    let notify = &vectors["stratum_v1"][1]["notify_params"];
    let mut lines = vec![
        json!({"id": 1, "result": [[["mining.set_difficulty", "1"], ["mining.notify", "1"]], "a1b2c3d4", 8], "error": null}),
        json!({"id": null, "method": "mining.set_difficulty", "params": [0.001]}),
        json!({"id": null, "method": "mining.notify", "params": notify}),
        json!({"id": 2, "result": true, "error": null}),
        json!({"id": 3, "result": true, "error": null}),
        json!({"id": null, "method": "client.show_message", "params": ["welcome"]}),
        json!({"id": null, "method": "mining.set_difficulty", "params": [65536]}),
        json!({"id": 99, "method": "client.get_version", "params": []}),
    ]
    .into_iter()
    .map(|l| format!("{l}\r\n"))
    .collect::<String>()
    .into_bytes();
    lines.extend(b"\n\n");
    lines
}

fn run_chunks(chunks: &[&[u8]]) -> Vec<String> {
    let mut p = plugin(false);
    let mut log: Vec<String> = p
        .connected(0)
        .unwrap()
        .actions
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    for c in chunks {
        let out = p.received(0, c).unwrap();
        log.extend(out.actions.iter().map(|a| format!("{a:?}")));
        log.extend(out.rejected.iter().map(|r| r.to_string()));
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn actions_do_not_depend_on_chunking(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40)) {
        let bytes = transcript();
        let whole = run_chunks(&[&bytes]);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len())).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        prop_assert_eq!(run_chunks(&chunks), whole);
    }

    #[test]
    fn no_input_makes_the_plugin_trap(garbage in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut p = plugin(true);
        p.connected(0).unwrap();
        prop_assert!(p.received(0, &garbage).is_ok());
        let odd_subscribe: &[u8] = b"\n{\"id\":1,\"result\":[[],\"zz\",99],\"error\":null}\n";
        let second = p.received(0, odd_subscribe);
        prop_assert!(second.is_ok());
        prop_assert!(p.tick(120_000).is_ok());
    }
}

#[test]
fn one_byte_chunks_match_whole() {
    let bytes = transcript();
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run_chunks(&chunks), run_chunks(&[&bytes]));
}

/// A component that exports only the named (empty) interface instances:
/// enough for the host's version check, which reads the exports' names.
fn component_exporting(names: &[&str]) -> Vec<u8> {
    let exports: String = names
        .iter()
        .map(|n| format!("(export \"{n}\" (instance $empty))\n"))
        .collect();
    wat::parse_str(format!("(component (instance $empty) {exports})")).unwrap()
}

#[test]
fn a_component_built_for_pool_0_1_0_is_refused_with_both_versions() {
    let runtime = Runtime::new().unwrap();
    let old = component_exporting(&["hashwatt:pool/types@0.1.0", "hashwatt:pool/session@0.1.0"]);
    let e = PoolPluginPre::new(&runtime, "oldpool", &old).err().unwrap();
    match &e {
        PluginError::WorldVersion {
            name,
            package,
            found,
            supported,
            ..
        } => {
            assert_eq!(name, "oldpool");
            assert_eq!(*package, "hashwatt:pool");
            assert_eq!(found, "0.1.0");
            assert_eq!(*supported, "0.2.1");
        }
        other => panic!("expected WorldVersion, got {other}"),
    }
    assert_eq!(
        e.to_string(),
        "plugin oldpool was built for hashwatt:pool@0.1.0; this host supports \
         hashwatt:pool@0.2.1 — rebuild it against wit/pool 0.2.1"
    );
    // A later minor version is refused the same way, and so is a later
    // patch (it may import what this host lacks); an earlier patch is not
    // refused for its version (this one then fails to link instead).
    let newer = component_exporting(&["hashwatt:pool/session@0.3.0"]);
    let e = PoolPluginPre::new(&runtime, "newpool", &newer)
        .err()
        .unwrap();
    assert!(
        matches!(&e, PluginError::WorldVersion { found, .. } if found == "0.3.0"),
        "{e}"
    );
    let later = component_exporting(&["hashwatt:pool/session@0.2.7"]);
    let e = PoolPluginPre::new(&runtime, "later", &later).err().unwrap();
    assert!(
        matches!(&e, PluginError::WorldVersion { found, .. } if found == "0.2.7"),
        "{e}"
    );
    let earlier = component_exporting(&["hashwatt:pool/session@0.2.0"]);
    let e = PoolPluginPre::new(&runtime, "earlier", &earlier)
        .err()
        .unwrap();
    assert!(matches!(e, PluginError::Load { .. }), "{e}");
    // Something that is no pool plugin at all says so.
    let policy = component_exporting(&["hashwatt:policy/policy@0.1.0"]);
    let e = PoolPluginPre::new(&runtime, "notapool", &policy)
        .err()
        .unwrap();
    assert!(
        matches!(&e, PluginError::Load { reason, .. }
            if reason.contains("hashwatt:pool/session@0.2.1") && reason.contains("hashwatt:policy/policy@0.1.0")),
        "{e}"
    );
}

#[test]
fn plugin_info_url_schemes_and_settings() {
    assert_eq!(pre().url_schemes().unwrap(), vec!["stratum+tcp"]);
    let check = |json: &str| pre().validate_settings(json, Limits::default()).unwrap();
    assert_eq!(check("{}"), Ok(()));
    assert_eq!(check(r#"{"suggest_difficulty": 2048}"#), Ok(()));
    assert_eq!(
        check(r#"{"suggest_difficulty": 2048, "diff": 1}"#),
        Err("settings.diff: unknown setting (known: suggest_difficulty)".into())
    );
    assert_eq!(
        check(r#"{"suggest_difficulty": "lots"}"#),
        Err(r#"settings.suggest_difficulty: expected a positive number, got "lots""#.into())
    );
}

#[test]
fn settings_reach_the_session_and_wake_ups_reach_the_host() {
    let mut settings = serde_json::Map::new();
    settings.insert("suggest_difficulty".into(), json!(1024));
    let config = PoolConfig {
        url: "stratum+tcp://127.0.0.1:3333".into(),
        host: "127.0.0.1".into(),
        port: 3333,
        user: "worker".into(),
        password: "x".into(),
        user_agent: "hashwatt-test".into(),
        version_rolling: false,
        settings,
    };
    let mut p = pre().instantiate(&config, loaded_machine_limits()).unwrap();
    let hello = p.connected(1_000).unwrap();
    let methods: Vec<Value> = sent(&hello).iter().map(|m| m["method"].clone()).collect();
    assert_eq!(
        methods,
        vec![
            json!("mining.subscribe"),
            json!("mining.suggest_difficulty")
        ]
    );
    assert_eq!(sent(&hello)[1]["params"], json!([1024]));
    assert_eq!(hello.wake_at_ms, Some(31_000));
    let out = p
        .received(2_000, &answer(&sent(&hello)[..1], "00", 4, None))
        .unwrap();
    assert_eq!(out.wake_at_ms, Some(32_000));
    let out = p.tick(32_000).unwrap();
    assert!(
        out.actions
            .iter()
            .any(|a| matches!(a, PoolAction::Fail(r) if r == "mining.authorize timed out")),
        "{:?}",
        out.actions
    );
    assert_eq!(out.wake_at_ms, None, "a failed session asks for nothing");
}
