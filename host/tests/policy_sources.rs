//! Signal sources against real endpoints on 127.0.0.1: a hand-written HTTP
//! server publishing a JSON feed, a watched file, and a real MQTT broker
//! (Debian `mosquitto`, started on a free port; the MQTT test is skipped
//! loudly if the binary is absent).

mod policy_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashwatt::policy::SignalValue;
use hashwatt::policy::clock::SystemClock;
use hashwatt::policy::signal::{SignalHub, SignalSpec};
use hashwatt::policy::sources::file::FileSource;
use hashwatt::policy::sources::http::HttpSource;
use hashwatt::policy::sources::mqtt::{MqttSource, MqttTopic};
use hashwatt::policy::sources::{AllowList, SourceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

fn hub(names: &[&str]) -> Arc<SignalHub> {
    let hub = Arc::new(SignalHub::new(Arc::new(SystemClock)));
    for n in names {
        hub.define(SignalSpec::new(n, Duration::from_secs(30)))
            .unwrap();
    }
    hub
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Waits until `name` reads `want` (or panics after `limit`).
async fn wait_for(hub: &SignalHub, name: &str, want: f64, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut rx = hub.subscribe();
    loop {
        if hub.get(name, now_ms()).value == SignalValue::Number(want) {
            return t.elapsed();
        }
        let left = limit
            .checked_sub(t.elapsed())
            .unwrap_or_else(|| panic!("{name} never became {want}: {:?}", hub.get(name, now_ms())));
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), rx.changed()).await;
    }
}

/// A minimal HTTP/1.1 server answering every request with `body`.
async fn serve(body: Arc<Mutex<String>>) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(0usize));
    let h2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.lock().unwrap().clone();
            *h2.lock().unwrap() += 1;
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/feed"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_feed_is_polled_through_a_pointer() {
    let body = Arc::new(Mutex::new(r#"{"grid":{"export_kw":1.5}}"#.to_string()));
    let (url, hits) = serve(body.clone()).await;
    let hub = hub(&["export_kw"]);
    let (stop, stop_rx) = watch::channel(false);
    let source = HttpSource {
        signal: "export_kw".into(),
        url: url.clone(),
        pointer: Some("/grid/export_kw".into()),
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
    };
    let allow = AllowList::new(vec![url.clone()], vec![url.clone()]);
    let task = source
        .clone()
        .spawn(hub.clone(), &allow, stop_rx.clone())
        .unwrap();
    wait_for(&hub, "export_kw", 1.5, Duration::from_secs(5)).await;
    *body.lock().unwrap() = r#"{"grid":{"export_kw":-0.25}}"#.into();
    let dt = wait_for(&hub, "export_kw", -0.25, Duration::from_secs(5)).await;
    println!(
        "http: change seen after {dt:?}; {} requests",
        hits.lock().unwrap()
    );
    // A broken payload leaves the last value in place.
    *body.lock().unwrap() = "not json".into();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hub.get("export_kw", now_ms()).value,
        SignalValue::Number(-0.25)
    );
    stop.send(true).unwrap();
    task.await.unwrap();

    // URLs outside the allow-list (either side) are refused before any request.
    let only_declared = AllowList::new(vec![url.clone()], vec![]);
    assert!(matches!(
        source
            .clone()
            .spawn(hub.clone(), &only_declared, stop_rx.clone()),
        Err(SourceError::NotAllowed(_))
    ));
    let only_allowed = AllowList::new(vec![], vec![url.clone()]);
    assert!(matches!(
        source
            .clone()
            .spawn(hub.clone(), &only_allowed, stop_rx.clone()),
        Err(SourceError::NotAllowed(_))
    ));
    let undefined = HttpSource {
        signal: "nope".into(),
        ..source
    };
    assert!(matches!(
        undefined.spawn(hub.clone(), &allow, stop_rx),
        Err(SourceError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_is_re_read_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("price.json");
    std::fs::write(&path, r#"{"ct_kwh": 21.5}"#).unwrap();
    let hub = hub(&["price"]);
    let (stop, stop_rx) = watch::channel(false);
    let task = FileSource {
        signal: "price".into(),
        path: path.clone(),
        pointer: Some("/ct_kwh".into()),
        poll: Duration::from_millis(20),
        refresh: Duration::from_secs(5),
    }
    .spawn(hub.clone(), stop_rx)
    .unwrap();
    wait_for(&hub, "price", 21.5, Duration::from_secs(5)).await;
    // Write a new file and rename it into place, as daemons do; the size
    // changes so even a coarse mtime notices.
    let tmp: PathBuf = dir.path().join("price.tmp");
    std::fs::write(&tmp, r#"{"ct_kwh": 9.75, "x": 1}"#).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let dt = wait_for(&hub, "price", 9.75, Duration::from_secs(5)).await;
    println!("file: change seen after {dt:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_topics_become_signals() {
    let Some(broker) = policy_support::start_broker() else {
        eprintln!("!!! SKIPPED: mosquitto not installed (apt-get install -y mosquitto) !!!");
        return;
    };
    let hub = hub(&["demand_response", "price"]);
    let (stop, stop_rx) = watch::channel(false);
    let task = MqttSource {
        host: "127.0.0.1".into(),
        port: broker.port,
        client_id: "hashwatt-test".into(),
        topics: vec![
            MqttTopic {
                topic: "grid/dr".into(),
                signal: "demand_response".into(),
                pointer: None,
            },
            MqttTopic {
                topic: "tariff/now".into(),
                signal: "price".into(),
                pointer: Some("/ct".into()),
            },
        ],
        keep_alive: Duration::from_secs(5),
    }
    .spawn(hub.clone(), stop_rx)
    .unwrap();
    policy_support::publish(broker.port, "grid/dr", "1").await;
    wait_for(&hub, "demand_response", 1.0, Duration::from_secs(10)).await;
    policy_support::publish(broker.port, "tariff/now", r#"{"ct": 30.5}"#).await;
    wait_for(&hub, "price", 30.5, Duration::from_secs(10)).await;
    policy_support::publish(broker.port, "grid/dr", "0").await;
    let dt = wait_for(&hub, "demand_response", 0.0, Duration::from_secs(10)).await;
    println!("mqtt: change seen after {dt:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
}
