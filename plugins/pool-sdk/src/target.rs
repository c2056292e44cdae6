//! Stratum difficulty to 256-bit share target.
//!
//! target = floor(0xFFFF · 2^208 / difficulty), saturating at 2^256 − 1.
//!
//! Pools send difficulties as JSON decimals (`0.001`, `65536`, `1e-5`). The
//! target is computed for the *decimal* value the pool wrote, not for its
//! nearest binary `f64` (0.001 is not representable in binary): a float is
//! first turned back into its shortest round-trip decimal `m · 10^e` and the
//! division is then done exactly on small fixed-size big integers.

use thiserror::Error;

/// Why a difficulty cannot be turned into a target.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TargetError {
    /// Difficulty is NaN, infinite, zero or negative.
    #[error("difficulty {0} is not a finite positive number")]
    InvalidDifficulty(f64),
}

/// Number of 64-bit limbs of the scratch integers (512 bits).
const LIMBS: usize = 8;

/// Little-endian-limb unsigned integer, just enough for one division.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Big([u64; LIMBS]);

impl Big {
    fn from_u64(v: u64) -> Self {
        let mut l = [0u64; LIMBS];
        l[0] = v;
        Big(l)
    }

    fn bit(&self, i: usize) -> bool {
        self.0
            .get(i / 64)
            .is_some_and(|limb| (limb >> (i % 64)) & 1 == 1)
    }

    fn set_bit(&mut self, i: usize) {
        if let Some(limb) = self.0.get_mut(i / 64) {
            *limb |= 1 << (i % 64);
        }
    }

    /// `self << n` (bits shifted out of 512 are dropped; callers keep n small).
    fn shl(&self, n: usize) -> Self {
        let mut out = [0u64; LIMBS];
        let (words, bits) = (n / 64, n % 64);
        for i in (0..LIMBS).rev() {
            let Some(src) = i.checked_sub(words) else {
                continue;
            };
            let lo = self.0[src] << bits;
            let carry = if bits > 0 && src > 0 {
                self.0[src - 1] >> (64 - bits)
            } else {
                0
            };
            out[i] = lo | carry;
        }
        Big(out)
    }

    /// `self * m`; callers keep the product below 2^512.
    fn mul_small(&self, m: u64) -> Self {
        let mut out = [0u64; LIMBS];
        let mut carry: u128 = 0;
        for (o, &l) in out.iter_mut().zip(self.0.iter()) {
            let p = u128::from(l) * u128::from(m) + carry;
            *o = p as u64; // low half, truncation intended
            carry = p >> 64;
        }
        Big(out)
    }

    fn bit_len(&self) -> usize {
        for (i, &l) in self.0.iter().enumerate().rev() {
            if l != 0 {
                return i * 64 + 64 - l.leading_zeros() as usize;
            }
        }
        0
    }

    fn sub_assign(&mut self, other: &Big) {
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            let (d1, b1) = a.overflowing_sub(*b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *a = d2;
            borrow = b1 || b2;
        }
    }

    fn ge(&self, other: &Big) -> bool {
        for (a, b) in self.0.iter().rev().zip(other.0.iter().rev()) {
            if a != b {
                return a > b;
            }
        }
        true
    }
}

/// The maximal target 2^256 − 1.
const MAX_TARGET: [u8; 32] = [0xff; 32];

/// Share target for a difficulty given as a float, 32 bytes big-endian.
///
/// The float is interpreted as its shortest round-trip decimal (what the pool
/// wrote in the JSON for any value with at most 17 significant digits), so
/// `0.001` gives exactly `floor(0xFFFF · 2^208 · 1000)`.
pub fn difficulty_to_target(difficulty: f64) -> Result<[u8; 32], TargetError> {
    if !difficulty.is_finite() || difficulty <= 0.0 {
        return Err(TargetError::InvalidDifficulty(difficulty));
    }
    // `{:e}` prints the shortest digits that round-trip, e.g. "1.5e-5".
    let text = format!("{difficulty:e}");
    let (digits, exp) = text.split_once('e').unwrap_or((text.as_str(), "0"));
    let mut exp10: i32 = exp.parse().unwrap_or(0);
    let mut mantissa: u64 = 0;
    let mut after_point = false;
    for c in digits.chars() {
        match c {
            '.' => after_point = true,
            d => {
                let Some(v) = d.to_digit(10) else {
                    return Err(TargetError::InvalidDifficulty(difficulty));
                };
                // At most 17 significant digits: fits a u64.
                mantissa = mantissa.saturating_mul(10).saturating_add(u64::from(v));
                if after_point {
                    exp10 -= 1;
                }
            }
        }
    }
    decimal_difficulty_to_target(mantissa, exp10)
}

/// Share target for the exact decimal difficulty `mantissa · 10^exp10`.
///
/// Used directly for integer difficulties (exact beyond 2^53) and by
/// [`difficulty_to_target`]. A zero mantissa is rejected.
pub fn decimal_difficulty_to_target(mantissa: u64, exp10: i32) -> Result<[u8; 32], TargetError> {
    if mantissa == 0 {
        return Err(TargetError::InvalidDifficulty(0.0));
    }
    // target ≥ 2^256 ⇔ 0xFFFF·10^(−e) ≥ m·2^48; with m < 2^64 that holds
    // once 10^(−e) ≥ 2^97, i.e. e ≤ −30.
    if exp10 <= -30 {
        return Ok(MAX_TARGET);
    }
    // The denominator m·10^e then exceeds the numerator (< 2^224).
    if exp10 >= 90 {
        return Ok([0u8; 32]);
    }
    let mut numerator = Big::from_u64(0xFFFF).shl(208);
    let mut denominator = Big::from_u64(mantissa);
    for _ in 0..exp10.unsigned_abs() {
        if exp10 < 0 {
            numerator = numerator.mul_small(10);
        } else {
            denominator = denominator.mul_small(10);
        }
    }
    // Restoring binary long division; numerator < 2^322 and the remainder
    // stays below 2·denominator < 2^362, well inside 512 bits.
    let mut quotient = Big::from_u64(0);
    let mut remainder = Big::from_u64(0);
    for i in (0..numerator.bit_len()).rev() {
        remainder = remainder.shl(1);
        if numerator.bit(i) {
            remainder.0[0] |= 1;
        }
        if remainder.ge(&denominator) {
            remainder.sub_assign(&denominator);
            quotient.set_bit(i);
        }
    }
    if quotient.0[4..].iter().any(|&l| l != 0) {
        return Ok(MAX_TARGET);
    }
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(8).zip(quotient.0[..4].iter().rev()) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_target(d: f64) -> String {
        hex::encode(difficulty_to_target(d).unwrap())
    }

    #[test]
    fn vectors() {
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
            (
                0.001,
                "000003e7fc180000000000000000000000000000000000000000000000000000",
            ),
            (
                1.52587890625e-05,
                "0000ffff00000000000000000000000000000000000000000000000000000000",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(hex_target(d), want, "difficulty {d}");
        }
    }

    #[test]
    fn one_trillion() {
        // Computed independently: hex(0xFFFF * 2**208 // 10**12).
        assert_eq!(
            hex_target(1e12),
            "00000000000000000119787e99468e32f6e0e71cef78ee034b5f8a0944d68076"
        );
    }

    #[test]
    fn saturates_and_rejects() {
        assert_eq!(difficulty_to_target(1e-300).unwrap(), MAX_TARGET);
        assert_eq!(
            difficulty_to_target(f64::MIN_POSITIVE / 4.0).unwrap(),
            MAX_TARGET
        );
        assert_eq!(difficulty_to_target(f64::MAX).unwrap(), [0u8; 32]);
        assert_eq!(
            hex_target(1e30),
            "00000000000000000000000000000000144837b69fc3b3c3949e7c4a84ba6b28"
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(difficulty_to_target(bad).is_err());
        }
        // 2^-32 prints as 2.3283064365386963e-10; values from Python's Fraction.
        assert_eq!(
            hex_target(2f64.powi(-32)),
            "fffeffffffffffa95873f77ee99ed478e4f34c1f0207036c6ffca15911192c75"
        );
        assert_eq!(hex_target(2f64.powi(-40)), hex::encode(MAX_TARGET));
        assert_eq!(
            hex::encode(decimal_difficulty_to_target(u64::MAX, 0).unwrap()),
            "000000000000000000000000ffff000000000000ffff000000000000ffff0000"
        );
        assert!(decimal_difficulty_to_target(0, 3).is_err());
    }
}
