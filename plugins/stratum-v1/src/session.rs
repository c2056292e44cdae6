//! The Stratum V1 client state machine.
//!
//! Sans-IO: the host feeds events (connection opened, bytes received, time,
//! shares found, connection closed) and gets back the [`Action`]s to
//! perform. Nothing here blocks, allocates sockets or reads a clock, so the
//! same code runs inside the wasm component, in native tests and in fuzzers.
//!
//! Every call that carries the time ends, while a request is outstanding,
//! with an [`Action::WakeAt`] for the earliest deadline (see
//! [`Session::next_deadline`]): the host ticks the session only when asked,
//! so the session asks for every timeout it keeps.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};
use thiserror::Error;

use crate::framing::LineBuffer;
use crate::jsonrpc::{self, Message};
use crate::settings::{Settings, SettingsError};
use crate::target;
use crate::types::{
    Action, ExtendedWork, Job, LogLevel, PoolConfig, PoolMachine, ReconnectRequest, SessionInfo,
    Share, ShareOutcome, ShareResult, WorkKind,
};
use hashwatt_pool_sdk::hex as sdk_hex;

/// The URL scheme this plugin claims (WIT `plugin-info.url-schemes`).
pub const URL_SCHEME: &str = "stratum+tcp";
/// Version bits this client asks to roll (BIP 320 general-purpose bits).
pub const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;
/// A handshake request (configure, subscribe, authorize) unanswered this
/// long fails the session.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// A submitted share unanswered this long is reported rejected.
pub const SHARE_TIMEOUT_MS: u64 = 60_000;
/// Most merkle branches a job may carry (WIT `extended-work` limit).
pub const MAX_MERKLE_BRANCHES: usize = 32;
/// Longest extranonce1 accepted from a pool, in bytes.
pub const MAX_EXTRANONCE1_LEN: usize = 32;
/// Reason reported for a share whose answer never came.
pub const NO_RESPONSE: &str = "no response from pool";
/// Shares held while `mining.authorize` is unanswered (pools such as ckpool
/// silently drop submits from a worker not yet authorized).
pub const MAX_HELD_SHARES: usize = 64;
/// Recent jobs whose version is remembered, to check rolled shares against
/// a mask the pool changed with `mining.set_version_mask`.
const KEPT_JOB_VERSIONS: usize = 16;

/// A pool message this client cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// Framing failed (over-long line, bad UTF-8).
    #[error(transparent)]
    Framing(#[from] crate::framing::FramingError),
    /// The line is not acceptable JSON-RPC.
    #[error(transparent)]
    JsonRpc(#[from] jsonrpc::JsonRpcError),
    /// A message had the wrong shape.
    #[error("invalid {method}: {reason}")]
    InvalidMessage {
        /// Method or reply concerned.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl SessionError {
    fn invalid(method: &'static str, reason: impl Into<String>) -> Self {
        SessionError::InvalidMessage {
            method,
            reason: reason.into(),
        }
    }
}

/// What an outstanding request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Configure,
    Subscribe,
    Authorize,
    ExtranonceSubscribe,
    SuggestDifficulty,
    Submit { share_id: u64 },
}

impl RequestKind {
    fn name(self) -> &'static str {
        match self {
            RequestKind::Configure => "mining.configure",
            RequestKind::Subscribe => "mining.subscribe",
            RequestKind::Authorize => "mining.authorize",
            RequestKind::ExtranonceSubscribe => "mining.extranonce.subscribe",
            RequestKind::SuggestDifficulty => "mining.suggest_difficulty",
            RequestKind::Submit { .. } => "mining.submit",
        }
    }

    /// How long an answer may take; `None` for requests that many pools
    /// never answer and whose silence changes nothing (a late or missing
    /// reply to `mining.suggest_difficulty` is simply dropped).
    fn timeout_ms(self) -> Option<u64> {
        match self {
            RequestKind::Submit { .. } => Some(SHARE_TIMEOUT_MS),
            RequestKind::SuggestDifficulty => None,
            _ => Some(HANDSHAKE_TIMEOUT_MS),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: RequestKind,
    sent_ms: u64,
}

/// Connection phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection (before the first `connected`, after `disconnected`).
    Offline,
    /// Connected and working.
    Online,
    /// A `fail` was emitted; input is ignored until the next connection.
    Failed,
}

/// Per-connection extranonce assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extranonce {
    extranonce1: Vec<u8>,
    extranonce2_size: u8,
}

/// One Stratum V1 pool session, kept across reconnects.
#[derive(Debug, Clone)]
pub struct Session {
    config: PoolConfig,
    /// `config.settings` parsed; an error fails every connection (the host
    /// should have refused the settings through `validate-settings`).
    settings: Result<Settings, SettingsError>,
    phase: Phase,
    lines: LineBuffer,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    now_ms: u64,
    /// Subscription id of the last successful subscribe (survives reconnects).
    subscription_id: Option<String>,
    /// Whether the current subscribe asked to resume `subscription_id`.
    resuming: bool,
    extranonce: Option<Extranonce>,
    version_mask: u32,
    difficulty_set: bool,
    authorized: bool,
    /// Shares found before the authorize reply, submitted once it comes.
    held: Vec<Share>,
    /// The next job must replace all others (the extranonce or version
    /// mask changed, so older jobs' shares would be rejected).
    reset_work: bool,
    /// A `mining.notify` that came before the subscribe reply.
    early_notify: Option<Vec<Value>>,
    /// (job id, version) of recent jobs.
    job_versions: VecDeque<(String, u32)>,
}

impl Session {
    /// A session for the configured pool; no I/O happens until `connected`.
    pub fn new(config: PoolConfig) -> Self {
        Session {
            settings: Settings::parse(&config.settings),
            config,
            phase: Phase::Offline,
            lines: LineBuffer::new(),
            next_id: 1,
            pending: BTreeMap::new(),
            now_ms: 0,
            subscription_id: None,
            resuming: false,
            extranonce: None,
            version_mask: 0,
            difficulty_set: false,
            authorized: false,
            held: Vec::new(),
            reset_work: false,
            early_notify: None,
            job_versions: VecDeque::new(),
        }
    }

    /// The configuration this session was created with.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The subscription id a reconnect will try to resume, if any.
    pub fn subscription_id(&self) -> Option<&str> {
        self.subscription_id.as_deref()
    }

    /// Negotiated version-rolling mask (0 when not negotiated).
    pub fn version_mask(&self) -> u32 {
        self.version_mask
    }

    /// Whether the pool accepted `mining.authorize` on this connection.
    pub fn is_authorized(&self) -> bool {
        self.authorized
    }

    /// When the session next needs a `tick`: the earliest deadline of its
    /// outstanding requests (handshake and share timeouts; shares held for
    /// the authorize reply end with the authorize timeout). `None` when
    /// nothing is timed, e.g. offline or with every request answered.
    /// Calls that carry the time end with an [`Action::WakeAt`] for it.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.phase != Phase::Online {
            return None;
        }
        self.pending
            .values()
            .filter_map(|p| p.kind.timeout_ms().map(|t| p.sent_ms.saturating_add(t)))
            .min()
    }

    /// Checks a pool's settings JSON without creating a session (WIT
    /// `plugin-info.validate-settings`).
    pub fn validate_settings(settings: &str) -> Result<(), SettingsError> {
        Settings::parse(settings).map(drop)
    }

    /// Asks for a tick at [`Self::next_deadline`], if there is one.
    fn wake(&self, out: &mut Vec<Action>) {
        if let Some(at) = self.next_deadline() {
            out.push(Action::WakeAt(at));
        }
    }

    /// A new connection is open: reset connection state, send the handshake.
    pub fn connected(&mut self, now_ms: u64) -> Vec<Action> {
        self.now_ms = now_ms;
        self.phase = Phase::Online;
        self.lines.clear();
        self.pending.clear();
        self.extranonce = None;
        self.version_mask = 0;
        self.difficulty_set = false;
        self.authorized = false;
        self.held.clear();
        self.reset_work = false;
        self.early_notify = None;
        self.job_versions.clear();
        let mut out = Vec::new();
        let suggest = match &self.settings {
            Ok(settings) => settings.suggest_difficulty_param(),
            Err(e) => {
                let reason = format!("invalid settings: {e}");
                self.fail(&mut out, reason);
                return out;
            }
        };
        // Only a device that can roll may offer to (BIP 310).
        if self.config.version_rolling {
            let params = json!([
                ["version-rolling"],
                {
                    "version-rolling.mask": format!("{VERSION_ROLLING_MASK:08x}"),
                    "version-rolling.min-bit-count": 2
                }
            ]);
            self.request(
                &mut out,
                RequestKind::Configure,
                "mining.configure",
                &params,
            );
        }
        let params = match &self.subscription_id {
            Some(sid) => json!([self.config.user_agent, sid]),
            None => json!([self.config.user_agent]),
        };
        self.resuming = self.subscription_id.is_some();
        let subscribed = self.request(
            &mut out,
            RequestKind::Subscribe,
            "mining.subscribe",
            &params,
        );
        // Right after subscribe, as cgminer and the Bitaxe firmware send it.
        if let Some(difficulty) = suggest.filter(|_| subscribed) {
            self.request(
                &mut out,
                RequestKind::SuggestDifficulty,
                "mining.suggest_difficulty",
                &json!([difficulty]),
            );
        }
        self.wake(&mut out);
        out
    }

    /// Bytes arrived from the pool at `now_ms`, in whatever chunks TCP
    /// produced.
    pub fn received(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        if self.phase != Phase::Online {
            return out;
        }
        self.lines.push(bytes);
        while self.phase == Phase::Online {
            let Some(line) = self.lines.next_line() else {
                break;
            };
            let result = line
                .map_err(SessionError::from)
                .and_then(|l| jsonrpc::parse_line(&l).map_err(SessionError::from))
                .and_then(|msg| self.handle_message(msg, &mut out));
            if let Err(e) = result {
                self.fail(&mut out, format!("protocol error: {e}"));
            }
        }
        self.wake(&mut out);
        out
    }

    /// A requested wake-up (or any later time): time out handshake
    /// requests and unanswered shares, then ask for the next deadline.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        if self.phase != Phase::Online {
            return out;
        }
        let now = self.now_ms;
        let expired: Vec<(u64, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.kind
                    .timeout_ms()
                    .is_some_and(|limit| now.saturating_sub(p.sent_ms) >= limit)
            })
            .map(|(id, p)| (*id, *p))
            .collect();
        for (id, p) in expired {
            self.pending.remove(&id);
            match p.kind {
                RequestKind::Submit { share_id } => {
                    out.push(share_result(
                        share_id,
                        ShareOutcome::Rejected(NO_RESPONSE.into()),
                    ));
                }
                RequestKind::ExtranonceSubscribe => {
                    log(
                        &mut out,
                        LogLevel::Debug,
                        "mining.extranonce.subscribe not answered",
                    );
                }
                RequestKind::Configure => {
                    // Pools without BIP 310 may ignore the request: mine on
                    // without version rolling (a late reply is not applied).
                    log(
                        &mut out,
                        LogLevel::Info,
                        "version rolling not negotiated: mining.configure not answered",
                    );
                }
                kind => {
                    self.fail(&mut out, format!("{} timed out", kind.name()));
                    break;
                }
            }
        }
        self.wake(&mut out);
        out
    }

    /// The host found a share at `now_ms`: submit it (or hold it while
    /// `mining.authorize` is unanswered).
    pub fn share_found(&mut self, now_ms: u64, share: Share) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        if self.phase != Phase::Online {
            out.push(share_result(
                share.id,
                ShareOutcome::Rejected("not connected to pool".into()),
            ));
            return out;
        }
        let authorizing = !self.authorized
            && self
                .pending
                .values()
                .any(|p| p.kind == RequestKind::Authorize);
        if authorizing {
            if self.held.len() < MAX_HELD_SHARES {
                self.held.push(share);
            } else {
                out.push(share_result(
                    share.id,
                    ShareOutcome::Rejected("not yet authorized".into()),
                ));
            }
        } else {
            self.submit(share, &mut out);
        }
        self.wake(&mut out);
        out
    }

    /// Sends `mining.submit` for `share`, unless its rolled version bits no
    /// longer fit the pool's mask.
    fn submit(&mut self, share: Share, out: &mut Vec<Action>) {
        let job_version = self
            .job_versions
            .iter()
            .find(|(id, _)| *id == share.job_id)
            .map(|(_, v)| *v);
        if let Some(job_version) = job_version
            && (share.version ^ job_version) & !self.version_mask != 0
        {
            out.push(share_result(
                share.id,
                ShareOutcome::Rejected("version bits outside the pool's current mask".into()),
            ));
            return;
        }
        let mut params = vec![
            Value::String(self.config.user.clone()),
            Value::String(share.job_id.clone()),
            Value::String(hex::encode(&share.extranonce2)),
            Value::String(format!("{:08x}", share.ntime)),
            Value::String(format!("{:08x}", share.nonce)),
        ];
        if self.version_mask != 0 {
            params.push(Value::String(format!(
                "{:08x}",
                share.version & self.version_mask
            )));
        }
        let kind = RequestKind::Submit { share_id: share.id };
        if !self.request(out, kind, "mining.submit", &Value::Array(params)) {
            out.push(share_result(
                share.id,
                ShareOutcome::Rejected("cannot encode share".into()),
            ));
        }
    }

    /// The connection closed: forget everything in flight.
    pub fn disconnected(&mut self, _reason: &str) {
        self.phase = Phase::Offline;
        self.lines.clear();
        self.pending.clear();
        self.extranonce = None;
        self.authorized = false;
        self.held.clear();
        self.early_notify = None;
    }

    // ----- internals -------------------------------------------------------

    /// Encode and queue a request; false (after a `fail`) if encoding failed.
    fn request(
        &mut self,
        out: &mut Vec<Action>,
        kind: RequestKind,
        method: &str,
        params: &Value,
    ) -> bool {
        let id = self.next_id;
        match jsonrpc::encode_request(id, method, params) {
            Ok(line) => {
                self.next_id = self.next_id.wrapping_add(1).max(1);
                self.pending.insert(
                    id,
                    Pending {
                        kind,
                        sent_ms: self.now_ms,
                    },
                );
                out.push(Action::Send(line));
                true
            }
            Err(e) => {
                self.fail(out, format!("internal error: {e}"));
                false
            }
        }
    }

    fn fail(&mut self, out: &mut Vec<Action>, reason: String) {
        for share in self.held.drain(..) {
            out.push(share_result(
                share.id,
                ShareOutcome::Rejected(format!("not submitted: {reason}")),
            ));
        }
        log(out, LogLevel::Error, reason.clone());
        out.push(Action::Fail(reason));
        self.phase = Phase::Failed;
        self.lines.clear();
    }

    fn handle_message(&mut self, msg: Message, out: &mut Vec<Action>) -> Result<(), SessionError> {
        match msg {
            Message::Response { id, result, error } => {
                self.handle_response(&id, result, &error, out)
            }
            Message::Request { id, method, params } => {
                self.handle_request(&id, &method, &params, out)
            }
        }
    }

    fn handle_response(
        &mut self,
        id: &Value,
        result: Value,
        error: &Value,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        let pending = response_id(id).and_then(|n| self.pending.remove(&n).map(|p| (n, p)));
        let Some((_, pending)) = pending else {
            let level = if id.is_null() {
                LogLevel::Warn
            } else {
                LogLevel::Debug
            };
            let text = jsonrpc::error_text(error).unwrap_or_else(|| result.to_string());
            log(out, level, format!("unexpected reply (id {id}): {text}"));
            return Ok(());
        };
        match pending.kind {
            RequestKind::Configure => {
                self.on_configure(&result, error, out);
                Ok(())
            }
            RequestKind::Subscribe => self.on_subscribe(&result, error, out),
            RequestKind::Authorize => {
                if result == Value::Bool(true) && jsonrpc::error_text(error).is_none() {
                    self.authorized = true;
                    log(
                        out,
                        LogLevel::Info,
                        format!("authorized as {}", self.config.user),
                    );
                    for share in std::mem::take(&mut self.held) {
                        self.submit(share, out);
                    }
                } else {
                    let reason = jsonrpc::error_text(error).unwrap_or_else(|| "refused".into());
                    self.fail(out, format!("authorization refused: {reason}"));
                }
                Ok(())
            }
            RequestKind::ExtranonceSubscribe | RequestKind::SuggestDifficulty => {
                if let Some(reason) = jsonrpc::error_text(error) {
                    log(
                        out,
                        LogLevel::Debug,
                        format!("{} not supported: {reason}", pending.kind.name()),
                    );
                }
                Ok(())
            }
            RequestKind::Submit { share_id } => {
                let outcome = if result == Value::Bool(true) && jsonrpc::error_text(error).is_none()
                {
                    ShareOutcome::Accepted
                } else {
                    ShareOutcome::Rejected(
                        jsonrpc::error_text(error).unwrap_or_else(|| "rejected".into()),
                    )
                };
                out.push(share_result(share_id, outcome));
                Ok(())
            }
        }
    }

    /// Tells the operator what this connection negotiated: plain Stratum
    /// V1 over TCP, the extranonce and the version-rolling mask.
    fn report_session(&self, out: &mut Vec<Action>) {
        let mut details = Vec::new();
        if let Some(en) = &self.extranonce {
            details.push((
                "extranonce2".to_string(),
                format!("{} bytes", en.extranonce2_size),
            ));
        }
        details.push((
            "version rolling".to_string(),
            match self.version_mask {
                0 => "off".to_string(),
                mask => format!("{mask:08x}"),
            },
        ));
        out.push(Action::Session(SessionInfo {
            protocol: "Stratum V1".into(),
            channel: None,
            encrypted: false,
            authority: None,
            details,
        }));
    }

    fn on_configure(&mut self, result: &Value, error: &Value, out: &mut Vec<Action>) {
        let negotiated = if jsonrpc::error_text(error).is_none() {
            result
                .get("version-rolling")
                .filter(|v| **v == Value::Bool(true))
                .and_then(|_| result.get("version-rolling.mask"))
                .and_then(Value::as_str)
                .and_then(|m| sdk_hex::decode_u32("version-rolling.mask", m).ok())
        } else {
            None
        };
        self.version_mask = negotiated.unwrap_or(0) & VERSION_ROLLING_MASK;
        if self.version_mask == 0 {
            let why = jsonrpc::error_text(error).unwrap_or_else(|| "not offered".into());
            log(
                out,
                LogLevel::Info,
                format!("version rolling not negotiated: {why}"),
            );
        } else {
            log(
                out,
                LogLevel::Info,
                format!("version rolling mask {:08x}", self.version_mask),
            );
        }
    }

    fn on_subscribe(
        &mut self,
        result: &Value,
        error: &Value,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        if let Some(reason) = jsonrpc::error_text(error)
            .or_else(|| (!result.is_array()).then(|| format!("unexpected result {result}")))
        {
            if self.resuming {
                // Start a fresh session next time instead of retrying forever.
                self.subscription_id = None;
            }
            self.fail(out, format!("subscribe refused: {reason}"));
            return Ok(());
        }
        let (subscriptions, en1, en2) = match result.as_array().map(Vec::as_slice) {
            Some([subs, en1, en2, ..]) => (subs, en1, en2),
            _ => {
                return Err(SessionError::invalid(
                    "mining.subscribe result",
                    "too few items",
                ));
            }
        };
        let extranonce = parse_extranonce("mining.subscribe result", en1, en2)?;
        let sid = notify_subscription_id(subscriptions);
        if self.resuming && sid.as_deref() == self.subscription_id.as_deref() {
            log(out, LogLevel::Info, "resumed previous session");
        }
        self.subscription_id = sid;
        self.extranonce = Some(extranonce);
        if !self.difficulty_set {
            match target::difficulty_to_target(1.0) {
                Ok(t) => out.push(Action::SetShareTarget(t.to_vec())),
                Err(e) => log(out, LogLevel::Error, e.to_string()),
            }
            self.difficulty_set = true;
        }
        self.report_session(out);
        let creds = json!([self.config.user, self.config.password]);
        if self.request(out, RequestKind::Authorize, "mining.authorize", &creds) {
            self.request(
                out,
                RequestKind::ExtranonceSubscribe,
                "mining.extranonce.subscribe",
                &json!([]),
            );
        }
        if let Some(params) = self.early_notify.take() {
            self.on_notify(&params, out)?;
        }
        Ok(())
    }

    fn handle_request(
        &mut self,
        id: &Value,
        method: &str,
        params: &[Value],
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        match method {
            "mining.notify" => self.on_notify(params, out),
            "mining.set_difficulty" => {
                self.on_set_difficulty(params, out);
                Ok(())
            }
            "mining.set_extranonce" => {
                let (Some(en1), Some(en2)) = (params.first(), params.get(1)) else {
                    return Err(SessionError::invalid(
                        "mining.set_extranonce",
                        "too few params",
                    ));
                };
                self.extranonce = Some(parse_extranonce("mining.set_extranonce", en1, en2)?);
                // It applies from the next job; older jobs' shares would
                // be checked against the new extranonce1 and rejected.
                self.reset_work = true;
                log(out, LogLevel::Debug, "extranonce changed");
                self.report_session(out);
                Ok(())
            }
            "mining.set_version_mask" => {
                let mask = params
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(|| SessionError::invalid("mining.set_version_mask", "no mask"))
                    .and_then(|m| {
                        sdk_hex::decode_u32("mask", m).map_err(|e| {
                            SessionError::invalid("mining.set_version_mask", e.to_string())
                        })
                    })?;
                if self.config.version_rolling {
                    let mask = mask & VERSION_ROLLING_MASK;
                    self.reset_work |= mask != self.version_mask;
                    self.version_mask = mask;
                    log(
                        out,
                        LogLevel::Info,
                        format!("version rolling mask {:08x}", self.version_mask),
                    );
                    if self.extranonce.is_some() {
                        self.report_session(out);
                    }
                } else {
                    log(out, LogLevel::Debug, "ignoring mining.set_version_mask");
                }
                Ok(())
            }
            "client.reconnect" => {
                let request = parse_reconnect(params, out);
                out.push(Action::Reconnect(request));
                Ok(())
            }
            "client.show_message" => {
                let text = params.first().map(plain_text).unwrap_or_default();
                log(out, LogLevel::Info, format!("pool message: {text}"));
                Ok(())
            }
            "client.get_version" if !id.is_null() => {
                let ua = Value::String(self.config.user_agent.clone());
                let line = jsonrpc::encode_response(id, &ua, &Value::Null)?;
                out.push(Action::Send(line));
                Ok(())
            }
            _ if !id.is_null() => {
                let err = json!([20, "Unsupported method", null]);
                let line = jsonrpc::encode_response(id, &Value::Null, &err)?;
                out.push(Action::Send(line));
                log(
                    out,
                    LogLevel::Debug,
                    format!("unsupported request {method}"),
                );
                Ok(())
            }
            _ => {
                log(
                    out,
                    LogLevel::Debug,
                    format!("ignoring notification {method}"),
                );
                Ok(())
            }
        }
    }

    fn on_set_difficulty(&mut self, params: &[Value], out: &mut Vec<Action>) {
        let result = match params.first() {
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(int), _) => target::decimal_difficulty_to_target(int, 0),
                (None, Some(f)) => target::difficulty_to_target(f),
                (None, None) => target::difficulty_to_target(f64::NAN),
            },
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(f) => target::difficulty_to_target(f),
                Err(_) => target::difficulty_to_target(f64::NAN),
            },
            _ => target::difficulty_to_target(f64::NAN),
        };
        match result {
            Ok(t) => {
                self.difficulty_set = true;
                out.push(Action::SetShareTarget(t.to_vec()));
            }
            Err(_) => {
                let shown = params.first().map(Value::to_string).unwrap_or_default();
                log(
                    out,
                    LogLevel::Warn,
                    format!("ignoring invalid difficulty {shown}"),
                );
            }
        }
    }

    fn on_notify(&mut self, params: &[Value], out: &mut Vec<Action>) -> Result<(), SessionError> {
        const M: &str = "mining.notify";
        let [
            job_id,
            prevhash,
            coinb1,
            coinb2,
            branches,
            version,
            nbits,
            ntime,
            clean,
            ..,
        ] = params
        else {
            return Err(SessionError::invalid(M, "fewer than 9 params"));
        };
        let id = job_id
            .as_str()
            .ok_or_else(|| SessionError::invalid(M, "job id is not a string"))?;
        let prev = hex_field(M, "prevhash", prevhash)?;
        let prev: [u8; 32] = prev
            .try_into()
            .map_err(|_| SessionError::invalid(M, "prevhash is not 32 bytes"))?;
        let coinbase_prefix = hex_field(M, "coinb1", coinb1)?;
        let coinbase_suffix = hex_field(M, "coinb2", coinb2)?;
        let branch_values = branches
            .as_array()
            .ok_or_else(|| SessionError::invalid(M, "merkle branch is not an array"))?;
        if branch_values.len() > MAX_MERKLE_BRANCHES {
            return Err(SessionError::invalid(M, "more than 32 merkle branches"));
        }
        let mut merkle_branches = Vec::with_capacity(branch_values.len());
        for b in branch_values {
            let bytes = hex_field(M, "merkle branch", b)?;
            if bytes.len() != 32 {
                return Err(SessionError::invalid(M, "merkle branch is not 32 bytes"));
            }
            merkle_branches.push(bytes);
        }
        let version = u32_field(M, "version", version)?;
        let nbits = u32_field(M, "nbits", nbits)?;
        let ntime = u32_field(M, "ntime", ntime)?;
        let clean = clean
            .as_bool()
            .ok_or_else(|| SessionError::invalid(M, "clean_jobs is not a boolean"))?;
        let Some(extranonce) = &self.extranonce else {
            // Mine it as soon as the subscribe reply says our extranonce.
            log(
                out,
                LogLevel::Debug,
                format!("job {id} before the subscribe reply: kept for later"),
            );
            self.early_notify = Some(params.to_vec());
            return Ok(());
        };
        // Stratum sends prevhash as eight 4-byte words, each byte-swapped.
        let mut prev_hash = prev.to_vec();
        for word in prev_hash.chunks_exact_mut(4) {
            word.reverse();
        }
        let clean = clean || std::mem::take(&mut self.reset_work);
        if self.job_versions.len() >= KEPT_JOB_VERSIONS {
            self.job_versions.pop_front();
        }
        self.job_versions.push_back((id.to_owned(), version));
        out.push(Action::NewJob(Job {
            id: id.to_owned(),
            kind: WorkKind::Extended(ExtendedWork {
                coinbase_prefix,
                extranonce1: extranonce.extranonce1.clone(),
                extranonce2_size: extranonce.extranonce2_size,
                coinbase_suffix,
                merkle_branches,
            }),
            prev_hash,
            version,
            // Bits the job's version sets stay set: pools differ in how they
            // merge submitted bits into it (BIP 310 replaces, ckpool ORs),
            // and both agree on a header that keeps them.
            version_mask: self.version_mask & !version,
            nbits,
            ntime,
            clean,
        }));
        Ok(())
    }
}

impl PoolMachine for Session {
    fn url_schemes() -> Vec<String> {
        vec![URL_SCHEME.to_string()]
    }
    fn validate_settings(settings: &str) -> Result<(), String> {
        Session::validate_settings(settings).map_err(|e| e.to_string())
    }
    fn new(config: PoolConfig) -> Self {
        Session::new(config)
    }
    fn connected(&mut self, now_ms: u64) -> Vec<Action> {
        Session::connected(self, now_ms)
    }
    fn received(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Action> {
        Session::received(self, now_ms, bytes)
    }
    fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        Session::tick(self, now_ms)
    }
    fn share_found(&mut self, now_ms: u64, share: Share) -> Vec<Action> {
        Session::share_found(self, now_ms, share)
    }
    fn disconnected(&mut self, reason: &str) {
        Session::disconnected(self, reason)
    }
}

fn log(out: &mut Vec<Action>, level: LogLevel, message: impl Into<String>) {
    out.push(Action::log(level, message));
}

fn share_result(id: u64, outcome: ShareOutcome) -> Action {
    Action::ShareResult(ShareResult { id, outcome })
}

fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Our ids are integers; tolerate pools echoing them as decimal strings.
fn response_id(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parse 1..=8 hex digits as a u32 (no sign, no prefix).
fn hex_field(method: &'static str, what: &str, v: &Value) -> Result<Vec<u8>, SessionError> {
    let text = v
        .as_str()
        .ok_or_else(|| SessionError::invalid(method, format!("{what} is not a string")))?;
    sdk_hex::decode(what, text).map_err(|e| SessionError::invalid(method, e.to_string()))
}

fn u32_field(method: &'static str, what: &str, v: &Value) -> Result<u32, SessionError> {
    let text = v
        .as_str()
        .ok_or_else(|| SessionError::invalid(method, format!("{what} is not a string")))?;
    sdk_hex::decode_u32(what, text).map_err(|e| SessionError::invalid(method, e.to_string()))
}

fn parse_extranonce(
    method: &'static str,
    en1: &Value,
    en2: &Value,
) -> Result<Extranonce, SessionError> {
    let extranonce1 = hex_field(method, "extranonce1", en1)?;
    if extranonce1.len() > MAX_EXTRANONCE1_LEN {
        return Err(SessionError::invalid(method, "extranonce1 too long"));
    }
    let extranonce2_size = en2
        .as_u64()
        .filter(|n| (1..=16).contains(n))
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| SessionError::invalid(method, "extranonce2_size not in 1..=16"))?;
    Ok(Extranonce {
        extranonce1,
        extranonce2_size,
    })
}

/// The `mining.notify` subscription id from a subscribe result's first item:
/// either one `[method, id]` pair or a list of such pairs.
fn notify_subscription_id(subscriptions: &Value) -> Option<String> {
    let pair_id = |pair: &Value| -> Option<String> {
        let items = pair.as_array()?;
        match items.as_slice() {
            [Value::String(m), id, ..] if m == "mining.notify" => match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            },
            _ => None,
        }
    };
    pair_id(subscriptions).or_else(|| subscriptions.as_array()?.iter().find_map(pair_id))
}

fn parse_reconnect(params: &[Value], out: &mut Vec<Action>) -> ReconnectRequest {
    let host = match params.first() {
        Some(Value::String(h)) => h.clone(),
        _ => String::new(),
    };
    let port = match params.get(1) {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(Value::String(s)) if s.is_empty() => Some(0),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(_) => None,
    };
    let port = port.unwrap_or_else(|| {
        log(
            out,
            LogLevel::Warn,
            "client.reconnect: ignoring invalid port",
        );
        0
    });
    let wait_s = match params.get(2) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse::<f64>().unwrap_or(0.0),
        _ => 0.0,
    };
    let after_ms = if wait_s.is_finite() && wait_s > 0.0 {
        // `as` saturates for floats: huge waits clamp to u32::MAX.
        (wait_s * 1000.0) as u32
    } else {
        0
    };
    ReconnectRequest {
        host,
        port,
        after_ms,
    }
}
