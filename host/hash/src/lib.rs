//! SHA-256d nonce scanning for hashwatt.
//!
//! This crate is the appliance's CPU hashing core: it scans nonce ranges of
//! Bitcoin block headers for hashes that meet a target, and it verifies the
//! nonces ASICs report. Backends are chosen at run time.

pub mod backend;
pub mod scalar;
pub mod sha256;

pub use backend::{Backend, Prepared};
pub use sha256::sha256d;

/// Scans `count` nonces from `start` of `header` with `backend` and returns
/// the nonces whose SHA-256d meets `target` (big-endian), sorted.
pub fn scan(
    backend: &dyn Backend,
    header: &[u8; 80],
    target: &[u8; 32],
    start: u32,
    count: u64,
) -> Vec<u32> {
    let job = Prepared::new(header, target);
    let mut out = Vec::new();
    let mut pos = start as u64;
    let end = (start as u64 + count).min(1 << 32);
    while pos < end {
        let n = (end - pos).min(u32::MAX as u64) as u32;
        backend.scan(&job, pos as u32, n, &mut |nonce| out.push(nonce));
        pos += n as u64;
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_125552() {
        let h: [u8; 80] = hex::decode("0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695").unwrap().try_into().unwrap();
        let mut t = [0u8; 32];
        t[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x1f]);
        let mut header = h;
        header[76..].fill(0);
        let found = scan(&scalar::Scalar, &header, &t, 0x9546a142 - 5, 10);
        assert_eq!(found, vec![0x9546a142]);
    }
}
