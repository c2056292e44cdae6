//! The REST API `/api/v1` and the panel's server over real loopback TCP:
//! status with the reason for a pause, a signal pushed through the API
//! pausing mining, energy reports, the manual override, pools through the
//! command path, accounts (setup token once, sessions with CSRF, bearer
//! tokens by scope, login rate limit), clear 4xx errors that change
//! nothing, the embedded panel, the event stream, `/metrics`, OpenAPI, and
//! the listener's guards (hosts, origins, idle sockets).

mod common;

use std::time::Duration;

use hashwatt::config::PolicyEntry;
use hashwatt::policy::engine::FailSafe;
use hashwatt::web::auth::Scope;
use serde_json::{Value, json};

/// One HTTP call with optional headers, on a worker thread: (status,
/// headers as "name: value" lines, body).
async fn send(
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut req = ureq::request(method, &url).timeout(Duration::from_secs(5));
        for (k, v) in &headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.send_string(&b),
            None => req.call(),
        };
        let r = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let hs = r
            .headers_names()
            .iter()
            .flat_map(|n| r.all(n).into_iter().map(move |v| format!("{n}: {v}")))
            .collect::<Vec<_>>()
            .join("\n");
        (r.status(), hs, r.into_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

/// A script's client: a bearer token and JSON bodies.
#[derive(Clone)]
struct Api {
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: &'static str, path: &str, body: Option<Value>) -> (u16, String) {
        let mut h = vec![("Authorization".into(), format!("Bearer {}", self.token))];
        if body.is_some() {
            h.push(("Content-Type".into(), "application/json".into()));
        }
        let (code, _, body) = send(
            method,
            format!("{}{path}", self.base),
            h,
            body.map(|b| b.to_string()),
        )
        .await;
        (code, body)
    }

    async fn json(&self, path: &str) -> Value {
        let (code, body) = self.call("GET", path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn token(app: &hashwatt::app::App, scope: Scope) -> String {
    app.web_auth()
        .expect("panel enabled")
        .create_token("test", scope, 0)
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_signals_reports_pools_and_override_over_http() {
    common::bounded(Duration::from_secs(120), async {
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
        let api = Api {
            base: format!("http://{}", app.api_addr().expect("API enabled")),
            token: token(&app, Scope::Admin),
        };
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 2).await);

        let s = api.json("/api/v1/status").await;
        assert_eq!(s["energy"]["verdict"]["mode"]["mode"], "run", "{s}");
        assert_eq!(s["shares"]["pools"][0]["state"], "healthy", "{s}");
        assert!(s["shares"]["accepted"].as_u64().unwrap() >= 2);
        assert!(s["at_ms"].as_i64().unwrap() > 1_700_000_000_000);

        // A signal pushed through the API pauses mining, the reason shown.
        let (code, body) = api
            .call("PUT", "/api/v1/signals/demand_response", Some(json!({"value": 1})))
            .await;
        assert_eq!(code, 204, "{body}");
        assert!(
            common::wait_for(Duration::from_secs(10), || {
                app.verdict().by == "grid-emergency"
                    && matches!(app.verdict().mode, hashwatt::policy::Mode::Pause)
            })
            .await
        );
        let s = api.json("/api/v1/status").await;
        assert!(
            s["decision"].as_str().unwrap().starts_with("paused by grid-emergency"),
            "{s}"
        );
        // Stay paused long enough for the meter (1 s samples) to account it.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        api.call("PUT", "/api/v1/signals/demand_response", Some(json!({"value": 0})))
            .await;

        // Bad requests are refused with a reason.
        let (code, body) = api
            .call("PUT", "/api/v1/signals/no_such_signal", Some(json!({"value": 1})))
            .await;
        assert_eq!(code, 404, "{body}");
        let (code, body) = api
            .call("PUT", "/api/v1/signals/demand_response", Some(json!({"value": "lots"})))
            .await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("\"error\""), "{body}");
        let (code, body) = api
            .call("POST", "/api/v1/mining/pause", Some(json!({"minutes": "yes"})))
            .await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = api.call("GET", "/api/v1/energy/report?period=week", None).await;
        assert_eq!(code, 400, "{body}");

        // Energy report, JSON and CSV.
        let report = api.json("/api/v1/energy/report?period=day").await;
        assert!(report["total"]["kwh"].as_f64().unwrap() > 0.0, "{report}");
        let (code, csv) = api
            .call("GET", "/api/v1/energy/report?period=month&format=csv", None)
            .await;
        assert_eq!(code, 200);
        assert!(csv.starts_with("record,date,policy,reason,kwh"), "{csv}");
        assert!(csv.contains("grid-emergency"), "time paused per policy is reported: {csv}");

        // Manual override above every policy.
        let (code, body) = api
            .call("POST", "/api/v1/mining/pause", Some(json!({"minutes": 5})))
            .await;
        assert_eq!(code, 200, "{body}");
        assert!(
            common::wait_for(Duration::from_secs(5), || app.verdict().by == "manual override")
                .await
        );
        let (code, body) = api.call("POST", "/api/v1/mining/resume", None).await;
        assert_eq!(code, 200, "{body}");
        assert!(
            common::wait_for(Duration::from_secs(5), || app.verdict().by != "manual override")
                .await
        );

        // Pools through the command path: add, move, disable, edit, remove.
        let (code, body) = api
            .call(
                "POST",
                "/api/v1/pools",
                Some(json!({"url": "stratum+tcp://127.0.0.1:9", "user": "backup", "password": "pw"})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_u64().unwrap();
        let pools = api.json("/api/v1/pools").await;
        assert_eq!(pools.as_array().unwrap().len(), 2, "{pools}");
        assert_eq!(pools[1]["id"], id);
        assert_eq!(pools[1]["has_password"], true);
        assert!(!pools.to_string().contains("\"pw\""), "passwords are never shown: {pools}");
        let (code, body) = api
            .call("POST", &format!("/api/v1/pools/{id}/move"), Some(json!({"position": 0})))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(api.json("/api/v1/pools").await[0]["id"], id);
        let (code, body) = api
            .call(
                "PUT",
                &format!("/api/v1/pools/{id}"),
                Some(json!({"url": "stratum+tcp://127.0.0.1:9", "user": "backup2", "enabled": false})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        let pools = api.json("/api/v1/pools").await;
        assert_eq!(pools[0]["user"], "backup2");
        assert_eq!(pools[0]["enabled"], false);
        assert_eq!(pools[0]["has_password"], true, "a missing password keeps it");
        let (code, body) = api
            .call("POST", "/api/v1/pools", Some(json!({"url": "http://x", "user": "w"})))
            .await;
        assert_eq!(code, 400, "{body}");
        let (code, _) = api.call("DELETE", &format!("/api/v1/pools/{id}"), None).await;
        assert_eq!(code, 204);
        let (code, _) = api.call("DELETE", &format!("/api/v1/pools/{id}"), None).await;
        assert_eq!(code, 404);

        // Test connection: every step against the devpool; refused where nothing listens.
        let (code, body) = api
            .call(
                "POST",
                "/api/v1/pools/test",
                Some(json!({"url": format!("stratum+tcp://{}", pool.local_addr()), "user": "probe"})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        let t: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["steps"].as_array().unwrap().len(), 4, "{t}");
        let (code, body) = api
            .call("POST", "/api/v1/pools/test", Some(json!({"url": "stratum+tcp://127.0.0.1:9", "user": "w"})))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ok"], false, "{body}");

        // A plugin upload that is not a package: refused, nothing installed.
        let (code, _, body) = send(
            "POST",
            format!("{}/api/v1/plugins", api.base),
            vec![
                ("Authorization".into(), format!("Bearer {}", api.token)),
                ("Content-Type".into(), "application/octet-stream".into()),
            ],
            Some("not a tar".into()),
        )
        .await;
        assert!((400..500).contains(&code), "{code}: {body}");
        assert!(body.contains("\"error\""), "{body}");

        // Plugins: the built-in pool plugin, used by the pool, with its cost.
        let plugins = api.json("/api/v1/plugins").await;
        let v1 = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "stratum-v1")
            .unwrap_or_else(|| panic!("stratum-v1 listed: {plugins}"));
        assert_eq!(v1["kind"], "pool", "{v1}");
        assert!(v1["memory_bytes"].as_u64().unwrap_or(0) > 0, "{v1}");

        // Policies: listed with their verdict, disabled and enabled.
        let policies = api.json("/api/v1/policies").await;
        assert_eq!(policies[0]["name"], "grid-emergency", "{policies}");
        assert_eq!(policies[0]["config"]["signal"], "demand_response");
        let (code, body) = api
            .call("POST", "/api/v1/policies/grid-emergency/enabled", Some(json!({"enabled": false})))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(api.json("/api/v1/policies").await[0]["enabled"], false);

        let sys = api.json("/api/v1/system").await;
        assert_eq!(sys["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(sys["tls"], false);
        let hist = api.json("/api/v1/history").await;
        assert_eq!(hist["hashrate"]["interval_secs"], 10, "{hist}");
        let logs = api.json("/api/v1/logs?lines=5").await;
        assert!(logs.as_array().unwrap().len() <= 5);
        let (code, _) = api.call("GET", "/api/v1/logs?lines=100000", None).await;
        assert_eq!(code, 400);
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_tokens_and_hostile_bodies() {
    common::bounded(Duration::from_secs(120), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
        let base = format!("http://{}", app.api_addr().unwrap());
        let url = |p: &str| format!("{base}{p}");
        let json_h = || vec![("Content-Type".to_string(), "application/json".to_string())];

        // Nothing without credentials.
        for path in [
            "/api/v1/status",
            "/api/v1/pools",
            "/api/v1/tokens",
            "/metrics",
        ] {
            let (code, _, body) = send("GET", url(path), vec![], None).await;
            assert_eq!(code, 401, "{path}: {body}");
        }
        let (code, _, body) = send("GET", url("/api/v1/setup"), vec![], None).await;
        assert_eq!(code, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["needed"],
            true
        );
        // Login before setup, a wrong setup token, a short password.
        let setup_token = app.web_auth().unwrap().setup_token().expect("setup token");
        let (code, _, body) = send(
            "POST",
            url("/api/v1/setup"),
            json_h(),
            Some(json!({"token": "wrong", "password": "correct horse battery"}).to_string()),
        )
        .await;
        assert_eq!(code, 401, "{body}");
        let (code, _, body) = send(
            "POST",
            url("/api/v1/setup"),
            json_h(),
            Some(json!({"token": setup_token, "password": "short"}).to_string()),
        )
        .await;
        assert_eq!(code, 400, "{body}");
        // Setup with the token: a session cookie, HttpOnly and SameSite=Strict.
        let (code, headers, body) = send(
            "POST",
            url("/api/v1/setup"),
            json_h(),
            Some(json!({"token": setup_token, "password": "correct horse battery"}).to_string()),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let cookie_line = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .expect("a session cookie")
            .to_string();
        assert!(
            cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
            "{cookie_line}"
        );
        assert!(
            !cookie_line.contains("Secure"),
            "plain HTTP: no Secure flag"
        );
        let cookie = cookie_line
            .split_once(':')
            .unwrap()
            .1
            .trim()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_string();
        // The setup token is used up.
        let (code, _, body) = send(
            "POST",
            url("/api/v1/setup"),
            json_h(),
            Some(json!({"token": setup_token, "password": "another password"}).to_string()),
        )
        .await;
        assert_eq!(code, 409, "{body}");

        // The cookie reads; a change needs the CSRF token too.
        let with_cookie = |csrf: Option<&str>| {
            let mut h = json_h();
            h.push(("Cookie".into(), cookie.clone()));
            if let Some(c) = csrf {
                h.push(("X-CSRF-Token".into(), c.to_string()));
            }
            h
        };
        let (code, _, _) = send("GET", url("/api/v1/status"), with_cookie(None), None).await;
        assert_eq!(code, 200);
        let pause = json!({"minutes": 5}).to_string();
        let (code, _, body) = send(
            "POST",
            url("/api/v1/mining/pause"),
            with_cookie(None),
            Some(pause.clone()),
        )
        .await;
        assert_eq!(code, 403, "{body}");
        let (code, _, body) = send(
            "POST",
            url("/api/v1/mining/pause"),
            with_cookie(Some("0000")),
            Some(pause.clone()),
        )
        .await;
        assert_eq!(code, 403, "{body}");
        assert_ne!(
            app.verdict().by,
            "manual override",
            "refused changes change nothing"
        );
        let (code, _, body) = send(
            "POST",
            url("/api/v1/mining/resume"),
            with_cookie(Some(&csrf)),
            Some(String::new()),
        )
        .await;
        assert_eq!(code, 200, "{body}");

        // Tokens: a read-only one reads and cannot change anything.
        let (code, _, body) = send(
            "POST",
            url("/api/v1/tokens"),
            with_cookie(Some(&csrf)),
            Some(json!({"name": "dashboard", "scope": "read"}).to_string()),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        let read = Api {
            base: base.clone(),
            token: created["token"].as_str().unwrap().into(),
        };
        read.json("/api/v1/status").await;
        let (code, body) = read
            .call("POST", "/api/v1/mining/pause", Some(json!({"minutes": 5})))
            .await;
        assert_eq!(code, 403, "{body}");
        let (code, _) = read.call("GET", "/metrics", None).await;
        assert_eq!(code, 200);
        // Revoked: 401.
        let (code, _, _) = send(
            "DELETE",
            url(&format!(
                "/api/v1/tokens/{}",
                created["id"].as_str().unwrap()
            )),
            with_cookie(Some(&csrf)),
            None,
        )
        .await;
        assert_eq!(code, 204);
        let (code, _) = read.call("GET", "/api/v1/status", None).await;
        assert_eq!(code, 401);

        // Hostile bodies: 4xx with a JSON reason, configuration unchanged.
        let admin = Api {
            base: base.clone(),
            token: token(&app, Scope::Admin),
        };
        let before = admin.json("/api/v1/pools").await;
        for (ctype, body, want) in [
            ("application/json", "{\"url\": ".to_string(), 400),
            (
                "application/json",
                format!("{{\"url\": \"{}\", \"user\": \"w\"}}", "x".repeat(100_000)),
                413,
            ),
            (
                "text/plain",
                "{\"url\": \"stratum+tcp://127.0.0.1:9\", \"user\": \"w\"}".to_string(),
                415,
            ),
            (
                "application/json",
                "{\"url\": \"stratum+tcp://127.0.0.1:9\", \"user\": \"w\", \"evil\": 1}"
                    .to_string(),
                400,
            ),
        ] {
            let (code, _, reply) = send(
                "POST",
                url("/api/v1/pools"),
                vec![
                    ("Authorization".into(), format!("Bearer {}", admin.token)),
                    ("Content-Type".into(), ctype.into()),
                ],
                Some(body),
            )
            .await;
            assert_eq!(code, want, "{ctype}: {reply}");
            assert!(
                serde_json::from_str::<Value>(&reply).unwrap()["error"].is_string(),
                "{reply}"
            );
        }
        // The configuration, not the live counters (shares keep coming).
        let config_of = |pools: Value| -> Vec<Value> {
            pools
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    p.as_object_mut().unwrap().remove("status");
                    p
                })
                .collect()
        };
        assert_eq!(
            config_of(admin.json("/api/v1/pools").await),
            config_of(before)
        );

        // Login: wrong password 401, then the per-client limit: 429.
        let login = |pw: &str| json!({"user": "admin", "password": pw}).to_string();
        let mut codes = Vec::new();
        for _ in 0..7 {
            let (code, _, _) = send(
                "POST",
                url("/api/v1/session"),
                json_h(),
                Some(login("wrong password")),
            )
            .await;
            codes.push(code);
        }
        assert_eq!(codes[0], 401, "{codes:?}");
        assert_eq!(*codes.last().unwrap(), 429, "{codes:?}");
        let (code, _, _) = send(
            "POST",
            url("/api/v1/session"),
            json_h(),
            Some(login("correct horse battery")),
        )
        .await;
        assert_eq!(code, 429, "limited even with the right password");

        // Logout ends the session.
        let (code, _, _) = send("DELETE", url("/api/v1/session"), with_cookie(None), None).await;
        assert_eq!(code, 204);
        let (code, _, _) = send("GET", url("/api/v1/status"), with_cookie(None), None).await;
        assert_eq!(code, 401);
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_events_metrics_and_openapi() {
    common::bounded(Duration::from_secs(120), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
        let addr = app.api_addr().unwrap();
        let base = format!("http://{addr}");
        let api = Api {
            base: base.clone(),
            token: token(&app, Scope::Read),
        };
        // The embedded panel, with the right types; no path reaches the disk.
        for (path, ty) in [
            ("/", "text/html"),
            ("/assets/app.js", "text/javascript"),
            ("/assets/style.css", "text/css"),
            ("/assets/uplot.iife.min.js", "text/javascript"),
            ("/assets/favicon.svg", "image/svg+xml"),
            ("/assets/uPlot.LICENSE", "text/plain"),
        ] {
            let (code, headers, body) = send("GET", format!("{base}{path}"), vec![], None).await;
            assert_eq!(code, 200, "{path}");
            assert!(
                headers
                    .to_ascii_lowercase()
                    .contains(&format!("content-type: {ty}")),
                "{path}: {headers}"
            );
            assert!(!body.is_empty());
        }
        for path in [
            "/assets/../Cargo.toml",
            "/assets/%2e%2e/Cargo.toml",
            "/etc/passwd",
            "/assets/app.js.map",
        ] {
            let (code, _) = raw(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert_eq!(code, 404, "{path}");
        }
        // OpenAPI, generated from the handlers.
        let (code, _, doc) = send("GET", format!("{base}/api/v1/openapi.json"), vec![], None).await;
        assert_eq!(code, 200);
        let doc: Value = serde_json::from_str(&doc).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/api/v1/status",
            "/api/v1/pools/{id}",
            "/api/v1/mining/pause",
            "/api/v1/tokens",
        ] {
            assert!(
                doc["paths"][path].is_object(),
                "{path} missing from OpenAPI"
            );
        }
        // Metrics for a token.
        let (code, body) = api.call("GET", "/metrics", None).await;
        assert_eq!(code, 200);
        assert!(body.contains("hashwatt_"), "{body}");
        // The event stream: a status event with the snapshot.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
                api.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 8192];
        while !(seen.contains("event: status") && seen.contains("\"uptime_secs\"")) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("events within 10 s")
                .unwrap();
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(seen.contains("text/event-stream"), "{seen}");
        // The stream ends at shutdown.
        app.shutdown().await;
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the event stream ends at shutdown");
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
        let admin = token(&app, Scope::Admin);
        let post = |host: &str, origin: Option<&str>, ctype: &str, body: &str| {
            format!(
                "POST /api/v1/mining/pause HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {admin}\r\n{}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default(),
                body.len()
            )
        };
        let host = addr.to_string();
        // The cross-origin text/plain POST any web page could make: refused, not paused.
        let forged = "{\"minutes\": 4294967295}";
        let (code, body) = raw(addr, post(&host, Some("http://evil.example"), "text/plain", forged)).await;
        assert_eq!(code, 403, "{body}");
        // DNS rebinding: a foreign host name.
        let (code, body) = raw(addr, post("evil.example", None, "application/json", forged)).await;
        assert_eq!(code, 421, "{body}");
        // Even from the appliance's own origin, the duration is capped.
        let (code, body) = raw(addr, post(&host, Some(&format!("http://{host}")), "application/json", "{\"minutes\": 4294967}")).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("1..=10080"), "{body}");
        assert_ne!(app.verdict().by, "manual override");
        // NaN and infinities are not values (JSON has none; 1e999 overflows).
        for v in ["NaN", "Infinity", "-1e999", "1e999"] {
            let b = format!("{{\"value\": {v}}}");
            let req = format!(
                "PUT /api/v1/signals/grid HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
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
        let (code, _) = raw(addr, format!("GET /api/v1/setup HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(code, 0, "a fifth connection from the same client is closed unanswered");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, body) = raw(addr, format!("GET /api/v1/setup HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.to_ascii_lowercase().contains("x-frame-options: deny"), "{body}");
        app.shutdown().await;
    })
    .await;
}

/// Hourly prices for two days, EUR/MWh, with a .25 part so none equals
/// the ceiling.
fn backtest_prices() -> Vec<f64> {
    (0..48)
        .map(|h| 100.0 + ((h * 37) % 100) as f64 + 0.25)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_through_the_api_matches_the_hand_computed_sums() {
    common::bounded(Duration::from_secs(120), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
            // Never pushed: enabled, the policy would pause for want of a price.
            c.signals = vec![common::pushed_signal("price", 3600)];
            c.policies = vec![PolicyEntry {
                name: "ceiling".into(),
                plugin: "price".into(),
                enabled: false,
                fail_safe: FailSafe::Pause,
                config: [
                    ("signal".to_string(), toml::Value::from("price")),
                    ("unit".into(), "EUR/MWh".into()),
                    ("max_price".into(), 150.0.into()),
                ]
                .into_iter()
                .collect(),
            }];
        })
        .await;
        let base = format!("http://{}", app.api_addr().expect("API enabled"));
        let api = Api {
            base: base.clone(),
            token: token(&app, Scope::Admin),
        };
        let prices = backtest_prices();
        let mut series = String::from("time,price\n");
        for (h, p) in prices.iter().enumerate() {
            series.push_str(&format!("{},{p}\n", 1_735_689_600 + 3600 * h as i64));
        }
        let req = json!({
            "policy": "ceiling", "series": series, "watts": 1000, "idle_watts": 10,
            "terahash": 2, "price_unit": "per-mwh", "hashprice": 0.05,
        });
        let (code, body) = api.call("POST", "/api/v1/energy/backtest", Some(req.clone())).await;
        assert_eq!(code, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();

        // By hand: mine in hours at or under the ceiling, 1 kWh each;
        // 10 W otherwise; cost at each hour's price.
        let mined = prices.iter().filter(|p| **p <= 150.0).count() as f64;
        let cost: f64 = prices
            .iter()
            .map(|p| if *p <= 150.0 { 1.0 } else { 0.01 } * p / 1000.0)
            .sum();
        let always: f64 = prices.iter().map(|p| p / 1000.0).sum();
        let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-6;
        assert_eq!(r["rows"], 48, "{r}");
        assert_eq!(r["policy"], "ceiling");
        assert!(close(&r["with_policy"]["hours_mining"], mined), "{r}");
        assert!(close(&r["with_policy"]["hours_paused"], 48.0 - mined), "{r}");
        assert!(close(&r["with_policy"]["kwh"], mined + (48.0 - mined) * 0.01), "{r}");
        assert!(close(&r["with_policy"]["cost"], cost), "{r}");
        assert!(close(&r["always_on"]["cost"], always), "{r}");
        assert!(close(&r["cost_saved"], always - cost), "{r}");
        assert!(close(&r["with_policy"]["hashes"], mined * 3600.0 * 2e12), "{r}");
        assert!(close(&r["revenue_forgone"], (48.0 - mined) * 3600.0 * 2e12 / 86_400e12 * 0.05), "{r}");
        assert!(r["pauses"][0]["cause"].as_str().unwrap().starts_with("ceiling: price N"), "{r}");
        assert!(r["chart_svg"].as_str().unwrap().starts_with("<svg"), "{r}");
        assert!(r["report"].as_str().unwrap().contains("hours mining"), "{r}");
        // Nothing changed on the appliance: the disabled policy decided
        // nothing live.
        assert_ne!(app.verdict().by, "ceiling");
        let live = api.json("/api/v1/policies").await;
        assert!(live[0]["status"]["last_mode"].is_null(), "{live}");
        // New settings for a disabled policy leave it disabled.
        let (code, body) = api
            .call("PUT", "/api/v1/policies/ceiling", Some(json!({"config": {"signal": "price", "max_price": 10}})))
            .await;
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_ne!(app.verdict().by, "ceiling", "a disabled policy decided");

        // The appliance's own hashrate when none is given.
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 1).await);
        let (code, body) = api
            .call("POST", "/api/v1/energy/backtest", Some(json!({"plugin": "price", "series": series,
                "config": {"signal": "price", "max_price": 150}})))
            .await;
        assert_eq!(code, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        assert!(r["hashrate_hs"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["policy"], "price");

        // Bad requests are refused with a reason.
        for (body, want_code, want) in [
            (json!({"series": series}), 400, "give a configured policy"),
            (json!({"policy": "ceiling", "plugin": "price", "series": series}), 400, "not both"),
            (json!({"policy": "nope", "series": series}), 404, "no policy named"),
            (json!({"plugin": "nope", "series": series, "terahash": 1}), 404, "nope"),
            (json!({"policy": "ceiling", "series": "time,price\n1,x\n", "terahash": 1}), 400, "series line 2"),
            (json!({"policy": "ceiling", "series": series, "terahash": 1, "price_unit": "per-gwh"}), 400, "per-kwh or per-mwh"),
            (json!({"policy": "ceiling", "series": series, "terahash": 1, "watts": -1}), 400, "full power"),
            (json!({"policy": "ceiling", "series": series, "surprise": 1}), 400, "surprise"),
        ] {
            let (code, text) = api.call("POST", "/api/v1/energy/backtest", Some(body)).await;
            assert_eq!(code, want_code, "{text}");
            assert!(text.contains(want), "{want}: {text}");
        }
        let (code, _, text) = send(
            "POST",
            format!("{base}/api/v1/energy/backtest"),
            vec![
                ("Authorization".into(), format!("Bearer {}", token(&app, Scope::Read))),
                ("Content-Type".into(), "application/json".into()),
            ],
            Some(req.to_string()),
        )
        .await;
        assert_eq!(code, 403, "a read-only token cannot run a backtest: {text}");
    })
    .await;
}
