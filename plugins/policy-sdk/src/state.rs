//! Persistent state as JSON bytes: the host stores whatever bytes a policy
//! returns, and JSON keeps them inspectable and forward compatible.

use serde::{Serialize, de::DeserializeOwned};

/// Why stored state could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The bytes are not JSON of the expected shape (e.g. written by an
    /// older, incompatible plugin version).
    #[error("stored state unreadable: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Decodes state bytes; empty bytes (first run) give `None`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, StateError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(bytes)?))
}

/// Decodes state bytes, treating empty or unreadable state as no state: a
/// policy must never fail because of a corrupt store, it starts afresh.
pub fn load<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    decode(bytes).ok().flatten()
}

/// Encodes state as JSON bytes.
pub fn encode<T: Serialize>(state: &T) -> Vec<u8> {
    // Serialising plain data structs to a Vec cannot fail; fall back to
    // "no state" rather than panic if a custom Serialize impl errors.
    serde_json::to_vec(state).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct S {
        on: bool,
        since: i64,
    }

    #[test]
    fn round_trip_and_bad_bytes() {
        let s = S {
            on: true,
            since: 42,
        };
        assert_eq!(load::<S>(&encode(&s)), Some(s));
        assert_eq!(load::<S>(b""), None);
        assert_eq!(load::<S>(b"{garbage"), None);
        assert!(decode::<S>(b"{garbage").is_err());
    }
}
