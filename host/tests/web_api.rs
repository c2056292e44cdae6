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
