//! Plain Rust mirrors of the `hashwatt:pool@0.2.1` WIT types.
//!
//! The core state machine speaks these types so it can be compiled, tested
//! and fuzzed natively; `component.rs` converts them to and from the
//! wit-bindgen generated types on wasm32.

/// Severity of a plugin log line (mirrors WIT `log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// Very detailed diagnostics, normally hidden.
    Trace,
    /// Diagnostics useful while developing.
    Debug,
    /// Normal operational messages.
    Info,
    /// Something unexpected that the plugin recovered from.
    Warn,
    /// Something failed; the operator should look at it.
    Error,
}

/// The pool as configured by the operator (mirrors WIT `pool-config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolConfig {
    /// The configured URL.
    pub url: String,
    /// Host part of the URL.
    pub host: String,
    /// Port part of the URL.
    pub port: u16,
    /// Worker / account name used in `mining.authorize` and `mining.submit`.
    pub user: String,
    /// Worker password.
    pub password: String,
    /// User agent announced in `mining.subscribe` and `client.get_version`.
    pub user_agent: String,
    /// Whether the host can roll version bits, so BIP 310 should be
    /// negotiated; when false `mining.configure` is never sent.
    pub version_rolling: bool,
    /// The pool's plugin settings as a JSON object (see
    /// e.g. the Stratum V1 plugin's `Settings`); empty counts as `{}`.
    pub settings: String,
}

/// Host-assembled coinbase work (mirrors WIT `extended-work`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedWork {
    /// Stratum `coinb1`.
    pub coinbase_prefix: Vec<u8>,
    /// Pool-assigned extranonce1.
    pub extranonce1: Vec<u8>,
    /// Size of the host-chosen extranonce2 (1..=16).
    pub extranonce2_size: u8,
    /// Stratum `coinb2`.
    pub coinbase_suffix: Vec<u8>,
    /// Merkle branches, 32 bytes each, as sent by the pool.
    pub merkle_branches: Vec<Vec<u8>>,
}

/// How the header's merkle root is obtained (mirrors WIT `work-kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkKind {
    /// The host builds coinbase and merkle root (what Stratum V1 uses).
    Extended(ExtendedWork),
    /// The pool fixed the merkle root (never produced by this plugin, kept
    /// so the mirror is complete).
    MerkleRoot(Vec<u8>),
}

/// A job to mine (mirrors WIT `job`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Pool job id, echoed back in shares.
    pub id: String,
    /// How to build the merkle root.
    pub kind: WorkKind,
    /// Previous block hash in header byte order.
    pub prev_hash: Vec<u8>,
    /// Block version.
    pub version: u32,
    /// Bits of `version` the host may roll; 0 without version rolling.
    pub version_mask: u32,
    /// Compact network target.
    pub nbits: u32,
    /// Block time.
    pub ntime: u32,
    /// Whether all older jobs are invalid now.
    pub clean: bool,
}

/// A share found by the host (mirrors WIT `share`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Host-chosen id quoted back in `share-result`.
    pub id: u64,
    /// The job the share solves.
    pub job_id: String,
    /// The extranonce2 used.
    pub extranonce2: Vec<u8>,
    /// The ntime used.
    pub ntime: u32,
    /// The nonce (header's last 4 bytes as little-endian u32).
    pub nonce: u32,
    /// The full header version used.
    pub version: u32,
}

/// The pool's verdict (mirrors WIT `share-outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareOutcome {
    /// Credited.
    Accepted,
    /// Refused, with the pool's reason.
    Rejected(String),
}

/// Verdict on one share (mirrors WIT `share-result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareResult {
    /// The `Share::id` concerned.
    pub id: u64,
    /// Accepted or rejected.
    pub outcome: ShareOutcome,
}

/// A request to move the connection (mirrors WIT `reconnect-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectRequest {
    /// New host; empty means the current one.
    pub host: String,
    /// New port; 0 means the current one.
    pub port: u16,
    /// Delay before reconnecting.
    pub after_ms: u32,
}

/// A plugin log line (mirrors WIT `log-entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Severity.
    pub level: LogLevel,
    /// Text.
    pub message: String,
}

/// Something the host must do (mirrors WIT `action`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write bytes to the pool connection.
    Send(Vec<u8>),
    /// Start mining this job.
    NewJob(Job),
    /// New share target, 32 bytes big-endian.
    SetShareTarget(Vec<u8>),
    /// The pool answered a share.
    ShareResult(ShareResult),
    /// Close and reconnect as described.
    Reconnect(ReconnectRequest),
    /// Write a log line.
    Log(LogEntry),
    /// The session cannot go on; the host closes and reconnects with back-off.
    Fail(String),
    /// Call `tick` when the host's monotonic clock reaches this many ms;
    /// replaces any earlier request.
    WakeAt(u64),
    /// Tell the operator what this connection negotiated (WIT
    /// `status.report-session`, contract 0.2.1); return it again when the
    /// facts change. Not an action on the wire: the glue hands it to the
    /// host as the call returns.
    Session(SessionInfo),
}

/// What a connection negotiated, as the panel and status API show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The protocol, e.g. `Stratum V2` (1..=32 bytes).
    pub protocol: String,
    /// The channel or subscription kind, e.g. `extended` (≤ 32 bytes).
    pub channel: Option<String>,
    /// Whether the bytes on the wire are encrypted.
    pub encrypted: bool,
    /// The identity the pool was verified by, e.g. an authority key's
    /// fingerprint (≤ 128 bytes).
    pub authority: Option<String>,
    /// Further (label, value) facts: at most 8, labels ≤ 32 bytes, values
    /// ≤ 128. The host refuses a report past these limits and logs why.
    pub details: Vec<(String, String)>,
}

impl Action {
    /// A log line at `level`.
    pub fn log(level: LogLevel, message: impl Into<String>) -> Action {
        Action::Log(LogEntry {
            level,
            message: message.into(),
        })
    }

    /// An informational log line ("authorized as worker1").
    pub fn info(message: impl Into<String>) -> Action {
        Action::log(LogLevel::Info, message)
    }

    /// A warning the plugin recovered from ("unknown method ignored").
    pub fn warn(message: impl Into<String>) -> Action {
        Action::log(LogLevel::Warn, message)
    }

    /// A failure the operator should look at.
    pub fn error(message: impl Into<String>) -> Action {
        Action::log(LogLevel::Error, message)
    }

    /// A diagnostic line, normally hidden.
    pub fn debug(message: impl Into<String>) -> Action {
        Action::log(LogLevel::Debug, message)
    }
}

/// A sans-IO pool-protocol state machine: what the component glue drives.
/// The Stratum V1 plugin's `Session` is one; test plugins wrap it to misbehave.
pub trait PoolMachine: 'static {
    /// The URL schemes this machine speaks (WIT `plugin-info.url-schemes`).
    fn url_schemes() -> Vec<String>;
    /// Checks a pool's settings JSON before any session exists (WIT
    /// `plugin-info.validate-settings`); the error names the bad key.
    fn validate_settings(settings: &str) -> Result<(), String>;
    /// A machine for the pool `config` describes; no I/O until `connected`.
    fn new(config: PoolConfig) -> Self;
    /// A connection opened at `now_ms`.
    fn connected(&mut self, now_ms: u64) -> Vec<Action>;
    /// Bytes arrived at `now_ms`, chunked however TCP delivered them.
    fn received(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Action>;
    /// The time an [`Action::WakeAt`] asked for has come.
    fn tick(&mut self, now_ms: u64) -> Vec<Action>;
    /// The host found a share on one of this pool's jobs at `now_ms`.
    fn share_found(&mut self, now_ms: u64, share: Share) -> Vec<Action>;
    /// The connection closed.
    fn disconnected(&mut self, reason: &str);
}
