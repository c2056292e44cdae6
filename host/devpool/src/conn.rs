//! One client connection: JSON-RPC dispatch and per-connection share state.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::job::{EXTRANONCE1_SIZE, Job};
use crate::line::{LineError, read_line};
use crate::share::{self, Reject, ShareContext};
use crate::{Event, Shared, stopped};

/// How many jobs a connection remembers for share validation.
const JOB_HISTORY: usize = 32;
/// A client that does not read its socket for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be served; every variant maps to a Stratum code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    /// The line was a JSON object but not a usable request.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The method is not one this pool implements.
    #[error("unknown method {0}")]
    UnknownMethod(String),
    /// The method's params had the wrong shape.
    #[error("invalid params: {0}")]
    InvalidParams(&'static str),
    /// A share was refused.
    #[error(transparent)]
    Share(#[from] Reject),
}

impl RequestError {
    /// The Stratum error code sent to the client.
    fn code(&self) -> i64 {
        match self {
            RequestError::Share(r) => r.code(),
            _ => 20,
        }
    }
}

/// A job as sent on this connection, with the difficulty in force then.
struct SentJob {
    job: Arc<Job>,
    difficulty: f64,
    accepted_headers: HashSet<[u8; 80]>,
}

/// Per-connection protocol state. Handlers are synchronous and only queue
/// output in `out`; the task loop flushes it.
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    extranonce1: [u8; EXTRANONCE1_SIZE],
    subscription_id: String,
    subscribed: bool,
    users: HashSet<String>,
    /// Valid shares seen on this connection (for `reject_every`).
    valid_shares: u64,
    version_mask: u32,
    difficulty: f64,
    jobs: VecDeque<SentJob>,
    last_clean_seq: u64,
    highest_seq: Option<u64>,
    out: Vec<u8>,
}

/// What woke the connection loop.
enum Input {
    Line,
    Eof,
    ReadFailed(LineError),
    Event(Event),
    Lagged(u64),
    Stop,
}

/// Decrements the active-connection gauge however the task ends.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Serve one accepted client until it leaves, misbehaves, or the pool stops.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut events: broadcast::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _guard = ActiveGuard(shared.clone());
    let _ = stream.set_nodelay(true);
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut line = Vec::new();
    let mut conn = Conn::new(shared, peer);
    debug!(%peer, extranonce1 = %hex::encode(conn.extranonce1), "client connected");

    loop {
        let input = tokio::select! {
            r = read_line(&mut reader, &mut line) => match r {
                Ok(true) => Input::Line,
                Ok(false) => Input::Eof,
                Err(e) => Input::ReadFailed(e),
            },
            ev = events.recv() => match ev {
                Ok(ev) => Input::Event(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => Input::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => Input::Stop,
            },
            () = stopped(&mut shutdown) => Input::Stop,
        };
        match input {
            Input::Line => {
                conn.handle_line(&line);
                line.clear();
            }
            Input::Eof => {
                debug!(%peer, "client closed the connection");
                break;
            }
            Input::ReadFailed(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
            Input::Event(Event::Drop) => {
                debug!(%peer, "dropping connection on request");
                break;
            }
            Input::Event(ev) => conn.handle_event(ev),
            Input::Lagged(n) => {
                warn!(%peer, missed = n, "connection lagged behind pool events");
                conn.catch_up();
            }
            Input::Stop => break,
        }
        if !conn.out.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, write_half.write_all(&conn.out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "write failed, closing connection");
                    break;
                }
                Err(_) => {
                    warn!(%peer, "client stopped reading, closing connection");
                    break;
                }
            }
            conn.out.clear();
        }
    }
    let _ = write_half.shutdown().await;
}

impl Conn {
    fn new(shared: Arc<Shared>, peer: SocketAddr) -> Self {
        let extranonce1 = shared.next_extranonce1();
        let subscription_id = format!("{:016x}", rand::random::<u64>());
        let difficulty = shared.difficulty();
        Conn {
            shared,
            peer,
            extranonce1,
            subscription_id,
            subscribed: false,
            users: HashSet::new(),
            valid_shares: 0,
            version_mask: 0,
            difficulty,
            jobs: VecDeque::new(),
            last_clean_seq: 0,
            highest_seq: None,
            out: Vec::new(),
        }
    }

    fn push(&mut self, msg: &Value) {
        // Serializing a Value cannot fail; fall back to nothing if it ever did.
        if let Ok(bytes) = serde_json::to_vec(msg) {
            self.out.extend_from_slice(&bytes);
            self.out.push(b'\n');
        }
    }

    fn reply(&mut self, id: Value, result: Result<Value, RequestError>) {
        let msg = match result {
            Ok(result) => json!({"id": id, "result": result, "error": null}),
            Err(e) => json!({"id": id, "result": null, "error": [e.code(), e.to_string(), null]}),
        };
        self.push(&msg);
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.push(&json!({"id": null, "method": method, "params": params}));
    }

    fn handle_line(&mut self, raw: &[u8]) {
        let text = raw.trim_ascii();
        if text.is_empty() {
            return;
        }
        let value: Value = match serde_json::from_slice(text) {
            Ok(v) => v,
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "ignoring unparsable line");
                return;
            }
        };
        let Value::Object(obj) = value else {
            debug!(peer = %self.peer, "ignoring non-object line");
            return;
        };
        let id = obj.get("id").cloned().unwrap_or(Value::Null);
        let method = match obj.get("method") {
            Some(Value::String(m)) => m.clone(),
            other => {
                // A response to something we sent carries result/error and no method.
                let is_response =
                    other.is_none() && (obj.contains_key("result") || obj.contains_key("error"));
                if !is_response && !id.is_null() {
                    self.reply(id, Err(RequestError::Malformed("method must be a string")));
                }
                return;
            }
        };
        let params = match obj.get("params") {
            Some(Value::Array(p)) => p.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                self.reply(id, Err(RequestError::Malformed("params must be an array")));
                return;
            }
        };
        match method.as_str() {
            "mining.subscribe" => {
                let result = self.subscribe();
                self.reply(id, Ok(result));
                self.send_current_job();
            }
            "mining.configure" => {
                let result = self.configure(&params);
                self.reply(id, result);
            }
            "mining.authorize" => {
                let result = self.authorize(&params);
                self.reply(id, result);
            }
            "mining.extranonce.subscribe" => self.reply(id, Ok(Value::Bool(true))),
            "mining.submit" => {
                let result = self.submit(&params);
                self.reply(id, result);
            }
            _ => {
                debug!(peer = %self.peer, %method, "unknown method");
                self.reply(id, Err(RequestError::UnknownMethod(method)));
            }
        }
    }

    fn subscribe(&mut self) -> Value {
        self.subscribed = true;
        json!([
            [
                ["mining.set_difficulty", self.subscription_id],
                ["mining.notify", self.subscription_id]
            ],
            hex::encode(self.extranonce1),
            self.shared.config.extranonce2_size,
        ])
    }

    /// Send the pool's difficulty and current job as a clean job.
    fn send_current_job(&mut self) {
        let (difficulty, job) = self.shared.current();
        self.difficulty = difficulty;
        self.notify("mining.set_difficulty", json!([difficulty]));
        self.send_job(job, true);
    }

    fn send_job(&mut self, job: Arc<Job>, clean: bool) {
        if clean {
            self.last_clean_seq = job.seq;
        }
        self.highest_seq = Some(job.seq);
        let params = job.notify_params(clean);
        self.jobs.retain(|j| j.job.seq != job.seq);
        self.jobs.push_back(SentJob {
            job,
            difficulty: self.difficulty,
            accepted_headers: HashSet::new(),
        });
        while self.jobs.len() > JOB_HISTORY {
            self.jobs.pop_front();
        }
        self.notify("mining.notify", params);
    }

    fn configure(&mut self, params: &[Value]) -> Result<Value, RequestError> {
        let Some(Value::Array(extensions)) = params.first() else {
            return Err(RequestError::InvalidParams("extensions must be an array"));
        };
        let empty = Map::new();
        let options = match params.get(1) {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => &empty,
            Some(_) => {
                return Err(RequestError::InvalidParams(
                    "extension params must be an object",
                ));
            }
        };
        let mut result = Map::new();
        for ext in extensions {
            let Value::String(ext) = ext else {
                return Err(RequestError::InvalidParams(
                    "extension names must be strings",
                ));
            };
            if ext != "version-rolling" {
                continue;
            }
            let client_mask = match options.get("version-rolling.mask") {
                None => u32::MAX,
                Some(Value::String(m)) if !m.is_empty() && m.len() <= 8 => {
                    u32::from_str_radix(m, 16)
                        .map_err(|_| RequestError::InvalidParams("bad version-rolling.mask"))?
                }
                Some(_) => return Err(RequestError::InvalidParams("bad version-rolling.mask")),
            };
            let pool_mask = self.shared.config.version_mask;
            if pool_mask == 0 {
                result.insert("version-rolling".into(), Value::Bool(false));
                continue;
            }
            self.version_mask = client_mask & pool_mask;
            result.insert("version-rolling".into(), Value::Bool(true));
            result.insert(
                "version-rolling.mask".into(),
                Value::String(format!("{:08x}", self.version_mask)),
            );
        }
        Ok(Value::Object(result))
    }

    fn authorize(&mut self, params: &[Value]) -> Result<Value, RequestError> {
        match params.first() {
            Some(Value::String(user)) if !user.is_empty() => {
                debug!(peer = %self.peer, %user, "worker authorized");
                self.users.insert(user.clone());
                Ok(Value::Bool(true))
            }
            Some(Value::String(_)) => Ok(Value::Bool(false)),
            _ => Err(RequestError::InvalidParams("user must be a string")),
        }
    }

    fn submit(&mut self, params: &[Value]) -> Result<Value, RequestError> {
        let job_id = params
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let user = params
            .first()
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let checked = self.check_share(params).and_then(|ok| {
            self.valid_shares += 1;
            match self.shared.config.reject_every {
                Some(n) if n > 0 && self.valid_shares.is_multiple_of(n) => Err(Reject::Deliberate),
                _ => Ok(ok),
            }
        });
        match checked {
            Ok((difficulty, rolled, ntime_rolled)) => {
                self.shared.record_accepted(&user, rolled, ntime_rolled);
                debug!(peer = %self.peer, %user, %job_id, difficulty, version_rolled = rolled, "share accepted");
                Ok(Value::Bool(true))
            }
            Err(reject) => {
                self.shared
                    .record_rejected(reject.code(), reject == Reject::Stale);
                info!(peer = %self.peer, %user, %job_id, code = reject.code(), reason = %reject, "share rejected");
                Err(reject.into())
            }
        }
    }

    /// Returns the job difficulty and whether the version was rolled.
    fn check_share(&mut self, params: &[Value]) -> Result<(f64, bool, bool), Reject> {
        let sub = share::parse_submit(params)?;
        if !self.subscribed {
            return Err(Reject::NotSubscribed);
        }
        if !self.users.contains(&sub.user) {
            return Err(Reject::Unauthorized);
        }
        let sent = self
            .jobs
            .iter_mut()
            .find(|j| j.job.id == sub.job_id)
            .ok_or(Reject::JobNotFound)?;
        if sent.job.seq < self.last_clean_seq {
            return Err(Reject::Stale);
        }
        let ctx = ShareContext {
            extranonce1: &self.extranonce1,
            extranonce2_size: usize::from(self.shared.config.extranonce2_size),
            version_mask: self.version_mask,
        };
        let candidate = share::evaluate(&sent.job, &ctx, &sub)?;
        if sent.accepted_headers.contains(&candidate.header) {
            return Err(Reject::Duplicate);
        }
        if !candidate.meets(&share::difficulty_to_target(sent.difficulty)) {
            return Err(Reject::LowDifficulty);
        }
        sent.accepted_headers.insert(candidate.header);
        Ok((
            sent.difficulty,
            candidate.version_rolled,
            candidate.ntime_rolled,
        ))
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Notify(job) => {
                if !self.subscribed || self.highest_seq.is_some_and(|h| job.seq <= h) {
                    return;
                }
                let clean = job.clean;
                self.send_job(job, clean);
            }
            Event::Difficulty(d) => {
                self.difficulty = d;
                if self.subscribed {
                    self.notify("mining.set_difficulty", json!([d]));
                }
            }
            Event::Raw(bytes) => self.out.extend_from_slice(&bytes),
            Event::Reconnect { host, port, wait_s } => {
                self.notify("client.reconnect", json!([&*host, port, wait_s]));
            }
            // Handled by the task loop, which closes the socket.
            Event::Drop => {}
        }
    }

    /// After missing broadcast events, resynchronize on the pool's current
    /// state with a clean job (the safe choice: old jobs become stale).
    fn catch_up(&mut self) {
        if self.subscribed {
            self.send_current_job();
        }
    }
}
