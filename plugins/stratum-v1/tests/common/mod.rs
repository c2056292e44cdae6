//! Shared helpers for the transcript tests.
#![allow(dead_code)]

use serde_json::{Value, json};
use stratum_v1::{Action, Job, LogLevel, PoolConfig, Session, ShareOutcome, WorkKind};

pub const UA: &str = "hashwatt/0.1.0";

pub fn config(version_rolling: bool) -> PoolConfig {
    PoolConfig {
        url: "stratum+tcp://pool.example.com:3333".into(),
        host: "pool.example.com".into(),
        port: 3333,
        user: "worker1".into(),
        password: "x".into(),
        user_agent: UA.into(),
        version_rolling,
        settings: "{}".into(),
    }
}

/// `config(version_rolling)` with these settings (a JSON object).
pub fn config_with(version_rolling: bool, settings: Value) -> PoolConfig {
    PoolConfig {
        settings: settings.to_string(),
        ..config(version_rolling)
    }
}

/// The actions without the wake-up requests, for tests about what a call
/// does rather than when the session wants its next tick.
pub fn without_wakes(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::WakeAt(_)))
        .cloned()
        .collect()
}

/// The wake-up a call asked for last (the one the host keeps).
pub fn wake(actions: &[Action]) -> Option<u64> {
    actions.iter().rev().find_map(|a| match a {
        Action::WakeAt(at) => Some(*at),
        _ => None,
    })
}

/// Every `send` action decoded as one JSON line.
pub fn sent(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(bytes) => Some(bytes),
            _ => None,
        })
        .map(|bytes| {
            assert_eq!(bytes.last(), Some(&b'\n'), "sent line must end in newline");
            assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            serde_json::from_slice(bytes).unwrap()
        })
        .collect()
}

pub fn fails(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fail(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

pub fn logs(actions: &[Action], level: LogLevel) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(l) if l.level == level => Some(l.message.clone()),
            _ => None,
        })
        .collect()
}

pub fn jobs(actions: &[Action]) -> Vec<Job> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::NewJob(j) => Some(j.clone()),
            _ => None,
        })
        .collect()
}

pub fn targets(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetShareTarget(t) => Some(hex::encode(t)),
            _ => None,
        })
        .collect()
}

pub fn share_results(actions: &[Action]) -> Vec<(u64, ShareOutcome)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ShareResult(r) => Some((r.id, r.outcome.clone())),
            _ => None,
        })
        .collect()
}

pub fn extended(job: &Job) -> &stratum_v1::ExtendedWork {
    match &job.kind {
        WorkKind::Extended(w) => w,
        WorkKind::MerkleRoot(_) => panic!("expected extended work"),
    }
}

/// Feed one JSON message as a newline-terminated line, with a time that
/// is not newer than what the session knows (so its clock stays put).
pub fn feed(s: &mut Session, msg: Value) -> Vec<Action> {
    feed_at(s, 0, msg)
}

/// Feed one JSON message as a newline-terminated line arriving at `now_ms`.
pub fn feed_at(s: &mut Session, now_ms: u64, msg: Value) -> Vec<Action> {
    let mut line = serde_json::to_vec(&msg).unwrap();
    line.push(b'\n');
    s.received(now_ms, &line)
}

/// The subscribe result used by most tests.
pub fn subscribe_result(id: u64, extranonce1: &str, size: u64) -> Value {
    json!({
        "id": id,
        "result": [[["mining.set_difficulty", "d1"], ["mining.notify", "sub-42"]], extranonce1, size],
        "error": null
    })
}

/// Ids of the handshake requests for a fresh session.
pub struct Ids {
    pub authorize: u64,
    pub extranonce_subscribe: u64,
}

/// A connected, subscribed and authorized session; returns the ids used.
pub fn ready(version_rolling: bool, extranonce1: &str, size: u64) -> (Session, Ids) {
    let mut s = Session::new(config(version_rolling));
    s.connected(1_000);
    let mut next = 1;
    if version_rolling {
        let a = feed(
            &mut s,
            json!({"id": 1, "result": {"version-rolling": true, "version-rolling.mask": "1fffe000"}, "error": null}),
        );
        assert!(fails(&a).is_empty());
        next = 2;
    }
    let a = feed(&mut s, subscribe_result(next, extranonce1, size));
    let req = sent(&a);
    assert_eq!(req.len(), 2);
    let ids = Ids {
        authorize: req[0]["id"].as_u64().unwrap(),
        extranonce_subscribe: req[1]["id"].as_u64().unwrap(),
    };
    let a = feed(
        &mut s,
        json!({"id": ids.authorize, "result": true, "error": null}),
    );
    assert!(fails(&a).is_empty());
    assert!(s.is_authorized());
    (s, ids)
}

/// Entry `index` of `stratum_v1` in the shared vector file (a copy of
/// /work/shared/vectors/stratum-v1.json kept next to the tests).
pub fn vector(index: usize) -> Value {
    let all: Value = serde_json::from_str(include_str!("../data/stratum-v1.json")).unwrap();
    all["stratum_v1"][index].clone()
}
