//! Over real loopback TCP against a scripted pool that behaves the way real
//! servers do where the devpool is lenient: like ckpool, it answers
//! `mining.authorize` late and silently drops submits from a worker not yet
//! authorized; like NOMP-derived pools, it never answers `mining.configure`
//! or `mining.extranonce.subscribe`.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the scripted pool behaves.
#[derive(Clone, Copy)]
struct Script {
    answer_configure: bool,
    authorize_delay: Duration,
}

/// What the scripted pool saw.
#[derive(Debug, Default)]
struct Seen {
    connections: u32,
    /// `mining.submit` requests that arrived before the authorize reply
    /// went out (ckpool drops these without a reply).
    submits_unauthorized: u32,
    /// Parameter counts of the submits that arrived after it.
    submits: Vec<usize>,
}

async fn scripted_pool(script: Script) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            shared.lock().unwrap().connections += 1;
            tokio::spawn(serve(socket, script, shared.clone()));
        }
    });
    (addr, seen)
}

async fn serve(socket: tokio::net::TcpStream, script: Script, seen: Arc<Mutex<Seen>>) {
    let (read, mut write) = socket.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut line = serde_json::to_vec(&msg).unwrap();
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let authorized = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let notify = vector_notify();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = msg["id"].clone();
        match msg["method"].as_str().unwrap_or_default() {
            "mining.configure" if script.answer_configure => {
                let _ = tx.send(json!({"id": id, "error": null, "result":
                    {"version-rolling": true, "version-rolling.mask": "1fffe000"}}));
            }
            "mining.subscribe" => {
                let _ = tx.send(json!({"id": id, "error": null,
                    "result": [[["mining.notify", "s1"]], "08000002", 4]}));
                let _ = tx.send(
                    json!({"id": null, "method": "mining.set_difficulty", "params": [0.001]}),
                );
                let _ = tx.send(json!({"id": null, "method": "mining.notify", "params": notify}));
            }
            "mining.authorize" => {
                let (tx, authorized) = (tx.clone(), authorized.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(script.authorize_delay).await;
                    authorized.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = tx.send(json!({"id": id, "result": true, "error": null}));
                });
            }
            "mining.submit" => {
                if authorized.load(std::sync::atomic::Ordering::SeqCst) {
                    let n = msg["params"].as_array().map_or(0, Vec::len);
                    seen.lock().unwrap().submits.push(n);
                    let _ = tx.send(json!({"id": id, "result": true, "error": null}));
                } else {
                    seen.lock().unwrap().submits_unauthorized += 1;
                }
            }
            // Unknown methods (mining.extranonce.subscribe, an unanswered
            // mining.configure): no reply at all.
            _ => {}
        }
    }
}

/// The `mining.notify` params of the first shared Stratum V1 vector.
fn vector_notify() -> Value {
    let all: Value = serde_json::from_str(include_str!("data/stratum-v1.json")).unwrap();
    all["stratum_v1"][0]["notify_params"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_authorize_reply_loses_no_share() {
    common::bounded(Duration::from_secs(90), async {
        let script = Script {
            answer_configure: true,
            authorize_delay: Duration::from_millis(1500),
        };
        let (addr, seen) = scripted_pool(script).await;
        let app = common::appliance(&[addr], 1).await;
        assert!(
            common::wait_for(Duration::from_secs(30), || seen
                .lock()
                .unwrap()
                .submits
                .len()
                >= 5)
            .await,
            "{:?}",
            seen.lock().unwrap()
        );
        {
            let seen = seen.lock().unwrap();
            assert_eq!(
                seen.submits_unauthorized, 0,
                "submitted before the authorize reply"
            );
            assert_eq!(seen.connections, 1, "the session was dropped");
            assert!(seen.submits.iter().all(|&n| n == 6), "version bits missing");
        }
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_never_answers_configure_is_mined_without_version_rolling() {
    common::bounded(Duration::from_secs(120), async {
        let script = Script {
            answer_configure: false,
            authorize_delay: Duration::ZERO,
        };
        let (addr, seen) = scripted_pool(script).await;
        let app = common::appliance(&[addr], 1).await;
        assert!(
            common::wait_for(Duration::from_secs(30), || !seen
                .lock()
                .unwrap()
                .submits
                .is_empty())
            .await,
            "{:?}",
            seen.lock().unwrap()
        );
        // Past the 30 s handshake timeout the session must still be the
        // first one, and shares must keep coming.
        tokio::time::sleep(Duration::from_secs(32)).await;
        let before = seen.lock().unwrap().submits.len();
        assert!(
            common::wait_for(Duration::from_secs(10), || seen
                .lock()
                .unwrap()
                .submits
                .len()
                > before)
            .await
        );
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.connections, 1, "reconnected: {seen:?}");
            assert!(
                seen.submits.iter().all(|&n| n == 5),
                "version bits sent without negotiation"
            );
        }
        app.shutdown().await;
    })
    .await;
}
