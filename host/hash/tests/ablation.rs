//! Every mining-shortcut ablation level of the SHA-NI kernel must report
//! exactly the nonces the `sha2` crate's plain double SHA-256 does: random
//! headers with easy targets (many nonces found) and edge targets, and the
//! known block / Stratum vectors, whose share sits at a known nonce. On a
//! CPU without SHA-NI the tests return early with a note on stderr.
#![cfg(target_arch = "x86_64")]

mod common;

use common::{expected, minus_one, reference, run};
use hashwatt_hash::bench::{Ablation, ablation};
use hashwatt_hash::shani::AblationScanner;
use hashwatt_hash::{Backend, HashError};
use proptest::prelude::*;

/// One scanner per level, or `None` (with a note) on a CPU without SHA-NI.
fn scanners() -> Option<Vec<AblationScanner>> {
    let s: Option<Vec<_>> = Ablation::ALL
        .into_iter()
        .map(AblationScanner::new)
        .collect();
    if s.is_none() {
        eprintln!("skipping ablation tests: CPU lacks SHA-NI / AVX2");
    }
    s
}

#[derive(Clone, Debug)]
enum TargetKind {
    /// A random target with its top byte in 0..=0x3f: up to a quarter of
    /// the nonces meet it.
    Easy(u8, [u8; 31]),
    Max,
    Zero,
    /// Exactly the hash of the nonce at this offset in the range.
    ExactHash(u32),
    /// One less than that hash.
    BelowHash(u32),
    /// That hash's top word, random rest: the exact comparison decides.
    SameTop(u32, [u8; 28]),
}

fn target_kind() -> impl Strategy<Value = TargetKind> {
    prop_oneof![
        3 => (0u8..=0x3f, any::<[u8; 31]>()).prop_map(|(t, r)| TargetKind::Easy(t, r)),
        1 => Just(TargetKind::Max),
        1 => Just(TargetKind::Zero),
        1 => any::<u32>().prop_map(TargetKind::ExactHash),
        1 => any::<u32>().prop_map(TargetKind::BelowHash),
        1 => (any::<u32>(), any::<[u8; 28]>()).prop_map(|(o, r)| TargetKind::SameTop(o, r)),
    ]
}

fn start_nonce() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => any::<u32>(),
        1 => (0u32..24).prop_map(|k| u32::MAX - k),
        1 => 0u32..24,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// 200 cases, each checked on every level; ranges of 1..=64 nonces
    /// cover full and partial four-lane batches.
    #[test]
    fn every_level_agrees_with_sha2(
        header in any::<[u8; 80]>(),
        start in start_nonce(),
        count in 1u32..=64,
        kind in target_kind(),
    ) {
        let Some(levels) = scanners() else { return Ok(()) };
        // Clip so the range never passes u32::MAX.
        let count = count.min((u32::MAX - start).saturating_add(1));
        let at = |o: u32| start + o % count;
        let target = match kind {
            TargetKind::Easy(top, rest) => {
                let mut t = [top; 32];
                t[1..].copy_from_slice(&rest);
                t
            }
            TargetKind::Max => [0xff; 32],
            TargetKind::Zero => [0; 32],
            TargetKind::ExactHash(o) => reference(&header, at(o)),
            TargetKind::BelowHash(o) => minus_one(reference(&header, at(o))),
            TargetKind::SameTop(o, rest) => {
                let mut t = reference(&header, at(o));
                t[4..].copy_from_slice(&rest);
                t
            }
        };
        let want = expected(&header, &target, start, count);
        // Guard the reference itself so the comparison cannot be vacuous.
        match kind {
            TargetKind::Max => prop_assert_eq!(want.len() as u32, count),
            TargetKind::Zero => prop_assert!(want.is_empty()),
            TargetKind::ExactHash(o) => prop_assert!(want.contains(&at(o))),
            TargetKind::BelowHash(o) => prop_assert!(!want.contains(&at(o))),
            _ => {}
        }
        for s in &levels {
            let got = run(s, &header, &target, start, count);
            prop_assert_eq!(&got, &want, "level {}", s.name());
        }
    }
}

#[test]
fn easy_target_over_many_batches() {
    // About one nonce in 16 meets it: some 250 hits spread over all lanes
    // and over both the batch loop and the partial last batch.
    let Some(levels) = scanners() else { return };
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(101).wrapping_add(7));
    let mut target = [0xffu8; 32];
    target[0] = 0x0f;
    let want = expected(&header, &target, 1_000_000, 4099);
    assert!(want.len() > 100, "{}", want.len());
    for s in &levels {
        assert_eq!(
            run(s, &header, &target, 1_000_000, 4099),
            want,
            "{}",
            s.name()
        );
    }
}

struct Vector {
    header: [u8; 80],
    nonce: u32,
    hash_display: [u8; 32],
}

/// Block 125552 and the Stratum V1 shares, from tests/stratum-v1.json.
fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/stratum-v1.json"
    ))
    .expect("test vectors");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["stratum_v1"].as_array().unwrap());
    let out: Vec<Vector> = items
        .map(|item| {
            let hex32 = |k: &str| hex::decode(item[k].as_str().unwrap()).unwrap();
            let header: [u8; 80] = hex32("header").try_into().unwrap();
            Vector {
                nonce: u32::from_le_bytes(header[76..].try_into().unwrap()),
                header,
                hash_display: hex32("hash_display").try_into().unwrap(),
            }
        })
        .collect();
    assert_eq!(out.len(), 3);
    out
}

#[test]
fn known_shares_found_at_exact_target_and_not_below() {
    let Some(levels) = scanners() else { return };
    for v in vectors() {
        assert_eq!(reference(&v.header, v.nonce), v.hash_display);
        let below = minus_one(v.hash_display);
        for s in &levels {
            for (back, len) in [(0u32, 1u32), (3, 7), (37, 77), (1000, 2001)] {
                let start = v.nonce.saturating_sub(back);
                let count = len.min((u32::MAX - start).saturating_add(1));
                let got = run(s, &v.header, &v.hash_display, start, count);
                assert_eq!(got, vec![v.nonce], "{} start {start}", s.name());
                let got = run(s, &v.header, &below, start, count);
                assert!(got.is_empty(), "{} below-target start {start}", s.name());
            }
        }
    }
}

#[test]
fn block_125552_at_its_network_target() {
    let Some(levels) = scanners() else { return };
    let v = &vectors()[0];
    // nbits 1a44b9f2.
    let mut target = [0u8; 32];
    target[6..9].copy_from_slice(&[0x44, 0xb9, 0xf2]);
    for s in &levels {
        let got = run(s, &v.header, &target, v.nonce - 5000, 10_000);
        assert_eq!(got, vec![v.nonce], "{}", s.name());
    }
}

#[test]
fn scanners_name_their_level() {
    let Some(levels) = scanners() else { return };
    for (s, level) in levels.iter().zip(Ablation::ALL) {
        assert_eq!(s.level(), level);
        assert!(s.name().ends_with(level.name()), "{}", s.name());
    }
}

#[test]
fn ablation_report_has_every_level() {
    match ablation(0.03) {
        Ok(r) => {
            let levels: Vec<_> = r.levels.iter().map(|l| l.0).collect();
            assert_eq!(levels, Ablation::ALL);
            assert!(r.levels.iter().all(|l| l.1 > 0.0));
            assert!(r.to_string().contains("early-exit"));
            assert!(r.to_json().contains("\"precomputed\""));
        }
        Err(HashError::UnknownBackend { .. }) => {
            eprintln!("skipping ablation report: CPU lacks SHA-NI / AVX2");
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn ablation_rejects_bad_seconds() {
    for s in [0.0, -1.0, f64::NAN, 7200.0] {
        assert!(matches!(ablation(s), Err(HashError::BadOptions(_))), "{s}");
    }
}
