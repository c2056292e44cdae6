//! Every backend against the `sha2` crate: random headers, edge ranges,
//! edge targets, and the known block / Stratum vectors.

mod common;

use std::sync::Arc;

use common::{expected, minus_one, reference, run};

use hashwatt_hash::{Backend, available};
use proptest::prelude::*;

fn backends() -> Vec<Arc<dyn Backend>> {
    let b = available();
    assert!(b.iter().any(|b| b.name() == "scalar"));
    b
}

#[derive(Clone, Debug)]
enum TargetKind {
    Max,
    Zero,
    /// Exactly the hash of the nonce at this offset in the range.
    ExactHash(u32),
    /// One less than that hash.
    BelowHash(u32),
    /// That hash's top word, random rest: exercises the equal-top-word path.
    SameTop(u32, [u8; 28]),
    /// A share-like target: top 16 bits zero, random rest.
    Share([u8; 30]),
}

fn target_kind() -> impl Strategy<Value = TargetKind> {
    prop_oneof![
        Just(TargetKind::Max),
        Just(TargetKind::Zero),
        any::<u32>().prop_map(TargetKind::ExactHash),
        any::<u32>().prop_map(TargetKind::BelowHash),
        (any::<u32>(), any::<[u8; 28]>()).prop_map(|(o, r)| TargetKind::SameTop(o, r)),
        any::<[u8; 30]>().prop_map(TargetKind::Share),
    ]
}

fn start_nonce() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..24).prop_map(|k| u32::MAX - k),
        0u32..24
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// 10 000 cases, each checked on every available backend.
    #[test]
    fn all_backends_agree_with_sha2(
        header in proptest::collection::vec(any::<u8>(), 80),
        start in start_nonce(),
        count in 1u32..=11,
        kind in target_kind(),
    ) {
        let header: [u8; 80] = header.try_into().unwrap();
        // Clip so the range never passes u32::MAX: ranges near the top then
        // end exactly at 2^32.
        let count = count.min((u32::MAX - start).saturating_add(1));
        let at = |o: u32| start.wrapping_add(o % count);
        let target = match kind {
            TargetKind::Max => [0xff; 32],
            TargetKind::Zero => [0; 32],
            TargetKind::ExactHash(o) => reference(&header, at(o)),
            TargetKind::BelowHash(o) => minus_one(reference(&header, at(o))),
            TargetKind::SameTop(o, rest) => {
                let mut t = reference(&header, at(o));
                t[4..].copy_from_slice(&rest);
                t
            }
            TargetKind::Share(rest) => {
                let mut t = [0u8; 32];
                t[2..].copy_from_slice(&rest);
                t
            }
        };
        let want = expected(&header, &target, start, count);
        match kind {
            TargetKind::Max => prop_assert_eq!(want.len() as u32, count),
            TargetKind::ExactHash(o) => prop_assert!(want.contains(&at(o))),
            TargetKind::BelowHash(o) => prop_assert!(!want.contains(&at(o))),
            _ => {}
        }
        for b in backends() {
            let got = run(&*b, &header, &target, start, count);
            prop_assert_eq!(&got, &want, "backend {}", b.name());
        }
    }
}

#[test]
fn ranges_ending_at_2_pow_32_and_empty() {
    let header: [u8; 80] = core::array::from_fn(|i| i as u8 * 3);
    for b in backends() {
        for count in 1..=37u32 {
            let start = u32::MAX - (count - 1);
            let got = run(&*b, &header, &[0xff; 32], start, count);
            assert_eq!(got, (start..=u32::MAX).collect::<Vec<_>>(), "{}", b.name());
        }
        assert!(
            run(&*b, &header, &[0xff; 32], 5, 0).is_empty(),
            "{}",
            b.name()
        );
        assert!(
            run(&*b, &header, &[0xff; 32], u32::MAX, 0).is_empty(),
            "{}",
            b.name()
        );
    }
}

#[test]
fn longer_ranges_against_share_target() {
    // Some thousand nonces per backend with a target found ~1 in 256, so
    // several full batches with hits in various lanes are compared.
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(101).wrapping_add(7));
    let mut target = [0xffu8; 32];
    target[0] = 0;
    let want = expected(&header, &target, 1_000_000, 4099);
    assert!(want.len() > 5);
    for b in backends() {
        assert_eq!(
            run(&*b, &header, &target, 1_000_000, 4099),
            want,
            "{}",
            b.name()
        );
    }
}

struct Vector {
    header: [u8; 80],
    nonce: u32,
    hash_display: [u8; 32],
}

fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string("/work/shared/vectors/stratum-v1.json")
        .or_else(|_| {
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/stratum-v1.json"
            ))
        })
        .expect("test vectors");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    let items = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["stratum_v1"].as_array().unwrap());
    for item in items {
        let header: [u8; 80] = hex::decode(item["header"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let hash_display: [u8; 32] = hex::decode(item["hash_display"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let nonce = u32::from_le_bytes(header[76..].try_into().unwrap());
        out.push(Vector {
            header,
            nonce,
            hash_display,
        });
    }
    assert_eq!(out.len(), 3);
    out
}

#[test]
fn known_vectors_found_at_exact_target_and_not_below() {
    for v in vectors() {
        assert_eq!(reference(&v.header, v.nonce), v.hash_display);
        let below = minus_one(v.hash_display);
        for b in backends() {
            for (back, len) in [(0u32, 1u32), (3, 7), (37, 77), (1000, 2001)] {
                let start = v.nonce.saturating_sub(back);
                let count = len.min((u32::MAX - start).saturating_add(1));
                let got = run(&*b, &v.header, &v.hash_display, start, count);
                assert_eq!(
                    got,
                    vec![v.nonce],
                    "{} start {start} count {count}",
                    b.name()
                );
                let got = run(&*b, &v.header, &below, start, count);
                assert!(got.is_empty(), "{} below-target start {start}", b.name());
            }
        }
    }
}

#[test]
fn block_125552_at_its_network_target() {
    let v = &vectors()[0];
    // nbits 1a44b9f2.
    let mut target = [0u8; 32];
    target[6..9].copy_from_slice(&[0x44, 0xb9, 0xf2]);
    for b in backends() {
        let got = run(&*b, &v.header, &target, v.nonce - 5000, 10_000);
        assert_eq!(got, vec![v.nonce], "{}", b.name());
    }
}
