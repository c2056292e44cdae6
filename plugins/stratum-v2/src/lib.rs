//! # The Stratum V2 pool plugin (work in progress)
//!
//! Stratum V2 is binary, encrypted and authenticated: the miner checks
//! that the pool's Noise key is certified by the authority key the
//! operator pinned, and shares travel over ChaCha20-Poly1305. This crate
//! speaks it for the appliance on the `hashwatt:pool@0.2.0` contract,
//! sans-IO, on the Stratum V2 reference codecs.
//!
//! Done: the authority key (SRI's text form, fingerprint), the Noise NX
//! handshake with the certificate checked against the key and the host's
//! clock, and encrypted framing ([`transport`]). Still to come before the
//! appliance loads it: the mining session (SetupConnection, standard and
//! extended channels, jobs, SetNewPrevHash, SetTarget, shares), the
//! component export, and interop with the reference pool.

pub mod authority;
pub mod session;
pub mod transport;

pub use authority::AuthorityKey;
pub use session::{Session, Settings};
pub use transport::{Event, Frame, Transport, TransportError};

hashwatt_pool_sdk::export_pool!(Session);
