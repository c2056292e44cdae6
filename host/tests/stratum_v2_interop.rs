//! The Stratum V2 plugin against the Stratum V2 reference pool (`pool_sv2`
//! 0.7 from crates.io, installed by `.ci/test` into `target/tools`) on
//! loopback: the appliance, with the signed `stratum-v2` package
//! installed, mines on a standard and on an extended channel; shares are
//! accepted with none rejected, a new previous hash is followed with no
//! stale submission, and when the V2 pool goes away mining fails over to
//! a Stratum V1 pool.
//!
//! The pool needs a template provider. Bitcoin Core's own (over its IPC
//! interface) cannot be had here, so a small one on the reference
//! template-distribution crates speaks for a real Bitcoin Knots 29.5
//! regtest node (installed by `.ci/install-knots` into `target/tools`): it
//! turns the node's `getblocktemplate` into `NewTemplate` and
//! `SetNewPrevHash`, follows the node's tip, and turns the pool's
//! `SubmitSolution` into a full block that the node checks and, at the
//! test's block difficulty, accepts with `submitblock`. The test then asks
//! the node that the appliance's blocks are on its chain, paying the
//! pool's coinbase script, and has the node mine a competitor's block to
//! move the tip under the miner.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ChildGuard, ChildGuard as Pool, free_port};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codec_sv2::{Decrypted, Handshake, NoiseDecoder, NoiseEncoder};
use common_messages_sv2::{
    MESSAGE_TYPE_SETUP_CONNECTION, MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, SetupConnectionSuccess,
};
use framing_sv2::framing::MessageFrame;
use hashwatt::config::{PoolEntry, PoolUrl};
use noise_sv2::{ELLSWIFT_ENCODING_SIZE, Responder};
use secp256k1::{Keypair, Secp256k1};
use template_distribution_sv2::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// SRI's published example authority key pair (its pool configurations
/// ship with it); fine for a loopback test, never for a real pool.
const POOL_PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
const POOL_SECRET: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pool_binary() -> PathBuf {
    let bin = workspace().join("target/tools/bin/pool_sv2");
    assert!(
        bin.exists(),
        "{} is missing: cargo install pool_sv2 --version 0.7.0 --locked --root target/tools (.ci/test does it)",
        bin.display()
    );
    bin
}

fn bitcoind_binary() -> PathBuf {
    let bin = workspace().join("target/tools/bin/bitcoind");
    assert!(
        bin.exists(),
        "{} is missing: bash .ci/install-knots installs Bitcoin Knots there (.ci/test does it)",
        bin.display()
    );
    bin
}

/// The node's RPC credentials, `hw:hw`, as an HTTP Basic header.
const RPC_AUTH: &str = "Basic aHc6aHc=";

/// Where the pool's coinbase pays: the witness program of the address
/// SRI's example configurations use, as a regtest address.
const POOL_ADDRESS: &str = "bcrt1qa0sm0hxzj0x25rh8gw5xlzwlsfvvyz8u8nhukw";

/// Where the node's own ("a competitor's") blocks pay.
const COMPETITOR_ADDRESS: &str = "bcrt1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3lgth6c";

/// JSON-RPC over HTTP to the node on loopback.
#[derive(Clone)]
struct Rpc {
    url: String,
}

impl Rpc {
    /// One call; the node's `error` as `Err`.
    fn call(&self, method: &str, params: serde_json::Value) -> Result<serde_json::Value, String> {
        let body =
            serde_json::json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let text = match ureq::post(&self.url)
            .set("Authorization", RPC_AUTH)
            .set("Content-Type", "application/json")
            .timeout(Duration::from_secs(30))
            .send_string(&body.to_string())
        {
            // The node answers RPC errors with HTTP 500 and a JSON body.
            Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_string(),
            Err(e) => return Err(format!("{method}: {e}")),
        }
        .map_err(|e| format!("{method}: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{method}: {e}: {text}"))?;
        if v["error"].is_null() {
            Ok(v["result"].clone())
        } else {
            Err(format!("{method}: {}", v["error"]))
        }
    }

    /// [`Rpc::call`] off the async workers (the appliance mines on them).
    async fn acall(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let rpc = self.clone();
        tokio::task::spawn_blocking(move || rpc.call(method, params))
            .await
            .map_err(|e| format!("{method}: {e}"))?
    }
}

/// A Bitcoin Knots regtest node with its own datadir, on loopback only,
/// killed when dropped.
struct Node {
    rpc: Rpc,
    _child: ChildGuard,
}

impl Node {
    fn start(datadir: &Path) -> Node {
        std::fs::create_dir_all(datadir).unwrap();
        let port = free_port();
        let mut child = ChildGuard(
            Command::new(bitcoind_binary())
                .arg("-regtest")
                .arg(format!("-datadir={}", datadir.display()))
                .args([
                    "-server",
                    "-listen=0",
                    "-connect=0",
                    "-dnsseed=0",
                    "-disablewallet",
                    "-printtoconsole=0",
                    "-rpcbind=127.0.0.1",
                    "-rpcallowip=127.0.0.1",
                    "-rpcuser=hw",
                    "-rpcpassword=hw",
                ])
                .arg(format!("-rpcport={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("bitcoind starts"),
        );
        let rpc = Rpc {
            url: format!("http://127.0.0.1:{port}/"),
        };
        let start = std::time::Instant::now();
        // Until the RPC server is up and past its warm-up (error -28).
        while let Err(e) = rpc.call("getblockchaininfo", serde_json::json!([])) {
            if let Some(status) = child.0.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut s) = child.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut s, &mut err);
                }
                panic!(
                    "bitcoind exited ({status}): {err}\n{}",
                    std::fs::read_to_string(datadir.join("regtest/debug.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "bitcoind's RPC did not come up: {e}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Node { rpc, _child: child }
    }

    /// Mines one block paying `COMPETITOR_ADDRESS`; its hash.
    async fn mine_competitor_block(&self) -> String {
        let hashes = self
            .rpc
            .acall(
                "generatetoaddress",
                serde_json::json!([1, COMPETITOR_ADDRESS]),
            )
            .await
            .expect("generatetoaddress");
        hashes[0].as_str().expect("a block hash").to_string()
    }
}

/// What the template provider saw and did, for the test's checks.
#[derive(Debug, Default, Clone)]
struct TpStats {
    /// Templates announced (NewTemplate + SetNewPrevHash pairs).
    announced: u64,
    /// The previous-block hash (RPC hex) last announced.
    tip: String,
    /// SubmitSolution messages from the pool.
    solutions: u64,
    /// Solutions on a tip the node had already left (not checked).
    stale: u64,
    /// Solutions the node found valid but below `BLOCK_BITS` (not submitted).
    weak: u64,
    /// Hashes of the blocks the node accepted with `submitblock`.
    blocks: Vec<String>,
    /// Solutions the node refused, with its reason.
    refused: Vec<String>,
}

/// The template provider: one pool connection at a time, each on the
/// node's current tip.
struct TemplateProvider {
    addr: std::net::SocketAddr,
    stats: Arc<Mutex<TpStats>>,
}

impl TemplateProvider {
    fn stats(&self) -> TpStats {
        self.stats.lock().unwrap().clone()
    }
}

async fn template_provider(rpc: Rpc) -> TemplateProvider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Mutex::new(TpStats::default()));
    let st = stats.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (rpc, st) = (rpc.clone(), st.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_pool(socket, rpc, st).await {
                    eprintln!("template provider: {e}");
                }
            });
        }
    });
    TemplateProvider { addr, stats }
}

/// The difficulty at which a solution becomes a block on the node: 0.04,
/// about one share in four at the channel's difficulty for the nominal
/// hashrate below. Regtest's own (`nbits` 0x207fffff, which goes into the
/// header) makes every share a block, and the reference pool judges blocks
/// by `nbits` alone (`channels_sv2` ignores `SetNewPrevHash.target`): each
/// share would move the chain and race the shares in flight into stale
/// rejections. So the pool submits every share as a solution, the node
/// checks each in full (`getblocktemplate` proposal mode), and only those
/// that also meet this target are submitted as blocks.
const BLOCK_BITS: u32 = 0x1d18_ffe7;

/// Hashrate announced to the pool (a debug-build CPU core hashes ~15 MH/s).
const NOMINAL_HS: f64 = 2e7;

/// The 32-byte little-endian target compact `nbits` stands for.
fn target_le(nbits: u32) -> [u8; 32] {
    let exponent = (nbits >> 24) as usize;
    let mantissa = (nbits & 0x00ff_ffff).to_le_bytes();
    let mut t = [0u8; 32];
    for (i, b) in mantissa[..3].iter().enumerate() {
        if let Some(slot) = (exponent + i).checked_sub(3).and_then(|k| t.get_mut(k)) {
            *slot = *b;
        }
    }
    t
}

/// Whether a hash (little-endian, as computed) is at most `target`.
fn meets(hash: &[u8; 32], target: &[u8; 32]) -> bool {
    hash.iter().rev().cmp(target.iter().rev()) != std::cmp::Ordering::Greater
}

/// The fingerprint the panel shows for an SRI authority key: the first 8
/// bytes of SHA-256 of its 32 key bytes, in hex pairs.
fn authority_fingerprint(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let raw = bs58::decode(text).with_check(None).into_vec().unwrap();
    assert_eq!(raw.len(), 34, "SRI key form: version 1, 0, then 32 bytes");
    Sha256::digest(&raw[2..])[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sha256d(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(Sha256::digest(data)).into()
}

fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// The block height as BIP34 wants it first in the coinbase script:
/// `CScript() << height`, i.e. OP_1..OP_16 or a minimal number push.
fn bip34_height(height: u64) -> Vec<u8> {
    if (1..=16).contains(&height) {
        return vec![0x50 + height as u8];
    }
    let mut n = Vec::new();
    let mut h = height;
    while h > 0 {
        n.push(h as u8);
        h >>= 8;
    }
    if n.last().is_some_and(|b| b & 0x80 != 0) {
        n.push(0);
    }
    let mut push = vec![n.len() as u8];
    push.extend(n);
    push
}

/// A template handed to the pool, kept to rebuild its blocks.
struct Template {
    prev_hex: String,
    /// The previous-block hash in header byte order.
    prev_hash: [u8; 32],
    bits: u32,
}

/// What of the node's `getblocktemplate` goes into `NewTemplate` and
/// `SetNewPrevHash`.
struct Gbt {
    version: u32,
    coinbase_prefix: Vec<u8>,
    value: u64,
    /// Serialized outputs the coinbase must carry.
    outputs: Vec<u8>,
    curtime: u32,
    template: Template,
}

fn from_gbt(gbt: &serde_json::Value) -> Gbt {
    assert!(
        gbt["transactions"].as_array().is_some_and(|t| t.is_empty()),
        "the regtest mempool should be empty: {gbt}"
    );
    let prev_hex = gbt["previousblockhash"].as_str().unwrap().to_string();
    let mut prev_hash: [u8; 32] = hex::decode(&prev_hex).unwrap().try_into().unwrap();
    prev_hash.reverse();
    let bits = u32::from_str_radix(gbt["bits"].as_str().unwrap(), 16).unwrap();
    // The witness commitment output, as a template provider sends it: the
    // pool's coinbase carries the BIP141 witness reserved value.
    let commitment = hex::decode(gbt["default_witness_commitment"].as_str().unwrap()).unwrap();
    let mut outputs = 0u64.to_le_bytes().to_vec();
    outputs.push(commitment.len() as u8);
    outputs.extend(&commitment);
    Gbt {
        version: gbt["version"].as_u64().unwrap() as u32,
        coinbase_prefix: bip34_height(gbt["height"].as_u64().unwrap()),
        value: gbt["coinbasevalue"].as_u64().unwrap(),
        outputs,
        curtime: gbt["curtime"].as_u64().unwrap() as u32,
        template: Template {
            prev_hex,
            prev_hash,
            bits,
        },
    }
}

/// Reads a Bitcoin CompactSize at `*at`.
fn compact_size(tx: &[u8], at: &mut usize) -> usize {
    let first = tx[*at];
    let (n, len) = match first {
        0xfd => (
            u16::from_le_bytes(tx[*at + 1..*at + 3].try_into().unwrap()) as usize,
            3,
        ),
        0xfe => (
            u32::from_le_bytes(tx[*at + 1..*at + 5].try_into().unwrap()) as usize,
            5,
        ),
        0xff => (
            u64::from_le_bytes(tx[*at + 1..*at + 9].try_into().unwrap()) as usize,
            9,
        ),
        n => (n as usize, 1),
    };
    *at += len;
    n
}

/// A transaction without its BIP141 marker, flag and witnesses: what its
/// txid (and so the merkle root) is computed over.
fn without_witness(tx: &[u8]) -> Vec<u8> {
    if tx[4] != 0 {
        return tx.to_vec();
    }
    let mut at = 6;
    let body_start = at;
    let inputs = compact_size(tx, &mut at);
    for _ in 0..inputs {
        at += 36;
        let script = compact_size(tx, &mut at);
        at += script + 4;
    }
    let outputs = compact_size(tx, &mut at);
    for _ in 0..outputs {
        at += 8;
        let script = compact_size(tx, &mut at);
        at += script;
    }
    let body_end = at;
    let mut stripped = tx[..4].to_vec();
    stripped.extend(&tx[body_start..body_end]);
    stripped.extend(&tx[tx.len() - 4..]);
    stripped
}

/// The full block of a solution: its header hash (little-endian) and the
/// serialized block.
fn block_of(
    t: &Template,
    version: u32,
    time: u32,
    nonce: u32,
    coinbase: &[u8],
) -> ([u8; 32], Vec<u8>) {
    let mut block = version.to_le_bytes().to_vec();
    block.extend(t.prev_hash);
    // The coinbase is the only transaction: the merkle root is its txid.
    block.extend(sha256d(&without_witness(coinbase)));
    block.extend(time.to_le_bytes());
    block.extend(t.bits.to_le_bytes());
    block.extend(nonce.to_le_bytes());
    let hash = sha256d(&block);
    block.push(1);
    block.extend(coinbase);
    (hash, block)
}

async fn serve_pool(
    mut socket: tokio::net::TcpStream,
    rpc: Rpc,
    stats: Arc<Mutex<TpStats>>,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Debug| format!("{x:?}");
    // Noise NX as the responder, with a throwaway authority key (the pool
    // is configured without one for its template provider).
    let secp = Secp256k1::new();
    let kp = Keypair::new(&secp, &mut secp256k1::rand::thread_rng());
    let mut first = [0u8; ELLSWIFT_ENCODING_SIZE];
    socket.read_exact(&mut first).await.map_err(|x| e(&x))?;
    let responder = Responder::new_with_rng(kp, 3600, &mut secp256k1::rand::thread_rng());
    let (reply, transport) = Handshake::responder(responder)
        .step_1_with_now_rng(first, now_s(), &mut secp256k1::rand::thread_rng())
        .map_err(|x| e(&x))?;
    let mut encoder = NoiseEncoder::new();
    let reply = AsRef::<[u8]>::as_ref(&encoder.encode_handshake(reply)).to_vec();
    socket.write_all(&reply).await.map_err(|x| e(&x))?;
    let (mut enc, dec) = transport.split();
    let mut dec = Some(dec);
    let mut decoder = NoiseDecoder::new();
    macro_rules! frame {
        ($m:expr, $t:expr) => {{
            let f = MessageFrame::from_message($m, $t, 0, false).map_err(|x| e(&x))?;
            let b = encoder.encode_transport(f, &mut enc).map_err(|x| e(&x))?;
            AsRef::<[u8]>::as_ref(&b).to_vec()
        }};
    }
    let mut templates: HashMap<u64, Template> = HashMap::new();
    let mut template_id = 0u64;
    // The tip last announced; none before the pool's constraints arrive.
    let mut announced: Option<String> = None;
    // A template on the node's current tip, as the two frames.
    macro_rules! announce {
        () => {{
            let gbt = rpc
                .acall("getblocktemplate", serde_json::json!([{"rules": ["segwit"]}]))
                .await?;
            template_id += 1;
            let g = from_gbt(&gbt);
            let target = target_le(BLOCK_BITS);
            let template = NewTemplate {
                template_id,
                future_template: true,
                version: g.version,
                coinbase_tx_version: 2,
                coinbase_prefix: g.coinbase_prefix.as_slice().try_into().unwrap(),
                coinbase_tx_input_sequence: 0xffff_ffff,
                coinbase_tx_value_remaining: g.value,
                coinbase_tx_outputs_count: 1,
                coinbase_tx_outputs: g.outputs.as_slice().try_into().unwrap(),
                coinbase_tx_locktime: 0,
                merkle_path: Vec::new().try_into().unwrap(),
            };
            let prevhash = SetNewPrevHash {
                template_id,
                prev_hash: (&g.template.prev_hash).into(),
                header_timestamp: g.curtime,
                n_bits: g.template.bits,
                target: (&target).into(),
            };
            let mut out = frame!(template, MESSAGE_TYPE_NEW_TEMPLATE);
            out.extend(frame!(prevhash, MESSAGE_TYPE_SET_NEW_PREV_HASH));
            let kept = g.template;
            {
                let mut s = stats.lock().unwrap();
                s.announced += 1;
                s.tip = kept.prev_hex.clone();
            }
            announced = Some(kept.prev_hex.clone());
            templates.insert(template_id, kept);
            socket.write_all(&out).await.map_err(|x| e(&x))?;
        }};
    }
    let mut inbox: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            n = socket.read(&mut buf) => {
                let n = n.map_err(|x| e(&x))?;
                if n == 0 {
                    return Ok(());
                }
                inbox.extend_from_slice(&buf[..n]);
                loop {
                    let need = decoder.writable_len();
                    if inbox.len() < need {
                        break;
                    }
                    decoder.writable().copy_from_slice(&inbox[..need]);
                    inbox.drain(..need);
                    let state = dec.take().ok_or("decrypt state lost")?;
                    match decoder.next_transport_frame(state).map_err(|x| e(&x))? {
                        Decrypted::Incomplete(_, s) => dec = Some(s),
                        Decrypted::Frame(mut f, s) => {
                            dec = Some(s);
                            let ty = f.header().msg_type();
                            let payload = f.payload();
                            match ty {
                                MESSAGE_TYPE_SETUP_CONNECTION => {
                                    let b = frame!(
                                        SetupConnectionSuccess { used_version: 2, flags: 0 },
                                        MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS
                                    );
                                    socket.write_all(&b).await.map_err(|x| e(&x))?;
                                }
                                MESSAGE_TYPE_COINBASE_OUTPUT_CONSTRAINTS => announce!(),
                                MESSAGE_TYPE_REQUEST_TRANSACTION_DATA => {
                                    let m: RequestTransactionData =
                                        binary_sv2::from_bytes(payload).map_err(|x| e(&x))?;
                                    let b = frame!(
                                        RequestTransactionDataSuccess {
                                            template_id: m.template_id,
                                            excess_data: (&[0u8; 0]).try_into().unwrap(),
                                            transaction_list: Vec::new().try_into().unwrap(),
                                        },
                                        MESSAGE_TYPE_REQUEST_TRANSACTION_DATA_SUCCESS
                                    );
                                    socket.write_all(&b).await.map_err(|x| e(&x))?;
                                }
                                MESSAGE_TYPE_SUBMIT_SOLUTION => {
                                    let m: SubmitSolution =
                                        binary_sv2::from_bytes(payload).map_err(|x| e(&x))?;
                                    let (id, version, time, nonce) =
                                        (m.template_id, m.version, m.header_timestamp, m.header_nonce);
                                    let coinbase = AsRef::<[u8]>::as_ref(&m.coinbase_tx).to_vec();
                                    solution(&rpc, &stats, templates.get(&id), version, time, nonce, &coinbase).await?;
                                }
                                other => eprintln!("template provider: ignored message {other:#04x}"),
                            }
                        }
                    }
                }
            }
            _ = tick.tick(), if announced.is_some() => {
                // A new tip (ours or a competitor's): a new template on it.
                let best = rpc.acall("getbestblockhash", serde_json::json!([])).await?;
                if best.as_str() != announced.as_deref() {
                    announce!();
                }
            }
        }
    }
}

/// One `SubmitSolution`: the node checks the whole block; those meeting
/// `BLOCK_BITS` are submitted to it.
async fn solution(
    rpc: &Rpc,
    stats: &Mutex<TpStats>,
    template: Option<&Template>,
    version: u32,
    time: u32,
    nonce: u32,
    coinbase: &[u8],
) -> Result<(), String> {
    stats.lock().unwrap().solutions += 1;
    let Some(t) = template else {
        // Counted where the test looks, not only as a dropped connection.
        let why = "a solution for a template never sent".to_string();
        stats.lock().unwrap().refused.push(why.clone());
        return Err(why);
    };
    let best = rpc.acall("getbestblockhash", serde_json::json!([])).await?;
    if best.as_str() != Some(t.prev_hex.as_str()) {
        eprintln!(
            "template provider: a solution on the previous tip {}",
            t.prev_hex
        );
        stats.lock().unwrap().stale += 1;
        return Ok(());
    }
    let (hash, block) = block_of(t, version, time, nonce, coinbase);
    let block = hex::encode(block);
    let mut hash_hex = hash;
    hash_hex.reverse();
    let hash_hex = hex::encode(hash_hex);
    // Proposal mode: the node's full validity check, proof of work aside.
    let verdict = rpc
        .acall(
            "getblocktemplate",
            serde_json::json!([{"mode": "proposal", "data": block}]),
        )
        .await;
    if verdict == Ok("inconclusive-not-best-prevblk".into()) {
        // The node's tip moved (a competitor's block) since the check above.
        eprintln!("template provider: solution {hash_hex} is on the node's previous tip");
        stats.lock().unwrap().stale += 1;
        return Ok(());
    }
    if verdict != Ok(serde_json::Value::Null) {
        eprintln!("template provider: the node refused solution {hash_hex}: {verdict:?}");
        stats
            .lock()
            .unwrap()
            .refused
            .push(format!("proposal {hash_hex}: {verdict:?}"));
        return Ok(());
    }
    if !meets(&hash, &target_le(BLOCK_BITS)) {
        stats.lock().unwrap().weak += 1;
        return Ok(());
    }
    let verdict = rpc.acall("submitblock", serde_json::json!([block])).await;
    eprintln!("template provider: submitblock {hash_hex}: {verdict:?}");
    let mut s = stats.lock().unwrap();
    if verdict == Ok(serde_json::Value::Null) {
        s.blocks.push(hash_hex);
    } else if verdict == Ok("inconclusive".into()) {
        // Valid, but a competitor's block took the tip in between.
        s.stale += 1;
    } else {
        s.refused
            .push(format!("submitblock {hash_hex}: {verdict:?}"));
    }
    Ok(())
}

/// The reference pool, on a free loopback port, fed by `tp`.
fn reference_pool(dir: &Path, tp: std::net::SocketAddr) -> (Pool, u16, PathBuf) {
    let port = free_port();
    let config = dir.join("pool.toml");
    std::fs::write(
        &config,
        format!(
            "authority_public_key = \"{POOL_PUBLIC}\"\n\
             authority_secret_key = \"{POOL_SECRET}\"\n\
             cert_validity_sec = 3600\n\
             listen_address = \"127.0.0.1:{port}\"\n\
             coinbase_reward_script = \"addr({POOL_ADDRESS})\"\n\
             server_id = 1\n\
             pool_signature = \"hashwatt interop\"\n\
             shares_per_minute = 30.0\n\
             share_batch_size = 1\n\
             [template_provider_type.Sv2Tp]\n\
             address = \"{tp}\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("pool.log");
    let child = Command::new(pool_binary())
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("pool_sv2 starts");
    (Pool(child), port, log)
}

/// One build of `plugins/stratum-v2` at a time: the tests of this file run
/// in parallel and share its `target/package` directory.
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds, signs and installs the plugin into `state`; the trusted key and
/// the component that was installed.
fn install_plugin(dir: &Path, state: &Path) -> (String, Vec<u8>) {
    let _one = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let hashwatt = env!("CARGO_BIN_EXE_hashwatt");
    let key = dir.join("author.key");
    let public = common::succeeded(
        &Command::new(hashwatt)
            .args(["plugin", "keygen", "--out"])
            .arg(&key)
            .output()
            .unwrap(),
        "keygen",
    );
    let built = Command::new(hashwatt)
        .args(["plugin", "build"])
        .arg(workspace().join("plugins/stratum-v2"))
        .arg("--key")
        .arg(&key)
        .arg("-o")
        .arg(dir.join("stratum-v2.hwpkg"))
        .output()
        .unwrap();
    common::succeeded(
        &built,
        "plugin build plugins/stratum-v2 (needs clang, llvm and wasi-libc: .ci/test installs them)",
    );
    let config = dir.join("install.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\ntrusted_keys = [{:?}]\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:9\"\nuser = \"w\"\n",
            public.trim()
        ),
    )
    .unwrap();
    common::succeeded(
        &Command::new(hashwatt)
            .args(["plugin", "install"])
            .arg(dir.join("stratum-v2.hwpkg"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap(),
        "plugin install",
    );
    let wasm =
        std::fs::read(workspace().join("plugins/stratum-v2/target/package/stratum-v2/plugin.wasm"))
            .unwrap();
    (public.trim().to_string(), wasm)
}

async fn mine_on(channel: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("regtest-node"));
    let tp = template_provider(node.rpc.clone()).await;
    let (pool, port, log) = reference_pool(tmp.path(), tp.addr);
    // A Stratum V1 pool second in line: failover between protocols.
    let backup = common::devpool(0.0005).await;
    let mut config = common::config(&[backup.local_addr()], 1);
    let (public, _) = install_plugin(tmp.path(), &config.state_dir);
    config.trusted_keys = vec![public];
    let url: PoolUrl = format!("stratum2+tcp://127.0.0.1:{port}/{POOL_PUBLIC}")
        .parse()
        .unwrap();
    let v1 = config.pools.remove(0);
    config.pools = vec![
        PoolEntry {
            url,
            user: "hashwatt.interop".into(),
            password: String::new(),
            plugin: Some("stratum-v2".into()),
            enabled: true,
            settings: [
                ("channel".to_string(), toml::Value::from(channel)),
                (
                    "nominal_hashrate".to_string(),
                    toml::Value::from(NOMINAL_HS),
                ),
            ]
            .into_iter()
            .collect(),
        },
        v1,
    ];
    common::logs();
    let app = hashwatt::app::App::start(config)
        .await
        .expect("appliance starts");
    let pool_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let counters = || app.counters();
    let got = common::wait_for(Duration::from_secs(120), || {
        counters().pools[0].accepted >= 3
    })
    .await;
    let c = counters();
    // The V1 pool answers first and may get a share or two in the tens of
    // milliseconds before the V2 channel's first job; from then on it must
    // get none while the V2 pool is healthy.
    let (v1_early, backup_early) = (c.pools[1].accepted, backup.stats().accepted);
    assert!(
        got,
        "{channel} channel: no accepted shares ({c:?});\npool log:\n{}",
        pool_log()
    );
    assert!(
        c.rejected.is_empty(),
        "{channel}: {c:?}\npool log:\n{}",
        pool_log()
    );
    // The operator sees what the session negotiated: the protocol, the
    // channel kind and the fingerprint of the authority key the handshake
    // checked (computed here from the key's text, not by the plugin).
    let session = c.pools[0].session.clone();
    let session = session.unwrap_or_else(|| panic!("{channel}: no session report: {c:?}"));
    assert_eq!(session.protocol, "Stratum V2");
    assert_eq!(session.channel.as_deref(), Some(channel));
    assert!(session.encrypted);
    assert_eq!(session.authority, Some(authority_fingerprint(POOL_PUBLIC)));
    // The panel's Test button on the V2 pool: every step passes and the
    // result shows what a session would negotiate.
    let test = app
        .handle()
        .test_pool(app.handle().config().pools[0].clone())
        .await;
    assert!(test.ok, "{channel}: test connection: {test:?}");
    let tested = test
        .session
        .expect("the test connection reports the session");
    assert_eq!(tested.channel.as_deref(), Some(channel));
    assert_eq!(tested.authority, session.authority);
    // A competitor's block: the jobs on the old previous hash are void;
    // shares keep being accepted and none is refused as stale.
    let before = c.accepted;
    let competitor = node.mine_competitor_block().await;
    assert!(
        common::wait_for(Duration::from_secs(10), || tp.stats().tip == competitor).await,
        "{channel}: the template provider did not announce the node's new tip {competitor}: {:?}",
        tp.stats()
    );
    let more = common::wait_for(Duration::from_secs(120), || {
        counters().accepted >= before + 3
    })
    .await;
    let c = counters();
    assert!(
        more,
        "{channel}: no shares after the new block ({c:?})\npool log:\n{}",
        pool_log()
    );
    assert!(
        c.rejected.is_empty(),
        "{channel}: a share was refused after the new block: {c:?}\npool log:\n{}",
        pool_log()
    );
    // A block of the appliance's on the node's chain, at about one share
    // in four.
    assert!(
        common::wait_for(Duration::from_secs(120), || !tp.stats().blocks.is_empty()).await,
        "{channel}: the node accepted no block from the pool: {:?}\npool log:\n{}",
        tp.stats(),
        pool_log()
    );
    let c = counters();
    assert!(c.rejected.is_empty(), "{channel}: {c:?}");
    eprintln!("{channel} channel: {c:?}");
    let v2 = c.pools[0].accepted;
    assert_eq!(
        c.pools[1].accepted, v1_early,
        "the V1 backup mined while the V2 pool was healthy"
    );
    // The V2 pool goes away: mining fails over to the V1 pool, as between
    // two V1 pools.
    drop(pool);
    assert!(
        common::wait_for(Duration::from_secs(60), || backup.stats().accepted
            >= backup_early + 2)
        .await,
        "{channel}: no failover to the Stratum V1 pool: {:?}",
        counters()
    );
    let c = counters();
    assert_eq!(c.active_pool, Some(1), "{c:?}");
    assert!(c.pools[0].accepted >= v2);
    assert!(c.rejected.is_empty(), "{c:?}");
    app.shutdown().await;
    node_accepted_the_blocks(channel, &node, &tp).await;
}

/// The node's view, once the pool is gone: every solution the pool sent
/// was a valid block, the chain grew by the blocks submitted plus the
/// competitor's, and each submitted block is on it with a coinbase paying
/// the pool's script.
async fn node_accepted_the_blocks(channel: &str, node: &Node, tp: &TemplateProvider) {
    let s = tp.stats();
    eprintln!(
        "{channel} channel, template provider: {} solutions, {} blocks accepted by the node, \
         {} valid below the block target, {} on a left tip",
        s.solutions,
        s.blocks.len(),
        s.weak,
        s.stale
    );
    assert!(s.refused.is_empty(), "{channel}: the node refused: {s:?}");
    let rpc = &node.rpc;
    let height = rpc
        .acall("getblockcount", serde_json::json!([]))
        .await
        .unwrap();
    assert_eq!(
        height.as_u64(),
        Some(s.blocks.len() as u64 + 1),
        "{channel}: height after {} pool blocks and one competitor's: {s:?}",
        s.blocks.len()
    );
    let script = rpc
        .acall("validateaddress", serde_json::json!([POOL_ADDRESS]))
        .await
        .unwrap()["scriptPubKey"]
        .clone();
    for hash in &s.blocks {
        let block = rpc
            .acall("getblock", serde_json::json!([hash, 2]))
            .await
            .unwrap();
        assert!(
            block["confirmations"].as_i64().is_some_and(|c| c >= 1),
            "{channel}: block {hash} is not on the node's chain: {block}"
        );
        let coinbase = &block["tx"][0];
        assert!(
            coinbase["vout"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["scriptPubKey"]["hex"] == script && o["value"].as_f64() > Some(0.0)),
            "{channel}: block {hash}'s coinbase does not pay the pool's {script}: {coinbase}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_and_extended_channels_mine_on_the_reference_pool() {
    common::bounded(Duration::from_secs(600), async {
        mine_on("extended").await;
        mine_on("standard").await;
    })
    .await;
}

/// What a call into each pool plugin costs inside the host's sandbox: a
/// job message from the pool (V2: one encrypted frame; V1: one
/// `mining.notify` line) and a share handed over for submission. Prints
/// figures; asserts only that the calls did their work.
#[test]
fn call_overhead_per_frame_and_share_submit_v1_vs_v2() {
    use hashwatt::plugin::pool::{
        PoolAction, PoolConfig as HostPoolConfig, PoolPluginPre, ShareSubmission,
    };
    use hashwatt::plugin::{Limits, Runtime};
    use mining_sv2::*;

    const N: usize = 2000;
    // Shares per plugin: under the V2 plugin's cap on unanswered shares.
    const SHARES: u64 = 1000;
    let runtime = Runtime::new().unwrap();
    let limits = Limits {
        call_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let share = |id: u64, job: &str, version: u32| ShareSubmission {
        id,
        job_id: job.into(),
        extranonce2: vec![0; 4],
        ntime: 1_796_000_000,
        nonce: id as u32,
        version,
    };
    let sends = |out: &[PoolAction]| -> Vec<u8> {
        out.iter()
            .filter_map(|a| match a {
                PoolAction::Send(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };

    // Stratum V1, the built-in plugin.
    let v1 = PoolPluginPre::new(
        &runtime,
        "stratum-v1",
        hashwatt::plugin::builtin::STRATUM_V1,
    )
    .unwrap();
    let mut p = v1
        .instantiate(
            &HostPoolConfig {
                url: "stratum+tcp://127.0.0.1:3333".into(),
                host: "127.0.0.1".into(),
                port: 3333,
                user: "w".into(),
                password: "x".into(),
                user_agent: "hashwatt".into(),
                version_rolling: false,
                settings: Default::default(),
            },
            limits.clone(),
        )
        .unwrap();
    p.connected(0).unwrap();
    p.received(1, b"{\"id\":1,\"result\":[[[\"mining.notify\",\"ae6812eb4cd7735a302a8a9dd95cf71f\"]],\"08000002\",4],\"error\":null}\n{\"id\":2,\"result\":true,\"error\":null}\n{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[1]}\n").unwrap();
    measure(
        "stratum-v1, mining.notify line in",
        0..N,
        |i| {
            let line = format!(
                "{{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"{i:x}\",\"{}\",\"01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008\",\"072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000\",[],\"00000002\",\"1c2ac4af\",\"504e86b9\",false]}}\n",
                "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000"
            );
            p.received(2 + i as u64, line.as_bytes()).unwrap()
        },
        is_job,
    );
    let last_job = format!("{:x}", N - 1);
    measure(
        "stratum-v1, share handed over -> mining.submit out",
        0..SHARES,
        |i| p.share_found(10_000 + i, &share(i, &last_job, 2)).unwrap(),
        sends_bytes,
    );
    eprintln!(
        "stratum-v1 component: {} KiB",
        hashwatt::plugin::builtin::STRATUM_V1.len() / 1024
    );

    // Stratum V2, built from plugins/stratum-v2.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (_, wasm) = install_plugin(tmp.path(), &state);
    let v2 = PoolPluginPre::new(&runtime, "stratum-v2", &wasm).unwrap();
    let secp = Secp256k1::new();
    let kp = Keypair::new(&secp, &mut secp256k1::rand::thread_rng());
    let key = {
        let mut raw = vec![1u8, 0];
        raw.extend_from_slice(&kp.x_only_public_key().0.serialize());
        bs58_check(&raw)
    };
    let mut settings = serde_json::Map::new();
    settings.insert("channel".into(), "extended".into());
    let mut p = v2
        .instantiate(
            &HostPoolConfig {
                url: format!("stratum2+tcp://127.0.0.1:3336/{key}"),
                host: "127.0.0.1".into(),
                port: 3336,
                user: "w".into(),
                password: String::new(),
                user_agent: "hashwatt".into(),
                version_rolling: false,
                settings,
            },
            limits,
        )
        .unwrap();
    let first = sends(&p.connected(0).unwrap().actions);
    let responder = Responder::new_with_rng(kp, 3600, &mut secp256k1::rand::thread_rng());
    let (reply, transport) = Handshake::responder(responder)
        .step_1_with_now_rng(
            first.try_into().unwrap(),
            now_s(),
            &mut secp256k1::rand::thread_rng(),
        )
        .unwrap();
    let mut encoder = NoiseEncoder::new();
    let reply = AsRef::<[u8]>::as_ref(&encoder.encode_handshake(reply)).to_vec();
    p.received(1, &reply).unwrap();
    let (mut enc, _) = transport.split();
    let mut frame = |bytes: &mut dyn FnMut(
        &mut NoiseEncoder,
        &mut codec_sv2::TransportEncryptState,
    ) -> Vec<u8>| { bytes(&mut encoder, &mut enc) };
    macro_rules! msg {
        ($m:expr, $t:expr, $ch:expr) => {
            frame(&mut |e, s| {
                let f = MessageFrame::from_message($m, $t, 0, $ch).unwrap();
                AsRef::<[u8]>::as_ref(&e.encode_transport(f, s).unwrap()).to_vec()
            })
        };
    }
    p.received(
        2,
        &msg!(
            SetupConnectionSuccess {
                used_version: 2,
                flags: 0
            },
            MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
            false
        ),
    )
    .unwrap();
    let target = [0xffu8; 32];
    p.received(
        3,
        &msg!(
            OpenExtendedMiningChannelSuccess {
                request_id: 1,
                channel_id: 1,
                target: (&target).into(),
                extranonce_size: 4,
                extranonce_prefix: (&[1u8, 2, 3, 4]).try_into().unwrap(),
                group_channel_id: 0,
            },
            MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS,
            false
        ),
    )
    .unwrap();
    let prefix = hex_bytes(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
    );
    let suffix = hex_bytes(
        "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
    );
    let job = |id: u32| NewExtendedMiningJob {
        channel_id: 1,
        job_id: id,
        min_ntime: binary_sv2::Sv2Option::new(Some(1_796_000_000)),
        version: 0x2000_0000,
        version_rolling_allowed: true,
        merkle_path: Vec::new().try_into().unwrap(),
        coinbase_tx_prefix: prefix.as_slice().try_into().unwrap(),
        coinbase_tx_suffix: suffix.as_slice().try_into().unwrap(),
    };
    p.received(4, &msg!(job(0), MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB, true))
        .unwrap();
    p.received(
        5,
        &msg!(
            mining_sv2::SetNewPrevHash {
                channel_id: 1,
                job_id: 0,
                prev_hash: (&[7u8; 32]).into(),
                min_ntime: 1_796_000_000,
                nbits: 0x1d00_ffff,
            },
            MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH,
            true
        ),
    )
    .unwrap();
    // Encrypted in the order they are delivered (Noise nonces count up).
    let frames: Vec<Vec<u8>> = (1..=N as u32)
        .map(|i| msg!(job(i), MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB, true))
        .collect();
    measure(
        "stratum-v2, NewExtendedMiningJob frame in",
        frames.iter().enumerate(),
        |(i, f)| p.received(6 + i as u64, f).unwrap(),
        is_job,
    );
    measure(
        "stratum-v2, share handed over -> SubmitSharesExtended frame out",
        0..SHARES,
        |i| {
            p.share_found(10_000 + i, &share(i, &N.to_string(), 0x2000_0000))
                .unwrap()
        },
        sends_bytes,
    );
    eprintln!("stratum-v2 component: {} KiB", wasm.len() / 1024);
}

/// Times `call` on each input, checks each answer with `done`, prints
/// mean, median and p99.
fn measure<T>(
    name: &str,
    inputs: impl IntoIterator<Item = T>,
    mut call: impl FnMut(T) -> hashwatt::plugin::pool::CallOutput,
    done: fn(&hashwatt::plugin::pool::CallOutput) -> bool,
) {
    let mut t = Vec::new();
    for input in inputs {
        let start = std::time::Instant::now();
        let out = call(input);
        t.push(start.elapsed());
        assert!(done(&out), "{name}: {out:?}");
    }
    t.sort();
    let mean = t.iter().sum::<Duration>().as_secs_f64() / t.len() as f64 * 1e6;
    eprintln!(
        "{name}: mean {mean:.1} µs, median {:.1} µs, p99 {:.1} µs over {} calls",
        t[t.len() / 2].as_secs_f64() * 1e6,
        t[t.len() * 99 / 100].as_secs_f64() * 1e6,
        t.len()
    );
}

/// The call gave the host a job.
fn is_job(out: &hashwatt::plugin::pool::CallOutput) -> bool {
    out.actions
        .iter()
        .any(|a| matches!(a, hashwatt::plugin::pool::PoolAction::NewJob(_)))
}

/// The call sent bytes to the pool.
fn sends_bytes(out: &hashwatt::plugin::pool::CallOutput) -> bool {
    out.actions
        .iter()
        .any(|a| matches!(a, hashwatt::plugin::pool::PoolAction::Send(b) if !b.is_empty()))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Base58check, as SRI writes keys.
fn bs58_check(raw: &[u8]) -> String {
    bs58::encode(raw).with_check().into_string()
}
