//! # The Stratum V2 pool plugin
//!
//! Stratum V2 is binary, encrypted and authenticated: the miner checks
//! that the pool's Noise key is certified by the authority key the
//! operator pinned, and shares travel over ChaCha20-Poly1305. This crate
//! speaks it for the appliance on the `hashwatt:pool@0.2.1` contract,
//! sans-IO, on the Stratum V2 reference codecs.
//!
//! In place: the authority key (SRI's text form, fingerprint), the Noise NX
//! handshake with the certificate checked against the key and the host's
//! clock, encrypted framing ([`transport`]), and the mining session
//! ([`session`]): SetupConnection, standard and extended channels, future
//! jobs and SetNewPrevHash, SetTarget, SetExtranoncePrefix, shares,
//! Reconnect; once a channel is open it reports the session (protocol,
//! channel kind, the authority key's fingerprint) for the panel. The
//! host's `stratum_v2_interop` test mines with it against the reference
//! pool.

pub mod authority;
pub mod session;
pub mod transport;

pub use authority::AuthorityKey;
pub use session::{Session, Settings};
pub use transport::{Event, Frame, Transport, TransportError};

hashwatt_pool_sdk::export_pool!(Session);
