//! ARMv8 backend: the SHA-2 crypto extension (`SHA256H`, `SHA256H2`,
//! `SHA256SU0`, `SHA256SU1`), two nonces interleaved.
//!
//! Each instruction does four rounds (or four schedule words) of one hash,
//! with a latency of several cycles; hashing two independent nonces side by
//! side keeps the pipeline busy. Mining shortcuts, as in the x86 kernels:
//!
//! * the first hash starts at round 4 from the per-header
//!   [`Precomputed`](crate::sha256::Precomputed) state (the nonce enters
//!   `a` and `e` linearly), which is exactly one four-round step;
//! * four-round steps whose message words are constant padding (first hash
//!   4..=15, second hash 8..=15) use precomputed `K + W` vectors;
//! * the second hash's last step only runs `SHA256H2`: its output holds the
//!   final `h`, which decides the hash's top word. Only nonces whose top word
//!   can still meet the target are re-hashed by the portable scanner, which
//!   checks them exactly.

use core::arch::aarch64::{
    uint32x4_t, vaddq_u32, vdupq_n_u32, vgetq_lane_u32, vsetq_lane_u32, vsha256h2q_u32,
    vsha256hq_u32, vsha256su0q_u32, vsha256su1q_u32,
};

use crate::backend::{Backend, Prepared};
use crate::sha256::{IV, K, LEN_DIGEST_BITS, LEN_HEADER_BITS, PAD_BIT};

/// Nonces hashed side by side.
const LANES: usize = 2;

/// ARMv8 SHA-2 SHA-256d scanner hashing two nonces interleaved.
///
/// Construct it with [`ArmSha2x2::new`] to learn whether the CPU supports it;
/// [`Backend::scan`] re-checks (one cached load) and falls back to the
/// portable scanner on a CPU without the SHA-2 extension, so it is never
/// unsound to call.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArmSha2x2;

/// Whether this CPU has the ARMv8 SHA-2 instructions (detected at run time,
/// cached by the standard library).
pub fn is_supported() -> bool {
    std::arch::is_aarch64_feature_detected!("sha2")
}

impl ArmSha2x2 {
    /// The backend, if the CPU has the SHA-2 extension.
    pub fn new() -> Option<Self> {
        is_supported().then_some(ArmSha2x2)
    }
}

impl Backend for ArmSha2x2 {
    fn name(&self) -> &'static str {
        "armv8-sha2-x2"
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        if is_supported() {
            // SAFETY: `scan_sha2` only requires the `sha2` target feature
            // (which implies `neon`), just detected on this CPU.
            unsafe { scan_sha2(job, start, count, found) }
        } else {
            crate::scalar::Scalar.scan(job, start, count, found);
        }
    }
}

type V = uint32x4_t;

/// A vector from four words (lane 0 first). Constant arguments fold into a
/// constant vector.
#[inline]
#[target_feature(enable = "sha2")]
fn v4(x: [u32; 4]) -> V {
    let [a, b, c, d] = x;
    let v = vsetq_lane_u32::<0>(a, vdupq_n_u32(0));
    let v = vsetq_lane_u32::<1>(b, v);
    let v = vsetq_lane_u32::<2>(c, v);
    vsetq_lane_u32::<3>(d, v)
}

/// `K[4q .. 4q + 4]` as a vector.
#[inline]
#[target_feature(enable = "sha2")]
fn kq(q: usize) -> V {
    v4([K[4 * q], K[4 * q + 1], K[4 * q + 2], K[4 * q + 3]])
}

/// Per-scan constants, as vectors.
struct Consts {
    /// State after the first hash's rounds 0..=3 with nonce word 0.
    abcd4: V,
    efgh4: V,
    /// The first hash's message words 0..=2 (word 3 is the nonce).
    msg0: V,
    mid_abcd: V,
    mid_efgh: V,
}

/// Four rounds on both lanes: `abcd, efgh` advance by message+constant `wk`.
#[inline]
#[target_feature(enable = "sha2")]
fn quad(abcd: &mut [V; LANES], efgh: &mut [V; LANES], wk: [V; LANES]) {
    for l in 0..LANES {
        let old = abcd[l];
        abcd[l] = vsha256hq_u32(abcd[l], efgh[l], wk[l]);
        efgh[l] = vsha256h2q_u32(efgh[l], old, wk[l]);
    }
}

/// The same constant `K + W` for both lanes.
#[inline]
#[target_feature(enable = "sha2")]
fn both(x: V) -> [V; LANES] {
    [x; LANES]
}

/// Next four schedule words from the previous sixteen (`m[0]` oldest),
/// replacing `m[0]`'s slot: `W[t..t+4]` from `W[t-16..t]`.
#[inline]
#[target_feature(enable = "sha2")]
fn next(m0: V, m1: V, m2: V, m3: V) -> V {
    vsha256su1q_u32(vsha256su0q_u32(m0, m1), m2, m3)
}

/// Schedules words `4q..4q+4` into `m[q % 4]` and runs rounds `4q..4q+4`
/// (for both lanes), for each literal `q`.
macro_rules! sched_quads {
    ($abcd:ident, $efgh:ident, $m:ident; $($q:literal)*) => {$(
        for l in 0..LANES {
            $m[l][$q % 4] = next(
                $m[l][$q % 4],
                $m[l][($q + 1) % 4],
                $m[l][($q + 2) % 4],
                $m[l][($q + 3) % 4],
            );
        }
        let k = kq($q);
        quad(&mut $abcd, &mut $efgh, [vaddq_u32($m[0][$q % 4], k), vaddq_u32($m[1][$q % 4], k)]);
    )*};
}

/// SHA-256d of the two nonce message words `nw` up to what decides the top
/// word: returns, per lane, the final state word 7 (`IV[7] + h` after round
/// 63).
#[inline]
#[target_feature(enable = "sha2")]
fn top_words(c: &Consts, nw: [u32; LANES]) -> [u32; LANES] {
    let zero = vdupq_n_u32(0);
    // First hash, second block, from round 4: a and e get the nonce word.
    let mut abcd = [zero; LANES];
    let mut efgh = [zero; LANES];
    let mut m = [[zero; 4]; LANES];
    let pad1 = v4([PAD_BIT, 0, 0, 0]);
    let len1 = v4([0, 0, 0, LEN_HEADER_BITS]);
    for l in 0..LANES {
        let n = vsetq_lane_u32::<0>(nw[l], zero);
        abcd[l] = vaddq_u32(c.abcd4, n);
        efgh[l] = vaddq_u32(c.efgh4, n);
        m[l] = [vsetq_lane_u32::<3>(nw[l], c.msg0), pad1, zero, len1];
    }
    quad(&mut abcd, &mut efgh, both(vaddq_u32(kq(1), pad1)));
    quad(&mut abcd, &mut efgh, both(kq(2)));
    quad(&mut abcd, &mut efgh, both(vaddq_u32(kq(3), len1)));
    sched_quads!(abcd, efgh, m; 4 5 6 7 8 9 10 11 12 13 14 15);

    // Second hash: message = first digest, then fixed padding.
    let pad2 = v4([PAD_BIT, 0, 0, 0]);
    let len2 = v4([0, 0, 0, LEN_DIGEST_BITS]);
    let iv_abcd = v4([IV[0], IV[1], IV[2], IV[3]]);
    let iv_efgh = v4([IV[4], IV[5], IV[6], IV[7]]);
    for l in 0..LANES {
        m[l] = [
            vaddq_u32(abcd[l], c.mid_abcd),
            vaddq_u32(efgh[l], c.mid_efgh),
            pad2,
            len2,
        ];
    }
    let mut abcd = [iv_abcd; LANES];
    let mut efgh = [iv_efgh; LANES];
    let (k0, k1) = (kq(0), kq(1));
    quad(
        &mut abcd,
        &mut efgh,
        [vaddq_u32(m[0][0], k0), vaddq_u32(m[1][0], k0)],
    );
    quad(
        &mut abcd,
        &mut efgh,
        [vaddq_u32(m[0][1], k1), vaddq_u32(m[1][1], k1)],
    );
    quad(&mut abcd, &mut efgh, both(vaddq_u32(kq(2), pad2)));
    quad(&mut abcd, &mut efgh, both(vaddq_u32(kq(3), len2)));
    sched_quads!(abcd, efgh, m; 4 5 6 7 8 9 10 11 12 13 14);
    // Rounds 60..=63: only the e..h half is needed; its lane 3 is the final h.
    let k = kq(15);
    let mut top = [0u32; LANES];
    for l in 0..LANES {
        let w = next(m[l][3], m[l][0], m[l][1], m[l][2]);
        let e = vsha256h2q_u32(efgh[l], abcd[l], vaddq_u32(w, k));
        top[l] = vgetq_lane_u32::<3>(e).wrapping_add(IV[7]);
    }
    top
}

/// The scan loop: two nonces per step; an odd last nonce runs in both lanes.
#[target_feature(enable = "sha2")]
fn scan_sha2(job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
    let pre = job.precompute();
    let s = pre.state4;
    let m = &job.midstate;
    let c = Consts {
        abcd4: v4([s[0], s[1], s[2], s[3]]),
        efgh4: v4([s[4], s[5], s[6], s[7]]),
        msg0: v4([job.tail[0], job.tail[1], job.tail[2], 0]),
        mid_abcd: v4([m[0], m[1], m[2], m[3]]),
        mid_efgh: v4([m[4], m[5], m[6], m[7]]),
    };
    let target_top = job.target_top();
    let total = u64::from(count);
    let mut done = 0u64;
    while done < total {
        // `start + done <= u32::MAX` (caller guarantees `start + count <=
        // 2^32`); the second nonce is clamped to the range.
        let first = start.wrapping_add(done as u32);
        let pair = if total - done >= 2 { 2 } else { 1 };
        let second = first.wrapping_add(pair - 1);
        let nonces = [first, second];
        let top = top_words(&c, nonces.map(Prepared::nonce_word));
        for (&t, &nonce) in top.iter().zip(&nonces).take(pair as usize) {
            if t.swap_bytes() <= target_top {
                // Rare: hash this nonce exactly with the portable scanner.
                crate::scalar::Scalar.scan(job, nonce, 1, found);
            }
        }
        done += u64::from(pair);
    }
}
