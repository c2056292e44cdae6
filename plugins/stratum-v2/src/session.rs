//! One Stratum V2 mining session, sans-IO: the host's events in, actions
//! out ([`PoolMachine`]). After the Noise handshake ([`crate::transport`])
//! it sets up the mining protocol, opens one channel — standard (the pool
//! fixes the merkle root; the host rolls nonce, version and time) or
//! extended (the host builds the coinbase with its own extranonce, for
//! appliances with several devices) — and turns jobs, new previous hashes
//! and targets into the contract's jobs, and shares into submissions.

use std::collections::{BTreeMap, HashMap};

use common_messages_sv2::{
    MESSAGE_TYPE_RECONNECT, MESSAGE_TYPE_SETUP_CONNECTION, MESSAGE_TYPE_SETUP_CONNECTION_ERROR,
    MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS, Protocol, Reconnect, SetupConnection,
    SetupConnectionError, SetupConnectionSuccess,
};
use hashwatt_pool_sdk::{
    Action, ExtendedWork, Job, PoolConfig, PoolMachine, ReconnectRequest, SessionInfo, Share,
    ShareOutcome, ShareResult, WorkKind, settings,
};
use mining_sv2::*;

use crate::authority::AuthorityKey;
use crate::transport::{Event, Frame, Transport, TransportError};

/// URL scheme this plugin claims.
pub const SCHEME: &str = "stratum2+tcp";

/// SetupConnection flag: the device mines only standard jobs.
const REQUIRES_STANDARD_JOBS: u32 = 1;

/// Jobs kept per channel (a pool sends a few future jobs ahead).
const MAX_JOBS: usize = 32;

/// The easiest target a channel may be given: any.
static MAX_TARGET: [u8; 32] = [0xff; 32];

/// Shares awaiting the pool's verdict.
const MAX_PENDING: usize = 1024;

/// Which kind of channel to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Header-only mining: the pool fixes the merkle root.
    Standard,
    /// The host assembles the coinbase with its own extranonce.
    #[default]
    Extended,
}

/// The pool's `settings` table.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The pool's authority key, when the URL does not carry it.
    pub authority_key: Option<String>,
    /// `standard` or `extended` (default).
    pub channel: ChannelKind,
    /// Hashrate announced when opening the channel, H/s (the pool sizes its
    /// first target from it).
    pub nominal_hashrate: Option<f32>,
}

impl Settings {
    /// Parses and checks the settings; errors name the key.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let s: Settings = settings::parse(json)?;
        if let Some(k) = &s.authority_key {
            AuthorityKey::parse(k).map_err(|e| format!("settings.authority_key: {e}"))?;
        }
        if let Some(h) = s.nominal_hashrate
            && !(h.is_finite() && h >= 0.0)
        {
            return Err(format!(
                "settings.nominal_hashrate: must be a number of H/s, not {h}"
            ));
        }
        Ok(s)
    }
}

/// The authority key a pool URL pins: its path (`…:port/KEY`).
pub fn key_in_url(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (_, path) = rest.split_once('/')?;
    let key = path.trim_matches('/');
    (!key.is_empty()).then_some(key)
}

/// A job as the pool announced it, before a previous hash makes it minable.
#[derive(Debug, Clone)]
struct PoolJob {
    version: u32,
    version_rolling: bool,
    work: JobWork,
    /// Its share target, big-endian: fixed for jobs for the current block
    /// when they arrive, and for future jobs when they are activated (a
    /// SetTarget applies to jobs sent after it and to future jobs).
    target: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
enum JobWork {
    MerkleRoot(Vec<u8>),
    Coinbase {
        /// The channel's extranonce prefix when the job arrived (a
        /// SetExtranoncePrefix applies to later jobs only).
        extranonce_prefix: Vec<u8>,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
        branches: Vec<Vec<u8>>,
    },
}

/// The previous block the pool mines on.
#[derive(Debug, Clone)]
struct PrevHash {
    hash: Vec<u8>,
    min_ntime: u32,
    nbits: u32,
}

#[derive(Debug)]
struct Channel {
    id: u32,
    /// The pool's part of the extranonce (extended channels).
    extranonce_prefix: Vec<u8>,
    /// Bytes of extranonce the host rolls (extended channels).
    extranonce_size: u8,
}

enum Phase {
    Idle,
    Handshake(Transport),
    Setup(Transport),
    Opening(Transport),
    Mining(Transport, Channel),
    Closed,
}

/// The Stratum V2 session of one pool connection.
pub struct Session {
    config: PoolConfig,
    settings: Settings,
    authority: Result<AuthorityKey, String>,
    phase: Phase,
    jobs: BTreeMap<u32, PoolJob>,
    prev: Option<PrevHash>,
    /// The job the host mines now, if any.
    active: Option<u32>,
    next_sequence: u32,
    /// Sequence number → the host's share id.
    pending: BTreeMap<u32, u64>,
    /// Share target announced to the host last, big-endian.
    target: Option<Vec<u8>>,
    /// The channel's target for jobs to come, big-endian.
    channel_target: Option<Vec<u8>>,
    /// The pool said it takes no change to the version field.
    fixed_version: bool,
    rng: Box<dyn rand::RngCore>,
    wall_clock: fn() -> u32,
    unknown_logged: HashMap<u8, u32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.config.url)
            .field("jobs", &self.jobs.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Seconds since the Unix epoch by the host's wall clock (WASI).
fn system_clock() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

struct CryptoRng<'a>(&'a mut dyn rand::RngCore);

impl rand::RngCore for CryptoRng<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}

// The boxed generator is a CSPRNG: `StdRng` seeded from WASI random, or a
// test's seeded one.
impl rand::CryptoRng for CryptoRng<'_> {}

impl Session {
    /// A session with the given randomness and wall clock (tests fix both).
    pub fn with_entropy(
        config: PoolConfig,
        rng: Box<dyn rand::RngCore>,
        wall_clock: fn() -> u32,
    ) -> Session {
        let settings = Settings::parse(&config.settings).unwrap_or_default();
        let authority = key_in_url(&config.url)
            .or(settings.authority_key.as_deref())
            .ok_or_else(|| {
                "no authority key: give it in the URL (stratum2+tcp://host:port/KEY) or as settings.authority_key".to_string()
            })
            .and_then(|k| AuthorityKey::parse(k).map_err(|e| e.to_string()));
        Session {
            config,
            settings,
            authority,
            phase: Phase::Idle,
            jobs: BTreeMap::new(),
            prev: None,
            active: None,
            next_sequence: 0,
            pending: BTreeMap::new(),
            target: None,
            channel_target: None,
            fixed_version: false,
            rng,
            wall_clock,
            unknown_logged: HashMap::new(),
        }
    }

    /// The pinned authority key's fingerprint, for status.
    pub fn authority_fingerprint(&self) -> Option<String> {
        self.authority.as_ref().ok().map(|k| k.fingerprint())
    }

    fn fail(&mut self, out: &mut Vec<Action>, reason: impl Into<String>) {
        self.phase = Phase::Closed;
        let reason = reason.into();
        for (_, id) in std::mem::take(&mut self.pending) {
            out.push(result(
                id,
                ShareOutcome::Rejected(format!("connection failed: {reason}")),
            ));
        }
        out.push(Action::Fail(reason));
    }

    fn send<M: binary_sv2::Serialize + binary_sv2::GetSize>(
        transport: &mut Transport,
        out: &mut Vec<Action>,
        message: M,
        msg_type: u8,
        channel_msg: bool,
    ) -> Result<(), TransportError> {
        out.push(Action::Send(transport.send(
            message,
            msg_type,
            0,
            channel_msg,
        )?));
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame, out: &mut Vec<Action>) -> Result<(), String> {
        let mut payload = frame.payload;
        let bad =
            |what: &str, e: binary_sv2::Error| format!("malformed {what} from the pool: {e:?}");
        if frame.extension_type != 0 {
            return Ok(());
        }
        if frame.msg_type == MESSAGE_TYPE_RECONNECT {
            let m: Reconnect =
                binary_sv2::from_bytes(&mut payload).map_err(|e| bad("Reconnect", e))?;
            out.push(Action::Reconnect(ReconnectRequest {
                host: String::from_utf8_lossy(m.new_host.as_bytes()).into_owned(),
                port: m.new_port,
                after_ms: 0,
            }));
            return Ok(());
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        let (phase, r) = match (phase, frame.msg_type) {
            (Phase::Setup(mut t), MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS) => {
                let m: SetupConnectionSuccess = binary_sv2::from_bytes(&mut payload)
                    .map_err(|e| bad("SetupConnection.Success", e))?;
                // REQUIRES_FIXED_VERSION: the version field must not change.
                self.fixed_version = m.flags & 1 != 0;
                let r = self.open_channel(&mut t, out);
                (Phase::Opening(t), r)
            }
            (p, MESSAGE_TYPE_SETUP_CONNECTION_ERROR) => {
                let e: SetupConnectionError = binary_sv2::from_bytes(&mut payload)
                    .map_err(|e| bad("SetupConnection.Error", e))?;
                let code = String::from_utf8_lossy(e.error_code.as_bytes()).into_owned();
                self.phase = p;
                return Err(format!("the pool refused the connection setup: {code}"));
            }
            (Phase::Opening(t), MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS) => {
                let m: OpenStandardMiningChannelSuccess = binary_sv2::from_bytes(&mut payload)
                    .map_err(|e| bad("OpenStandardMiningChannel.Success", e))?;
                let channel = Channel {
                    id: m.channel_id,
                    extranonce_prefix: m.extranonce_prefix.as_bytes().to_vec(),
                    extranonce_size: 0,
                };
                let channel = self.channel_open(channel, m.target.as_bytes(), "standard", out);
                (Phase::Mining(t, channel), Ok(()))
            }
            (Phase::Opening(t), MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS) => {
                let m: OpenExtendedMiningChannelSuccess = binary_sv2::from_bytes(&mut payload)
                    .map_err(|e| bad("OpenExtendedMiningChannel.Success", e))?;
                let size = u8::try_from(m.extranonce_size)
                    .ok()
                    .filter(|s| (1..=16).contains(s))
                    .ok_or_else(|| {
                        format!(
                            "the pool offers {} bytes of extranonce; this appliance rolls 1 to 16",
                            m.extranonce_size
                        )
                    })?;
                let channel = Channel {
                    id: m.channel_id,
                    extranonce_prefix: m.extranonce_prefix.as_bytes().to_vec(),
                    extranonce_size: size,
                };
                let kind = format!("extended ({size}-byte extranonce)");
                let channel = self.channel_open(channel, m.target.as_bytes(), &kind, out);
                (Phase::Mining(t, channel), Ok(()))
            }
            (p @ Phase::Opening(_), MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR) => {
                let e: OpenMiningChannelError = binary_sv2::from_bytes(&mut payload)
                    .map_err(|e| bad("OpenMiningChannel.Error", e))?;
                let code = String::from_utf8_lossy(e.error_code.as_bytes()).into_owned();
                self.phase = p;
                return Err(format!("the pool refused to open a channel: {code}"));
            }
            (Phase::Mining(t, mut ch), ty) => {
                let r = self.on_mining(&mut ch, ty, &mut payload, out);
                (Phase::Mining(t, ch), r)
            }
            (p, ty) => {
                self.note_unknown(ty, out);
                (p, Ok(()))
            }
        };
        self.phase = phase;
        r
    }

    /// Messages on an open channel.
    fn on_mining(
        &mut self,
        ch: &mut Channel,
        ty: u8,
        payload: &mut [u8],
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let bad =
            |what: &str, e: binary_sv2::Error| format!("malformed {what} from the pool: {e:?}");
        match ty {
            MESSAGE_TYPE_NEW_MINING_JOB => {
                let m: NewMiningJob =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("NewMiningJob", e))?;
                let job = PoolJob {
                    version: m.version,
                    version_rolling: true,
                    work: JobWork::MerkleRoot(m.merkle_root.as_bytes().to_vec()),
                    target: None,
                };
                self.add_job(ch, m.job_id, m.min_ntime.into_inner(), job, out);
            }
            MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB => {
                let m: NewExtendedMiningJob =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("NewExtendedMiningJob", e))?;
                let job = PoolJob {
                    version: m.version,
                    version_rolling: m.version_rolling_allowed,
                    work: JobWork::Coinbase {
                        extranonce_prefix: ch.extranonce_prefix.clone(),
                        prefix: m.coinbase_tx_prefix.as_bytes().to_vec(),
                        suffix: m.coinbase_tx_suffix.as_bytes().to_vec(),
                        branches: m
                            .merkle_path
                            .iter()
                            .map(|h| h.as_bytes().to_vec())
                            .collect(),
                    },
                    target: None,
                };
                self.add_job(ch, m.job_id, m.min_ntime.into_inner(), job, out);
            }
            MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {
                let m: SetNewPrevHash =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("SetNewPrevHash", e))?;
                self.prev = Some(PrevHash {
                    hash: m.prev_hash.as_bytes().to_vec(),
                    min_ntime: m.min_ntime,
                    nbits: m.nbits,
                });
                // Only the job it names stays valid.
                let id = m.job_id;
                if !self.jobs.contains_key(&id) {
                    return Err(format!(
                        "SetNewPrevHash names job {id}, which the pool never sent"
                    ));
                }
                self.jobs.retain(|j, _| *j == id);
                self.activate(ch, id, true, out);
            }
            MESSAGE_TYPE_SET_TARGET => {
                let m: SetTarget =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("SetTarget", e))?;
                // For jobs to come and future jobs; the active job keeps
                // its target, so only a harder one applies at once.
                let target = big_endian(m.maximum_target.as_bytes());
                self.channel_target = Some(target.clone());
                if self.target.as_ref().is_none_or(|t| target < *t) {
                    self.announce_target(target, out);
                }
            }
            MESSAGE_TYPE_SET_EXTRANONCE_PREFIX => {
                let m: SetExtranoncePrefix =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("SetExtranoncePrefix", e))?;
                // For jobs sent after it; earlier ones keep theirs.
                ch.extranonce_prefix = m.extranonce_prefix.as_bytes().to_vec();
            }
            MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
                let m: SubmitSharesSuccess =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("SubmitShares.Success", e))?;
                let done: Vec<u32> = self
                    .pending
                    .range(..=m.last_sequence_number)
                    .map(|(s, _)| *s)
                    .collect();
                for s in done {
                    if let Some(id) = self.pending.remove(&s) {
                        out.push(result(id, ShareOutcome::Accepted));
                    }
                }
            }
            MESSAGE_TYPE_SUBMIT_SHARES_ERROR => {
                let m: SubmitSharesError =
                    binary_sv2::from_bytes(payload).map_err(|e| bad("SubmitShares.Error", e))?;
                let code = String::from_utf8_lossy(m.error_code.as_bytes()).into_owned();
                if let Some(id) = self.pending.remove(&m.sequence_number) {
                    out.push(result(id, ShareOutcome::Rejected(code)));
                }
            }
            MESSAGE_TYPE_CLOSE_CHANNEL => {
                return Err("the pool closed the channel".into());
            }
            other => self.note_unknown(other, out),
        }
        Ok(())
    }

    fn note_unknown(&mut self, ty: u8, out: &mut Vec<Action>) {
        let n = self.unknown_logged.entry(ty).or_default();
        *n += 1;
        // A peer can repeat a message forever: say it once, then at powers of ten.
        if n.is_power_of_two() && (*n == 1 || *n >= 1024) {
            out.push(Action::debug(format!(
                "Stratum V2: ignored message type {ty:#04x} ({n} so far)"
            )));
        }
    }

    /// A channel the pool opened: its target applies, the operator hears of it.
    fn channel_open(
        &mut self,
        channel: Channel,
        target_le: &[u8],
        kind: &str,
        out: &mut Vec<Action>,
    ) -> Channel {
        let target = big_endian(target_le);
        self.channel_target = Some(target.clone());
        out.push(Action::info(format!(
            "Stratum V2: {kind} channel {} open (authority {})",
            channel.id,
            self.authority_fingerprint().unwrap_or_default()
        )));
        self.report_session(&channel, out);
        self.announce_target(target, out);
        channel
    }

    /// Tells the operator what the connection negotiated: an encrypted
    /// Stratum V2 channel, to the pool the pinned authority key certified
    /// (the handshake refused any other). Only extended channels roll an
    /// extranonce.
    fn report_session(&self, channel: &Channel, out: &mut Vec<Action>) {
        let kind = if channel.extranonce_size > 0 {
            "extended"
        } else {
            "standard"
        };
        let mut details = vec![("channel id".to_string(), channel.id.to_string())];
        if channel.extranonce_size > 0 {
            details.push((
                "extranonce".to_string(),
                format!("{} bytes rolled", channel.extranonce_size),
            ));
        }
        let rolling = if !self.config.version_rolling {
            "off".to_string()
        } else if self.fixed_version {
            "refused by the pool (fixed version)".to_string()
        } else {
            "1fffe000".to_string()
        };
        details.push(("version rolling".to_string(), rolling));
        out.push(Action::Session(SessionInfo {
            protocol: "Stratum V2".into(),
            channel: Some(kind.into()),
            encrypted: true,
            authority: self.authority_fingerprint(),
            details,
        }));
    }

    fn announce_target(&mut self, be: Vec<u8>, out: &mut Vec<Action>) {
        if self.target.as_ref() != Some(&be) {
            self.target = Some(be.clone());
            out.push(Action::SetShareTarget(be));
        }
    }

    fn add_job(
        &mut self,
        ch: &Channel,
        id: u32,
        min_ntime: Option<u32>,
        job: PoolJob,
        out: &mut Vec<Action>,
    ) {
        if self.jobs.len() >= MAX_JOBS
            && let Some(oldest) = self.jobs.keys().copied().find(|k| Some(*k) != self.active)
        {
            self.jobs.remove(&oldest);
        }
        let mut job = job;
        // A job with a time is for the current block: its target is the
        // channel's now; a future job takes the one in force when activated.
        if min_ntime.is_some() {
            job.target = self.channel_target.clone();
        }
        self.jobs.insert(id, job);
        if let Some(t) = min_ntime {
            if let Some(p) = &mut self.prev {
                p.min_ntime = p.min_ntime.max(t);
            }
            self.activate(ch, id, false, out);
        }
    }

    fn activate(&mut self, ch: &Channel, id: u32, clean: bool, out: &mut Vec<Action>) {
        let channel_target = self.channel_target.clone();
        let (Some(job), Some(prev)) = (self.jobs.get_mut(&id), &self.prev) else {
            return;
        };
        if job.target.is_none() {
            job.target = channel_target;
        }
        let kind = match &job.work {
            JobWork::MerkleRoot(root) => WorkKind::MerkleRoot(root.clone()),
            JobWork::Coinbase {
                extranonce_prefix,
                prefix,
                suffix,
                branches,
            } => WorkKind::Extended(ExtendedWork {
                coinbase_prefix: prefix.clone(),
                extranonce1: extranonce_prefix.clone(),
                extranonce2_size: ch.extranonce_size,
                coinbase_suffix: suffix.clone(),
                merkle_branches: branches.clone(),
            }),
        };
        // BIP 320's general-purpose bits, less those the job's version
        // sets (as the contract asks).
        let version_mask =
            if job.version_rolling && self.config.version_rolling && !self.fixed_version {
                0x1fff_e000 & !job.version
            } else {
                0
            };
        let new_job = Job {
            id: id.to_string(),
            kind,
            prev_hash: prev.hash.clone(),
            version: job.version,
            version_mask,
            nbits: prev.nbits,
            ntime: prev.min_ntime,
            clean,
        };
        let target = job.target.clone();
        self.active = Some(id);
        // The job's target first, so no share on it is judged by another.
        if let Some(t) = target {
            self.announce_target(t, out);
        }
        out.push(Action::NewJob(new_job));
    }

    fn open_channel(&mut self, t: &mut Transport, out: &mut Vec<Action>) -> Result<(), String> {
        let user = self.config.user.clone();
        let identity = binary_sv2::Str0255::try_from(user.as_str())
            .map_err(|_| "the worker name is longer than 255 bytes".to_string())?;
        let rate = self.settings.nominal_hashrate.unwrap_or(1e9);
        let max_target = binary_sv2::U256::from(&MAX_TARGET);
        let r = match self.settings.channel {
            ChannelKind::Standard => Self::send(
                t,
                out,
                OpenStandardMiningChannel {
                    request_id: 1,
                    user_identity: identity,
                    nominal_hash_rate: rate,
                    max_target,
                },
                MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL,
                false,
            ),
            ChannelKind::Extended => Self::send(
                t,
                out,
                OpenExtendedMiningChannel {
                    request_id: 1,
                    user_identity: identity,
                    nominal_hash_rate: rate,
                    max_target,
                    min_extranonce_size: 4,
                },
                MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL,
                false,
            ),
        };
        r.map_err(|e| e.to_string())
    }

    fn setup_connection(&mut self, t: &mut Transport, out: &mut Vec<Action>) -> Result<(), String> {
        fn s(v: &str) -> Result<binary_sv2::Str0255<'_>, String> {
            binary_sv2::Str0255::new(v.as_bytes())
                .map_err(|_| format!("{v:?} is longer than 255 bytes"))
        }
        let flags = match self.settings.channel {
            ChannelKind::Standard => REQUIRES_STANDARD_JOBS,
            ChannelKind::Extended => 0,
        };
        let message = SetupConnection {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags,
            endpoint_host: s(&self.config.host)?,
            endpoint_port: self.config.port,
            vendor: s("hashwatt")?,
            hardware_version: s("")?,
            firmware: s(&self.config.user_agent)?,
            device_id: s("")?,
        };
        Self::send(t, out, message, MESSAGE_TYPE_SETUP_CONNECTION, false).map_err(|e| e.to_string())
    }
}

/// A little-endian Sv2 `U256` as the contract's big-endian bytes.
fn big_endian(little_endian: &[u8]) -> Vec<u8> {
    let mut be = little_endian.to_vec();
    be.reverse();
    be
}

fn result(id: u64, outcome: ShareOutcome) -> Action {
    Action::ShareResult(ShareResult { id, outcome })
}

impl PoolMachine for Session {
    fn url_schemes() -> Vec<String> {
        vec![SCHEME.into()]
    }

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(|_| ())
    }

    fn new(config: PoolConfig) -> Self {
        use rand::SeedableRng;
        Session::with_entropy(
            config,
            Box::new(rand::rngs::StdRng::from_entropy()),
            system_clock,
        )
    }

    fn connected(&mut self, _now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let key = match &self.authority {
            Ok(k) => *k,
            Err(e) => {
                let e = e.clone();
                self.fail(&mut out, e);
                return out;
            }
        };
        self.jobs.clear();
        self.prev = None;
        self.active = None;
        self.target = None;
        match Transport::start(key, &mut CryptoRng(self.rng.as_mut())) {
            Ok((t, first)) => {
                out.push(Action::Send(first));
                self.phase = Phase::Handshake(t);
            }
            Err(e) => self.fail(&mut out, e.to_string()),
        }
        out
    }

    fn received(&mut self, _now_ms: u64, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        let now_s = (self.wall_clock)();
        let events = match &mut self.phase {
            Phase::Handshake(t) | Phase::Setup(t) | Phase::Opening(t) | Phase::Mining(t, _) => {
                t.receive(bytes, now_s)
            }
            Phase::Idle | Phase::Closed => return out,
        };
        let events = match events {
            Ok(e) => e,
            Err(e) => {
                self.fail(&mut out, e.to_string());
                return out;
            }
        };
        for event in events {
            let r = match event {
                Event::Established => match std::mem::replace(&mut self.phase, Phase::Closed) {
                    Phase::Handshake(mut t) => {
                        let r = self.setup_connection(&mut t, &mut out);
                        self.phase = Phase::Setup(t);
                        r
                    }
                    other => {
                        self.phase = other;
                        Ok(())
                    }
                },
                Event::Frame(f) => self.on_frame(f, &mut out),
            };
            if let Err(e) = r {
                self.fail(&mut out, e);
                break;
            }
        }
        out
    }

    fn tick(&mut self, _now_ms: u64) -> Vec<Action> {
        Vec::new()
    }

    fn share_found(&mut self, _now_ms: u64, share: Share) -> Vec<Action> {
        let mut out = Vec::new();
        let Phase::Mining(t, ch) = &mut self.phase else {
            out.push(result(
                share.id,
                ShareOutcome::Rejected("not connected to the pool".into()),
            ));
            return out;
        };
        let Some(job_id) = share
            .job_id
            .parse::<u32>()
            .ok()
            .filter(|j| self.jobs.contains_key(j))
        else {
            out.push(result(
                share.id,
                ShareOutcome::Rejected(format!("job {} is no longer valid", share.job_id)),
            ));
            return out;
        };
        if self.pending.len() >= MAX_PENDING {
            out.push(result(
                share.id,
                ShareOutcome::Rejected("too many shares awaiting the pool".into()),
            ));
            return out;
        }
        let sequence_number = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let sent = if ch.extranonce_size == 0 {
            Self::send(
                t,
                &mut out,
                SubmitSharesStandard {
                    channel_id: ch.id,
                    sequence_number,
                    job_id,
                    nonce: share.nonce,
                    ntime: share.ntime,
                    version: share.version,
                },
                MESSAGE_TYPE_SUBMIT_SHARES_STANDARD,
                true,
            )
        } else {
            let Ok(extranonce) = binary_sv2::B032::new(&share.extranonce2) else {
                out.push(result(
                    share.id,
                    ShareOutcome::Rejected("extranonce longer than 32 bytes".into()),
                ));
                return out;
            };
            Self::send(
                t,
                &mut out,
                SubmitSharesExtended {
                    channel_id: ch.id,
                    sequence_number,
                    job_id,
                    nonce: share.nonce,
                    ntime: share.ntime,
                    version: share.version,
                    extranonce,
                },
                MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED,
                true,
            )
        };
        match sent {
            Ok(()) => {
                self.pending.insert(sequence_number, share.id);
            }
            Err(e) => self.fail(&mut out, e.to_string()),
        }
        out
    }

    fn disconnected(&mut self, _reason: &str) {
        self.phase = Phase::Idle;
        self.pending.clear();
    }
}
