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
//!
//! [`AblationScanner`] runs the four-lane AVX build with only some of these
//! shortcuts (the [`Ablation`] levels), so `hashwatt_hash::bench::ablation`
//! can measure what each one gains. It is for benchmarks and tests only and
//! is not among [`crate::available`]'s backends.

use core::arch::x86_64::*;
use core::hint::black_box;

use crate::backend::{Backend, Prepared};
use crate::bench::Ablation;
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
    unsafe { scan_impl::<N, PRODUCTION>(job, start, count, found) }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn scan_sha<const N: usize>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    // SAFETY: the caller guarantees the features this function enables.
    unsafe { scan_impl::<N, PRODUCTION>(job, start, count, found) }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx512f,avx512vl")]
unsafe fn scan_sha_vl<const N: usize>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    // SAFETY: the caller guarantees the features this function enables.
    unsafe { scan_impl::<N, PRODUCTION>(job, start, count, found) }
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

/// The first hash of `N` nonces (message word 3 values `nw`) with the
/// per-header shortcuts: the second block from round 4, constant
/// message+K vectors and `msg1` terms. Returns the digest as the second
/// hash's message words 0..=3 and 4..=7.
#[inline(always)]
unsafe fn first_hash<const N: usize>(c: &Consts, nw: [u32; N]) -> ([__m128i; N], [__m128i; N]) {
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
        let mut m0 = [_mm_setzero_si128(); N];
        let mut m1 = [_mm_setzero_si128(); N];
        for l in 0..N {
            let a = _mm_add_epi32(abef[l], c.mid_abef);
            let b = _mm_add_epi32(cdgh[l], c.mid_cdgh);
            (m0[l], m1[l]) = digest_words(a, b);
        }
        (m0, m1)
    }
}

/// A final state's ABEF / CDGH vectors as message words A B C D and
/// E F G H (element 0 first).
#[inline(always)]
unsafe fn digest_words(abef: __m128i, cdgh: __m128i) -> (__m128i, __m128i) {
    unsafe {
        let t = _mm_shuffle_epi32(abef, 0x1B); // A B E F (element 0 first)
        let s = _mm_shuffle_epi32(cdgh, 0xB1); // G H C D
        (_mm_blend_epi16(t, s, 0xF0), _mm_alignr_epi8(s, t, 8))
    }
}

/// Hashes `N` nonces (message word 3 values `nw`) and returns the bit mask of
/// lanes whose SHA-256d meets the target: the production kernel with
/// `EARLY`, else without the early exit (rounds 62–63 and the exact
/// comparison for every lane; the `padding` ablation level).
#[inline(always)]
unsafe fn kernel<const N: usize, const EARLY: bool>(
    c: &Consts,
    job: &Prepared,
    nw: [u32; N],
) -> u32 {
    unsafe {
        let (m0, m1) = first_hash(c, nw);
        // Second hash: message = first digest (A..H) + constant padding.
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
        if !EARLY {
            rounds4(&mut abef, &mut cdgh, &wk60);
            let abef = per_lane!(N, l => _mm_add_epi32(abef[l], c.iv_abef));
            let cdgh = per_lane!(N, l => _mm_add_epi32(cdgh[l], c.iv_cdgh));
            return meets_mask(job, &abef, &cdgh);
        }
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

/// The lanes (bit mask) whose final double-SHA-256 state, as ABEF / CDGH
/// vectors, meets the target: the exact eight-word comparison.
#[inline(always)]
unsafe fn meets_mask<const N: usize>(
    job: &Prepared,
    abef: &[__m128i; N],
    cdgh: &[__m128i; N],
) -> u32 {
    let mut mask = 0;
    for l in 0..N {
        // SAFETY: the callers' target features include SSE2.
        let state = unsafe { from_vectors(abef[l], cdgh[l]) };
        if job.meets(&state) {
            mask |= 1 << l;
        }
    }
    mask
}

/// One whole SHA-256 compression of a 64-byte block (message words 0..=15,
/// element 0 first) per lane, assuming nothing about the block: all 64
/// rounds, every schedule word from `msg1`/`msg2`, then the feed-forward
/// addition. Only the ablation levels use it.
#[inline(always)]
unsafe fn compress<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    block: &[[__m128i; 4]; N],
) {
    unsafe {
        let (abef0, cdgh0) = (*abef, *cdgh);
        let w0: [__m128i; N] = per_lane!(N, l => block[l][0]);
        let w4: [__m128i; N] = per_lane!(N, l => block[l][1]);
        let w8: [__m128i; N] = per_lane!(N, l => block[l][2]);
        let w12: [__m128i; N] = per_lane!(N, l => block[l][3]);
        rounds4_k(abef, cdgh, &w0, 0);
        rounds4_k(abef, cdgh, &w4, 4);
        rounds4_k(abef, cdgh, &w8, 8);
        rounds4_k(abef, cdgh, &w12, 12);
        let w16 = next4(&w0, &w4, &w8, &w12);
        rounds4_k(abef, cdgh, &w16, 16);
        let w20 = next4(&w4, &w8, &w12, &w16);
        rounds4_k(abef, cdgh, &w20, 20);
        let w24 = next4(&w8, &w12, &w16, &w20);
        rounds4_k(abef, cdgh, &w24, 24);
        let w28 = next4(&w12, &w16, &w20, &w24);
        rounds4_k(abef, cdgh, &w28, 28);
        let w60 = rounds32_59(abef, cdgh, w16, w20, w24, w28);
        rounds4_k(abef, cdgh, &w60, 60);
        for l in 0..N {
            abef[l] = _mm_add_epi32(abef[l], abef0[l]);
            cdgh[l] = _mm_add_epi32(cdgh[l], cdgh0[l]);
        }
    }
}

// Why the ablation levels pass their nonce-independent inputs through
// `black_box` (once per batch, a few stores and loads against hundreds of
// rounds): LLVM treats the SHA intrinsics as pure, so without it it would
// hoist or constant-fold exactly the work a level claims to do per nonce
// (the midstate's compression, the padding words plus K, their `msg1`
// terms) and merge identical lanes, measuring the shortcut it omits.

/// Ablation level `full`: per nonce, block 0 from IV, block 1 and the
/// second hash, all three generic.
#[inline(always)]
unsafe fn kernel_full<const N: usize>(c: &Consts, job: &Prepared, nw: [u32; N]) -> u32 {
    unsafe {
        let bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
        let mut block0 = [_mm_setzero_si128(); 4];
        for (i, w) in block0.iter_mut().enumerate() {
            // SAFETY: bytes 16 * i .. 16 * i + 16 <= 64 of the 80-byte header.
            let v = _mm_loadu_si128(job.header.as_ptr().add(16 * i).cast());
            *w = _mm_shuffle_epi8(v, bswap);
        }
        let block0 = black_box([block0; N]);
        let mut abef = [c.iv_abef; N];
        let mut cdgh = [c.iv_cdgh; N];
        compress(&mut abef, &mut cdgh, &block0);
        generic_from_block1(c, job, nw, abef, cdgh)
    }
}

/// Ablation level `midstate`: per nonce, block 1 from the midstate and the
/// second hash, both generic.
#[inline(always)]
unsafe fn kernel_midstate<const N: usize>(c: &Consts, job: &Prepared, nw: [u32; N]) -> u32 {
    unsafe {
        let abef = black_box([c.mid_abef; N]);
        let cdgh = black_box([c.mid_cdgh; N]);
        generic_from_block1(c, job, nw, abef, cdgh)
    }
}

/// Generic block 1 (header bytes 64..80 with the nonce, padding, length)
/// from the state after block 0, then the generic second hash.
#[inline(always)]
unsafe fn generic_from_block1<const N: usize>(
    c: &Consts,
    job: &Prepared,
    nw: [u32; N],
    mut abef: [__m128i; N],
    mut cdgh: [__m128i; N],
) -> u32 {
    unsafe {
        let mut block1 = [[_mm_setzero_si128(); 4]; N];
        for l in 0..N {
            let m0 = _mm_insert_epi32(c.h1_m0, nw[l] as i32, 3);
            block1[l] = [m0, c.h1_m1, _mm_setzero_si128(), c.h1_m3];
        }
        let block1 = black_box(block1);
        compress(&mut abef, &mut cdgh, &block1);
        let mut m0 = [_mm_setzero_si128(); N];
        let mut m1 = [_mm_setzero_si128(); N];
        for l in 0..N {
            (m0[l], m1[l]) = digest_words(abef[l], cdgh[l]);
        }
        generic_second_hash(c, job, &m0, &m1)
    }
}

/// The second hash as a generic compression of the digest (`m0`, `m1`)
/// and its padding, then the exact comparison.
#[inline(always)]
unsafe fn generic_second_hash<const N: usize>(
    c: &Consts,
    job: &Prepared,
    m0: &[__m128i; N],
    m1: &[__m128i; N],
) -> u32 {
    unsafe {
        let pad = black_box([[c.h2_m2, c.h2_m3]; N]);
        let mut block = [[_mm_setzero_si128(); 4]; N];
        for l in 0..N {
            block[l] = [m0[l], m1[l], pad[l][0], pad[l][1]];
        }
        let mut abef = [c.iv_abef; N];
        let mut cdgh = [c.iv_cdgh; N];
        compress(&mut abef, &mut cdgh, &block);
        meets_mask(job, &abef, &cdgh)
    }
}

/// Ablation level `precomputed`: the production first hash, the second
/// hash generic.
#[inline(always)]
unsafe fn kernel_precomputed<const N: usize>(c: &Consts, job: &Prepared, nw: [u32; N]) -> u32 {
    unsafe {
        let (m0, m1) = first_hash(c, nw);
        generic_second_hash(c, job, &m0, &m1)
    }
}

/// [`scan_impl`]'s kernel choice: the production kernel or an [`Ablation`]
/// level, as a const parameter (`Ablation as u8`) so each is its own
/// monomorph.
const PRODUCTION: u8 = Ablation::EarlyExit as u8;
const FULL: u8 = Ablation::Full as u8;
const MIDSTATE: u8 = Ablation::Midstate as u8;
const PRECOMPUTED: u8 = Ablation::Precomputed as u8;
const PADDING: u8 = Ablation::Padding as u8;

/// One batch of `N` nonces with the kernel `L` names.
#[inline(always)]
unsafe fn batch<const N: usize, const L: u8>(c: &Consts, job: &Prepared, nw: [u32; N]) -> u32 {
    unsafe {
        match L {
            FULL => kernel_full::<N>(c, job, nw),
            MIDSTATE => kernel_midstate::<N>(c, job, nw),
            PRECOMPUTED => kernel_precomputed::<N>(c, job, nw),
            PADDING => kernel::<N, false>(c, job, nw),
            _ => kernel::<N, true>(c, job, nw),
        }
    }
}

/// The four-lane SHA-NI kernel (AVX build, like `sha-ni-x4-avx`) with only
/// the mining shortcuts up to an [`Ablation`] level, for measuring each
/// shortcut's gain. Exact like every backend, but never listed by
/// [`crate::available`]: no level is faster than production.
pub struct AblationScanner {
    level: Ablation,
    name: &'static str,
}

impl AblationScanner {
    /// The scanner for `level`; `None` if the CPU cannot run
    /// `sha-ni-x4-avx` (SHA, SSE4.1, AVX2).
    pub fn new(level: Ablation) -> Option<Self> {
        ShaNi::with_isa(4, Isa::Avx)?;
        let name = match level {
            Ablation::Full => "sha-ni-x4-avx/full",
            Ablation::Midstate => "sha-ni-x4-avx/midstate",
            Ablation::Precomputed => "sha-ni-x4-avx/precomputed",
            Ablation::Padding => "sha-ni-x4-avx/padding",
            Ablation::EarlyExit => "sha-ni-x4-avx/early-exit",
        };
        Some(AblationScanner { level, name })
    }

    /// The level this scanner runs.
    pub fn level(&self) -> Ablation {
        self.level
    }
}

impl Backend for AblationScanner {
    fn name(&self) -> &'static str {
        self.name
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        // SAFETY: `AblationScanner::new` only constructs values on CPUs with
        // the features of `sha-ni-x4-avx`, which these functions enable.
        unsafe {
            match self.level {
                Ablation::Full => scan_ablation::<FULL>(job, start, count, found),
                Ablation::Midstate => scan_ablation::<MIDSTATE>(job, start, count, found),
                Ablation::Precomputed => scan_ablation::<PRECOMPUTED>(job, start, count, found),
                Ablation::Padding => scan_ablation::<PADDING>(job, start, count, found),
                // The production function itself, not a copy.
                Ablation::EarlyExit => scan_sha_avx::<4>(job, start, count, found),
            }
        }
    }
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx,avx2")]
unsafe fn scan_ablation<const L: u8>(
    job: &Prepared,
    start: u32,
    count: u32,
    found: &mut dyn FnMut(u32),
) {
    // SAFETY: the caller guarantees the features this function enables.
    unsafe { scan_impl::<4, L>(job, start, count, found) }
}

#[inline(always)]
unsafe fn scan_impl<const N: usize, const L: u8>(
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
            let mut mask = batch::<N, L>(&c, job, nw);
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
            let mut mask = batch::<N, L>(&c, job, nw) & ((1u32 << rest) - 1);
            while mask != 0 {
                let l = mask.trailing_zeros();
                found(base.wrapping_add(l));
                mask &= mask - 1;
            }
        }
    }
}
