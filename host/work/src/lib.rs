//! Turns pool jobs into block headers for hashwatt.
//!
//! Pure, synchronous building blocks between a pool plugin and the hashing
//! backends: job validation, coinbase and merkle-root assembly, the 80-byte
//! header, BIP 320 version rolling, per-device extranonce2 splitting,
//! difficulty/target/`nbits` conversions and share checks. No I/O.
//!
//! ```
//! use hashwatt_work::{Extranonce2Range, Job, JobSpec, Target, WorkKindSpec, check_header};
//!
//! let job = Job::validate(JobSpec {
//!     id: "1".into(),
//!     kind: WorkKindSpec::Extended {
//!         coinbase_prefix: vec![0; 42],
//!         extranonce1: vec![0xaa; 4],
//!         extranonce2_size: 4,
//!         coinbase_suffix: vec![0; 9],
//!         merkle_branches: vec![],
//!     },
//!     prev_hash: vec![0; 32],
//!     version: 0x2000_0000,
//!     version_mask: 0x1fff_e000,
//!     nbits: 0x1d00_ffff,
//!     ntime: 1_700_000_000,
//!     clean: true,
//! })?;
//! // The first of two devices' halves of the extranonce2 space.
//! let range = Extranonce2Range::slice(job.extranonce2_size(), 0, 2)?;
//! let en2 = range.value(0).expect("a fresh range");
//! let root = job.merkle_root(&en2)?;
//! let header = job.header(&root, job.rolled_version(5), job.ntime(), 42);
//! let share_target = Target::from_difficulty(1.0)?;
//! let check = check_header(&header, &share_target, &job.network_target());
//! assert_eq!(&header[4..36], job.prev_hash());
//! if check.meets_share {
//!     // submit (job.id(), en2, ntime, nonce 42, version) to the pool
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod extranonce;
pub mod job;
pub mod rolling;
pub mod share;
pub mod target;

pub use extranonce::{Extranonce2Range, ExtranonceError};
pub use job::{Job, JobError, JobSpec, WorkKindSpec, fold_merkle_branches};
pub use rolling::{rolled_version, rolling_space, version_bits_ok};
pub use share::{ShareCheck, check_header, sha256d};
pub use target::{Target, TargetError, hash_difficulty, hash_to_display};
