//! The pool "test connection" (`Appliance::test_pool`) over loopback: a
//! real devpool, nothing listening, a pool that refuses the worker, and
//! pools that never answer or never send work. Short injected deadlines
//! keep the failing cases quick; nothing asserts on elapsed time.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use hashwatt::config::PoolEntry;
use hashwatt::pool::probe::{
    PoolTest, ProbeDeadlines, STEP_AUTHORIZE, STEP_CONNECT, STEP_FIRST_JOB, STEP_SUBSCRIBE,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(60);

fn entry(addr: SocketAddr, user: &str) -> PoolEntry {
    PoolEntry {
        url: format!("stratum+tcp://{addr}").parse().unwrap(),
        user: user.into(),
        password: "x".into(),
        plugin: None,
        enabled: true,
        settings: Default::default(),
    }
}

/// Deadlines short enough that a failing step ends the test at once.
fn short() -> ProbeDeadlines {
    ProbeDeadlines {
        overall: Duration::from_secs(10),
        connect: Duration::from_secs(5),
        subscribe: Duration::from_millis(300),
        authorize: Duration::from_millis(300),
        first_job: Duration::from_millis(300),
        settle: Duration::from_millis(100),
    }
}

fn names(test: &PoolTest) -> Vec<&str> {
    test.steps.iter().map(|s| s.step.as_str()).collect()
}

/// How a fake pool answers the Stratum V1 requests of the built-in plugin.
#[derive(Clone, Copy)]
enum Fake {
    /// Accepts the connection and says nothing.
    Silent,
    /// Answers subscribe, refuses authorize.
    RefuseWorker,
    /// Answers subscribe and authorize, never sends a job.
    NoJob,
}

/// A one-connection-at-a-time Stratum V1 server on loopback.
async fn fake_pool(kind: Fake) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let id = msg["id"].clone();
                    let reply = match (kind, msg["method"].as_str().unwrap_or("")) {
                        (Fake::Silent, _) => continue,
                        (_, "mining.subscribe") => json!({
                            "id": id,
                            "result": [[["mining.notify", "s1"]], "abcd0001", 8],
                            "error": null
                        }),
                        (Fake::RefuseWorker, "mining.authorize") => json!({
                            "id": id, "result": null, "error": [24, "unknown worker", null]
                        }),
                        (_, "mining.configure") => json!({
                            "id": id, "result": {"version-rolling": false}, "error": null
                        }),
                        _ => json!({"id": id, "result": true, "error": null}),
                    };
                    let mut bytes = serde_json::to_vec(&reply).unwrap();
                    bytes.push(b'\n');
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_pool_passes_every_step_and_nothing_is_mined_on_it() {
    common::bounded(LIMIT, async {
        let mining = common::devpool(0.01).await;
        let tested = common::devpool(0.01).await;
        let app = common::appliance(&[mining.local_addr()], 1).await;
        let pools_before = app.handle().pools().await;
        let test = app
            .handle()
            .test_pool(entry(tested.local_addr(), "probe.worker"))
            .await;
        assert!(test.ok, "{test:#?}");
        assert_eq!(
            names(&test),
            [STEP_CONNECT, STEP_SUBSCRIBE, STEP_AUTHORIZE, STEP_FIRST_JOB]
        );
        assert!(
            test.steps.iter().all(|s| s.ok && s.ms.is_some()),
            "{test:#?}"
        );
        let auth = test.step(STEP_AUTHORIZE).unwrap();
        assert!(auth.detail.contains("probe.worker"), "{auth:?}");
        // The test disconnected, submitted nothing, and the running
        // appliance's pools are what they were.
        assert!(
            common::wait_for(Duration::from_secs(10), || tested
                .stats()
                .active_connections
                == 0)
            .await
        );
        let stats = tested.stats();
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.accepted + stats.rejected_total, 0);
        assert_eq!(app.handle().pools().await.len(), pools_before.len());
        assert!(
            app.counters()
                .pools
                .iter()
                .all(|p| p.url != format!("stratum+tcp://{}", tested.local_addr()))
        );
        serde_json::to_string(&test).unwrap();
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_fails_at_connect() {
    common::bounded(LIMIT, async {
        let mining = common::devpool(0.01).await;
        let app = common::appliance(&[mining.local_addr()], 1).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let test = app
            .handle()
            .test_pool_with(entry(closed, "w"), short())
            .await;
        assert!(!test.ok);
        assert_eq!(names(&test), [STEP_CONNECT], "{test:#?}");
        let step = &test.steps[0];
        assert!(!step.ok);
        assert!(step.detail.contains("connection refused"), "{step:?}");
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_worker_fails_at_authorize() {
    common::bounded(LIMIT, async {
        let mining = common::devpool(0.01).await;
        let app = common::appliance(&[mining.local_addr()], 1).await;
        let addr = fake_pool(Fake::RefuseWorker).await;
        let test = app
            .handle()
            .test_pool_with(entry(addr, "nobody"), short())
            .await;
        assert!(!test.ok);
        assert_eq!(
            names(&test),
            [STEP_CONNECT, STEP_SUBSCRIBE, STEP_AUTHORIZE],
            "{test:#?}"
        );
        assert!(test.steps[0].ok && test.steps[1].ok);
        let auth = &test.steps[2];
        assert!(!auth.ok);
        assert!(
            auth.detail.starts_with("authorization rejected by pool: ")
                && auth.detail.contains("unknown worker"),
            "{auth:?}"
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_work_fails_at_first_job() {
    common::bounded(LIMIT, async {
        let mining = common::devpool(0.01).await;
        let app = common::appliance(&[mining.local_addr()], 1).await;
        let addr = fake_pool(Fake::NoJob).await;
        let test = app.handle().test_pool_with(entry(addr, "w"), short()).await;
        assert!(!test.ok);
        assert_eq!(
            names(&test),
            [STEP_CONNECT, STEP_SUBSCRIBE, STEP_AUTHORIZE, STEP_FIRST_JOB],
            "{test:#?}"
        );
        assert!(test.steps[..3].iter().all(|s| s.ok), "{test:#?}");
        let job = &test.steps[3];
        assert!(!job.ok);
        assert_eq!(job.detail, "no job within 300 ms", "{job:?}");
        // A silent pool fails one step earlier.
        let silent = fake_pool(Fake::Silent).await;
        let test = app
            .handle()
            .test_pool_with(entry(silent, "w"), short())
            .await;
        assert_eq!(names(&test), [STEP_CONNECT, STEP_SUBSCRIBE], "{test:#?}");
        assert_eq!(
            test.steps[1].detail,
            "no answer to the subscription within 300 ms"
        );
        app.shutdown().await;
    })
    .await;
}
