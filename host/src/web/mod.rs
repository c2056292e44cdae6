//! The appliance's web front end: the panel, the REST API `/api/v1`
//! ([`api`]), Prometheus `/metrics`, and the tools miners already run
//! (the cgminer API, the ESP-Miner-compatible surface).
//!
//! Every input is checked; a bad request gets a 4xx with a message, never a
//! panic. Every listener caps open connections per client and in all and
//! gives each request's headers a deadline ([`listener`]); requests naming
//! a host that is not this appliance, or coming from another origin, are
//! refused ([`guard`]), so a web page the operator opens cannot reach the
//! API through the browser.

pub mod api;
pub mod assets;
pub mod auth;
pub mod bench;
pub mod cgminer;
pub mod esp_miner;
pub mod guard;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::Handle;

/// What [`start`] brings up.
pub struct Started {
    /// The panel's bound address.
    pub addr: SocketAddr,
    /// The plain-HTTP redirect listener's address, under TLS.
    pub redirect_addr: Option<SocketAddr>,
    /// Accounts and tokens (tests and the console read the setup token).
    pub auth: Arc<auth::Auth>,
    /// The certificate's fingerprint, under TLS.
    pub fingerprint: Option<String>,
    /// The listener tasks.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Binds `addr` and serves the panel, `/api/v1` and `/metrics` until
/// `shutdown` turns true; over HTTPS when `settings.tls`, with a
/// certificate made on first start and kept in `state_dir/web/tls`.
pub async fn start(
    addr: SocketAddr,
    settings: &crate::config::WebSettings,
    handle: Handle,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Started> {
    let state_dir = handle.config().state_dir.clone();
    let auth = Arc::new(auth::Auth::load(Some(&state_dir))?);
    let tls = if settings.tls {
        let dir = state_dir.join("web").join("tls");
        let mut names = settings.names.clone();
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim().to_string();
            if !h.is_empty() {
                names.push(format!("{h}.local"));
                names.push(h);
            }
        }
        names.push("localhost".into());
        names.push(addr.ip().to_string());
        Some(tls::load_or_create(&dir, &names)?)
    } else {
        None
    };
    let fingerprint = tls.as_ref().map(|c| c.fingerprint.clone());
    let (status_tx, status_rx) = watch::channel::<Arc<str>>(Arc::from("{}"));
    let panel = Arc::new(api::Panel {
        handle: handle.clone(),
        auth: auth.clone(),
        status: status_rx,
        started_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        fingerprint: fingerprint.clone(),
        shutdown: shutdown.clone(),
        anonymous_metrics: settings.anonymous_metrics,
    });
    let mut tasks = vec![tokio::spawn(publish_status(
        handle,
        status_tx,
        shutdown.clone(),
    ))];
    let hosts = Arc::new(guard::Hosts::new(&settings.names));
    let app = router(panel).layer(axum::middleware::from_fn_with_state(
        hosts.clone(),
        guard::check,
    ));
    let limiter = limits::ConnLimiter::new(
        settings.max_connections,
        settings.max_connections_per_client,
    );
    let opts = listener::ServeOptions {
        limiter: limiter.clone(),
        tls: tls.as_ref().map(|c| c.config.clone()),
        name: "panel",
    };
    let (bound, task) = listener::bind_and_serve(addr, app, opts, shutdown.clone()).await?;
    tasks.push(task);
    let redirect_addr = match settings.redirect_listen {
        Some(raddr) if tls.is_some() => {
            let port = bound.port();
            let redirect = Router::new()
                .fallback(move |headers: axum::http::HeaderMap, uri: Uri| async move {
                    redirect_to_https(&headers, &uri, port)
                })
                .layer(axum::middleware::from_fn_with_state(hosts, guard::check));
            let opts = listener::ServeOptions {
                limiter,
                tls: None,
                name: "redirect",
            };
            let (rbound, rtask) = listener::bind_and_serve(raddr, redirect, opts, shutdown)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot listen for the HTTP redirect on {raddr}: {e}")
                })?;
            tasks.push(rtask);
            Some(rbound)
        }
        _ => None,
    };
    Ok(Started {
        addr: bound,
        redirect_addr,
        auth,
        fingerprint,
        tasks,
    })
}

/// Serialises the snapshot once a second for every event stream.
async fn publish_status(
    handle: Handle,
    tx: watch::Sender<Arc<str>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if tx.receiver_count() > 1 || tx.borrow().len() <= 2 {
            match serde_json::to_string(&handle.snapshot()) {
                Ok(json) => {
                    tx.send_replace(Arc::from(json));
                }
                Err(e) => tracing::warn!("cannot serialise the status: {e}"),
            }
        }
    }
}

/// `http://host[:port]/path` → `https://host:port/path`.
fn redirect_to_https(headers: &axum::http::HeaderMap, uri: &Uri, port: u16) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let name = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => {
            if p.chars().all(|c| c.is_ascii_digit()) {
                n
            } else {
                host
            }
        }
        _ => host,
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{port}{path}")
    };
    match HeaderValue::from_str(&target) {
        Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad Host").into_response(),
    }
}

fn router(panel: api::PanelState) -> Router {
    Router::new()
        .route("/metrics", get(api::metrics).with_state(panel.clone()))
        .merge(api::router(panel))
        .fallback(assets::serve)
}
