//! The two checksums of the BM13xx wire format.
//!
//! Command frames and every reply end in a 5-bit CRC (polynomial
//! x⁵ + x² + 1, register preset to all ones, bits fed most significant
//! first, no final inversion) computed over the bytes after the preamble.
//! Job frames are long enough that the chips want a 16-bit CRC instead:
//! CRC-16/CCITT-FALSE (polynomial 0x1021, preset 0xFFFF), sent big-endian.

/// CRC-5 over whole bytes, as the chips check command frames: the caller
/// passes the frame without its two preamble bytes and without the CRC byte.
/// Because no final inversion is applied, feeding the bytes *and* the CRC
/// (aligned to the low five bits of the last byte) yields zero, which is how
/// replies are checked.
pub fn crc5(data: &[u8]) -> u8 {
    crc5_bits(data, data.len() * 8)
}

/// CRC-5 over the first `bits` bits of `data` (most significant bit of each
/// byte first). Replies carry three flag bits in front of their CRC in the
/// last byte, and those flag bits are covered by the CRC, so the encoder
/// needs a bit-granular form.
pub fn crc5_bits(data: &[u8], bits: usize) -> u8 {
    let mut crc: u8 = 0x1f;
    let bits = bits.min(data.len() * 8);
    for i in 0..bits {
        let bit = (data[i / 8] >> (7 - (i % 8))) & 1;
        let feedback = ((crc >> 4) ^ bit) & 1;
        crc = ((crc << 1) & 0x1f) ^ if feedback == 1 { 0x05 } else { 0 };
    }
    crc
}

/// Lookup table for [`crc16_false`], built at compile time so the job path
/// costs one table read per byte.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final
/// XOR) over the job frame bytes after the preamble; the chips expect it
/// big-endian at the end of the frame.
pub fn crc16_false(data: &[u8]) -> u16 {
    data.iter().fold(0xffff_u16, |crc, &b| {
        CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)] ^ (crc << 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit CRC-16 to cross-check the table.
    fn crc16_slow(data: &[u8]) -> u16 {
        let mut crc = 0xffffu16;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc5_known_command_frames() {
        // Chain inactive, broadcast: 55 AA 53 05 00 00 03.
        assert_eq!(crc5(&[0x53, 0x05, 0x00, 0x00]), 0x03);
        // Read register 0 (chip id) on all chips: 55 AA 52 05 00 00 0A.
        assert_eq!(crc5(&[0x52, 0x05, 0x00, 0x00]), 0x0A);
        // Set chip address 0: 55 AA 40 05 00 00 1C.
        assert_eq!(crc5(&[0x40, 0x05, 0x00, 0x00]), 0x1C);
        // ESP-Miner's BM1366 init writes (broadcast and single chip).
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0xA8, 0x00, 0x07, 0x00, 0x00]),
            0x03
        );
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0x3C, 0x80, 0x00, 0x85, 0x40]),
            0x0C
        );
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0x3C, 0x80, 0x00, 0x80, 0x20]),
            0x19
        );
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0xA4, 0x90, 0x00, 0xFF, 0xFF]),
            0x1C
        );
        assert_eq!(
            crc5(&[0x41, 0x09, 0x00, 0x2C, 0x00, 0x7C, 0x00, 0x03]),
            0x03
        );
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0x28, 0x11, 0x30, 0x02, 0x00]),
            0x03
        );
    }

    #[test]
    fn crc5_of_frame_with_its_crc_is_zero() {
        let mut reply = [0x13, 0x70, 0, 0, 0, 0, 0, 0, 0];
        reply[8] = crc5_bits(&reply, 64 + 3);
        assert_eq!(crc5(&reply), 0);
        // With the job flag set the CRC differs, and still checks to zero.
        let mut job = [0x12, 0x34, 0x56, 0x78, 0x00, 0x18, 0x00, 0x01, 0x80];
        job[8] |= crc5_bits(&job, 64 + 3);
        assert_eq!(crc5(&job), 0);
        job[3] ^= 0x10;
        assert_ne!(crc5(&job), 0);
    }

    #[test]
    fn crc16_false_check_value_and_table() {
        // The catalogue check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16_false(b"123456789"), 0x29B1);
        let data: Vec<u8> = (0..=255u8).rev().collect();
        assert_eq!(crc16_false(&data), crc16_slow(&data));
        assert_eq!(crc16_false(&[]), 0xFFFF);
    }
}
