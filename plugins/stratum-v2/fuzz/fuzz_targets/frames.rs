//! The frame decoder and the session behind it, fed by the fuzzer:
//! - odd first byte: the bytes go straight to the miner after the
//!   handshake (they must fail to decrypt, never panic);
//! - even: they are cut into (type, payload) frames that the pool side
//!   encrypts properly, so every message parser sees arbitrary payloads.

#![no_main]

use codec_sv2::{Handshake, NoiseEncoder};
use common_messages_sv2::{MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, SetupConnectionSuccess};
use framing_sv2::framing::MessageFrame;
use hashwatt_pool_sdk::{Action, PoolConfig, PoolMachine, Share};
use libfuzzer_sys::fuzz_target;
use mining_sv2::*;
use noise_sv2::Responder;
use rand::SeedableRng;
use secp256k1::{Keypair, Secp256k1};
use stratum_v2::{AuthorityKey, Session};

const NOW: u32 = 1_796_083_200;

fn clock() -> u32 {
    NOW
}

/// Raw bytes as an Sv2 payload (already serialized).
struct Raw(Vec<u8>);

impl binary_sv2::GetSize for Raw {
    fn get_size(&self) -> usize {
        self.0.len()
    }
}

impl binary_sv2::Serialize for Raw {
    fn to_bytes(self, dst: &mut [u8]) -> Result<usize, binary_sv2::Error> {
        dst[..self.0.len()].copy_from_slice(&self.0);
        Ok(self.0.len())
    }
}

fn sent(out: &[Action]) -> Vec<u8> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let secp = Secp256k1::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let kp = Keypair::new(&secp, &mut rng);
    let key = AuthorityKey(kp.x_only_public_key().0.serialize());
    let config = PoolConfig {
        url: format!("stratum2+tcp://127.0.0.1:3336/{}", key.to_text()),
        host: "127.0.0.1".into(),
        port: 3336,
        user: "fuzz".into(),
        version_rolling: true,
        ..PoolConfig::default()
    };
    let mut s = Session::with_entropy(config, Box::new(rand::rngs::StdRng::seed_from_u64(2)), clock);
    let first = sent(&s.connected(0));
    let responder = Responder::new_with_rng(kp, 3600, &mut rng);
    let (reply, transport) = Handshake::responder(responder)
        .step_1_with_now_rng(first.try_into().unwrap(), NOW, &mut rng)
        .unwrap();
    let mut encoder = NoiseEncoder::new();
    let reply = AsRef::<[u8]>::as_ref(&encoder.encode_handshake(reply)).to_vec();
    s.received(1, &reply);
    let (mut enc, _dec) = transport.split();
    let mut frame = |t: u8, channel: bool, payload: Vec<u8>| -> Vec<u8> {
        let Ok(f) = MessageFrame::from_message(Raw(payload), t, 0, channel) else {
            return Vec::new();
        };
        encoder
            .encode_transport(f, &mut enc)
            .map(|b| AsRef::<[u8]>::as_ref(&b).to_vec())
            .unwrap_or_default()
    };
    if mode % 2 == 1 {
        s.received(2, rest);
        return;
    }
    // Set up and open an extended channel, then the fuzzer's frames.
    let mut ok = Vec::new();
    binary_sv2::Serialize::to_bytes(
        SetupConnectionSuccess { used_version: 2, flags: 0 },
        &mut { ok.resize(6, 0); ok.as_mut_slice() },
    )
    .unwrap();
    s.received(2, &frame(MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, false, ok));
    let target = [0xffu8; 32];
    let open = OpenExtendedMiningChannelSuccess {
        request_id: 1,
        channel_id: 1,
        target: (&target).into(),
        extranonce_size: 4,
        extranonce_prefix: (&[1u8, 2]).try_into().unwrap(),
        group_channel_id: 0,
    };
    let mut bytes = vec![0u8; binary_sv2::GetSize::get_size(&open)];
    binary_sv2::Serialize::to_bytes(open, &mut bytes).unwrap();
    s.received(3, &frame(MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS, false, bytes));
    let mut input = rest;
    let mut now = 4;
    while let [t, len, more @ ..] = input {
        let n = (*len as usize).min(more.len());
        let (payload, tail) = more.split_at(n);
        input = tail;
        let out = s.received(now, &frame(*t, *t >= 0x15, payload.to_vec()));
        now += 1;
        // Shares on whatever jobs came out, as the host would find them.
        for a in out {
            if let Action::NewJob(j) = a {
                s.share_found(now, Share {
                    id: now,
                    job_id: j.id,
                    extranonce2: vec![0; 4],
                    ntime: j.ntime,
                    nonce: 1,
                    version: j.version,
                });
            }
        }
    }
});
