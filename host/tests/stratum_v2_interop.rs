//! The Stratum V2 plugin against the Stratum V2 reference pool (`pool_sv2`
//! 0.7 from crates.io, installed by `.ci/test` into `target/tools`) on
//! loopback: the appliance, with the signed `stratum-v2` package
//! installed, mines on a standard and on an extended channel; shares are
//! accepted with none rejected, a new previous hash is followed with no
//! stale submission, and when the V2 pool goes away mining fails over to
//! a Stratum V1 pool.
//!
//! The pool needs a template provider. No Bitcoin Core with the IPC
//! interface can be had here, so a small one on the reference
//! template-distribution crates stands in: it answers the pool's Noise
//! handshake and setup, hands out templates of an empty regtest-difficulty
//! chain (`nbits` 0x207fffff) and moves the chain on when asked.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ChildGuard as Pool, free_port};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
use tokio::sync::Notify;

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

/// The template provider: one pool connection at a time.
struct TemplateProvider {
    addr: std::net::SocketAddr,
    /// Ask for a new block (new template and previous hash).
    new_block: Arc<Notify>,
    /// Blocks announced so far.
    blocks: Arc<AtomicU64>,
}

async fn template_provider() -> TemplateProvider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let new_block = Arc::new(Notify::new());
    let blocks = Arc::new(AtomicU64::new(0));
    let (nb, bl) = (new_block.clone(), blocks.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (nb, bl) = (nb.clone(), bl.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_pool(socket, nb, bl).await {
                    eprintln!("template provider: {e}");
                }
            });
        }
    });
    TemplateProvider {
        addr,
        new_block,
        blocks,
    }
}

/// The chain's difficulty: 0.2, so about one share in twenty (at the
/// channel's difficulty for the nominal hashrate below) is a block.
const NBITS: u32 = 0x1d04_fffb;

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

fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

async fn serve_pool(
    mut socket: tokio::net::TcpStream,
    new_block: Arc<Notify>,
    blocks: Arc<AtomicU64>,
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
    let mut template_id = 0u64;
    let mut prev = [0u8; 32];
    let announce = |encoder: &mut NoiseEncoder,
                    enc: &mut codec_sv2::TransportEncryptState,
                    template_id: &mut u64,
                    prev: &mut [u8; 32]|
     -> Result<Vec<u8>, String> {
        *template_id += 1;
        let height = blocks.fetch_add(1, Ordering::SeqCst) + 1;
        // A fresh previous hash per block.
        prev[..8].copy_from_slice(&height.to_le_bytes());
        prev[31] = 0x5a;
        let h = (height as u32).to_le_bytes();
        let prefix = [0x03, h[0], h[1], h[2]];
        let template = NewTemplate {
            template_id: *template_id,
            future_template: true,
            version: 0x2000_0000,
            coinbase_tx_version: 2,
            coinbase_prefix: (&prefix).try_into().unwrap(),
            coinbase_tx_input_sequence: 0xffff_ffff,
            coinbase_tx_value_remaining: 5_000_000_000,
            coinbase_tx_outputs_count: 0,
            coinbase_tx_outputs: (&[0u8; 0]).try_into().unwrap(),
            coinbase_tx_locktime: 0,
            merkle_path: Vec::new().try_into().unwrap(),
        };
        let target = target_le(NBITS);
        let prevhash = SetNewPrevHash {
            template_id: *template_id,
            prev_hash: (&*prev).into(),
            header_timestamp: now_s(),
            n_bits: NBITS,
            target: (&target).into(),
        };
        let mut out = Vec::new();
        let f = MessageFrame::from_message(template, MESSAGE_TYPE_NEW_TEMPLATE, 0, false)
            .map_err(|x| format!("{x:?}"))?;
        let b = encoder
            .encode_transport(f, enc)
            .map_err(|x| format!("{x:?}"))?;
        out.extend_from_slice(AsRef::<[u8]>::as_ref(&b));
        let f = MessageFrame::from_message(prevhash, MESSAGE_TYPE_SET_NEW_PREV_HASH, 0, false)
            .map_err(|x| format!("{x:?}"))?;
        let b = encoder
            .encode_transport(f, enc)
            .map_err(|x| format!("{x:?}"))?;
        out.extend_from_slice(AsRef::<[u8]>::as_ref(&b));
        Ok(out)
    };
    let mut inbox: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
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
                                MESSAGE_TYPE_COINBASE_OUTPUT_CONSTRAINTS => {
                                    let b = announce(&mut encoder, &mut enc, &mut template_id, &mut prev)?;
                                    socket.write_all(&b).await.map_err(|x| e(&x))?;
                                }
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
                                    // A block: the chain moves on, as a node's would.
                                    eprintln!("template provider: the pool submitted a block; next block");
                                    let b = announce(&mut encoder, &mut enc, &mut template_id, &mut prev)?;
                                    socket.write_all(&b).await.map_err(|x| e(&x))?;
                                }
                                other => eprintln!("template provider: ignored message {other:#04x}"),
                            }
                        }
                    }
                }
            }
            () = new_block.notified() => {
                let b = announce(&mut encoder, &mut enc, &mut template_id, &mut prev)?;
                socket.write_all(&b).await.map_err(|x| e(&x))?;
            }
        }
    }
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
             coinbase_reward_script = \"addr(tb1qa0sm0hxzj0x25rh8gw5xlzwlsfvvyz8u96w3p8)\"\n\
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
    let tp = template_provider().await;
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
    let got = common::wait_for(Duration::from_secs(120), || counters().accepted >= 3).await;
    let c = counters();
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
    // A new block: the jobs on the old previous hash are void; shares
    // keep being accepted and none is refused as stale.
    let before = c.accepted;
    let blocks = tp.blocks.load(Ordering::SeqCst);
    tp.new_block.notify_one();
    assert!(
        common::wait_for(Duration::from_secs(10), || tp.blocks.load(Ordering::SeqCst)
            > blocks)
        .await
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
    eprintln!("{channel} channel: {c:?}");
    let v2 = c.pools[0].accepted;
    assert_eq!(
        c.pools[1].accepted, 0,
        "the V1 backup mined while the V2 pool was healthy"
    );
    // The V2 pool goes away: mining fails over to the V1 pool, as between
    // two V1 pools.
    drop(pool);
    assert!(
        common::wait_for(Duration::from_secs(60), || backup.stats().accepted >= 2).await,
        "{channel}: no failover to the Stratum V1 pool: {:?}",
        counters()
    );
    let c = counters();
    assert_eq!(c.active_pool, Some(1), "{c:?}");
    assert!(c.pools[0].accepted >= v2);
    assert!(c.rejected.is_empty(), "{c:?}");
    app.shutdown().await;
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
