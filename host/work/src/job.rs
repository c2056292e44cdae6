//! Pool jobs: validation and header assembly.
//!
//! A plugin hands the host a [`JobSpec`] (the WIT `job` record, untrusted).
//! [`Job::validate`] checks every field once, so the mining loop can build
//! coinbases, merkle roots and headers from a [`Job`] without further checks.

use std::sync::Arc;

use crate::rolling::{rolled_version, version_bits_ok};
use crate::share::sha256d;
use crate::target::{Target, TargetError};

/// Longest accepted job id in bytes (pools use short hex ids).
pub const MAX_JOB_ID_LEN: usize = 256;
/// Longest accepted extranonce1 in bytes.
pub const MAX_EXTRANONCE1_LEN: usize = 32;
/// Accepted extranonce2 sizes in bytes (matches the WIT contract).
pub const EXTRANONCE2_SIZES: std::ops::RangeInclusive<u8> = 1..=16;
/// Longest accepted coinbase prefix or suffix in bytes.
pub const MAX_COINBASE_PART_LEN: usize = 64 * 1024;
/// Shortest accepted whole coinbase: a transaction needs at least version
/// (4), input count (1), outpoint (36) and script length (1) before the
/// scriptSig that carries the extranonces.
pub const MIN_COINBASE_LEN: usize = 42;
/// Most merkle branches accepted (2^32 transactions is far beyond any block).
pub const MAX_MERKLE_BRANCHES: usize = 32;

/// Why a job was rejected, or why a coinbase / merkle root could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Shares quote the job id, so it cannot be empty.
    #[error("job id is empty")]
    EmptyId,
    /// The job id is longer than [`MAX_JOB_ID_LEN`] bytes.
    #[error("job id is {len} bytes, at most {MAX_JOB_ID_LEN} allowed")]
    IdTooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The previous block hash must be 32 bytes.
    #[error("prev-hash must be 32 bytes, got {len}")]
    PrevHashLength {
        /// The length that was given.
        len: usize,
    },
    /// `nbits` is not a valid compact target.
    #[error("invalid nbits: {0}")]
    Nbits(#[source] TargetError),
    /// `nbits` decodes to zero: no hash could ever be a block.
    #[error("nbits {nbits:#010x} decodes to a zero network target")]
    ZeroNetworkTarget {
        /// The rejected compact target.
        nbits: u32,
    },
    /// extranonce1 is longer than [`MAX_EXTRANONCE1_LEN`] bytes.
    #[error("extranonce1 is {len} bytes, at most {MAX_EXTRANONCE1_LEN} allowed")]
    Extranonce1TooLong {
        /// The length that was given.
        len: usize,
    },
    /// extranonce2-size is outside 1..=16.
    #[error("extranonce2 size must be 1..=16 bytes, got {size}")]
    Extranonce2Size {
        /// The size that was given.
        size: u8,
    },
    /// The coinbase prefix is empty, so there is no transaction header.
    #[error("coinbase prefix is empty")]
    EmptyCoinbasePrefix,
    /// The coinbase prefix is longer than [`MAX_COINBASE_PART_LEN`].
    #[error("coinbase prefix is {len} bytes, at most {MAX_COINBASE_PART_LEN} allowed")]
    CoinbasePrefixTooLong {
        /// The length that was given.
        len: usize,
    },
    /// The coinbase suffix is longer than [`MAX_COINBASE_PART_LEN`].
    #[error("coinbase suffix is {len} bytes, at most {MAX_COINBASE_PART_LEN} allowed")]
    CoinbaseSuffixTooLong {
        /// The length that was given.
        len: usize,
    },
    /// The assembled coinbase would be shorter than [`MIN_COINBASE_LEN`].
    #[error("coinbase would be {len} bytes, at least {MIN_COINBASE_LEN} needed")]
    CoinbaseTooShort {
        /// The assembled length (prefix, both extranonces and suffix).
        len: usize,
    },
    /// More than [`MAX_MERKLE_BRANCHES`] merkle branches.
    #[error("{count} merkle branches, at most {MAX_MERKLE_BRANCHES} allowed")]
    TooManyBranches {
        /// The number of branches given.
        count: usize,
    },
    /// A merkle branch is not 32 bytes.
    #[error("merkle branch {index} must be 32 bytes, got {len}")]
    BranchLength {
        /// Position of the branch in the list.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// A fixed merkle root (merkle-root work) is not 32 bytes.
    #[error("merkle root must be 32 bytes, got {len}")]
    MerkleRootLength {
        /// The length that was given.
        len: usize,
    },
    /// The extranonce2 passed to `coinbase`/`merkle_root` has the wrong size
    /// (merkle-root work takes an empty one).
    #[error("extranonce2 must be {expected} bytes, got {got}")]
    Extranonce2Length {
        /// The job's extranonce2 size.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// Merkle-root work has no coinbase for the host to build.
    #[error("job has a fixed merkle root and no coinbase")]
    NoCoinbase,
}

/// How the job's merkle root is obtained, as the plugin sent it (WIT `work-kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkKindSpec {
    /// The host assembles coinbase and merkle root (WIT `extended-work`).
    Extended {
        /// Coinbase bytes before extranonce1 (Stratum V1 `coinb1`).
        coinbase_prefix: Vec<u8>,
        /// The pool-assigned extranonce1.
        extranonce1: Vec<u8>,
        /// Size of the host-chosen extranonce2 in bytes.
        extranonce2_size: u8,
        /// Coinbase bytes after extranonce2 (Stratum V1 `coinb2`).
        coinbase_suffix: Vec<u8>,
        /// Merkle branches in concatenation byte order.
        merkle_branches: Vec<Vec<u8>>,
    },
    /// The pool fixed the merkle root (32 bytes, header byte order).
    MerkleRoot(Vec<u8>),
}

/// A job exactly as a plugin handed it over (WIT `job`), not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The pool's job id, echoed in shares.
    pub id: String,
    /// How to build the merkle root.
    pub kind: WorkKindSpec,
    /// Previous block hash, 32 bytes in header byte order.
    pub prev_hash: Vec<u8>,
    /// Block version.
    pub version: u32,
    /// Version bits the host may roll (BIP 320); 0 when not negotiated.
    pub version_mask: u32,
    /// Compact network target.
    pub nbits: u32,
    /// Block time.
    pub ntime: u32,
    /// Whether all older jobs are invalid now.
    pub clean: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum WorkKind {
    Extended {
        prefix: Vec<u8>,
        extranonce1: Vec<u8>,
        extranonce2_size: usize,
        suffix: Vec<u8>,
        branches: Vec<[u8; 32]>,
    },
    MerkleRoot([u8; 32]),
}

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    id: String,
    kind: WorkKind,
    prev_hash: [u8; 32],
    version: u32,
    version_mask: u32,
    nbits: u32,
    ntime: u32,
    clean: bool,
    network_target: Target,
}

/// A validated job; cheap to clone (shared behind an `Arc`), safe to hand to
/// every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job(Arc<Inner>);

impl Job {
    /// Checks every field of an untrusted job; each problem is its own
    /// [`JobError`] variant. Never panics.
    pub fn validate(spec: JobSpec) -> Result<Job, JobError> {
        if spec.id.is_empty() {
            return Err(JobError::EmptyId);
        }
        if spec.id.len() > MAX_JOB_ID_LEN {
            return Err(JobError::IdTooLong { len: spec.id.len() });
        }
        let prev_hash = <[u8; 32]>::try_from(spec.prev_hash.as_slice()).map_err(|_| {
            JobError::PrevHashLength {
                len: spec.prev_hash.len(),
            }
        })?;
        let network_target = Target::from_nbits(spec.nbits).map_err(JobError::Nbits)?;
        if network_target == Target::ZERO {
            return Err(JobError::ZeroNetworkTarget { nbits: spec.nbits });
        }
        let kind = match spec.kind {
            WorkKindSpec::Extended {
                coinbase_prefix,
                extranonce1,
                extranonce2_size,
                coinbase_suffix,
                merkle_branches,
            } => {
                if extranonce1.len() > MAX_EXTRANONCE1_LEN {
                    return Err(JobError::Extranonce1TooLong {
                        len: extranonce1.len(),
                    });
                }
                if !EXTRANONCE2_SIZES.contains(&extranonce2_size) {
                    return Err(JobError::Extranonce2Size {
                        size: extranonce2_size,
                    });
                }
                if coinbase_prefix.is_empty() {
                    return Err(JobError::EmptyCoinbasePrefix);
                }
                if coinbase_prefix.len() > MAX_COINBASE_PART_LEN {
                    return Err(JobError::CoinbasePrefixTooLong {
                        len: coinbase_prefix.len(),
                    });
                }
                if coinbase_suffix.len() > MAX_COINBASE_PART_LEN {
                    return Err(JobError::CoinbaseSuffixTooLong {
                        len: coinbase_suffix.len(),
                    });
                }
                let total = coinbase_prefix.len()
                    + extranonce1.len()
                    + usize::from(extranonce2_size)
                    + coinbase_suffix.len();
                if total < MIN_COINBASE_LEN {
                    return Err(JobError::CoinbaseTooShort { len: total });
                }
                if merkle_branches.len() > MAX_MERKLE_BRANCHES {
                    return Err(JobError::TooManyBranches {
                        count: merkle_branches.len(),
                    });
                }
                let branches = merkle_branches
                    .iter()
                    .enumerate()
                    .map(|(index, b)| {
                        <[u8; 32]>::try_from(b.as_slice()).map_err(|_| JobError::BranchLength {
                            index,
                            len: b.len(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                WorkKind::Extended {
                    prefix: coinbase_prefix,
                    extranonce1,
                    extranonce2_size: usize::from(extranonce2_size),
                    suffix: coinbase_suffix,
                    branches,
                }
            }
            WorkKindSpec::MerkleRoot(root) => WorkKind::MerkleRoot(
                <[u8; 32]>::try_from(root.as_slice())
                    .map_err(|_| JobError::MerkleRootLength { len: root.len() })?,
            ),
        };
        Ok(Job(Arc::new(Inner {
            id: spec.id,
            kind,
            prev_hash,
            version: spec.version,
            version_mask: spec.version_mask,
            nbits: spec.nbits,
            ntime: spec.ntime,
            clean: spec.clean,
            network_target,
        })))
    }

    /// The pool's job id, quoted when submitting shares.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Whether this job invalidates all older ones.
    pub fn clean(&self) -> bool {
        self.0.clean
    }

    /// The base block version the pool announced.
    pub fn version(&self) -> u32 {
        self.0.version
    }

    /// The version bits the host may roll (0: no rolling).
    pub fn version_mask(&self) -> u32 {
        self.0.version_mask
    }

    /// The block time the pool announced.
    pub fn ntime(&self) -> u32 {
        self.0.ntime
    }

    /// The compact network target.
    pub fn nbits(&self) -> u32 {
        self.0.nbits
    }

    /// The decoded network target (non-zero): a hash meeting it is a block.
    pub fn network_target(&self) -> Target {
        self.0.network_target
    }

    /// The previous block hash in header byte order.
    pub fn prev_hash(&self) -> &[u8; 32] {
        &self.0.prev_hash
    }

    /// Whether the host builds the coinbase (extended work) rather than using
    /// a pool-fixed merkle root.
    pub fn is_extended(&self) -> bool {
        matches!(self.0.kind, WorkKind::Extended { .. })
    }

    /// The extranonce2 length a share must use; 0 for merkle-root work.
    pub fn extranonce2_size(&self) -> usize {
        match &self.0.kind {
            WorkKind::Extended {
                extranonce2_size, ..
            } => *extranonce2_size,
            WorkKind::MerkleRoot(_) => 0,
        }
    }

    /// The `n`-th version inside this job's rolling mask (see
    /// [`rolled_version`]).
    pub fn rolled_version(&self, n: u64) -> u32 {
        rolled_version(self.0.version, self.0.version_mask, n)
    }

    /// Whether `version` is allowed for this job (differs only inside the mask).
    pub fn version_allowed(&self, version: u32) -> bool {
        version_bits_ok(self.0.version, self.0.version_mask, version)
    }

    /// The coinbase transaction `prefix ‖ extranonce1 ‖ extranonce2 ‖ suffix`.
    /// Fails for a wrongly sized extranonce2 and for merkle-root work.
    pub fn coinbase(&self, extranonce2: &[u8]) -> Result<Vec<u8>, JobError> {
        match &self.0.kind {
            WorkKind::Extended {
                prefix,
                extranonce1,
                extranonce2_size,
                suffix,
                ..
            } => {
                check_en2(*extranonce2_size, extranonce2)?;
                let mut out = Vec::with_capacity(
                    prefix.len() + extranonce1.len() + extranonce2.len() + suffix.len(),
                );
                out.extend_from_slice(prefix);
                out.extend_from_slice(extranonce1);
                out.extend_from_slice(extranonce2);
                out.extend_from_slice(suffix);
                Ok(out)
            }
            WorkKind::MerkleRoot(_) => Err(JobError::NoCoinbase),
        }
    }

    /// The merkle root (header byte order) for `extranonce2`; merkle-root
    /// work takes an empty extranonce2 and returns the pool's root.
    pub fn merkle_root(&self, extranonce2: &[u8]) -> Result<[u8; 32], JobError> {
        match &self.0.kind {
            WorkKind::Extended { branches, .. } => {
                let coinbase = self.coinbase(extranonce2)?;
                Ok(fold_merkle_branches(sha256d(&coinbase), branches))
            }
            WorkKind::MerkleRoot(root) => {
                check_en2(0, extranonce2)?;
                Ok(*root)
            }
        }
    }

    /// The 80-byte header: version, prev-hash, merkle root, ntime, nbits and
    /// nonce, the numbers little-endian. Does not check `version` against
    /// the mask (see [`Job::version_allowed`]).
    pub fn header(&self, merkle_root: &[u8; 32], version: u32, ntime: u32, nonce: u32) -> [u8; 80] {
        // Fixed in-bounds ranges of a fixed-size array: cannot panic.
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&self.0.prev_hash);
        h[36..68].copy_from_slice(merkle_root);
        h[68..72].copy_from_slice(&ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.0.nbits.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }

    /// Convenience: merkle root and header in one step.
    pub fn header_for(
        &self,
        extranonce2: &[u8],
        version: u32,
        ntime: u32,
        nonce: u32,
    ) -> Result<[u8; 80], JobError> {
        let root = self.merkle_root(extranonce2)?;
        Ok(self.header(&root, version, ntime, nonce))
    }
}

fn check_en2(expected: usize, extranonce2: &[u8]) -> Result<(), JobError> {
    if extranonce2.len() == expected {
        Ok(())
    } else {
        Err(JobError::Extranonce2Length {
            expected,
            got: extranonce2.len(),
        })
    }
}

/// Folds merkle branches onto the coinbase hash: each step is
/// `sha256d(root ‖ branch)`; all in internal byte order.
pub fn fold_merkle_branches(coinbase_hash: [u8; 32], branches: &[[u8; 32]]) -> [u8; 32] {
    branches.iter().fold(coinbase_hash, |root, branch| {
        let mut buf = [0u8; 64];
        let (left, right) = buf.split_at_mut(32);
        left.copy_from_slice(&root);
        right.copy_from_slice(branch);
        sha256d(&buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    /// An independent SHA-256d straight from sha2, so merkle tests do not
    /// only compare the crate with itself.
    fn dsha(parts: &[&[u8]]) -> [u8; 32] {
        let mut first = Sha256::new();
        for p in parts {
            first.update(p);
        }
        Sha256::digest(first.finalize()).into()
    }

    fn extended_spec() -> JobSpec {
        JobSpec {
            id: "job-1".into(),
            kind: WorkKindSpec::Extended {
                coinbase_prefix: vec![0x11; 42],
                extranonce1: vec![0xe1, 0xe2],
                extranonce2_size: 4,
                coinbase_suffix: vec![0x22, 0x33],
                merkle_branches: vec![],
            },
            prev_hash: (0..32).collect(),
            version: 0x2000_0000,
            version_mask: 0x1fff_e000,
            nbits: 0x1d00_ffff,
            ntime: 0x6737_a1c0,
            clean: true,
        }
    }

    fn with_kind(f: impl FnOnce(&mut WorkKindSpec)) -> JobSpec {
        let mut spec = extended_spec();
        f(&mut spec.kind);
        spec
    }

    fn set_branches(spec: &mut JobSpec, branches: Vec<Vec<u8>>) {
        if let WorkKindSpec::Extended {
            merkle_branches, ..
        } = &mut spec.kind
        {
            *merkle_branches = branches;
        }
    }

    #[test]
    fn accessors() {
        let job = Job::validate(extended_spec()).unwrap();
        assert_eq!(job.id(), "job-1");
        assert!(job.clean());
        assert!(job.is_extended());
        assert_eq!(job.version(), 0x2000_0000);
        assert_eq!(job.version_mask(), 0x1fff_e000);
        assert_eq!(job.ntime(), 0x6737_a1c0);
        assert_eq!(job.nbits(), 0x1d00_ffff);
        assert_eq!(job.network_target(), Target::DIFF1);
        assert_eq!(job.extranonce2_size(), 4);
        assert_eq!(job.prev_hash()[31], 31);
        assert_eq!(job.rolled_version(1), 0x2000_2000);
        assert!(job.version_allowed(0x2000_2000));
        assert!(!job.version_allowed(0x2000_0001));
        let clone = job.clone();
        assert_eq!(clone, job);
    }

    #[test]
    fn coinbase_assembly() {
        let job = Job::validate(extended_spec()).unwrap();
        let cb = job.coinbase(&[1, 2, 3, 4]).unwrap();
        let mut expected = vec![0x11; 42];
        expected.extend_from_slice(&[0xe1, 0xe2, 1, 2, 3, 4, 0x22, 0x33]);
        assert_eq!(cb, expected);
        assert_eq!(
            job.coinbase(&[1, 2, 3]),
            Err(JobError::Extranonce2Length {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            job.merkle_root(&[0; 5]),
            Err(JobError::Extranonce2Length {
                expected: 4,
                got: 5
            })
        );
        // Empty extranonce1 and suffix are fine.
        let job = Job::validate(with_kind(|k| {
            if let WorkKindSpec::Extended {
                extranonce1,
                coinbase_suffix,
                ..
            } = k
            {
                extranonce1.clear();
                coinbase_suffix.clear();
            }
        }))
        .unwrap();
        assert_eq!(job.coinbase(&[9; 4]).unwrap().len(), 46);
    }

    #[test]
    fn merkle_root_without_branches_is_coinbase_hash() {
        let job = Job::validate(extended_spec()).unwrap();
        let en2 = [0, 0, 0, 7];
        let cb = job.coinbase(&en2).unwrap();
        assert_eq!(job.merkle_root(&en2).unwrap(), dsha(&[&cb]));
        // A different extranonce2 changes the root.
        assert_ne!(job.merkle_root(&[0, 0, 0, 8]).unwrap(), dsha(&[&cb]));
    }

    #[test]
    fn merkle_root_one_branch() {
        let mut spec = extended_spec();
        set_branches(&mut spec, vec![vec![0xab; 32]]);
        let job = Job::validate(spec).unwrap();
        let en2 = [1, 2, 3, 4];
        let cb_hash = dsha(&[&job.coinbase(&en2).unwrap()]);
        assert_eq!(
            job.merkle_root(&en2).unwrap(),
            dsha(&[&cb_hash, &[0xab; 32]])
        );
    }

    #[test]
    fn merkle_root_several_branches() {
        let branches: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![i; 32]).collect();
        let mut spec = extended_spec();
        set_branches(&mut spec, branches.clone());
        let job = Job::validate(spec).unwrap();
        let en2 = [4, 3, 2, 1];
        let mut root = dsha(&[&job.coinbase(&en2).unwrap()]);
        for b in &branches {
            root = dsha(&[&root, b]);
        }
        assert_eq!(job.merkle_root(&en2).unwrap(), root);
        // Branch order matters.
        let mut spec = extended_spec();
        set_branches(&mut spec, branches.into_iter().rev().collect());
        assert_ne!(
            Job::validate(spec).unwrap().merkle_root(&en2).unwrap(),
            root
        );
    }

    #[test]
    fn merkle_root_work() {
        let mut spec = extended_spec();
        spec.kind = WorkKindSpec::MerkleRoot(vec![0x5a; 32]);
        let job = Job::validate(spec).unwrap();
        assert!(!job.is_extended());
        assert_eq!(job.extranonce2_size(), 0);
        assert_eq!(job.merkle_root(&[]).unwrap(), [0x5a; 32]);
        assert_eq!(
            job.merkle_root(&[1]),
            Err(JobError::Extranonce2Length {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(job.coinbase(&[]), Err(JobError::NoCoinbase));
        let header = job.header_for(&[], 0x2000_0000, 5, 6).unwrap();
        assert_eq!(&header[36..68], &[0x5a; 32]);
    }

    #[test]
    fn header_layout() {
        let job = Job::validate(extended_spec()).unwrap();
        let root = [0x77; 32];
        let h = job.header(&root, 0x2012_3456, 0x0a0b_0c0d, 0xdead_beef);
        assert_eq!(&h[0..4], &[0x56, 0x34, 0x12, 0x20]);
        assert_eq!(&h[4..36], job.prev_hash());
        assert_eq!(&h[36..68], &root);
        assert_eq!(&h[68..72], &[0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(&h[72..76], &[0xff, 0xff, 0x00, 0x1d]);
        assert_eq!(&h[76..80], &[0xef, 0xbe, 0xad, 0xde]);
        let en2 = [0; 4];
        assert_eq!(
            job.header_for(&en2, 1, 2, 3).unwrap(),
            job.header(&job.merkle_root(&en2).unwrap(), 1, 2, 3)
        );
    }

    #[test]
    fn rejections() {
        let err = |spec: JobSpec| Job::validate(spec).unwrap_err();

        let mut s = extended_spec();
        s.id.clear();
        assert_eq!(err(s), JobError::EmptyId);

        let mut s = extended_spec();
        s.id = "x".repeat(MAX_JOB_ID_LEN);
        assert!(Job::validate(s.clone()).is_ok());
        s.id.push('x');
        assert_eq!(err(s), JobError::IdTooLong { len: 257 });

        for len in [0, 31, 33] {
            let mut s = extended_spec();
            s.prev_hash = vec![0; len];
            assert_eq!(err(s), JobError::PrevHashLength { len });
        }

        let mut s = extended_spec();
        s.nbits = 0x1d80_ffff;
        assert_eq!(
            err(s),
            JobError::Nbits(TargetError::NbitsNegative { nbits: 0x1d80_ffff })
        );
        let mut s = extended_spec();
        s.nbits = 0x2301_0000;
        assert_eq!(
            err(s),
            JobError::Nbits(TargetError::NbitsOverflow { nbits: 0x2301_0000 })
        );
        for nbits in [0, 0x1d00_0000, 0x0100_00ff] {
            let mut s = extended_spec();
            s.nbits = nbits;
            assert_eq!(err(s), JobError::ZeroNetworkTarget { nbits });
        }

        let s = with_kind(|k| {
            if let WorkKindSpec::Extended { extranonce1, .. } = k {
                *extranonce1 = vec![0; 33];
            }
        });
        assert_eq!(err(s), JobError::Extranonce1TooLong { len: 33 });

        for size in [0u8, 17, 255] {
            let s = with_kind(|k| {
                if let WorkKindSpec::Extended {
                    extranonce2_size, ..
                } = k
                {
                    *extranonce2_size = size;
                }
            });
            assert_eq!(err(s), JobError::Extranonce2Size { size });
        }

        let s = with_kind(|k| {
            if let WorkKindSpec::Extended {
                coinbase_prefix, ..
            } = k
            {
                coinbase_prefix.clear();
            }
        });
        assert_eq!(err(s), JobError::EmptyCoinbasePrefix);

        let s = with_kind(|k| {
            if let WorkKindSpec::Extended {
                coinbase_prefix, ..
            } = k
            {
                *coinbase_prefix = vec![0; MAX_COINBASE_PART_LEN + 1];
            }
        });
        assert_eq!(
            err(s),
            JobError::CoinbasePrefixTooLong {
                len: MAX_COINBASE_PART_LEN + 1
            }
        );

        let s = with_kind(|k| {
            if let WorkKindSpec::Extended {
                coinbase_suffix, ..
            } = k
            {
                *coinbase_suffix = vec![0; MAX_COINBASE_PART_LEN + 1];
            }
        });
        assert_eq!(
            err(s),
            JobError::CoinbaseSuffixTooLong {
                len: MAX_COINBASE_PART_LEN + 1
            }
        );

        // 35 + 2 + 4 + 0 = 41 < 42; one more byte is accepted.
        let short = |prefix_len: usize| {
            with_kind(|k| {
                if let WorkKindSpec::Extended {
                    coinbase_prefix,
                    coinbase_suffix,
                    ..
                } = k
                {
                    *coinbase_prefix = vec![1; prefix_len];
                    coinbase_suffix.clear();
                }
            })
        };
        assert_eq!(err(short(35)), JobError::CoinbaseTooShort { len: 41 });
        assert!(Job::validate(short(36)).is_ok());

        let mut s = extended_spec();
        set_branches(&mut s, vec![vec![0; 32]; MAX_MERKLE_BRANCHES]);
        assert!(Job::validate(s.clone()).is_ok());
        set_branches(&mut s, vec![vec![0; 32]; MAX_MERKLE_BRANCHES + 1]);
        assert_eq!(err(s), JobError::TooManyBranches { count: 33 });

        let mut s = extended_spec();
        set_branches(&mut s, vec![vec![0; 32], vec![0; 32], vec![0; 31]]);
        assert_eq!(err(s), JobError::BranchLength { index: 2, len: 31 });

        for len in [0, 31, 33] {
            let mut s = extended_spec();
            s.kind = WorkKindSpec::MerkleRoot(vec![0; len]);
            assert_eq!(err(s), JobError::MerkleRootLength { len });
        }

        // Messages are human-readable.
        assert_eq!(
            JobError::BranchLength { index: 2, len: 31 }.to_string(),
            "merkle branch 2 must be 32 bytes, got 31"
        );
    }

    /// Lengths at typical values and the validation limits (accepted),
    /// one off (often rejected), or random, so both outcomes are common.
    fn len_near(limits: &'static [usize]) -> impl Strategy<Value = usize> {
        prop_oneof![
            4 => proptest::sample::select(limits),
            2 => proptest::sample::select(limits).prop_flat_map(|l| l.saturating_sub(1)..=l + 1),
            1 => 0usize..300,
        ]
    }

    /// Random bytes for short lengths; long ones (only their length matters
    /// to validation) are one repeated byte, which keeps the test fast.
    fn bytes_near(limits: &'static [usize]) -> impl Strategy<Value = Vec<u8>> {
        len_near(limits).prop_flat_map(|n| {
            if n > 1024 {
                any::<u8>().prop_map(move |b| vec![b; n]).boxed()
            } else {
                proptest::collection::vec(any::<u8>(), n).boxed()
            }
        })
    }

    fn arb_kind() -> impl Strategy<Value = WorkKindSpec> {
        prop_oneof![
            (
                bytes_near(&[42, 100, MAX_COINBASE_PART_LEN]),
                bytes_near(&[0, 4, MAX_EXTRANONCE1_LEN]),
                prop_oneof![3 => 1u8..=16, 1 => any::<u8>()],
                bytes_near(&[0, 50, MAX_COINBASE_PART_LEN]),
                prop_oneof![
                    3 => proptest::collection::vec(bytes_near(&[32]), 0..=4),
                    1 => proptest::collection::vec(bytes_near(&[0, 32]), 0..=34),
                ],
            )
                .prop_map(|(p, e1, e2, s, b)| WorkKindSpec::Extended {
                    coinbase_prefix: p,
                    extranonce1: e1,
                    extranonce2_size: e2,
                    coinbase_suffix: s,
                    merkle_branches: b,
                }),
            bytes_near(&[32]).prop_map(WorkKindSpec::MerkleRoot),
        ]
    }

    fn arb_spec() -> impl Strategy<Value = JobSpec> {
        (
            len_near(&[1, 8, MAX_JOB_ID_LEN]).prop_flat_map(|n| {
                proptest::string::string_regex(&format!("[a-f0-9é]{{{n}}}")).unwrap()
            }),
            arb_kind(),
            bytes_near(&[32]),
            any::<(u32, u32, u32, u32, bool)>(),
            prop_oneof![3 => Just(0x1d00_ffffu32), 1 => any::<u32>()],
        )
            .prop_map(
                |(id, kind, prev_hash, (version, version_mask, ntime, _, clean), nbits)| JobSpec {
                    id,
                    kind,
                    prev_hash,
                    version,
                    version_mask,
                    nbits,
                    ntime,
                    clean,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn validate_never_panics(spec in arb_spec()) {
            if let Ok(job) = Job::validate(spec.clone()) {
                // Whatever was accepted can be mined without panics either.
                let en2 = vec![0u8; job.extranonce2_size()];
                let root = job.merkle_root(&en2).unwrap();
                let header = job.header(&root, job.rolled_version(3), job.ntime(), 0);
                prop_assert_eq!(&header[4..36], spec.prev_hash.as_slice());
                prop_assert!(job.network_target() > Target::ZERO);
                prop_assert!(job.merkle_root(&[0u8; 17]).is_err());
            }
        }
    }
}
