//! End-to-end checks against the independently computed vectors in
//! `tests/data/stratum-v1.json` (a copy of /work/shared/vectors/stratum-v1.json).

use hashwatt_work::{
    Extranonce2Range, Job, JobSpec, Target, WorkKindSpec, check_header, hash_to_display,
    rolled_version, rolling_space, sha256d, version_bits_ok,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/stratum-v1.json")).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn hex_u32(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}

/// Stratum V1 sends prevhash as eight 4-byte words, each byte-swapped
/// relative to the header; swapping each word back gives header order.
/// (This is the plugin's job in production; done here only for the test.)
fn stratum_prevhash_to_header(hex_str: &str) -> Vec<u8> {
    let raw = hex::decode(hex_str).unwrap();
    assert_eq!(raw.len(), 32);
    raw.chunks(4)
        .flat_map(|w| w.iter().rev().copied())
        .collect()
}

/// Test-local inverse of `rolled_version` (pext): gathers the mask's bits of
/// `bits` into the low bits of a counter.
fn extract_bits(bits: u32, mask: u32) -> u64 {
    let mut n = 0u64;
    let mut k = 0;
    for i in 0..32 {
        if mask & (1 << i) != 0 {
            if bits & (1 << i) != 0 {
                n |= 1 << k;
            }
            k += 1;
        }
    }
    n
}

fn job_from_notify(v: &Value) -> Job {
    let p = v["notify_params"].as_array().unwrap();
    let branches = p[4].as_array().unwrap().iter().map(bytes).collect();
    let spec = JobSpec {
        id: p[0].as_str().unwrap().to_owned(),
        kind: WorkKindSpec::Extended {
            coinbase_prefix: bytes(&p[2]),
            extranonce1: bytes(&v["extranonce1"]),
            extranonce2_size: v["extranonce2_size"].as_u64().unwrap() as u8,
            coinbase_suffix: bytes(&p[3]),
            merkle_branches: branches,
        },
        prev_hash: stratum_prevhash_to_header(p[1].as_str().unwrap()),
        version: hex_u32(&p[5]),
        version_mask: v.get("version_rolling_mask").map_or(0, hex_u32),
        nbits: hex_u32(&p[6]),
        ntime: hex_u32(&p[7]),
        clean: p[8].as_bool().unwrap(),
    };
    Job::validate(spec).unwrap()
}

#[test]
fn block_125552_hash() {
    let v = vectors();
    let block = &v["blocks"][0];
    assert_eq!(block["height"], 125552);
    let header: [u8; 80] = bytes(&block["header"]).try_into().unwrap();
    let hash = sha256d(&header);
    assert_eq!(
        hash_to_display(&hash),
        "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"
    );
    assert_eq!(
        hash_to_display(&hash),
        block["hash_display"].as_str().unwrap()
    );
    let network = Target::from_nbits(0x1a44b9f2).unwrap();
    assert!(check_header(&header, &network, &network).meets_network);
}

/// Builds coinbase, merkle root, header and hash for one vector and checks
/// each against the stored values; returns the header.
fn check_stratum_vector(v: &Value, version: u32) -> [u8; 80] {
    let job = job_from_notify(v);
    let submit = &v["submit"];
    assert_eq!(job.id(), submit["job_id"].as_str().unwrap());
    let en2 = bytes(&submit["extranonce2"]);
    assert_eq!(en2.len(), job.extranonce2_size());
    assert_eq!(job.coinbase(&en2).unwrap(), bytes(&v["coinbase"]));
    let root = job.merkle_root(&en2).unwrap();
    assert_eq!(root.to_vec(), bytes(&v["merkle_root_header_bytes"]));
    let header = job.header(
        &root,
        version,
        hex_u32(&submit["ntime"]),
        hex_u32(&submit["nonce"]),
    );
    assert_eq!(header.to_vec(), bytes(&v["header"]));
    assert_eq!(
        hash_to_display(&sha256d(&header)),
        v["hash_display"].as_str().unwrap()
    );
    header
}

#[test]
fn stratum_v1_docs_example() {
    let all = vectors();
    let v = &all["stratum_v1"][0];
    let job = job_from_notify(v);
    assert_eq!(job.version_mask(), 0);
    let header = check_stratum_vector(v, job.version());
    // nbits 1c2ac4af: exponent 28 → 4 zero bytes, 2ac4af, 25 zero bytes.
    assert_eq!(
        job.network_target(),
        Target::from_slice(
            &hex::decode("000000002ac4af00000000000000000000000000000000000000000000000000")
                .unwrap()
        )
        .unwrap()
    );
    // Hash 000000002076870f… is below 000000002ac4af…: this example share
    // is also a (testnet-difficulty) block.
    let check = check_header(&header, &Target::DIFF1, &job.network_target());
    assert!(check.meets_share);
    assert!(check.meets_network);
}

#[test]
fn stratum_v1_branches_and_version_rolling() {
    let all = vectors();
    let v = &all["stratum_v1"][1];
    let job = job_from_notify(v);
    let mask = job.version_mask();
    assert_eq!(mask, 0x1fff_e000);
    assert_eq!(rolling_space(mask), 1 << 16);
    let bits = hex_u32(&v["submit"]["version_bits"]);
    let version = rolled_version(job.version(), mask, extract_bits(bits, mask));
    assert_eq!(version, (job.version() & !mask) | (bits & mask));
    assert!(version_bits_ok(job.version(), mask, version));
    let header = check_stratum_vector(v, version);

    let d = v["difficulty"].as_f64().unwrap();
    let share_target = Target::from_difficulty(d).unwrap();
    assert_eq!(
        share_target,
        Target::from_slice(&bytes(&v["share_target_hex"])).unwrap()
    );
    let check = check_header(&header, &share_target, &job.network_target());
    assert!(check.meets_share);
    assert!(!check.meets_network);
    assert!(check.difficulty() >= d);
}

#[test]
fn difficulty_and_nbits_tables() {
    let v = vectors();
    for row in v["difficulty_to_target"].as_array().unwrap() {
        let d = row["difficulty"].as_f64().unwrap();
        let expected = Target::from_slice(&bytes(&row["target_hex"])).unwrap();
        assert_eq!(
            Target::from_difficulty(d).unwrap(),
            expected,
            "difficulty {d}"
        );
    }
    for row in v["nbits_to_target"].as_array().unwrap() {
        let nbits = hex_u32(&row["nbits"]);
        let expected = Target::from_slice(&bytes(&row["target_hex"])).unwrap();
        assert_eq!(
            Target::from_nbits(nbits).unwrap(),
            expected,
            "nbits {nbits:08x}"
        );
    }
}

#[test]
fn workers_mine_distinct_headers_for_a_vector_job() {
    let all = vectors();
    let job = job_from_notify(&all["stratum_v1"][1]);
    let mut roots = std::collections::HashSet::new();
    for i in 0..8 {
        for w in 0..4 {
            let range = Extranonce2Range::slice(job.extranonce2_size(), w, 4).unwrap();
            let en2 = range.value(i).unwrap();
            assert!(roots.insert(job.merkle_root(&en2).unwrap()));
        }
    }
}
