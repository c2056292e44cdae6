//! Portable SHA-256 building blocks shared by the backends.

/// SHA-256 initial state.
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Compresses one 64-byte block into `state`.
pub fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, &[(*block).into()]);
}

/// SHA-256d of an 80-byte block header, in hash (internal) byte order.
pub fn sha256d(header: &[u8; 80]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let first = Sha256::digest(header);
    Sha256::digest(first).into()
}
