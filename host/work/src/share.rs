//! Share checks: hash a finished header and compare it with the targets.
//!
//! Backends report candidate nonces; the host re-hashes every candidate here
//! with the plain (non-midstate) SHA-256d before it submits a share, so a
//! faulty backend or ASIC can never make the host submit bad work.

use sha2::{Digest, Sha256};

use crate::target::{Target, hash_difficulty};

/// Bitcoin's double SHA-256, output in internal byte order.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// The outcome of checking one header against the share and network targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareCheck {
    /// SHA-256d of the header, internal byte order.
    pub hash: [u8; 32],
    /// The hash meets the pool's share target: submit it.
    pub meets_share: bool,
    /// The hash meets the network target: it is a block.
    pub meets_network: bool,
}

impl ShareCheck {
    /// The difficulty the hash achieves, for logs and best-share tracking.
    pub fn difficulty(&self) -> f64 {
        hash_difficulty(&self.hash)
    }
}

/// Hashes `header` and reports which of the two targets it meets.
pub fn check_header(
    header: &[u8; 80],
    share_target: &Target,
    network_target: &Target,
) -> ShareCheck {
    let hash = sha256d(header);
    ShareCheck {
        hash,
        meets_share: share_target.is_met_by(&hash),
        meets_network: network_target.is_met_by(&hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::hash_to_display;

    fn block_125552() -> [u8; 80] {
        hex::decode(
            "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000\
             e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74d\
             f2b9441a42a14695",
        )
        .unwrap()
        .try_into()
        .unwrap()
    }

    #[test]
    fn sha256d_of_empty_input() {
        // Well-known: SHA-256d("") = 5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456.
        assert_eq!(
            hex::encode(sha256d(b"")),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }

    #[test]
    fn real_block_meets_its_targets() {
        let header = block_125552();
        let network = Target::from_nbits(0x1a44b9f2).unwrap();
        let check = check_header(&header, &Target::DIFF1, &network);
        assert_eq!(
            hash_to_display(&check.hash),
            "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"
        );
        assert!(check.meets_share);
        assert!(check.meets_network);
        assert!(check.difficulty() > 244_112.0); // above the block's network difficulty

        // Any other nonce almost surely fails the network target.
        let mut other = header;
        other[76] ^= 1;
        let miss = check_header(&other, &Target::DIFF1, &network);
        assert!(!miss.meets_network);
        assert!(!miss.meets_share);
        assert!(check_header(&other, &Target::MAX, &network).meets_share);
    }
}
