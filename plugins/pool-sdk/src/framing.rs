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
    /// Start of the first line not yet returned (lines are consumed by
    /// moving this offset; the buffer is compacted once per `push`, so a
    /// chunk holding many lines costs linear, not quadratic, time).
    start: usize,
    /// Bytes of `buf[start..]` already known to contain no `\n`.
    scanned: usize,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Forget everything buffered (after a protocol error or a reconnect).
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
    }

    /// Number of bytes buffered but not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Next complete line with its terminator and trailing `\r` removed.
    ///
    /// Empty (or whitespace-only) lines are skipped. Returns `None` when no
    /// complete line is buffered. After an error the caller should
    /// [`clear`](Self::clear) the buffer: the stream cannot be resynchronised.
    pub fn next_line(&mut self) -> Option<Result<String, FramingError>> {
        loop {
            let pending = self.buf.get(self.start..).unwrap_or_default();
            let unscanned = pending.get(self.scanned..).unwrap_or_default();
            let Some(pos) = unscanned.iter().position(|&b| b == b'\n') else {
                self.scanned = pending.len();
                // A partial line may still end in `\r` before its `\n`.
                if pending.len() > MAX_LINE_LEN + 1 {
                    return Some(Err(FramingError::LineTooLong));
                }
                return None;
            };
            let line_len = self.scanned + pos;
            let mut line = pending.get(..line_len).unwrap_or_default();
            self.start += line_len + 1;
            self.scanned = 0;
            while let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > MAX_LINE_LEN {
                return Some(Err(FramingError::LineTooLong));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(
                std::str::from_utf8(line)
                    .map(str::to_owned)
                    .map_err(|_| FramingError::InvalidUtf8),
            );
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
    fn many_lines_in_one_chunk() {
        let mut chunk = Vec::new();
        for i in 0..10_000 {
            chunk.extend_from_slice(format!("{i}\n").as_bytes());
        }
        chunk.extend_from_slice(b"tail");
        let mut b = LineBuffer::new();
        b.push(&chunk);
        let mut n = 0;
        while let Some(l) = b.next_line() {
            assert_eq!(l.unwrap(), n.to_string());
            n += 1;
        }
        assert_eq!(n, 10_000);
        assert_eq!(b.buffered(), 4);
        b.push(b"\n");
        assert_eq!(b.next_line(), Some(Ok("tail".into())));
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn invalid_utf8() {
        assert_eq!(
            lines(&[b"\xff\xfe\n"]),
            vec![Err(FramingError::InvalidUtf8)]
        );
    }
}
