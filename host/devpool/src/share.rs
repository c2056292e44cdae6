//! Independent share validation: coinbase, merkle root, header and target.
//!
//! Everything here is written from scratch on top of the `sha2` crate's plain
//! full double SHA-256 so that the devpool never shares code (and therefore
//! never shares bugs) with the miner it is judging.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::job::Job;

/// Maximum distance (seconds) a submitted ntime may be ahead of the job's ntime.
pub(crate) const NTIME_MAX_AHEAD: u32 = 7200;

/// Why a submitted share was refused, mapped onto the standard Stratum codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Reject {
    /// mining.submit takes 5 or 6 parameters.
    #[error("wrong number of parameters")]
    ParamCount,
    /// A parameter had the wrong JSON type.
    #[error("parameter {0} must be a string")]
    ParamType(&'static str),
    /// A hex field was not valid hex or not the right width.
    #[error("invalid hex in {0}")]
    BadHex(&'static str),
    /// extranonce2 did not have the size announced at subscribe time.
    #[error("extranonce2 must be {expected} bytes, got {got}")]
    Extranonce2Size { expected: usize, got: usize },
    /// ntime is before the job's ntime or too far in the future.
    #[error("ntime out of range")]
    NtimeRange,
    /// Version bits were sent although version rolling was not negotiated.
    #[error("version rolling not negotiated")]
    VersionNotNegotiated,
    /// Version bits touch bits outside the negotiated mask.
    #[error("version bits outside negotiated mask")]
    VersionOutsideMask,
    /// The job id was never sent on this connection (or was forgotten).
    #[error("job not found")]
    JobNotFound,
    /// The job was superseded by a later clean job.
    #[error("stale job")]
    Stale,
    /// The exact same header was already accepted.
    #[error("duplicate share")]
    Duplicate,
    /// The header hash is above the share target.
    #[error("low difficulty share")]
    LowDifficulty,
    /// The worker was not authorized on this connection.
    #[error("unauthorized worker")]
    Unauthorized,
    /// mining.subscribe was not called on this connection.
    #[error("not subscribed")]
    NotSubscribed,
    /// A valid share refused on purpose (`DevPoolConfig::reject_every`),
    /// as a pool under load or mid-retarget does.
    #[error("rejected by the devpool's reject_every setting")]
    Deliberate,
}

impl Reject {
    /// The standard Stratum V1 error code for this rejection.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Reject::ParamCount
            | Reject::ParamType(_)
            | Reject::BadHex(_)
            | Reject::Extranonce2Size { .. }
            | Reject::NtimeRange
            | Reject::VersionNotNegotiated
            | Reject::VersionOutsideMask
            | Reject::Deliberate => 20,
            Reject::JobNotFound | Reject::Stale => 21,
            Reject::Duplicate => 22,
            Reject::LowDifficulty => 23,
            Reject::Unauthorized => 24,
            Reject::NotSubscribed => 25,
        }
    }
}

/// The string parameters of a mining.submit, checked for count and type only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submit {
    pub user: String,
    pub job_id: String,
    pub extranonce2: String,
    pub ntime: String,
    pub nonce: String,
    pub version_bits: Option<String>,
}

/// Per-connection facts a share is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShareContext<'a> {
    pub extranonce1: &'a [u8],
    pub extranonce2_size: usize,
    pub version_mask: u32,
}

/// A structurally valid share: its header and hash, before dup/target checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub header: [u8; 80],
    /// The double SHA-256 of the header, in display (big-endian) order.
    pub hash_be: [u8; 32],
    /// True when the header version differs from the job version.
    pub version_rolled: bool,
    /// True when the header ntime differs from the job's ntime.
    pub ntime_rolled: bool,
}

impl Candidate {
    /// Whether the hash is at or below the (big-endian) target.
    pub(crate) fn meets(&self, target_be: &[u8; 32]) -> bool {
        self.hash_be <= *target_be
    }
}

/// Check parameter count and types of a mining.submit.
pub(crate) fn parse_submit(params: &[Value]) -> Result<Submit, Reject> {
    if params.len() != 5 && params.len() != 6 {
        return Err(Reject::ParamCount);
    }
    let field = |i: usize, name: &'static str| -> Result<String, Reject> {
        match params.get(i) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(Reject::ParamType(name)),
        }
    };
    Ok(Submit {
        user: field(0, "worker")?,
        job_id: field(1, "job_id")?,
        extranonce2: field(2, "extranonce2")?,
        ntime: field(3, "ntime")?,
        nonce: field(4, "nonce")?,
        version_bits: if params.len() == 6 {
            Some(field(5, "version_bits")?)
        } else {
            None
        },
    })
}

/// Parse exactly eight hex digits as a big-endian u32.
pub(crate) fn parse_u32_hex(s: &str, name: &'static str) -> Result<u32, Reject> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Reject::BadHex(name));
    }
    u32::from_str_radix(s, 16).map_err(|_| Reject::BadHex(name))
}

/// Rebuild the header of a submitted share and hash it.
pub(crate) fn evaluate(
    job: &Job,
    ctx: &ShareContext<'_>,
    sub: &Submit,
) -> Result<Candidate, Reject> {
    let en2 = hex::decode(&sub.extranonce2).map_err(|_| Reject::BadHex("extranonce2"))?;
    if en2.len() != ctx.extranonce2_size {
        return Err(Reject::Extranonce2Size {
            expected: ctx.extranonce2_size,
            got: en2.len(),
        });
    }
    let ntime = parse_u32_hex(&sub.ntime, "ntime")?;
    let nonce = parse_u32_hex(&sub.nonce, "nonce")?;
    let version = match &sub.version_bits {
        None => job.version,
        Some(bits) => {
            let bits = parse_u32_hex(bits, "version_bits")?;
            if ctx.version_mask == 0 {
                return Err(Reject::VersionNotNegotiated);
            }
            if bits & !ctx.version_mask != 0 {
                return Err(Reject::VersionOutsideMask);
            }
            (job.version & !ctx.version_mask) | (bits & ctx.version_mask)
        }
    };
    if ntime < job.ntime || ntime > job.ntime.saturating_add(NTIME_MAX_AHEAD) {
        return Err(Reject::NtimeRange);
    }
    let header = build_header(job, ctx.extranonce1, &en2, version, ntime, nonce);
    let mut hash_be = sha256d(&header);
    hash_be.reverse();
    Ok(Candidate {
        header,
        hash_be,
        version_rolled: version != job.version,
        ntime_rolled: ntime != job.ntime,
    })
}

/// Full double SHA-256 of `data`, in internal (little-endian) byte order.
pub(crate) fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// Assemble the coinbase transaction for one share.
pub(crate) fn coinbase(job: &Job, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
    let mut tx = Vec::with_capacity(
        job.coinb1.len() + extranonce1.len() + extranonce2.len() + job.coinb2.len(),
    );
    tx.extend_from_slice(&job.coinb1);
    tx.extend_from_slice(extranonce1);
    tx.extend_from_slice(extranonce2);
    tx.extend_from_slice(&job.coinb2);
    tx
}

/// Merkle root (internal byte order) from the coinbase and the job's branches.
pub(crate) fn merkle_root(coinbase_tx: &[u8], branches: &[[u8; 32]]) -> [u8; 32] {
    let mut root = sha256d(coinbase_tx);
    let mut pair = [0u8; 64];
    for branch in branches {
        pair[..32].copy_from_slice(&root);
        pair[32..].copy_from_slice(branch);
        root = sha256d(&pair);
    }
    root
}

/// The 80-byte block header for a share.
pub(crate) fn build_header(
    job: &Job,
    extranonce1: &[u8],
    extranonce2: &[u8],
    version: u32,
    ntime: u32,
    nonce: u32,
) -> [u8; 80] {
    let root = merkle_root(&coinbase(job, extranonce1, extranonce2), &job.branches);
    let mut h = [0u8; 80];
    h[0..4].copy_from_slice(&version.to_le_bytes());
    h[4..36].copy_from_slice(&job.prevhash);
    h[36..68].copy_from_slice(&root);
    h[68..72].copy_from_slice(&ntime.to_le_bytes());
    h[72..76].copy_from_slice(&job.nbits.to_le_bytes());
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    h
}

/// Share target (big-endian 256-bit) for a pool difficulty:
/// `0xFFFF * 2^208 / difficulty`, truncated, saturating at 2^256 - 1.
pub(crate) fn difficulty_to_target(difficulty: f64) -> [u8; 32] {
    const MAX: [u8; 32] = [0xff; 32];
    if !(difficulty.is_finite() && difficulty > 0.0) {
        return MAX;
    }
    let v = 65535.0 / difficulty;
    if !v.is_finite() {
        return MAX;
    }
    let bits = v.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mantissa, exp) = if raw_exp == 0 {
        (frac, -1074i64)
    } else {
        (frac | (1u64 << 52), raw_exp - 1075)
    };
    // target = mantissa * 2^(exp + 208)
    let shift = exp + 208;
    let mut limbs = [0u64; 4]; // little-endian limbs
    if shift >= 0 {
        let bit_len = 64 - i64::from(mantissa.leading_zeros());
        if bit_len + shift > 256 {
            return MAX;
        }
        let limb = (shift / 64) as usize;
        let off = (shift % 64) as u32;
        let wide = u128::from(mantissa) << off;
        if let Some(l) = limbs.get_mut(limb) {
            *l = wide as u64;
        }
        if let Some(l) = limbs.get_mut(limb + 1) {
            *l = (wide >> 64) as u64;
        }
    } else if shift > -64 {
        limbs[0] = mantissa >> (-shift);
    }
    let mut out = [0u8; 32];
    for (i, limb) in limbs.iter().enumerate() {
        let start = 32 - 8 * (i + 1);
        out[start..start + 8].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job_from_notify(params: &Value) -> Job {
        let p = params.as_array().unwrap();
        let stratum_prev = hex::decode(p[1].as_str().unwrap()).unwrap();
        let mut prevhash = [0u8; 32];
        for (i, word) in stratum_prev.chunks(4).enumerate() {
            for (j, b) in word.iter().enumerate() {
                prevhash[i * 4 + 3 - j] = *b;
            }
        }
        Job {
            seq: 1,
            id: p[0].as_str().unwrap().to_string(),
            prevhash,
            coinb1: hex::decode(p[2].as_str().unwrap()).unwrap(),
            coinb2: hex::decode(p[3].as_str().unwrap()).unwrap(),
            branches: p[4]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    hex::decode(b.as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap()
                })
                .collect(),
            version: u32::from_str_radix(p[5].as_str().unwrap(), 16).unwrap(),
            nbits: u32::from_str_radix(p[6].as_str().unwrap(), 16).unwrap(),
            ntime: u32::from_str_radix(p[7].as_str().unwrap(), 16).unwrap(),
            clean: p[8].as_bool().unwrap(),
        }
    }

    // Values copied from /work/shared/vectors/stratum-v1.json (computed
    // independently with Python hashlib).
    fn vector_docs() -> (
        Value,
        &'static str,
        usize,
        Value,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            json!([
                "bf",
                "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
                "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
                "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
                [],
                "00000002",
                "1c2ac4af",
                "504e86b9",
                false
            ]),
            "08000002",
            4,
            json!(["worker", "bf", "00000001", "504e86ed", "b2957c02"]),
            "32414daa9ddac879fd2c62839b9ba710a3546363a5f5e22915d90dc3b1699dec",
            "02000000f8b6164d19e2f65a2aae448f787fe66d61e57a48c0c6771b1e920b440000000032414daa9ddac879fd2c62839b9ba710a3546363a5f5e22915d90dc3b1699deced864e50afc42a1c027c95b2",
            "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32",
        )
    }

    fn vector_rolling() -> (
        Value,
        &'static str,
        usize,
        Value,
        &'static str,
        &'static str,
        &'static str,
    ) {
        (
            json!([
                "6a1f",
                "7c1b76087bc1ee6992c1fbde1808de7d378e5d7e2aab24ffbc77ceae00000000",
                "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff2503d22cac2f68617368776174742f",
                "ffffffff0100f2052a010000001976a914f3000baccbb1fc23e09b777df129c2706cc6d69188ac00000000",
                [
                    "3f13ccb900958fe20ef124a3734ae106c1cafffbb48ae8f95a964012138741d4",
                    "a429738cbd523aca4296ac43445dce93238155074d0b26ec06f84884c777c866",
                    "7a67bc9b83a76d3551dd31cbd92e1f33d4d87da46531bde0136a2ae598ef6e63"
                ],
                "20000000",
                "1d00ffff",
                "6737a1c0",
                true
            ]),
            "a1b2c3d4",
            8,
            json!([
                "worker",
                "6a1f",
                "0000000000000007",
                "6737a1c5",
                "00006205",
                "00b2c000"
            ]),
            "81a75c3d3604596bbb27fbc5b9cb319d80222debb3db59d8b5287c0cef93d124",
            "00c0b22008761b7c69eec17bdefbc1927dde08187e5d8e37ff24ab2aaece77bc0000000081a75c3d3604596bbb27fbc5b9cb319d80222debb3db59d8b5287c0cef93d124c5a13767ffff001d05620000",
            "0000424596ff5e77aea3486b73026336ed01f332d61dfbb9e5615dc856124869",
        )
    }

    fn run_vector(
        v: (Value, &str, usize, Value, &str, &str, &str),
        mask: u32,
        difficulty: f64,
    ) -> Candidate {
        let (notify, en1, en2_size, submit, root, header, hash) = v;
        let job = job_from_notify(&notify);
        let en1 = hex::decode(en1).unwrap();
        let sub = parse_submit(submit.as_array().unwrap()).unwrap();
        let ctx = ShareContext {
            extranonce1: &en1,
            extranonce2_size: en2_size,
            version_mask: mask,
        };
        let en2 = hex::decode(&sub.extranonce2).unwrap();
        let cb = coinbase(&job, &en1, &en2);
        assert_eq!(hex::encode(merkle_root(&cb, &job.branches)), root);
        let cand = evaluate(&job, &ctx, &sub).unwrap();
        assert_eq!(hex::encode(cand.header), header);
        assert_eq!(hex::encode(cand.hash_be), hash);
        assert!(cand.meets(&difficulty_to_target(difficulty)));
        cand
    }

    #[test]
    fn docs_vector_validates() {
        let cand = run_vector(vector_docs(), 0, 1.0);
        assert!(!cand.version_rolled);
        // 0x2076870f.. is above the difficulty-8 target (0x1fffe000..).
        assert!(!cand.meets(&difficulty_to_target(8.0)));
    }

    #[test]
    fn rolling_vector_validates() {
        let cand = run_vector(vector_rolling(), 0x1fffe000, 1.52587890625e-05);
        assert!(cand.version_rolled);
        assert!(!cand.meets(&difficulty_to_target(1.0)));
    }

    #[test]
    fn rolling_vector_needs_negotiation_and_mask() {
        let (notify, en1, _, submit, ..) = vector_rolling();
        let job = job_from_notify(&notify);
        let en1 = hex::decode(en1).unwrap();
        let sub = parse_submit(submit.as_array().unwrap()).unwrap();
        let mut ctx = ShareContext {
            extranonce1: &en1,
            extranonce2_size: 8,
            version_mask: 0,
        };
        assert_eq!(
            evaluate(&job, &ctx, &sub),
            Err(Reject::VersionNotNegotiated)
        );
        ctx.version_mask = 0x1f000000;
        assert_eq!(evaluate(&job, &ctx, &sub), Err(Reject::VersionOutsideMask));
        ctx.extranonce2_size = 4;
        ctx.version_mask = 0x1fffe000;
        assert!(matches!(
            evaluate(&job, &ctx, &sub),
            Err(Reject::Extranonce2Size {
                expected: 4,
                got: 8
            })
        ));
    }

    #[test]
    fn ntime_window() {
        let (notify, en1, _, submit, ..) = vector_docs();
        let job = job_from_notify(&notify);
        let en1 = hex::decode(en1).unwrap();
        let ctx = ShareContext {
            extranonce1: &en1,
            extranonce2_size: 4,
            version_mask: 0,
        };
        let mut sub = parse_submit(submit.as_array().unwrap()).unwrap();
        sub.ntime = format!("{:08x}", job.ntime - 1);
        assert_eq!(evaluate(&job, &ctx, &sub), Err(Reject::NtimeRange));
        sub.ntime = format!("{:08x}", job.ntime + NTIME_MAX_AHEAD + 1);
        assert_eq!(evaluate(&job, &ctx, &sub), Err(Reject::NtimeRange));
        sub.ntime = format!("{:08x}", job.ntime + NTIME_MAX_AHEAD);
        assert!(evaluate(&job, &ctx, &sub).is_ok());
        sub.ntime = "504e86e".into();
        assert_eq!(evaluate(&job, &ctx, &sub), Err(Reject::BadHex("ntime")));
        sub.ntime = "504e86ed".into();
        sub.nonce = "zz957c02".into();
        assert_eq!(evaluate(&job, &ctx, &sub), Err(Reject::BadHex("nonce")));
    }

    #[test]
    fn submit_param_shapes() {
        assert_eq!(parse_submit(&[]), Err(Reject::ParamCount));
        let p = json!(["u", "j", "00", "00000000", 5]);
        assert_eq!(
            parse_submit(p.as_array().unwrap()),
            Err(Reject::ParamType("nonce"))
        );
        let p = json!(["u", "j", "00", "00000000", "00000000", "0", "x"]);
        assert_eq!(parse_submit(p.as_array().unwrap()), Err(Reject::ParamCount));
    }

    #[test]
    fn targets_match_vectors() {
        let cases = [
            (
                1.0,
                "00000000ffff0000000000000000000000000000000000000000000000000000",
            ),
            (
                2.0,
                "000000007fff8000000000000000000000000000000000000000000000000000",
            ),
            (
                65536.0,
                "000000000000ffff000000000000000000000000000000000000000000000000",
            ),
            (
                0.001,
                "000003e7fc180000000000000000000000000000000000000000000000000000",
            ),
            (
                1.52587890625e-05,
                "0000ffff00000000000000000000000000000000000000000000000000000000",
            ),
        ];
        for (d, t) in cases {
            assert_eq!(hex::encode(difficulty_to_target(d)), t, "difficulty {d}");
        }
        assert_eq!(difficulty_to_target(1e-30), [0xff; 32]);
        assert_eq!(difficulty_to_target(0.0), [0xff; 32]);
        assert_eq!(difficulty_to_target(f64::NAN), [0xff; 32]);
        // Huge difficulty: tiny but non-negative target, never a panic.
        let t = difficulty_to_target(1e300);
        assert!(t.iter().all(|b| *b == 0));
    }

    #[test]
    fn codes() {
        assert_eq!(Reject::Stale.code(), 21);
        assert_eq!(Reject::Duplicate.code(), 22);
        assert_eq!(Reject::LowDifficulty.code(), 23);
        assert_eq!(Reject::Unauthorized.code(), 24);
        assert_eq!(Reject::NotSubscribed.code(), 25);
        assert_eq!(Reject::VersionOutsideMask.code(), 20);
    }
}
