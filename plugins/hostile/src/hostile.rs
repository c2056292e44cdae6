//! The misbehaviours and the trigger that sets them off.
//!
//! Configuration travels in `pool-config.password`, because that is the one
//! free-form field a host test (or a devpool config) can set per pool:
//!
//! `<mode>[:<n>][@<when>]`
//!
//! * `mode` — one of [`Mode`]'s names (`loop`, `memory`, `unreachable`,
//!   `panic`, `stack`, `big-send`, `flood`, `invalid-job`, `fs`, `socket`,
//!   `env`). Any other password leaves the plugin a plain, correct client.
//! * `n` — size for `big-send` (bytes, default 100 MB) and `flood` (log
//!   actions, default 1 000 000); not allowed for the other modes.
//! * `when` — `trigger` (default: in the `received` call whose bytes
//!   complete a line containing [`TRIGGER`], each time), `connected` (in
//!   every `connected` call) or `new` (in the constructor; modes that return
//!   actions queue them for the next call).
//!
//! `validate-settings` has no session and no password: it misbehaves when
//! the settings hold `"hostile": "<mode>[:<n>]"` (see
//! [`Hostile::validate_settings`]) and otherwise checks them as the Stratum
//! V1 plugin does.

use std::hint::black_box;

use crate::session::Session;
use crate::types::{
    Action, ExtendedWork, Job, LogEntry, LogLevel, PoolConfig, PoolMachine, Share, WorkKind,
};

/// Bytes that set off the configured misbehaviour when a pool line holds them.
pub const TRIGGER: &str = "hostile.trigger";
/// `big-send` size when the password gives none: 100 MB.
pub const DEFAULT_BIG_SEND: usize = 100_000_000;
/// `flood` action count when the password gives none.
pub const DEFAULT_FLOOD: usize = 1_000_000;

/// How the plugin misbehaves once triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spin forever (the host's per-call time budget must stop it).
    Loop,
    /// Allocate and touch memory forever (the memory limit must stop it).
    Memory,
    /// Execute the wasm `unreachable` instruction.
    Unreachable,
    /// `panic!` (an abort in the `plugin` profile).
    Panic,
    /// Recurse without bound, in a way no tail call can flatten.
    Stack,
    /// Return one `send` action of this many bytes.
    BigSend(usize),
    /// Return this many `log` actions.
    Flood(usize),
    /// Return jobs (and a share target) that each break one rule, then go on.
    InvalidJob,
    /// Try to read, list and write files; log what happened, then go on.
    Fs,
    /// Try to open, bind and resolve sockets; log what happened, then go on.
    Socket,
    /// Read environment variables and arguments; log what was there, then go on.
    Env,
}

impl Mode {
    /// Whether this mode ends the call with a trap (so it returns nothing).
    pub fn traps(self) -> bool {
        matches!(
            self,
            Mode::Loop | Mode::Memory | Mode::Unreachable | Mode::Panic | Mode::Stack
        )
    }
}

/// When the misbehaviour happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// In the `received` call that completes a line containing [`TRIGGER`].
    Trigger,
    /// In every `connected` call.
    Connected,
    /// In the session constructor.
    New,
}

/// A password that names a mode but cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// The `:<n>` part is not a number.
    #[error("bad size {0:?} in hostile mode")]
    BadSize(String),
    /// A size was given to a mode that takes none.
    #[error("hostile mode {0} takes no size")]
    UnexpectedSize(String),
    /// The `@<when>` part is not `trigger`, `connected` or `new`.
    #[error("bad trigger point {0:?} (trigger, connected or new)")]
    BadWhen(String),
}

/// Reads the hostile configuration from a pool password: `Ok(None)` when
/// the password names no mode (the plugin then behaves).
pub fn parse_password(password: &str) -> Result<Option<(Mode, When)>, ModeError> {
    let (rest, when) = match password.split_once('@') {
        Some((rest, when)) => (rest, Some(when)),
        None => (password, None),
    };
    let (name, size) = match rest.split_once(':') {
        Some((name, size)) => (name, Some(size)),
        None => (rest, None),
    };
    let sized = |default: usize| -> Result<usize, ModeError> {
        match size {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| ModeError::BadSize(s.to_string())),
        }
    };
    let mode = match name {
        "big-send" => Mode::BigSend(sized(DEFAULT_BIG_SEND)?),
        "flood" => Mode::Flood(sized(DEFAULT_FLOOD)?),
        other => {
            let mode = match other {
                "loop" => Mode::Loop,
                "memory" => Mode::Memory,
                "unreachable" => Mode::Unreachable,
                "panic" => Mode::Panic,
                "stack" => Mode::Stack,
                "invalid-job" => Mode::InvalidJob,
                "fs" => Mode::Fs,
                "socket" => Mode::Socket,
                "env" => Mode::Env,
                _ => return Ok(None),
            };
            if size.is_some() {
                return Err(ModeError::UnexpectedSize(other.to_string()));
            }
            mode
        }
    };
    let when = match when {
        None | Some("trigger") => When::Trigger,
        Some("connected") => When::Connected,
        Some("new") => When::New,
        Some(other) => return Err(ModeError::BadWhen(other.to_string())),
    };
    Ok(Some((mode, when)))
}

/// The hostile plugin's state: a real Stratum V1 session plus the trigger.
#[derive(Debug)]
pub struct Hostile {
    session: Session,
    config: Option<(Mode, When)>,
    /// Line bytes seen since the last newline, capped so a hostile pool
    /// cannot make this plugin (the one meant to be hostile) grow.
    line: Vec<u8>,
    /// Actions produced where none can be returned (the constructor).
    pending: Vec<Action>,
}

/// Longest partial line kept for trigger detection.
const MAX_LINE_KEPT: usize = 64 * 1024;

impl PoolMachine for Hostile {
    /// The Stratum V1 scheme: until triggered this is that client.
    fn url_schemes() -> Vec<String> {
        <Session as PoolMachine>::url_schemes()
    }

    /// Misbehaves as settings `{"hostile": "<mode>"}` say: the trapping
    /// modes trap, `big-send:<n>` refuses with an `n`-byte message, the
    /// others refuse with what their probes logged (so a test sees whether
    /// the sandbox holds here too). Other settings are checked as the
    /// Stratum V1 plugin checks them.
    fn validate_settings(settings: &str) -> Result<(), String> {
        let spec = serde_json::from_str::<serde_json::Value>(settings)
            .ok()
            .and_then(|v| v.get("hostile").and_then(|m| m.as_str()).map(str::to_owned));
        match spec.as_deref().map(parse_password) {
            Some(Ok(Some((mode, _)))) => Err(refusal(mode)),
            Some(Err(e)) => Err(format!("hostile: {e}")),
            Some(Ok(None)) | None => <Session as PoolMachine>::validate_settings(settings),
        }
    }

    /// A session for `config`; misbehaves in the constructor for `@new`.
    fn new(config: PoolConfig) -> Self {
        let mut pending = Vec::new();
        let parsed = match parse_password(&config.password) {
            Ok(parsed) => parsed,
            Err(e) => {
                pending.push(log(LogLevel::Warn, format!("hostile: {e}; behaving")));
                None
            }
        };
        let mut plugin = Hostile {
            session: Session::new(config),
            config: parsed,
            line: Vec::new(),
            pending,
        };
        if let Some((mode, When::New)) = plugin.config {
            let actions = misbehave(mode);
            plugin.pending.extend(actions);
        }
        plugin
    }

    /// See `Session::connected`; misbehaves here for `@connected`.
    fn connected(&mut self, now_ms: u64) -> Vec<Action> {
        self.line.clear();
        let mut out = self.take_pending();
        out.extend(self.session.connected(now_ms));
        if let Some((mode, When::Connected)) = self.config {
            out.extend(misbehave(mode));
        }
        out
    }

    /// See `Session::received`; misbehaves after the session's own actions
    /// when these bytes complete a line holding [`TRIGGER`].
    fn received(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Action> {
        let triggered = self.scan(bytes);
        let mut out = self.take_pending();
        out.extend(self.session.received(now_ms, bytes));
        if let Some((mode, When::Trigger)) = self.config {
            for _ in 0..triggered {
                out.extend(misbehave(mode));
            }
        }
        out
    }

    /// See `Session::tick`.
    fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = self.take_pending();
        out.extend(self.session.tick(now_ms));
        out
    }

    /// See `Session::share_found`.
    fn share_found(&mut self, now_ms: u64, share: Share) -> Vec<Action> {
        let mut out = self.take_pending();
        out.extend(self.session.share_found(now_ms, share));
        out
    }

    /// See `Session::disconnected`.
    fn disconnected(&mut self, reason: &str) {
        self.line.clear();
        self.session.disconnected(reason);
    }
}

impl Hostile {
    /// The parsed mode and trigger point, if the password named one.
    pub fn config(&self) -> Option<(Mode, When)> {
        self.config
    }

    fn take_pending(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.pending)
    }

    /// Counts the lines completed by `bytes` that contain the trigger.
    fn scan(&mut self, bytes: &[u8]) -> usize {
        let mut hits = 0;
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let room = MAX_LINE_KEPT.saturating_sub(self.line.len());
            self.line
                .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
            if chunk.ends_with(b"\n") {
                if contains(&self.line, TRIGGER.as_bytes()) {
                    hits += 1;
                }
                self.line.clear();
            }
        }
        hits
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn log(level: LogLevel, message: String) -> Action {
    Action::Log(LogEntry { level, message })
}

/// What `validate-settings` answers in `mode` (after trapping, for the
/// trapping modes, it never answers).
fn refusal(mode: Mode) -> String {
    if let Mode::BigSend(n) = mode {
        return "x".repeat(n);
    }
    let lines: Vec<String> = misbehave(mode)
        .into_iter()
        .filter_map(|a| match a {
            Action::Log(l) => Some(l.message),
            _ => None,
        })
        .collect();
    format!("hostile {mode:?}: {}", lines.join("; "))
}

/// Does what `mode` says: traps for the trapping modes, else returns the
/// hostile actions.
fn misbehave(mode: Mode) -> Vec<Action> {
    match mode {
        Mode::Loop => spin(),
        Mode::Memory => exhaust_memory(),
        Mode::Unreachable => unreachable_instruction(),
        Mode::Panic => panic!("hostile plugin: deliberate panic"),
        Mode::Stack => {
            let depth = recurse(black_box(0));
            vec![log(LogLevel::Error, format!("stack: returned at {depth}"))]
        }
        Mode::BigSend(n) => vec![Action::Send(vec![b'x'; n])],
        Mode::Flood(n) => (0..n)
            .map(|i| log(LogLevel::Info, format!("flood {i}")))
            .collect(),
        Mode::InvalidJob => invalid_jobs(),
        Mode::Fs => probe_fs(),
        Mode::Socket => probe_sockets(),
        Mode::Env => probe_env(),
    }
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        // Touch every page so nothing stays lazily unmapped.
        for b in chunk.iter_mut().step_by(4096) {
            *b = 1;
        }
        hoard.push(black_box(chunk));
    }
}

#[cfg(target_arch = "wasm32")]
fn unreachable_instruction() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn unreachable_instruction() -> ! {
    std::process::abort()
}

/// Recurses until the stack runs out. The frame keeps a buffer that is used
/// after the recursive call returns, so the call cannot become a jump.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[(depth % 512) as usize] = depth as u8;
    let frame = black_box(frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(u64::from(frame[(below % 512) as usize]))
}

/// A well-formed extended job, to break one rule at a time.
fn base_job(id: &str) -> Job {
    Job {
        id: id.to_string(),
        kind: WorkKind::Extended(ExtendedWork {
            coinbase_prefix: vec![1; 60],
            extranonce1: vec![2; 4],
            extranonce2_size: 4,
            coinbase_suffix: vec![3; 60],
            merkle_branches: vec![vec![4; 32]; 2],
        }),
        prev_hash: vec![5; 32],
        version: 0x2000_0000,
        version_mask: 0,
        nbits: 0x1d00_ffff,
        ntime: 1_700_000_000,
        clean: false,
    }
}

fn with_work(id: &str, f: impl FnOnce(&mut ExtendedWork)) -> Job {
    let mut job = base_job(id);
    if let WorkKind::Extended(work) = &mut job.kind {
        f(work);
    }
    job
}

/// Number of invalid jobs `invalid-job` returns (each also has a bad id
/// prefix `hostile-` except the empty-id one).
pub const INVALID_JOBS: usize = 9;

fn invalid_jobs() -> Vec<Action> {
    let mut short_prev = base_job("hostile-prev-hash-31");
    short_prev.prev_hash.truncate(31);
    let mut empty_id = base_job("");
    empty_id.prev_hash = vec![6; 32];
    let mut zero_nbits = base_job("hostile-nbits-0");
    zero_nbits.nbits = 0;
    let mut short_root = base_job("hostile-root-31");
    short_root.kind = WorkKind::MerkleRoot(vec![7; 31]);
    let mut everything = with_work("hostile-everything", |w| {
        w.extranonce2_size = 0;
        w.merkle_branches = vec![vec![8; 31]; 10_000];
    });
    everything.prev_hash = vec![9; 31];
    everything.nbits = 0;
    let jobs = [
        short_prev,
        with_work("hostile-branches-10000", |w| {
            w.merkle_branches = vec![vec![4; 32]; 10_000]
        }),
        with_work("hostile-extranonce2-0", |w| w.extranonce2_size = 0),
        with_work("hostile-branch-31", |w| w.merkle_branches[1].truncate(31)),
        with_work("hostile-coinbase-100k", |w| {
            w.coinbase_prefix = vec![1; 100_000]
        }),
        empty_id,
        zero_nbits,
        short_root,
        everything,
    ];
    let mut out: Vec<Action> = jobs.into_iter().map(Action::NewJob).collect();
    out.push(Action::SetShareTarget(vec![0xff; 31]));
    out
}

/// One probe outcome as a log action: denied/empty results are `Info`, any
/// access that worked is an `Error` (the sandbox leaked).
fn report(area: &str, result: Result<String, String>) -> Action {
    match result {
        Ok(breach) => log(LogLevel::Error, format!("{area}: {breach}")),
        Err(denied) => log(LogLevel::Info, format!("{area}: {denied}")),
    }
}

fn probe_fs() -> Vec<Action> {
    let read = std::fs::read_to_string("/etc/passwd")
        .map(|s| format!("READ {} bytes from /etc/passwd", s.len()))
        .map_err(|e| format!("denied: read /etc/passwd: {e}"));
    let list = |dir: &str| {
        std::fs::read_dir(dir)
            .map(|entries| format!("LISTED {} entries in {dir}", entries.count()))
            .map_err(|e| format!("denied: list {dir}: {e}"))
    };
    let write = std::fs::write("/tmp/hostile-plugin-was-here", b"x")
        .map(|()| "WROTE /tmp/hostile-plugin-was-here".to_string())
        .map_err(|e| format!("denied: write /tmp/hostile-plugin-was-here: {e}"));
    vec![
        report("fs", read),
        report("fs", list("/")),
        report("fs", list(".")),
        report("fs", write),
    ]
}

fn probe_sockets() -> Vec<Action> {
    use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
    let connect = TcpStream::connect("127.0.0.1:22")
        .map(|_| "CONNECTED to 127.0.0.1:22".to_string())
        .map_err(|e| format!("denied: connect 127.0.0.1:22: {e}"));
    let listen = TcpListener::bind("127.0.0.1:0")
        .map(|l| format!("LISTENING on {:?}", l.local_addr().ok()))
        .map_err(|e| format!("denied: listen 127.0.0.1:0: {e}"));
    let udp = UdpSocket::bind("127.0.0.1:0")
        .map(|s| format!("BOUND udp {:?}", s.local_addr().ok()))
        .map_err(|e| format!("denied: bind udp 127.0.0.1:0: {e}"));
    let resolve = "localhost:80"
        .to_socket_addrs()
        .map(|addrs| format!("RESOLVED localhost to {} addresses", addrs.count()))
        .map_err(|e| format!("denied: resolve localhost: {e}"));
    vec![
        report("socket", connect),
        report("socket", listen),
        report("socket", udp),
        report("socket", resolve),
    ]
}

fn probe_env() -> Vec<Action> {
    let vars: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let args = std::env::args_os().count();
    let cwd = std::env::current_dir();
    let vars = if vars.is_empty() {
        Err("empty: 0 environment variables".to_string())
    } else {
        Ok(format!(
            "FOUND {} environment variables: {}",
            vars.len(),
            vars.join(",")
        ))
    };
    let args = if args == 0 {
        Err("empty: 0 arguments".to_string())
    } else {
        Ok(format!("FOUND {args} arguments"))
    };
    let cwd = match cwd {
        Ok(dir) if !dir.as_os_str().is_empty() && dir.as_os_str() != "/" => {
            Ok(format!("FOUND current dir {}", dir.display()))
        }
        Ok(dir) => Err(format!(
            "empty: current dir {:?}",
            dir.display().to_string()
        )),
        Err(e) => Err(format!("denied: current dir: {e}")),
    };
    vec![report("env", vars), report("env", args), report("env", cwd)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIGGER_LINE: &[u8] = b"{\"id\":null,\"method\":\"hostile.trigger\",\"params\":[]}\n";

    fn plugin(password: &str) -> Hostile {
        let mut p = Hostile::new(PoolConfig {
            user: "w".into(),
            password: password.into(),
            user_agent: "t".into(),
            ..PoolConfig::default()
        });
        p.connected(0);
        p
    }

    fn logs(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Log(l) => Some(l.message.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn passwords_parse() {
        assert_eq!(parse_password("x"), Ok(None));
        assert_eq!(parse_password(""), Ok(None));
        assert_eq!(
            parse_password("loop"),
            Ok(Some((Mode::Loop, When::Trigger)))
        );
        assert_eq!(
            parse_password("big-send"),
            Ok(Some((Mode::BigSend(DEFAULT_BIG_SEND), When::Trigger)))
        );
        assert_eq!(
            parse_password("flood:5000@connected"),
            Ok(Some((Mode::Flood(5000), When::Connected)))
        );
        assert_eq!(
            parse_password("panic@new"),
            Ok(Some((Mode::Panic, When::New)))
        );
        assert!(matches!(
            parse_password("flood:lots"),
            Err(ModeError::BadSize(_))
        ));
        assert!(matches!(
            parse_password("loop:3"),
            Err(ModeError::UnexpectedSize(_))
        ));
        assert!(matches!(
            parse_password("loop@later"),
            Err(ModeError::BadWhen(_))
        ));
        assert!(Mode::Stack.traps() && !Mode::Env.traps());
    }

    #[test]
    fn bad_password_behaves_and_says_so() {
        let mut p = Hostile::new(PoolConfig {
            password: "flood:x".into(),
            ..PoolConfig::default()
        });
        assert_eq!(p.config(), None);
        let out = p.connected(0);
        assert!(logs(&out)[0].starts_with("hostile: bad size"));
        assert!(out.iter().any(|a| matches!(a, Action::Send(_))));
    }

    #[test]
    fn trigger_split_across_chunks_fires_once_per_line() {
        let mut p = plugin("flood:2");
        let (a, b) = TRIGGER_LINE.split_at(25);
        assert!(
            logs(&p.received(1, a))
                .iter()
                .all(|l| !l.starts_with("flood"))
        );
        let out = p.received(1, b);
        assert_eq!(
            logs(&out).iter().filter(|l| l.starts_with("flood")).count(),
            2
        );
        let twice = [TRIGGER_LINE, TRIGGER_LINE].concat();
        let out = p.received(1, &twice);
        assert_eq!(
            logs(&out).iter().filter(|l| l.starts_with("flood")).count(),
            4
        );
    }

    #[test]
    fn without_a_trigger_it_is_a_plain_client() {
        let mut p = plugin("flood:2");
        let out = p.received(
            1,
            b"{\"id\":null,\"method\":\"client.show_message\",\"params\":[\"hi\"]}\n",
        );
        assert_eq!(logs(&out), vec!["pool message: hi"]);
    }

    #[test]
    fn big_send_and_connected_trigger() {
        let mut p = Hostile::new(PoolConfig {
            password: "big-send:1000@connected".into(),
            ..PoolConfig::default()
        });
        let out = p.connected(0);
        let sizes: Vec<usize> = out
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(b.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes.len(), 2, "subscribe + big send");
        assert_eq!(sizes[1], 1000);
    }

    #[test]
    fn actions_from_the_constructor_come_with_the_next_call() {
        let mut p = Hostile::new(PoolConfig {
            password: "flood:3@new".into(),
            ..PoolConfig::default()
        });
        assert_eq!(logs(&p.connected(0)).len(), 3);
        assert!(logs(&p.connected(1)).is_empty());
    }

    #[test]
    fn invalid_jobs_each_break_a_rule() {
        let mut p = plugin("invalid-job");
        let out = p.received(1, TRIGGER_LINE);
        let jobs: Vec<&Job> = out
            .iter()
            .filter_map(|a| match a {
                Action::NewJob(j) => Some(j),
                _ => None,
            })
            .collect();
        assert_eq!(jobs.len(), INVALID_JOBS);
        assert!(jobs.iter().any(|j| j.prev_hash.len() == 31));
        assert!(jobs.iter().any(|j| j.id.is_empty()));
        assert!(jobs.iter().any(|j| matches!(&j.kind,
            WorkKind::Extended(w) if w.merkle_branches.len() == 10_000)));
        assert!(jobs.iter().any(|j| matches!(&j.kind,
            WorkKind::Extended(w) if w.extranonce2_size == 0)));
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::SetShareTarget(t) if t.len() == 31))
        );
    }

    #[test]
    fn probes_report_one_line_each() {
        // Natively nothing is sandboxed, so only the shape is checked here;
        // the host's tests check that the wasm sandbox denies everything.
        for (mode, area, lines) in [
            ("fs", "fs: ", 4),
            ("socket", "socket: ", 4),
            ("env", "env: ", 3),
        ] {
            let mut p = plugin(mode);
            let out = p.received(1, TRIGGER_LINE);
            let probe: Vec<&str> = logs(&out)
                .into_iter()
                .filter(|l| l.starts_with(area))
                .collect();
            assert_eq!(probe.len(), lines, "{mode}: {probe:?}");
        }
    }

    #[test]
    fn validate_settings_misbehaves_on_request() {
        let validate = <Hostile as PoolMachine>::validate_settings;
        assert_eq!(
            validate(r#"{"hostile": "big-send:10"}"#),
            Err("x".repeat(10))
        );
        let env = validate(r#"{"hostile": "env"}"#).unwrap_err();
        assert!(env.starts_with("hostile Env: env: "), "{env}");
        let bad = validate(r#"{"hostile": "flood:lots"}"#).unwrap_err();
        assert!(bad.starts_with("hostile: bad size"), "{bad}");
        // Anything else is checked as the Stratum V1 plugin checks it.
        assert_eq!(validate(r#"{"suggest_difficulty": 2}"#), Ok(()));
        let typo = validate(r#"{"suggest_dificulty": 2}"#).unwrap_err();
        assert!(typo.contains("unknown setting"), "{typo}");
        assert_eq!(
            <Hostile as PoolMachine>::url_schemes(),
            vec!["stratum+tcp".to_string()]
        );
    }

    #[test]
    fn long_lines_do_not_grow_the_scanner() {
        let mut p = plugin("x");
        p.received(1, &vec![b'a'; 3 * MAX_LINE_KEPT]);
        assert!(p.line.len() <= MAX_LINE_KEPT);
    }
}
