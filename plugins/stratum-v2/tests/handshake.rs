//! The plugin's transport against the reference Noise responder and codec
//! (the pool side SRI's roles use): the handshake with a pinned authority
//! key, frames both ways in arbitrary TCP pieces, and every refusal with
//! its reason — a foreign key, an expired or future certificate, a
//! corrupt reply, a corrupt frame — without a panic.

use common_messages_sv2::{
    MESSAGE_TYPE_SETUP_CONNECTION, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, Protocol,
    SetupConnection, SetupConnectionSuccess,
};
use rand::Rng;
use secp256k1::Keypair;
use stratum_v2::{AuthorityKey, Event, Transport, TransportError};

mod common;

use common::{NOW, Pool, authority};

fn rng() -> rand::rngs::StdRng {
    common::rng(7)
}

/// Runs the handshake: the miner pins `pinned`, the pool holds `pool_kp`
/// and signs a certificate at `pool_now` valid for `validity` seconds;
/// the reply reaches the miner in `piece`-byte pieces at `now`.
fn handshake(
    pinned: AuthorityKey,
    pool_kp: Keypair,
    pool_now: u32,
    validity: u32,
    now: u32,
    piece: usize,
) -> Result<(Transport, Pool), TransportError> {
    let mut rng = rng();
    let (mut miner, first) = Transport::start(pinned, &mut rng)?;
    assert_eq!(
        first.len(),
        64,
        "the initiator's ephemeral key, ElligatorSwift-encoded"
    );
    let (pool, reply) = Pool::accept(&first, pool_kp, pool_now, validity);
    let mut events = Vec::new();
    for p in reply.chunks(piece) {
        events.extend(miner.receive(p, now)?);
    }
    assert_eq!(events, vec![Event::Established]);
    assert!(miner.is_open());
    Ok((miner, pool))
}

fn setup_connection() -> SetupConnection<'static> {
    SetupConnection {
        protocol: Protocol::MiningProtocol,
        min_version: 2,
        max_version: 2,
        flags: 0b100,
        endpoint_host: "pool.example".try_into().unwrap(),
        endpoint_port: 3336,
        vendor: "hashwatt".try_into().unwrap(),
        hardware_version: "cpu".try_into().unwrap(),
        firmware: "0.1.0".try_into().unwrap(),
        device_id: "".try_into().unwrap(),
    }
}

#[test]
fn a_pinned_pool_is_reached_and_frames_pass_both_ways_in_any_pieces() {
    let (kp, key) = authority(1);
    for piece in [1, 7, 100, 234] {
        let (mut miner, mut pool) = handshake(key, kp, NOW - 60, 3600, NOW, piece).unwrap();
        // Miner → pool: SetupConnection, decoded by the reference codec.
        let bytes = miner
            .send(setup_connection(), MESSAGE_TYPE_SETUP_CONNECTION, 0, false)
            .unwrap();
        let (t, mut payload) = pool.receive(&bytes).remove(0);
        assert_eq!(t, MESSAGE_TYPE_SETUP_CONNECTION);
        let got: SetupConnection = binary_sv2::from_bytes(&mut payload).unwrap();
        assert_eq!(got.endpoint_port, 3336);
        // Pool → miner: SetupConnectionSuccess, split at `piece` bytes, and
        // two frames in one TCP read.
        let one = pool.send(
            SetupConnectionSuccess {
                used_version: 2,
                flags: 0,
            },
            MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
            false,
        );
        let mut both = one.clone();
        both.extend(pool.send(
            SetupConnectionSuccess {
                used_version: 2,
                flags: 1,
            },
            MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
            false,
        ));
        let mut frames = Vec::new();
        for p in both.chunks(piece) {
            frames.extend(miner.receive(p, NOW).unwrap());
        }
        assert_eq!(frames.len(), 2, "{frames:?}");
        for (i, f) in frames.into_iter().enumerate() {
            let Event::Frame(mut f) = f else {
                panic!("{f:?}")
            };
            assert_eq!(f.msg_type, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS);
            let s: SetupConnectionSuccess = binary_sv2::from_bytes(&mut f.payload).unwrap();
            assert_eq!(s.flags, i as u32);
        }
    }
}

#[test]
fn a_pool_certified_by_another_key_is_refused() {
    let (_, pinned) = authority(1);
    let (other, _) = authority(2);
    let e = handshake(pinned, other, NOW - 60, 3600, NOW, 234).unwrap_err();
    assert!(matches!(e, TransportError::WrongAuthority { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&pinned.fingerprint()), "{text}");
    assert!(text.contains("not signed by the authority key"), "{text}");
}

#[test]
fn an_expired_or_future_certificate_is_refused_with_its_dates() {
    let (kp, key) = authority(1);
    let e = handshake(key, kp, NOW - 7200, 3600, NOW, 234).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("expired"), "{text}");
    assert!(
        text.contains(&format!("from {} to {}", NOW - 7200, NOW - 3600)),
        "{text}"
    );
    let e = handshake(key, kp, NOW + 7200, 3600, NOW, 234).unwrap_err();
    assert!(e.to_string().contains("not valid yet"), "{e}");
    // Within the leeway: accepted.
    handshake(key, kp, NOW + 5, 3600, NOW, 234).unwrap();
}

#[test]
fn corrupt_bytes_are_protocol_errors_never_panics() {
    let (kp, key) = authority(1);
    let mut r = rng();
    // Garbage instead of the handshake reply.
    for _ in 0..50 {
        let (mut miner, _) = Transport::start(key, &mut r).unwrap();
        let junk: Vec<u8> = (0..r.gen_range(0..600)).map(|_| r.r#gen()).collect();
        let out = miner.receive(&junk, NOW);
        if junk.len() < 234 {
            assert_eq!(out, Ok(vec![]));
        } else {
            assert!(matches!(out, Err(TransportError::Handshake(_))), "{out:?}");
        }
    }
    // Garbage after the handshake, and a flipped bit in a real frame.
    for round in 0..50 {
        let (mut miner, mut pool) = handshake(key, kp, NOW, 3600, NOW, 234).unwrap();
        let mut frame = pool.send(
            SetupConnectionSuccess {
                used_version: 2,
                flags: 0,
            },
            MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
            false,
        );
        if round % 2 == 0 {
            let i = r.gen_range(0..frame.len());
            frame[i] ^= 1 << r.gen_range(0..8);
        } else {
            frame = (0..r.gen_range(22..200)).map(|_| r.r#gen()).collect();
        }
        let e = miner.receive(&frame, NOW).unwrap_err();
        assert!(matches!(e, TransportError::Frame(_)), "{e:?}");
        assert!(e.to_string().starts_with("protocol error"), "{e}");
        // Broken for good: later bytes are refused, not misread.
        assert!(matches!(
            miner.receive(&[0; 30], NOW),
            Err(TransportError::NotOpen(_))
        ));
        assert!(
            miner
                .send(
                    SetupConnectionSuccess {
                        used_version: 2,
                        flags: 0
                    },
                    1,
                    0,
                    false
                )
                .is_err()
        );
    }
}
