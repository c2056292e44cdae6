//! The cgminer-compatible API on TCP 4028: what mining dashboards and
//! fleet scripts have spoken for a decade. Read-only unless the operator
//! allows privileged commands from listed addresses.
//!
//! The wire format is cgminer's (API 3.7, `api.c`): one request per
//! connection, either plain `command|parameter` or JSON
//! `{"command":…,"parameter":…}`; the reply comes in the same form,
//! ends with a NUL byte, and the connection is closed after it. Commands
//! join with `+` (`summary+pools`), read-only ones only, as in cgminer.
//! Every reply starts with a `STATUS` section carrying cgminer's own code
//! and severity letter, so scripts that test `Code == 11` keep working.
//!
//! Everything comes from the control plane: the one [`Snapshot`], the pool
//! list and the one command path. Pool numbers are positions in priority
//! order, as cgminer's are; `switchpool N` moves pool N to the front (and
//! enables it), which is what makes it the pool mined on here: at once
//! when it is healthy (the operator's choice skips the fail-back hold),
//! otherwise as soon as it connects.
//!
//! Where the appliance does not know a value cgminer reports (difficulty
//! sums, getwork timings, per-device share counts) the field is left out
//! rather than sent as 0; a device without a sensor has no `Temperature`.
//! Hashrates are in MH/s under cgminer's names: `MHS 5s` in the summary is
//! a real 5 s window; per device only a 10 s window is kept, so `devs`
//! says `MHS 10s`, the name cgminer itself uses with `--log 10`.
//!
//! Limits: the caps of [`ConnLimiter`] (from `[cgminer]`), 10 s to send a
//! request, 64 KiB per request (larger: an error status, then closed).
//! Bad input gets a status, never a panic; what peers can make the host
//! log repeatedly is rate-limited.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::{CgminerSettings, PoolEntry, PoolUrl};
use crate::control::{Command, CommandError, Handle};
use crate::miner::PoolId;
use crate::ratelimit::{LogDecision, LogLimiter};
use crate::state::{DeviceSnapshot, Snapshot};
use crate::status::PoolState;
use crate::web::limits::ConnLimiter;

/// The cgminer API version whose format this surface follows.
pub const API_VERSION: &str = "3.7";
/// Longest request accepted, bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Time a client has to send its whole request.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// Time a client has to take the reply.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// A plain request with no line end is complete once the client pauses
/// this long (cgminer takes one `recv`; `echo -n summary | nc` works).
const QUIET: Duration = Duration::from_millis(100);
/// cgminer's default `--log` interval, which names the summary's `MHS 5s`.
const LOG_INTERVAL_SECS: u64 = 5;

/// cgminer's status codes (`MSG_*` in `api.c`), with the severity each
/// carries there.
pub mod code {
    /// `%d Pool(s)`.
    pub const POOL: i32 = 7;
    /// `No pools`.
    pub const NOPOOL: i32 = 8;
    /// `%d ASC(s)`.
    pub const DEVS: i32 = 9;
    /// `No ASCs`.
    pub const NODEVS: i32 = 10;
    /// `Summary`.
    pub const SUMM: i32 = 11;
    /// `Invalid command`.
    pub const INVCMD: i32 = 14;
    /// `… versions`.
    pub const VERSION: i32 = 22;
    /// `Invalid JSON`.
    pub const INVJSON: i32 = 23;
    /// `Missing JSON 'command'`.
    pub const MISCMD: i32 = 24;
    /// `Missing pool id parameter`.
    pub const MISPID: i32 = 25;
    /// `Invalid pool id %d - range is 0 - %d`.
    pub const INVPID: i32 = 26;
    /// `Switching to pool %d:'%s'`.
    pub const SWITCHP: i32 = 27;
    /// `… config`.
    pub const MINECONFIG: i32 = 33;
    /// `Access denied to '%s' command`.
    pub const ACCDENY: i32 = 45;
    /// `Privileged access OK`.
    pub const ACCOK: i32 = 46;
    /// `Enabling pool %d:'%s'`.
    pub const ENAPOOL: i32 = 47;
    /// `Disabling pool %d:'%s'`.
    pub const DISPOOL: i32 = 48;
    /// `Pool %d:'%s' already enabled` (information).
    pub const ALRENAP: i32 = 49;
    /// `Pool %d:'%s' already disabled` (information).
    pub const ALRDISP: i32 = 50;
    /// `Cannot disable last active pool %d:'%s'`.
    pub const DISLASTP: i32 = 51;
    /// `Missing addpool details`.
    pub const MISPDP: i32 = 52;
    /// `Invalid addpool details '%s'`.
    pub const INVPDP: i32 = 53;
    /// `Added pool %d: '%s'`.
    pub const ADDPOOL: i32 = 55;
    /// `Cannot remove last pool %d:'%s'`.
    pub const REMLASTP: i32 = 66;
    /// `Cannot remove active pool %d:'%s'`.
    pub const ACTPOOL: i32 = 67;
    /// `Removed pool %d:'%s'`.
    pub const REMPOOL: i32 = 68;
    /// `… stats`.
    pub const MINESTATS: i32 = 70;
    /// `Missing check cmd`.
    pub const MISCHK: i32 = 71;
    /// `Check command`.
    pub const CHECK: i32 = 72;
}

/// cgminer's severity letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Success,
    Info,
    Error,
}

impl Severity {
    fn letter(self) -> &'static str {
        match self {
            Severity::Success => "S",
            Severity::Info => "I",
            Severity::Error => "E",
        }
    }

    /// The severity `api.c` gives `code`.
    fn of(code: i32) -> Severity {
        use code::*;
        match code {
            POOL | DEVS | SUMM | VERSION | SWITCHP | MINECONFIG | ACCOK | ENAPOOL | DISPOOL
            | ADDPOOL | REMPOOL | MINESTATS | CHECK => Severity::Success,
            ALRENAP | ALRDISP => Severity::Info,
            _ => Severity::Error,
        }
    }
}

/// One value, printed as cgminer prints its type.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    /// A string (escaped in either format).
    Str(String),
    /// An integer.
    Int(i64),
    /// A real with this many decimals (`MHS` 2, `Total MH` 4, …).
    Fixed(f64, usize),
    /// `true` / `false`.
    Bool(bool),
}

type Item = Vec<(String, Val)>;

fn item() -> Item {
    Vec::new()
}

fn put(item: &mut Item, name: &str, v: Val) {
    item.push((name.to_string(), v));
}

fn s(v: impl Into<String>) -> Val {
    Val::Str(v.into())
}

fn int(v: impl TryInto<i64>) -> Val {
    Val::Int(v.try_into().unwrap_or(i64::MAX))
}

/// MH/s from H/s, as `api_add_mhs` prints it.
fn mhs(hs: f64) -> Val {
    Val::Fixed(hs / 1e6, 2)
}

/// The data sections after the status: `SUMMARY`, `POOLS`…
#[derive(Clone, Debug)]
struct Section {
    /// The JSON key (`SUMMARY`, `POOLS`, `DEVS`…).
    key: &'static str,
    /// Plain form: `SUMMARY,` before the one item (summary, version,
    /// config, check) or nothing (pools, devs, stats: each item names
    /// itself).
    plain_label: bool,
    items: Vec<Item>,
}

/// A reply to one command.
#[derive(Clone, Debug)]
enum Reply {
    /// A status and maybe a data section.
    Message {
        code: i32,
        severity: Severity,
        msg: String,
        section: Option<Section>,
    },
    /// cgminer's bare `RESTART` acknowledgement.
    Restart,
}

impl Reply {
    fn status(code: i32, msg: impl Into<String>) -> Reply {
        Reply::Message {
            code,
            severity: Severity::of(code),
            msg: msg.into(),
            section: None,
        }
    }

    fn with(code: i32, msg: impl Into<String>, section: Section) -> Reply {
        Reply::Message {
            code,
            severity: Severity::of(code),
            msg: msg.into(),
            section: Some(section),
        }
    }

    /// A command the appliance refused: cgminer has no code for "the
    /// appliance would not apply it", so the command's own code with
    /// severity `E` and the reason.
    fn failed(code: i32, why: impl std::fmt::Display) -> Reply {
        Reply::Message {
            code,
            severity: Severity::Error,
            msg: why.to_string(),
            section: None,
        }
    }
}

/// What `Description` says.
fn description() -> String {
    format!("hashwatt {}", env!("CARGO_PKG_VERSION"))
}

/// cgminer's plain-text escaping of `,`, `|`, `=` and `\`.
fn escape_plain(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '|' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn json_str(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "0".into()
    }
}

fn render_item_json(out: &mut String, item: &Item) {
    out.push('{');
    for (i, (k, v)) in item.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(k));
        out.push(':');
        match v {
            Val::Str(t) => out.push_str(&json_str(t)),
            Val::Int(n) => out.push_str(&n.to_string()),
            Val::Fixed(f, d) => out.push_str(&fixed(*f, *d)),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('}');
}

fn render_item_plain(out: &mut String, item: &Item) {
    for (i, (k, v)) in item.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        match v {
            Val::Str(t) => out.push_str(&escape_plain(t)),
            Val::Int(n) => out.push_str(&n.to_string()),
            Val::Fixed(f, d) => out.push_str(&fixed(*f, *d)),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('|');
}

fn status_item(code: i32, severity: Severity, msg: &str, when: u64) -> Item {
    let mut st = item();
    put(&mut st, "STATUS", s(severity.letter()));
    put(&mut st, "When", int(when));
    put(&mut st, "Code", int(code));
    put(&mut st, "Msg", s(msg));
    // As cgminer: no description for random probes of an open port.
    if code != code::INVCMD {
        put(&mut st, "Description", s(description()));
    }
    st
}

/// One reply as a JSON object, without the trailing NUL.
fn render_json(reply: &Reply, when: u64) -> String {
    let mut out = String::new();
    match reply {
        Reply::Restart => out.push_str("{\"STATUS\":\"RESTART\",\"id\":1}"),
        Reply::Message {
            code,
            severity,
            msg,
            section,
        } => {
            out.push_str("{\"STATUS\":[");
            render_item_json(&mut out, &status_item(*code, *severity, msg, when));
            out.push(']');
            if let Some(sec) = section {
                out.push_str(",\"");
                out.push_str(sec.key);
                out.push_str("\":[");
                for (i, it) in sec.items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render_item_json(&mut out, it);
                }
                out.push(']');
            }
            out.push_str(",\"id\":1}");
        }
    }
    out
}

/// One reply in cgminer's plain format, without the trailing NUL.
fn render_plain(reply: &Reply, when: u64) -> String {
    let mut out = String::new();
    match reply {
        Reply::Restart => out.push_str("RESTART"),
        Reply::Message {
            code,
            severity,
            msg,
            section,
        } => {
            render_item_plain(&mut out, &status_item(*code, *severity, msg, when));
            if let Some(sec) = section {
                for it in &sec.items {
                    if sec.plain_label {
                        out.push_str(sec.key);
                        out.push(',');
                    }
                    render_item_plain(&mut out, it);
                }
            }
        }
    }
    out
}

/// Replies to a `+`-joined request: one key per command, each an array
/// holding that command's reply, then cgminer's top-level `"id":1`; in
/// plain form `CMD=name|` before each reply.
fn render_joined(parts: &[(String, Reply)], json: bool, when: u64) -> String {
    let mut out = String::new();
    if json {
        out.push('{');
        for (i, (name, reply)) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_str(name));
            out.push_str(":[");
            out.push_str(&render_json(reply, when));
            out.push(']');
        }
        if !parts.is_empty() {
            out.push(',');
        }
        out.push_str("\"id\":1}");
    } else {
        for (name, reply) in parts {
            out.push_str("CMD=");
            out.push_str(&escape_plain(name));
            out.push('|');
            out.push_str(&render_plain(reply, when));
        }
    }
    out
}

/// The commands served: name, privileged, joinable (as in cgminer's table).
const COMMANDS: &[(&str, bool, bool)] = &[
    ("version", false, true),
    ("config", false, true),
    ("devs", false, true),
    ("pools", false, true),
    ("summary", false, true),
    ("stats", false, true),
    ("check", false, false),
    ("privileged", true, false),
    ("switchpool", true, false),
    ("enablepool", true, false),
    ("disablepool", true, false),
    ("addpool", true, false),
    ("removepool", true, false),
    ("restart", true, false),
];

fn lookup(name: &str) -> Option<(bool, bool)> {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, j)| (*p, *j))
}

/// A request as read off the socket.
#[derive(Debug, PartialEq)]
enum Request {
    /// A command (maybe `+`-joined) with its parameter.
    Command {
        json: bool,
        command: String,
        parameter: Option<String>,
    },
    /// Refused before any command ran (invalid JSON, no `command`…).
    Refused { json: bool, code: i32, msg: String },
}

/// Reads a request's bytes (trailing line ends and NULs are no part of it).
fn parse_request(bytes: &[u8]) -> Request {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != 0)
        .map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    if bytes.first() != Some(&b'{') {
        // Plain: the first line, `command|parameter`.
        let line_end = bytes
            .iter()
            .position(|b| *b == b'\n' || *b == 0)
            .unwrap_or(bytes.len());
        let text = String::from_utf8_lossy(&bytes[..line_end]);
        let text = text.trim_end_matches('\r');
        let (command, parameter) = match text.split_once('|') {
            Some((c, p)) => (c.to_string(), Some(p.to_string())),
            None => (text.to_string(), None),
        };
        return Request::Command {
            json: false,
            command,
            parameter,
        };
    }
    let refused = |code: i32, msg: &str| Request::Refused {
        json: true,
        code,
        msg: msg.to_string(),
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) else {
        return refused(code::INVJSON, "Invalid JSON");
    };
    let command = match obj.get("command") {
        None => return refused(code::MISCMD, "Missing JSON 'command'"),
        Some(Value::String(c)) => c.clone(),
        Some(_) => return refused(code::INVCMD, "Invalid command"),
    };
    let parameter = match obj.get("parameter") {
        Some(Value::String(p)) => Some(p.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(Value::Number(n)) => n.as_f64().map(|f| format!("{f:.6}")),
        _ => None,
    };
    Request::Command {
        json: true,
        command,
        parameter,
    }
}

/// C's `atoi`: leading blanks, a sign, digits; anything else ends it
/// (no digits: 0), so `switchpool|1` and `{"parameter":1}` mean the same
/// as in cgminer.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -n } else { n }
}

/// Splits `url,user,pass` as cgminer's `pooldetails` does (`\` escapes
/// the next character); `None` if the user or password is missing.
fn pool_details(param: &str) -> Option<(String, String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = param.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => cur.push(n),
                None => cur.push('\\'),
            },
            ',' if parts.len() < 2 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if parts.len() < 2 {
        return None;
    }
    let pass = cur;
    let user = parts.pop()?;
    let url = parts.pop()?;
    Some((url, user, pass))
}

/// The device's label in `devs` and `stats`: cgminer lists ASICs as `ASC`;
/// a CPU is listed as `CPU`, as cgminer did when it mined on CPUs.
fn device_label(d: &DeviceSnapshot) -> &'static str {
    if d.info.kind == "cpu" { "CPU" } else { "ASC" }
}

/// Each device with its number among devices of its label.
fn numbered(devices: &[DeviceSnapshot]) -> Vec<(usize, &DeviceSnapshot)> {
    let (mut cpu, mut asc) = (0, 0);
    devices
        .iter()
        .map(|d| {
            let n = if device_label(d) == "CPU" {
                &mut cpu
            } else {
                &mut asc
            };
            *n += 1;
            (*n - 1, d)
        })
        .collect()
}

fn hottest(d: &DeviceSnapshot) -> Option<f64> {
    d.telemetry
        .temperatures
        .iter()
        .map(|t| t.temp_c)
        .filter(|t| t.is_finite())
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
}

fn elapsed(snap: &Snapshot) -> f64 {
    (snap.uptime_secs as f64).max(1.0)
}

/// `version`.
fn version_reply() -> Reply {
    let mut v = item();
    put(&mut v, "hashwatt", s(env!("CARGO_PKG_VERSION")));
    put(&mut v, "API", s(API_VERSION));
    Reply::with(
        code::VERSION,
        "hashwatt versions",
        Section {
            key: "VERSION",
            plain_label: true,
            items: vec![v],
        },
    )
}

/// `summary`: `rate_5s_hs` is the total over the last 5 s.
fn summary_reply(snap: &Snapshot, rate_5s_hs: f64) -> Reply {
    let c = &snap.shares;
    let secs = elapsed(snap);
    let total_hashes: u64 = snap.devices.iter().map(|d| d.telemetry.hashes()).sum();
    let mut v = item();
    put(&mut v, "Elapsed", int(snap.uptime_secs));
    put(&mut v, "MHS av", mhs(total_hashes as f64 / secs));
    put(
        &mut v,
        &format!("MHS {LOG_INTERVAL_SECS}s"),
        mhs(rate_5s_hs),
    );
    put(&mut v, "MHS 1m", mhs(snap.hashrate_1m_hs));
    put(&mut v, "Found Blocks", int(c.blocks));
    put(&mut v, "Accepted", int(c.accepted));
    put(&mut v, "Rejected", int(c.rejected_total()));
    put(&mut v, "Hardware Errors", int(c.hardware_errors));
    put(
        &mut v,
        "Utility",
        Val::Fixed(c.accepted as f64 / secs * 60.0, 2),
    );
    put(&mut v, "Stale", int(c.stale));
    put(&mut v, "Total MH", Val::Fixed(total_hashes as f64 / 1e6, 4));
    Reply::with(
        code::SUMM,
        "Summary",
        Section {
            key: "SUMMARY",
            plain_label: true,
            items: vec![v],
        },
    )
}

/// `pools`, in priority order.
fn pools_reply(snap: &Snapshot) -> Reply {
    let pools = &snap.shares.pools;
    if pools.is_empty() {
        return Reply::status(code::NOPOOL, "No pools");
    }
    let items = pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let parsed = p.url.parse::<PoolUrl>().ok();
            let has_stratum = parsed
                .as_ref()
                .is_some_and(|u| u.scheme.starts_with("stratum"));
            let active = has_stratum && p.state == PoolState::Healthy;
            let status = match p.state {
                PoolState::Healthy => "Alive",
                PoolState::Connecting | PoolState::Disabled => "Dead",
                PoolState::Off => "Disabled",
            };
            let mut v = item();
            put(&mut v, "POOL", int(i));
            put(&mut v, "URL", s(&p.url));
            put(&mut v, "Status", s(status));
            put(&mut v, "Priority", int(i));
            put(&mut v, "Long Poll", s("N"));
            put(&mut v, "Accepted", int(p.accepted));
            put(&mut v, "Rejected", int(p.rejected));
            put(&mut v, "Stale", int(p.stale));
            put(&mut v, "User", s(&p.user));
            put(&mut v, "Has Stratum", Val::Bool(has_stratum));
            put(&mut v, "Stratum Active", Val::Bool(active));
            let stratum_url = parsed
                .filter(|_| active)
                .map(|u| format!("{}:{}", u.host, u.port))
                .unwrap_or_default();
            put(&mut v, "Stratum URL", s(stratum_url));
            v
        })
        .collect();
    Reply::with(
        code::POOL,
        format!("{} Pool(s)", pools.len()),
        Section {
            key: "POOLS",
            plain_label: false,
            items,
        },
    )
}

/// `devs`: one entry per device.
fn devs_reply(snap: &Snapshot) -> Reply {
    if snap.devices.is_empty() {
        return Reply::status(code::NODEVS, "No ASCs");
    }
    let secs = elapsed(snap);
    let items: Vec<Item> = numbered(&snap.devices)
        .into_iter()
        .map(|(n, d)| {
            let hashes = d.telemetry.hashes() as f64;
            let mut v = item();
            put(&mut v, device_label(d), int(n));
            put(&mut v, "Name", s(&d.info.name));
            put(&mut v, "ID", int(n));
            put(
                &mut v,
                "Enabled",
                s(if d.telemetry.paused { "N" } else { "Y" }),
            );
            put(&mut v, "Status", s("Alive"));
            if let Some(t) = hottest(d) {
                put(&mut v, "Temperature", Val::Fixed(t, 2));
            }
            put(&mut v, "MHS av", mhs(hashes / secs));
            put(&mut v, "MHS 10s", mhs(d.hashrate_10s_hs));
            put(&mut v, "Hardware Errors", int(d.hardware_errors));
            put(&mut v, "Total MH", Val::Fixed(hashes / 1e6, 4));
            put(&mut v, "Device Elapsed", int(snap.uptime_secs));
            v
        })
        .collect();
    let cpus = snap
        .devices
        .iter()
        .filter(|d| device_label(d) == "CPU")
        .count();
    let ascs = snap.devices.len() - cpus;
    let msg = match (ascs, cpus) {
        (a, 0) => format!("{a} ASC(s)"),
        (0, c) => format!("{c} CPU(s)"),
        (a, c) => format!("{a} ASC(s) - {c} CPU(s)"),
    };
    Reply::with(
        code::DEVS,
        msg,
        Section {
            key: "DEVS",
            plain_label: false,
            items,
        },
    )
}

/// `stats`: one entry per device (with its sensors, as the ASIC drivers
/// add them: `temp1`…, `fan1`… in rpm), then one per pool.
fn stats_reply(snap: &Snapshot) -> Reply {
    let mut items = Vec::new();
    for (n, d) in numbered(&snap.devices) {
        let mut v = item();
        put(&mut v, "STATS", int(items.len()));
        put(&mut v, "ID", s(format!("{}{n}", device_label(d))));
        put(&mut v, "Elapsed", int(snap.uptime_secs));
        for (i, t) in d
            .telemetry
            .temperatures
            .iter()
            .filter(|t| t.temp_c.is_finite())
            .enumerate()
        {
            put(&mut v, &format!("temp{}", i + 1), Val::Fixed(t.temp_c, 2));
        }
        for (i, f) in d.telemetry.fans.iter().enumerate() {
            if let Some(rpm) = f.rpm {
                put(&mut v, &format!("fan{}", i + 1), int(rpm));
            }
        }
        items.push(v);
    }
    for (i, _) in snap.shares.pools.iter().enumerate() {
        let mut v = item();
        put(&mut v, "STATS", int(items.len()));
        put(&mut v, "ID", s(format!("POOL{i}")));
        put(&mut v, "Elapsed", int(snap.uptime_secs));
        items.push(v);
    }
    Reply::with(
        code::MINESTATS,
        "hashwatt stats",
        Section {
            key: "STATS",
            plain_label: false,
            items,
        },
    )
}

/// `config`.
fn config_reply(snap: &Snapshot) -> Reply {
    let cpus = snap
        .devices
        .iter()
        .filter(|d| device_label(d) == "CPU")
        .count();
    let mut v = item();
    put(&mut v, "ASC Count", int(snap.devices.len() - cpus));
    put(&mut v, "PGA Count", int(0));
    put(&mut v, "CPU Count", int(cpus));
    put(&mut v, "Pool Count", int(snap.shares.pools.len()));
    put(&mut v, "Strategy", s("Failover"));
    put(&mut v, "Log Interval", int(LOG_INTERVAL_SECS));
    put(&mut v, "Device Code", s(""));
    put(
        &mut v,
        "OS",
        s(if cfg!(target_os = "linux") {
            "Linux"
        } else {
            "Unix"
        }),
    );
    put(&mut v, "Hotplug", s("None"));
    Reply::with(
        code::MINECONFIG,
        "hashwatt config",
        Section {
            key: "CONFIG",
            plain_label: true,
            items: vec![v],
        },
    )
}

/// What the connection handlers share.
struct Api {
    handle: Handle,
    privileged: Vec<Network>,
    log: Mutex<LogLimiter>,
}

/// A configured pool as cgminer numbers it.
struct PoolRef {
    index: usize,
    id: PoolId,
    entry: PoolEntry,
}

impl Api {
    fn allowed(&self, ip: IpAddr) -> bool {
        self.privileged.iter().any(|n| n.contains(ip))
    }

    /// Logs at most a few lines a minute of what peers can repeat.
    fn noisy(&self, line: impl FnOnce()) {
        let decision = self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(Instant::now());
        if let LogDecision::Write { suppressed } = decision {
            if suppressed > 0 {
                info!("cgminer API: {suppressed} similar lines left out");
            }
            line();
        }
    }

    /// Answers one request from `peer`: the reply's bytes, NUL included.
    async fn answer(&self, request: Request, peer: IpAddr) -> Vec<u8> {
        let when = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = match request {
            Request::Refused { json, code, msg } => {
                let reply = Reply::status(code, msg);
                if json {
                    render_json(&reply, when)
                } else {
                    render_plain(&reply, when)
                }
            }
            Request::Command {
                json,
                command,
                parameter,
            } => {
                if command.contains('+') {
                    let parts = self.joined(&command, peer).await;
                    render_joined(&parts, json, when)
                } else {
                    let reply = self.run(&command, parameter.as_deref(), peer).await;
                    if json {
                        render_json(&reply, when)
                    } else {
                        render_plain(&reply, when)
                    }
                }
            }
        }
        .into_bytes();
        out.push(0);
        out
    }

    /// `a+b+c`: each joinable command once, in order; others are denied.
    async fn joined(&self, command: &str, peer: IpAddr) -> Vec<(String, Reply)> {
        let mut parts: Vec<(String, Reply)> = Vec::new();
        for name in command.split('+').filter(|n| !n.is_empty()) {
            if parts.iter().any(|(n, _)| n == name) {
                continue;
            }
            let reply = match lookup(name) {
                None => Reply::status(code::INVCMD, "Invalid command"),
                Some((_, false)) => denied(name),
                // Parameters do not reach joined commands (as in cgminer).
                Some(_) => self.run(name, None, peer).await,
            };
            parts.push((name.to_string(), reply));
        }
        parts
    }

    /// Runs one command for `peer`.
    async fn run(&self, command: &str, param: Option<&str>, peer: IpAddr) -> Reply {
        let Some((privileged, _)) = lookup(command) else {
            self.noisy(|| debug!(%peer, "cgminer API: invalid command"));
            return Reply::status(code::INVCMD, "Invalid command");
        };
        if privileged && !self.allowed(peer) {
            self.noisy(|| info!(%peer, command, "cgminer API: access denied"));
            return denied(command);
        }
        let param = param.filter(|p| !p.is_empty());
        match command {
            "version" => version_reply(),
            "summary" => summary_reply(
                &self.handle.snapshot(),
                self.handle.hashrate(Duration::from_secs(LOG_INTERVAL_SECS)),
            ),
            "pools" => pools_reply(&self.handle.snapshot()),
            "devs" => devs_reply(&self.handle.snapshot()),
            "stats" => stats_reply(&self.handle.snapshot()),
            "config" => config_reply(&self.handle.snapshot()),
            "check" => self.check(param, peer),
            "privileged" => Reply::status(code::ACCOK, "Privileged access OK"),
            "restart" => match self.handle.execute(Command::Restart).await {
                Ok(_) => Reply::Restart,
                // cgminer's restart has no code of its own to fail with.
                Err(e) => Reply::failed(code::INVCMD, e),
            },
            "addpool" => self.add_pool(param).await,
            _ => self.pool_command(command, param).await,
        }
    }

    /// `check|cmd`: whether a command exists and this peer may run it.
    fn check(&self, param: Option<&str>, peer: IpAddr) -> Reply {
        let Some(name) = param else {
            return Reply::status(code::MISCHK, "Missing check cmd");
        };
        let found = lookup(name);
        let access = found.is_some_and(|(p, _)| !p || self.allowed(peer));
        let yn = |b: bool| s(if b { "Y" } else { "N" });
        let mut v = item();
        put(&mut v, "Exists", yn(found.is_some()));
        put(&mut v, "Access", yn(access));
        Reply::with(
            code::CHECK,
            "Check command",
            Section {
                key: "CHECK",
                plain_label: true,
                items: vec![v],
            },
        )
    }

    /// The configured pools, numbered as cgminer numbers them.
    async fn pool_list(&self) -> Vec<PoolRef> {
        self.handle
            .pools()
            .await
            .into_iter()
            .enumerate()
            .map(|(index, (id, entry))| PoolRef { index, id, entry })
            .collect()
    }

    /// `addpool|url,user,pass`: added last in priority order.
    async fn add_pool(&self, param: Option<&str>) -> Reply {
        let Some(param) = param else {
            return Reply::status(code::MISPDP, "Missing addpool details");
        };
        let Some((url, user, password)) = pool_details(param) else {
            // The password is not echoed back.
            let shown = param.split(',').next().unwrap_or_default();
            return Reply::status(code::INVPDP, format!("Invalid addpool details '{shown}'"));
        };
        // cgminer takes `host:port` as a Stratum pool too.
        let full = if url.contains("://") {
            url.clone()
        } else {
            format!("stratum+tcp://{url}")
        };
        let parsed: PoolUrl = match full.parse() {
            Ok(u) => u,
            Err(e) => {
                return Reply::status(code::INVPDP, format!("Invalid addpool details '{e}'"));
            }
        };
        let index = self.handle.pools().await.len();
        let pool = PoolEntry {
            url: parsed,
            user,
            enabled: true,
            password,
            plugin: None,
            settings: Default::default(),
        };
        match self
            .handle
            .execute(Command::AddPool {
                pool,
                position: None,
            })
            .await
        {
            Ok(_) => {
                info!(url = %full, "cgminer API: pool added");
                Reply::status(code::ADDPOOL, format!("Added pool {index}: '{full}'"))
            }
            Err(e) => Reply::status(
                code::INVPDP,
                format!("Invalid addpool details '{full}': {e}"),
            ),
        }
    }

    /// `switchpool`, `enablepool`, `disablepool`, `removepool` with a pool
    /// number.
    async fn pool_command(&self, command: &str, param: Option<&str>) -> Reply {
        let pools = self.pool_list().await;
        if pools.is_empty() {
            return Reply::status(code::NOPOOL, "No pools");
        }
        let Some(param) = param else {
            return Reply::status(code::MISPID, "Missing pool id parameter");
        };
        let n = atoi(param);
        let Some(pool) = usize::try_from(n).ok().and_then(|i| pools.get(i)) else {
            return Reply::status(
                code::INVPID,
                format!("Invalid pool id {n} - range is 0 - {}", pools.len() - 1),
            );
        };
        let url = pool.entry.url.url.clone();
        let i = pool.index;
        let enabled = pools.iter().filter(|p| p.entry.enabled).count();
        let result = match command {
            "switchpool" => self
                .switch(pool)
                .await
                .map(|()| (code::SWITCHP, format!("Switching to pool {i}:'{url}'"))),
            "enablepool" => {
                if pool.entry.enabled {
                    return Reply::status(
                        code::ALRENAP,
                        format!("Pool {i}:'{url}' already enabled"),
                    );
                }
                self.set_enabled(pool.id, true)
                    .await
                    .map(|()| (code::ENAPOOL, format!("Enabling pool {i}:'{url}'")))
            }
            "disablepool" => {
                if !pool.entry.enabled {
                    return Reply::status(
                        code::ALRDISP,
                        format!("Pool {i}:'{url}' already disabled"),
                    );
                }
                if enabled <= 1 {
                    return Reply::status(
                        code::DISLASTP,
                        format!("Cannot disable last active pool {i}:'{url}'"),
                    );
                }
                self.set_enabled(pool.id, false)
                    .await
                    .map(|()| (code::DISPOOL, format!("Disabling pool {i}:'{url}'")))
            }
            _ => {
                if pools.len() <= 1 {
                    return Reply::status(
                        code::REMLASTP,
                        format!("Cannot remove last pool {i}:'{url}'"),
                    );
                }
                let active = self.handle.snapshot().shares.active_pool_id == Some(pool.id);
                let others = pools.iter().any(|p| p.id != pool.id && p.entry.enabled);
                if active && !others {
                    return Reply::status(
                        code::ACTPOOL,
                        format!("Cannot remove active pool {i}:'{url}'"),
                    );
                }
                self.handle
                    .execute(Command::RemovePool { id: pool.id })
                    .await
                    .map(|_| (code::REMPOOL, format!("Removed pool {i}:'{url}'")))
            }
        };
        match result {
            Ok((code, msg)) => {
                info!(command, pool = %url, "cgminer API: {msg}");
                Reply::status(code, msg)
            }
            Err(e) => {
                warn!(command, pool = %url, "cgminer API: refused: {e}");
                let code = match command {
                    "switchpool" => code::SWITCHP,
                    "enablepool" => code::ENAPOOL,
                    "disablepool" => code::DISPOOL,
                    _ => code::REMPOOL,
                };
                Reply::failed(code, e)
            }
        }
    }

    /// Enables the pool if needed and moves it to the front of the order.
    async fn switch(&self, pool: &PoolRef) -> Result<(), CommandError> {
        if !pool.entry.enabled {
            self.set_enabled(pool.id, true).await?;
        }
        if pool.index != 0 {
            self.handle
                .execute(Command::MovePool {
                    id: pool.id,
                    position: 0,
                })
                .await?;
        }
        Ok(())
    }

    async fn set_enabled(&self, id: PoolId, enabled: bool) -> Result<(), CommandError> {
        self.handle
            .execute(Command::SetPoolEnabled { id, enabled })
            .await
            .map(|_| ())
    }
}

fn denied(command: &str) -> Reply {
    Reply::status(
        code::ACCDENY,
        format!("Access denied to '{command}' command"),
    )
}

/// Tracks whether the JSON object seen so far is complete: braces outside
/// strings, so a request is parsed once, not at every byte a slow client
/// sends.
#[derive(Debug, Default)]
struct JsonScan {
    depth: u64,
    in_string: bool,
    escaped: bool,
    done: bool,
}

impl JsonScan {
    /// Takes the next bytes; true once the outermost object has closed.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.done {
                break;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.done = self.depth == 0;
                }
                _ => {}
            }
        }
        self.done
    }
}

/// What came in on a connection.
#[derive(Debug, PartialEq)]
enum Incoming {
    /// A whole request.
    Request(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes; whether it looked like JSON.
    TooLarge { json: bool },
    /// The client closed without sending anything.
    Nothing,
}

/// Reads one request: JSON up to its closing brace, plain text up to a
/// line end or NUL (or a pause), either up to end of stream.
async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Incoming> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut scan = JsonScan::default();
    loop {
        let plain = buf.first().is_some_and(|b| *b != b'{');
        let n = if plain {
            match tokio::time::timeout(QUIET, r.read(&mut chunk)).await {
                Ok(n) => n?,
                Err(_) => break,
            }
        } else {
            r.read(&mut chunk).await?
        };
        if n == 0 {
            break;
        }
        let new = &chunk[..n];
        buf.extend_from_slice(new);
        if buf.len() > MAX_REQUEST {
            return Ok(Incoming::TooLarge {
                json: buf.first() == Some(&b'{'),
            });
        }
        if buf.first() == Some(&b'{') {
            if scan.feed(new) {
                break;
            }
        } else if new.iter().any(|b| *b == b'\n' || *b == 0) {
            break;
        }
    }
    Ok(if buf.is_empty() {
        Incoming::Nothing
    } else {
        Incoming::Request(buf)
    })
}

/// [`read_request`] within [`READ_DEADLINE`] (`Err(Elapsed)`: too slow).
async fn read_within_deadline<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<std::io::Result<Incoming>, tokio::time::error::Elapsed> {
    tokio::time::timeout(READ_DEADLINE, read_request(r)).await
}

/// Serves one connection: one request, one reply, closed.
async fn connection(api: Arc<Api>, mut stream: TcpStream, peer: SocketAddr) {
    let incoming = match read_within_deadline(&mut stream).await {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => {
            api.noisy(|| debug!(%peer, "cgminer API: read failed: {e}"));
            return;
        }
        Err(_) => {
            api.noisy(|| debug!(%peer, "cgminer API: no whole request within {READ_DEADLINE:?}"));
            return;
        }
    };
    let request = match incoming {
        Incoming::Nothing => return,
        Incoming::Request(bytes) => parse_request(&bytes),
        Incoming::TooLarge { json } => {
            api.noisy(|| info!(%peer, "cgminer API: request over {MAX_REQUEST} bytes refused"));
            if json {
                Request::Refused {
                    json,
                    code: code::INVJSON,
                    msg: "Invalid JSON".into(),
                }
            } else {
                Request::Refused {
                    json,
                    code: code::INVCMD,
                    msg: "Invalid command".into(),
                }
            }
        }
    };
    let reply = api.answer(request, peer.ip()).await;
    let sent = tokio::time::timeout(WRITE_DEADLINE, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await;
    if let Ok(Err(e)) = sent {
        api.noisy(|| debug!(%peer, "cgminer API: reply not delivered: {e}"));
    }
}

/// Binds `addr` and serves the cgminer-compatible API until `shutdown`
/// turns true; returns the bound address (port 0 picks one, for tests).
/// Privileged commands run only for peers in `settings.privileged`; open
/// connections are capped by `settings.max_connections` (per client:
/// `max_connections_per_client`).
pub async fn start(
    addr: SocketAddr,
    settings: &CgminerSettings,
    handle: Handle,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let api = Arc::new(Api {
        handle,
        privileged: settings
            .privileged
            .iter()
            .filter_map(|n| parse_network(n))
            .collect(),
        log: Mutex::new(LogLimiter::new(Duration::from_secs(60), 10)),
    });
    let limiter = ConnLimiter::new(
        settings.max_connections,
        settings.max_connections_per_client,
    );
    Ok((bound, tokio::spawn(serve(listener, api, limiter, shutdown))))
}

/// Accepts until `shutdown`: a permit of `limiter` per connection (none
/// free: closed at once), then each connection on a task of its own.
async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    limiter: ConnLimiter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    api.noisy(|| warn!("cgminer API: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match limiter.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                api.noisy(|| debug!(%peer, "cgminer API: connection refused: {why}"));
                drop(stream);
                continue;
            }
        };
        let api = api.clone();
        conns.spawn(async move {
            let _permit = permit;
            connection(api, stream, peer).await;
        });
    }
    conns.shutdown().await;
}

/// An address or network from `cgminer.privileged`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    /// The network's address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` lies in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses `10.0.0.7`, `192.168.1.0/24` or `fd00::/8`.
pub fn parse_network(s: &str) -> Option<Network> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
        None => max,
    };
    Some(Network { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_cgminer_reads_them() {
        let cmd = |json, c: &str, p: Option<&str>| Request::Command {
            json,
            command: c.into(),
            parameter: p.map(str::to_string),
        };
        assert_eq!(parse_request(b"summary"), cmd(false, "summary", None));
        assert_eq!(
            parse_request(b"switchpool|1\r\n\0"),
            cmd(false, "switchpool", Some("1"))
        );
        assert_eq!(
            parse_request(br#"{"command":"pools","parameter":2}"#),
            cmd(true, "pools", Some("2"))
        );
        assert_eq!(
            parse_request(br#"{"command":"addpool","parameter":"a,b,c"}"#),
            cmd(true, "addpool", Some("a,b,c"))
        );
        let refused = |r: Request| match r {
            Request::Refused { code, json, .. } => (code, json),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(parse_request(b"{nope")), (code::INVJSON, true));
        assert_eq!(refused(parse_request(b"{}")), (code::MISCMD, true));
        assert_eq!(
            refused(parse_request(br#"{"command":7}"#)),
            (code::INVCMD, true)
        );
        assert_eq!(refused(parse_request(b"{\"a\":1}{")), (code::INVJSON, true));
    }

    #[test]
    fn pool_numbers_and_details_follow_cgminer() {
        assert_eq!(atoi("3"), 3);
        assert_eq!(atoi(" -2x"), -2);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("99999999999999999999999"), i64::MAX);
        assert_eq!(
            pool_details("stratum+tcp://h:1,u\\,x,p,q"),
            Some(("stratum+tcp://h:1".into(), "u,x".into(), "p,q".into()))
        );
        assert_eq!(pool_details("h:1,u"), None);
        assert_eq!(pool_details(""), None);
    }

    #[test]
    fn json_objects_end_at_their_closing_brace() {
        let mut scan = JsonScan::default();
        assert!(!scan.feed(br#"{"command":"}{\"","#));
        assert!(!scan.feed(br#""parameter":[1,{}]"#));
        assert!(scan.feed(b"}"));
    }

    #[test]
    fn replies_render_in_both_forms() {
        let r = version_reply();
        let plain = render_plain(&r, 42);
        assert!(
            plain.starts_with(
                "STATUS=S,When=42,Code=22,Msg=hashwatt versions,Description=hashwatt "
            ) && plain.contains("|VERSION,hashwatt=")
                && plain.ends_with(&format!(",API={API_VERSION}|")),
            "{plain}"
        );
        let json: Value = serde_json::from_str(&render_json(&r, 42)).unwrap();
        assert_eq!(json["STATUS"][0]["Code"], 22);
        assert_eq!(json["VERSION"][0]["API"], API_VERSION);
        assert_eq!(json["id"], 1);
        let bad = render_plain(&Reply::status(code::INVCMD, "Invalid command"), 1);
        assert_eq!(bad, "STATUS=E,When=1,Code=14,Msg=Invalid command|");
        let esc = render_plain(&denied("a,b|c=d\\"), 1);
        assert!(
            esc.contains("Msg=Access denied to 'a\\,b\\|c\\=d\\\\' command"),
            "{esc}"
        );
        let joined = render_joined(
            &[
                ("version".into(), version_reply()),
                ("x".into(), Reply::status(14, "Invalid command")),
            ],
            true,
            1,
        );
        let json: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(json["version"][0]["STATUS"][0]["Code"], 22);
        assert_eq!(json["x"][0]["STATUS"][0]["Code"], 14);
        assert_eq!(json["id"], 1);
        assert_eq!(
            render_json(&Reply::Restart, 1),
            r#"{"STATUS":"RESTART","id":1}"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_end_at_a_line_end_a_pause_a_brace_or_the_deadline() {
        use tokio::io::AsyncWriteExt;
        // Plain without a line end: complete once the client pauses.
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(b"summary").await.unwrap();
        let got = read_within_deadline(&mut server).await.unwrap().unwrap();
        assert_eq!(got, Incoming::Request(b"summary".to_vec()));
        // JSON split over writes: complete at its closing brace.
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let reader = tokio::spawn(async move { read_within_deadline(&mut server).await });
        client.write_all(br#"{"command":"#).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.write_all(br#""pools"}"#).await.unwrap();
        let got = reader.await.unwrap().unwrap().unwrap();
        assert_eq!(got, Incoming::Request(br#"{"command":"pools"}"#.to_vec()));
        // An idle client, and one that never finishes its JSON, hit the deadline.
        let (_idle, mut server) = tokio::io::duplex(1 << 20);
        assert!(read_within_deadline(&mut server).await.is_err());
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(b"{\"command\":").await.unwrap();
        assert!(read_within_deadline(&mut server).await.is_err());
        // Too much: refused without reading on.
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client
            .write_all(&vec![b'{'; MAX_REQUEST + 10])
            .await
            .unwrap();
        let got = read_within_deadline(&mut server).await.unwrap().unwrap();
        assert_eq!(got, Incoming::TooLarge { json: true });
        // Closed without a word.
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let got = read_within_deadline(&mut server).await.unwrap().unwrap();
        assert_eq!(got, Incoming::Nothing);
    }

    #[test]
    fn networks_match_their_addresses() {
        let n = parse_network("192.168.1.0/24").unwrap();
        assert!(n.contains("192.168.1.77".parse().unwrap()));
        assert!(n.contains("::ffff:192.168.1.5".parse().unwrap()));
        assert!(!n.contains("192.168.2.1".parse().unwrap()));
        assert!(
            parse_network("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            parse_network("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "x", "10.0.0.1/", "::/129", ""] {
            assert!(parse_network(bad).is_none(), "{bad}");
        }
    }
}
