//! The appliance's HTTP API, on loopback by default: what the operator (and
//! later the web panel) sees and may change. Status with the reason for
//! every pause, energy reports, signal values pushed by home automation,
//! and the manual override.
//!
//! Every input is checked; a bad request gets a 4xx with a message, never a
//! panic. Every listener caps open connections per client and in all and
//! gives each request's headers a deadline ([`listener`]); requests naming
//! a host that is not this appliance, or coming from another origin, are
//! refused ([`guard`]), so a web page the operator opens cannot reach the
//! API through the browser.

pub mod auth;
pub mod cgminer;
pub mod esp_miner;
pub mod guard;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod tls;

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::control::{Command, Handle};
use crate::policy::Mode;
use crate::status::PoolState;

/// What the handlers read and change: the control plane.
pub type ApiState = Handle;

/// Binds `settings.listen` (or `addr`) and serves the API and panel until
/// `shutdown` turns true; returns the bound address.
pub async fn start(
    addr: SocketAddr,
    settings: &crate::config::WebSettings,
    state: ApiState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let hosts = std::sync::Arc::new(guard::Hosts::new(&settings.names));
    let app = router(state).layer(axum::middleware::from_fn_with_state(hosts, guard::check));
    let opts = listener::ServeOptions {
        limiter: limits::ConnLimiter::new(
            settings.max_connections,
            settings.max_connections_per_client,
        ),
        tls: None,
        name: "panel",
    };
    listener::bind_and_serve(addr, app, opts, shutdown).await
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/energy/report", get(report))
        .route("/api/signals/{name}", put(set_signal))
        .route("/api/override", post(set_override))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

/// Longest manual pause, minutes: a week.
pub const MAX_PAUSE_MINUTES: u32 = 7 * 24 * 60;

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

fn mode_json(mode: &Mode) -> Value {
    match mode {
        Mode::Run => json!({ "mode": "run" }),
        Mode::Limit(w) => json!({ "mode": "limit", "watts": w }),
        Mode::Pause => json!({ "mode": "pause" }),
    }
}

async fn status(State(s): State<ApiState>) -> Json<Value> {
    let snap = s.snapshot();
    let c = &snap.shares;
    let engine = &snap.energy;
    let verdict = &engine.verdict;
    let pools: Vec<Value> = c
        .pools
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "url": p.url,
                "user": p.user,
                "state": match p.state {
                    PoolState::Connecting => "connecting",
                    PoolState::Healthy => "healthy",
                    PoolState::Disabled => "disabled",
                    PoolState::Off => "off",
                },
                "plugin": p.plugin,
                "accepted": p.accepted,
                "rejected": p.rejected,
                "stale": p.stale,
                "throttled": p.throttled,
                "in_flight": p.in_flight,
                "connects": p.connects,
                "last_disconnect": p.last_disconnect,
                "plugin_restarts": p.plugin_restarts,
                "plugin_error": p.plugin_error,
                "disabled": p.disabled,
            })
        })
        .collect();
    let policies: Vec<Value> = engine
        .policies
        .iter()
        .map(|p| json!({ "name": p.name, "enabled": p.enabled, "failures": p.failures, "last_error": p.last_error }))
        .collect();
    Json(json!({
        "version": snap.version,
        "uptime_secs": snap.uptime_secs,
        "hashrate_hs": { "10s": snap.hashrate_10s_hs, "1m": snap.hashrate_1m_hs },
        "shares": {
            "accepted": c.accepted,
            "rejected": c.rejected,
            "stale": c.stale,
            "throttled": c.throttled,
            "hardware_errors": c.hardware_errors,
            "in_flight": c.in_flight,
            "blocks": c.blocks,
        },
        "active_pool": c.active_pool,
        "pools": pools,
        "devices": serde_json::to_value(&snap.devices).unwrap_or(Value::Null),
        "mining": {
            "decision": mode_json(&verdict.mode),
            "by": verdict.by,
            "reason": verdict.reason,
            "summary": verdict.to_string(),
            "since_utc_ms": verdict.since_ms,
        },
        "policies": policies,
        "power": { "watts": snap.power_w, "source": snap.power_source },
    }))
}

#[derive(Deserialize)]
struct ReportQuery {
    period: Option<String>,
    format: Option<String>,
}

async fn report(State(s): State<ApiState>, Query(q): Query<ReportQuery>) -> Response {
    let period = match q
        .period
        .as_deref()
        .unwrap_or("day")
        .parse::<hashwatt_energy::Period>()
    {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let report = s.energy().report(period);
    match q.format.as_deref().unwrap_or("json") {
        "json" => Json(report).into_response(),
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.to_csv(),
        )
            .into_response(),
        other => error(
            StatusCode::BAD_REQUEST,
            format!("format must be json or csv, not {other:?}"),
        ),
    }
}

async fn set_signal(State(s): State<ApiState>, Path(name): Path<String>, body: String) -> Response {
    let value: f64 = match body.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        Ok(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("a signal value must be a finite number, not {v}"),
            );
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "body must be a number"),
    };
    match s.execute(Command::SetSignal { name, value }).await {
        Ok(_) => (StatusCode::NO_CONTENT, "").into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    /// true: pause; false: clear the override.
    pause: bool,
    /// Pause for this many minutes (none: until cleared).
    minutes: Option<u32>,
}

async fn set_override(State(s): State<ApiState>, body: axum::body::Bytes) -> Response {
    let req: OverrideRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid override request: {e}"),
            );
        }
    };
    if let Some(m) = req.minutes
        && !(1..=MAX_PAUSE_MINUTES).contains(&m)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "minutes must be in 1..={MAX_PAUSE_MINUTES} (a week), not {m}; leave it out to pause until resumed"
            ),
        );
    }
    let command = if req.pause {
        Command::Pause {
            minutes: req.minutes,
        }
    } else {
        Command::Resume
    };
    match s.execute(command).await {
        Ok(summary) => Json(json!({ "mining": summary })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
