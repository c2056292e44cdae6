//! Energy policies in the running appliance, end to end over real loopback
//! services: a real MQTT broker (mosquitto) carries a grid-emergency signal,
//! a local HTTP server publishes a surplus feed; the appliance mines on a
//! real devpool with the real wasm policies and must stop hashing within 1 s
//! (hashrate drops to zero, reason shown) and resume within 1 s of release.
//! A hostile policy gets its fail-safe decision, never a crash.

mod common;
mod policy_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hashwatt::app::App;
use hashwatt::config::{HttpSignal, MqttSignal, PolicyEntry, SignalEntry};
use hashwatt::policy::Mode;
use hashwatt::policy::engine::FailSafe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hashes done over `window`.
async fn hashes_during(app: &App, window: Duration) -> u64 {
    let before = app.hashes();
    tokio::time::sleep(window).await;
    app.hashes() - before
}

/// Waits until hashing has stopped: no hash done for 300 ms.
async fn wait_stopped(app: &App, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if hashes_during(app, Duration::from_millis(300)).await == 0 {
            return Some(t0.elapsed());
        }
    }
    None
}

/// Waits until hashing runs again; returns how long it took.
async fn wait_running(app: &App, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let start = app.hashes();
    while t0.elapsed() < limit {
        if app.hashes() > start {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A tiny HTTP server on 127.0.0.1 answering every GET with `{"export_kw": <value>}`.
async fn surplus_feed(value: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let value = f64::from_bits(value.load(Ordering::SeqCst));
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let body = format!("{{\"export_kw\": {value}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/feed")
}

fn table(pairs: &[(&str, toml::Value)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_emergency_over_mqtt_and_surplus_over_http_pause_and_resume_within_a_second() {
    common::bounded(Duration::from_secs(120), async {
        let broker = policy_support::start_broker().expect("broker");
        let export = Arc::new(AtomicU64::new(5.0f64.to_bits()));
        let feed = surplus_feed(export.clone()).await;
        let pool = common::devpool(0.0005).await;
        let broker_addr = format!("127.0.0.1:{}", broker.port);
        let app = common::appliance_with(&[pool.local_addr()], 1, move |c| {
            c.signals = vec![
                SignalEntry {
                    name: "demand_response".into(),
                    ttl_secs: 3600,
                    min: None,
                    max: None,
                    http: None,
                    mqtt: Some(MqttSignal {
                        broker: broker_addr,
                        topic: "grid/dr".into(),
                        pointer: None,
                    }),
                    file: None,
                },
                SignalEntry {
                    name: "grid_export".into(),
                    ttl_secs: 30,
                    min: Some(-1000.0),
                    max: Some(1000.0),
                    http: Some(HttpSignal {
                        url: feed,
                        pointer: Some("/export_kw".into()),
                        interval_secs: 0.2,
                    }),
                    mqtt: None,
                    file: None,
                },
            ];
            c.policies = vec![
                PolicyEntry {
                    name: "grid-emergency".into(),
                    plugin: "grid-emergency".into(),
                    enabled: true,
                    fail_safe: FailSafe::Pause,
                    config: table(&[
                        ("signal", "demand_response".into()),
                        ("release_delay_s", 0.into()),
                        ("on_unknown", "run".into()),
                    ]),
                },
                PolicyEntry {
                    name: "surplus-only".into(),
                    plugin: "surplus-only".into(),
                    enabled: true,
                    fail_safe: FailSafe::Pause,
                    config: table(&[
                        ("signal", "grid_export".into()),
                        ("threshold_kw", 1.0.into()),
                        ("hysteresis_kw", 0.2.into()),
                        ("min_on_s", 0.into()),
                        ("min_off_s", 0.into()),
                    ]),
                },
            ];
        })
        .await;
        assert!(
            common::wait_for(Duration::from_secs(30), || {
                let policies = app.policies().policies;
                policies.len() == 2
                    && policies.iter().all(|p| p.last_mode == Some(Mode::Run))
                    && pool.stats().accepted >= 2
            })
            .await,
            "mines with surplus: {:?}",
            app.policies()
        );

        // Grid emergency over MQTT: hashing stops within 1 s, reason shown.
        policy_support::publish(broker.port, "grid/dr", "1").await;
        let t0 = Instant::now();
        let mut paused_after = None;
        while t0.elapsed() < Duration::from_secs(5) {
            if app.verdict().mode == Mode::Pause {
                paused_after = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let paused_after = paused_after.expect("no pause within 5 s of the emergency");
        let verdict = app.verdict().to_string();
        eprintln!("grid emergency: paused after {paused_after:?}: {verdict}");
        assert!(
            paused_after <= Duration::from_secs(1),
            "pause took {paused_after:?}"
        );
        assert!(verdict.starts_with("paused by grid-emergency"), "{verdict}");
        assert!(
            wait_stopped(&app, Duration::from_secs(1)).await.is_some(),
            "hashrate did not drop to 0"
        );
        assert_eq!(
            hashes_during(&app, Duration::from_millis(500)).await,
            0,
            "hashing while paused"
        );

        // Release: mining resumes within 1 s.
        policy_support::publish(broker.port, "grid/dr", "0").await;
        let resumed = wait_running(&app, Duration::from_secs(5))
            .await
            .expect("no resume within 5 s");
        eprintln!("grid emergency released: hashing again after {resumed:?}");
        assert!(resumed <= Duration::from_secs(1), "resume took {resumed:?}");

        // Surplus over HTTP falls below the threshold: paused by surplus-only.
        export.store(0.4f64.to_bits(), Ordering::SeqCst);
        assert!(
            common::wait_for(Duration::from_secs(5), || app.verdict().by
                == "surplus-only")
            .await,
            "verdict: {}",
            app.verdict()
        );
        let verdict = app.verdict().to_string();
        assert!(
            verdict.starts_with("paused by surplus-only") && verdict.contains("0.4"),
            "{verdict}"
        );
        assert!(wait_stopped(&app, Duration::from_secs(2)).await.is_some());
        export.store(3.0f64.to_bits(), Ordering::SeqCst);
        assert!(
            wait_running(&app, Duration::from_secs(5)).await.is_some(),
            "surplus is back but no hashing"
        );

        // The manual override sits above every policy.
        app.set_paused(true, Some(5));
        assert!(
            common::wait_for(Duration::from_secs(2), || app.verdict().by
                == "manual override")
            .await
        );
        assert!(wait_stopped(&app, Duration::from_secs(2)).await.is_some());
        app.set_paused(false, None);
        assert!(wait_running(&app, Duration::from_secs(3)).await.is_some());
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_policy_gets_its_fail_safe_not_a_crash() {
    common::bounded(Duration::from_secs(90), async {
        let pool = common::devpool(0.0005).await;
        for (how, fail_safe) in [
            (1.0, "pause"),
            (2.0, "pause"),
            (3.0, "pause"),
            (4.0, "pause"),
            (1.0, "run"),
        ] {
            let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
                c.allow_unsigned_plugins = true;
                c.signals = vec![common::pushed_signal("hostile", 3600)];
                c.policies = vec![PolicyEntry {
                    name: "hostile".into(),
                    plugin: env!("HASHWATT_HOSTILE_POLICY_WASM").into(),
                    enabled: true,
                    fail_safe: match fail_safe {
                        "run" => FailSafe::Run,
                        _ => FailSafe::Pause,
                    },
                    config: table(&[("signal", "hostile".into())]),
                }];
            })
            .await;
            app.set_signal("hostile", 0.0).unwrap();
            assert!(
                wait_running(&app, Duration::from_secs(30)).await.is_some(),
                "behaving policy: mining"
            );
            app.set_signal("hostile", how).unwrap();
            let t0 = Instant::now();
            let ok = common::wait_for(Duration::from_secs(5), || {
                let p = app.policies();
                p.policies.iter().any(|s| s.failures > 0)
            })
            .await;
            assert!(ok, "mode {how}: failure not recorded: {:?}", app.policies());
            let status = app.policies();
            eprintln!(
                "hostile policy mode {how}: {:?} after {:?}",
                status.policies[0].last_error,
                t0.elapsed()
            );
            match fail_safe {
                "pause" => {
                    assert_eq!(
                        app.verdict().mode,
                        Mode::Pause,
                        "mode {how}: {}",
                        app.verdict()
                    );
                    assert!(
                        wait_stopped(&app, Duration::from_secs(2)).await.is_some(),
                        "mode {how}: still hashing"
                    );
                }
                _ => {
                    assert_eq!(
                        app.verdict().mode,
                        Mode::Run,
                        "mode {how}: {}",
                        app.verdict()
                    );
                    assert!(wait_running(&app, Duration::from_secs(2)).await.is_some());
                }
            }
            app.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_policy_cannot_read_an_http_feed_its_manifest_does_not_declare() {
    let pool = common::devpool(0.0005).await;
    let started = common::try_appliance_with(&[pool.local_addr()], 1, |c| {
        c.allow_unsigned_plugins = true;
        c.signals = vec![SignalEntry {
            name: "hostile".into(),
            ttl_secs: 60,
            min: None,
            max: None,
            http: Some(HttpSignal {
                url: "http://127.0.0.1:9/secret".into(),
                pointer: None,
                interval_secs: 5.0,
            }),
            mqtt: None,
            file: None,
        }];
        c.policies = vec![PolicyEntry {
            name: "hostile".into(),
            plugin: env!("HASHWATT_HOSTILE_POLICY_WASM").into(),
            enabled: true,
            fail_safe: FailSafe::Pause,
            config: table(&[("signal", "hostile".into())]),
        }];
    })
    .await;
    let err = format!("{:#}", started.err().expect("start must be refused"));
    assert!(
        err.contains("does not declare") && err.contains("http_feeds"),
        "{err}"
    );
}
