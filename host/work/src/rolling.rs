//! BIP 320 version rolling.
//!
//! With version rolling negotiated (BIP 310) the pool lets the miner change
//! the header version inside a mask, which multiplies the work available per
//! job without touching the coinbase. Counters are mapped onto the mask's
//! bits so that every counter value gives a distinct, allowed version.

/// The `n`-th version of the rolling space: deposits the low bits of `n`
/// into the bit positions of `mask` (lowest mask bit first, like the x86
/// `pdep` instruction) and keeps the bits of `base` outside the mask.
///
/// Bits of `n` beyond `mask.count_ones()` are ignored, so `n` wraps modulo
/// [`rolling_space`]`(mask)`. With a zero mask the result is always `base`.
pub fn rolled_version(base: u32, mask: u32, n: u64) -> u32 {
    let mut out = base & !mask;
    let mut rest = mask;
    let mut k = 0u32;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg(); // lowest remaining mask bit
        if (n >> k) & 1 == 1 {
            out |= bit;
        }
        rest &= rest - 1;
        k += 1;
    }
    out
}

/// How many distinct versions `mask` allows: `2^popcount(mask)`
/// (1 for a zero mask, `2^32` for `0xffffffff`).
pub fn rolling_space(mask: u32) -> u64 {
    1u64 << mask.count_ones()
}

/// Whether `version` only differs from `base` inside `mask`, i.e. whether a
/// pool that granted `mask` accepts it for a job announced with `base`.
pub fn version_bits_ok(base: u32, mask: u32, version: u32) -> bool {
    (base ^ version) & !mask == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standard_bip320_mask() {
        let mask = 0x1fff_e000;
        let base = 0x2000_0000;
        assert_eq!(rolling_space(mask), 1 << 16);
        assert_eq!(rolled_version(base, mask, 0), base);
        assert_eq!(rolled_version(base, mask, 1), 0x2000_2000);
        assert_eq!(rolled_version(base, mask, 2), 0x2000_4000);
        assert_eq!(rolled_version(base, mask, 0xffff), 0x3fff_e000);
        // Wraps: bit 16 of n has no mask bit to go to.
        assert_eq!(rolled_version(base, mask, 0x1_0000), base);
        // Base bits inside the mask are replaced, outside kept.
        assert_eq!(rolled_version(0xffff_ffff, mask, 0), 0xe000_1fff);
        assert!(version_bits_ok(base, mask, 0x20b2_c000));
        assert!(!version_bits_ok(base, mask, 0x20b2_c001));
        assert!(!version_bits_ok(base, mask, 0x60b2_c000));
    }

    #[test]
    fn zero_mask() {
        assert_eq!(rolling_space(0), 1);
        for n in [0, 1, 12345, u64::MAX] {
            assert_eq!(rolled_version(0x2000_0004, 0, n), 0x2000_0004);
        }
        assert!(version_bits_ok(7, 0, 7));
        assert!(!version_bits_ok(7, 0, 6));
    }

    #[test]
    fn full_mask() {
        assert_eq!(rolling_space(0xffff_ffff), 1 << 32);
        assert_eq!(rolled_version(0x1234_5678, 0xffff_ffff, 0), 0);
        assert_eq!(
            rolled_version(0x1234_5678, 0xffff_ffff, 0xdead_beef),
            0xdead_beef
        );
        assert_eq!(rolled_version(0, 0xffff_ffff, (1 << 32) - 1), 0xffff_ffff);
        assert_eq!(rolled_version(0, 0xffff_ffff, 1 << 32), 0);
        assert!(version_bits_ok(0, 0xffff_ffff, 0xffff_ffff));
    }

    #[test]
    fn single_bit_masks() {
        assert_eq!(rolling_space(1 << 31), 2);
        assert_eq!(rolled_version(0, 1 << 31, 0), 0);
        assert_eq!(rolled_version(0, 1 << 31, 1), 1 << 31);
        assert_eq!(rolled_version(0, 1 << 31, 2), 0);
        assert_eq!(rolled_version(0xffff_ffff, 1, 0), 0xffff_fffe);
        assert_eq!(rolled_version(0xffff_fffe, 1, 1), 0xffff_ffff);
    }

    #[test]
    fn scattered_mask() {
        // Mask bits 1, 4, 5, 30: n's bits go there in order.
        let mask = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 30);
        assert_eq!(rolled_version(0, mask, 0b0001), 1 << 1);
        assert_eq!(rolled_version(0, mask, 0b0010), 1 << 4);
        assert_eq!(rolled_version(0, mask, 0b0100), 1 << 5);
        assert_eq!(rolled_version(0, mask, 0b1000), 1 << 30);
        assert_eq!(rolled_version(0, mask, 0b1111), mask);
    }

    proptest! {
        #[test]
        fn stays_within_mask(base: u32, mask: u32, n: u64) {
            let v = rolled_version(base, mask, n);
            prop_assert!(version_bits_ok(base, mask, v));
            prop_assert_eq!(v & !mask, base & !mask);
        }

        #[test]
        fn injective_below_space(base: u32, mask: u32, a: u64, b: u64) {
            let space = rolling_space(mask);
            let (a, b) = (a % space, b % space);
            prop_assume!(a != b);
            prop_assert_ne!(rolled_version(base, mask, a), rolled_version(base, mask, b));
        }

        #[test]
        fn small_masks_enumerate_all(base: u32, mask in any::<u32>().prop_map(|m| m & 0x0101_0a03)) {
            // Every n < space gives a distinct version (exhaustively).
            let mut seen = std::collections::HashSet::new();
            for n in 0..rolling_space(mask) {
                prop_assert!(seen.insert(rolled_version(base, mask, n)));
            }
        }
    }
}
