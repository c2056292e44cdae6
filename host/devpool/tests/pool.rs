//! End-to-end tests over real TCP on 127.0.0.1 with a tiny Stratum client.
//!
//! The client builds headers and hashes them itself (sha2 only), so these tests
//! check the pool against an independent implementation, not against itself.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use hashwatt_devpool::{DevPool, DevPoolConfig, start};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const EASY: f64 = 1e-6;

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    notifications: VecDeque<Value>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let (r, w) = stream.into_split();
        Client {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            notifications: VecDeque::new(),
        }
    }

    async fn send_line(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// Next line from the pool as raw text, or None at EOF.
    async fn read_raw_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = timeout(IO_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .expect("timed out waiting for the pool")
            .unwrap();
        (n > 0).then_some(line)
    }

    async fn read_msg(&mut self) -> Value {
        let line = self.read_raw_line().await.expect("unexpected EOF");
        serde_json::from_str(&line).unwrap()
    }

    /// Send a request and return the matching response; notifications seen
    /// meanwhile are queued.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"id": id, "method": method, "params": params});
        self.send_line(&req.to_string()).await;
        self.response(id).await
    }

    async fn response(&mut self, id: u64) -> Value {
        loop {
            let msg = self.read_msg().await;
            if msg.get("method").is_some() {
                self.notifications.push_back(msg);
            } else if msg["id"] == json!(id) {
                return msg;
            } else {
                panic!("unexpected response {msg}");
            }
        }
    }

    /// Params of the next notification with this method (skipping others).
    async fn notification(&mut self, method: &str) -> Value {
        loop {
            let msg = match self.notifications.pop_front() {
                Some(m) => m,
                None => self.read_msg().await,
            };
            if msg["method"] == method {
                return msg["params"].clone();
            }
        }
    }

    async fn expect_eof(&mut self) {
        let mut buf = [0u8; 1024];
        loop {
            let n = timeout(IO_TIMEOUT, self.reader.read(&mut buf))
                .await
                .expect("connection was not closed")
                .unwrap_or(0);
            if n == 0 {
                return;
            }
        }
    }
}

/// What a subscribed + authorized client knows.
struct Session {
    client: Client,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    job: Value,
}

async fn session(addr: SocketAddr, user: &str) -> Session {
    let mut client = Client::connect(addr).await;
    let sub = client.call("mining.subscribe", json!(["test/1.0"])).await;
    assert!(sub["error"].is_null(), "{sub}");
    let extranonce1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
    let extranonce2_size = sub["result"][2].as_u64().unwrap() as usize;
    let diff = client.notification("mining.set_difficulty").await;
    assert!(diff[0].as_f64().unwrap() > 0.0);
    let job = client.notification("mining.notify").await;
    assert_eq!(job[8], true, "first job must be clean");
    let auth = client.call("mining.authorize", json!([user, "x"])).await;
    assert_eq!(auth["result"], true);
    Session {
        client,
        extranonce1,
        extranonce2_size,
        job,
    }
}

async fn pool_with(difficulty: f64) -> DevPool {
    start(DevPoolConfig {
        difficulty,
        ..DevPoolConfig::default()
    })
    .await
    .unwrap()
}

fn sha256d(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

fn hexu32(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}

/// Header for a share on `job` (notify params), built from scratch.
fn header(job: &Value, en1: &[u8], en2: &[u8], version: u32, ntime: u32, nonce: u32) -> [u8; 80] {
    let mut cb = hex::decode(job[2].as_str().unwrap()).unwrap();
    cb.extend_from_slice(en1);
    cb.extend_from_slice(en2);
    cb.extend(hex::decode(job[3].as_str().unwrap()).unwrap());
    let mut root = sha256d(&cb);
    for b in job[4].as_array().unwrap() {
        let mut pair = root.to_vec();
        pair.extend(hex::decode(b.as_str().unwrap()).unwrap());
        root = sha256d(&pair);
    }
    let prev_stratum = hex::decode(job[1].as_str().unwrap()).unwrap();
    let mut h = Vec::with_capacity(80);
    h.extend(version.to_le_bytes());
    for word in prev_stratum.chunks(4) {
        h.extend(word.iter().rev());
    }
    h.extend(root);
    h.extend(ntime.to_le_bytes());
    h.extend(hexu32(&job[6]).to_le_bytes());
    h.extend(nonce.to_le_bytes());
    h.try_into().unwrap()
}

/// The share difficulty of a header: 0xFFFF * 2^208 / hash.
fn share_difficulty(h: &[u8; 80]) -> f64 {
    let hash = sha256d(h);
    let value = hash
        .iter()
        .rev()
        .fold(0.0f64, |acc, b| acc * 256.0 + f64::from(*b));
    65535.0 * 2f64.powi(208) / value
}

#[derive(Clone, Copy, PartialEq)]
enum Want {
    /// Comfortably above the given difficulty.
    Valid(f64),
    /// Clearly below the given difficulty.
    Invalid(f64),
}

/// Brute-force a nonce; returns (nonce, tries).
fn find_nonce(job: &Value, en1: &[u8], en2: &[u8], version: u32, ntime: u32, want: Want) -> u32 {
    for nonce in 0..2_000_000u32 {
        let d = share_difficulty(&header(job, en1, en2, version, ntime, nonce));
        let ok = match want {
            Want::Valid(target) => d >= target * 1.000_001,
            Want::Invalid(target) => d < target * 0.5,
        };
        if ok {
            return nonce;
        }
    }
    panic!("no nonce found");
}

impl Session {
    fn ntime(&self) -> u32 {
        hexu32(&self.job[7])
    }

    fn en2(&self, n: u64) -> Vec<u8> {
        let bytes = n.to_be_bytes();
        let mut v = vec![0u8; self.extranonce2_size.saturating_sub(8)];
        v.extend_from_slice(&bytes[8usize.saturating_sub(self.extranonce2_size)..]);
        v
    }

    /// Submit params for a share on `job` meeting `want`.
    fn share(&self, job: &Value, user: &str, en2n: u64, want: Want) -> Value {
        let en2 = self.en2(en2n);
        let ntime = hexu32(&job[7]);
        let nonce = find_nonce(job, &self.extranonce1, &en2, hexu32(&job[5]), ntime, want);
        json!([
            user,
            job[0],
            hex::encode(&en2),
            format!("{ntime:08x}"),
            format!("{nonce:08x}")
        ])
    }

    async fn submit(&mut self, params: Value) -> Value {
        self.client.call("mining.submit", params).await
    }
}

fn error_code(resp: &Value) -> Option<i64> {
    resp["error"][0].as_i64()
}

#[tokio::test]
async fn subscribe_configure_authorize_flow() {
    let pool = pool_with(0.5).await;
    let mut c = Client::connect(pool.local_addr()).await;

    let conf = c
        .call(
            "mining.configure",
            json!([["version-rolling", "minimum-difficulty"], {"version-rolling.mask": "ffffffff", "minimum-difficulty.value": 1}]),
        )
        .await;
    assert_eq!(
        conf["result"],
        json!({"version-rolling": true, "version-rolling.mask": "1fffe000"})
    );

    let sub = c.call("mining.subscribe", json!(["test/1.0", null])).await;
    let r = &sub["result"];
    assert_eq!(r[0][0][0], "mining.set_difficulty");
    assert_eq!(r[0][1][0], "mining.notify");
    assert_eq!(r[1].as_str().unwrap().len(), 8);
    assert_eq!(r[2], 8);
    assert_eq!(c.notification("mining.set_difficulty").await, json!([0.5]));
    let job = c.notification("mining.notify").await;
    assert_eq!(job.as_array().unwrap().len(), 9);
    assert_eq!(job[4].as_array().unwrap().len(), 3);
    assert_eq!(job[5], "20000000");
    assert_eq!(job[6], "1d00ffff");
    assert_eq!(job[8], true);
    // coinb1: version 1, one input, null prevout, scriptSig length.
    let coinb1 = hex::decode(job[2].as_str().unwrap()).unwrap();
    assert_eq!(&coinb1[..5], &[1, 0, 0, 0, 1]);
    assert!(coinb1[5..37].iter().all(|b| *b == 0));
    assert_eq!(&coinb1[37..41], &[0xff; 4]);
    assert_eq!(usize::from(coinb1[41]), coinb1.len() - 42 + 4 + 8);

    assert_eq!(
        c.call("mining.authorize", json!(["alice", "x"])).await["result"],
        true
    );
    assert_eq!(
        c.call("mining.authorize", json!(["", "x"])).await["result"],
        false
    );
    assert_eq!(
        c.call("mining.extranonce.subscribe", json!([])).await["result"],
        true
    );
    let unknown = c.call("mining.bogus", json!([])).await;
    assert_eq!(error_code(&unknown), Some(20));

    // A second connection gets a different extranonce1.
    let mut c2 = Client::connect(pool.local_addr()).await;
    let sub2 = c2.call("mining.subscribe", json!([])).await;
    assert_ne!(sub2["result"][1], r[1]);
    assert_eq!(pool.stats().connections, 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn shares_accepted_duplicate_and_low_difficulty() {
    let pool = pool_with(EASY).await;
    let mut s = session(pool.local_addr(), "alice").await;
    let job = s.job.clone();

    let good = s.share(&job, "alice", 1, Want::Valid(EASY));
    let resp = s.submit(good.clone()).await;
    assert_eq!(resp["result"], true, "{resp}");
    assert!(resp["error"].is_null());

    let dup = s.submit(good).await;
    assert_eq!(error_code(&dup), Some(22), "{dup}");

    let low = s.share(&job, "alice", 2, Want::Invalid(EASY));
    let resp = s.submit(low).await;
    assert_eq!(error_code(&resp), Some(23), "{resp}");

    let st = pool.stats();
    assert_eq!(st.accepted, 1);
    assert_eq!(st.by_user.get("alice"), Some(&1));
    assert_eq!(st.rejected.get(&22), Some(&1));
    assert_eq!(st.rejected.get(&23), Some(&1));
    assert_eq!(st.rejected_total, 2);
    assert!(st.last_accepted.is_some());
    pool.shutdown().await;
}

#[tokio::test]
async fn stale_after_new_block_and_new_job_keeps_old_valid() {
    let pool = pool_with(EASY).await;
    let mut s = session(pool.local_addr(), "w").await;
    let first = s.job.clone();

    pool.new_job();
    let second = s.client.notification("mining.notify").await;
    assert_eq!(second[8], false);
    assert_eq!(second[1], first[1], "new_job keeps the prevhash");
    assert_ne!(second[0], first[0]);
    // Not clean: the first job is still valid.
    let share = s.share(&first, "w", 1, Want::Valid(EASY));
    assert_eq!(s.submit(share).await["result"], true);

    pool.new_block();
    let third = s.client.notification("mining.notify").await;
    assert_eq!(third[8], true);
    assert_ne!(third[1], first[1], "new_block changes the prevhash");

    let stale = s.share(&second, "w", 2, Want::Valid(EASY));
    let resp = s.submit(stale).await;
    assert_eq!(error_code(&resp), Some(21), "{resp}");

    let fresh = s.share(&third, "w", 3, Want::Valid(EASY));
    assert_eq!(s.submit(fresh).await["result"], true);

    let mut unknown = s.share(&third, "w", 4, Want::Valid(EASY));
    unknown[1] = json!("nope");
    assert_eq!(error_code(&s.submit(unknown).await), Some(21));

    let st = pool.stats();
    assert_eq!(st.accepted, 2);
    assert_eq!(st.stale, 1);
    assert_eq!(st.rejected.get(&21), Some(&2));
    pool.shutdown().await;
}

#[tokio::test]
async fn malformed_submits_are_code_20() {
    let pool = pool_with(EASY).await;
    let mut s = session(pool.local_addr(), "w").await;
    let job = s.job.clone();
    let good = s.share(&job, "w", 1, Want::Valid(EASY));

    let mut bad_hex = good.clone();
    bad_hex[4] = json!("xyz00000");
    assert_eq!(error_code(&s.submit(bad_hex).await), Some(20));

    let mut short_nonce = good.clone();
    short_nonce[4] = json!("1234");
    assert_eq!(error_code(&s.submit(short_nonce).await), Some(20));

    let mut bad_en2 = good.clone();
    bad_en2[2] = json!("00000001");
    assert_eq!(error_code(&s.submit(bad_en2).await), Some(20));

    let mut en2_hex = good.clone();
    en2_hex[2] = json!("zz00000000000001");
    assert_eq!(error_code(&s.submit(en2_hex).await), Some(20));

    let mut old_ntime = good.clone();
    old_ntime[3] = json!(format!("{:08x}", s.ntime() - 1));
    let resp = s.submit(old_ntime).await;
    assert_eq!(error_code(&resp), Some(20));
    assert_eq!(resp["error"][1], "ntime out of range");

    let mut future_ntime = good.clone();
    future_ntime[3] = json!(format!("{:08x}", s.ntime() + 7201));
    assert_eq!(error_code(&s.submit(future_ntime).await), Some(20));

    let few = json!(["w", job[0], "00", "00"]);
    assert_eq!(error_code(&s.submit(few).await), Some(20));

    let mut wrong_type = good.clone();
    wrong_type[3] = json!(12345);
    assert_eq!(error_code(&s.submit(wrong_type).await), Some(20));

    // The good share is still accepted after all that.
    assert_eq!(s.submit(good).await["result"], true);
    assert_eq!(pool.stats().rejected.get(&20), Some(&8));
    pool.shutdown().await;
}

#[tokio::test]
async fn version_rolling_rules() {
    let pool = pool_with(EASY).await;
    // Without mining.configure any version bits are malformed.
    let mut plain = session(pool.local_addr(), "w").await;
    let job = plain.job.clone();
    let mut p = plain.share(&job, "w", 1, Want::Valid(EASY));
    p.as_array_mut().unwrap().push(json!("00000000"));
    let resp = plain.submit(p).await;
    assert_eq!(error_code(&resp), Some(20), "{resp}");

    let mut c = Client::connect(pool.local_addr()).await;
    let conf = c
        .call(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": "00fff000"}]),
        )
        .await;
    assert_eq!(conf["result"]["version-rolling.mask"], "00ffe000");
    let sub = c.call("mining.subscribe", json!([])).await;
    let en1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
    let job = c.notification("mining.notify").await;
    c.call("mining.authorize", json!(["roller", ""])).await;

    let en2 = [0u8, 0, 0, 0, 0, 0, 0, 9];
    let ntime = hexu32(&job[7]);
    let bits = 0x00a4_6000u32;
    let version = 0x2000_0000 | bits;
    let nonce = find_nonce(&job, &en1, &en2, version, ntime, Want::Valid(EASY));
    let params = |bits: u32| {
        json!([
            "roller",
            job[0],
            hex::encode(en2),
            format!("{ntime:08x}"),
            format!("{nonce:08x}"),
            format!("{bits:08x}")
        ])
    };
    // Bit 0x00001000 is in the client's mask but not the negotiated one.
    let outside = c.call("mining.submit", params(bits | 0x1000)).await;
    assert_eq!(error_code(&outside), Some(20), "{outside}");
    let ok = c.call("mining.submit", params(bits)).await;
    assert_eq!(ok["result"], true, "{ok}");

    let st = pool.stats();
    assert_eq!(st.accepted, 1);
    assert_eq!(st.accepted_version_rolled, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn authorization_and_subscription_required() {
    let pool = pool_with(EASY).await;
    let mut c = Client::connect(pool.local_addr()).await;
    let early = c
        .call(
            "mining.submit",
            json!(["w", "1", "0000000000000000", "00000000", "00000000"]),
        )
        .await;
    assert_eq!(error_code(&early), Some(25), "{early}");

    c.call("mining.subscribe", json!([])).await;
    let job = c.notification("mining.notify").await;
    let params = json!(["w", job[0], "0000000000000000", job[7], "00000000"]);
    let unauth = c.call("mining.submit", params.clone()).await;
    assert_eq!(error_code(&unauth), Some(24), "{unauth}");

    c.call("mining.authorize", json!(["other", "x"])).await;
    let wrong_user = c.call("mining.submit", params).await;
    assert_eq!(error_code(&wrong_user), Some(24));
    assert_eq!(pool.stats().rejected.get(&24), Some(&2));
    pool.shutdown().await;
}

#[tokio::test]
async fn set_difficulty_applies_to_following_jobs_only() {
    let pool = pool_with(EASY).await;
    let mut s = session(pool.local_addr(), "w").await;
    let old = s.job.clone();

    pool.set_difficulty(1e9);
    assert_eq!(pool.difficulty(), 1e9);
    assert_eq!(
        s.client.notification("mining.set_difficulty").await,
        json!([1e9])
    );
    let new = s.client.notification("mining.notify").await;
    assert_eq!(new[8], false);

    // The old job keeps the difficulty it was sent with.
    let share = s.share(&old, "w", 1, Want::Valid(EASY));
    assert_eq!(s.submit(share).await["result"], true);
    // An easy share on the new job is now too weak.
    let weak = s.share(&new, "w", 2, Want::Valid(EASY));
    assert_eq!(error_code(&s.submit(weak).await), Some(23));

    // Invalid values are ignored.
    pool.set_difficulty(f64::NAN);
    pool.set_difficulty(-1.0);
    assert_eq!(pool.difficulty(), 1e9);
    pool.shutdown().await;
}

#[tokio::test]
async fn control_messages_reach_clients() {
    let pool = pool_with(EASY).await;
    let mut s = session(pool.local_addr(), "w").await;

    pool.send_reconnect("127.0.0.1", 3333, 5);
    assert_eq!(
        s.client.notification("client.reconnect").await,
        json!(["127.0.0.1", 3333, 5])
    );

    pool.send_raw(b"this is not json\n");
    assert_eq!(
        s.client.read_raw_line().await.as_deref(),
        Some("this is not json\n")
    );

    assert_eq!(pool.stats().active_connections, 1);
    pool.drop_connections();
    s.client.expect_eof().await;

    // The server keeps listening.
    let again = session(pool.local_addr(), "w").await;
    drop(again);
    let st = pool.stats();
    assert_eq!(st.connections, 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn garbage_input_is_survived_and_long_lines_close() {
    let pool = pool_with(EASY).await;
    let mut c = Client::connect(pool.local_addr()).await;
    c.send_line("{not json").await;
    c.send_line("[1, 2, 3]").await;
    c.send_line("\"string\"").await;
    c.send_line("").await;
    c.send_line(r#"{"id": 77, "method": 5}"#).await;
    let resp = c.response(77).await;
    assert_eq!(error_code(&resp), Some(20));
    c.send_line(r#"{"id": 78, "method": "mining.subscribe", "params": "x"}"#)
        .await;
    assert_eq!(error_code(&c.response(78).await), Some(20));
    c.send_line(r#"{"id": 79, "method": "mining.configure", "params": [5]}"#)
        .await;
    assert_eq!(error_code(&c.response(79).await), Some(20));
    // Still alive and serving.
    let sub = c.call("mining.subscribe", json!([])).await;
    assert!(sub["error"].is_null());

    let long = "x".repeat(70 * 1024);
    // The server may close while we are still writing; ignore write errors.
    let _ = c.writer.write_all(long.as_bytes()).await;
    c.expect_eof().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn periodic_jobs_and_shutdown() {
    let pool = start(DevPoolConfig {
        job_interval: Duration::from_millis(200),
        ..DevPoolConfig::default()
    })
    .await
    .unwrap();
    let addr = pool.local_addr();
    let mut s = session(addr, "w").await;
    let next = s.client.notification("mining.notify").await;
    assert_eq!(next[8], false);
    assert_ne!(next[0], s.job[0]);

    pool.clone().shutdown().await;
    s.client.expect_eof().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn invalid_config_is_rejected() {
    for cfg in [
        DevPoolConfig {
            difficulty: 0.0,
            ..DevPoolConfig::default()
        },
        DevPoolConfig {
            extranonce2_size: 0,
            ..DevPoolConfig::default()
        },
        DevPoolConfig {
            job_interval: Duration::ZERO,
            ..DevPoolConfig::default()
        },
        DevPoolConfig {
            merkle_branches: 1000,
            ..DevPoolConfig::default()
        },
    ] {
        assert!(start(cfg).await.is_err());
    }
}
