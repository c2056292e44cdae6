//! AVX2 backend: eight nonces at a time, one per 32-bit lane of a `__m256i`.
//!
//! For x86-64 CPUs without AVX-512 or SHA-NI. The kernel uses the usual
//! mining shortcuts:
//!
//! * the first hash starts at round 4 from the per-header
//!   [`Precomputed`] state (rounds 0..=2 and the nonce-free part of round 3);
//! * message words that are constant padding (first hash 4..=15, second hash
//!   8..=15) fold into the round constants, and schedule words 16, 17 and the
//!   nonce-free parts of 18, 19, 31, 32 of the first hash come precomputed;
//! * the second hash stops after round 60: its `e` then is what becomes the
//!   final `h` three rounds later, so it decides the hash's top word. Only
//!   lanes whose top word can still meet the target are re-hashed in full
//!   (scalar, rare) and checked exactly with [`Prepared::meets`].
//!
//! AVX2 has no vector rotate, so rotates are two shifts and an OR.

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32,
    _mm256_max_epu32, _mm256_movemask_ps, _mm256_or_si256, _mm256_set1_epi32, _mm256_setr_epi8,
    _mm256_setr_epi32, _mm256_shuffle_epi8, _mm256_slli_epi32, _mm256_srli_epi32, _mm256_xor_si256,
};

use crate::backend::{Backend, Prepared};
use crate::sha256::{IV, K, LEN_DIGEST_BITS, LEN_HEADER_BITS, PAD_BIT, Precomputed};

/// σ0 of the message schedule (`const` so the padding terms fold at compile time).
const fn small_sigma0(w: u32) -> u32 {
    w.rotate_right(7) ^ w.rotate_right(18) ^ (w >> 3)
}

/// σ1 of the message schedule.
const fn small_sigma1(w: u32) -> u32 {
    w.rotate_right(17) ^ w.rotate_right(19) ^ (w >> 10)
}

/// Σ0 of the round function.
const fn big_sigma0(a: u32) -> u32 {
    a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22)
}

/// Σ1 of the round function.
const fn big_sigma1(e: u32) -> u32 {
    e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25)
}

/// Number of nonces hashed per kernel call.
const LANES: u32 = 8;

/// AVX2 SHA-256d scanner hashing eight nonces per step.
///
/// Construct it with [`Avx2x8::new`] to learn whether the CPU supports it;
/// [`Backend::scan`] re-checks (one cached load) and falls back to the
/// portable scanner on a CPU without AVX2, so it is never unsound to call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx2x8;

/// Whether this CPU can run the AVX2 kernel (detected at run time, cached by
/// the standard library).
pub fn is_supported() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

impl Avx2x8 {
    /// The backend, if the CPU supports AVX2.
    pub fn new() -> Option<Self> {
        is_supported().then_some(Avx2x8)
    }
}

impl Backend for Avx2x8 {
    fn name(&self) -> &'static str {
        "avx2-x8"
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        if is_supported() {
            // SAFETY: `scan_avx2` only requires the `avx2` target feature,
            // which was just detected on this CPU.
            unsafe { scan_avx2(job, start, count, found) }
        } else {
            crate::scalar::Scalar.scan(job, start, count, found);
        }
    }
}

/// Per-scan constants beyond [`Precomputed`]: the nonce-free parts of the
/// first hash's schedule words 18, 19, 31 and 32 and `K + W` of rounds 16, 17.
pub(crate) struct Consts {
    pub(crate) pre: Precomputed,
    pub(crate) kw16: u32,
    pub(crate) kw17: u32,
    /// W18 = c18 + σ0(W3).
    pub(crate) c18: u32,
    /// W19 = c19 + W3.
    pub(crate) c19: u32,
    /// W31 = σ1(W29) + W24 + c31.
    pub(crate) c31: u32,
    /// W32 = σ1(W30) + W25 + c32.
    pub(crate) c32: u32,
}

impl Consts {
    pub(crate) fn new(job: &Prepared) -> Self {
        let pre = job.precompute();
        let (w16, w17) = (pre.w16, pre.w17);
        Consts {
            kw16: K[16].wrapping_add(w16),
            kw17: K[17].wrapping_add(w17),
            c18: small_sigma1(w16).wrapping_add(job.tail[2]),
            c19: small_sigma1(w17).wrapping_add(small_sigma0(PAD_BIT)),
            c31: small_sigma0(w16).wrapping_add(LEN_HEADER_BITS),
            c32: small_sigma0(w17).wrapping_add(w16),
            pre,
        }
    }
}

/// `K[i] + W[i]` of the first hash's rounds 4..=15, whose message words are
/// fixed padding (index 0..=3 unused).
pub(crate) const KW_FIRST: [u32; 16] = {
    let mut kw = [0u32; 16];
    let mut i = 4;
    while i < 16 {
        kw[i] = K[i];
        i += 1;
    }
    kw[4] = K[4].wrapping_add(PAD_BIT);
    kw[15] = K[15].wrapping_add(LEN_HEADER_BITS);
    kw
};

/// `K[i] + W[i]` of the second hash's rounds 8..=15 (fixed padding; index
/// 0..=7 unused).
pub(crate) const KW_SECOND: [u32; 16] = {
    let mut kw = [0u32; 16];
    let mut i = 8;
    while i < 16 {
        kw[i] = K[i];
        i += 1;
    }
    kw[8] = K[8].wrapping_add(PAD_BIT);
    kw[15] = K[15].wrapping_add(LEN_DIGEST_BITS);
    kw
};

/// Round 0 of the second hash starts from the constant IV, so everything but
/// the message word is constant: after it, `a = SECOND_R0_A + W0` and
/// `e = SECOND_R0_E + W0`.
pub(crate) const SECOND_R0: (u32, u32) = {
    let [a, b, c, d, e, f, g, h] = IV;
    let t1 = h
        .wrapping_add(big_sigma1(e))
        .wrapping_add((e & f) ^ (!e & g))
        .wrapping_add(K[0]);
    let t2 = big_sigma0(a).wrapping_add((a & b) ^ (a & c) ^ (b & c));
    (t1.wrapping_add(t2), d.wrapping_add(t1))
};

/// Padding terms of the schedules: σ0(PAD_BIT) enters the second hash's
/// word 23, σ0(256) its word 30, σ1(256) its word 17; σ0(640) the first
/// hash's word 30.
pub(crate) const S0_PAD: u32 = small_sigma0(PAD_BIT);
pub(crate) const S0_LEN2: u32 = small_sigma0(LEN_DIGEST_BITS);
pub(crate) const S1_LEN2: u32 = small_sigma1(LEN_DIGEST_BITS);
pub(crate) const S0_LEN1: u32 = small_sigma0(LEN_HEADER_BITS);

// Lane primitives. All are safe `#[target_feature]` functions: callable
// without `unsafe` from the AVX2 kernel below, which has the same feature.

type V = __m256i;

#[inline]
#[target_feature(enable = "avx2")]
fn splat(x: u32) -> V {
    _mm256_set1_epi32(x as i32)
}

#[inline]
#[target_feature(enable = "avx2")]
fn add(a: V, b: V) -> V {
    _mm256_add_epi32(a, b)
}

#[inline]
#[target_feature(enable = "avx2")]
fn xor(a: V, b: V) -> V {
    _mm256_xor_si256(a, b)
}

#[inline]
#[target_feature(enable = "avx2")]
fn and(a: V, b: V) -> V {
    _mm256_and_si256(a, b)
}

/// Rotate right by `R`; `L` must be `32 - R` (stable Rust cannot compute it).
#[inline]
#[target_feature(enable = "avx2")]
fn ror<const R: i32, const L: i32>(x: V) -> V {
    _mm256_or_si256(_mm256_srli_epi32::<R>(x), _mm256_slli_epi32::<L>(x))
}

#[inline]
#[target_feature(enable = "avx2")]
fn bsig0(a: V) -> V {
    xor(xor(ror::<2, 30>(a), ror::<13, 19>(a)), ror::<22, 10>(a))
}

#[inline]
#[target_feature(enable = "avx2")]
fn bsig1(e: V) -> V {
    xor(xor(ror::<6, 26>(e), ror::<11, 21>(e)), ror::<25, 7>(e))
}

#[inline]
#[target_feature(enable = "avx2")]
fn ssig0(w: V) -> V {
    xor(
        xor(ror::<7, 25>(w), ror::<18, 14>(w)),
        _mm256_srli_epi32::<3>(w),
    )
}

#[inline]
#[target_feature(enable = "avx2")]
fn ssig1(w: V) -> V {
    xor(
        xor(ror::<17, 15>(w), ror::<19, 13>(w)),
        _mm256_srli_epi32::<10>(w),
    )
}

/// Byte swap of every lane (big-endian message word of a little-endian nonce,
/// and the hash's top word for the target comparison).
#[inline]
#[target_feature(enable = "avx2")]
fn bswap(x: V) -> V {
    let m = _mm256_setr_epi8(
        3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8,
        15, 14, 13, 12,
    );
    _mm256_shuffle_epi8(x, m)
}

/// One round on state `s` (a..h) with `kw = K + W`. `bc` is `b ^ c` of this
/// round's input, which is `a ^ b` of the previous one: carrying it makes Maj
/// two operations, `((a ^ b) & (b ^ c)) ^ b`. Returns the new state and its
/// `b ^ c`.
#[inline]
#[target_feature(enable = "avx2")]
fn round(s: [V; 8], bc: V, kw: V) -> ([V; 8], V) {
    let [a, b, c, d, e, f, g, h] = s;
    let ch = xor(and(xor(f, g), e), g);
    let t1 = add(add(add(h, bsig1(e)), ch), kw);
    let ab = xor(a, b);
    let maj = xor(and(ab, bc), b);
    let t2 = add(bsig0(a), maj);
    ([add(t1, t2), a, b, c, add(d, t1), e, f, g], ab)
}

/// `w[t] = σ1(w[t-2]) + w[t-7] + σ0(w[t-15]) + w[t-16]`, then round `t`.
/// The index lists are literal so every array access is a constant index and
/// the schedule stays in registers.
macro_rules! sched_rounds {
    ($s:ident, $bc:ident, $w:ident; $($t:literal)*) => {$(
        $w[$t] = add(
            add(ssig1($w[$t - 2]), $w[$t - 7]),
            add(ssig0($w[$t - 15]), $w[$t - 16]),
        );
        ($s, $bc) = round($s, $bc, add($w[$t], splat(K[$t])));
    )*};
}

/// Rounds with a message word already in `w`.
macro_rules! rounds_w {
    ($s:ident, $bc:ident, $w:ident; $($t:literal)*) => {$(
        ($s, $bc) = round($s, $bc, add($w[$t], splat(K[$t])));
    )*};
}

/// Rounds whose `K + W` is the constant `$kw[t]`.
macro_rules! rounds_const {
    ($s:ident, $bc:ident, $kw:ident; $($t:literal)*) => {$(
        ($s, $bc) = round($s, $bc, splat($kw[$t]));
    )*};
}

/// Hashes the eight nonces `nonces` and returns a bit mask of the lanes
/// whose hash's top word, `(IV[7] + e after round 60).swap_bytes()`, is at
/// most `target_top`.
#[inline]
#[target_feature(enable = "avx2")]
fn candidates(c: &Consts, midstate: &[u32; 8], nonces: V, target_top: V) -> u32 {
    let zero = splat(0);
    let p = &c.pre.state4;

    // First hash, second block. State after round 3 = precomputed + W3 in a, e.
    let w3 = bswap(nonces);
    let mut s = [
        add(splat(p[0]), w3),
        splat(p[1]),
        splat(p[2]),
        splat(p[3]),
        add(splat(p[4]), w3),
        splat(p[5]),
        splat(p[6]),
        splat(p[7]),
    ];
    let mut bc = xor(s[1], s[2]);
    rounds_const!(s, bc, KW_FIRST; 4 5 6 7 8 9 10 11 12 13 14 15);
    (s, bc) = round(s, bc, splat(c.kw16));
    (s, bc) = round(s, bc, splat(c.kw17));

    // Schedule words 18..=33 have constant or zero inputs; the rest is generic.
    let mut w = [zero; 64];
    let w16 = splat(c.pre.w16);
    let w17 = splat(c.pre.w17);
    w[18] = add(splat(c.c18), ssig0(w3));
    rounds_w!(s, bc, w; 18);
    w[19] = add(splat(c.c19), w3);
    rounds_w!(s, bc, w; 19);
    w[20] = add(ssig1(w[18]), splat(PAD_BIT));
    rounds_w!(s, bc, w; 20);
    w[21] = ssig1(w[19]);
    rounds_w!(s, bc, w; 21);
    w[22] = add(ssig1(w[20]), splat(LEN_HEADER_BITS));
    rounds_w!(s, bc, w; 22);
    w[23] = add(ssig1(w[21]), w16);
    rounds_w!(s, bc, w; 23);
    w[24] = add(ssig1(w[22]), w17);
    rounds_w!(s, bc, w; 24);
    w[25] = add(ssig1(w[23]), w[18]);
    rounds_w!(s, bc, w; 25);
    w[26] = add(ssig1(w[24]), w[19]);
    rounds_w!(s, bc, w; 26);
    w[27] = add(ssig1(w[25]), w[20]);
    rounds_w!(s, bc, w; 27);
    w[28] = add(ssig1(w[26]), w[21]);
    rounds_w!(s, bc, w; 28);
    w[29] = add(ssig1(w[27]), w[22]);
    rounds_w!(s, bc, w; 29);
    w[30] = add(add(ssig1(w[28]), w[23]), splat(S0_LEN1));
    rounds_w!(s, bc, w; 30);
    w[31] = add(add(ssig1(w[29]), w[24]), splat(c.c31));
    rounds_w!(s, bc, w; 31);
    w[32] = add(add(ssig1(w[30]), w[25]), splat(c.c32));
    rounds_w!(s, bc, w; 32);
    w[33] = add(add(ssig1(w[31]), w[26]), add(ssig0(w[18]), w17));
    rounds_w!(s, bc, w; 33);
    sched_rounds!(s, bc, w; 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49
        50 51 52 53 54 55 56 57 58 59 60 61 62 63);
    let _ = bc; // the first hash's final b ^ c is not needed

    // Second hash: message = first digest, then fixed padding.
    let mut w = [zero; 64];
    for (i, (wi, si)) in w.iter_mut().zip(s).take(8).enumerate() {
        *wi = add(si, splat(midstate[i]));
    }
    let mut s = [
        add(splat(SECOND_R0.0), w[0]),
        splat(IV[0]),
        splat(IV[1]),
        splat(IV[2]),
        add(splat(SECOND_R0.1), w[0]),
        splat(IV[4]),
        splat(IV[5]),
        splat(IV[6]),
    ];
    let mut bc = xor(s[1], s[2]);
    rounds_w!(s, bc, w; 1 2 3 4 5 6 7);
    rounds_const!(s, bc, KW_SECOND; 8 9 10 11 12 13 14 15);
    w[16] = add(ssig0(w[1]), w[0]);
    rounds_w!(s, bc, w; 16);
    w[17] = add(add(ssig0(w[2]), w[1]), splat(S1_LEN2));
    rounds_w!(s, bc, w; 17);
    w[18] = add(add(ssig1(w[16]), ssig0(w[3])), w[2]);
    rounds_w!(s, bc, w; 18);
    w[19] = add(add(ssig1(w[17]), ssig0(w[4])), w[3]);
    rounds_w!(s, bc, w; 19);
    w[20] = add(add(ssig1(w[18]), ssig0(w[5])), w[4]);
    rounds_w!(s, bc, w; 20);
    w[21] = add(add(ssig1(w[19]), ssig0(w[6])), w[5]);
    rounds_w!(s, bc, w; 21);
    w[22] = add(
        add(ssig1(w[20]), ssig0(w[7])),
        add(w[6], splat(LEN_DIGEST_BITS)),
    );
    rounds_w!(s, bc, w; 22);
    w[23] = add(add(ssig1(w[21]), w[16]), add(w[7], splat(S0_PAD)));
    rounds_w!(s, bc, w; 23);
    w[24] = add(add(ssig1(w[22]), w[17]), splat(PAD_BIT));
    rounds_w!(s, bc, w; 24);
    w[25] = add(ssig1(w[23]), w[18]);
    rounds_w!(s, bc, w; 25);
    w[26] = add(ssig1(w[24]), w[19]);
    rounds_w!(s, bc, w; 26);
    w[27] = add(ssig1(w[25]), w[20]);
    rounds_w!(s, bc, w; 27);
    w[28] = add(ssig1(w[26]), w[21]);
    rounds_w!(s, bc, w; 28);
    w[29] = add(ssig1(w[27]), w[22]);
    rounds_w!(s, bc, w; 29);
    w[30] = add(add(ssig1(w[28]), w[23]), splat(S0_LEN2));
    rounds_w!(s, bc, w; 30);
    w[31] = add(
        add(ssig1(w[29]), w[24]),
        add(ssig0(w[16]), splat(LEN_DIGEST_BITS)),
    );
    rounds_w!(s, bc, w; 31);
    // Round 60 is the last needed: its new e is the final h before IV[7].
    // The compiler drops the unused a/T2 work of rounds 57..=60.
    sched_rounds!(s, bc, w; 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
        48 49 50 51 52 53 54 55 56 57 58 59 60);
    let _ = bc;

    let top = bswap(add(s[4], splat(IV[7])));
    // Unsigned top <= target_top  <=>  max(top, target_top) == target_top.
    let le = _mm256_cmpeq_epi32(_mm256_max_epu32(top, target_top), target_top);
    _mm256_movemask_ps(_mm256_castsi256_ps(le)) as u32
}

/// Full SHA-256d of one nonce with the portable compression function, checked
/// exactly against the target. Used only for the rare candidate lanes.
#[cold]
pub(crate) fn verify(job: &Prepared, nonce: u32) -> bool {
    let mut block = [0u8; 64];
    block[..12].copy_from_slice(&job.header[64..76]);
    block[12..16].copy_from_slice(&nonce.to_le_bytes());
    block[16] = 0x80;
    block[60..].copy_from_slice(&LEN_HEADER_BITS.to_be_bytes());
    let mut s = job.midstate;
    crate::sha256::compress(&mut s, &block);
    let mut second = [0u8; 64];
    for (chunk, word) in second.chunks_exact_mut(4).zip(s) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    second[32] = 0x80;
    second[60..].copy_from_slice(&LEN_DIGEST_BITS.to_be_bytes());
    let mut h = IV;
    crate::sha256::compress(&mut h, &second);
    job.meets(&h)
}

/// The AVX2 scan loop: eight nonces per step, the last step masked to the
/// range.
#[target_feature(enable = "avx2")]
fn scan_avx2(job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
    let c = Consts::new(job);
    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let target_top = splat(job.target_top());
    let total = u64::from(count);
    let mut done = 0u64;
    while done < total {
        // `start + done <= u32::MAX` because `done < count` and the caller
        // guarantees `start + count <= 2^32`; lanes past the range may wrap
        // but are masked off below.
        let base = start.wrapping_add(done as u32);
        let nonces = add(splat(base), iota);
        let mut mask = candidates(&c, &job.midstate, nonces, target_top);
        let left = total - done;
        if left < u64::from(LANES) {
            mask &= (1u32 << left) - 1;
        }
        while mask != 0 {
            let lane = mask.trailing_zeros();
            mask &= mask - 1;
            let nonce = base.wrapping_add(lane);
            if verify(job, nonce) {
                found(nonce);
            }
        }
        done += u64::from(LANES);
    }
}
