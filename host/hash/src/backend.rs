//! The contract every SHA-256d scanning backend implements.
//!
//! A backend only scans: it gets a header prepared once (midstate of the
//! first 64 bytes, the constant words of the second block, the target) and a
//! nonce range, and reports the nonces whose double SHA-256 meets the target.
//! Choosing a backend, threads and work hand-off live elsewhere in the crate.

/// A header prepared for scanning: everything that does not depend on the
/// nonce is computed once here, so backends only do per-nonce work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The 80-byte header; its nonce field (bytes 76..80) is ignored.
    pub header: [u8; 80],
    /// SHA-256 state after compressing header bytes 0..64.
    pub midstate: [u32; 8],
    /// Second-block message words 0..3: header bytes 64..76 read big-endian
    /// (last 4 bytes of the merkle root, ntime, nbits).
    pub tail: [u32; 3],
    /// The target as eight big-endian words, most significant first
    /// (`target[0]` is bytes 0..4 of the usual display-order target).
    pub target: [u32; 8],
}

impl Prepared {
    /// Prepares `header` (nonce field ignored) for scanning against `target`
    /// given big-endian, in the usual display order.
    pub fn new(header: &[u8; 80], target: &[u8; 32]) -> Self {
        let mut midstate = crate::sha256::IV;
        crate::sha256::compress(&mut midstate, header[..64].try_into().expect("64 bytes"));
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let mut t = [0u32; 8];
        for (i, w) in t.iter_mut().enumerate() {
            *w = u32::from_be_bytes(target[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        }
        Prepared {
            header: *header,
            midstate,
            tail: [word(64), word(68), word(72)],
            target: t,
        }
    }

    /// The second SHA-256 message word 3 for `nonce`: the header stores the
    /// nonce little-endian, SHA-256 reads words big-endian.
    #[inline(always)]
    pub fn nonce_word(nonce: u32) -> u32 {
        nonce.swap_bytes()
    }

    /// The nonce-independent constants of the mining loop for this header
    /// (state after the second block's rounds 0..=3 without the nonce, fixed
    /// schedule words). Cheap (four rounds); backends call it once per scan.
    pub fn precompute(&self) -> crate::sha256::Precomputed {
        crate::sha256::Precomputed::new(&self.midstate, &self.tail)
    }

    /// The target's most significant 32 bits: a hash whose top word
    /// (`state[7].swap_bytes()`) is above it cannot meet the target, which
    /// lets backends skip the last rounds for almost every nonce.
    #[inline(always)]
    pub fn target_top(&self) -> u32 {
        self.target[0]
    }

    /// Whether a final double-SHA-256 state (the eight output words, before
    /// serialising to bytes) meets the target. The hash read as a 256-bit
    /// little-endian number has `state[7].swap_bytes()` as its most
    /// significant word.
    #[inline(always)]
    pub fn meets(&self, state: &[u32; 8]) -> bool {
        for i in 0..8 {
            let h = state[7 - i].swap_bytes();
            let t = self.target[i];
            if h != t {
                return h < t;
            }
        }
        true
    }
}

/// A SHA-256d nonce scanner.
///
/// Implementations must be exact: every nonce in the range whose hash meets
/// the target is reported, and no other. Early exits (e.g. skipping the last
/// rounds when the top word cannot meet the target) are allowed only when
/// they cannot drop a valid nonce.
pub trait Backend: Send + Sync + 'static {
    /// Short stable name used on the command line and in logs (e.g. `sha-ni-x4`).
    fn name(&self) -> &'static str;

    /// Hashes nonces `start ..= start + (count - 1)` (never wrapping past
    /// `u32::MAX`; callers guarantee `start as u64 + count as u64 <= 2^32`) and
    /// calls `found` for each nonce whose SHA-256d meets `job.target`, in any
    /// order. Must not allocate, lock or block.
    fn scan(&self, job: &Prepared, start: u32, count: u32, found: &mut dyn FnMut(u32));
}
