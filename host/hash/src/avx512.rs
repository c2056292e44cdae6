//! AVX-512 backend: sixteen nonces at a time, one per 32-bit lane of a
//! `__m512i`.
//!
//! Same kernel shape as the AVX2 backend ([`crate::avx2`], whose per-scan
//! constants and candidate check it shares): the first hash starts at round
//! 4, constant padding words fold into the round constants, and the second
//! hash stops after round 60, whose `e` decides the hash's top word; only
//! lanes whose top word can still meet the target are re-hashed in full and
//! checked exactly.
//!
//! AVX-512F makes each step cheaper than AVX2: `vprold` rotates in one
//! instruction and `vpternlogd` computes Ch, Maj and three-way XORs in one.
//! Only AVX-512F is required (the byte swap is built from rotates).

use core::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_cmple_epu32_mask, _mm512_ror_epi32, _mm512_set1_epi32,
    _mm512_setr_epi32, _mm512_srli_epi32, _mm512_ternarylogic_epi32,
};

use crate::avx2::{
    Consts, KW_FIRST, KW_SECOND, S0_LEN1, S0_LEN2, S0_PAD, S1_LEN2, SECOND_R0, verify,
};
use crate::backend::{Backend, Prepared};
use crate::sha256::{IV, K, LEN_DIGEST_BITS, LEN_HEADER_BITS, PAD_BIT};

/// Number of nonces hashed per kernel call.
const LANES: u32 = 16;

/// AVX-512 SHA-256d scanner hashing sixteen nonces per step.
///
/// Construct it with [`Avx512x16::new`] to learn whether the CPU supports it;
/// [`Backend::scan`] re-checks (one cached load) and falls back to the
/// portable scanner on a CPU without AVX-512F, so it is never unsound to call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512x16;

/// Whether this CPU can run the AVX-512 kernel (AVX-512F, detected at run
/// time and cached by the standard library).
pub fn is_supported() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

impl Avx512x16 {
    /// The backend, if the CPU supports AVX-512F.
    pub fn new() -> Option<Self> {
        is_supported().then_some(Avx512x16)
    }
}

impl Backend for Avx512x16 {
    fn name(&self) -> &'static str {
        "avx512-x16"
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        if is_supported() {
            // SAFETY: `scan_avx512` only requires the `avx512f` target
            // feature, which was just detected on this CPU.
            unsafe { scan_avx512(job, start, count, found) }
        } else {
            crate::scalar::Scalar.scan(job, start, count, found);
        }
    }
}

// Lane primitives. All are safe `#[target_feature]` functions: callable
// without `unsafe` from the AVX-512 kernel below, which has the same feature.

type V = __m512i;

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(x: u32) -> V {
    _mm512_set1_epi32(x as i32)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn add(a: V, b: V) -> V {
    _mm512_add_epi32(a, b)
}

/// `a ^ b ^ c` (truth table 0x96).
#[inline]
#[target_feature(enable = "avx512f")]
fn xor3(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<0x96>(a, b, c)
}

/// `if a { b } else { c }` per bit (truth table 0xca): Ch(e, f, g).
#[inline]
#[target_feature(enable = "avx512f")]
fn select(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<0xca>(a, b, c)
}

/// Majority of three per bit (truth table 0xe8): Maj(a, b, c).
#[inline]
#[target_feature(enable = "avx512f")]
fn maj(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<0xe8>(a, b, c)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn bsig0(a: V) -> V {
    xor3(
        _mm512_ror_epi32::<2>(a),
        _mm512_ror_epi32::<13>(a),
        _mm512_ror_epi32::<22>(a),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
fn bsig1(e: V) -> V {
    xor3(
        _mm512_ror_epi32::<6>(e),
        _mm512_ror_epi32::<11>(e),
        _mm512_ror_epi32::<25>(e),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ssig0(w: V) -> V {
    xor3(
        _mm512_ror_epi32::<7>(w),
        _mm512_ror_epi32::<18>(w),
        _mm512_srli_epi32::<3>(w),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ssig1(w: V) -> V {
    xor3(
        _mm512_ror_epi32::<17>(w),
        _mm512_ror_epi32::<19>(w),
        _mm512_srli_epi32::<10>(w),
    )
}

/// Byte swap of every lane: rotating by 8 puts bytes 0 and 2 in place,
/// rotating by 24 bytes 1 and 3; a bitwise select merges them.
#[inline]
#[target_feature(enable = "avx512f")]
fn bswap(x: V) -> V {
    select(
        splat(0xff00_ff00),
        _mm512_ror_epi32::<8>(x),
        _mm512_ror_epi32::<24>(x),
    )
}

/// One round on state `s` (a..h) with `kw = K + W`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round(s: [V; 8], kw: V) -> [V; 8] {
    let [a, b, c, d, e, f, g, h] = s;
    let t1 = add(add(add(h, bsig1(e)), select(e, f, g)), kw);
    let t2 = add(bsig0(a), maj(a, b, c));
    [add(t1, t2), a, b, c, add(d, t1), e, f, g]
}

/// `w[t] = σ1(w[t-2]) + w[t-7] + σ0(w[t-15]) + w[t-16]`, then round `t`.
/// The index lists are literal so every array access is a constant index and
/// the schedule stays in registers.
macro_rules! sched_rounds {
    ($s:ident, $w:ident; $($t:literal)*) => {$(
        $w[$t] = add(
            add(ssig1($w[$t - 2]), $w[$t - 7]),
            add(ssig0($w[$t - 15]), $w[$t - 16]),
        );
        $s = round($s, add($w[$t], splat(K[$t])));
    )*};
}

/// Rounds with a message word already in `w`.
macro_rules! rounds_w {
    ($s:ident, $w:ident; $($t:literal)*) => {$(
        $s = round($s, add($w[$t], splat(K[$t])));
    )*};
}

/// Rounds whose `K + W` is the constant `$kw[t]`.
macro_rules! rounds_const {
    ($s:ident, $kw:ident; $($t:literal)*) => {$(
        $s = round($s, splat($kw[$t]));
    )*};
}

/// Hashes the sixteen nonces `nonces` and returns a bit mask of the lanes
/// whose hash's top word, `(IV[7] + e after round 60).swap_bytes()`, is at
/// most `target_top`.
#[inline]
#[target_feature(enable = "avx512f")]
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
    rounds_const!(s, KW_FIRST; 4 5 6 7 8 9 10 11 12 13 14 15);
    s = round(s, splat(c.kw16));
    s = round(s, splat(c.kw17));

    // Schedule words 18..=33 have constant or zero inputs; the rest is generic.
    let mut w = [zero; 64];
    let w16 = splat(c.pre.w16);
    let w17 = splat(c.pre.w17);
    w[18] = add(splat(c.c18), ssig0(w3));
    rounds_w!(s, w; 18);
    w[19] = add(splat(c.c19), w3);
    rounds_w!(s, w; 19);
    w[20] = add(ssig1(w[18]), splat(PAD_BIT));
    rounds_w!(s, w; 20);
    w[21] = ssig1(w[19]);
    rounds_w!(s, w; 21);
    w[22] = add(ssig1(w[20]), splat(LEN_HEADER_BITS));
    rounds_w!(s, w; 22);
    w[23] = add(ssig1(w[21]), w16);
    rounds_w!(s, w; 23);
    w[24] = add(ssig1(w[22]), w17);
    rounds_w!(s, w; 24);
    w[25] = add(ssig1(w[23]), w[18]);
    rounds_w!(s, w; 25);
    w[26] = add(ssig1(w[24]), w[19]);
    rounds_w!(s, w; 26);
    w[27] = add(ssig1(w[25]), w[20]);
    rounds_w!(s, w; 27);
    w[28] = add(ssig1(w[26]), w[21]);
    rounds_w!(s, w; 28);
    w[29] = add(ssig1(w[27]), w[22]);
    rounds_w!(s, w; 29);
    w[30] = add(add(ssig1(w[28]), w[23]), splat(S0_LEN1));
    rounds_w!(s, w; 30);
    w[31] = add(add(ssig1(w[29]), w[24]), splat(c.c31));
    rounds_w!(s, w; 31);
    w[32] = add(add(ssig1(w[30]), w[25]), splat(c.c32));
    rounds_w!(s, w; 32);
    w[33] = add(add(ssig1(w[31]), w[26]), add(ssig0(w[18]), w17));
    rounds_w!(s, w; 33);
    sched_rounds!(s, w; 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49
        50 51 52 53 54 55 56 57 58 59 60 61 62 63);

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
    rounds_w!(s, w; 1 2 3 4 5 6 7);
    rounds_const!(s, KW_SECOND; 8 9 10 11 12 13 14 15);
    w[16] = add(ssig0(w[1]), w[0]);
    rounds_w!(s, w; 16);
    w[17] = add(add(ssig0(w[2]), w[1]), splat(S1_LEN2));
    rounds_w!(s, w; 17);
    w[18] = add(add(ssig1(w[16]), ssig0(w[3])), w[2]);
    rounds_w!(s, w; 18);
    w[19] = add(add(ssig1(w[17]), ssig0(w[4])), w[3]);
    rounds_w!(s, w; 19);
    w[20] = add(add(ssig1(w[18]), ssig0(w[5])), w[4]);
    rounds_w!(s, w; 20);
    w[21] = add(add(ssig1(w[19]), ssig0(w[6])), w[5]);
    rounds_w!(s, w; 21);
    w[22] = add(
        add(ssig1(w[20]), ssig0(w[7])),
        add(w[6], splat(LEN_DIGEST_BITS)),
    );
    rounds_w!(s, w; 22);
    w[23] = add(add(ssig1(w[21]), w[16]), add(w[7], splat(S0_PAD)));
    rounds_w!(s, w; 23);
    w[24] = add(add(ssig1(w[22]), w[17]), splat(PAD_BIT));
    rounds_w!(s, w; 24);
    w[25] = add(ssig1(w[23]), w[18]);
    rounds_w!(s, w; 25);
    w[26] = add(ssig1(w[24]), w[19]);
    rounds_w!(s, w; 26);
    w[27] = add(ssig1(w[25]), w[20]);
    rounds_w!(s, w; 27);
    w[28] = add(ssig1(w[26]), w[21]);
    rounds_w!(s, w; 28);
    w[29] = add(ssig1(w[27]), w[22]);
    rounds_w!(s, w; 29);
    w[30] = add(add(ssig1(w[28]), w[23]), splat(S0_LEN2));
    rounds_w!(s, w; 30);
    w[31] = add(
        add(ssig1(w[29]), w[24]),
        add(ssig0(w[16]), splat(LEN_DIGEST_BITS)),
    );
    rounds_w!(s, w; 31);
    // Round 60 is the last needed: its new e is the final h before IV[7].
    // The compiler drops the unused a/T2 work of rounds 57..=60.
    sched_rounds!(s, w; 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
        48 49 50 51 52 53 54 55 56 57 58 59 60);

    let top = bswap(add(s[4], splat(IV[7])));
    u32::from(_mm512_cmple_epu32_mask(top, target_top))
}

/// The AVX-512 scan loop: sixteen nonces per step, the last step masked to
/// the range.
#[target_feature(enable = "avx512f")]
fn scan_avx512(job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
    let c = Consts::new(job);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
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
