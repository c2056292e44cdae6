//! Hex as pool protocols write it: byte strings (`"00ab…"`) and 32-bit
//! words (`"20000000"` for a version, `"1d00ffff"` for nbits), with errors
//! that say which field was wrong, so a plugin can turn a pool's bad
//! message into a readable refusal instead of a trap.

/// A field that is not the hex it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct HexError {
    /// The field's name, as the pool's protocol calls it.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl HexError {
    fn new(field: &str, reason: impl Into<String>) -> HexError {
        HexError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    ::hex::encode(bytes)
}

/// The bytes `text` spells (either case, even length).
pub fn decode(field: &str, text: &str) -> Result<Vec<u8>, HexError> {
    ::hex::decode(text).map_err(|e| HexError::new(field, format!("not hex ({e})")))
}

/// Exactly `N` bytes (a 32-byte hash, a 4-byte word as bytes).
pub fn decode_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], HexError> {
    let bytes = decode(field, text)?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| HexError::new(field, format!("{} bytes, expected {N}", bytes.len())))
}

/// A 32-bit word written as up to 8 hex digits, most significant first.
pub fn decode_u32(field: &str, text: &str) -> Result<u32, HexError> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HexError::new(
            field,
            format!("{text:?} is not a 32-bit hex word"),
        ));
    }
    u32::from_str_radix(text, 16).map_err(|e| HexError::new(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_words_and_errors() {
        assert_eq!(encode([0x00, 0xab]), "00ab");
        assert_eq!(decode("coinb1", "00AB").unwrap(), vec![0x00, 0xab]);
        assert_eq!(decode_array::<2>("x", "0102").unwrap(), [1, 2]);
        assert_eq!(decode_u32("version", "20000000").unwrap(), 0x2000_0000);
        assert_eq!(decode_u32("nbits", "1d00ffff").unwrap(), 0x1d00_ffff);
        for (r, want) in [
            (decode("coinb1", "abc").map(|_| ()), "coinb1: not hex"),
            (decode("coinb1", "zz").map(|_| ()), "coinb1: not hex"),
            (
                decode_array::<32>("prevhash", "00").map(|_| ()),
                "prevhash: 1 bytes, expected 32",
            ),
            (decode_u32("ntime", "").map(|_| ()), "ntime: \"\" is not"),
            (
                decode_u32("ntime", "123456789").map(|_| ()),
                "is not a 32-bit hex word",
            ),
            (
                decode_u32("ntime", "+1").map(|_| ()),
                "is not a 32-bit hex word",
            ),
        ] {
            assert!(r.unwrap_err().to_string().contains(want), "{want}");
        }
    }
}
