//! The HTTP API over real loopback TCP: status with the reason for a pause,
//! a signal pushed through the API pausing mining within a second, energy
//! reports, the manual override, and clear errors on bad requests.

mod common;

use std::time::{Duration, Instant};

use hashwatt::config::PolicyEntry;
use hashwatt::policy::engine::FailSafe;
use serde_json::Value;

/// A blocking HTTP call on a worker thread: (status, body).
async fn call(method: &'static str, url: String, body: Option<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let req = ureq::request(method, &url).timeout(Duration::from_secs(5));
        let res = match body {
            Some(b) => req.send_string(&b),
            None => req.call(),
        };
        match res {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {url}: {e}"),
        }
    })
    .await
    .unwrap()
}

async fn status(base: &str) -> Value {
    let (code, body) = call("GET", format!("{base}/api/status"), None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_signals_reports_and_override_over_http() {
    common::bounded(Duration::from_secs(90), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
            c.signals = vec![common::pushed_signal("demand_response", 3600)];
            c.policies = vec![PolicyEntry {
                name: "grid-emergency".into(),
                plugin: "grid-emergency".into(),
                enabled: true,
                fail_safe: FailSafe::Pause,
                config: [
                    ("signal".to_string(), toml::Value::from("demand_response")),
                    ("release_delay_s".into(), 0.into()),
                    ("on_unknown".into(), "run".into()),
                ]
                .into_iter()
                .collect(),
            }];
        })
        .await;
        let base = format!("http://{}", app.api_addr().expect("API enabled"));
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 2).await);

        let s = status(&base).await;
        assert_eq!(s["mining"]["decision"]["mode"], "run", "{s}");
        assert_eq!(s["pools"][0]["state"], "healthy", "{s}");
        assert!(s["shares"]["accepted"].as_u64().unwrap() >= 2);

        // A signal pushed through the API: paused within 1 s, reason shown.
        let (code, _) = call(
            "PUT",
            format!("{base}/api/signals/demand_response"),
            Some("1".into()),
        )
        .await;
        assert_eq!(code, 204);
        let t0 = Instant::now();
        let mut s = status(&base).await;
        while s["mining"]["decision"]["mode"] != "pause" && t0.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s = status(&base).await;
        }
        eprintln!(
            "paused {:?} after the API call: {}",
            t0.elapsed(),
            s["mining"]["summary"]
        );
        assert!(
            t0.elapsed() <= Duration::from_secs(1),
            "pause took {:?}",
            t0.elapsed()
        );
        assert!(
            s["mining"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("paused by grid-emergency"),
            "{s}"
        );
        // Stay paused long enough for the meter (1 s samples) to account it.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        call(
            "PUT",
            format!("{base}/api/signals/demand_response"),
            Some("0".into()),
        )
        .await;

        // Bad requests are refused with a reason.
        let (code, body) = call(
            "PUT",
            format!("{base}/api/signals/no_such_signal"),
            Some("1".into()),
        )
        .await;
        assert_eq!(code, 404, "{body}");
        let (code, body) = call(
            "PUT",
            format!("{base}/api/signals/demand_response"),
            Some("lots".into()),
        )
        .await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = call(
            "POST",
            format!("{base}/api/override"),
            Some("{\"pause\": \"yes\"}".into()),
        )
        .await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = call("GET", format!("{base}/api/energy/report?period=week"), None).await;
        assert_eq!(code, 400, "{body}");

        // Energy report, JSON and CSV.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (code, body) = call("GET", format!("{base}/api/energy/report?period=day"), None).await;
        assert_eq!(code, 200, "{body}");
        let report: Value = serde_json::from_str(&body).unwrap();
        assert!(report["total"]["kwh"].as_f64().unwrap() > 0.0, "{report}");
        let (code, csv) = call(
            "GET",
            format!("{base}/api/energy/report?period=month&format=csv"),
            None,
        )
        .await;
        assert_eq!(code, 200);
        assert!(csv.starts_with("record,date,policy,reason,kwh"), "{csv}");
        assert!(
            csv.contains("grid-emergency"),
            "time paused per policy is reported: {csv}"
        );

        // Manual override above every policy.
        let (code, body) = call(
            "POST",
            format!("{base}/api/override"),
            Some("{\"pause\": true, \"minutes\": 5}".into()),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert!(
            common::wait_for(Duration::from_secs(2), || app.verdict().by
                == "manual override")
            .await
        );
        call(
            "POST",
            format!("{base}/api/override"),
            Some("{\"pause\": false}".into()),
        )
        .await;
        assert!(
            common::wait_for(Duration::from_secs(2), || app.verdict().by
                != "manual override")
            .await
        );
        app.shutdown().await;
    })
    .await;
}

/// One raw HTTP/1.1 request over loopback; the reply's status code, or 0
/// if the server closed without answering.
async fn raw(addr: std::net::SocketAddr, request: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_other_origins_hostile_values_and_idle_sockets_are_refused() {
    common::bounded(Duration::from_secs(90), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
            c.web.max_connections_per_client = 4;
            c.signals = vec![common::pushed_signal("grid", 3600)];
        })
        .await;
        let addr = app.api_addr().expect("API enabled");
        let post = |host: &str, origin: Option<&str>, ctype: &str, body: &str| {
            format!(
                "POST /api/override HTTP/1.1\r\nHost: {host}\r\n{}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default(),
                body.len()
            )
        };
        let host = addr.to_string();
        // The cross-origin text/plain POST any web page could make: refused, not paused.
        let forged = "{\"pause\": true, \"minutes\": 4294967295}";
        let (code, body) = raw(addr, post(&host, Some("http://evil.example"), "text/plain", forged)).await;
        assert_eq!(code, 403, "{body}");
        // DNS rebinding: a foreign host name.
        let (code, body) = raw(addr, post("evil.example", None, "application/json", forged)).await;
        assert_eq!(code, 421, "{body}");
        // Even from the appliance's own origin, the duration is capped.
        let (code, body) = raw(addr, post(&host, Some(&format!("http://{host}")), "application/json", forged)).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("1..=10080"), "{body}");
        assert_ne!(app.verdict().by, "manual override");
        // NaN and infinities are not values.
        for v in ["NaN", "inf", "-inf"] {
            let req = format!(
                "PUT /api/signals/grid HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{v}",
                v.len()
            );
            let (code, body) = raw(addr, req).await;
            assert_eq!(code, 400, "{v}: {body}");
        }
        // Path traversal and unknown pages.
        let (code, _) = raw(addr, format!("GET /../Cargo.toml HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(code, 404);
        // Idle sockets beyond the per-client cap are closed at once, and
        // the API keeps answering once they go.
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, _) = raw(addr, format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(code, 0, "a fifth connection from the same client is closed unanswered");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, body) = raw(addr, format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.to_ascii_lowercase().contains("x-frame-options: deny"), "{body}");
        app.shutdown().await;
    })
    .await;
}
