//! Synthetic but realistic mining jobs.
//!
//! Jobs look like what a real pool sends (BIP34 height in the coinbase
//! scriptSig, a P2PKH payout, random merkle branches) so the miner exercises
//! the same code paths it would against a real pool.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Value, json};

/// Block version announced in every job (BIP9 top bits set).
pub(crate) const JOB_VERSION: u32 = 0x2000_0000;
/// Compact network target announced in every job (difficulty 1).
pub(crate) const JOB_NBITS: u32 = 0x1d00_ffff;
/// Size of the per-connection extranonce1.
pub(crate) const EXTRANONCE1_SIZE: usize = 4;
/// Coinbase tag pushed after the BIP34 height.
const COINBASE_TAG: &[u8] = b"/hashwatt-devpool/";
/// Block subsidy paid by the synthetic coinbase (3.125 BTC).
const SUBSIDY_SATS: u64 = 312_500_000;

/// One job as announced in mining.notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// Monotonic sequence number; orders jobs for staleness checks.
    pub seq: u64,
    /// The job id sent to miners.
    pub id: String,
    /// Previous block hash in header (internal) byte order.
    pub prevhash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    /// Merkle branches in internal byte order, as sent in notify.
    pub branches: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    /// Whether this job was announced with clean_jobs=true.
    pub clean: bool,
}

/// Chain tip the synthetic jobs build on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tip {
    pub prevhash: [u8; 32],
    pub height: u32,
}

impl Tip {
    /// A fresh random tip at a plausible mainnet height.
    pub(crate) fn random() -> Self {
        let mut rng = rand::rng();
        Tip {
            prevhash: rng.random(),
            height: rng.random_range(850_000..950_000),
        }
    }

    /// The tip after a (synthetic) block was found.
    pub(crate) fn next(&self) -> Self {
        Tip {
            prevhash: rand::rng().random(),
            height: self.height.wrapping_add(1),
        }
    }
}

/// Current unix time as a u32 (saturating, never panicking).
pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Minimal-encoding BIP34 height push (`len` byte, then little-endian bytes).
fn bip34_height_push(height: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = height.to_le_bytes().to_vec();
    while bytes.len() > 1 && bytes.last() == Some(&0) {
        bytes.pop();
    }
    // A set top bit would make the script number negative: add a zero byte.
    if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        bytes.push(0);
    }
    let mut push = Vec::with_capacity(bytes.len() + 1);
    push.push(bytes.len() as u8);
    push.extend_from_slice(&bytes);
    push
}

/// Bitcoin CompactSize encoding.
fn compact_size(n: usize, out: &mut Vec<u8>) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
}

/// Build a new job on `tip`.
pub(crate) fn generate(
    seq: u64,
    tip: &Tip,
    extranonce2_size: usize,
    merkle_branches: usize,
    nbits: u32,
    clean: bool,
) -> Job {
    let mut rng = rand::rng();

    let height = bip34_height_push(tip.height);
    let mut tag = Vec::with_capacity(COINBASE_TAG.len() + 1);
    tag.push(COINBASE_TAG.len() as u8);
    tag.extend_from_slice(COINBASE_TAG);
    let script_len = height.len() + tag.len() + EXTRANONCE1_SIZE + extranonce2_size;

    let mut coinb1 = Vec::with_capacity(64);
    coinb1.extend_from_slice(&1u32.to_le_bytes()); // tx version
    coinb1.push(1); // one input
    coinb1.extend_from_slice(&[0u8; 32]); // null prevout hash
    coinb1.extend_from_slice(&u32::MAX.to_le_bytes()); // null prevout index
    compact_size(script_len, &mut coinb1);
    coinb1.extend_from_slice(&height);
    coinb1.extend_from_slice(&tag);

    let payout: [u8; 20] = rng.random();
    let mut coinb2 = Vec::with_capacity(48);
    coinb2.extend_from_slice(&u32::MAX.to_le_bytes()); // sequence
    coinb2.push(1); // one output
    coinb2.extend_from_slice(&SUBSIDY_SATS.to_le_bytes());
    coinb2.push(25); // P2PKH script length
    coinb2.extend_from_slice(&[0x76, 0xa9, 0x14]);
    coinb2.extend_from_slice(&payout);
    coinb2.extend_from_slice(&[0x88, 0xac]);
    coinb2.extend_from_slice(&0u32.to_le_bytes()); // locktime

    let branches = (0..merkle_branches).map(|_| rng.random()).collect();

    Job {
        seq,
        id: format!("{seq:x}"),
        prevhash: tip.prevhash,
        coinb1,
        coinb2,
        branches,
        version: JOB_VERSION,
        nbits,
        ntime: unix_now(),
        clean,
    }
}

/// Prevhash as Stratum sends it: each 4-byte word byte-swapped.
pub(crate) fn stratum_prevhash(prevhash: &[u8; 32]) -> String {
    let mut swapped = [0u8; 32];
    for (dst, src) in swapped.chunks_exact_mut(4).zip(prevhash.chunks_exact(4)) {
        for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
            *d = *s;
        }
    }
    hex::encode(swapped)
}

impl Job {
    /// The mining.notify params for this job with the given clean flag.
    pub(crate) fn notify_params(&self, clean: bool) -> Value {
        let branches: Vec<String> = self.branches.iter().map(hex::encode).collect();
        json!([
            self.id,
            stratum_prevhash(&self.prevhash),
            hex::encode(&self.coinb1),
            hex::encode(&self.coinb2),
            branches,
            format!("{:08x}", self.version),
            format!("{:08x}", self.nbits),
            format!("{:08x}", self.ntime),
            clean,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn height_push_is_minimal() {
        assert_eq!(bip34_height_push(0x2cacd2), vec![3, 0xd2, 0xac, 0x2c]);
        assert_eq!(bip34_height_push(0x80), vec![2, 0x80, 0x00]);
        assert_eq!(bip34_height_push(1), vec![1, 1]);
    }

    #[test]
    fn prevhash_word_swap() {
        // From the stratum docs vector: header order vs. notify order.
        let header: [u8; 32] =
            hex::decode("f8b6164d19e2f65a2aae448f787fe66d61e57a48c0c6771b1e920b4400000000")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            stratum_prevhash(&header),
            "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000"
        );
    }

    #[test]
    fn generated_coinbase_is_well_formed() {
        let tip = Tip {
            prevhash: [7; 32],
            height: 900_000,
        };
        let job = generate(42, &tip, 8, 3, JOB_NBITS, true);
        assert_eq!(job.id, "2a");
        assert_eq!(job.branches.len(), 3);
        // scriptSig length byte covers height push + tag + extranonces.
        let script_len = usize::from(job.coinb1[41]);
        let in_coinb1 = job.coinb1.len() - 42;
        assert_eq!(script_len, in_coinb1 + EXTRANONCE1_SIZE + 8);
        assert!(script_len <= 100);
        // Height push is the first item of the scriptSig.
        assert_eq!(&job.coinb1[42..46], &[3, 0xa0, 0xbb, 0x0d]);
        // coinb2: sequence, 1 output, value, P2PKH, locktime.
        assert_eq!(job.coinb2.len(), 4 + 1 + 8 + 1 + 25 + 4);
        assert_eq!(&job.coinb2[0..5], &[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(&job.coinb2[14..17], &[0x76, 0xa9, 0x14]);
        let params = job.notify_params(true);
        assert_eq!(params[5], "20000000");
        assert_eq!(params[6], "1d00ffff");
        assert_eq!(params[8], true);
    }
}
