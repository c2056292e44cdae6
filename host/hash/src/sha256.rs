//! Portable SHA-256 building blocks shared by the backends.
//!
//! Besides the plain compression function this holds the per-header
//! precomputation every mining kernel uses ([`Precomputed`]): the second block
//! of the first hash differs between nonces only in message word 3, so its
//! first three rounds and the nonce-independent part of round 4 are done once.

/// SHA-256 initial state.
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 round constants.
pub const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Message word 4 of the first hash's second block: the padding bit.
pub const PAD_BIT: u32 = 0x8000_0000;
/// Message word 15 of the first hash's second block: 80 bytes = 640 bits.
pub const LEN_HEADER_BITS: u32 = 640;
/// Message word 15 of the second hash's only block: 32 bytes = 256 bits.
pub const LEN_DIGEST_BITS: u32 = 256;

/// Compresses one 64-byte block into `state`.
pub fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, &[(*block).into()]);
}

/// SHA-256d of an 80-byte block header, in hash (internal) byte order.
pub fn sha256d(header: &[u8; 80]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let first = Sha256::digest(header);
    Sha256::digest(first).into()
}

/// Σ1 of the round function.
#[inline(always)]
pub fn big_sigma1(e: u32) -> u32 {
    e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25)
}

/// Σ0 of the round function.
#[inline(always)]
pub fn big_sigma0(a: u32) -> u32 {
    a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22)
}

/// σ0 of the message schedule.
#[inline(always)]
pub fn small_sigma0(w: u32) -> u32 {
    w.rotate_right(7) ^ w.rotate_right(18) ^ (w >> 3)
}

/// σ1 of the message schedule.
#[inline(always)]
pub fn small_sigma1(w: u32) -> u32 {
    w.rotate_right(17) ^ w.rotate_right(19) ^ (w >> 10)
}

/// One SHA-256 round on state `s` (a..h) with `kw = K[i] + W[i]`.
#[inline(always)]
pub fn round(s: &mut [u32; 8], kw: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(big_sigma1(e))
        .wrapping_add((e & f) ^ (!e & g))
        .wrapping_add(kw);
    let t2 = big_sigma0(a).wrapping_add((a & b) ^ (a & c) ^ (b & c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

/// Schedule word `i >= 16` from the previous sixteen.
#[inline(always)]
pub fn schedule_word(w: &[u32; 64], i: usize) -> u32 {
    small_sigma1(w[i - 2])
        .wrapping_add(w[i - 7])
        .wrapping_add(small_sigma0(w[i - 15]))
        .wrapping_add(w[i - 16])
}

/// Per-header constants of the mining loop that do not depend on the nonce.
///
/// Computed once per header (cheap: four rounds) so every kernel can start
/// the first hash's second block at round 4 with one addition per nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precomputed {
    /// State (a..h) after rounds 0..=3 of the first hash's second block,
    /// computed with nonce word 0. For a nonce, add its message word
    /// ([`crate::Prepared::nonce_word`]) to `state4[0]` (a) and `state4[4]`
    /// (e): round 3 is the only one that read word 3 so far, and it enters
    /// both linearly.
    pub state4: [u32; 8],
    /// Schedule words 16 and 17 of that block: they do not read word 3.
    pub w16: u32,
    /// See `w16`.
    pub w17: u32,
}

impl Precomputed {
    /// Computes the constants from the midstate and the second block's
    /// first three message words.
    pub fn new(midstate: &[u32; 8], tail: &[u32; 3]) -> Self {
        let mut s = *midstate;
        round(&mut s, K[0].wrapping_add(tail[0]));
        round(&mut s, K[1].wrapping_add(tail[1]));
        round(&mut s, K[2].wrapping_add(tail[2]));
        round(&mut s, K[3]);
        // W16 = σ1(W14) + W9 + σ0(W1) + W0, W17 = σ1(W15) + W10 + σ0(W2) + W1;
        // W9, W10, W14 are zero padding.
        let w16 = small_sigma0(tail[1]).wrapping_add(tail[0]);
        let w17 = small_sigma1(LEN_HEADER_BITS)
            .wrapping_add(small_sigma0(tail[2]))
            .wrapping_add(tail[1]);
        Precomputed {
            state4: s,
            w16,
            w17,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_matches_sha2_compress() {
        let block: [u8; 64] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            w[i] = schedule_word(&w, i);
        }
        let mut s = IV;
        for i in 0..64 {
            round(&mut s, K[i].wrapping_add(w[i]));
        }
        for (x, iv) in s.iter_mut().zip(IV) {
            *x = x.wrapping_add(iv);
        }
        let mut expect = IV;
        compress(&mut expect, &block);
        assert_eq!(s, expect);
    }

    #[test]
    fn precomputed_matches_full_rounds() {
        let mid = [1u32, 2, 3, 4, 5, 6, 7, 8].map(|x: u32| x.wrapping_mul(0x9e37_79b9));
        let tail = [0xdead_beef, 0x0123_4567, 0x89ab_cdef];
        let nonce_word = 0x5a5a_1234u32;
        let p = Precomputed::new(&mid, &tail);
        let mut w = [0u32; 64];
        w[..3].copy_from_slice(&tail);
        w[3] = nonce_word;
        w[4] = PAD_BIT;
        w[15] = LEN_HEADER_BITS;
        for i in 16..18 {
            w[i] = schedule_word(&w, i);
        }
        assert_eq!((p.w16, p.w17), (w[16], w[17]));
        let mut s = mid;
        for i in 0..4 {
            round(&mut s, K[i].wrapping_add(w[i]));
        }
        let mut q = p.state4;
        q[0] = q[0].wrapping_add(nonce_word);
        q[4] = q[4].wrapping_add(nonce_word);
        assert_eq!(q, s);
    }
}
