//! Splitting the extranonce2 space between devices.
//!
//! Each part of the space gets its own run of extranonce2 values, so two
//! devices (or two hands-out of one job) never build the same coinbase and
//! therefore never search the same headers. Values are written big-endian
//! in `size` bytes.

/// Why an extranonce2 space could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtranonceError {
    /// extranonce2 must be 1 to 16 bytes long.
    #[error("extranonce2 size must be 1..=16 bytes, got {size}")]
    Size {
        /// The rejected size.
        size: usize,
    },
    /// The space must be split into at least one part, and `part` must be
    /// one of them.
    #[error("part {part} of {parts} does not exist")]
    NoSuchPart {
        /// The part asked for.
        part: usize,
        /// The number of parts.
        parts: usize,
    },
    /// More parts than extranonce2 values: some would have nothing to mine.
    #[error("{parts} parts do not fit into a {size}-byte extranonce2 space")]
    TooManyParts {
        /// The extranonce2 size in bytes.
        size: usize,
        /// The requested number of parts.
        parts: usize,
    },
}

/// A contiguous run of extranonce2 values, written big-endian in `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extranonce2Range {
    /// Bytes per value (0: the job has no extranonce2).
    pub size: usize,
    /// First value.
    pub start: u128,
    /// Number of values (at least 1; a zero-size range has exactly one, empty, value).
    pub count: u128,
}

impl Extranonce2Range {
    /// The range for a job without extranonce2 (one empty value).
    pub const NONE: Extranonce2Range = Extranonce2Range {
        size: 0,
        start: 0,
        count: 1,
    };

    /// Part `part` of `parts` equal slices of the whole `size`-byte space
    /// (size 0: [`Extranonce2Range::NONE`]). With 16 bytes the last
    /// `parts - 1` values of the space are left out, so counts fit a u128.
    pub fn slice(size: usize, part: usize, parts: usize) -> Result<Self, ExtranonceError> {
        if size == 0 {
            return Ok(Extranonce2Range::NONE);
        }
        if size > 16 {
            return Err(ExtranonceError::Size { size });
        }
        if parts == 0 || part >= parts {
            return Err(ExtranonceError::NoSuchPart { part, parts });
        }
        let each = if size == 16 {
            u128::MAX / parts as u128
        } else {
            (1u128 << (8 * size)) / parts as u128
        };
        if each == 0 {
            return Err(ExtranonceError::TooManyParts { size, parts });
        }
        Ok(Extranonce2Range {
            size,
            start: each * part as u128,
            count: each,
        })
    }

    /// The `i`-th value of the range (`None` past its end).
    pub fn value(&self, i: u128) -> Option<Vec<u8>> {
        if i >= self.count {
            return None;
        }
        let v = self.start.checked_add(i)?;
        let bytes = v.to_be_bytes();
        bytes.get(16 - self.size..).map(<[u8]>::to_vec)
    }

    /// Whether `en2` is a value of this range.
    pub fn contains(&self, en2: &[u8]) -> bool {
        if en2.len() != self.size {
            return false;
        }
        if self.size == 0 {
            return true;
        }
        let mut buf = [0u8; 16];
        let Some(tail) = buf.get_mut(16 - self.size..) else {
            return false;
        };
        tail.copy_from_slice(en2);
        let v = u128::from_be_bytes(buf);
        v >= self.start && v - self.start < self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            Extranonce2Range::slice(17, 0, 1),
            Err(ExtranonceError::Size { size: 17 })
        );
        assert_eq!(
            Extranonce2Range::slice(4, 0, 0),
            Err(ExtranonceError::NoSuchPart { part: 0, parts: 0 })
        );
        assert_eq!(
            Extranonce2Range::slice(4, 3, 3),
            Err(ExtranonceError::NoSuchPart { part: 3, parts: 3 })
        );
        assert_eq!(
            Extranonce2Range::slice(1, 0, 257),
            Err(ExtranonceError::TooManyParts {
                size: 1,
                parts: 257
            })
        );
        assert!(Extranonce2Range::slice(1, 255, 256).is_ok());
        assert!(Extranonce2Range::slice(16, 0, 1).is_ok());
        assert_eq!(Extranonce2Range::slice(0, 0, 5), Ok(Extranonce2Range::NONE));
    }

    #[test]
    fn slices_are_big_endian_and_disjoint() {
        let a = Extranonce2Range::slice(2, 0, 3).unwrap();
        let b = Extranonce2Range::slice(2, 1, 3).unwrap();
        assert_eq!(a.count, 65536 / 3);
        assert_eq!(a.value(0).unwrap(), vec![0, 0]);
        assert_eq!(a.value(1).unwrap(), vec![0, 1]);
        assert_eq!(b.value(0).unwrap(), (21845u16).to_be_bytes().to_vec());
        let first_b = b.value(0).unwrap();
        assert!(!a.contains(&first_b));
        assert!(b.contains(&first_b));
        assert!(a.value(a.count).is_none());
        assert!(!a.contains(&[0, 0, 0]), "wrong size");
        assert!(Extranonce2Range::NONE.contains(&[]));
        assert_eq!(Extranonce2Range::NONE.value(0), Some(Vec::new()));
    }

    #[test]
    fn exhausts_one_byte_space_exactly() {
        let mut all = HashSet::new();
        for part in 0..4 {
            let r = Extranonce2Range::slice(1, part, 4).unwrap();
            let mut i = 0;
            while let Some(v) = r.value(i) {
                assert_eq!(v.len(), 1);
                assert!(all.insert(v));
                i += 1;
            }
            // Stays exhausted.
            assert_eq!(r.value(i + 1), None);
        }
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn sixteen_byte_space() {
        let whole = Extranonce2Range::slice(16, 0, 1).unwrap();
        assert_eq!(whole.value(1).unwrap(), {
            let mut v = vec![0u8; 16];
            v[15] = 1;
            v
        });
        // The last value of the space is the last the range hands out.
        assert_eq!(whole.value(whole.count - 1).unwrap(), {
            let mut v = vec![0xff; 16];
            v[15] = 0xfe;
            v
        });
        assert_eq!(whole.value(whole.count), None);
        let top = Extranonce2Range::slice(16, 1, 2).unwrap();
        assert!(top.contains(&top.value(top.count - 1).unwrap()));
        assert!(!top.contains(&Extranonce2Range::slice(16, 0, 2).unwrap().value(0).unwrap()));
    }

    proptest! {
        #[test]
        fn parts_never_collide(
            size in 1usize..=16,
            parts in 1usize..=8,
            picks in proptest::collection::vec((0usize..8, 0u128..64), 0..600),
        ) {
            let mut owner = std::collections::HashMap::new();
            for (part, i) in picks {
                match Extranonce2Range::slice(size, part, parts) {
                    Ok(r) => {
                        prop_assert!(part < parts);
                        if let Some(v) = r.value(i) {
                            prop_assert_eq!(v.len(), size);
                            prop_assert!(r.contains(&v));
                            // A value belongs to one part only.
                            if let Some(prev) = owner.insert(v, part) {
                                prop_assert_eq!(prev, part);
                            }
                        }
                    }
                    Err(_) => prop_assert!(part >= parts || (size == 1 && parts > 256)),
                }
            }
        }
    }
}
