//! Turns pool jobs into block headers for hashwatt.
//!
//! Pure, synchronous building blocks between a pool plugin and the hashing
//! backends: job validation, coinbase and merkle-root assembly, the 80-byte
//! header, BIP 320 version rolling, per-worker extranonce2 splitting,
//! difficulty/target/`nbits` conversions and share checks. No I/O.

pub mod extranonce;
pub mod job;
pub mod rolling;
pub mod share;
pub mod target;

pub use extranonce::{Extranonce2Space, ExtranonceError};
pub use job::{Job, JobError, JobSpec, WorkKindSpec, fold_merkle_branches};
pub use rolling::{rolled_version, rolling_space, version_bits_ok};
pub use share::{ShareCheck, check_header, sha256d};
pub use target::{Target, TargetError, hash_difficulty, hash_to_display};
