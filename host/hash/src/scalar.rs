//! Portable fallback: correct everywhere, fast nowhere.

use crate::backend::{Backend, Prepared};

/// Straightforward SHA-256d per nonce via the `sha2` compression function.
pub struct Scalar;

impl Backend for Scalar {
    fn name(&self) -> &'static str {
        "scalar"
    }

    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32)) {
        let mut block = [0u8; 64];
        block[..12].copy_from_slice(&job.header[64..76]);
        block[16] = 0x80;
        block[62] = 0x02;
        block[63] = 0x80; // 640 bits
        let mut second = [0u8; 64];
        second[32] = 0x80;
        second[62] = 0x01; // 256 bits
        for i in 0..count {
            let nonce = start.wrapping_add(i);
            block[12..16].copy_from_slice(&nonce.to_le_bytes());
            let mut s = job.midstate;
            crate::sha256::compress(&mut s, &block);
            for (j, w) in s.iter().enumerate() {
                second[j * 4..j * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            let mut h = crate::sha256::IV;
            crate::sha256::compress(&mut h, &second);
            if job.meets(&h) {
                found(nonce);
            }
        }
    }
}
