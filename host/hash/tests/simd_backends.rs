//! The SIMD backends (AVX-512, AVX2, ARMv8 SHA-2) must report exactly the
//! nonces whose plain `Sha256(Sha256(header))`, read as a little-endian
//! number, is at most the target — checked against the `sha2` crate on random
//! headers, ranges and targets. Each backend's tests return early (with a
//! note on stderr) on a CPU without its features.

mod common;

use common::{expected, minus_one, reference, run};
use hashwatt_hash::Backend;
use proptest::prelude::*;

/// A random scan case: header, range, and a target chosen relative to the
/// hash of one nonce of the range so that every outcome is exercised.
#[derive(Debug, Clone)]
struct Case {
    header: [u8; 80],
    start: u32,
    count: u32,
    /// Index into the range of the nonce the target is built from.
    pick: u32,
    mode: u8,
    noise: [u8; 32],
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(any::<u8>(), 80),
        prop_oneof![
            3 => any::<u32>(),
            1 => (0u32..100).prop_map(|d| u32::MAX - d),
            1 => 0u32..100,
        ],
        1u32..=40,
        any::<bool>(),
        any::<u32>(),
        0u8..6,
        any::<[u8; 32]>(),
    )
        .prop_map(|(h, start, count, to_end, pick, mode, noise)| {
            let room = u32::MAX - start; // nonces after start
            // Half of the near-the-end ranges end exactly at u32::MAX.
            let count = if to_end && room < 100 {
                room + 1
            } else {
                count.min(room).max(1)
            };
            let mut header = [0u8; 80];
            header.copy_from_slice(&h);
            Case {
                header,
                start,
                count,
                pick: pick % count,
                mode,
                noise,
            }
        })
}

/// Runs one case on `backend`; returns a description of a mismatch.
fn check_case(backend: &dyn Backend, c: &Case) -> Result<(), TestCaseError> {
    let pick = c.start + c.pick;
    let hash = reference(&c.header, pick);
    let target = match c.mode {
        0 => [0xff; 32],
        1 => [0; 32],
        2 => hash,
        3 => minus_one(hash),
        4 => {
            // Same top word as the picked hash, random rest: the exact
            // comparison beyond the early-exit word decides.
            let mut t = c.noise;
            t[..4].copy_from_slice(&hash[..4]);
            t
        }
        _ => {
            // A random target with 0..=3 leading zero bytes.
            let mut t = c.noise;
            let zeros = usize::from(t[31] % 4);
            t[..zeros].fill(0);
            t
        }
    };
    let want = expected(&c.header, &target, c.start, c.count);
    // Guard the reference itself so the comparison cannot be vacuous.
    match c.mode {
        0 => prop_assert_eq!(want.len() as u32, c.count),
        1 => prop_assert!(want.is_empty()),
        2 => prop_assert!(want.contains(&pick)),
        3 => prop_assert!(!want.contains(&pick)),
        _ => {}
    }
    let got = run(backend, &c.header, &target, c.start, c.count);
    prop_assert_eq!(
        got,
        want,
        "backend {} target {:02x?}",
        backend.name(),
        target
    );
    Ok(())
}

/// Block 125552 (from /work/shared/vectors/stratum-v1.json): found with its
/// own hash as the target, not with the hash minus one; ranges ending on
/// either side of the nonce in non-lane-multiple lengths.
fn check_block_125552(backend: &dyn Backend) {
    let raw = hex::decode(
        "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d75\
         0423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695",
    )
    .unwrap();
    let header: [u8; 80] = raw.try_into().unwrap();
    let hash: [u8; 32] =
        hex::decode("00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d")
            .unwrap()
            .try_into()
            .unwrap();
    let nonce = 0x9546_a142u32;
    assert_eq!(reference(&header, nonce), hash);
    for (before, len) in [(0u32, 1u32), (5, 10), (7, 33), (15, 17), (16, 17), (30, 31)] {
        let start = nonce - before;
        assert_eq!(
            run(backend, &header, &hash, start, len),
            vec![nonce],
            "{before} {len}"
        );
        assert!(run(backend, &header, &minus_one(hash), start, len).is_empty());
    }
    // The real block's target (nbits 1a44b9f2) also finds it.
    let mut block_target = [0u8; 32];
    block_target[6..9].copy_from_slice(&[0x44, 0xb9, 0xf2]);
    assert_eq!(
        run(backend, &header, &block_target, nonce - 100, 1000),
        vec![nonce]
    );
}

/// Fixed edge cases: every range length 1..=70 ending at u32::MAX and
/// starting at 0 with the maximal target (all found) and zero (none).
fn check_edges(backend: &dyn Backend) {
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
    for len in 1..=70u32 {
        for start in [0, u32::MAX - (len - 1), 0x8000_0000 - 3] {
            let all = run(backend, &header, &[0xff; 32], start, len);
            assert_eq!(
                all,
                (0..len).map(|i| start + i).collect::<Vec<_>>(),
                "{start} {len}"
            );
            assert!(run(backend, &header, &[0; 32], start, len).is_empty());
        }
    }
    // count 0 reports nothing.
    assert!(run(backend, &header, &[0xff; 32], 5, 0).is_empty());
}

macro_rules! backend_tests {
    ($module:ident, $path:path, $supported:path, $make:expr) => {
        mod $module {
            use super::*;

            fn backend() -> Option<Box<dyn Backend>> {
                if !$supported() {
                    eprintln!("skipping {}: CPU lacks the features", stringify!($module));
                    return None;
                }
                Some(Box::new($make))
            }

            #[test]
            fn name_and_constructor() {
                let Some(b) = backend() else { return };
                assert!(!b.name().is_empty());
                assert!(<$path>::new().is_some());
            }

            #[test]
            fn block_125552() {
                let Some(b) = backend() else { return };
                check_block_125552(b.as_ref());
            }

            #[test]
            fn edges() {
                let Some(b) = backend() else { return };
                check_edges(b.as_ref());
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(10_000))]
                #[test]
                fn agrees_with_sha2(c in case()) {
                    let Some(b) = backend() else { return Ok(()) };
                    check_case(b.as_ref(), &c)?;
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
backend_tests!(
    avx2,
    hashwatt_hash::avx2::Avx2x8,
    hashwatt_hash::avx2::is_supported,
    hashwatt_hash::avx2::Avx2x8
);
#[cfg(target_arch = "x86_64")]
backend_tests!(
    avx512,
    hashwatt_hash::avx512::Avx512x16,
    hashwatt_hash::avx512::is_supported,
    hashwatt_hash::avx512::Avx512x16
);
#[cfg(target_arch = "aarch64")]
backend_tests!(
    armv8,
    hashwatt_hash::aarch64::ArmSha2x2,
    hashwatt_hash::aarch64::is_supported,
    hashwatt_hash::aarch64::ArmSha2x2
);
