//! The mining session against a pool built on the reference codecs: setup,
//! both channel kinds, future jobs activated by a new previous hash, the
//! share target, shares submitted and answered, stale work never
//! submitted, reconnect requests, and refusals with their reasons.

mod common;

use common::{NOW, Pool, authority};
use common_messages_sv2::{
    MESSAGE_TYPE_RECONNECT, MESSAGE_TYPE_SETUP_CONNECTION, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
    Reconnect, SetupConnection, SetupConnectionSuccess,
};
use hashwatt_pool_sdk::{Action, PoolConfig, PoolMachine, Share, ShareOutcome, WorkKind};
use mining_sv2::*;
use secp256k1::Keypair;
use stratum_v2::{AuthorityKey, Session};

fn clock() -> u32 {
    NOW
}

fn config(key: AuthorityKey, channel: &str) -> PoolConfig {
    PoolConfig {
        url: format!("stratum2+tcp://127.0.0.1:34254/{}", key.to_text()),
        host: "127.0.0.1".into(),
        port: 34254,
        user: "me.worker1".into(),
        user_agent: "hashwatt/0.1.0".into(),
        version_rolling: true,
        settings: format!(r#"{{"channel": "{channel}"}}"#),
        ..PoolConfig::default()
    }
}

fn sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Connects, handshakes, sets up and opens a channel of `channel` kind.
fn open(kp: Keypair, key: AuthorityKey, channel: &str) -> (Session, Pool, Vec<Action>) {
    open_with(kp, key, channel, 0)
}

/// [`open`] with the flags the pool answers SetupConnection with.
fn open_with(
    kp: Keypair,
    key: AuthorityKey,
    channel: &str,
    flags: u32,
) -> (Session, Pool, Vec<Action>) {
    let mut s = Session::with_entropy(config(key, channel), Box::new(common::rng(5)), clock);
    let first = sent(&s.connected(0));
    let (mut pool, reply) = Pool::accept(&first, kp, NOW - 60, 3600);
    let out = s.received(1, &reply);
    let frames = pool.receive(&sent(&out));
    assert_eq!(frames.len(), 1, "{out:?}");
    let (t, mut p) = frames.into_iter().next().unwrap();
    assert_eq!(t, MESSAGE_TYPE_SETUP_CONNECTION);
    let setup: SetupConnection = binary_sv2::from_bytes(&mut p).unwrap();
    assert_eq!(setup.endpoint_port, 34254);
    assert_eq!(
        setup.flags & 1,
        u32::from(channel == "standard"),
        "REQUIRES_STANDARD_JOBS"
    );
    let ok = pool.send(
        SetupConnectionSuccess {
            used_version: 2,
            flags,
        },
        MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
        false,
    );
    let out = s.received(2, &ok);
    let (t, mut p) = pool.receive(&sent(&out)).remove(0);
    let mut target = [0u8; 32];
    target[29] = 0x01; // little-endian: 2^232
    let success = if channel == "standard" {
        assert_eq!(t, MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL);
        let m: OpenStandardMiningChannel = binary_sv2::from_bytes(&mut p).unwrap();
        assert_eq!(m.user_identity.as_bytes(), b"me.worker1");
        pool.send(
            OpenStandardMiningChannelSuccess {
                request_id: m.request_id,
                channel_id: 7,
                target: (&target).into(),
                extranonce_prefix: (&[1u8, 2, 3, 4]).try_into().unwrap(),
                group_channel_id: 1,
            },
            MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS,
            false,
        )
    } else {
        assert_eq!(t, MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL);
        let m: OpenExtendedMiningChannel = binary_sv2::from_bytes(&mut p).unwrap();
        assert!(m.min_extranonce_size >= 1);
        pool.send(
            OpenExtendedMiningChannelSuccess {
                request_id: m.request_id,
                channel_id: 7,
                target: (&target).into(),
                extranonce_size: 8,
                extranonce_prefix: (&[0xaa_u8, 0xbb]).try_into().unwrap(),
                group_channel_id: 1,
            },
            MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS,
            false,
        )
    };
    let out = s.received(3, &success);
    (s, pool, out)
}

fn jobs(out: &[Action]) -> Vec<hashwatt_pool_sdk::Job> {
    out.iter()
        .filter_map(|a| match a {
            Action::NewJob(j) => Some(j.clone()),
            _ => None,
        })
        .collect()
}

fn prev_hash(pool: &mut Pool, job_id: u32, byte: u8) -> Vec<u8> {
    pool.send(
        SetNewPrevHash {
            channel_id: 7,
            job_id,
            prev_hash: (&[byte; 32]).into(),
            min_ntime: 1_796_000_000,
            nbits: 0x207f_ffff,
        },
        MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH,
        true,
    )
}

fn extended_job(pool: &mut Pool, job_id: u32, future: bool) -> Vec<u8> {
    let path: Vec<binary_sv2::U256> = vec![(&[9u8; 32]).into()];
    pool.send(
        NewExtendedMiningJob {
            channel_id: 7,
            job_id,
            min_ntime: binary_sv2::Sv2Option::new(if future { None } else { Some(1_796_000_100) }),
            version: 0x2000_0000,
            version_rolling_allowed: true,
            merkle_path: path.try_into().unwrap(),
            coinbase_tx_prefix: (&[1u8, 2, 3]).try_into().unwrap(),
            coinbase_tx_suffix: (&[4u8, 5]).try_into().unwrap(),
        },
        MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB,
        true,
    )
}

fn share(id: u64, job: &str) -> Share {
    Share {
        id,
        job_id: job.into(),
        extranonce2: vec![0, 0, 0, 0, 0, 0, 0, id as u8],
        ntime: 1_796_000_000,
        nonce: 0xdead_beef,
        version: 0x2000_4000,
    }
}

#[test]
fn extended_channel_future_jobs_prevhash_shares_and_stale_work() {
    let (kp, key) = authority(1);
    let (mut s, mut pool, out) = open(kp, key, "extended");
    // The channel's target reaches the host big-endian.
    let targets: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::SetShareTarget(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let mut want = [0u8; 32];
    want[2] = 0x01;
    assert_eq!(targets, vec![want.to_vec()], "{out:?}");
    // The operator learns what was negotiated, with the key's fingerprint.
    let reports: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Session(info) => Some(info.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reports,
        vec![hashwatt_pool_sdk::SessionInfo {
            protocol: "Stratum V2".into(),
            channel: Some("extended".into()),
            encrypted: true,
            authority: Some(key.fingerprint()),
            details: vec![
                ("channel id".into(), "7".into()),
                ("extranonce".into(), "8 bytes rolled".into()),
                ("version rolling".into(), "1fffe000".into()),
            ],
        }],
        "{out:?}"
    );

    // A future job waits for its previous hash.
    let out = s.received(4, &extended_job(&mut pool, 1, true));
    assert!(
        jobs(&out).is_empty(),
        "a future job is not mined before its prevhash: {out:?}"
    );
    let out = s.received(5, &prev_hash(&mut pool, 1, 0x11));
    let j = jobs(&out);
    assert_eq!(j.len(), 1, "{out:?}");
    assert!(j[0].clean);
    assert_eq!(j[0].id, "1");
    assert_eq!(j[0].prev_hash, vec![0x11; 32]);
    assert_eq!(j[0].nbits, 0x207f_ffff);
    assert_eq!(j[0].ntime, 1_796_000_000);
    assert_ne!(j[0].version_mask, 0);
    let WorkKind::Extended(w) = &j[0].kind else {
        panic!("{:?}", j[0].kind)
    };
    assert_eq!(w.coinbase_prefix, vec![1, 2, 3]);
    assert_eq!(w.extranonce1, vec![0xaa, 0xbb]);
    assert_eq!(w.extranonce2_size, 8);
    assert_eq!(w.coinbase_suffix, vec![4, 5]);
    assert_eq!(w.merkle_branches, vec![vec![9; 32]]);

    // Two shares: submitted with sequence numbers, one accepted in a
    // batch, one refused with the pool's code.
    let mut submitted = Vec::new();
    for id in [100, 101] {
        let out = s.share_found(6, share(id, "1"));
        for (t, mut p) in pool.receive(&sent(&out)) {
            assert_eq!(t, MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED);
            let m: SubmitSharesExtended = binary_sv2::from_bytes(&mut p).unwrap();
            assert_eq!((m.channel_id, m.job_id, m.nonce), (7, 1, 0xdead_beef));
            assert_eq!(m.version, 0x2000_4000);
            assert_eq!(m.extranonce.as_bytes(), &[0, 0, 0, 0, 0, 0, 0, id as u8]);
            submitted.push(m.sequence_number);
        }
    }
    assert_eq!(submitted, vec![0, 1]);
    let mut replies = pool.send(
        SubmitSharesSuccess {
            channel_id: 7,
            last_sequence_number: 0,
            new_submits_accepted_count: 1,
            new_shares_sum: 1,
        },
        MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS,
        true,
    );
    replies.extend(pool.send(
        SubmitSharesError {
            channel_id: 7,
            sequence_number: 1,
            error_code: "difficulty-too-low".try_into().unwrap(),
        },
        MESSAGE_TYPE_SUBMIT_SHARES_ERROR,
        true,
    ));
    let out = s.received(7, &replies);
    let results: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::ShareResult(r) => Some((r.id, r.outcome.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        vec![
            (100, ShareOutcome::Accepted),
            (101, ShareOutcome::Rejected("difficulty-too-low".into()))
        ]
    );

    // A new block: the next future job becomes the work, the old one is
    // void, and a late share on it is answered here, never submitted.
    s.received(8, &extended_job(&mut pool, 2, true));
    let out = s.received(9, &prev_hash(&mut pool, 2, 0x22));
    let j = jobs(&out);
    assert_eq!(
        (j.len(), j[0].id.as_str(), j[0].clean),
        (1, "2", true),
        "{out:?}"
    );
    let out = s.share_found(10, share(102, "1"));
    assert!(
        sent(&out).is_empty(),
        "a stale share was submitted: {out:?}"
    );
    assert!(
        matches!(
            &out[..],
            [Action::ShareResult(r)] if matches!(&r.outcome, ShareOutcome::Rejected(w) if w.contains("no longer valid"))
        ),
        "{out:?}"
    );

    // A job for the current block is mined at once.
    let out = s.received(11, &extended_job(&mut pool, 3, false));
    let j = jobs(&out);
    assert_eq!(
        (j.len(), j[0].id.as_str(), j[0].clean),
        (1, "3", false),
        "{out:?}"
    );
    // An easier target waits for the next job (the pool judges shares on
    // job 3 by the target it had); a harder one applies at once.
    let set_target = |pool: &mut Pool, first_be: u8| {
        let mut t = [0u8; 32];
        t[31] = first_be;
        pool.send(
            SetTarget {
                channel_id: 7,
                maximum_target: (&t).into(),
            },
            MESSAGE_TYPE_SET_TARGET,
            true,
        )
    };
    let targets = |out: &[Action]| -> Vec<u8> {
        out.iter()
            .filter_map(|a| match a {
                Action::SetShareTarget(b) => Some(b[0]),
                _ => None,
            })
            .collect()
    };
    let out = s.received(12, &set_target(&mut pool, 0x7f));
    assert!(
        targets(&out).is_empty(),
        "an easier target applied to job 3: {out:?}"
    );
    let out = s.received(12, &extended_job(&mut pool, 4, false));
    assert_eq!(targets(&out), vec![0x7f], "{out:?}");
    assert!(
        matches!(&out[..], [Action::SetShareTarget(_), Action::NewJob(j)] if j.id == "4"),
        "the target comes before the job it is for: {out:?}"
    );
    let out = s.received(12, &set_target(&mut pool, 0x01));
    assert_eq!(
        targets(&out),
        vec![0x01],
        "a harder target applies at once: {out:?}"
    );
    // A new extranonce prefix is for jobs sent after it: job 4 is not
    // re-issued, job 5 carries the new prefix.
    let out = s.received(
        12,
        &pool.send(
            SetExtranoncePrefix {
                channel_id: 7,
                extranonce_prefix: (&[0xcc_u8, 0xdd, 0xee]).try_into().unwrap(),
            },
            MESSAGE_TYPE_SET_EXTRANONCE_PREFIX,
            true,
        ),
    );
    assert!(jobs(&out).is_empty(), "{out:?}");
    let j = jobs(&s.received(12, &extended_job(&mut pool, 5, false)));
    let WorkKind::Extended(w) = &j[0].kind else {
        panic!("{:?}", j[0].kind)
    };
    assert_eq!(w.extranonce1, vec![0xcc, 0xdd, 0xee]);
    let out = s.received(
        13,
        &pool.send(
            Reconnect {
                new_host: "backup.example".try_into().unwrap(),
                new_port: 3336,
            },
            MESSAGE_TYPE_RECONNECT,
            false,
        ),
    );
    assert!(
        out.iter().any(
            |a| matches!(a, Action::Reconnect(r) if r.host == "backup.example" && r.port == 3336)
        ),
        "{out:?}"
    );
}

#[test]
fn standard_channel_mines_the_pools_merkle_root() {
    let (kp, key) = authority(1);
    let fingerprint = key.fingerprint();
    let (mut s, mut pool, out) = open(kp, key, "standard");
    let report = out.iter().find_map(|a| match a {
        Action::Session(info) => Some(info.clone()),
        _ => None,
    });
    let report = report.expect("a session report");
    assert_eq!(report.channel.as_deref(), Some("standard"));
    assert_eq!(report.authority, Some(fingerprint));
    assert_eq!(report.details[0], ("channel id".into(), "7".into()));
    let job = pool.send(
        NewMiningJob {
            channel_id: 7,
            job_id: 5,
            min_ntime: binary_sv2::Sv2Option::new(None),
            version: 0x2000_0000,
            merkle_root: (&[0x42u8; 32]).into(),
        },
        MESSAGE_TYPE_NEW_MINING_JOB,
        true,
    );
    assert!(jobs(&s.received(4, &job)).is_empty());
    let j = jobs(&s.received(5, &prev_hash(&mut pool, 5, 0x33)));
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].kind, WorkKind::MerkleRoot(vec![0x42; 32]));
    let out = s.share_found(6, share(1, "5"));
    let (t, mut p) = pool.receive(&sent(&out)).remove(0);
    assert_eq!(t, MESSAGE_TYPE_SUBMIT_SHARES_STANDARD);
    let m: SubmitSharesStandard = binary_sv2::from_bytes(&mut p).unwrap();
    assert_eq!(
        (m.channel_id, m.job_id, m.nonce, m.ntime),
        (7, 5, 0xdead_beef, 1_796_000_000)
    );
}

#[test]
fn refusals_say_why() {
    let (kp, key) = authority(1);
    let (_, other) = authority(2);
    let fail = |out: &[Action]| {
        out.iter()
            .find_map(|a| match a {
                Action::Fail(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no failure in {out:?}"))
    };
    // A pool certified by another key than the URL pins.
    let mut s = Session::with_entropy(config(other, "extended"), Box::new(common::rng(5)), clock);
    let first = sent(&s.connected(0));
    let (_, reply) = Pool::accept(&first, kp, NOW - 60, 3600);
    let reason = fail(&s.received(1, &reply));
    assert!(
        reason.contains("not signed by the authority key"),
        "{reason}"
    );
    // No key at all.
    let mut c = config(key, "extended");
    c.url = "stratum2+tcp://127.0.0.1:34254".into();
    let mut s = Session::with_entropy(c.clone(), Box::new(common::rng(5)), clock);
    assert!(fail(&s.connected(0)).contains("no authority key"));
    // ... unless the settings give it.
    c.settings = format!(r#"{{"authority_key": "{}"}}"#, key.to_text());
    let mut s = Session::with_entropy(c, Box::new(common::rng(5)), clock);
    assert!(matches!(&s.connected(0)[..], [Action::Send(b)] if b.len() == 64));
    // Settings are checked with the key named.
    for (json, want) in [
        (r#"{"chanel": "standard"}"#, "unknown field `chanel`"),
        (r#"{"channel": "group"}"#, "unknown variant `group`"),
        (r#"{"authority_key": "xyz"}"#, "settings.authority_key"),
    ] {
        let e = Session::validate_settings(json).unwrap_err();
        assert!(e.contains(want), "{json}: {e}");
    }
    // A frame that decrypts but does not parse fails the session.
    let (mut s, mut pool, _) = open(kp, key, "extended");
    let garbage = pool.send(
        SetupConnectionSuccess {
            used_version: 2,
            flags: 0,
        },
        MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH,
        true,
    );
    let reason = fail(&s.received(4, &garbage));
    assert!(reason.contains("malformed SetNewPrevHash"), "{reason}");
}

#[test]
fn a_pool_that_fixes_the_version_gets_no_rolled_bits() {
    let (kp, key) = authority(1);
    // REQUIRES_FIXED_VERSION in SetupConnection.Success.
    let (mut s, mut pool, _) = open_with(kp, key, "standard", 1);
    let job = pool.send(
        NewMiningJob {
            channel_id: 7,
            job_id: 1,
            min_ntime: binary_sv2::Sv2Option::new(None),
            version: 0x2000_0000,
            merkle_root: (&[0x42u8; 32]).into(),
        },
        MESSAGE_TYPE_NEW_MINING_JOB,
        true,
    );
    s.received(4, &job);
    let j = jobs(&s.received(5, &prev_hash(&mut pool, 1, 0x33)));
    assert_eq!(j[0].version_mask, 0, "{j:?}");
    // Without the flag the general-purpose bits the version leaves free.
    let (mut s, mut pool, _) = open(kp, key, "standard");
    let job = pool.send(
        NewMiningJob {
            channel_id: 7,
            job_id: 1,
            min_ntime: binary_sv2::Sv2Option::new(None),
            version: 0x2000_2000,
            merkle_root: (&[0x42u8; 32]).into(),
        },
        MESSAGE_TYPE_NEW_MINING_JOB,
        true,
    );
    s.received(4, &job);
    let j = jobs(&s.received(5, &prev_hash(&mut pool, 1, 0x33)));
    assert_eq!(j[0].version_mask, 0x1fff_c000, "{j:?}");
}
