//! 256-bit targets: pool difficulty, compact `nbits` and hash comparisons.
//!
//! Pools speak in difficulties, blocks in compact `nbits`, and hashing
//! backends in 32-byte targets. This module converts between the three so
//! the rest of the host only ever compares a hash against a [`Target`].

use std::fmt;

/// Why a target could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// A target must be exactly 32 bytes; the pool or plugin sent another size.
    #[error("target must be 32 bytes, got {len}")]
    Length {
        /// The length that was given.
        len: usize,
    },
    /// Difficulty must be a finite number greater than zero.
    #[error("difficulty must be finite and > 0, got {difficulty}")]
    InvalidDifficulty {
        /// The rejected difficulty.
        difficulty: f64,
    },
    /// The compact form has its sign bit set with a non-zero mantissa.
    #[error("compact target {nbits:#010x} is negative")]
    NbitsNegative {
        /// The rejected compact target.
        nbits: u32,
    },
    /// The compact form describes a number that does not fit in 256 bits.
    #[error("compact target {nbits:#010x} overflows 256 bits")]
    NbitsOverflow {
        /// The rejected compact target.
        nbits: u32,
    },
}

/// 256-bit target, stored big-endian (display order). `Ord` compares
/// numerically because big-endian byte arrays sort like the numbers they hold.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Target(pub [u8; 32]);

/// `0xFFFF · 2^208`, the difficulty-1 target, as f64 (exactly representable).
fn diff1_f64() -> f64 {
    65535.0 * 2f64.powi(208)
}

impl Target {
    /// The largest target, `2^256 - 1`: every hash meets it.
    pub const MAX: Target = Target([0xff; 32]);

    /// The zero target: only the all-zero hash meets it.
    pub const ZERO: Target = Target([0; 32]);

    /// The pool difficulty-1 target `0xFFFF · 2^208`, the unit of difficulty.
    pub const DIFF1: Target = {
        let mut b = [0u8; 32];
        b[4] = 0xff;
        b[5] = 0xff;
        Target(b)
    };

    /// Wraps big-endian bytes, e.g. a WIT `set-share-target` payload.
    pub fn from_be_bytes(b: [u8; 32]) -> Target {
        Target(b)
    }

    /// Parses a big-endian target from untrusted bytes, which must be 32 long.
    pub fn from_slice(b: &[u8]) -> Result<Target, TargetError> {
        <[u8; 32]>::try_from(b)
            .map(Target)
            .map_err(|_| TargetError::Length { len: b.len() })
    }

    /// The big-endian bytes, as hashing backends and the WIT contract use them.
    pub fn as_be_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Converts a pool difficulty to a target: `0xFFFF · 2^208 / d`,
    /// saturating at [`Target::MAX`].
    ///
    /// The quotient `0xFFFF / d` is computed in f64 (as pools do) and then
    /// scaled by `2^208` exactly, truncating any fraction. This is exact for
    /// difficulties such as 1, 2 or 65536 and matches what pools compute for
    /// inexact ones such as 0.001. `d` must be finite and `> 0`.
    pub fn from_difficulty(d: f64) -> Result<Target, TargetError> {
        if !d.is_finite() || d <= 0.0 {
            return Err(TargetError::InvalidDifficulty { difficulty: d });
        }
        let q = 65535.0 / d;
        // q · 2^208 >= 2^256 (or q overflowed to infinity): saturate.
        if !q.is_finite() || q >= 2f64.powi(48) {
            return Ok(Target::MAX);
        }
        let bits = q.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1u64 << 52) - 1);
        // q = mant · 2^exp exactly.
        let (mant, exp) = if biased == 0 {
            (frac, -1074i64)
        } else {
            (frac | (1u64 << 52), biased - 1075)
        };
        Ok(Target(shifted_u64(mant, exp + 208)))
    }

    /// The pool difficulty this target corresponds to (approximate, f64);
    /// infinite for the zero target.
    pub fn difficulty(&self) -> f64 {
        let v = be_to_f64(&self.0);
        if v == 0.0 {
            f64::INFINITY
        } else {
            diff1_f64() / v
        }
    }

    /// Decodes a compact target (`nbits`) as Bitcoin defines it: the top byte
    /// is a byte length, the low 23 bits a mantissa, bit 23 a sign.
    /// Negative and overflowing encodings are rejected; zero is allowed here
    /// (callers that need a usable target reject it).
    pub fn from_nbits(nbits: u32) -> Result<Target, TargetError> {
        let size = nbits >> 24;
        let mantissa = nbits & 0x007f_ffff;
        if mantissa != 0 && nbits & 0x0080_0000 != 0 {
            return Err(TargetError::NbitsNegative { nbits });
        }
        if mantissa != 0
            && (size > 34 || (mantissa > 0xff && size > 33) || (mantissa > 0xffff && size > 32))
        {
            return Err(TargetError::NbitsOverflow { nbits });
        }
        // value = mantissa · 256^(size - 3)
        let shift = 8 * (i64::from(size) - 3);
        Ok(Target(shifted_u64(u64::from(mantissa), shift)))
    }

    /// Whether a hash meets this target: the hash in internal byte order
    /// (raw SHA-256d output) read as a little-endian number is `<=` the target.
    pub fn is_met_by(&self, hash: &[u8; 32]) -> bool {
        let mut be = *hash;
        be.reverse();
        be <= self.0
    }
}

impl fmt::Display for Target {
    /// Big-endian hex, the form pools and explorers print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// `m · 2^shift` as 32 big-endian bytes, truncated towards zero for negative
/// shifts. Callers guarantee the value fits in 256 bits.
fn shifted_u64(m: u64, shift: i64) -> [u8; 32] {
    let mut out = [0u8; 32];
    // Byte `k` (little-endian index) of the result holds bits 8k..8k+8.
    for (k, slot) in out.iter_mut().rev().enumerate() {
        let rel = 8 * k as i64 - shift; // bit of `m` that lands at bit 8k
        let byte = if rel >= 64 || rel <= -8 {
            0
        } else if rel >= 0 {
            (m >> rel) & 0xff
        } else {
            (m << -rel) & 0xff
        };
        *slot = byte as u8;
    }
    out
}

/// A big-endian 256-bit number as f64 (rounded).
fn be_to_f64(b: &[u8; 32]) -> f64 {
    b.iter().fold(0.0, |acc, &x| acc * 256.0 + f64::from(x))
}

/// A hash in internal byte order as the reversed-byte hex block explorers show.
pub fn hash_to_display(hash: &[u8; 32]) -> String {
    let mut be = *hash;
    be.reverse();
    hex::encode(be)
}

/// The difficulty a hash achieves (`0xFFFF · 2^208 / hash`), for logging and
/// best-share tracking; infinite for the all-zero hash.
pub fn hash_difficulty(hash: &[u8; 32]) -> f64 {
    let mut be = *hash;
    be.reverse();
    let v = be_to_f64(&be);
    if v == 0.0 {
        f64::INFINITY
    } else {
        diff1_f64() / v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hex_be: &str) -> Target {
        Target::from_slice(&hex::decode(hex_be).unwrap()).unwrap()
    }

    #[test]
    fn difficulty_to_target_known_values() {
        let cases = [
            (
                1.0,
                "00000000ffff0000000000000000000000000000000000000000000000000000",
            ),
            (
                2.0,
                "000000007fff8000000000000000000000000000000000000000000000000000",
            ),
            (
                65536.0,
                "000000000000ffff000000000000000000000000000000000000000000000000",
            ),
            // 0xFFFF / 0.001 rounds (in f64) to 65535000 = 0x3e7fc18.
            (
                0.001,
                "000003e7fc180000000000000000000000000000000000000000000000000000",
            ),
            // Python: hex(int(0xFFFF * 2**208 / 1e12)).
            (
                1e12,
                "00000000000000000119787e99468e3000000000000000000000000000000000",
            ),
            // 0xFFFF / 2^-16 = 0xFFFF0000.
            (
                1.52587890625e-05,
                "0000ffff00000000000000000000000000000000000000000000000000000000",
            ),
        ];
        for (d, hex_be) in cases {
            let target = Target::from_difficulty(d).unwrap();
            assert_eq!(target, t(hex_be), "difficulty {d}");
            let back = target.difficulty();
            assert!((back - d).abs() <= d * 1e-12, "difficulty {d} -> {back}");
        }
        assert_eq!(Target::from_difficulty(1.0).unwrap(), Target::DIFF1);
    }

    #[test]
    fn difficulty_saturates_and_rejects() {
        // 0xFFFF / 2^-40 = 2^56 - 2^40 >= 2^48: saturates.
        assert_eq!(
            Target::from_difficulty(2f64.powi(-40)).unwrap(),
            Target::MAX
        );
        assert_eq!(
            Target::from_difficulty(f64::MIN_POSITIVE).unwrap(),
            Target::MAX
        );
        assert_eq!(Target::from_difficulty(5e-324).unwrap(), Target::MAX);
        // Just below saturation: 0xFFFF/d = 2^48 - 1 exactly... d = 65535/(2^48-1).
        let d = 65535.0 / (2f64.powi(48) - 1.0);
        let target = Target::from_difficulty(d).unwrap();
        assert!(target < Target::MAX);
        // A huge difficulty gives a tiny but well-defined target.
        let tiny = Target::from_difficulty(1e300).unwrap();
        assert_eq!(tiny, Target::ZERO);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                Target::from_difficulty(bad),
                Err(TargetError::InvalidDifficulty { .. })
            ));
        }
    }

    #[test]
    fn nbits_real_blocks() {
        // Expected targets written out by hand from the compact definition
        // value = mantissa · 256^(exponent - 3).
        let cases = [
            // Genesis: exponent 0x1d = 29, mantissa 0x00ffff → 3 zero bytes, 00ffff, 26 zero bytes.
            (
                0x1d00ffff,
                "00000000ffff0000000000000000000000000000000000000000000000000000",
            ),
            // Block 125552: exponent 0x1a = 26 → 6 zero bytes, 44b9f2, 23 zero bytes.
            (
                0x1a44b9f2,
                "00000000000044b9f20000000000000000000000000000000000000000000000",
            ),
            // Bitcoin wiki example: exponent 0x1b = 27 → 5 zero bytes, 0404cb, 24 zero bytes.
            (
                0x1b0404cb,
                "00000000000404cb000000000000000000000000000000000000000000000000",
            ),
            // Block 100000: exponent 27 → 5 zero bytes, 04864c, 24 zero bytes.
            (
                0x1b04864c,
                "000000000004864c000000000000000000000000000000000000000000000000",
            ),
            // Block 840000: exponent 0x17 = 23 → 9 zero bytes, 034219, 20 zero bytes.
            (
                0x17034219,
                "0000000000000000000342190000000000000000000000000000000000000000",
            ),
        ];
        for (nbits, hex_be) in cases {
            assert_eq!(Target::from_nbits(nbits).unwrap(), t(hex_be), "{nbits:08x}");
        }
        // Block 100000 reports difficulty 14484.1623612254.
        let d = Target::from_nbits(0x1b04864c).unwrap().difficulty();
        assert!((d - 14_484.162_361_225_4).abs() < 1e-6, "{d}");
        // Block 840000 difficulty is about 86.39 T.
        let d = Target::from_nbits(0x17034219).unwrap().difficulty();
        assert!((d - 86_388_558_925_171.0).abs() < 1e3, "{d}");
    }

    #[test]
    fn nbits_edge_cases() {
        let small = |v: u8| {
            let mut b = [0u8; 32];
            b[31] = v;
            Target(b)
        };
        // Mantissa bytes shifted out below size 3.
        assert_eq!(Target::from_nbits(0x01003456).unwrap(), Target::ZERO);
        assert_eq!(Target::from_nbits(0x01123456).unwrap(), small(0x12));
        // Size 2: one mantissa byte shifted out, 0x008000 >> 8 = 0x80.
        assert_eq!(Target::from_nbits(0x02008000).unwrap(), small(0x80));
        assert_eq!(
            Target::from_nbits(0x03123456).unwrap(),
            t("0000000000000000000000000000000000000000000000000000000000123456")
        );
        assert_eq!(
            Target::from_nbits(0x04123456).unwrap(),
            t("0000000000000000000000000000000000000000000000000000000012345600")
        );
        assert_eq!(Target::from_nbits(0x00000000).unwrap(), Target::ZERO);
        // Sign bit with zero mantissa is zero, not negative.
        assert_eq!(Target::from_nbits(0x01800000).unwrap(), Target::ZERO);
        assert_eq!(
            Target::from_nbits(0x04923456),
            Err(TargetError::NbitsNegative { nbits: 0x04923456 })
        );
        // Largest encodable: 0x20 with 3 mantissa bytes, 0x21 with 2, 0x22 with 1.
        assert_eq!(
            Target::from_nbits(0x207fffff).unwrap(),
            t("7fffff0000000000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_nbits(0x2100ffff).unwrap(),
            t("ffff000000000000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_nbits(0x220000ff).unwrap(),
            t("ff00000000000000000000000000000000000000000000000000000000000000")
        );
        for over in [0x21010000u32, 0x22000100, 0x23000001, 0xff123456] {
            assert_eq!(
                Target::from_nbits(over),
                Err(TargetError::NbitsOverflow { nbits: over })
            );
        }
        // Zero mantissa with a huge exponent is just zero.
        assert_eq!(Target::from_nbits(0xff000000).unwrap(), Target::ZERO);
    }

    #[test]
    fn from_slice_checks_length() {
        assert_eq!(
            Target::from_slice(&[0; 31]),
            Err(TargetError::Length { len: 31 })
        );
        assert_eq!(
            Target::from_slice(&[0; 33]),
            Err(TargetError::Length { len: 33 })
        );
        assert_eq!(
            Target::from_slice(&[7; 32]).unwrap().as_be_bytes(),
            &[7; 32]
        );
        assert_eq!(Target::from_be_bytes([1; 32]), Target([1; 32]));
    }

    #[test]
    fn ordering_is_numeric() {
        assert!(Target::ZERO < Target::DIFF1);
        assert!(Target::DIFF1 < Target::MAX);
        assert!(
            t("0000000000000000000000000000000000000000000000000000000000000100")
                > t("00000000000000000000000000000000000000000000000000000000000000ff")
        );
    }

    #[test]
    fn hash_comparison_is_little_endian_and_inclusive() {
        let target = Target::DIFF1;
        // Internal order: the most significant bytes are at the end.
        let mut equal = [0u8; 32];
        equal[26] = 0xff;
        equal[27] = 0xff;
        assert!(target.is_met_by(&equal));
        let mut above = equal;
        above[0] = 1;
        assert!(!target.is_met_by(&above));
        let mut below = [0xffu8; 32];
        below[26..].fill(0);
        below[27] = 0xfe;
        assert!(target.is_met_by(&below));
        assert!(Target::MAX.is_met_by(&[0xff; 32]));
        assert!(Target::ZERO.is_met_by(&[0; 32]));
        assert!(!Target::ZERO.is_met_by(&{
            let mut h = [0u8; 32];
            h[0] = 1;
            h
        }));
    }

    #[test]
    fn display_and_hash_difficulty() {
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[31] = 0x01;
        let shown = hash_to_display(&h);
        assert!(shown.starts_with("01") && shown.ends_with("ab"));
        assert_eq!(shown.len(), 64);
        // A hash equal to the diff-1 target has difficulty exactly 1.
        let mut diff1_hash = *Target::DIFF1.as_be_bytes();
        diff1_hash.reverse();
        assert_eq!(hash_difficulty(&diff1_hash), 1.0);
        assert_eq!(hash_difficulty(&[0; 32]), f64::INFINITY);
        assert_eq!(Target::ZERO.difficulty(), f64::INFINITY);
        assert_eq!(
            Target::DIFF1.to_string(),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
    }
}
