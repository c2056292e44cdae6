//! Reference helpers shared by the backend tests: the `sha2` crate's plain
//! double SHA-256 is the oracle every kernel is compared with.
#![allow(dead_code)] // each test binary uses a subset

use hashwatt_hash::{Backend, Prepared};
use sha2::{Digest, Sha256};

/// The hash in display order (big-endian number) for `header` with `nonce`.
pub fn reference(header: &[u8; 80], nonce: u32) -> [u8; 32] {
    let mut h = *header;
    h[76..].copy_from_slice(&nonce.to_le_bytes());
    let mut d: [u8; 32] = Sha256::digest(Sha256::digest(h)).into();
    d.reverse();
    d
}

/// All nonces of the range meeting the target, by the reference.
pub fn expected(header: &[u8; 80], target: &[u8; 32], start: u32, count: u32) -> Vec<u32> {
    (0..count)
        .map(|i| start.wrapping_add(i))
        .filter(|&n| reference(header, n) <= *target)
        .collect()
}

/// The nonces `backend` reports for the range, sorted.
pub fn run(
    backend: &dyn Backend,
    header: &[u8; 80],
    target: &[u8; 32],
    start: u32,
    count: u32,
) -> Vec<u32> {
    let job = Prepared::new(header, target);
    let mut out = Vec::new();
    backend.scan(&job, start, count, &mut |n| out.push(n));
    out.sort_unstable();
    out
}

/// `x - 1` as a 256-bit big-endian number (`x` must not be zero).
pub fn minus_one(mut x: [u8; 32]) -> [u8; 32] {
    for b in x.iter_mut().rev() {
        let (v, borrow) = b.overflowing_sub(1);
        *b = v;
        if !borrow {
            break;
        }
    }
    x
}
