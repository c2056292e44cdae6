//! Splitting the extranonce2 space between workers.
//!
//! Each hashing worker gets its own extranonce2 values, so two workers never
//! build the same coinbase and therefore never search the same headers.
//! Worker `w` of `W` gets the values `w, w + W, w + 2W, …` (interleaved, so
//! every worker has an equal share), each written big-endian in `size` bytes.

/// Why an extranonce2 space could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtranonceError {
    /// extranonce2 must be 1 to 16 bytes long.
    #[error("extranonce2 size must be 1..=16 bytes, got {size}")]
    Size {
        /// The rejected size.
        size: usize,
    },
    /// At least one worker is needed.
    #[error("at least one worker is needed")]
    NoWorkers,
    /// More workers than extranonce2 values: some would have nothing to mine.
    #[error("{workers} workers do not fit into a {size}-byte extranonce2 space")]
    TooManyWorkers {
        /// The extranonce2 size in bytes.
        size: usize,
        /// The requested number of workers.
        workers: usize,
    },
}

/// Hands out extranonce2 values to a fixed set of workers without overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extranonce2Space {
    size: usize,
    workers: u128,
    /// The value each worker gets next; `None` once its share is used up.
    pending: Vec<Option<u128>>,
}

impl Extranonce2Space {
    /// A fresh space of `size`-byte extranonce2 values (1..=16) for `workers`
    /// workers (at least one, at most as many as there are values).
    pub fn new(size: usize, workers: usize) -> Result<Self, ExtranonceError> {
        if !(1..=16).contains(&size) {
            return Err(ExtranonceError::Size { size });
        }
        if workers == 0 {
            return Err(ExtranonceError::NoWorkers);
        }
        let w = workers as u128;
        if size < 16 && w > (1u128 << (8 * size)) {
            return Err(ExtranonceError::TooManyWorkers { size, workers });
        }
        Ok(Extranonce2Space {
            size,
            workers: w,
            pending: (0..w).map(Some).collect(),
        })
    }

    /// The extranonce2 length in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The number of workers the space is split between.
    pub fn workers(&self) -> usize {
        self.pending.len()
    }

    /// The next unused extranonce2 for `worker`, never handed to any other
    /// worker; `None` when that worker's share is exhausted or `worker` is
    /// out of range.
    pub fn next(&mut self, worker: usize) -> Option<Vec<u8>> {
        let slot = self.pending.get_mut(worker)?;
        let value = (*slot)?;
        let size = self.size;
        let fits = |v: &u128| size >= 16 || v >> (8 * size) == 0;
        *slot = value.checked_add(self.workers).filter(fits);
        let be = value.to_be_bytes();
        be.get(16 - self.size..).map(<[u8]>::to_vec)
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
            Extranonce2Space::new(0, 1),
            Err(ExtranonceError::Size { size: 0 })
        );
        assert_eq!(
            Extranonce2Space::new(17, 1),
            Err(ExtranonceError::Size { size: 17 })
        );
        assert_eq!(Extranonce2Space::new(4, 0), Err(ExtranonceError::NoWorkers));
        assert_eq!(
            Extranonce2Space::new(1, 257),
            Err(ExtranonceError::TooManyWorkers {
                size: 1,
                workers: 257
            })
        );
        assert!(Extranonce2Space::new(1, 256).is_ok());
        assert!(Extranonce2Space::new(16, 1).is_ok());
    }

    #[test]
    fn interleaves_big_endian() {
        let mut s = Extranonce2Space::new(4, 3).unwrap();
        assert_eq!(s.size(), 4);
        assert_eq!(s.workers(), 3);
        assert_eq!(s.next(0).unwrap(), vec![0, 0, 0, 0]);
        assert_eq!(s.next(0).unwrap(), vec![0, 0, 0, 3]);
        assert_eq!(s.next(1).unwrap(), vec![0, 0, 0, 1]);
        assert_eq!(s.next(2).unwrap(), vec![0, 0, 0, 2]);
        assert_eq!(s.next(2).unwrap(), vec![0, 0, 0, 5]);
        assert_eq!(s.next(3), None);
    }

    #[test]
    fn exhausts_one_byte_space_exactly() {
        let mut s = Extranonce2Space::new(1, 3).unwrap();
        let mut all = HashSet::new();
        for w in 0..3 {
            while let Some(v) = s.next(w) {
                assert_eq!(v.len(), 1);
                assert!(all.insert(v));
            }
            // Stays exhausted.
            assert_eq!(s.next(w), None);
        }
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn sixteen_byte_space() {
        let mut s = Extranonce2Space::new(16, 2).unwrap();
        assert_eq!(s.next(1).unwrap(), {
            let mut v = vec![0u8; 16];
            v[15] = 1;
            v
        });
        // Near the top of 2^128 the last value of worker 1 is 2^128 - 1.
        s.pending[1] = Some(u128::MAX);
        assert_eq!(s.next(1).unwrap(), vec![0xff; 16]);
        assert_eq!(s.next(1), None);
        s.pending[0] = Some(u128::MAX - 1);
        assert_eq!(s.next(0).unwrap(), {
            let mut v = vec![0xff; 16];
            v[15] = 0xfe;
            v
        });
        assert_eq!(s.next(0), None);
        // One worker owning the whole 16-byte space also ends cleanly.
        let mut one = Extranonce2Space::new(16, 1).unwrap();
        one.pending[0] = Some(u128::MAX);
        assert_eq!(one.next(0).unwrap(), vec![0xff; 16]);
        assert_eq!(one.next(0), None);
    }

    proptest! {
        #[test]
        fn workers_never_collide(
            size in 1usize..=16,
            workers in 1usize..=8,
            schedule in proptest::collection::vec(0usize..8, 0..600),
        ) {
            let mut s = Extranonce2Space::new(size, workers).unwrap();
            let mut owner = std::collections::HashMap::new();
            for w in schedule {
                if let Some(v) = s.next(w) {
                    prop_assert!(w < workers);
                    prop_assert_eq!(v.len(), size);
                    // Never handed out twice, to anyone.
                    prop_assert!(owner.insert(v, w).is_none());
                } else {
                    prop_assert!(w >= workers || size == 1);
                }
            }
        }
    }
}
