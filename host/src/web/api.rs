//! The REST API `/api/v1`: everything the panel does, for scripts too.
//!
//! Reads come from the one [`Snapshot`](crate::state::Snapshot); changes go
//! through the one command path ([`Command`]), so the panel, scripts and
//! the cgminer API cannot disagree. Every route but setup and login needs a
//! session cookie or a bearer token; changes need the admin scope and, with
//! a cookie, the session's CSRF token. The OpenAPI document at
//! `/api/v1/openapi.json` is generated from these handlers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::stream::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::auth::{ADMIN, Auth, AuthError, Principal, Scope, TokenInfo};
use super::listener::Transport;
use crate::config::{PolicyEntry, PoolEntry};
use crate::control::{Command, CommandError, Handle};
use crate::state::Snapshot;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "hw_session";

/// Largest JSON body a route reads; configuration fits in far less.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// What the API handlers share.
pub struct Panel {
    /// The control plane.
    pub handle: Handle,
    /// Accounts, sessions and tokens.
    pub auth: Arc<Auth>,
    /// The latest snapshot as JSON, refreshed once a second and shared by
    /// every event stream (one serialisation however many clients).
    pub status: watch::Receiver<Arc<str>>,
    /// When this process started, UTC ms (the panel notices a restart).
    pub started_ms: i64,
    /// SHA-256 fingerprint of the panel's certificate, under TLS.
    pub fingerprint: Option<String>,
    /// Turns true at stop; event streams end with it.
    pub shutdown: watch::Receiver<bool>,
    /// `/metrics` without credentials.
    pub anonymous_metrics: bool,
}

/// Shared handler state.
pub type PanelState = Arc<Panel>;

/// The body of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words for the operator.
    pub error: String,
}

/// An error response: a status and a message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hashwatt\""),
            );
        }
        res
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let code = match e {
            CommandError::Invalid(_) | CommandError::BadArgument(_) => StatusCode::BAD_REQUEST,
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError(code, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let code = match e {
            AuthError::Denied(_) => StatusCode::UNAUTHORIZED,
            AuthError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuthError::State(_) => StatusCode::CONFLICT,
            AuthError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose every rejection is a `{"error"}` (400 malformed,
/// 413 too large, 415 not JSON) rather than axum's plain text.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    // A body of the wrong shape is as bad a request as one that is not
    // JSON at all: 400 either way, so clients need one rule.
    let code = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        c => c,
    };
    let message = match &e {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON (Content-Type: application/json)".to_string()
        }
        JsonRejection::BytesRejection(_) if code == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is larger than {MAX_JSON_BYTES} bytes")
        }
        _ => e.body_text(),
    };
    ApiError(code, message)
}

/// Anyone logged in, or holding a token of any scope.
pub struct Reader(pub Principal);

/// An administrator: admin scope and, with a session cookie, its CSRF
/// token in `X-CSRF-Token` (a page on another site cannot read it).
pub struct Admin(pub Principal);

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn principal(panel: &Panel, headers: &HeaderMap) -> ApiResult<Principal> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "Authorization must be `Bearer <token>`".into(),
                )
            })?;
        return panel.auth.bearer(token).ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "unknown or revoked API token".into(),
            )
        });
    }
    cookie(headers, SESSION_COOKIE)
        .and_then(|id| panel.auth.session(id))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "not logged in".into()))
}

impl FromRequestParts<PanelState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, panel: &PanelState) -> ApiResult<Self> {
        principal(panel, &parts.headers).map(Reader)
    }
}

impl FromRequestParts<PanelState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, panel: &PanelState) -> ApiResult<Self> {
        let p = principal(panel, &parts.headers)?;
        if p.scope != Scope::Admin {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "this token is read-only".into(),
            ));
        }
        if let Some(csrf) = &p.csrf
            && parts.method != Method::GET
        {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !super::auth::same(sent, csrf.as_bytes()) {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token".into(),
                ));
            }
        }
        Ok(Admin(p))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hashwatt",
        description = "The appliance's REST API: status, pools, plugins, energy policies, accounts. \
            Units are in field names; null means unknown.",
    ),
    modifiers(&Security),
    tags((name = "hashwatt"))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            utoipa::openapi::security::SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build(),
            ),
        );
        components.add_security_scheme(
            "session",
            utoipa::openapi::security::SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                SESSION_COOKIE,
            ))),
        );
    }
}

/// The `/api/v1` routes and their OpenAPI document.
pub fn router(panel: PanelState) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_setup, post_setup))
        .routes(routes!(get_session, login, logout))
        .routes(routes!(change_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(status))
        .routes(routes!(events))
        .routes(routes!(history))
        .routes(routes!(logs))
        .routes(routes!(list_pools, add_pool))
        .routes(routes!(edit_pool, remove_pool))
        .routes(routes!(move_pool))
        .routes(routes!(test_pool))
        .routes(
            routes!(list_plugins, upload_plugin).layer(axum::extract::DefaultBodyLimit::max(
                usize::try_from(crate::plugin::archive::MAX_PACKAGE_BYTES).unwrap_or(usize::MAX),
            )),
        )
        .routes(routes!(remove_plugin))
        .routes(routes!(list_policies, add_policy))
        .routes(routes!(configure_policy, remove_policy))
        .routes(routes!(enable_policy))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(set_signal))
        .routes(routes!(energy_report))
        .routes(
            routes!(energy_backtest).layer(axum::extract::DefaultBodyLimit::max(
                crate::policy::backtest::MAX_REQUEST_BYTES,
            )),
        )
        .routes(routes!(system))
        .routes(routes!(restart))
        .routes(routes!(reboot))
        .routes(
            routes!(update_status, upload_update).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(panel)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------- accounts

/// Whether the admin password still has to be set.
#[derive(Serialize, ToSchema)]
pub struct SetupState {
    /// No admin password yet: the panel shows the setup form.
    pub needed: bool,
    /// When this process started, UTC ms.
    pub started_ms: i64,
}

/// First start: the setup token from the console and the new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token printed on the console and in the log.
    pub token: String,
    /// The admin password (at least 10 characters).
    pub password: String,
}

/// A logged-in session as the panel needs it.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// Always `admin`.
    pub user: &'static str,
    /// Send this back in `X-CSRF-Token` on every change.
    pub csrf: String,
    /// What the session may do.
    pub scope: Scope,
}

/// Logging in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// `admin`.
    pub user: String,
    /// The password.
    pub password: String,
}

fn session_cookie(id: &str, tls: bool, max_age: Option<u64>) -> HeaderValue {
    let mut v = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        v.push_str(&format!("; Max-Age={age}"));
    }
    if tls {
        v.push_str("; Secure");
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn is_tls(t: Option<axum::Extension<Transport>>) -> bool {
    t.is_some_and(|axum::Extension(t)| t.tls)
}

fn issued_response(issued: super::auth::Issued, tls: bool) -> Response {
    let body = SessionInfo {
        user: ADMIN,
        csrf: issued.csrf,
        scope: Scope::Admin,
    };
    let mut res = Json(body).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&issued.id, tls, None));
    res
}

fn client_ip(info: Option<axum::Extension<ConnectInfo<SocketAddr>>>) -> std::net::IpAddr {
    info.map_or(
        std::net::IpAddr::from([0, 0, 0, 0]),
        |axum::Extension(ConnectInfo(a))| a.ip(),
    )
}

#[utoipa::path(get, path = "/api/v1/setup", responses((status = 200, body = SetupState)))]
async fn get_setup(State(p): State<PanelState>) -> Json<SetupState> {
    Json(SetupState {
        needed: p.auth.needs_setup(),
        started_ms: p.started_ms,
    })
}

#[utoipa::path(post, path = "/api/v1/setup", request_body = SetupRequest,
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn post_setup(
    State(p): State<PanelState>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    transport: Option<axum::Extension<Transport>>,
    Body(req): Body<SetupRequest>,
) -> ApiResult<Response> {
    p.auth.attempt(client_ip(info), Instant::now())?;
    let issued = p.auth.setup(&req.token, &req.password)?;
    Ok(issued_response(issued, is_tls(transport)))
}

#[utoipa::path(get, path = "/api/v1/session", responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody)))]
async fn get_session(Reader(who): Reader) -> ApiResult<Json<SessionInfo>> {
    let csrf = who
        .csrf
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "not logged in".into()))?;
    Ok(Json(SessionInfo {
        user: ADMIN,
        csrf,
        scope: who.scope,
    }))
}

#[utoipa::path(post, path = "/api/v1/session", request_body = LoginRequest,
    responses((status = 200, body = SessionInfo), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(p): State<PanelState>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    transport: Option<axum::Extension<Transport>>,
    Body(req): Body<LoginRequest>,
) -> Response {
    let ip = client_ip(info);
    if let Err(AuthError::Limited(secs)) = p.auth.attempt(ip, Instant::now()) {
        tracing::warn!(client = %ip, "login rate limit reached");
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": format!("too many login attempts; try again in {secs} s"),
                "retry_after_secs": secs,
            })),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    match p.auth.login(&req.user, &req.password) {
        Ok(issued) => issued_response(issued, is_tls(transport)),
        Err(e) => {
            tracing::info!(client = %ip, "login refused: {e}");
            ApiError::from(e).into_response()
        }
    }
}

#[utoipa::path(delete, path = "/api/v1/session", responses((status = 204)))]
async fn logout(
    State(p): State<PanelState>,
    transport: Option<axum::Extension<Transport>>,
    headers: HeaderMap,
) -> Response {
    // No CSRF check: ending a session is harmless, and SameSite=Strict
    // keeps other sites from sending the cookie at all.
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        p.auth.logout(id);
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", is_tls(transport), Some(0)),
    );
    res
}

/// Changing the admin password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current: String,
    /// The new one (at least 10 characters).
    pub new: String,
}

#[utoipa::path(post, path = "/api/v1/account/password", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn change_password(
    State(p): State<PanelState>,
    Admin(who): Admin,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Body(req): Body<PasswordChange>,
) -> ApiResult<StatusCode> {
    p.auth.attempt(client_ip(info), Instant::now())?;
    p.auth
        .change_password(&req.current, &req.new, who.session.as_deref())
        .map_err(|e| match e {
            AuthError::Denied(m) => ApiError(StatusCode::FORBIDDEN, m.into()),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A label ("home assistant").
    pub name: String,
    /// `read` or `admin`.
    pub scope: Scope,
}

/// A token just made: its secret is shown this once.
#[derive(Serialize, ToSchema)]
pub struct NewToken {
    /// The token as listed.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret for `Authorization: Bearer …`.
    pub token: String,
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = [TokenInfo])))]
async fn list_tokens(State(p): State<PanelState>, _: Admin) -> Json<Vec<TokenInfo>> {
    Json(p.auth.tokens())
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = TokenRequest,
    responses((status = 201, body = NewToken), (status = 400, body = ErrorBody)))]
async fn create_token(
    State(p): State<PanelState>,
    _: Admin,
    Body(req): Body<TokenRequest>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let (info, token) = p.auth.create_token(&req.name, req.scope, now_ms())?;
    Ok((StatusCode::CREATED, Json(NewToken { info, token })))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(p): State<PanelState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if p.auth.revoke(&id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no token with id {id:?}"),
        ))
    }
}

// -------------------------------------------------------------------- live

#[utoipa::path(get, path = "/api/v1/status", responses((status = 200, body = Snapshot)))]
async fn status(State(p): State<PanelState>, _: Reader) -> Json<Snapshot> {
    Json(p.handle.snapshot())
}

#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, description = "text/event-stream: `status` events (the snapshot) once a second, `log` events as lines are logged", content_type = "text/event-stream")))]
async fn events(
    State(p): State<PanelState>,
    _: Reader,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let status = tokio_stream::wrappers::WatchStream::new(p.status.clone())
        .map(|json| Event::default().event("status").data(&*json));
    let logs = tokio_stream::wrappers::BroadcastStream::new(crate::logtail::subscribe())
        .filter_map(|line| async move { line.ok() })
        .map(|line| {
            Event::default()
                .event("log")
                .json_data(line)
                .unwrap_or_else(|_| Event::default().comment("unserialisable log line"))
        });
    let mut shutdown = p.shutdown.clone();
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let stream = futures_util::stream::select(status, logs)
        .map(Ok)
        .take_until(Box::pin(stop));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[utoipa::path(get, path = "/api/v1/history", responses((status = 200, body = crate::history::HistoryView)))]
async fn history(State(p): State<PanelState>, _: Reader) -> Json<crate::history::HistoryView> {
    Json(p.handle.history())
}

/// How many log lines.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// At most this many of the newest lines (≤ 1000).
    pub lines: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/logs", params(LogQuery),
    responses((status = 200, body = [crate::logtail::LogLine])))]
async fn logs(
    _: Reader,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<crate::logtail::LogLine>>> {
    let Query(q) = q.map_err(|e| ApiError::bad(e.body_text()))?;
    let n = q.lines.unwrap_or(200);
    if n > crate::logtail::KEPT {
        return Err(ApiError::bad(format!(
            "lines must be at most {}, not {n}",
            crate::logtail::KEPT
        )));
    }
    Ok(Json(crate::logtail::last(n)))
}

// ------------------------------------------------------------------- pools

/// A configured pool (its password is never shown).
#[derive(Serialize, ToSchema)]
pub struct PoolView {
    /// Stable id for edits.
    pub id: u64,
    /// `scheme://host:port`.
    pub url: String,
    /// Worker name.
    pub user: String,
    /// Whether a password is stored.
    pub has_password: bool,
    /// The plugin speaking its protocol, if not the built-in one.
    pub plugin: Option<String>,
    /// Mined on when healthy and first.
    pub enabled: bool,
    /// Settings handed to the plugin.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Live state and counters.
    pub status: Option<crate::status::PoolStatus>,
}

fn toml_to_json(t: &toml::Table) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn json_to_toml(v: Option<Value>, what: &str) -> ApiResult<toml::Table> {
    match v {
        None | Some(Value::Null) => Ok(toml::Table::new()),
        Some(v @ Value::Object(_)) => serde_json::from_value::<toml::Table>(v)
            .map_err(|e| ApiError::bad(format!("{what}: {e} (null values are not allowed)"))),
        Some(_) => Err(ApiError::bad(format!("{what} must be an object"))),
    }
}

#[utoipa::path(get, path = "/api/v1/pools", responses((status = 200, body = [PoolView])))]
async fn list_pools(State(p): State<PanelState>, _: Reader) -> Json<Vec<PoolView>> {
    let snap = p.handle.snapshot();
    let pools = p.handle.pools().await;
    Json(
        pools
            .into_iter()
            .map(|(id, e)| PoolView {
                id,
                url: e.url.url.clone(),
                user: e.user.clone(),
                has_password: !e.password.is_empty(),
                plugin: e.plugin.clone(),
                enabled: e.enabled,
                settings: toml_to_json(&e.settings),
                status: snap.shares.pools.iter().find(|s| s.id == id).cloned(),
            })
            .collect(),
    )
}

/// A pool to add or the new settings of one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    /// `scheme://host:port[/path]`.
    pub url: String,
    /// Worker name.
    pub user: String,
    /// Password; when editing, absent keeps the stored one.
    pub password: Option<String>,
    /// An installed plugin; null for the one the scheme selects.
    pub plugin: Option<String>,
    /// Mine on it (default true).
    pub enabled: Option<bool>,
    /// Settings for the plugin.
    #[schema(value_type = Object)]
    pub settings: Option<Value>,
    /// Where in priority order, 0-based (adding only; default last).
    pub position: Option<usize>,
}

impl PoolRequest {
    fn entry(self, keep_password: Option<&str>) -> ApiResult<PoolEntry> {
        let url = self
            .url
            .parse()
            .map_err(|e| ApiError::bad(format!("url: {e}")))?;
        Ok(PoolEntry {
            url,
            user: self.user,
            enabled: self.enabled.unwrap_or(true),
            password: self
                .password
                .or_else(|| keep_password.map(str::to_string))
                .unwrap_or_default(),
            plugin: self.plugin.filter(|s| !s.is_empty()),
            settings: json_to_toml(self.settings, "settings")?,
        })
    }
}

/// The id of something just made.
#[derive(Serialize, ToSchema)]
pub struct Created {
    /// Its id.
    pub id: u64,
}

#[utoipa::path(post, path = "/api/v1/pools", request_body = PoolRequest,
    responses((status = 201, body = Created), (status = 400, body = ErrorBody)))]
async fn add_pool(
    State(p): State<PanelState>,
    _: Admin,
    Body(req): Body<PoolRequest>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let position = req.position;
    let pool = req.entry(None)?;
    let before: std::collections::HashSet<u64> = p
        .handle
        .pools()
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    p.handle
        .execute(Command::AddPool { pool, position })
        .await?;
    let id = p
        .handle
        .pools()
        .await
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| !before.contains(id))
        .ok_or_else(|| {
            ApiError(
                StatusCode::CONFLICT,
                "the pool list changed meanwhile".into(),
            )
        })?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

async fn stored_pool(p: &Panel, id: u64) -> ApiResult<PoolEntry> {
    p.handle
        .pools()
        .await
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, e)| e)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no pool with id {id}")))
}

#[utoipa::path(put, path = "/api/v1/pools/{id}", request_body = PoolRequest, params(("id" = u64, Path)),
    responses((status = 200, body = Value), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn edit_pool(
    State(p): State<PanelState>,
    _: Admin,
    Path(id): Path<u64>,
    Body(req): Body<PoolRequest>,
) -> ApiResult<Json<Value>> {
    if req.position.is_some() {
        return Err(ApiError::bad(
            "position: use POST /api/v1/pools/{id}/move to reorder",
        ));
    }
    let old = stored_pool(&p, id).await?;
    let pool = req.entry(Some(&old.password))?;
    let msg = p.handle.execute(Command::EditPool { id, pool }).await?;
    Ok(Json(json!({ "message": msg })))
}

#[utoipa::path(delete, path = "/api/v1/pools/{id}", params(("id" = u64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_pool(
    State(p): State<PanelState>,
    _: Admin,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    p.handle.execute(Command::RemovePool { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new place in priority order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// 0-based; past the end means last.
    pub position: usize,
}

#[utoipa::path(post, path = "/api/v1/pools/{id}/move", request_body = MoveRequest, params(("id" = u64, Path)),
    responses((status = 200, body = Value), (status = 404, body = ErrorBody)))]
async fn move_pool(
    State(p): State<PanelState>,
    _: Admin,
    Path(id): Path<u64>,
    Body(req): Body<MoveRequest>,
) -> ApiResult<Json<Value>> {
    let msg = p
        .handle
        .execute(Command::MovePool {
            id,
            position: req.position,
        })
        .await?;
    Ok(Json(json!({ "message": msg })))
}

/// A pool to try once: the fields of a pool, or `id` to reuse a stored
/// pool's password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolTestRequest {
    /// A configured pool whose stored password is used when none is given.
    pub id: Option<u64>,
    /// `scheme://host:port[/path]`.
    pub url: String,
    /// Worker name.
    pub user: String,
    /// Password (absent: the stored one of `id`, or none).
    pub password: Option<String>,
    /// An installed plugin; null for the one the scheme selects.
    pub plugin: Option<String>,
    /// Settings for the plugin.
    #[schema(value_type = Object)]
    pub settings: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/pools/test", request_body = PoolTestRequest,
    responses((status = 200, body = crate::pool::probe::PoolTest), (status = 400, body = ErrorBody)))]
async fn test_pool(
    State(p): State<PanelState>,
    _: Admin,
    Body(req): Body<PoolTestRequest>,
) -> ApiResult<Json<crate::pool::probe::PoolTest>> {
    let keep = match req.id {
        Some(id) => Some(stored_pool(&p, id).await?.password),
        None => None,
    };
    let pool = PoolRequest {
        url: req.url,
        user: req.user,
        password: req.password,
        plugin: req.plugin,
        enabled: Some(true),
        settings: req.settings,
        position: None,
    }
    .entry(keep.as_deref())?;
    Ok(Json(p.handle.test_pool(pool).await))
}

#[utoipa::path(get, path = "/api/v1/plugins", responses((status = 200, body = [crate::plugin::info::PluginInfo])))]
async fn list_plugins(
    State(p): State<PanelState>,
    _: Reader,
) -> Json<Vec<crate::plugin::info::PluginInfo>> {
    Json(p.handle.plugins().await)
}

/// File uploads (packages, bundles) come as raw bytes, nothing else.
fn require_octet_stream(headers: &HeaderMap, what: &str) -> ApiResult<()> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/octet-stream") {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the {what} as application/octet-stream"),
        ))
    }
}

/// `POST /api/v1/plugins`: the body is a `.hwpkg` file.
#[utoipa::path(post, path = "/api/v1/plugins",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a package made by `hashwatt plugin pack`"),
    responses((status = 201, body = Value), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload_plugin(
    State(p): State<PanelState>,
    _: Admin,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_octet_stream(&headers, "package")?;
    let bytes = body.map_err(|e| {
        ApiError(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "a package is at most {} bytes",
                    crate::plugin::archive::MAX_PACKAGE_BYTES
                )
            } else {
                e.body_text()
            },
        )
    })?;
    let message = p
        .handle
        .execute(Command::InstallPluginPackage {
            bytes: bytes.to_vec(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": message }))))
}

#[utoipa::path(delete, path = "/api/v1/plugins/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn remove_plugin(
    State(p): State<PanelState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    p.handle.execute(Command::RemovePlugin { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- policies

/// A configured energy policy with its verdict.
#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    /// Its name.
    pub name: String,
    /// The plugin that decides.
    pub plugin: String,
    /// Takes part in arbitration.
    pub enabled: bool,
    /// What applies when the plugin fails: `pause` or `run`.
    pub fail_safe: String,
    /// Its settings.
    #[schema(value_type = Object)]
    pub config: Value,
    /// What it decides now and why.
    #[schema(value_type = Object)]
    pub status: Value,
}

#[utoipa::path(get, path = "/api/v1/policies", responses((status = 200, body = [PolicyView])))]
async fn list_policies(State(p): State<PanelState>, _: Reader) -> Json<Vec<PolicyView>> {
    let snap = p.handle.snapshot();
    let config = p.handle.config();
    Json(
        config
            .policies
            .iter()
            .map(|e| PolicyView {
                name: e.name.clone(),
                plugin: e.plugin.clone(),
                enabled: e.enabled,
                fail_safe: serde_json::to_value(e.fail_safe)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                config: toml_to_json(&e.config),
                status: snap
                    .energy
                    .policies
                    .iter()
                    .find(|s| s.name == e.name)
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or(Value::Null),
            })
            .collect(),
    )
}

/// A policy to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// A unique name.
    pub name: String,
    /// A built-in or installed policy plugin.
    pub plugin: String,
    /// Take part at once (default true).
    pub enabled: Option<bool>,
    /// `pause` (default) or `run` when the plugin fails.
    pub fail_safe: Option<String>,
    /// Its settings.
    #[schema(value_type = Object)]
    pub config: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/policies", request_body = PolicyRequest,
    responses((status = 201, body = Value), (status = 400, body = ErrorBody)))]
async fn add_policy(
    State(p): State<PanelState>,
    _: Admin,
    Body(req): Body<PolicyRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut table = toml::Table::new();
    table.insert("name".into(), toml::Value::String(req.name));
    table.insert("plugin".into(), toml::Value::String(req.plugin));
    if let Some(e) = req.enabled {
        table.insert("enabled".into(), toml::Value::Boolean(e));
    }
    if let Some(f) = req.fail_safe {
        table.insert("fail_safe".into(), toml::Value::String(f));
    }
    table.insert(
        "config".into(),
        toml::Value::Table(json_to_toml(req.config, "config")?),
    );
    let entry: PolicyEntry = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ApiError::bad(e.message().to_string()))?;
    let msg = p.handle.execute(Command::AddPolicy(entry)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": msg }))))
}

/// New settings for a policy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy's whole settings table.
    #[schema(value_type = Object)]
    pub config: Value,
}

#[utoipa::path(put, path = "/api/v1/policies/{name}", request_body = PolicyConfig, params(("name" = String, Path)),
    responses((status = 200, body = Value), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn configure_policy(
    State(p): State<PanelState>,
    _: Admin,
    Path(name): Path<String>,
    Body(req): Body<PolicyConfig>,
) -> ApiResult<Json<Value>> {
    let config = json_to_toml(Some(req.config), "config")?;
    let msg = p
        .handle
        .execute(Command::ConfigurePolicy { name, config })
        .await?;
    Ok(Json(json!({ "message": msg })))
}

#[utoipa::path(delete, path = "/api/v1/policies/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_policy(
    State(p): State<PanelState>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    p.handle.execute(Command::RemovePolicy { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// On or off.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    /// Take part or not.
    pub enabled: bool,
}

#[utoipa::path(post, path = "/api/v1/policies/{name}/enabled", request_body = Enabled, params(("name" = String, Path)),
    responses((status = 200, body = Value), (status = 404, body = ErrorBody)))]
async fn enable_policy(
    State(p): State<PanelState>,
    _: Admin,
    Path(name): Path<String>,
    Body(req): Body<Enabled>,
) -> ApiResult<Json<Value>> {
    let msg = p
        .handle
        .execute(Command::SetPolicyEnabled {
            name,
            enabled: req.enabled,
        })
        .await?;
    Ok(Json(json!({ "message": msg })))
}

// ------------------------------------------------------------------ mining

/// A manual pause.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// 1..=10080 minutes; null pauses until resumed.
    pub minutes: Option<u32>,
}

/// The decision after a change.
#[derive(Serialize, ToSchema)]
pub struct DecisionReply {
    /// One line: what applies and why.
    pub decision: String,
}

#[utoipa::path(post, path = "/api/v1/mining/pause", request_body = PauseRequest,
    responses((status = 200, body = DecisionReply), (status = 400, body = ErrorBody)))]
async fn pause(
    State(p): State<PanelState>,
    _: Admin,
    Body(req): Body<PauseRequest>,
) -> ApiResult<Json<DecisionReply>> {
    let decision = p
        .handle
        .execute(Command::Pause {
            minutes: req.minutes,
        })
        .await?;
    Ok(Json(DecisionReply { decision }))
}

#[utoipa::path(post, path = "/api/v1/mining/resume", responses((status = 200, body = DecisionReply)))]
async fn resume(State(p): State<PanelState>, _: Admin) -> ApiResult<Json<DecisionReply>> {
    let decision = p.handle.execute(Command::Resume).await?;
    Ok(Json(DecisionReply { decision }))
}

/// A signal's new value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalValue {
    /// A finite number in the signal's unit.
    pub value: f64,
}

#[utoipa::path(put, path = "/api/v1/signals/{name}", request_body = SignalValue, params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_signal(
    State(p): State<PanelState>,
    _: Admin,
    Path(name): Path<String>,
    Body(req): Body<SignalValue>,
) -> ApiResult<StatusCode> {
    p.handle
        .execute(Command::SetSignal {
            name,
            value: req.value,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which report.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// `day` (default) or `month`.
    pub period: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/energy/report", params(ReportQuery),
    responses((status = 200, body = Value), (status = 400, body = ErrorBody)))]
async fn energy_report(
    State(p): State<PanelState>,
    _: Reader,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::bad(e.body_text()))?;
    let period = q
        .period
        .as_deref()
        .unwrap_or("day")
        .parse::<hashwatt_energy::Period>()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let report = p.handle.energy().report(period);
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"hashwatt-energy.csv\"",
                ),
            ],
            report.to_csv(),
        )
            .into_response()),
        other => Err(ApiError::bad(format!(
            "format must be json or csv, not {other:?}"
        ))),
    }
}

#[utoipa::path(post, path = "/api/v1/energy/backtest", request_body = crate::policy::backtest::BacktestRequest,
    responses((status = 200, body = crate::policy::backtest::BacktestSummary), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn energy_backtest(
    State(p): State<PanelState>,
    _: Admin,
    req: Result<Json<crate::policy::backtest::BacktestRequest>, JsonRejection>,
) -> ApiResult<Json<crate::policy::backtest::BacktestSummary>> {
    let Json(req) = req.map_err(|e| match e {
        JsonRejection::BytesRejection(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than {} MiB: backtest a shorter series",
                    crate::policy::backtest::MAX_REQUEST_BYTES >> 20
                ),
            )
        }
        e => json_rejection(e),
    })?;
    Ok(Json(p.handle.backtest(req).await?))
}

// ------------------------------------------------------------------ system

/// A device in the system overview.
#[derive(Serialize, ToSchema)]
pub struct SystemDevice {
    /// Its name.
    pub name: String,
    /// `cpu`, `sim` or `asic`.
    pub kind: String,
    /// Model or backend.
    pub model: String,
}

/// What the System page shows.
#[derive(Serialize, ToSchema)]
pub struct SystemInfo {
    /// Host version.
    pub version: &'static str,
    /// The hashing backend picked by calibration (or configured).
    pub backend: String,
    /// Hashing threads.
    pub threads: usize,
    /// Devices.
    pub devices: Vec<SystemDevice>,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// This machine's host name.
    pub hostname: Option<String>,
    /// Whether the panel is served over HTTPS.
    pub tls: bool,
    /// The panel certificate's SHA-256 fingerprint.
    pub cert_fingerprint_sha256: Option<String>,
    /// The configuration file, if any.
    pub config_path: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/system", responses((status = 200, body = SystemInfo)))]
async fn system(State(p): State<PanelState>, _: Reader) -> Json<SystemInfo> {
    let snap = p.handle.snapshot();
    let config = p.handle.config();
    let devices: Vec<SystemDevice> = snap
        .devices
        .iter()
        .map(|d| SystemDevice {
            name: d.info.name.clone(),
            kind: serde_json::to_value(d.info.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            model: d.info.model.clone(),
        })
        .collect();
    let threads = snap.devices.iter().map(|d| d.telemetry.units.len()).sum();
    Json(SystemInfo {
        version: snap.version,
        backend: snap
            .devices
            .first()
            .map(|d| d.info.model.clone())
            .unwrap_or_else(|| config.backend.clone()),
        threads,
        devices,
        uptime_secs: snap.uptime_secs,
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string()),
        tls: p.fingerprint.is_some(),
        cert_fingerprint_sha256: p.fingerprint.clone(),
        config_path: p.handle.config_path().map(|p| p.display().to_string()),
    })
}

#[utoipa::path(post, path = "/api/v1/system/restart", responses((status = 202, body = Value)))]
async fn restart(State(p): State<PanelState>, _: Admin) -> ApiResult<(StatusCode, Json<Value>)> {
    let msg = p.handle.execute(Command::Restart).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": msg }))))
}

#[utoipa::path(post, path = "/api/v1/system/reboot",
    responses((status = 202, body = Value), (status = 422, body = ErrorBody)))]
async fn reboot(State(p): State<PanelState>, _: Admin) -> ApiResult<(StatusCode, Json<Value>)> {
    let msg = p.handle.execute(Command::Reboot).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": msg }))))
}

/// Largest update bundle accepted (an appliance image is tens of MiB).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

#[utoipa::path(get, path = "/api/v1/system/update",
    responses((status = 200, body = crate::update::Status), (status = 422, body = ErrorBody)))]
async fn update_status(
    State(p): State<PanelState>,
    _: Reader,
) -> ApiResult<Json<crate::update::Status>> {
    let state_dir = p.handle.config().state_dir;
    let status = tokio::task::spawn_blocking(move || {
        crate::update::Rauc::default().status_with_history(&state_dir)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(Json(status))
}

#[utoipa::path(post, path = "/api/v1/system/update",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Value), (status = 400, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload_update(
    State(p): State<PanelState>,
    _: Admin,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    use tokio::io::AsyncWriteExt as _;
    require_octet_stream(&headers, "bundle")?;
    // Streamed to the data partition, never held in memory.
    let dir = p.handle.config().state_dir.join("update");
    let internal = |e: std::io::Error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let path = dir.join(format!("upload-{}.raucb", hashwatt_state::unique_suffix()));
    let result = async {
        let mut file = tokio::fs::File::create(&path).await.map_err(internal)?;
        let mut stream = body.into_data_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
            written += chunk.len() as u64;
            if written > MAX_BUNDLE_BYTES {
                return Err(ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a bundle is at most {MAX_BUNDLE_BYTES} bytes"),
                ));
            }
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.sync_all().await.map_err(internal)?;
        drop(file);
        let message = p
            .handle
            .execute(Command::InstallUpdate {
                bundle: path.clone(),
            })
            .await?;
        Ok((StatusCode::CREATED, Json(json!({ "message": message }))))
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}

/// `/metrics`: Prometheus text, for a token or session unless the operator
/// made it anonymous.
pub async fn metrics(State(p): State<PanelState>, headers: HeaderMap) -> ApiResult<Response> {
    if !p.anonymous_metrics {
        principal(&p, &headers)?;
    }
    let snap = p.handle.snapshot();
    let body = super::metrics::render(&snap, &super::metrics::MetricsExtra::from_handle(&p.handle));
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], body).into_response())
}
