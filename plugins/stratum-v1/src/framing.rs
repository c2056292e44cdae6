//! Newline framing of the pool byte stream.
//!
//! TCP delivers bytes in arbitrary chunks; Stratum V1 messages are lines.
//! [`LineBuffer`] reassembles complete lines independently of chunking and
//! bounds memory use by refusing over-long lines.

use thiserror::Error;

/// Longest accepted line, in bytes, excluding the `\r\n` / `\n` terminator.
pub const MAX_LINE_LEN: usize = 65536;

/// Why a line could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// The pool sent a line longer than [`MAX_LINE_LEN`].
    #[error("line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// The line is not valid UTF-8 (JSON must be).
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
}

/// Accumulates received bytes and yields complete, non-empty lines.
#[derive(Debug, Default, Clone)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` already known to contain no `\n` (avoids rescanning).
    scanned: usize,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Forget everything buffered (after a protocol error or a reconnect).
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.scanned = 0;
    }

    /// Number of bytes buffered but not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Next complete line with its terminator and trailing `\r` removed.
    ///
    /// Empty (or whitespace-only) lines are skipped. Returns `None` when no
    /// complete line is buffered. After an error the caller should
    /// [`clear`](Self::clear) the buffer: the stream cannot be resynchronised.
    pub fn next_line(&mut self) -> Option<Result<String, FramingError>> {
        loop {
            let tail = self.buf.get(self.scanned..).unwrap_or_default();
            let Some(pos) = tail.iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                // A pending partial line may still end in `\r` before its `\n`.
                if self.buf.len() > MAX_LINE_LEN + 1 {
                    return Some(Err(FramingError::LineTooLong));
                }
                return None;
            };
            let end = self.scanned + pos;
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            line.pop(); // the '\n'
            while line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > MAX_LINE_LEN {
                return Some(Err(FramingError::LineTooLong));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(String::from_utf8(line).map_err(|_| FramingError::InvalidUtf8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Result<String, FramingError>> {
        let mut b = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            b.push(c);
            while let Some(l) = b.next_line() {
                let stop = l.is_err();
                out.push(l);
                if stop {
                    b.clear();
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn splits_and_strips() {
        let got = lines(&[b"ab", b"c\r\n\n\r\nde", b"f\n  \nxy"]);
        assert_eq!(got, vec![Ok("abc".into()), Ok("def".into())]);
    }

    #[test]
    fn max_len_line_is_accepted_longer_is_not() {
        let mut ok = vec![b'a'; MAX_LINE_LEN];
        ok.extend_from_slice(b"\r\n");
        assert_eq!(lines(&[&ok]).len(), 1);
        assert!(lines(&[&ok])[0].is_ok());
        let mut long = vec![b'a'; MAX_LINE_LEN + 1];
        long.push(b'\n');
        assert_eq!(lines(&[&long]), vec![Err(FramingError::LineTooLong)]);
        // Detected before the terminator arrives.
        let partial = vec![b'a'; MAX_LINE_LEN + 2];
        assert_eq!(lines(&[&partial]), vec![Err(FramingError::LineTooLong)]);
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(
            lines(&[b"\xff\xfe\n"]),
            vec![Err(FramingError::InvalidUtf8)]
        );
    }
}
