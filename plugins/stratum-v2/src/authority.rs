//! The pool's authority key: the public key that signs the certificate of
//! the pool's static Noise key. The operator pins it in the pool URL
//! (`stratum2+tcp://host:port/AUTHORITY_PUBKEY`, as SRI and Braiins publish
//! it) or in the pool's settings; a handshake whose certificate another key
//! signed is refused.
//!
//! The text form is SRI's: base58check of a 2-byte little-endian key version
//! (1) followed by the 32-byte x-only secp256k1 key.

use sha2::{Digest, Sha256};

/// Why an authority key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base58check (a typo changes the checksum).
    #[error("the authority key {0:?} is not base58check ({1})")]
    Encoding(String, String),
    /// Decoded, but not version 1 followed by 32 bytes.
    #[error("the authority key {0:?} is not a version-1 32-byte key")]
    Shape(String),
}

/// A pinned authority key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthorityKey(pub [u8; 32]);

impl std::fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthorityKey({})", self.fingerprint())
    }
}

impl AuthorityKey {
    /// Parses SRI's text form.
    pub fn parse(text: &str) -> Result<AuthorityKey, KeyError> {
        let text = text.trim();
        let bytes = bs58::decode(text)
            .with_check(None)
            .into_vec()
            .map_err(|e| KeyError::Encoding(cut(text), e.to_string()))?;
        if bytes.len() != 34 || bytes[..2] != [1, 0] {
            return Err(KeyError::Shape(cut(text)));
        }
        let mut key = [0; 32];
        key.copy_from_slice(&bytes[2..]);
        Ok(AuthorityKey(key))
    }

    /// SRI's text form (what [`AuthorityKey::parse`] reads).
    pub fn to_text(self) -> String {
        let mut raw = [0u8; 34];
        raw[0] = 1;
        raw[2..].copy_from_slice(&self.0);
        bs58::encode(raw).with_check().into_string()
    }

    /// What the panel and the status show: the first 8 bytes of the key's
    /// SHA-256, in hex pairs (`3f:a1:…`), short enough to compare by eye.
    pub fn fingerprint(self) -> String {
        let digest = Sha256::digest(self.0);
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Operator text quoted back, cut to a readable length.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sri_text_form_round_trips_and_typos_are_refused() {
        // The authority key of SRI's example configurations.
        let text = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
        let key = AuthorityKey::parse(text).unwrap();
        assert_eq!(key.to_text(), text);
        assert_eq!(key.fingerprint().len(), 23);
        let typo = text.replace('W', "V");
        assert!(matches!(
            AuthorityKey::parse(&typo),
            Err(KeyError::Encoding(..))
        ));
        let other_version = {
            let mut raw = [0u8; 34];
            raw[0] = 2;
            bs58::encode(raw).with_check().into_string()
        };
        assert!(matches!(
            AuthorityKey::parse(&other_version),
            Err(KeyError::Shape(_))
        ));
        assert!(AuthorityKey::parse("").is_err());
    }
}
