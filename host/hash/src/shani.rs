//! x86-64 SHA extensions (SHA-NI) backends.
//!
//! One `sha256rnds2` does two rounds for one message, but its latency is
//! several cycles, so a single message leaves the SHA unit mostly idle. These
//! kernels hash several nonces ("lanes") interleaved so their round chains
//! overlap. With AVX-512VL enabled LLVM may also use xmm16–31, which lets the
//! four-lane kernel keep every lane's state and schedule in registers.
//!
//! Mining shortcuts: the first hash starts at round 4 from the per-header
//! [`Precomputed`](crate::sha256::Precomputed) state (one vector add per
//! nonce), rounds 4..=15 use constant message+K vectors, the schedule reuses
//! the constant `msg1` terms, the second hash's padding words are constant,
//! and the second hash stops after rounds 60–61, when its final top word is
//! known, unless some lane may meet the target.

use core::arch::x86_64::*;

use crate::backend::{Backend, Prepared};
use crate::sha256::{IV, K, LEN_DIGEST_BITS, LEN_HEADER_BITS, PAD_BIT};

/// `[expr; N]` evaluated per lane `l`, as a plain unrolled loop: closures
/// (`array::from_fn`) would not inherit the caller's target features, so
/// the intrinsics inside them would not be inlined.
macro_rules! per_lane {
    ($n:expr, $l:ident => $e:expr) => {{
        let mut out = [_mm_setzero_si128(); $n];
        for $l in 0..$n {
            out[$l] = $e;
        }
        out
    }};
}

/// Round constants aligned for vector loads.
#[repr(align(16))]
struct AlignedK([u32; 64]);
static KA: AlignedK = AlignedK(K);

/// An interleaved SHA-NI scanner. Only constructible on CPUs with the
/// required features, which is what makes [`Backend::scan`] safe to call.
pub struct ShaNi {
    lanes: usize,
    isa: Isa,
    name: &'static str,
}

impl ShaNi {
    /// The lane counts this module has kernels for.
    pub const LANES: [usize; 4] = [1, 2, 3, 4];

    /// A scanner with `lanes` interleaved nonces, compiled for plain SHA-NI
    /// (`vl = false`) or additionally for AVX-512F/VL (`vl = true`, 32 vector
    /// registers). `None` if the CPU lacks the features or `lanes` is not one
    /// of [`ShaNi::LANES`].
    pub fn new(lanes: usize, vl: bool) -> Option<Self> {
        Self::with_isa(lanes, if vl { Isa::Vl } else { Isa::Sse })
    }

    /// A scanner with `lanes` interleaved nonces compiled for `isa`; `None`
    /// if the CPU lacks the features or there is no such kernel.
    pub fn with_isa(lanes: usize, isa: Isa) -> Option<Self> {
        let base = std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1");
        let ok = match isa {
            Isa::Sse => base,
            Isa::Avx => base && std::arch::is_x86_feature_detected!("avx2"),
            Isa::Vl => {
                base && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
        };
        if !ok {
            return None;
        }
        let name = match (lanes, isa) {
            (1, Isa::Sse) => "sha-ni-x1",
            (2, Isa::Sse) => "sha-ni-x2",
            (3, Isa::Sse) => "sha-ni-x3",
            (4, Isa::Sse) => "sha-ni-x4",
            (1, Isa::Avx) => "sha-ni-x1-avx",
            (2, Isa::Avx) => "sha-ni-x2-avx",
            (3, Isa::Avx) => "sha-ni-x3-avx",
            (4, Isa::Avx) => "sha-ni-x4-avx",
            (1, Isa::Vl) => "sha-ni-x1-vl",
            (2, Isa::Vl) => "sha-ni-x2-vl",
            (3, Isa::Vl) => "sha-ni-x3-vl",
            (4, Isa::Vl) => "sha-ni-x4-vl",
            _ => return None,
        };
        Some(ShaNi { lanes, isa, name })
    }
}

/// The instruction set the SHA-NI kernel is compiled for besides SHA and
/// SSE4.1: it changes register allocation, not the algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Legacy SSE encodings only (16 registers, two-operand forms).
    Sse,
    /// AVX2 (VEX three-operand forms for the non-SHA vector ops).
    Avx,
    /// AVX-512F/VL (also xmm16–31 to hold lanes).
    Vl,
}

impl Backend for ShaNi {
    fn name(&self) -> &'static str {
        self.name
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        // SAFETY: `ShaNi::new` only constructs values whose features
        // (including AVX-512F/VL when `vl`) the running CPU supports.
        unsafe {
            match (self.lanes, self.isa) {
                (1, Isa::Sse) => scan_sha::<1>(job, start, count, found),
                (2, Isa::Sse) => scan_sha::<2>(job, start, count, found),
                (3, Isa::Sse) => scan_sha::<3>(job, start, count, found),
                (_, Isa::Sse) => scan_sha::<4>(job, start, count, found),
                (1, Isa::Avx) => scan_sha_avx::<1>(job, start, count, found),
                (2, Isa::Avx) => scan_sha_avx::<2>(job, start, count, found),
                (3, Isa::Avx) => scan_sha_avx::<3>(job, start, count, found),
                (_, Isa::Avx) => scan_sha_avx::<4>(job, start, count, found),
                (1, Isa::Vl) => scan_sha_vl::<1>(job, start, count, found),
                (2, Isa::Vl) => scan_sha_vl::<2>(job, start, count, found),
                (3, Isa::Vl) => scan_sha_vl::<3>(job, start, count, found),
                (_, Isa::Vl) => scan_sha_vl::<4>(job, start, count, found),
            }
        }
    }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx,avx2")]
unsafe fn scan_sha_avx<const N: usize>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    // SAFETY: the caller guarantees the features this function enables.
    unsafe { scan_impl::<N>(job, start, count, found) }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn scan_sha<const N: usize>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    // SAFETY: the caller guarantees the features this function enables.
    unsafe { scan_impl::<N>(job, start, count, found) }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx512f,avx512vl")]
unsafe fn scan_sha_vl<const N: usize>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    // SAFETY: the caller guarantees the features this function enables.
    unsafe { scan_impl::<N>(job, start, count, found) }
}

/// Per-header vectors of the kernel.
struct Consts {
    /// State after the first four rounds (nonce word 0), ABEF / CDGH layout.
    base_abef: __m128i,
    base_cdgh: __m128i,
    /// Midstate, to finish the first hash.
    mid_abef: __m128i,
    mid_cdgh: __m128i,
    /// Message words 0..=3 of the first hash's second block, nonce 0.
    h1_m0: __m128i,
    /// Message words 4..=15 of that block (padding, length).
    h1_m1: __m128i,
    h1_m3: __m128i,
    /// Words 4..=15 plus K, for rounds 4..=15.
    h1_wk4: __m128i,
    h1_wk8: __m128i,
    h1_wk12: __m128i,
    /// `msg1` of constant word groups (W4..7 with W8..11, W8..11 with W12..15).
    h1_msg1_12: __m128i,
    h1_msg1_23: __m128i,
    /// The second hash: IV, its constant padding words and derived values.
    iv_abef: __m128i,
    iv_cdgh: __m128i,
    h2_m2: __m128i,
    h2_m3: __m128i,
    h2_wk8: __m128i,
    h2_wk12: __m128i,
    h2_msg1_23: __m128i,
    target_top: u32,
}

/// ABEF and CDGH vectors (element 3 first in the names) of a state a..h.
#[inline(always)]
unsafe fn to_vectors(s: &[u32; 8]) -> (__m128i, __m128i) {
    let w = s.map(|x| x as i32);
    unsafe {
        (
            _mm_set_epi32(w[0], w[1], w[4], w[5]),
            _mm_set_epi32(w[2], w[3], w[6], w[7]),
        )
    }
}

/// The state a..h back from ABEF / CDGH vectors.
#[inline(always)]
unsafe fn from_vectors(abef: __m128i, cdgh: __m128i) -> [u32; 8] {
    let mut x = [0u32; 4];
    let mut y = [0u32; 4];
    unsafe {
        _mm_storeu_si128(x.as_mut_ptr().cast(), abef);
        _mm_storeu_si128(y.as_mut_ptr().cast(), cdgh);
    }
    [x[3], x[2], y[3], y[2], x[1], x[0], y[1], y[0]]
}

/// Words `i..i + 4` of K.
#[inline(always)]
unsafe fn k4(i: usize) -> __m128i {
    debug_assert!(i.is_multiple_of(4) && i < 64);
    // SAFETY: `i + 4 <= 64` and `i` is a multiple of 4, so the load is in
    // bounds and 16-byte aligned.
    unsafe { _mm_load_si128(KA.0.as_ptr().add(i).cast()) }
}

#[inline(always)]
unsafe fn words(w: [u32; 4]) -> __m128i {
    unsafe { _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32) }
}

impl Consts {
    #[inline(always)]
    unsafe fn new(job: &Prepared) -> Self {
        let pre = job.precompute();
        unsafe {
            let (base_abef, base_cdgh) = to_vectors(&pre.state4);
            let (mid_abef, mid_cdgh) = to_vectors(&job.midstate);
            let (iv_abef, iv_cdgh) = to_vectors(&IV);
            let h1_m0 = words([job.tail[0], job.tail[1], job.tail[2], 0]);
            let h1_m1 = words([PAD_BIT, 0, 0, 0]);
            let h1_m2 = _mm_setzero_si128();
            let h1_m3 = words([0, 0, 0, LEN_HEADER_BITS]);
            let h2_m2 = words([PAD_BIT, 0, 0, 0]);
            let h2_m3 = words([0, 0, 0, LEN_DIGEST_BITS]);
            Consts {
                base_abef,
                base_cdgh,
                mid_abef,
                mid_cdgh,
                h1_m0,
                h1_m1,
                h1_m3,
                h1_wk4: _mm_add_epi32(h1_m1, k4(4)),
                h1_wk8: _mm_add_epi32(h1_m2, k4(8)),
                h1_wk12: _mm_add_epi32(h1_m3, k4(12)),
                h1_msg1_12: _mm_sha256msg1_epu32(h1_m1, h1_m2),
                h1_msg1_23: _mm_sha256msg1_epu32(h1_m2, h1_m3),
                iv_abef,
                iv_cdgh,
                h2_m2,
                h2_m3,
                h2_wk8: _mm_add_epi32(h2_m2, k4(8)),
                h2_wk12: _mm_add_epi32(h2_m3, k4(12)),
                h2_msg1_23: _mm_sha256msg1_epu32(h2_m2, h2_m3),
                target_top: job.target_top(),
            }
        }
    }
}

/// Four rounds on every lane with per-lane message+K words.
#[inline(always)]
unsafe fn rounds4<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    wk: &[__m128i; N],
) {
    unsafe {
        for l in 0..N {
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk[l]);
        }
        for l in 0..N {
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(wk[l], 0x0E));
        }
    }
}

/// Four rounds on every lane with the same message+K words.
#[inline(always)]
unsafe fn rounds4_const<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    wk: __m128i,
) {
    unsafe {
        let hi = _mm_shuffle_epi32(wk, 0x0E);
        for l in 0..N {
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk);
        }
        for l in 0..N {
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], hi);
        }
    }
}

/// Four rounds with schedule words `w` plus K[k..k + 4].
#[inline(always)]
unsafe fn rounds4_k<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    w: &[__m128i; N],
    k: usize,
) {
    unsafe {
        let kv = k4(k);
        let wk: [__m128i; N] = per_lane!(N, l => _mm_add_epi32(w[l], kv));
        rounds4(abef, cdgh, &wk);
    }
}

/// The next four schedule words from the previous sixteen (`a` oldest).
#[inline(always)]
unsafe fn next4<const N: usize>(
    a: &[__m128i; N],
    b: &[__m128i; N],
    c: &[__m128i; N],
    d: &[__m128i; N],
) -> [__m128i; N] {
    unsafe {
        per_lane!(N, l => {
            let t = _mm_add_epi32(
                _mm_sha256msg1_epu32(a[l], b[l]),
                _mm_alignr_epi8(d[l], c[l], 4),
            );
            _mm_sha256msg2_epu32(t, d[l])
        })
    }
}

/// Rounds 32..=59 with the rolling schedule starting from `w16..w28`,
/// then the schedule words 60..=63 (returned; rounds 60.. are up to the
/// caller).
#[inline(always)]
unsafe fn rounds32_59<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    w16: [__m128i; N],
    w20: [__m128i; N],
    w24: [__m128i; N],
    w28: [__m128i; N],
) -> [__m128i; N] {
    unsafe {
        let w32 = next4(&w16, &w20, &w24, &w28);
        rounds4_k(abef, cdgh, &w32, 32);
        let w36 = next4(&w20, &w24, &w28, &w32);
        rounds4_k(abef, cdgh, &w36, 36);
        let w40 = next4(&w24, &w28, &w32, &w36);
        rounds4_k(abef, cdgh, &w40, 40);
        let w44 = next4(&w28, &w32, &w36, &w40);
        rounds4_k(abef, cdgh, &w44, 44);
        let w48 = next4(&w32, &w36, &w40, &w44);
        rounds4_k(abef, cdgh, &w48, 48);
        let w52 = next4(&w36, &w40, &w44, &w48);
        rounds4_k(abef, cdgh, &w52, 52);
        let w56 = next4(&w40, &w44, &w48, &w52);
        rounds4_k(abef, cdgh, &w56, 56);
        next4(&w44, &w48, &w52, &w56)
    }
}

/// Hashes `N` nonces (message word 3 values `nw`) and returns the bit mask of
/// lanes whose SHA-256d meets the target.
#[inline(always)]
unsafe fn kernel<const N: usize>(c: &Consts, job: &Prepared, nw: [u32; N]) -> u32 {
    unsafe {
        // First hash, second block, from round 4.
        let mut abef: [__m128i; N] = per_lane!(N, l => {
            let n = nw[l] as i32;
            _mm_add_epi32(c.base_abef, _mm_set_epi32(n, 0, n, 0))
        });
        let mut cdgh = [c.base_cdgh; N];
        rounds4_const(&mut abef, &mut cdgh, c.h1_wk4);
        rounds4_const(&mut abef, &mut cdgh, c.h1_wk8);
        rounds4_const(&mut abef, &mut cdgh, c.h1_wk12);
        // W16..19 = msg2(msg1(W0..3, W4..7) + W9..12 (zero), W12..15).
        let w16: [__m128i; N] = per_lane!(N, l => {
            let m0 = _mm_insert_epi32(c.h1_m0, nw[l] as i32, 3);
            _mm_sha256msg2_epu32(_mm_sha256msg1_epu32(m0, c.h1_m1), c.h1_m3)
        });
        rounds4_k(&mut abef, &mut cdgh, &w16, 16);
        let w20: [__m128i; N] = per_lane!(N, l => {
            let t = _mm_add_epi32(c.h1_msg1_12, _mm_alignr_epi8(w16[l], c.h1_m3, 4));
            _mm_sha256msg2_epu32(t, w16[l])
        });
        rounds4_k(&mut abef, &mut cdgh, &w20, 20);
        let w24: [__m128i; N] = per_lane!(N, l => {
            let t = _mm_add_epi32(c.h1_msg1_23, _mm_alignr_epi8(w20[l], w16[l], 4));
            _mm_sha256msg2_epu32(t, w20[l])
        });
        rounds4_k(&mut abef, &mut cdgh, &w24, 24);
        let w28: [__m128i; N] = per_lane!(N, l => {
            let t = _mm_add_epi32(
                _mm_sha256msg1_epu32(c.h1_m3, w16[l]),
                _mm_alignr_epi8(w24[l], w20[l], 4),
            );
            _mm_sha256msg2_epu32(t, w24[l])
        });
        rounds4_k(&mut abef, &mut cdgh, &w28, 28);
        let w60 = rounds32_59(&mut abef, &mut cdgh, w16, w20, w24, w28);
        rounds4_k(&mut abef, &mut cdgh, &w60, 60);

        // Second hash: message = first digest (A..H) + constant padding.
        let mut m0 = [_mm_setzero_si128(); N];
        let mut m1 = [_mm_setzero_si128(); N];
        for l in 0..N {
            let a = _mm_add_epi32(abef[l], c.mid_abef);
            let b = _mm_add_epi32(cdgh[l], c.mid_cdgh);
            let t = _mm_shuffle_epi32(a, 0x1B); // A B E F (element 0 first)
            let s = _mm_shuffle_epi32(b, 0xB1); // G H C D
            m0[l] = _mm_blend_epi16(t, s, 0xF0); // A B C D
            m1[l] = _mm_alignr_epi8(s, t, 8); // E F G H
        }
        let mut abef = [c.iv_abef; N];
        let mut cdgh = [c.iv_cdgh; N];
        rounds4_k(&mut abef, &mut cdgh, &m0, 0);
        rounds4_k(&mut abef, &mut cdgh, &m1, 4);
        rounds4_const(&mut abef, &mut cdgh, c.h2_wk8);
        rounds4_const(&mut abef, &mut cdgh, c.h2_wk12);
        // W16..19 = msg2(msg1(W0..3, W4..7) + W9..12 (zero), W12..15).
        let w16: [__m128i; N] = per_lane!(N, l => {
            _mm_sha256msg2_epu32(_mm_sha256msg1_epu32(m0[l], m1[l]), c.h2_m3)
        });
        rounds4_k(&mut abef, &mut cdgh, &w16, 16);
        let w20: [__m128i; N] = per_lane!(N, l => {
            let t = _mm_add_epi32(
                _mm_sha256msg1_epu32(m1[l], c.h2_m2),
                _mm_alignr_epi8(w16[l], c.h2_m3, 4),
            );
            _mm_sha256msg2_epu32(t, w16[l])
        });
        rounds4_k(&mut abef, &mut cdgh, &w20, 20);
        let w24: [__m128i; N] = per_lane!(N, l => {
            let t = _mm_add_epi32(c.h2_msg1_23, _mm_alignr_epi8(w20[l], w16[l], 4));
            _mm_sha256msg2_epu32(t, w20[l])
        });
        rounds4_k(&mut abef, &mut cdgh, &w24, 24);
        let w28: [__m128i; N] = per_lane!(N, l => {
            let t = _mm_add_epi32(
                _mm_sha256msg1_epu32(c.h2_m3, w16[l]),
                _mm_alignr_epi8(w24[l], w20[l], 4),
            );
            _mm_sha256msg2_epu32(t, w24[l])
        });
        rounds4_k(&mut abef, &mut cdgh, &w28, 28);
        let w60 = rounds32_59(&mut abef, &mut cdgh, w16, w20, w24, w28);

        // Rounds 60 and 61: afterwards F of the new ABEF is e after round
        // 60, which becomes the final h (before adding IV[7]).
        let k60 = k4(60);
        let wk60: [__m128i; N] = per_lane!(N, l => _mm_add_epi32(w60[l], k60));
        let mut may = false;
        for l in 0..N {
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk60[l]);
            let h = _mm_cvtsi128_si32(cdgh[l]) as u32;
            may |= crate::scalar::top_may_meet(h, c.target_top);
        }
        if !may {
            return 0;
        }
        finish(c, job, &abef, &cdgh, &wk60)
    }
}

/// Rounds 62–63 and the exact comparison, for the rare batches where some
/// lane's top word may meet the target.
#[cold]
#[inline(never)]
fn finish<const N: usize>(
    c: &Consts,
    job: &Prepared,
    abef: &[__m128i; N],
    cdgh: &[__m128i; N],
    wk60: &[__m128i; N],
) -> u32 {
    // After rounds 60–61 `cdgh` holds the new ABEF and `abef` the new CDGH.
    let mut mask = 0;
    for l in 0..N {
        // SAFETY: only reached from the kernels, whose callers guarantee
        // SHA-NI and SSE4.1 (checked when the backend was constructed).
        let state = unsafe { finish_lane(c, abef[l], cdgh[l], wk60[l]) };
        if job.meets(&state) {
            mask |= 1 << l;
        }
    }
    mask
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn finish_lane(
    c: &Consts,
    cdgh_role: __m128i,
    abef_role: __m128i,
    wk60: __m128i,
) -> [u32; 8] {
    unsafe {
        let new_abef = _mm_sha256rnds2_epu32(cdgh_role, abef_role, _mm_shuffle_epi32(wk60, 0x0E));
        let a = _mm_add_epi32(new_abef, c.iv_abef);
        let b = _mm_add_epi32(abef_role, c.iv_cdgh);
        from_vectors(a, b)
    }
}

#[inline(always)]
unsafe fn scan_impl<const N: usize>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    unsafe {
        let c = Consts::new(job);
        let mut done: u32 = 0;
        while count - done >= N as u32 {
            let base = start.wrapping_add(done);
            let nw: [u32; N] =
                core::array::from_fn(|l| Prepared::nonce_word(base.wrapping_add(l as u32)));
            let mut mask = kernel::<N>(&c, job, nw);
            while mask != 0 {
                let l = mask.trailing_zeros();
                found(base.wrapping_add(l));
                mask &= mask - 1;
            }
            done += N as u32;
        }
        let rest = count - done;
        if rest > 0 {
            // Fill the unused lanes with the last nonce of the range (never
            // past it, so never past u32::MAX) and ignore their results.
            let base = start.wrapping_add(done);
            let nw: [u32; N] = core::array::from_fn(|l| {
                Prepared::nonce_word(base.wrapping_add((l as u32).min(rest - 1)))
            });
            let mut mask = kernel::<N>(&c, job, nw) & ((1u32 << rest) - 1);
            while mask != 0 {
                let l = mask.trailing_zeros();
                found(base.wrapping_add(l));
                mask &= mask - 1;
            }
        }
    }
}
