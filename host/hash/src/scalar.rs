//! Portable fallback: correct everywhere, with the standard mining shortcuts.
//!
//! Per nonce it starts the first hash at round 4 from the per-header
//! [`Precomputed`] state, reuses the fixed schedule words, builds the second
//! hash's block from the state plus constant padding, and stops the second
//! hash after round 60 when the hash's top word already misses the target.

use crate::backend::{Backend, Prepared};
use crate::sha256::{
    IV, K, LEN_DIGEST_BITS, LEN_HEADER_BITS, PAD_BIT, Precomputed, round, schedule_word,
};

/// Plain-Rust SHA-256d nonce scanner (one nonce at a time).
pub struct Scalar;

/// Whether the top word of a hash whose pre-final `h` (before adding IV[7])
/// is `h_pre` can still meet a target whose top word is `target_top`.
#[inline(always)]
pub(crate) fn top_may_meet(h_pre: u32, target_top: u32) -> bool {
    h_pre.wrapping_add(IV[7]).swap_bytes() <= target_top
}

/// Hashes one nonce and returns the final state if the hash may meet the
/// target (then the caller compares exactly), or `None` if its top word
/// already exceeds `target_top`.
#[inline(always)]
fn hash_nonce(job: &Prepared, pre: &Precomputed, nonce: u32, target_top: u32) -> Option<[u32; 8]> {
    let nw = Prepared::nonce_word(nonce);
    // First hash, second block: rounds 0..=3 come precomputed.
    let mut w = [0u32; 64];
    w[0] = job.tail[0];
    w[1] = job.tail[1];
    w[2] = job.tail[2];
    w[3] = nw;
    w[4] = PAD_BIT;
    w[15] = LEN_HEADER_BITS;
    w[16] = pre.w16;
    w[17] = pre.w17;
    for i in 18..64 {
        w[i] = schedule_word(&w, i);
    }
    let mut s = pre.state4;
    s[0] = s[0].wrapping_add(nw);
    s[4] = s[4].wrapping_add(nw);
    for i in 4..64 {
        round(&mut s, K[i].wrapping_add(w[i]));
    }
    // Second hash: the first digest plus fixed padding.
    let mut w2 = [0u32; 64];
    for i in 0..8 {
        w2[i] = s[i].wrapping_add(job.midstate[i]);
    }
    w2[8] = PAD_BIT;
    w2[15] = LEN_DIGEST_BITS;
    for i in 16..64 {
        w2[i] = schedule_word(&w2, i);
    }
    let mut t = IV;
    for i in 0..61 {
        round(&mut t, K[i].wrapping_add(w2[i]));
    }
    // After round 60, e becomes the final h (e -> f -> g -> h in 3 rounds).
    if !top_may_meet(t[4], target_top) {
        return None;
    }
    for i in 61..64 {
        round(&mut t, K[i].wrapping_add(w2[i]));
    }
    for (x, iv) in t.iter_mut().zip(IV) {
        *x = x.wrapping_add(iv);
    }
    Some(t)
}

impl Backend for Scalar {
    fn name(&self) -> &'static str {
        "scalar"
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        let pre = job.precompute();
        let top = job.target_top();
        for i in 0..count {
            let nonce = start.wrapping_add(i);
            if let Some(state) = hash_nonce(job, &pre, nonce, top)
                && job.meets(&state)
            {
                found(nonce);
            }
        }
    }
}
