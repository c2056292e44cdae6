//! Property tests: framing is independent of TCP chunking, and no input
//! makes the session panic.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use stratum_v1::{Action, LogLevel, Session, Share, ShareOutcome};

/// A realistic pool-side transcript for a version-rolling session.
fn transcript(tail: &[u8]) -> Vec<u8> {
    let v0 = vector(0);
    let v1 = vector(1);
    let msgs = [
        json!({"id": 1, "result": {"version-rolling": true, "version-rolling.mask": "1fffe000"}, "error": null}),
        subscribe_result(2, "a1b2c3d4", 8),
        json!({"id": null, "method": "mining.set_difficulty", "params": [0.001]}),
        json!({"id": 5, "result": true, "error": null}),
        json!({"id": 6, "result": null, "error": [20, "Not supported", null]}),
        json!({"id": null, "method": "mining.notify", "params": v1["notify_params"]}),
        json!({"id": 3, "result": null, "error": [23, "Low difficulty share", null]}),
        json!({"id": null, "method": "mining.set_extranonce", "params": ["08000002", 4]}),
        json!({"id": null, "method": "mining.notify", "params": v0["notify_params"]}),
        json!({"id": "gv", "method": "client.get_version", "params": []}),
        json!({"id": null, "method": "client.show_message", "params": ["hello ☃ miner"]}),
        json!({"id": 4, "result": true, "error": null}),
        json!({"id": null, "method": "mining.set_version_mask", "params": ["00ffe000"]}),
        json!({"id": 17, "method": "mining.unknown", "params": []}),
        json!({"id": null, "method": "client.reconnect", "params": ["pool2.example.com", "3334", 3]}),
    ];
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        out.extend(serde_json::to_vec(m).unwrap());
        out.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
        if i % 4 == 1 {
            out.extend_from_slice(b"\n\r\n");
        }
    }
    out.extend_from_slice(tail);
    out
}

fn share(id: u64) -> Share {
    Share {
        id,
        job_id: "6a1f".into(),
        extranonce2: vec![0, 0, 0, 0, 0, 0, 0, 7],
        ntime: 0x6737_a1c5,
        nonce: 0x6205,
        version: 0x20b2_c000,
    }
}

/// Run a session over `bytes` cut at the given sorted positions; returns
/// the actions without wake-ups (each call asks for one, so their number
/// depends on the chunking) and the deadline the session ends up with.
///
/// Two shares are submitted right after connecting, before any byte
/// arrives, so they take request ids 3 and 4 (after configure = 1 and
/// subscribe = 2); authorize and extranonce.subscribe then get 5 and 6.
fn run(bytes: &[u8], cuts: &[usize]) -> (Vec<Action>, Option<u64>) {
    let mut s = Session::new(config(true));
    let mut actions = s.connected(0);
    actions.extend(s.share_found(10, share(1)));
    actions.extend(s.share_found(10, share(2)));
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(start, bytes.len());
        actions.extend(s.received(20, &bytes[start..cut]));
        start = cut;
    }
    (without_wakes(&actions), s.next_deadline())
}

#[test]
fn transcript_is_meaningful() {
    let bytes = transcript(b"");
    let (a, deadline) = run(&bytes, &[]);
    assert!(fails(&a).is_empty(), "{:?}", fails(&a));
    // Every request was answered: nothing is left to time.
    assert_eq!(deadline, None);
    assert_eq!(jobs(&a).len(), 2);
    assert_eq!(targets(&a).len(), 2);
    assert_eq!(
        share_results(&a),
        vec![
            (1, ShareOutcome::Rejected("23: Low difficulty share".into())),
            (2, ShareOutcome::Accepted)
        ]
    );
    assert!(logs(&a, LogLevel::Info).contains(&"authorized as worker1".to_string()));
    assert!(a.iter().any(|x| matches!(x, Action::Reconnect(_))));
    // Replies to get_version and to the unknown request.
    let replies = sent(&a)
        .into_iter()
        .filter(|m| m.get("method").is_none())
        .count();
    assert_eq!(replies, 2);
}

#[test]
fn one_byte_chunks_match_single_chunk() {
    for tail in [&b""[..], b"{\"id\":1,\"result\":tru\n{}\n", b"\xc3\x28\n"] {
        let bytes = transcript(tail);
        let whole = run(&bytes, &[]);
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(run(&bytes, &cuts), whole);
    }
}

fn tails() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(
            b"not json\n{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[4]}\n"
                .to_vec()
        ),
        Just(b"\xff\n".to_vec()),
        Just(vec![b'x'; 70_000]),
        Just(b"{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"x\"]}\n".to_vec()),
        Just(b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[2]}".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunking_does_not_change_actions(
        tail in tails(),
        raw_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..64),
    ) {
        let bytes = transcript(&tail);
        let mut cuts: Vec<usize> = raw_cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = run(&bytes, &[]);
        prop_assert_eq!(run(&bytes, &cuts), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
        now in any::<u64>(),
    ) {
        let mut s = Session::new(config(true));
        s.connected(0);
        for c in &chunks {
            let _ = s.received(0, c);
            let _ = s.share_found(0, share(9));
        }
        let _ = s.tick(now);
    }

    #[test]
    fn mutated_transcripts_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        now in any::<u64>(),
    ) {
        let mut bytes = transcript(b"");
        for (i, b) in &flips {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        let mut s = Session::new(config(true));
        s.connected(0);
        let _ = s.received(0, &bytes);
        let _ = s.share_found(0, share(1));
        let _ = s.tick(now);
        let _ = s.connected(now);
        let _ = s.received(0, &bytes);
    }
}
