//! Transcript tests: bytes in, actions out, for every message the plugin
//! handles.

mod common;

use common::*;
use serde_json::{Value, json};
use stratum_v1::{Action, LogLevel, ReconnectRequest, Session, Share, ShareOutcome};

#[test]
fn handshake_without_version_rolling() {
    let mut s = Session::new(config(false));
    let a = s.connected(0);
    assert_eq!(a.len(), 2);
    assert_eq!(
        sent(&a),
        vec![json!({"id": 1, "method": "mining.subscribe", "params": [UA]})]
    );
    // The subscribe's timeout, as the wake-up the host ticks for.
    assert_eq!(a[1], Action::WakeAt(30_000));
    let a = feed(&mut s, subscribe_result(1, "08000002", 4));
    assert_eq!(
        targets(&a),
        vec!["00000000ffff0000000000000000000000000000000000000000000000000000"]
    );
    assert_eq!(
        sent(&a),
        vec![
            json!({"id": 2, "method": "mining.authorize", "params": ["worker1", "x"]}),
            json!({"id": 3, "method": "mining.extranonce.subscribe", "params": []}),
        ]
    );
    let a = feed(&mut s, json!({"id": 2, "result": true, "error": null}));
    assert_eq!(logs(&a, LogLevel::Info), vec!["authorized as worker1"]);
    assert!(s.is_authorized());
    // An error reply to mining.extranonce.subscribe is ignored.
    let a = feed(
        &mut s,
        json!({"id": 3, "result": null, "error": [20, "Not supported.", null]}),
    );
    assert!(fails(&a).is_empty());
    assert!(sent(&a).is_empty());
}

#[test]
fn handshake_with_version_rolling_bip310() {
    let mut s = Session::new(config(true));
    let a = s.connected(0);
    assert_eq!(
        sent(&a),
        vec![
            json!({"id": 1, "method": "mining.configure", "params": [
                ["version-rolling"],
                {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}
            ]}),
            json!({"id": 2, "method": "mining.subscribe", "params": [UA]}),
        ]
    );
    // Raw bytes exactly as the pool expects them: one request per line.
    match &a[0] {
        Action::Send(b) => assert!(b.starts_with(b"{\"id\":1,\"method\":\"mining.configure\"")),
        other => panic!("{other:?}"),
    }
}

fn negotiate(result: Value, error: Value) -> u32 {
    let mut s = Session::new(config(true));
    s.connected(0);
    feed(&mut s, json!({"id": 1, "result": result, "error": error}));
    s.version_mask()
}

#[test]
fn version_rolling_mask_negotiation() {
    let ok = |m: &str| json!({"version-rolling": true, "version-rolling.mask": m});
    assert_eq!(negotiate(ok("1fffe000"), Value::Null), 0x1fff_e000);
    assert_eq!(negotiate(ok("ffffffff"), Value::Null), 0x1fff_e000);
    assert_eq!(negotiate(ok("00ffe000"), Value::Null), 0x00ff_e000);
    assert_eq!(negotiate(ok("zz"), Value::Null), 0);
    assert_eq!(negotiate(json!({"version-rolling": false}), Value::Null), 0);
    assert_eq!(negotiate(json!({"version-rolling": true}), Value::Null), 0);
    assert_eq!(negotiate(json!({}), Value::Null), 0);
    assert_eq!(
        negotiate(Value::Null, json!([20, "unknown method", null])),
        0
    );
    assert_eq!(negotiate(json!(false), Value::Null), 0);
}

#[test]
fn set_version_mask_applies_to_later_jobs() {
    let (mut s, _) = ready(true, "a1b2c3d4", 8);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.set_version_mask", "params": ["00ffe000"]}),
    );
    assert!(fails(&a).is_empty());
    assert_eq!(s.version_mask(), 0x00ff_e000);
    let v = vector(1);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.notify", "params": v["notify_params"]}),
    );
    assert_eq!(jobs(&a)[0].version_mask, 0x00ff_e000);
    // Without version rolling configured the notification is ignored.
    let (mut s, _) = ready(false, "a1b2c3d4", 8);
    feed(
        &mut s,
        json!({"id": null, "method": "mining.set_version_mask", "params": ["00ffe000"]}),
    );
    assert_eq!(s.version_mask(), 0);
}

#[test]
fn notify_vector_docs_example() {
    let v = vector(0);
    let (mut s, _) = ready(false, v["extranonce1"].as_str().unwrap(), 4);
    let a = feed(
        &mut s,
        json!({"params": v["notify_params"], "id": null, "method": "mining.notify"}),
    );
    let js = jobs(&a);
    assert_eq!(js.len(), 1);
    let job = &js[0];
    let header = hex::decode(v["header"].as_str().unwrap()).unwrap();
    assert_eq!(job.id, "bf");
    assert_eq!(job.prev_hash, header[4..36]);
    assert_eq!(hex::encode(&job.prev_hash[..4]), "f8b6164d");
    assert_eq!(job.version, 2);
    assert_eq!(job.nbits, 0x1c2a_c4af);
    assert_eq!(job.ntime, 0x504e_86b9);
    assert!(!job.clean);
    assert_eq!(job.version_mask, 0);
    let w = extended(job);
    assert_eq!(w.extranonce2_size, 4);
    assert!(w.merkle_branches.is_empty());
    let en2 = hex::decode(v["submit"]["extranonce2"].as_str().unwrap()).unwrap();
    let coinbase = [
        w.coinbase_prefix.clone(),
        w.extranonce1.clone(),
        en2.clone(),
        w.coinbase_suffix.clone(),
    ]
    .concat();
    assert_eq!(hex::encode(coinbase), v["coinbase"].as_str().unwrap());

    // The share from the vector: nonce = header's last 4 bytes as LE u32.
    let nonce = u32::from_le_bytes(header[76..80].try_into().unwrap());
    assert_eq!(nonce, 0xb295_7c02);
    let a = s.share_found(
        0,
        Share {
            id: 77,
            job_id: "bf".into(),
            extranonce2: en2,
            ntime: 0x504e_86ed,
            nonce,
            version: 2,
        },
    );
    let req = sent(&a);
    assert_eq!(req.len(), 1);
    assert_eq!(req[0]["method"], "mining.submit");
    assert_eq!(
        req[0]["params"],
        json!(["worker1", "bf", "00000001", "504e86ed", "b2957c02"])
    );
    let id = req[0]["id"].clone();
    let a = feed(&mut s, json!({"id": id, "result": true, "error": null}));
    assert_eq!(share_results(&a), vec![(77, ShareOutcome::Accepted)]);
}

#[test]
fn notify_vector_branches_and_version_rolling_submit() {
    let v = vector(1);
    let (mut s, _) = ready(true, v["extranonce1"].as_str().unwrap(), 8);
    assert_eq!(s.version_mask(), 0x1fff_e000);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.set_difficulty", "params": [v["difficulty"]]}),
    );
    assert_eq!(targets(&a), vec![v["share_target_hex"].as_str().unwrap()]);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.notify", "params": v["notify_params"]}),
    );
    let job = &jobs(&a)[0];
    let header = hex::decode(v["header"].as_str().unwrap()).unwrap();
    assert_eq!(job.id, "6a1f");
    assert_eq!(job.prev_hash, header[4..36]);
    assert_eq!(job.version, 0x2000_0000);
    assert_eq!(job.version_mask, 0x1fff_e000);
    assert_eq!(job.nbits, 0x1d00_ffff);
    assert_eq!(job.ntime, 0x6737_a1c0);
    assert!(job.clean);
    let w = extended(job);
    assert_eq!(w.extranonce2_size, 8);
    let branches: Vec<String> = w.merkle_branches.iter().map(hex::encode).collect();
    assert_eq!(json!(branches), v["notify_params"][4]);
    let en2 = hex::decode(v["submit"]["extranonce2"].as_str().unwrap()).unwrap();
    let coinbase = [
        w.coinbase_prefix.clone(),
        w.extranonce1.clone(),
        en2.clone(),
        w.coinbase_suffix.clone(),
    ]
    .concat();
    assert_eq!(hex::encode(coinbase), v["coinbase"].as_str().unwrap());

    let header_version = u32::from_le_bytes(header[0..4].try_into().unwrap());
    let nonce = u32::from_le_bytes(header[76..80].try_into().unwrap());
    let ntime = u32::from_le_bytes(header[68..72].try_into().unwrap());
    let a = s.share_found(
        0,
        Share {
            id: 5,
            job_id: "6a1f".into(),
            extranonce2: en2,
            ntime,
            nonce,
            version: header_version,
        },
    );
    let req = sent(&a);
    let sub = &v["submit"];
    assert_eq!(
        req[0]["params"],
        json!([
            "worker1",
            sub["job_id"],
            sub["extranonce2"],
            sub["ntime"],
            sub["nonce"],
            sub["version_bits"]
        ])
    );
    assert_eq!(req[0]["params"][5], "00b2c000");
}

#[test]
fn subscription_id_resume_single_pair_and_list() {
    for subs in [
        json!(["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]),
        json!([
            ["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"],
            ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]
        ]),
    ] {
        let mut s = Session::new(config(false));
        s.connected(0);
        feed(
            &mut s,
            json!({"id": 1, "result": [subs, "08000002", 4], "error": null}),
        );
        assert_eq!(
            s.subscription_id(),
            Some("ae6812eb4cd7735a302a8a9dd95cf71f")
        );
        s.disconnected("connection reset");
        let a = s.connected(10);
        let req = sent(&a);
        assert_eq!(req[0]["method"], "mining.subscribe");
        assert_eq!(
            req[0]["params"],
            json!([UA, "ae6812eb4cd7735a302a8a9dd95cf71f"])
        );
        // Ids keep increasing across connections.
        assert!(req[0]["id"].as_u64().unwrap() > 3);
    }
}

#[test]
fn subscribe_error_fails_and_forgets_resume_id() {
    let mut s = Session::new(config(false));
    s.connected(0);
    feed(&mut s, subscribe_result(1, "00", 4));
    s.disconnected("eof");
    let a = s.connected(0);
    let id = sent(&a)[0]["id"].clone();
    let a = feed(
        &mut s,
        json!({"id": id, "result": null, "error": [25, "Not subscribed", null]}),
    );
    assert_eq!(fails(&a), vec!["subscribe refused: 25: Not subscribed"]);
    assert!(!logs(&a, LogLevel::Error).is_empty());
    s.disconnected("fail");
    let a = s.connected(0);
    assert_eq!(sent(&a)[0]["params"], json!([UA]));
}

#[test]
fn authorize_refused() {
    for (result, error, want) in [
        (json!(false), Value::Null, "authorization refused: refused"),
        (
            Value::Null,
            json!([24, "Unauthorized worker", null]),
            "authorization refused: 24: Unauthorized worker",
        ),
        (
            json!(false),
            json!({"code": -1, "message": "bad password"}),
            "authorization refused: -1: bad password",
        ),
    ] {
        let mut s = Session::new(config(false));
        s.connected(0);
        feed(&mut s, subscribe_result(1, "00", 4));
        let a = feed(&mut s, json!({"id": 2, "result": result, "error": error}));
        assert_eq!(fails(&a), vec![want]);
        assert!(!s.is_authorized());
    }
}

#[test]
fn share_rejection_formats() {
    let (mut s, _) = ready(false, "08000002", 4);
    let cases = [
        (
            json!(null),
            json!([23, "Low difficulty share", null]),
            "23: Low difficulty share",
        ),
        (
            json!(false),
            json!({"code": 21, "message": "Job not found"}),
            "21: Job not found",
        ),
        (json!(null), json!("Stale share"), "Stale share"),
        (json!(false), json!(null), "rejected"),
    ];
    for (n, (result, error, want)) in cases.into_iter().enumerate() {
        let share_id = 100 + n as u64;
        let a = s.share_found(
            0,
            Share {
                id: share_id,
                job_id: "j".into(),
                extranonce2: vec![0, 0, 0, 1],
                ntime: 1,
                nonce: 2,
                version: 0x2000_0000,
            },
        );
        let req = sent(&a);
        // No version rolling: exactly five params.
        assert_eq!(req[0]["params"].as_array().unwrap().len(), 5);
        let a = feed(
            &mut s,
            json!({"id": req[0]["id"], "result": result, "error": error}),
        );
        assert_eq!(
            share_results(&a),
            vec![(share_id, ShareOutcome::Rejected(want.into()))]
        );
    }
}

#[test]
fn set_difficulty_targets() {
    let (mut s, _) = ready(false, "00", 4);
    for (d, want) in [
        (
            json!(1),
            "00000000ffff0000000000000000000000000000000000000000000000000000",
        ),
        (
            json!(2),
            "000000007fff8000000000000000000000000000000000000000000000000000",
        ),
        (
            json!(65536),
            "000000000000ffff000000000000000000000000000000000000000000000000",
        ),
        (
            json!(0.001),
            "000003e7fc180000000000000000000000000000000000000000000000000000",
        ),
        (
            json!(1.52587890625e-05),
            "0000ffff00000000000000000000000000000000000000000000000000000000",
        ),
        (
            json!(1e12),
            "00000000000000000119787e99468e32f6e0e71cef78ee034b5f8a0944d68076",
        ),
        (
            json!(1_000_000_000_000u64),
            "00000000000000000119787e99468e32f6e0e71cef78ee034b5f8a0944d68076",
        ),
    ] {
        let a = feed(
            &mut s,
            json!({"id": null, "method": "mining.set_difficulty", "params": [d]}),
        );
        assert_eq!(targets(&a), vec![want], "difficulty {d}");
    }
    // The raw JSON text "0.001" (not re-encoded by serde_json) gives the same.
    let a = s.received(
        0,
        b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[0.001]}\n",
    );
    assert_eq!(
        targets(&a),
        vec!["000003e7fc180000000000000000000000000000000000000000000000000000"]
    );
    for bad in [json!(0), json!(-1), json!("abc"), json!(null)] {
        let a = feed(
            &mut s,
            json!({"id": null, "method": "mining.set_difficulty", "params": [bad]}),
        );
        assert!(targets(&a).is_empty());
        assert_eq!(logs(&a, LogLevel::Warn).len(), 1);
        assert!(fails(&a).is_empty());
    }
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.set_difficulty", "params": []}),
    );
    assert!(targets(&a).is_empty());
}

#[test]
fn difficulty_before_subscribe_result_suppresses_default() {
    let mut s = Session::new(config(false));
    s.connected(0);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.set_difficulty", "params": [8]}),
    );
    assert_eq!(targets(&a).len(), 1);
    let a = feed(&mut s, subscribe_result(1, "00", 4));
    assert!(targets(&a).is_empty());
}

#[test]
fn notify_before_subscribe_is_mined_once_subscribed() {
    let mut s = Session::new(config(false));
    s.connected(0);
    let v = vector(0);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.notify", "params": v["notify_params"]}),
    );
    assert!(jobs(&a).is_empty(), "no extranonce1 yet");
    assert!(fails(&a).is_empty());
    let a = feed(&mut s, subscribe_result(1, "08000002", 4));
    let js = jobs(&a);
    assert_eq!(js.len(), 1);
    assert_eq!(js[0].id, "bf");
    assert_eq!(extended(&js[0]).extranonce1, vec![8, 0, 0, 2]);
}

#[test]
fn shares_found_before_the_authorize_reply_are_submitted_after_it() {
    let share = |id| Share {
        id,
        job_id: "bf".into(),
        extranonce2: vec![0; 4],
        ntime: 0x504e_86b9,
        nonce: 7,
        version: 2,
    };
    let mut s = Session::new(config(false));
    s.connected(0);
    feed(&mut s, subscribe_result(1, "08000002", 4));
    let a = s.share_found(0, share(1));
    // Held, not sent; the authorize timeout still bounds how long.
    assert_eq!(a, vec![Action::WakeAt(30_000)]);
    let a = feed(&mut s, json!({"id": 2, "result": true, "error": null}));
    let submits: Vec<Value> = sent(&a)
        .into_iter()
        .filter(|m| m["method"] == "mining.submit")
        .collect();
    assert_eq!(submits.len(), 1);
    assert_eq!(
        submits[0]["params"],
        json!(["worker1", "bf", "00000000", "504e86b9", "00000007"])
    );
    // Refused authorization: held shares are reported, not lost.
    let mut s = Session::new(config(false));
    s.connected(0);
    feed(&mut s, subscribe_result(1, "08000002", 4));
    s.share_found(0, share(5));
    let a = feed(
        &mut s,
        json!({"id": 2, "result": false, "error": [24, "Unauthorized worker", null]}),
    );
    assert_eq!(fails(&a).len(), 1);
    let results = share_results(&a);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, 5);
    assert!(matches!(&results[0].1, ShareOutcome::Rejected(why) if why.contains("Unauthorized")));
}

#[test]
fn a_new_extranonce_or_version_mask_makes_the_next_job_clean() {
    let (mut s, _) = ready(true, "08000002", 4);
    let notify =
        json!({"id": null, "method": "mining.notify", "params": vector(0)["notify_params"]});
    assert!(!jobs(&feed(&mut s, notify.clone()))[0].clean);
    feed(
        &mut s,
        json!({"id": null, "method": "mining.set_extranonce", "params": ["01", 2]}),
    );
    assert!(
        jobs(&feed(&mut s, notify.clone()))[0].clean,
        "after set_extranonce"
    );
    assert!(!jobs(&feed(&mut s, notify.clone()))[0].clean, "only once");
    feed(
        &mut s,
        json!({"id": null, "method": "mining.set_version_mask", "params": ["00ffe000"]}),
    );
    assert!(
        jobs(&feed(&mut s, notify))[0].clean,
        "after set_version_mask"
    );
}

#[test]
fn a_share_rolled_outside_a_changed_mask_is_not_submitted() {
    let (mut s, _) = ready(true, "08000002", 4);
    let notify =
        json!({"id": null, "method": "mining.notify", "params": vector(0)["notify_params"]});
    let job = jobs(&feed(&mut s, notify)).remove(0);
    feed(
        &mut s,
        json!({"id": null, "method": "mining.set_version_mask", "params": ["00ffe000"]}),
    );
    let share = |id, version| Share {
        id,
        job_id: job.id.clone(),
        extranonce2: vec![0; 4],
        ntime: job.ntime,
        nonce: 1,
        version,
    };
    // Bit 28 was in the old mask, not in the new one.
    let a = s.share_found(0, share(1, job.version | 0x1000_0000));
    assert!(sent(&a).is_empty());
    assert!(matches!(
        &share_results(&a)[..],
        [(1, ShareOutcome::Rejected(_))]
    ));
    // Bits inside the new mask are submitted as usual.
    let a = s.share_found(0, share(2, job.version | 0x0000_2000));
    assert_eq!(sent(&a)[0]["params"][5], "00002000");
}

#[test]
fn version_bits_the_job_sets_are_never_rolled() {
    let (mut s, _) = ready(true, "08000002", 4);
    let mut params = vector(0)["notify_params"].clone();
    params[5] = json!("20002000"); // bit 13 is set by the pool
    let job = jobs(&feed(
        &mut s,
        json!({"id": null, "method": "mining.notify", "params": params}),
    ))
    .remove(0);
    assert_eq!(job.version, 0x2000_2000);
    assert_eq!(job.version_mask, 0x1fff_c000);
}

#[test]
fn set_extranonce_applies_to_later_jobs() {
    let mut s = Session::new(config(false));
    s.connected(0);
    // Accepted even before the subscribe result / extranonce.subscribe.
    feed(&mut s, subscribe_result(1, "08000002", 4));
    let notify =
        json!({"id": null, "method": "mining.notify", "params": vector(0)["notify_params"]});
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.set_extranonce", "params": ["aabbccddee", 6]}),
    );
    assert!(fails(&a).is_empty());
    let job = &jobs(&feed(&mut s, notify.clone()))[0];
    assert_eq!(
        extended(job).extranonce1,
        vec![0xaa, 0xbb, 0xcc, 0xdd, 0xee]
    );
    assert_eq!(extended(job).extranonce2_size, 6);
    // After extranonce.subscribe has been answered.
    feed(&mut s, json!({"id": 3, "result": true, "error": null}));
    feed(
        &mut s,
        json!({"id": null, "method": "mining.set_extranonce", "params": ["01", 2]}),
    );
    let job = &jobs(&feed(&mut s, notify))[0];
    assert_eq!(extended(job).extranonce1, vec![1]);
    assert_eq!(extended(job).extranonce2_size, 2);
    // Invalid sizes are protocol errors.
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.set_extranonce", "params": ["01", 17]}),
    );
    assert_eq!(fails(&a).len(), 1);
}

#[test]
fn invalid_notify_and_subscribe_fail() {
    let base = vector(1)["notify_params"].clone();
    let mut bad = Vec::new();
    let mut with = |i: usize, v: Value| {
        let mut p = base.clone();
        p[i] = v;
        bad.push(p);
    };
    with(1, json!("00"));
    with(
        1,
        json!("zz16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000"),
    );
    with(2, json!("abc"));
    with(3, json!(5));
    with(4, json!(["00"]));
    with(4, json!(vec!["11".repeat(32); 33]));
    with(4, json!("notalist"));
    with(5, json!("123456789"));
    with(6, json!("+1d00fff"));
    with(7, json!(1234));
    with(8, json!("true"));
    with(0, json!(7));
    bad.push(json!(["6a1f"]));
    for params in bad {
        let (mut s, _) = ready(false, "00", 4);
        let a = feed(
            &mut s,
            json!({"id": null, "method": "mining.notify", "params": params}),
        );
        assert!(jobs(&a).is_empty(), "{params}");
        let f = fails(&a);
        assert_eq!(f.len(), 1, "{params}");
        assert!(
            f[0].starts_with("protocol error: invalid mining.notify"),
            "{}",
            f[0]
        );
        assert_eq!(logs(&a, LogLevel::Error).len(), 1);
    }
    // 32 branches are fine.
    let mut p = base.clone();
    p[4] = json!(vec!["11".repeat(32); 32]);
    let (mut s, _) = ready(false, "00", 4);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.notify", "params": p}),
    );
    assert_eq!(extended(&jobs(&a)[0]).merkle_branches.len(), 32);

    for (en1, size) in [
        (json!("0"), json!(4)),
        (json!("00"), json!(0)),
        (json!("00"), json!(17)),
        (json!(null), json!(4)),
    ] {
        let mut s = Session::new(config(false));
        s.connected(0);
        let a = feed(
            &mut s,
            json!({"id": 1, "result": [[], en1, size], "error": null}),
        );
        assert_eq!(fails(&a).len(), 1);
        assert!(sent(&a).is_empty());
    }
}

#[test]
fn client_reconnect_variants() {
    let cases = [
        (json!([]), "", 0, 0),
        (
            json!(["pool2.example.com", 3334, 5]),
            "pool2.example.com",
            3334,
            5000,
        ),
        (
            json!(["pool2.example.com", "3335", "2"]),
            "pool2.example.com",
            3335,
            2000,
        ),
        (json!([null, null, 1.5]), "", 0, 1500),
        (json!(["h", 99999]), "h", 0, 0),
    ];
    for (params, host, port, after_ms) in cases {
        let (mut s, _) = ready(false, "00", 4);
        let a = feed(
            &mut s,
            json!({"id": null, "method": "client.reconnect", "params": params}),
        );
        let r: Vec<&ReconnectRequest> = a
            .iter()
            .filter_map(|a| match a {
                Action::Reconnect(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(
            r,
            vec![&ReconnectRequest {
                host: host.into(),
                port,
                after_ms
            }],
            "{params}"
        );
    }
}

#[test]
fn client_requests() {
    let (mut s, _) = ready(false, "00", 4);
    let a = feed(
        &mut s,
        json!({"id": null, "method": "client.show_message", "params": ["maintenance at 12:00"]}),
    );
    assert_eq!(
        logs(&a, LogLevel::Info),
        vec!["pool message: maintenance at 12:00"]
    );

    let a = s.received(
        0,
        b"{\"id\":\"v1\",\"method\":\"client.get_version\",\"params\":[]}\n",
    );
    assert_eq!(
        sent(&a),
        vec![json!({"id": "v1", "result": UA, "error": null})]
    );
    match &a[0] {
        Action::Send(b) => assert_eq!(
            b.as_slice(),
            b"{\"id\":\"v1\",\"result\":\"hashwatt/0.1.0\",\"error\":null}\n"
        ),
        other => panic!("{other:?}"),
    }

    let a = feed(
        &mut s,
        json!({"id": 9, "method": "mining.frobnicate", "params": []}),
    );
    assert_eq!(
        sent(&a),
        vec![json!({"id": 9, "result": null, "error": [20, "Unsupported method", null]})]
    );
    let a = feed(
        &mut s,
        json!({"id": null, "method": "mining.frobnicate", "params": []}),
    );
    assert!(sent(&a).is_empty());
    assert_eq!(logs(&a, LogLevel::Debug).len(), 1);
    assert!(fails(&a).is_empty());
}

#[test]
fn handshake_timeouts() {
    // A pool without BIP 310 may never answer mining.configure: mining
    // goes on without version rolling.
    let mut s = Session::new(config(true));
    s.connected(1_000);
    feed(&mut s, subscribe_result(2, "00", 4));
    feed(&mut s, json!({"id": 3, "result": true, "error": null}));
    // An early tick finds nothing due and asks again for the same time.
    assert_eq!(s.tick(30_999), vec![Action::WakeAt(31_000)]);
    let a = s.tick(31_000);
    assert!(fails(&a).is_empty(), "{a:?}");
    assert_eq!(
        logs(&a, LogLevel::Info),
        vec!["version rolling not negotiated: mining.configure not answered"]
    );
    assert_eq!(s.version_mask(), 0);
    // An unanswered subscribe fails the session.
    let mut s = Session::new(config(true));
    s.connected(1_000);
    assert_eq!(fails(&s.tick(31_000)), vec!["mining.subscribe timed out"]);

    // Authorize timing out: timed from when the subscribe reply came.
    let mut s = Session::new(config(false));
    s.connected(0);
    let a = feed_at(&mut s, 10_000, subscribe_result(1, "00", 4));
    assert_eq!(wake(&a), Some(40_000));
    assert!(fails(&s.tick(39_999)).is_empty());
    assert_eq!(fails(&s.tick(40_000)), vec!["mining.authorize timed out"]);
    // Failed sessions ignore further input until reconnected.
    assert!(s.tick(100_000).is_empty());
    assert!(s.received(0, b"{\"id\":2,\"result\":true}\n").is_empty());
}

#[test]
fn share_timeout_and_disconnect() {
    let (mut s, _) = ready(false, "00", 4);
    s.tick(5_000);
    let share = |id| Share {
        id,
        job_id: "j".into(),
        extranonce2: vec![0; 4],
        ntime: 0,
        nonce: 0,
        version: 0,
    };
    s.share_found(0, share(1));
    s.tick(20_000);
    let late = sent(&s.share_found(0, share(2)));
    assert!(share_results(&s.tick(64_999)).is_empty());
    assert_eq!(
        share_results(&s.tick(65_000)),
        vec![(1, ShareOutcome::Rejected("no response from pool".into()))]
    );
    // Disconnect forgets share 2: its late answer is not reported.
    s.disconnected("reset by peer");
    let rejected = s.share_found(0, share(3));
    assert_eq!(
        share_results(&rejected),
        vec![(3, ShareOutcome::Rejected("not connected to pool".into()))]
    );
    s.connected(70_000);
    let a = feed(
        &mut s,
        json!({"id": late[0]["id"], "result": true, "error": null}),
    );
    assert!(share_results(&a).is_empty());
    assert!(share_results(&s.tick(1_000_000)).is_empty());
}

#[test]
fn protocol_errors() {
    let mut long = vec![b' '; 10];
    long.extend(vec![b'a'; 65_600]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"this is not json\n".to_vec(),
            "protocol error: invalid JSON",
        ),
        (b"{\"id\":1,\n".to_vec(), "protocol error: invalid JSON"),
        (
            b"\xff\xfe{}\n".to_vec(),
            "protocol error: line is not valid UTF-8",
        ),
        (
            b"[1,2,3]\n".to_vec(),
            "protocol error: message is not a JSON object",
        ),
        (
            b"{\"foo\":1}\n".to_vec(),
            "protocol error: message has neither",
        ),
        (long, "protocol error: line longer than 65536 bytes"),
    ];
    for (bytes, want) in cases {
        let (mut s, _) = ready(false, "00", 4);
        let a = s.received(0, &bytes);
        let f = fails(&a);
        assert_eq!(f.len(), 1, "{want}");
        assert!(f[0].starts_with(want), "{} vs {want}", f[0]);
        assert_eq!(logs(&a, LogLevel::Error), f);
        // The buffer is dropped and later input ignored until reconnect.
        assert!(
            s.received(
                0,
                b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[2]}\n"
            )
            .is_empty()
        );
        // A reconnect starts clean.
        let a = s.connected(0);
        assert_eq!(sent(&a).len(), 1);
        let a = feed(
            &mut s,
            json!({"id": null, "method": "mining.set_difficulty", "params": [2]}),
        );
        assert_eq!(targets(&a).len(), 1);
    }
}

#[test]
fn framing_is_independent_of_crlf_and_empty_lines() {
    let (mut s, _) = ready(false, "00", 4);
    let a = s.received(0,
        b"\r\n\n{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[2]}\r\n\r\n{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[1]}",
    );
    assert_eq!(targets(&a).len(), 1);
    let a = s.received(0, b"\n");
    assert_eq!(targets(&a).len(), 1);
}

#[test]
fn unexpected_replies_are_logged_not_fatal() {
    let (mut s, _) = ready(false, "00", 4);
    let a = feed(&mut s, json!({"id": 999, "result": true, "error": null}));
    assert!(fails(&a).is_empty());
    assert_eq!(logs(&a, LogLevel::Debug).len(), 1);
    let a = feed(
        &mut s,
        json!({"id": null, "result": null, "error": [-32700, "Parse error", null]}),
    );
    assert!(fails(&a).is_empty());
    assert_eq!(logs(&a, LogLevel::Warn).len(), 1);
}

#[test]
fn no_error_spelled_false_or_empty_counts_as_success() {
    let mut s = Session::new(config(false));
    s.connected(0);
    feed(&mut s, subscribe_result(1, "00", 4));
    let a = feed(&mut s, json!({"id": 2, "result": true, "error": false}));
    assert!(fails(&a).is_empty());
    assert!(s.is_authorized());
    for (n, error) in [json!([]), json!({}), json!(false)].into_iter().enumerate() {
        let a = s.share_found(
            0,
            Share {
                id: n as u64,
                job_id: "j".into(),
                extranonce2: vec![0; 4],
                ntime: 0,
                nonce: 0,
                version: 0,
            },
        );
        let id = sent(&a)[0]["id"].clone();
        let a = feed(&mut s, json!({"id": id, "result": true, "error": error}));
        assert_eq!(share_results(&a), vec![(n as u64, ShareOutcome::Accepted)]);
    }
}

#[test]
fn every_call_asks_for_the_earliest_deadline() {
    let share = |id| Share {
        id,
        job_id: "j".into(),
        extranonce2: vec![0; 4],
        ntime: 0,
        nonce: 0,
        version: 0,
    };
    let mut s = Session::new(config(false));
    assert_eq!(s.next_deadline(), None, "offline: nothing to time");
    // subscribe at 1 s: due at 31 s.
    assert_eq!(wake(&s.connected(1_000)), Some(31_000));
    // authorize and extranonce.subscribe at 2 s: due at 32 s.
    assert_eq!(
        wake(&feed_at(&mut s, 2_000, subscribe_result(1, "00", 4))),
        Some(32_000)
    );
    // A share held for the authorize reply waits no longer than it.
    assert_eq!(wake(&s.share_found(2_500, share(1))), Some(32_000));
    let a = feed_at(
        &mut s,
        3_000,
        json!({"id": 2, "result": true, "error": null}),
    );
    let submit = sent(&a)[0]["id"].clone();
    // The held share went out at 3 s (due at 63 s); extranonce.subscribe
    // is still due first.
    assert_eq!(wake(&a), Some(32_000));
    let a = feed_at(
        &mut s,
        4_000,
        json!({"id": 3, "result": true, "error": null}),
    );
    assert_eq!(wake(&a), Some(63_000));
    // A share found at 10 s is due at 70 s; the earlier one stays first.
    let later = sent(&s.share_found(10_000, share(2)))[0]["id"].clone();
    assert_eq!(s.next_deadline(), Some(63_000));
    feed_at(
        &mut s,
        11_000,
        json!({"id": submit, "result": true, "error": null}),
    );
    assert_eq!(s.next_deadline(), Some(70_000));
    // The last answer leaves nothing to time: no wake-up at all.
    let a = feed_at(
        &mut s,
        12_000,
        json!({"id": later, "result": true, "error": null}),
    );
    assert_eq!(wake(&a), None);
    assert_eq!(s.next_deadline(), None);
    // Offline and failed sessions ask for nothing.
    s.disconnected("bye");
    assert_eq!(s.next_deadline(), None);
    s.connected(20_000);
    let a = s.received(21_000, b"not json\n");
    assert_eq!(fails(&a).len(), 1);
    assert_eq!(wake(&a), None);
}

/// A host that ticks only when asked, as the 0.2.0 contract says: every
/// timeout still fires, at its time and not a tick later.
#[test]
fn timeouts_fire_when_only_the_requested_ticks_come() {
    let mut s = Session::new(config(true));
    let mut pending_wake = wake(&s.connected(0));
    let a = feed_at(
        &mut s,
        500,
        json!({"id": 2, "result": [[], "00", 4], "error": null}),
    );
    pending_wake = wake(&a).or(pending_wake);
    let authorize = sent(&a)[0]["id"].clone();
    let a = feed_at(
        &mut s,
        700,
        json!({"id": authorize, "result": true, "error": null}),
    );
    pending_wake = wake(&a).or(pending_wake);
    let a = s.share_found(
        1_000,
        Share {
            id: 7,
            job_id: "j".into(),
            extranonce2: vec![0; 4],
            ntime: 0,
            nonce: 0,
            version: 0,
        },
    );
    pending_wake = wake(&a).or(pending_wake);
    // Neither configure nor extranonce.subscribe nor the share is answered.
    let mut ticks = Vec::new();
    let mut log = Vec::new();
    while let Some(at) = pending_wake.take() {
        ticks.push(at);
        let a = s.tick(at);
        log.extend(logs(&a, LogLevel::Info));
        log.extend(
            share_results(&a)
                .into_iter()
                .map(|(id, o)| format!("share {id}: {o:?}")),
        );
        pending_wake = wake(&a);
        assert!(ticks.len() < 10, "ticks never stop: {ticks:?}");
    }
    // configure (sent at 0) at 30 s, extranonce.subscribe (at 500 ms) at
    // 30.5 s, the share (at 1 s) at 61 s; then no more ticks.
    assert_eq!(ticks, vec![30_000, 30_500, 61_000]);
    assert_eq!(
        log,
        vec![
            "version rolling not negotiated: mining.configure not answered".to_string(),
            "share 7: Rejected(\"no response from pool\")".to_string(),
        ]
    );
    assert!(s.is_authorized());
}

#[test]
fn suggest_difficulty_follows_subscribe() {
    let settings = json!({"suggest_difficulty": 512});
    let mut s = Session::new(config_with(false, settings.clone()));
    let a = s.connected(0);
    assert_eq!(
        sent(&a),
        vec![
            json!({"id": 1, "method": "mining.subscribe", "params": [UA]}),
            json!({"id": 2, "method": "mining.suggest_difficulty", "params": [512]}),
        ]
    );
    // Many pools never answer it: it is not timed.
    assert_eq!(wake(&a), Some(30_000));
    let a = feed(&mut s, subscribe_result(1, "00", 4));
    let ids: Vec<u64> = sent(&a).iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![3, 4], "authorize and extranonce.subscribe");
    // An answer, positive or not, is taken quietly.
    let a = feed(&mut s, json!({"id": 2, "result": true, "error": null}));
    assert!(without_wakes(&a).is_empty(), "{a:?}");
    let mut s = Session::new(config_with(false, settings.clone()));
    s.connected(0);
    let a = feed(
        &mut s,
        json!({"id": 2, "result": null, "error": [20, "Unsupported method", null]}),
    );
    assert!(fails(&a).is_empty());
    assert_eq!(
        logs(&a, LogLevel::Debug),
        vec!["mining.suggest_difficulty not supported: 20: Unsupported method"]
    );

    // With version rolling: configure, subscribe, then the suggestion; a
    // fractional difficulty goes out as it was written.
    let mut s = Session::new(config_with(true, json!({"suggest_difficulty": 0.5})));
    let methods: Vec<Value> = sent(&s.connected(0))
        .iter()
        .map(|m| json!([m["method"], m["params"]]))
        .collect();
    assert_eq!(methods[0][0], "mining.configure");
    assert_eq!(methods[1][0], "mining.subscribe");
    assert_eq!(methods[2], json!(["mining.suggest_difficulty", [0.5]]));
    // And again on every reconnect.
    s.disconnected("reset");
    let again = sent(&s.connected(1_000));
    assert_eq!(again[2]["method"], "mining.suggest_difficulty");
}

#[test]
fn settings_are_checked_strictly() {
    assert_eq!(
        Session::validate_settings(r#"{"suggest_difficulty": 1024}"#),
        Ok(())
    );
    assert_eq!(Session::validate_settings("{}"), Ok(()));
    let e = Session::validate_settings(r#"{"suggest_difficulty": 1024, "worker": "x"}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "settings.worker: unknown setting (known: suggest_difficulty)"
    );
    let e = Session::validate_settings(r#"{"suggest_difficulty": "1024"}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "settings.suggest_difficulty: expected a positive number, got \"1024\""
    );
    // A session handed settings the host should have refused fails every
    // connection with the reason, rather than mining with other settings.
    let mut s = Session::new(config_with(false, json!({"suggest_difficulty": -1})));
    for now in [0, 5_000] {
        let a = s.connected(now);
        assert!(sent(&a).is_empty());
        assert_eq!(
            fails(&a),
            vec![
                "invalid settings: settings.suggest_difficulty: expected a positive number, got -1"
            ]
        );
        assert_eq!(wake(&a), None);
        s.disconnected("failed");
    }
}

#[test]
fn no_version_rolling_offer_when_the_device_cannot_roll() {
    let mut s = Session::new(config_with(false, json!({"suggest_difficulty": 64})));
    let mut seen = Vec::new();
    for now in [0, 60_000] {
        let a = s.connected(now);
        seen.extend(sent(&a));
        let a = feed(
            &mut s,
            json!({"id": seen[0]["id"], "result": [[["mining.notify", "s1"]], "00", 4], "error": null}),
        );
        seen.extend(sent(&a));
        s.disconnected("again");
    }
    assert!(
        seen.iter().all(|m| m["method"] != "mining.configure"),
        "{seen:?}"
    );
    // A pool pushing a mask anyway changes nothing, and shares carry no
    // version bits.
    let (mut s, ids) = ready(false, "00", 4);
    feed(
        &mut s,
        json!({"id": null, "method": "mining.set_version_mask", "params": ["1fffe000"]}),
    );
    assert_eq!(s.version_mask(), 0);
    let submit = sent(&s.share_found(
        0,
        Share {
            id: 1,
            job_id: "j".into(),
            extranonce2: vec![0; 4],
            ntime: 1,
            nonce: 2,
            version: 0x2000_4000,
        },
    ));
    assert_eq!(submit[0]["id"], ids.extranonce_subscribe + 1);
    assert_eq!(submit[0]["params"].as_array().unwrap().len(), 5);
}
