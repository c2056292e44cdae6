//! Untrusted plugin jobs, share targets and wake-up times through the
//! host's validation (`Job::validate`, `Target::from_slice`, `wake_delay`):
//! validation must never panic, whatever it accepts must be safe to mine
//! (every accessor and header builder works on it, with the sizes the job
//! promised), and any `wake-at` a plugin returns (`hashwatt:pool@0.2.0`)
//! becomes a wait within the host's bounds that a clock can always add.

#![no_main]

// The host's wake-up clamp, compiled from its source (it needs only std),
// so this fuzz workspace does not build the whole host.
#[path = "../../src/plugin/wake.rs"]
mod wake;

use arbitrary::Arbitrary;
use hashwatt_work::job::{
    EXTRANONCE2_SIZES, MAX_COINBASE_PART_LEN, MAX_EXTRANONCE1_LEN, MAX_JOB_ID_LEN,
    MAX_MERKLE_BRANCHES, MIN_COINBASE_LEN,
};
use hashwatt_work::{Job, JobSpec, Target, WorkKindSpec};
use libfuzzer_sys::fuzz_target;

/// A byte field that is usually the size the host wants, so the fuzzer gets
/// past the length checks, and sometimes anything at all.
#[derive(Arbitrary, Debug)]
enum Bytes32 {
    Exact([u8; 32]),
    Any(Vec<u8>),
}

impl Bytes32 {
    fn into_vec(self) -> Vec<u8> {
        match self {
            Bytes32::Exact(b) => b.to_vec(),
            Bytes32::Any(v) => v,
        }
    }
}

/// A coinbase part: small arbitrary bytes, or a long run to hit the size caps.
#[derive(Arbitrary, Debug)]
enum Part {
    Bytes(Vec<u8>),
    Run { byte: u8, len: u32 },
}

impl Part {
    fn into_vec(self) -> Vec<u8> {
        match self {
            Part::Bytes(v) => v,
            // Capped so one input stays cheap; still well past the limit.
            Part::Run { byte, len } => {
                vec![byte; (len % (2 * MAX_COINBASE_PART_LEN as u32 + 2)) as usize]
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Branches {
    List(Vec<Bytes32>),
    /// Many copies of one branch, to reach absurd counts cheaply.
    Many {
        branch: Bytes32,
        count: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Extended {
        prefix: Part,
        extranonce1: Vec<u8>,
        extranonce2_size: u8,
        suffix: Part,
        branches: Branches,
    },
    MerkleRoot(Bytes32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    id: String,
    kind: Kind,
    prev_hash: Bytes32,
    version: u32,
    version_mask: u32,
    nbits: u32,
    ntime: u32,
    clean: bool,
    /// Share target bytes a plugin might send.
    target: Bytes32,
    /// What the miner would try with an accepted job.
    extranonce2: Vec<u8>,
    nonce: u32,
    roll: u64,
    hash: [u8; 32],
    /// A `wake-at` a plugin might return, and the host's clock then.
    wake_at_ms: u64,
    now_ms: u64,
}

fn spec(input: Kind) -> WorkKindSpec {
    match input {
        Kind::Extended {
            prefix,
            extranonce1,
            extranonce2_size,
            suffix,
            branches,
        } => WorkKindSpec::Extended {
            coinbase_prefix: prefix.into_vec(),
            extranonce1,
            extranonce2_size,
            coinbase_suffix: suffix.into_vec(),
            merkle_branches: match branches {
                Branches::List(list) => list.into_iter().map(Bytes32::into_vec).collect(),
                Branches::Many { branch, count } => vec![branch.into_vec(); usize::from(count)],
            },
        },
        Kind::MerkleRoot(root) => WorkKindSpec::MerkleRoot(root.into_vec()),
    }
}

fuzz_target!(|input: Input| {
    let job_spec = JobSpec {
        id: input.id,
        kind: spec(input.kind),
        prev_hash: input.prev_hash.into_vec(),
        version: input.version,
        version_mask: input.version_mask,
        nbits: input.nbits,
        ntime: input.ntime,
        clean: input.clean,
    };
    let original = job_spec.clone();
    match Job::validate(job_spec) {
        Ok(job) => check_accepted(&original, &job, &input.extranonce2, input.nonce, input.roll),
        Err(e) => {
            // Every refusal explains itself.
            assert!(!e.to_string().is_empty());
        }
    }

    let target_bytes = input.target.into_vec();
    match Target::from_slice(&target_bytes) {
        Ok(t) => {
            assert_eq!(target_bytes.len(), 32);
            assert_eq!(&t.as_be_bytes()[..], &target_bytes[..]);
            let d = t.difficulty();
            assert!(!d.is_nan(), "difficulty of {target_bytes:02x?} is NaN");
            let _ = t.is_met_by(&input.hash);
            // The all-ones hash meets only the maximal target.
            if t.is_met_by(&[0xff; 32]) {
                assert_eq!(t.as_be_bytes(), &[0xff; 32]);
            }
        }
        Err(e) => {
            assert_ne!(target_bytes.len(), 32, "32 bytes refused: {e}");
        }
    }
    let _ = Target::from_nbits(input.nbits).map(|t| t.difficulty());

    check_wake(input.wake_at_ms, input.now_ms);
});

/// Any wake-up time gives a bounded wait: at least the minimum (a plugin
/// cannot make the host spin), at most the maximum (an instant that far
/// ahead always exists), and exactly the time left in between.
fn check_wake(wake_at_ms: u64, now_ms: u64) {
    use wake::{MAX_WAKE_DELAY, MIN_WAKE_DELAY, wake_delay};
    let d = wake_delay(wake_at_ms, now_ms);
    assert!(d >= MIN_WAKE_DELAY && d <= MAX_WAKE_DELAY, "{d:?}");
    let left = wake_at_ms.saturating_sub(now_ms);
    let min = MIN_WAKE_DELAY.as_millis() as u64;
    let max = MAX_WAKE_DELAY.as_millis() as u64;
    if (min..=max).contains(&left) {
        assert_eq!(d.as_millis() as u64, left);
    }
    // Later requests never wait less.
    assert!(wake_delay(wake_at_ms.saturating_add(1), now_ms) >= d);
    assert!(std::time::Instant::now().checked_add(d).is_some());
}

/// Whatever validation accepts keeps the WIT contract's promises.
fn check_accepted(spec: &JobSpec, job: &Job, extranonce2: &[u8], nonce: u32, roll: u64) {
    assert!(!spec.id.is_empty() && spec.id.len() <= MAX_JOB_ID_LEN);
    assert_eq!(job.id(), spec.id);
    assert_eq!(&job.prev_hash()[..], &spec.prev_hash[..]);
    assert_eq!(job.nbits(), spec.nbits);
    let _ = job.network_target();
    match &spec.kind {
        WorkKindSpec::Extended {
            coinbase_prefix,
            extranonce1,
            extranonce2_size,
            coinbase_suffix,
            merkle_branches,
        } => {
            assert!(job.is_extended());
            assert!(EXTRANONCE2_SIZES.contains(extranonce2_size));
            assert_eq!(job.extranonce2_size(), usize::from(*extranonce2_size));
            assert!(!coinbase_prefix.is_empty());
            assert!(coinbase_prefix.len() <= MAX_COINBASE_PART_LEN);
            assert!(coinbase_suffix.len() <= MAX_COINBASE_PART_LEN);
            assert!(extranonce1.len() <= MAX_EXTRANONCE1_LEN);
            assert!(merkle_branches.len() <= MAX_MERKLE_BRANCHES);
            assert!(merkle_branches.iter().all(|b| b.len() == 32));
            // The miner's first unit: a correctly sized extranonce2 works...
            let en2 = vec![0xa5; job.extranonce2_size()];
            let coinbase = job.coinbase(&en2).unwrap();
            assert!(coinbase.len() >= MIN_COINBASE_LEN);
            assert_eq!(
                coinbase.len(),
                coinbase_prefix.len() + extranonce1.len() + en2.len() + coinbase_suffix.len()
            );
            let root = job.merkle_root(&en2).unwrap();
            let header = job.header(&root, job.rolled_version(roll), job.ntime(), nonce);
            assert_eq!(&header[4..36], &spec.prev_hash[..]);
            assert_eq!(&header[36..68], &root[..]);
            let v = job.version();
            assert_eq!(
                job.header_for(&en2, v, job.ntime(), nonce).unwrap(),
                job.header(&root, v, job.ntime(), nonce)
            );
        }
        WorkKindSpec::MerkleRoot(root) => {
            assert!(!job.is_extended());
            assert_eq!(job.extranonce2_size(), 0);
            assert!(job.coinbase(&[]).is_err());
            assert_eq!(&job.merkle_root(&[]).unwrap()[..], &root[..]);
        }
    }
    // ...and any other size is refused, not mis-assembled.
    if extranonce2.len() != job.extranonce2_size() {
        assert!(job.merkle_root(extranonce2).is_err());
        assert!(
            job.header_for(extranonce2, job.version(), job.ntime(), nonce)
                .is_err()
        );
    }
    // Rolled versions stay inside the mask.
    let rolled = job.rolled_version(roll);
    assert!(job.version_allowed(rolled), "{rolled:#x} not allowed");
    assert_eq!(
        rolled & !job.version_mask(),
        job.version() & !job.version_mask()
    );
}
