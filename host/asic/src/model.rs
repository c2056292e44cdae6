//! What differs between the BM1366, BM1368 and BM1370.
//!
//! The three chips share one wire format; they differ in their chip id,
//! core layout, how many job-id bits survive into their nonce replies, the
//! PLL feedback-divider range and a few init register values. Everything
//! here is a pure function so the driver, the emulator and the tests agree
//! by construction.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Reference clock of the chips (the 25 MHz crystal every board uses).
pub const REF_CLOCK_MHZ: f32 = 25.0;

/// Size of the 32-bit nonce space one job offers.
pub const NONCE_SPACE: u64 = 1 << 32;

/// Version bits the chips can roll: the reply's 16-bit version field is
/// shifted left by 13, so only bits 13..=28 can be reported.
pub const VERSION_FIELD_MASK: u32 = 0x1fff_e000;

/// The chips hashwatt drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Model {
    /// Bitmain BM1366 (S19 XP, Bitaxe Ultra).
    BM1366,
    /// Bitmain BM1368 (S21, Bitaxe Supra).
    BM1368,
    /// Bitmain BM1370 (S21 Pro, Bitaxe Gamma).
    BM1370,
}

/// An unknown model name or chip id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ASIC model {0:?} (known: BM1366, BM1368, BM1370)")]
pub struct UnknownModel(pub String);

/// PLL settings for register 0x08, as the chips take them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pll {
    /// Feedback divider (VCO = 25 MHz × fb_div / ref_div).
    pub fb_div: u8,
    /// Reference divider (1 or 2).
    pub ref_div: u8,
    /// First post divider (1..=7, larger than `post_div2`).
    pub post_div1: u8,
    /// Second post divider (1..=7).
    pub post_div2: u8,
    /// The frequency these settings produce, MHz.
    pub actual_mhz: f32,
}

impl Pll {
    /// The VCO frequency, MHz; the chips need a higher VCO range flag at
    /// 2.4 GHz and above.
    pub fn vco_mhz(&self) -> f32 {
        REF_CLOCK_MHZ * f32::from(self.fb_div) / f32::from(self.ref_div)
    }

    /// The 32-bit value of register 0x08: VCO range flag, fb_div, ref_div,
    /// and the two post dividers minus one, one nibble each.
    pub fn register_value(&self) -> u32 {
        let range: u32 = if self.vco_mhz() >= 2400.0 { 0x50 } else { 0x40 };
        let post = (u32::from(self.post_div1.saturating_sub(1)) & 0xf) << 4
            | (u32::from(self.post_div2.saturating_sub(1)) & 0xf);
        range << 24 | u32::from(self.fb_div) << 16 | u32::from(self.ref_div) << 8 | post
    }

    /// Decodes register 0x08 back to a frequency (what a chip runs at after
    /// the write); `None` for a value with a zero divider.
    pub fn frequency_from_register(value: u32) -> Option<f32> {
        let fb = (value >> 16) & 0xff;
        let rd = (value >> 8) & 0xff;
        let p1 = ((value >> 4) & 0xf) + 1;
        let p2 = (value & 0xf) + 1;
        if fb == 0 || rd == 0 {
            return None;
        }
        Some(REF_CLOCK_MHZ * fb as f32 / (rd * p1 * p2) as f32)
    }
}

impl Model {
    /// Every model, for iteration in tests and configuration help.
    pub const ALL: [Model; 3] = [Model::BM1366, Model::BM1368, Model::BM1370];

    /// The chip id in the top half of register 0, as a chip-id read returns it.
    pub fn chip_id(self) -> u16 {
        match self {
            Model::BM1366 => 0x1366,
            Model::BM1368 => 0x1368,
            Model::BM1370 => 0x1370,
        }
    }

    /// The model whose chips answer with `id`.
    pub fn from_chip_id(id: u16) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.chip_id() == id)
    }

    /// Big cores per chip (each reports its id in the top seven nonce bits).
    pub fn cores(self) -> u32 {
        match self {
            Model::BM1366 => 112,
            Model::BM1368 => 80,
            Model::BM1370 => 128,
        }
    }

    /// Small cores per chip: the hashes per clock cycle, which sets the
    /// hashrate.
    pub fn small_cores(self) -> u32 {
        match self {
            Model::BM1366 => 894,
            Model::BM1368 => 1276,
            Model::BM1370 => 2040,
        }
    }

    /// Small cores per big core as reported in the reply's job-id byte
    /// (3 bits on the BM1366, 4 on the others).
    pub fn small_core_bits(self) -> u32 {
        match self {
            Model::BM1366 => 3,
            Model::BM1368 | Model::BM1370 => 4,
        }
    }

    /// Default core clock, MHz (the vendor boards' stock setting).
    pub fn default_frequency_mhz(self) -> f32 {
        match self {
            Model::BM1366 => 485.0,
            Model::BM1368 => 490.0,
            Model::BM1370 => 525.0,
        }
    }

    /// Core clocks hashwatt accepts, MHz: what the PLL can produce within
    /// the feedback-divider range, capped at a margin above the fastest
    /// stock option so a typo cannot cook a board.
    pub fn frequency_range_mhz(self) -> RangeInclusive<f32> {
        match self {
            Model::BM1366 => 50.0..=650.0,
            Model::BM1368 => 50.0..=650.0,
            Model::BM1370 => 50.0..=800.0,
        }
    }

    /// The frequency the chips run at after reset, before the host's first
    /// PLL write; the ramp starts here.
    pub fn reset_frequency_mhz(self) -> f32 {
        50.0
    }

    /// Permitted PLL feedback dividers.
    pub fn fb_div_range(self) -> RangeInclusive<u16> {
        match self {
            Model::BM1366 | Model::BM1368 => 144..=235,
            Model::BM1370 => 160..=239,
        }
    }

    /// PLL settings closest to `mhz`: among dividers within range, the
    /// closest frequency, then the lowest VCO, then the smallest post
    /// divider product (a low VCO saves power). `None` if nothing fits.
    pub fn pll_for(self, mhz: f32) -> Option<Pll> {
        if !mhz.is_finite() || mhz <= 0.0 {
            return None;
        }
        let fb_range = self.fb_div_range();
        let mut best: Option<(f32, f32, u16, Pll)> = None;
        const EPS: f32 = 1e-4;
        for ref_div in [2u8, 1] {
            for p1 in (1u8..=7).rev() {
                for p2 in (1u8..p1).rev() {
                    let div = f32::from(ref_div) * f32::from(p1) * f32::from(p2);
                    let fb = (mhz / REF_CLOCK_MHZ * div).round();
                    if fb < f32::from(*fb_range.start()) || fb > f32::from(*fb_range.end()) {
                        continue;
                    }
                    let actual = REF_CLOCK_MHZ * fb / div;
                    let diff = (mhz - actual).abs();
                    let vco = REF_CLOCK_MHZ * fb / f32::from(ref_div);
                    let prod = u16::from(p1) * u16::from(p2);
                    let better = match &best {
                        None => true,
                        Some((bd, bv, bp, _)) => {
                            diff < *bd - EPS
                                || ((diff - *bd).abs() < EPS && vco < *bv - EPS)
                                || ((diff - *bd).abs() < EPS
                                    && (vco - *bv).abs() < EPS
                                    && prod < *bp)
                        }
                    };
                    if better {
                        let pll = Pll {
                            fb_div: fb as u8,
                            ref_div,
                            post_div1: p1,
                            post_div2: p2,
                            actual_mhz: actual,
                        };
                        best = Some((diff, vco, prod, pll));
                    }
                }
            }
        }
        best.map(|b| b.3)
    }

    /// Step between successive job ids the driver hands out. Ids are kept
    /// to multiples of 8 below 128 so the bits each model copies into its
    /// replies are enough to recover them.
    pub fn job_id_step(self) -> u8 {
        match self {
            Model::BM1366 => 8,
            Model::BM1368 | Model::BM1370 => 24,
        }
    }

    /// The job id after `prev` in this model's sequence (16 distinct ids).
    pub fn next_job_id(self, prev: u8) -> u8 {
        ((u16::from(prev) + u16::from(self.job_id_step())) % 128) as u8
    }

    /// Number of distinct job ids the sequence cycles through.
    pub fn job_id_count(self) -> usize {
        16
    }

    /// The job id encoded in byte 7 of a nonce reply. The BM1366 keeps the
    /// id's top five bits in place (low three carry the small core); the
    /// BM1368/BM1370 shift bits 3..=6 of the id up by one (low four carry the
    /// small core).
    pub fn job_id_from_reply(self, id_byte: u8) -> u8 {
        match self {
            Model::BM1366 => id_byte & 0xf8,
            Model::BM1368 | Model::BM1370 => (id_byte & 0xf0) >> 1,
        }
    }

    /// The small-core number in byte 7 of a nonce reply.
    pub fn small_core_from_reply(self, id_byte: u8) -> u8 {
        id_byte & ((1u8 << self.small_core_bits()) - 1)
    }

    /// Byte 7 of a nonce reply as a chip of this model builds it from the
    /// job id and the small core that found the nonce (the emulator's side of
    /// [`Model::job_id_from_reply`]).
    pub fn reply_id_byte(self, job_id: u8, small_core: u8) -> u8 {
        let sc = small_core & ((1u8 << self.small_core_bits()) - 1);
        match self {
            Model::BM1366 => (job_id & 0xf8) | sc,
            Model::BM1368 | Model::BM1370 => ((job_id << 1) & 0xf0) | sc,
        }
    }

    /// Ticket difficulty the stock firmware programs (nonces reported at
    /// difficulty 256 keep the UART far from saturation).
    pub fn default_ticket_difficulty(self) -> u32 {
        256
    }

    /// Hash counting number (register 0x10): how many nonces each core
    /// sweeps before moving to the next version, half the time a full
    /// per-core sweep would take so cores never overlap. The BM1370 loses a
    /// few clock cycles per sweep (an erratum), so it gets a margin.
    pub fn hash_counting_number(self, frequency_mhz: f32, chips: usize) -> u32 {
        if frequency_mhz.is_nan() || frequency_mhz <= 0.0 {
            return 0;
        }
        let space = NONCE_SPACE as f64
            / f64::from(self.cores().next_power_of_two())
            / chips.max(1).next_power_of_two() as f64;
        let max = space * f64::from(REF_CLOCK_MHZ) / f64::from(frequency_mhz) * 0.5;
        let value = match self {
            Model::BM1370 => max - 268.0,
            _ => max,
        };
        value.clamp(0.0, f64::from(u32::MAX)) as u32
    }

    /// Expected hashrate of `chips` chips at `frequency_mhz`, hashes per
    /// second: every small core finishes one hash per clock.
    pub fn expected_hashrate_hs(self, frequency_mhz: f32, chips: usize) -> f64 {
        f64::from(frequency_mhz) * 1e6 * f64::from(self.small_cores()) * chips as f64
    }
}

impl fmt::Display for Model {
    /// The marketing name ("BM1366"), as configurations spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::BM1366 => "BM1366",
            Model::BM1368 => "BM1368",
            Model::BM1370 => "BM1370",
        })
    }
}

impl FromStr for Model {
    type Err = UnknownModel;

    /// Accepts "BM1366" in any case, or the bare number "1366".
    fn from_str(s: &str) -> Result<Model, UnknownModel> {
        let t = s.trim();
        let digits = t
            .strip_prefix("BM")
            .or_else(|| t.strip_prefix("bm"))
            .or_else(|| t.strip_prefix("Bm"))
            .or_else(|| t.strip_prefix("bM"))
            .unwrap_or(t);
        match digits {
            "1366" => Ok(Model::BM1366),
            "1368" => Ok(Model::BM1368),
            "1370" => Ok(Model::BM1370),
            _ => Err(UnknownModel(s.to_string())),
        }
    }
}

/// Address distance between neighbouring chips: the 8-bit address space
/// split evenly over the chip count rounded up to a power of two, so the
/// chip index is simply the address divided by the interval (and the
/// nonce space splits evenly too). `None` for 0 or more than 256 chips.
pub fn address_interval(chips: usize) -> Option<u16> {
    if chips == 0 || chips > 256 {
        return None;
    }
    // As the public drivers do: 256 / chips, so a 6-chip board gets
    // addresses 0, 42, 84…
    Some((256 / chips) as u16)
}

/// The address the driver gives chip `index` of a `chips`-long chain.
pub fn chip_address(index: usize, chips: usize) -> Option<u8> {
    let iv = address_interval(chips)?;
    if index >= chips {
        return None;
    }
    Some((index as u16 * iv) as u8)
}

/// The chip index owning `address` (or an address inside its slice of the
/// address space); `None` past the end of the chain.
pub fn chip_index(address: u8, chips: usize) -> Option<usize> {
    let iv = address_interval(chips)?;
    // The slice past the last chip's (256 not divisible by `chips`)
    // belongs to the last chip.
    Some(usize::from(u16::from(address) / iv).min(chips - 1))
}

/// The nonce as the chips see it: its header bytes (offset 76..80) read
/// big-endian. The chips lay their identity out in this view.
fn nonce_view(nonce: u32) -> u32 {
    nonce.swap_bytes()
}

/// The chip-address field inside a nonce (`nonce` as it goes into the
/// header, little-endian at offset 76): bits 17..=24 of the big-endian view.
/// Each chip only searches nonces whose field falls in its address slice,
/// which is how the driver tells chips apart.
pub fn nonce_chip_address(nonce: u32) -> u8 {
    ((nonce_view(nonce) >> 17) & 0xff) as u8
}

/// The big-core id inside a nonce: the top seven bits of the big-endian view.
pub fn nonce_core_id(nonce: u32) -> u8 {
    ((nonce_view(nonce) >> 25) & 0x7f) as u8
}

/// Nonces each chip owns in one job's 32-bit space.
pub fn nonce_space_per_chip(chips: usize) -> u64 {
    NONCE_SPACE / chips.clamp(1, 256).next_power_of_two() as u64
}

/// Nonces each big core of a chip owns in one job's 32-bit space.
pub fn nonce_space_per_core(model: Model, chips: usize) -> u64 {
    nonce_space_per_chip(chips) / u64::from(model.cores().next_power_of_two())
}

/// Writes the rolled version bits a reply reports into a job's version:
/// bits outside `mask` come from the job, bits inside from the reply's
/// 16-bit field (shifted into bits 13..=28).
pub fn apply_version_bits(version: u32, mask: u32, field: u16) -> u32 {
    let m = mask & VERSION_FIELD_MASK;
    (version & !m) | ((u32::from(field) << 13) & m)
}

/// The reply's 16-bit version field for a rolled version (the emulator's
/// side of [`apply_version_bits`]).
pub fn version_field(rolled: u32, mask: u32) -> u16 {
    (((rolled & mask & VERSION_FIELD_MASK) >> 13) & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        for m in Model::ALL {
            assert_eq!(m.to_string().parse::<Model>().unwrap(), m);
            assert_eq!(Model::from_chip_id(m.chip_id()), Some(m));
        }
        assert_eq!("bm1368".parse::<Model>().unwrap(), Model::BM1368);
        assert_eq!("1370".parse::<Model>().unwrap(), Model::BM1370);
        assert!("BM1397".parse::<Model>().is_err());
        assert_eq!(Model::from_chip_id(0x1397), None);
    }

    #[test]
    fn pll_matches_public_register_values() {
        // 485 MHz on a BM1366: fb 0xC2 (194), ref 1, post 5/2 → 485 exactly.
        let p = Model::BM1366.pll_for(485.0).unwrap();
        assert!((p.actual_mhz - 485.0).abs() < 1e-3, "{p:?}");
        assert_eq!(
            Model::BM1366.pll_for(485.0).unwrap().actual_mhz,
            Pll::frequency_from_register(p.register_value()).unwrap()
        );
        for m in Model::ALL {
            for mhz in [50.0f32, 200.0, 400.0, 425.0, 490.0, 525.0, 600.0] {
                let p = m.pll_for(mhz).unwrap();
                assert!(m.fb_div_range().contains(&u16::from(p.fb_div)));
                assert!(p.post_div1 > p.post_div2);
                assert!((p.actual_mhz - mhz).abs() / mhz < 0.02, "{m} {mhz} {p:?}");
                let back = Pll::frequency_from_register(p.register_value()).unwrap();
                assert!((back - p.actual_mhz).abs() < 1e-3);
                let range = p.register_value() >> 24;
                assert_eq!(range == 0x50, p.vco_mhz() >= 2400.0);
            }
        }
        assert!(Model::BM1366.pll_for(-1.0).is_none());
        assert!(Model::BM1366.pll_for(f32::NAN).is_none());
    }

    #[test]
    fn job_ids_survive_each_models_reply_encoding() {
        for m in Model::ALL {
            let mut id = 0u8;
            let mut seen = std::collections::HashSet::new();
            for _ in 0..64 {
                id = m.next_job_id(id);
                seen.insert(id);
                for sc in 0..(1u8 << m.small_core_bits()) {
                    let byte = m.reply_id_byte(id, sc);
                    assert_eq!(m.job_id_from_reply(byte), id, "{m} id {id}");
                    assert_eq!(m.small_core_from_reply(byte), sc);
                }
            }
            assert_eq!(seen.len(), m.job_id_count(), "{m}");
        }
        // ESP-Miner's BM1368 decoding of a reply byte 0x35: job 0x18, core 5.
        assert_eq!(Model::BM1368.job_id_from_reply(0x35), 0x18);
        assert_eq!(Model::BM1366.job_id_from_reply(0x2d), 0x28);
    }

    #[test]
    fn addresses_and_nonce_fields() {
        assert_eq!(address_interval(1), Some(256));
        assert_eq!(address_interval(3), Some(85));
        // ESP-Miner's 6-chip boards: addresses 0, 0x2A, 0x54, 0x7E, 0xA8, 0xD2.
        let six: Vec<_> = (0..6).filter_map(|i| chip_address(i, 6)).collect();
        assert_eq!(six, [0x00, 0x2A, 0x54, 0x7E, 0xA8, 0xD2]);
        assert_eq!(
            chip_index(0xFF, 6),
            Some(5),
            "the tail slice is the last chip's"
        );
        assert_eq!(address_interval(4), Some(64));
        assert_eq!(address_interval(0), None);
        assert_eq!(address_interval(257), None);
        assert_eq!(chip_address(3, 4), Some(192));
        assert_eq!(chip_index(192, 4), Some(3));
        assert_eq!(chip_index(200, 4), Some(3));
        assert_eq!(chip_index(200, 3), Some(2));
        // Big-endian view 0xFE_FE_00_00: core 0x7F, address 0x7F.
        let nonce = u32::from_be_bytes([0x00, 0x00, 0xFE, 0xFE]);
        assert_eq!(nonce_core_id(nonce), 0x7f);
        assert_eq!(nonce_chip_address(nonce), 0x7f);
        let nonce = u32::from_le_bytes([0x01, 0x00, 0x00, 0x00]);
        assert_eq!(nonce_chip_address(nonce), 0x80);
        assert_eq!(nonce_core_id(nonce), 0);
        assert_eq!(nonce_space_per_chip(4), 1 << 30);
        assert_eq!(nonce_space_per_core(Model::BM1366, 1), 1 << 25);
    }

    #[test]
    fn version_bits_and_hashrate() {
        let v = apply_version_bits(0x2000_0000, 0x1fff_e000, 0x0001);
        assert_eq!(v, 0x2000_2000);
        assert_eq!(version_field(v, 0x1fff_e000), 1);
        assert_eq!(apply_version_bits(0x2000_0000, 0, 0xffff), 0x2000_0000);
        let hs = Model::BM1370.expected_hashrate_hs(525.0, 1);
        assert!((hs - 525e6 * 2040.0).abs() < 1.0);
        assert!(Model::BM1366.hash_counting_number(485.0, 1) > 0);
        assert!(
            Model::BM1370.hash_counting_number(525.0, 1)
                < Model::BM1370.hash_counting_number(400.0, 1)
        );
    }
}
