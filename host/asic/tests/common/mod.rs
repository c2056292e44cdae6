//! Fixtures shared by the chain tests.
#![allow(dead_code)]

/// Bitcoin block 125552's header: version 1, nonce 2504433986 (public), so
/// a job built from it has a known answer.
pub fn block_125552() -> [u8; 80] {
    let mut prev =
        hex::decode("00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81").unwrap();
    prev.reverse();
    let mut merkle =
        hex::decode("2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3").unwrap();
    merkle.reverse();
    let mut h = [0u8; 80];
    h[0..4].copy_from_slice(&1u32.to_le_bytes());
    h[4..36].copy_from_slice(&prev);
    h[36..68].copy_from_slice(&merkle);
    h[68..72].copy_from_slice(&1_305_998_791u32.to_le_bytes());
    h[72..76].copy_from_slice(&0x1a44_b9f2u32.to_le_bytes());
    h[76..80].copy_from_slice(&2_504_433_986u32.to_le_bytes());
    h
}
