//! Byte-exact job frames for a real block header, and the reply parser
//! under arbitrary input.

mod common;

use hashwatt_asic::crc::crc16_false;
use hashwatt_asic::model::{Model, nonce_chip_address, nonce_core_id};
use hashwatt_asic::protocol::{JobFrame, NonceReply, ParseEvent, Reply, ReplyParser};
use proptest::prelude::*;

use common::block_125552;

#[test]
fn known_header_verifies() {
    let h = block_125552();
    let mut hash = hashwatt_hash::sha256d(&h);
    hash.reverse();
    assert_eq!(
        hex::encode(hash),
        "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"
    );
}

#[test]
fn job_frame_field_positions_for_block_125552() {
    let h = block_125552();
    let job = JobFrame::from_header(0x48, &h);
    let f = job.encode();
    assert_eq!(f.len(), 88);
    assert_eq!(&f[0..4], &[0x55, 0xAA, 0x21, 0x56]);
    assert_eq!(f[4], 0x48, "job id");
    assert_eq!(f[5], 0x01, "one midstate slot");
    assert_eq!(&f[6..10], &[0, 0, 0, 0], "starting nonce");
    assert_eq!(&f[10..14], &[0xf2, 0xb9, 0x44, 0x1a], "nbits little-endian");
    assert_eq!(&f[14..18], &h[68..72], "ntime as in the header");
    assert_eq!(&f[14..18], &[0xc7, 0xf5, 0xd7, 0x4d]);
    // Merkle root and previous hash: header bytes, 4-byte words in reverse order.
    for w in 0..8 {
        assert_eq!(
            &f[18 + 4 * w..22 + 4 * w],
            &h[36 + 4 * (7 - w)..40 + 4 * (7 - w)]
        );
        assert_eq!(
            &f[50 + 4 * w..54 + 4 * w],
            &h[4 + 4 * (7 - w)..8 + 4 * (7 - w)]
        );
    }
    // The first merkle-root word on the wire is the last one of the header.
    assert_eq!(
        &f[18..22],
        &[0x2b, 0x12, 0xfc, 0xf1][..]
            .iter()
            .rev()
            .copied()
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(&f[82..86], &[1, 0, 0, 0], "version little-endian");
    let crc = crc16_false(&f[2..86]);
    assert_eq!(&f[86..88], &crc.to_be_bytes());
    assert_eq!(JobFrame::decode(&f), Ok(job));
    // The job rebuilds the same header.
    assert_eq!(job.header(1, 2_504_433_986), h);
}

#[test]
fn nonce_reply_for_known_nonce_decodes_fields() {
    let nonce = 2_504_433_986u32;
    for m in Model::ALL {
        let r = Reply::Nonce(NonceReply {
            nonce,
            midstate: 0,
            id_byte: m.reply_id_byte(0x18, 1),
            version_bits: 0,
        });
        let bytes = r.encode();
        // Header bytes 76..80 travel unchanged.
        assert_eq!(&bytes[2..6], &block_125552()[76..80]);
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        p.push(&bytes, &mut out);
        let ParseEvent::Reply(Reply::Nonce(n)) = out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(n.nonce, nonce);
        assert_eq!(m.job_id_from_reply(n.id_byte), 0x18);
        // 0x9546a142 as header bytes 42 A1 46 95; big-endian view 0x42A14695.
        assert_eq!(nonce_core_id(nonce), 0x42 >> 1);
        assert_eq!(
            nonce_chip_address(nonce),
            ((0x42A1_4695u32 >> 17) & 0xff) as u8
        );
    }
}

fn reply_strategy() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (any::<u32>(), any::<u8>(), any::<u8>(), any::<u16>()).prop_map(
            |(nonce, midstate, id_byte, version_bits)| {
                Reply::Nonce(NonceReply {
                    nonce,
                    midstate,
                    id_byte,
                    version_bits,
                })
            }
        ),
        (any::<u32>(), any::<u8>(), any::<u8>()).prop_map(|(value, chip_address, reg)| {
            Reply::Register(hashwatt_asic::protocol::RegisterReply {
                value,
                chip_address,
                reg,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            p.push(c, &mut out);
        }
        prop_assert!(p.pending() < 11);
    }

    #[test]
    fn parser_recovers_replies_from_noise(
        items in proptest::collection::vec((proptest::collection::vec(any::<u8>().prop_filter("no preamble start", |b| *b != 0xAA), 0..20), reply_strategy()), 1..20),
        chunk in 1usize..40,
    ) {
        // Noise without 0xAA cannot start a frame, so every reply must come back.
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (noise, r) in &items {
            stream.extend_from_slice(noise);
            stream.extend_from_slice(&r.encode());
            want.push(*r);
        }
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        for c in stream.chunks(chunk) {
            p.push(c, &mut out);
        }
        let got: Vec<Reply> = out.iter().filter_map(|e| match e { ParseEvent::Reply(r) => Some(*r), _ => None }).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn parser_recovers_after_arbitrary_noise(noise in proptest::collection::vec(any::<u8>(), 0..64), r in reply_strategy()) {
        // Arbitrary noise may swallow at most the reply that follows it; one
        // reply later the stream is in sync again.
        let mut stream = noise.clone();
        stream.extend_from_slice(&r.encode());
        stream.extend_from_slice(&r.encode());
        stream.extend_from_slice(&r.encode());
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        p.push(&stream, &mut out);
        let got = out.iter().filter(|e| matches!(e, ParseEvent::Reply(x) if *x == r)).count();
        prop_assert!(got >= 2, "got {} of 3: {:?}", got, out);
    }
}
