//! ESP-Miner's REST API on a listener of its own (opt-in, off by default),
//! for the tools BM13xx owners already run: pyasic, the fleet tools and
//! Home Assistant's miner integration built on it. They know no
//! vendor-neutral API: pyasic recognises an ESP-Miner device by the word
//! `AxeOS` on its web page (`GET /` on port 80), then reads everything
//! from `GET /api/system/info`.
//!
//! So this surface serves, over plain HTTP as ESP-Miner does (those tools
//! follow no redirect to HTTPS and refuse a self-signed certificate):
//! a minimal page at `/` that names hashwatt and the API it imitates,
//! `/api/system/info`, `/api/system/asic` and `/api/system/statistics`
//! with the field names and units of ESP-Miner's OpenAPI document
//! (`hashRate` in GH/s, `power` in W, temperatures in °C, `fanrpm`…).
//! Nothing of it is served by the panel, which names no other product.
//!
//! Values the appliance does not know (`voltage`, `current`, a missing
//! sensor) are left out rather than sent as 0 or `null`: pyasic tolerates a
//! missing field everywhere and chokes on `"power": null`.
//!
//! `ASICModel` is the chip of the first ASIC device (`BM1370`), as
//! ESP-Miner reports it, so pyasic names the board from it; a CPU appliance
//! reports `CPU`, which pyasic files under its generic ESP-Miner class: it
//! reads hashrate, power, uptime, hostname, version and the pool, and shows
//! no temperature or fan since that class expects no hash board or fan.
//! Claiming a BM13xx chip for a CPU would make every tool show a product
//! that is not there.
//!
//! Read-only unless `[esp_miner] writes = true`: then `PATCH /api/system`
//! (pool URL, port, user, password of the primary pool), `POST
//! /api/system/restart`, `/pause` and `/resume` go through the one command
//! path like every other change. A write carrying a foreign `Origin`
//! (another web page in the operator's browser) is refused, and reads are
//! shared across origins only with pages from this network, as ESP-Miner
//! does for its swarm dashboards.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tracing::info;

use crate::config::{PoolEntry, PoolUrl};
use crate::control::{Command, CommandError, Handle};
use crate::device::TempReading;
use crate::policy::Mode;
use crate::state::Snapshot;
use crate::status::{PoolState, PoolStatus};
use crate::web::limits::ConnLimiter;
use crate::web::listener;

/// What ESP-Miner's `GET` of a password answers; never taken as a new one.
const HIDDEN_PASSWORD: &str = "*****";
/// Longest request body accepted (a settings PATCH is a few hundred bytes).
const MAX_BODY: usize = 16 * 1024;

/// What the handlers share.
struct Surface {
    handle: Handle,
    writes: bool,
    hostname: String,
}

type Shared = State<Arc<Surface>>;

/// Binds `addr` and serves the surface on the shared accept loop
/// ([`crate::web::listener`]) until `shutdown` turns true; returns the bound
/// address. Every connection holds a permit of `limiter`.
pub async fn start(
    addr: SocketAddr,
    handle: Handle,
    writes: bool,
    limiter: ConnLimiter,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = router(handle, writes, hostname());
    let opts = listener::ServeOptions {
        limiter,
        tls: None,
        name: "ESP-Miner surface",
    };
    listener::bind_and_serve(addr, app, opts, shutdown).await
}

/// This machine's host name (ESP-Miner's `hostname`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hashwatt".into())
}

/// The surface's routes; `writes` enables the write endpoints.
pub fn router(handle: Handle, writes: bool, hostname: String) -> Router {
    let state = Arc::new(Surface {
        handle,
        writes,
        hostname,
    });
    Router::new()
        .route("/", get(page))
        .route("/api/system/info", get(get_info))
        .route("/api/system/asic", get(get_asic))
        .route("/api/system/statistics", get(get_statistics))
        .route("/api/system", patch(update_settings))
        .route("/api/system/restart", post(restart))
        .route("/api/system/pause", post(pause))
        .route("/api/system/resume", post(resume))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The page pyasic fingerprints: it must say `AxeOS`; it also says whose
/// it is and where the real panel is.
const PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>hashwatt - AxeOS-compatible API</title>\n</head>\n<body>\n\
<h1>hashwatt</h1>\n\
<p>This port serves ESP-Miner's REST API (AxeOS-compatible) for fleet tools: \
<a href=\"/api/system/info\">/api/system/info</a>, \
<a href=\"/api/system/asic\">/api/system/asic</a>, \
<a href=\"/api/system/statistics\">/api/system/statistics</a>.</p>\n\
<p>The appliance's own panel is on its panel port.</p>\n</body>\n</html>\n";

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

fn message(code: StatusCode, text: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "message": text.into() }))).into_response()
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The `Access-Control-Allow-Origin` a read gets: the page's own origin
/// when that page was served from this network (a private, loopback or
/// link-local address, as ESP-Miner allows its swarm dashboards), nothing
/// for a page from anywhere else, so a public web site the operator visits
/// cannot read the appliance through the browser. Writes never get one.
pub fn allowed_origin(origin: Option<&str>) -> Option<String> {
    let origin = origin?.trim();
    let (scheme, rest) = origin.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next().unwrap_or(""),
    };
    let local = match host.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => a.is_private() || a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => {
            a.is_loopback()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback())
        }
    };
    local.then(|| origin.to_string())
}

/// JSON for a read, readable by a dashboard page from this network.
fn readable(value: Value, headers: &HeaderMap) -> Response {
    let mut r = axum::Json(value).into_response();
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let Some(allowed) = allowed_origin(origin).and_then(|o| HeaderValue::from_str(&o).ok()) {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

async fn get_info(State(s): Shared, headers: HeaderMap) -> Response {
    readable(system_info(&s.handle.snapshot(), &s.hostname), &headers)
}

async fn get_asic(State(s): Shared, headers: HeaderMap) -> Response {
    readable(system_asic(&s.handle.snapshot()), &headers)
}

async fn get_statistics(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let columns: Option<Vec<&str>> = q
        .get("columns")
        .map(|c| c.split(',').map(str::trim).collect());
    readable(
        system_statistics(&s.handle.snapshot(), columns.as_deref()),
        &headers,
    )
}

// ---------------------------------------------------------------------------
// Snapshot → ESP-Miner JSON (pure).

/// ESP-Miner's `ASICModel`: the chip of the first ASIC device, else the
/// kind of the first device in capitals (`CPU`).
pub fn asic_model(snapshot: &Snapshot) -> String {
    if let Some(d) = snapshot.devices.iter().find(|d| d.info.kind == "asic") {
        return chip_name(&d.info.model).unwrap_or_else(|| d.info.model.clone());
    }
    snapshot
        .devices
        .first()
        .map_or_else(|| "NONE".into(), |d| d.info.kind.to_ascii_uppercase())
}

/// `BM1370` out of a model description such as `bm1370 × 1 chip`.
fn chip_name(model: &str) -> Option<String> {
    model
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| {
            w.len() == 6
                && w[..2].eq_ignore_ascii_case("bm")
                && w[2..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_ascii_uppercase)
}

/// Whether a sensor is a voltage regulator's (ESP-Miner's `vrTemp`).
fn is_vr(t: &TempReading) -> bool {
    t.label
        .to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "vr" || w == "vrm" || w == "regulator")
}

fn hottest<'a>(temps: impl Iterator<Item = &'a TempReading>) -> Option<f64> {
    temps
        .map(|t| t.temp_c)
        .filter(|t| t.is_finite())
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
}

/// The appliance's draw, as ESP-Miner's `power` is the board's own
/// measurement: an external meter's reading first, then the sum of the
/// devices' own measurements when every device measures itself (an ASIC
/// board's regulator knows better than RAPL or the model), then whatever
/// the energy meter has.
fn power_w(snapshot: &Snapshot) -> Option<f64> {
    let devices = if snapshot.devices.is_empty() {
        None
    } else {
        snapshot
            .devices
            .iter()
            .map(|d| d.telemetry.power_w)
            .sum::<Option<f64>>()
    };
    if snapshot.power_source == "external" {
        snapshot.power_w.or(devices)
    } else {
        devices.or(snapshot.power_w)
    }
}

fn gh(hs: f64) -> f64 {
    if hs.is_finite() { hs / 1e9 } else { 0.0 }
}

/// The pool ESP-Miner calls primary: the first one the operator has not
/// switched off (in priority order), and the fallback after it.
fn primary_and_fallback(pools: &[PoolStatus]) -> (Option<usize>, Option<usize>) {
    let on = |p: &&PoolStatus| p.state != PoolState::Off;
    let primary = pools
        .iter()
        .position(|p| on(&p))
        .or((!pools.is_empty()).then_some(0));
    let fallback = primary.and_then(|i| {
        pools
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, p)| on(p))
            .map(|(j, _)| j)
    });
    (primary, fallback)
}

/// A pool URL as ESP-Miner splits it: host, port, protocol, TLS.
struct Endpoint {
    host: String,
    port: u16,
    protocol: &'static str,
    tls: u8,
    authority_key: String,
}

fn endpoint(url: &str) -> Endpoint {
    match url.parse::<PoolUrl>() {
        Ok(u) => {
            let sv2 = u.scheme.starts_with("stratum2");
            Endpoint {
                host: u.host,
                port: u.port,
                protocol: if sv2 { "SV2" } else { "SV1" },
                tls: u8::from(u.scheme.contains("ssl") || u.scheme.contains("tls")),
                authority_key: if sv2 { u.path } else { String::new() },
            }
        }
        Err(_) => Endpoint {
            host: url.to_string(),
            port: 0,
            protocol: "SV1",
            tls: 0,
            authority_key: String::new(),
        },
    }
}

fn pool_object(index: usize, p: &PoolStatus) -> Value {
    let e = endpoint(&p.url);
    json!({
        "id": index,
        "stratumProtocol": e.protocol,
        "stratumURL": e.host,
        "stratumPort": e.port,
        "stratumUser": p.user,
        "stratumTLS": e.tls,
        "stratumV2AuthorityPubkey": e.authority_key,
    })
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        m.insert(key.into(), json!(v));
    }
}

/// `GET /api/system/info`: ESP-Miner's `SystemInfo`, the fields the
/// appliance knows.
pub fn system_info(snapshot: &Snapshot, hostname: &str) -> Value {
    let c = &snapshot.shares;
    let mut m = Map::new();
    m.insert("ASICModel".into(), json!(asic_model(snapshot)));
    m.insert("hostname".into(), json!(hostname));
    m.insert(
        "version".into(),
        json!(format!("hashwatt/{}", snapshot.version)),
    );
    m.insert("uptimeSeconds".into(), json!(snapshot.uptime_secs));
    m.insert("hashRate".into(), json!(gh(snapshot.hashrate_10s_hs)));
    m.insert("hashRate_1m".into(), json!(gh(snapshot.hashrate_1m_hs)));
    put_opt(&mut m, "power", power_w(snapshot));

    let temps = || {
        snapshot
            .devices
            .iter()
            .flat_map(|d| d.telemetry.temperatures.iter())
    };
    put_opt(&mut m, "temp", hottest(temps().filter(|t| !is_vr(t))));
    put_opt(&mut m, "vrTemp", hottest(temps().filter(|t| is_vr(t))));
    let fans: Vec<_> = snapshot
        .devices
        .iter()
        .flat_map(|d| d.telemetry.fans.iter())
        .collect();
    put_opt(
        &mut m,
        "fanrpm",
        fans.first().and_then(|f| f.rpm).map(f64::from),
    );
    put_opt(
        &mut m,
        "fan2rpm",
        fans.get(1).and_then(|f| f.rpm).map(f64::from),
    );
    put_opt(
        &mut m,
        "fanspeed",
        fans.first().and_then(|f| f.percent).map(f64::round),
    );
    // The hardware regulates its own fans; nothing here sets them.
    m.insert("autofanspeed".into(), json!(1));

    m.insert("sharesAccepted".into(), json!(c.accepted));
    m.insert("sharesRejected".into(), json!(c.rejected_total()));
    m.insert(
        "sharesRejectedReasons".into(),
        Value::Array(
            c.rejected
                .iter()
                .map(|(reason, n)| json!({ "message": reason, "count": n }))
                .collect(),
        ),
    );
    m.insert("sharesPending".into(), json!(c.in_flight));
    m.insert("blockFound".into(), json!(c.blocks));
    m.insert("workReceived".into(), json!(c.jobs));
    m.insert(
        "miningPaused".into(),
        json!(matches!(snapshot.energy.verdict.mode, Mode::Pause)),
    );

    let (primary, fallback) = primary_and_fallback(&c.pools);
    m.insert(
        "pools".into(),
        Value::Array(
            c.pools
                .iter()
                .enumerate()
                .map(|(i, p)| pool_object(i, p))
                .collect(),
        ),
    );
    if let Some(i) = primary {
        let p = &c.pools[i];
        let e = endpoint(&p.url);
        m.insert("primaryPoolIndex".into(), json!(i));
        m.insert("stratumURL".into(), json!(e.host));
        m.insert("stratumPort".into(), json!(e.port));
        m.insert("stratumUser".into(), json!(p.user));
        m.insert("stratumProtocol".into(), json!(e.protocol));
        m.insert("stratumTLS".into(), json!(e.tls));
        m.insert("stratumV2AuthorityPubkey".into(), json!(e.authority_key));
        let on_fallback = c.active_pool_id.is_some_and(|id| id != p.id);
        m.insert(
            "isUsingFallbackStratum".into(),
            json!(u8::from(on_fallback)),
        );
    }
    if let Some(j) = fallback {
        let p = &c.pools[j];
        let e = endpoint(&p.url);
        m.insert("secondaryPoolIndex".into(), json!(j));
        m.insert("fallbackStratumURL".into(), json!(e.host));
        m.insert("fallbackStratumPort".into(), json!(e.port));
        m.insert("fallbackStratumUser".into(), json!(p.user));
        m.insert("fallbackStratumProtocol".into(), json!(e.protocol));
        m.insert("fallbackStratumTLS".into(), json!(e.tls));
    }
    Value::Object(m)
}

/// `GET /api/system/asic`: the chip and how many there are; no frequency
/// or voltage can be set here, so both option lists are empty.
pub fn system_asic(snapshot: &Snapshot) -> Value {
    let asics: usize = snapshot
        .devices
        .iter()
        .filter(|d| d.info.kind == "asic")
        .map(|d| d.telemetry.units.len())
        .sum();
    json!({
        "ASICModel": asic_model(snapshot),
        "deviceModel": snapshot.devices.first().map_or("", |d| d.info.model.as_str()),
        "asicCount": asics,
        "frequencyOptions": [],
        "voltageOptions": [],
    })
}

/// `GET /api/system/statistics`: ESP-Miner keeps a history; this surface
/// has the present only, so one data point, of the `columns` asked for
/// (all known ones by default). A column whose value is unknown is left
/// out of `labels` and of the row alike. `timestamp` is milliseconds since
/// start, as ESP-Miner's is since boot.
pub fn system_statistics(snapshot: &Snapshot, columns: Option<&[&str]>) -> Value {
    let info = system_info(snapshot, "");
    let num = |k: &str| info.get(k).and_then(Value::as_f64);
    let all = [
        ("hashrate", num("hashRate")),
        ("hashrate_1m", num("hashRate_1m")),
        ("asicTemp", num("temp")),
        ("vrTemp", num("vrTemp")),
        ("power", num("power")),
        ("fanSpeed", num("fanspeed")),
        ("fanRpm", num("fanrpm")),
        ("fan2Rpm", num("fan2rpm")),
    ];
    let wanted = |name: &str| columns.is_none_or(|c| c.is_empty() || c.contains(&name));
    let mut labels = Vec::new();
    let mut row = Vec::new();
    for (name, value) in all {
        if let Some(v) = value.filter(|_| wanted(name)) {
            labels.push(json!(name));
            row.push(json!(v));
        }
    }
    let now_ms = snapshot.uptime_secs.saturating_mul(1000);
    labels.push(json!("timestamp"));
    row.push(json!(now_ms));
    json!({
        "currentTimestamp": now_ms,
        "labels": labels,
        "statistics": [row],
    })
}

// ---------------------------------------------------------------------------
// Writes.

/// Why a write is refused, if it is: writes are off, or it comes from a
/// foreign web page (an `Origin` other than this host).
fn refusal(s: &Surface, headers: &HeaderMap) -> Option<Response> {
    if !s.writes {
        return Some(message(
            StatusCode::FORBIDDEN,
            "writes are off on this ESP-Miner-compatible surface ([esp_miner] writes = false)",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Some(message(
                StatusCode::FORBIDDEN,
                "a write from another web page is refused",
            ));
        }
    }
    None
}

fn command_error(e: CommandError) -> Response {
    let code = match e {
        CommandError::Invalid(_) | CommandError::BadArgument(_) => StatusCode::BAD_REQUEST,
        CommandError::NotFound(_) => StatusCode::NOT_FOUND,
        CommandError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    message(code, e.to_string())
}

async fn restart(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    match s.handle.execute(Command::Restart).await {
        Ok(_) => message(StatusCode::OK, "System will restart shortly."),
        Err(e) => command_error(e),
    }
}

async fn pause(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    match s.handle.execute(Command::Pause { minutes: None }).await {
        Ok(_) => message(StatusCode::OK, "Mining paused"),
        Err(e) => command_error(e),
    }
}

async fn resume(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    match s.handle.execute(Command::Resume).await {
        Ok(_) => message(StatusCode::OK, "Mining resumed"),
        Err(e) => command_error(e),
    }
}

/// The pool settings a `PATCH /api/system` carries.
#[derive(Debug, Default, PartialEq)]
pub struct PoolPatch {
    /// `stratumURL`: a host (ESP-Miner) or a whole URL (pyasic sends one).
    pub url: Option<String>,
    /// `stratumPort`.
    pub port: Option<u16>,
    /// `stratumUser`.
    pub user: Option<String>,
    /// `stratumPassword` (the `*****` a GET would show is no password).
    pub password: Option<String>,
    /// The settings this appliance does not take (fans, frequency, Wi-Fi…).
    pub ignored: Vec<String>,
}

/// Reads a settings body; `Err` is the message for a 400.
pub fn parse_patch(body: &[u8]) -> Result<PoolPatch, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object".into());
    };
    let mut patch = PoolPatch::default();
    let text = |k: &str, v: &Value| -> Result<String, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{k} must be a string"))
    };
    for (k, v) in &fields {
        match k.as_str() {
            "stratumURL" => patch.url = Some(text(k, v)?.trim().to_string()),
            "stratumUser" => patch.user = Some(text(k, v)?),
            "stratumPassword" => {
                let p = text(k, v)?;
                if p != HIDDEN_PASSWORD {
                    patch.password = Some(p);
                }
            }
            "stratumPort" => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                patch.port = Some(
                    n.and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or("stratumPort must be a port number (1-65535)")?,
                );
            }
            other => patch.ignored.push(other.to_string()),
        }
    }
    Ok(patch)
}

/// Splits `host[:port][/path]` (IPv6 in brackets).
fn split_host_port(rest: &str) -> Result<(String, Option<u16>, &str), String> {
    let (hostport, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let bad_port = || format!("{hostport:?} has an invalid port");
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad_port())?),
            None if after.is_empty() => None,
            None => return Err(bad_port()),
        };
        (host.to_string(), port)
    } else if hostport.matches(':').count() == 1 {
        let (h, p) = hostport.split_once(':').unwrap_or((hostport, ""));
        (h.to_string(), Some(p.parse().map_err(|_| bad_port())?))
    } else {
        // No port, or a bare IPv6 address.
        (hostport.to_string(), None)
    };
    if host.is_empty() {
        return Err("the pool URL has no host".into());
    }
    Ok((host, port, path))
}

/// The pool entry `patch` makes of `current` (`None`: nothing changes).
pub fn patched_pool(current: &PoolEntry, patch: &PoolPatch) -> Result<Option<PoolEntry>, String> {
    let mut next = current.clone();
    if patch.url.is_some() || patch.port.is_some() {
        let (scheme, host, url_port, path) = match patch.url.as_deref() {
            Some(u) => {
                let (scheme, rest) = match u.split_once("://") {
                    Some((s, r)) => (s.to_ascii_lowercase(), r),
                    None => (current.url.scheme.clone(), u),
                };
                let (host, port, path) = split_host_port(rest)?;
                (scheme, host, port, path.to_string())
            }
            None => (
                current.url.scheme.clone(),
                current.url.host.clone(),
                None,
                if current.url.path.is_empty() {
                    String::new()
                } else {
                    format!("/{}", current.url.path)
                },
            ),
        };
        let port = patch.port.or(url_port).unwrap_or(current.url.port);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        next.url = format!("{scheme}://{host}:{port}{path}").parse()?;
    }
    if let Some(u) = &patch.user {
        next.user = u.clone();
    }
    if let Some(p) = &patch.password {
        next.password = p.clone();
    }
    let same =
        next.url == current.url && next.user == current.user && next.password == current.password;
    Ok((!same).then_some(next))
}

async fn update_settings(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let patch = match parse_patch(&body) {
        Ok(p) => p,
        Err(e) => return message(StatusCode::BAD_REQUEST, e),
    };
    if !patch.ignored.is_empty() {
        info!(
            ignored = ?patch.ignored,
            "ESP-Miner surface: settings this appliance does not take were ignored"
        );
    }
    let mut applied = false;
    if patch.url.is_some()
        || patch.port.is_some()
        || patch.user.is_some()
        || patch.password.is_some()
    {
        let snap = s.handle.snapshot();
        let pools = &snap.shares.pools;
        let Some(i) = primary_and_fallback(pools).0 else {
            return message(StatusCode::CONFLICT, "no pool is configured to change");
        };
        let config = s.handle.config();
        let status = &pools[i];
        let Some(current) = config
            .pools
            .get(i)
            .filter(|e| e.url.url == status.url && e.user == status.user)
        else {
            return message(
                StatusCode::CONFLICT,
                "the pools changed meanwhile; read /api/system/info and try again",
            );
        };
        match patched_pool(current, &patch) {
            Err(e) => return message(StatusCode::BAD_REQUEST, e),
            Ok(None) => {}
            Ok(Some(pool)) => {
                if let Err(e) = s
                    .handle
                    .execute(Command::EditPool {
                        id: status.id,
                        pool,
                    })
                    .await
                {
                    return command_error(e);
                }
                applied = true;
            }
        }
    }
    let mut body = json!({ "status": "success" });
    if !patch.ignored.is_empty() {
        body["ignored"] = json!(patch.ignored);
    }
    body["applied"] = json!(applied);
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics' fixture: a BM1370 and a CPU, two pools, a limit.
    fn snapshot() -> Snapshot {
        crate::web::metrics::tests::fixture()
    }

    #[test]
    fn info_has_esp_miner_names_and_units() {
        let info = system_info(&snapshot(), "box");
        let get = |k: &str| info.get(k).cloned().unwrap_or(Value::Null);
        assert_eq!(get("ASICModel"), json!("BM1370"));
        assert_eq!(get("hostname"), json!("box"));
        assert_eq!(get("version"), json!("hashwatt/9.8.7"));
        assert_eq!(get("uptimeSeconds"), json!(3600));
        // 1.2e12 + 3e6 H/s in GH/s.
        assert!((get("hashRate").as_f64().unwrap() - 1200.003).abs() < 1e-6);
        assert!((get("hashRate_1m").as_f64().unwrap() - 1100.0).abs() < 1e-6);
        assert_eq!(get("power"), json!(120.0));
        // The hottest sensor that is not the regulator's.
        assert_eq!(get("temp"), json!(52.5));
        assert_eq!(get("vrTemp"), json!(61.0));
        assert_eq!(get("fanrpm"), json!(4200.0));
        assert_eq!(get("autofanspeed"), json!(1));
        assert_eq!(get("sharesAccepted"), json!(30));
        assert_eq!(get("sharesRejected"), json!(4));
        assert_eq!(
            get("sharesRejectedReasons"),
            json!([{"message": "Job not found", "count": 3}, {"message": "duplicate", "count": 1}])
        );
        assert_eq!(get("stratumURL"), json!("pool.example"));
        assert_eq!(get("stratumPort"), json!(3333));
        assert_eq!(get("stratumUser"), json!("me.worker"));
        assert_eq!(get("stratumProtocol"), json!("SV1"));
        assert_eq!(get("isUsingFallbackStratum"), json!(0));
        assert_eq!(get("miningPaused"), json!(false));
        assert_eq!(get("pools").as_array().map(Vec::len), Some(2));
        // The second pool is off: no fallback.
        assert_eq!(get("fallbackStratumURL"), Value::Null);
        // Never a password.
        assert!(!info.to_string().contains("stratumPassword"));
    }

    #[test]
    fn unknown_values_are_left_out() {
        let mut s = snapshot();
        s.power_w = None;
        s.devices[1].telemetry.power_w = None;
        for d in &mut s.devices {
            d.telemetry.temperatures.clear();
            d.telemetry.fans.clear();
        }
        let info = system_info(&s, "box");
        for k in [
            "power", "voltage", "current", "temp", "vrTemp", "fanrpm", "fan2rpm", "fanspeed",
        ] {
            assert!(info.get(k).is_none(), "{k} is unknown: {info}");
        }
        // Every device measures itself: their sum, before RAPL or the
        // model, but after an external meter.
        s.devices[1].telemetry.power_w = Some(5.5);
        assert_eq!(system_info(&s, "box")["power"], json!(20.0));
        s.power_w = Some(120.0);
        assert_eq!(system_info(&s, "box")["power"], json!(20.0));
        s.power_source = "external";
        assert_eq!(system_info(&s, "box")["power"], json!(120.0));
    }

    #[test]
    fn a_cpu_reports_cpu_and_no_chip_is_invented() {
        let mut s = snapshot();
        s.devices.remove(0);
        assert_eq!(asic_model(&s), "CPU");
        assert_eq!(system_asic(&s)["asicCount"], json!(0));
        assert_eq!(chip_name("bm1366 × 1 chip").as_deref(), Some("BM1366"));
        assert_eq!(chip_name("sha-ni × 4 threads"), None);
        s.devices.clear();
        assert_eq!(asic_model(&s), "NONE");
    }

    #[test]
    fn fallback_and_active_pool() {
        let mut s = snapshot();
        s.shares.pools[1].state = PoolState::Healthy;
        s.shares.active_pool_id = Some(9);
        let info = system_info(&s, "h");
        assert_eq!(info["fallbackStratumURL"], json!("backup.example"));
        assert_eq!(info["isUsingFallbackStratum"], json!(1));
        // The first pool switched off: the second is the primary.
        s.shares.pools[0].state = PoolState::Off;
        let info = system_info(&s, "h");
        assert_eq!(info["stratumURL"], json!("backup.example"));
        assert_eq!(info["primaryPoolIndex"], json!(1));
        assert_eq!(info["isUsingFallbackStratum"], json!(0));
    }

    #[test]
    fn sv2_pool_url_splits_into_esp_miner_fields() {
        let e = endpoint(
            "stratum2+tcp://[::1]:3336/9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
        );
        assert_eq!(e.host, "::1");
        assert_eq!(e.port, 3336);
        assert_eq!(e.protocol, "SV2");
        assert!(e.authority_key.starts_with("9auq"));
    }

    #[test]
    fn statistics_has_one_row_of_known_columns() {
        let st = system_statistics(&snapshot(), None);
        let labels: Vec<&str> = st["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            labels,
            [
                "hashrate",
                "hashrate_1m",
                "asicTemp",
                "vrTemp",
                "power",
                "fanRpm",
                "timestamp"
            ]
        );
        assert_eq!(st["statistics"].as_array().unwrap().len(), 1);
        assert_eq!(st["statistics"][0].as_array().unwrap().len(), labels.len());
        let only = system_statistics(&snapshot(), Some(&["power", "nonsense"]));
        assert_eq!(only["labels"], json!(["power", "timestamp"]));
        assert_eq!(only["statistics"][0][0], json!(120.0));
        assert_eq!(only["currentTimestamp"], json!(3_600_000));
    }

    #[test]
    fn patch_bodies_parse_strictly() {
        let p = parse_patch(
            br#"{"stratumURL":"stratum+tcp://new.example:4444","stratumUser":"u2","stratumPassword":"*****","autoFanspeed":1,"stratumPort":"3334"}"#,
        )
        .unwrap();
        assert_eq!(p.url.as_deref(), Some("stratum+tcp://new.example:4444"));
        assert_eq!(p.user.as_deref(), Some("u2"));
        assert_eq!(p.password, None, "the hidden password is not a password");
        assert_eq!(p.port, Some(3334));
        assert_eq!(p.ignored, ["autoFanspeed"]);
        for bad in [
            &b"not json"[..],
            b"[1]",
            br#"{"stratumPort":0}"#,
            br#"{"stratumPort":70000}"#,
            br#"{"stratumURL":5}"#,
        ] {
            assert!(
                parse_patch(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn entry(url: &str) -> PoolEntry {
        PoolEntry {
            url: url.parse().unwrap(),
            user: "me".into(),
            enabled: true,
            password: "pw".into(),
            plugin: None,
            settings: Default::default(),
        }
    }

    #[test]
    fn patches_map_onto_the_pool_url() {
        let cur = entry("stratum+tcp://old.example:3333");
        let with = |url: Option<&str>, port: Option<u16>| {
            patched_pool(
                &cur,
                &PoolPatch {
                    url: url.map(Into::into),
                    port,
                    ..Default::default()
                },
            )
            .map(|p| p.map(|p| p.url.url))
        };
        // ESP-Miner style: host, and port apart.
        assert_eq!(
            with(Some("new.example"), Some(4444)),
            Ok(Some("stratum+tcp://new.example:4444".into()))
        );
        // pyasic style: a whole URL.
        assert_eq!(
            with(Some("stratum+tcp://new.example:5555"), None),
            Ok(Some("stratum+tcp://new.example:5555".into()))
        );
        // A host alone keeps the port; a port alone keeps the host.
        assert_eq!(
            with(Some("new.example"), None),
            Ok(Some("stratum+tcp://new.example:3333".into()))
        );
        assert_eq!(
            with(None, Some(3334)),
            Ok(Some("stratum+tcp://old.example:3334".into()))
        );
        assert_eq!(
            with(Some("[::1]:7777"), None),
            Ok(Some("stratum+tcp://[::1]:7777".into()))
        );
        // Unchanged: nothing to do.
        assert_eq!(with(Some("old.example"), Some(3333)), Ok(None));
        for bad in ["", "host:port", "[::1", "stratum+tcp://:3333"] {
            assert!(with(Some(bad), None).is_err(), "{bad}");
        }
        let user = patched_pool(
            &cur,
            &PoolPatch {
                user: Some("other".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(user.user, "other");
        assert_eq!(user.password, "pw");
    }

    #[test]
    fn only_pages_from_this_network_may_read_across_origins() {
        for ok in [
            "http://192.168.1.20",
            "http://10.0.0.7:8080",
            "http://127.0.0.1:4200",
            "http://[fd00::1]:80",
            "http://169.254.3.4",
        ] {
            assert_eq!(allowed_origin(Some(ok)).as_deref(), Some(ok), "{ok}");
        }
        for no in [
            None,
            Some("https://evil.example"),
            Some("http://8.8.8.8"),
            Some("null"),
            Some("file://"),
            Some("http://[2001:db8::1]"),
            Some("http://192.168.1.20.evil.example"),
        ] {
            assert_eq!(allowed_origin(no), None, "{no:?}");
        }
    }

    #[test]
    fn the_page_names_hashwatt_and_what_pyasic_looks_for() {
        assert!(PAGE.contains("AxeOS"));
        assert!(PAGE.contains("hashwatt"));
    }
}
