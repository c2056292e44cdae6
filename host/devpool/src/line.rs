//! Bounded, cancel-safe newline-delimited reading.
//!
//! Real pools cut off clients that send absurdly long lines; this reader
//! enforces the same limit without ever buffering more than the limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest accepted line (without the newline); longer lines close the connection.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Why reading a line failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent more than [`MAX_LINE`] bytes without a newline.
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
}

/// Read into `buf` until a newline. Returns `Ok(true)` when `buf` holds a full
/// line (newline stripped) and `Ok(false)` at end of stream.
///
/// Cancel-safe: bytes already consumed from the reader stay in `buf`, so the
/// call can simply be repeated after a `select!` picked another branch.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, LineError> {
    loop {
        let avail = reader.fill_buf().await?;
        if avail.is_empty() {
            return Ok(false);
        }
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(pos) => (avail.get(..pos).unwrap_or_default(), pos + 1, true),
            None => (avail, avail.len(), false),
        };
        if buf.len() + chunk.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        buf.extend_from_slice(chunk);
        reader.consume(used);
        if done {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn splits_lines_and_limits_length() {
        let data = b"abc\ndef\n".to_vec();
        let mut r = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf).await.unwrap());
        assert_eq!(buf, b"abc");
        buf.clear();
        assert!(read_line(&mut r, &mut buf).await.unwrap());
        assert_eq!(buf, b"def");
        buf.clear();
        assert!(!read_line(&mut r, &mut buf).await.unwrap());

        let long = vec![b'x'; MAX_LINE + 1];
        let mut r = BufReader::new(&long[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut r, &mut buf).await,
            Err(LineError::TooLong)
        ));

        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        let mut r = BufReader::new(&exact[..]);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf).await.unwrap());
        assert_eq!(buf.len(), MAX_LINE);
    }
}
