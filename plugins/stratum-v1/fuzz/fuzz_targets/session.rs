//! Drives `stratum_v1::Session` with whatever a hostile or broken pool could
//! send, chunked arbitrarily and interleaved with ticks (at arbitrary times
//! and at the times the session asked for), shares and reconnects, under
//! arbitrary settings. The session must never panic; every line it asks to
//! send must be newline-terminated JSON; every call asks for at most one
//! wake-up, last, for exactly the deadline the session reports; a tick at
//! that deadline always moves it on; and how the bytes were chunked must not
//! change what it does.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value, json};
use stratum_v1::{Action, PoolConfig, Session, Share};

/// JSON a pool might put anywhere, biased towards what Stratum uses (hex
/// strings, small numbers, arrays).
#[derive(Arbitrary, Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Hex(Vec<u8>),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn value(&self, depth: u32) -> Value {
        if depth > 6 {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::Number((*i).into()),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Hex(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
            Json::Str(s) => Value::String(s.clone()),
            Json::Array(a) => Value::Array(a.iter().map(|j| j.value(depth + 1)).collect()),
            Json::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), v.value(depth + 1)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// A well-formed-ish `mining.notify`, so the fuzzer reaches job building.
#[derive(Arbitrary, Debug)]
struct Notify {
    job_id: Json,
    prev_hash: [u8; 32],
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    branches: Vec<[u8; 32]>,
    version: u32,
    nbits: u32,
    ntime: u32,
    clean: bool,
    /// Replaces one parameter with arbitrary JSON.
    spoil: Option<(u8, Json)>,
}

impl Notify {
    fn params(&self) -> Value {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut params = vec![
            self.job_id.value(0),
            Value::String(hex(&self.prev_hash)),
            Value::String(hex(&self.coinb1)),
            Value::String(hex(&self.coinb2)),
            Value::Array(
                self.branches
                    .iter()
                    .map(|b| Value::String(hex(b)))
                    .collect(),
            ),
            Value::String(format!("{:08x}", self.version)),
            Value::String(format!("{:08x}", self.nbits)),
            Value::String(format!("{:08x}", self.ntime)),
            Value::Bool(self.clean),
        ];
        if let Some((i, j)) = &self.spoil {
            let i = usize::from(*i);
            if i < params.len() {
                params[i] = j.value(0);
            } else {
                params.truncate(i % (params.len() + 1));
            }
        }
        Value::Array(params)
    }
}

/// Something the pool sends: built to reach deep into the session, or raw.
#[derive(Arbitrary, Debug)]
enum PoolLine {
    /// A reply to the `nth` request the session has sent (wrapping).
    Reply {
        nth: u8,
        result: Json,
        error: Json,
    },
    /// A plausible `mining.subscribe` reply.
    SubscribeReply {
        nth: u8,
        extranonce1: Vec<u8>,
        size: Json,
    },
    Notify(Notify),
    SetDifficulty(Json),
    /// A known or unknown method with arbitrary id and params.
    Method {
        which: u8,
        id: Json,
        params: Json,
    },
    /// Not even JSON.
    Raw(Vec<u8>),
}

const METHODS: &[&str] = &[
    "mining.notify",
    "mining.set_difficulty",
    "mining.set_extranonce",
    "mining.set_version_mask",
    "client.reconnect",
    "client.show_message",
    "client.get_version",
    "mining.ping",
];

impl PoolLine {
    fn bytes(&self, sent_ids: &[Value]) -> Vec<u8> {
        let pick = |nth: u8| {
            if sent_ids.is_empty() {
                Value::from(u64::from(nth))
            } else {
                sent_ids[usize::from(nth) % sent_ids.len()].clone()
            }
        };
        let value = match self {
            PoolLine::Reply { nth, result, error } => {
                json!({"id": pick(*nth), "result": result.value(0), "error": error.value(0)})
            }
            PoolLine::SubscribeReply {
                nth,
                extranonce1,
                size,
            } => {
                let en1: String = extranonce1.iter().map(|x| format!("{x:02x}")).collect();
                json!({"id": pick(*nth),
                       "result": [[["mining.notify", "ab"]], en1, size.value(0)],
                       "error": null})
            }
            PoolLine::Notify(n) => {
                json!({"id": null, "method": "mining.notify", "params": n.params()})
            }
            PoolLine::SetDifficulty(d) => {
                json!({"id": null, "method": "mining.set_difficulty", "params": [d.value(0)]})
            }
            PoolLine::Method { which, id, params } => {
                let method = METHODS[usize::from(*which) % METHODS.len()];
                json!({"id": id.value(0), "method": method, "params": params.value(0)})
            }
            PoolLine::Raw(bytes) => return bytes.clone(),
        };
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        line
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connected,
    /// Pool lines, delivered in chunks cut at `cuts` (offsets mod length).
    Pool {
        lines: Vec<PoolLine>,
        cuts: Vec<u16>,
    },
    /// Raw bytes straight into `received`.
    Bytes(Vec<u8>),
    /// Time advances by this many milliseconds, then the session is ticked
    /// (whether or not it asked: it must tolerate early ticks).
    Tick(u32),
    /// Time advances to the wake-up the session asked for, and it is ticked
    /// then, as the host does.
    Wake,
    /// The host found a share for the `job`-th job seen (or any id).
    Share {
        job: u8,
        any_job: Option<String>,
        extranonce2: Vec<u8>,
        ntime: u32,
        nonce: u32,
        version: u32,
    },
    Disconnected,
}

/// Per-pool settings: usually what the plugin knows, sometimes anything.
#[derive(Arbitrary, Debug)]
enum Settings {
    None,
    SuggestDifficulty(Json),
    Object(Vec<(String, Json)>),
    Raw(String),
}

impl Settings {
    fn text(&self) -> String {
        match self {
            Settings::None => "{}".into(),
            Settings::SuggestDifficulty(d) => json!({"suggest_difficulty": d.value(0)}).to_string(),
            Settings::Object(o) => Json::Object(o.clone()).value(0).to_string(),
            Settings::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    version_rolling: bool,
    user: String,
    settings: Settings,
    ops: Vec<Op>,
}

/// The call asked for at most one wake-up, as its last action, and for
/// exactly the deadline the session now reports.
fn check_wake(session: &Session, actions: &[Action]) {
    let wakes: Vec<usize> = actions
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Action::WakeAt(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(wakes.len() <= 1, "several wake-ups in one call: {actions:?}");
    if let Some(&i) = wakes.first() {
        assert_eq!(i + 1, actions.len(), "wake-up not last: {actions:?}");
    }
    let asked = actions.iter().find_map(|a| match a {
        Action::WakeAt(at) => Some(*at),
        _ => None,
    });
    assert_eq!(asked, session.next_deadline(), "{actions:?}");
}

fn without_wakes(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::WakeAt(_)))
        .collect()
}

/// Two sessions fed the same events: one gets each delivery whole, the
/// other chunked. They must act identically.
struct Pair {
    whole: Session,
    chunked: Session,
    sent_ids: Vec<Value>,
    job_ids: Vec<String>,
    share_id: u64,
}

impl Pair {
    fn observe(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Send(bytes) => {
                    assert!(bytes.ends_with(b"\n"), "unterminated send {bytes:?}");
                    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let v: Value = serde_json::from_slice(line)
                            .unwrap_or_else(|e| panic!("sent non-JSON {line:?}: {e}"));
                        if v.get("method").is_some() {
                            if let Some(id) = v.get("id") {
                                self.sent_ids.push(id.clone());
                            }
                        }
                    }
                }
                Action::NewJob(job) => self.job_ids.push(job.id.clone()),
                _ => {}
            }
        }
        self.sent_ids.truncate(64);
        self.job_ids.truncate(64);
    }

    fn both(&mut self, f: impl Fn(&mut Session) -> Vec<Action>) {
        let a = f(&mut self.whole);
        let b = f(&mut self.chunked);
        assert_eq!(a, b);
        check_wake(&self.whole, &a);
        self.observe(&a);
    }

    fn deliver(&mut self, now: u64, bytes: &[u8], cuts: &[u16]) {
        let whole = self.whole.received(now, bytes);
        check_wake(&self.whole, &whole);
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| usize::from(c) % (bytes.len() + 1))
            .collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        points.dedup();
        let mut chunked = Vec::new();
        for w in points.windows(2) {
            let part = self.chunked.received(now, &bytes[w[0]..w[1]]);
            check_wake(&self.chunked, &part);
            chunked.extend(part);
        }
        // Each call asks for its own wake-up; only what they do, and the
        // deadline they leave, must match.
        assert_eq!(
            without_wakes(&whole),
            without_wakes(&chunked),
            "chunking changed the outcome"
        );
        assert_eq!(self.whole.next_deadline(), self.chunked.next_deadline());
        self.observe(&whole);
    }
}

fuzz_target!(|input: Input| {
    let settings = input.settings.text();
    let valid = Session::validate_settings(&settings);
    if let Err(e) = &valid {
        assert!(e.to_string().starts_with("settings"), "{e}");
    }
    let config = PoolConfig {
        url: "stratum+tcp://127.0.0.1:3333".into(),
        host: "127.0.0.1".into(),
        port: 3333,
        user: input.user,
        password: "x".into(),
        user_agent: "hashwatt-fuzz".into(),
        version_rolling: input.version_rolling,
        settings,
    };
    let mut pair = Pair {
        whole: Session::new(config.clone()),
        chunked: Session::new(config),
        sent_ids: Vec::new(),
        job_ids: Vec::new(),
        share_id: 0,
    };
    let mut now = 0u64;
    pair.both(|s| s.connected(0));
    // Settings the plugin refuses fail every connection.
    if valid.is_err() {
        assert_eq!(pair.whole.next_deadline(), None);
    }
    for op in input.ops.iter().take(256) {
        match op {
            Op::Connected => pair.both(|s| s.connected(now)),
            Op::Pool { lines, cuts } => {
                let ids = pair.sent_ids.clone();
                let bytes: Vec<u8> = lines.iter().take(32).flat_map(|l| l.bytes(&ids)).collect();
                pair.deliver(now, &bytes, cuts);
            }
            Op::Bytes(bytes) => pair.deliver(now, bytes, &[]),
            Op::Tick(dt) => {
                now = now.saturating_add(u64::from(*dt));
                pair.both(|s| s.tick(now));
            }
            Op::Wake => {
                if let Some(at) = pair.whole.next_deadline() {
                    now = now.max(at);
                    pair.both(|s| s.tick(now));
                    // The tick dealt with everything due: no busy loop.
                    if let Some(next) = pair.whole.next_deadline() {
                        assert!(next > now, "deadline {next} still due at {now}");
                    }
                }
            }
            Op::Share {
                job,
                any_job,
                extranonce2,
                ntime,
                nonce,
                version,
            } => {
                let job_id = match (any_job, pair.job_ids.is_empty()) {
                    (Some(id), _) => id.clone(),
                    (None, true) => String::new(),
                    (None, false) => pair.job_ids[usize::from(*job) % pair.job_ids.len()].clone(),
                };
                pair.share_id += 1;
                let share = Share {
                    id: pair.share_id,
                    job_id,
                    extranonce2: extranonce2.clone(),
                    ntime: *ntime,
                    nonce: *nonce,
                    version: *version,
                };
                pair.both(|s| s.share_found(now, share.clone()));
            }
            Op::Disconnected => {
                pair.whole.disconnected("fuzz");
                pair.chunked.disconnected("fuzz");
            }
        }
    }
});
