//! The appliance configuration file (TOML).
//!
//! Loading is all-or-nothing: a file with any error is refused as a whole,
//! with the file, line and field named, and nothing in the running system
//! changes. Two stages run before anything starts:
//!
//! - [`Config::parse`] (and [`Config::load`]): syntax, schema (unknown
//!   fields are refused) and every check that needs nothing but the file
//!   and this machine (watt figures, time zone, signal ranges, plugin
//!   names, credential sizes, duplicate pools, API address, hash backend);
//! - [`preflight`]: the checks that need the plugin runtime: each policy's
//!   `config` is handed to its plugin once, installed packages are
//!   verified, and each pool URL's scheme must be claimed by its plugin.
//!
//! Both report [`ConfigError::Invalid`] with the line of the field.

pub mod asic;
mod preflight;

pub use preflight::{Checker, preflight};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::engine::FailSafe;

/// Longest pool `user` or `password`, in bytes. Real pools use a few dozen;
/// anything longer is a mistake that would only trap the plugin later.
pub const MAX_CREDENTIAL_BYTES: usize = 512;

/// Shortest and longest `interval_secs` of an HTTP signal.
pub const HTTP_INTERVAL_SECS: std::ops::RangeInclusive<f64> = 0.1..=86_400.0;

/// Shortest and longest `poll_ms` of a file signal.
pub const FILE_POLL_MS: std::ops::RangeInclusive<u64> = 10..=3_600_000;

/// Longest signal name, in bytes (as the signal hub allows).
pub const MAX_SIGNAL_NAME_BYTES: usize = 128;

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending item (0 if unknown).
        line: usize,
        /// Dotted path of the offending field (`pools[0].url`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pools in priority order; the first healthy one is mined on.
    pub pools: Vec<PoolEntry>,
    /// Hashing threads; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Hash backend name, or "auto" to calibrate at start.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Where persistent state (plugin cache, counters) lives.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Seconds between status lines in the log.
    #[serde(default = "default_status_interval")]
    pub status_interval_secs: u64,
    /// Follow a pool's `client.reconnect` to a different host name.
    #[serde(default)]
    pub allow_pool_redirect: bool,
    /// Seconds a higher-priority pool must stay healthy before mining
    /// returns to it from a failover pool.
    #[serde(default = "default_failback_secs")]
    pub failback_secs: u64,
    /// Ed25519 public keys (hex) whose plugin signatures are trusted.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Load plugins without a valid signature (logged as a warning). Off by
    /// default: only the operator can turn it on.
    #[serde(default)]
    pub allow_unsigned_plugins: bool,
    /// Resource limits for every plugin instance.
    #[serde(default)]
    pub plugin_limits: PluginLimits,
    /// The panel, REST API and metrics.
    #[serde(default)]
    pub web: WebSettings,
    /// The cgminer-compatible API (TCP 4028), off by default.
    #[serde(default)]
    pub cgminer: CgminerSettings,
    /// The ESP-Miner-compatible REST surface for fleet tools, off by default.
    #[serde(default)]
    pub esp_miner: EspMinerSettings,
    /// Energy metering and accounting.
    #[serde(default)]
    pub energy: EnergySettings,
    /// External signals (grid export, price, demand response…) that
    /// policies may subscribe to; the host fetches them.
    #[serde(default)]
    pub signals: Vec<SignalEntry>,
    /// Energy policies, all evaluated; the most restrictive decision wins.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    /// BM13xx ASIC chains on serial ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asic: Vec<asic::AsicEntry>,
    /// Hash on the CPU too. Unset: only when no `[[asic]]` chain is
    /// configured (the CPU is for demos, tests and verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mining: Option<bool>,
}

/// The panel's listener. On the appliance: HTTPS with a certificate made
/// on first start, and plain HTTP redirecting to it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Where the panel and API listen; empty disables them.
    #[serde(
        deserialize_with = "optional_addr",
        serialize_with = "serialize_optional_addr"
    )]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve HTTPS with a self-signed certificate kept in the state
    /// directory (generated on first start).
    pub tls: bool,
    /// Plain-HTTP listener that redirects to the HTTPS one (e.g. `0.0.0.0:80`).
    #[serde(
        deserialize_with = "optional_addr",
        serialize_with = "serialize_optional_addr"
    )]
    pub redirect_listen: Option<std::net::SocketAddr>,
    /// Host names the panel is reached by, besides IP addresses,
    /// `localhost` and this machine's host name (with `.local`).
    pub names: Vec<String>,
    /// `/metrics` readable without a token.
    pub anonymous_metrics: bool,
    /// Open connections at most, all clients together.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_client: usize,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8080))),
            tls: false,
            redirect_listen: None,
            names: Vec::new(),
            anonymous_metrics: false,
            max_connections: 256,
            max_connections_per_client: 32,
        }
    }
}

/// The cgminer-compatible API: read-only unless privileged commands are
/// allowed from listed addresses.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CgminerSettings {
    /// Serve it.
    pub enabled: bool,
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Addresses or networks (`192.168.1.0/24`) that may run privileged
    /// commands (`switchpool`, `addpool`, `restart`…).
    pub privileged: Vec<String>,
    /// Open connections at most, all clients together: cgminer answers one
    /// request per connection, so a fleet poller needs few.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_client: usize,
}

impl Default for CgminerSettings {
    fn default() -> Self {
        CgminerSettings {
            enabled: false,
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 4028)),
            privileged: Vec::new(),
            max_connections: 64,
            max_connections_per_client: 16,
        }
    }
}

/// ESP-Miner's REST API (`/api/system/info`…) over plain HTTP, for the
/// fleet tools BM13xx owners run (pyasic, Home Assistant).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EspMinerSettings {
    /// Serve it.
    pub enabled: bool,
    /// Where it listens (ESP-Miner serves port 80).
    pub listen: std::net::SocketAddr,
    /// Accept its write endpoints (`PATCH /api/system`, restart).
    pub writes: bool,
}

impl Default for EspMinerSettings {
    fn default() -> Self {
        EspMinerSettings {
            enabled: false,
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 80)),
            writes: false,
        }
    }
}

/// Energy metering: RAPL where readable, else a calibrated model.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnergySettings {
    /// IANA time zone for days, months and policies' local time.
    pub time_zone: String,
    /// Grid carbon intensity in g CO₂ per kWh, if known.
    pub co2_g_per_kwh: Option<f64>,
    /// Model: watts drawn with hashing stopped.
    pub idle_w: f64,
    /// Model: watts drawn when every hashing thread runs.
    pub full_load_w: f64,
    /// Where the Linux powercap (RAPL) counters are.
    pub powercap_root: PathBuf,
    /// A signal carrying the appliance's power in watts from an external
    /// meter (smart plug over HTTP or MQTT). Preferred over RAPL and the
    /// model while it is fresh.
    pub meter_signal: Option<String>,
    /// Electricity price per kWh, for the cost in reports.
    pub price_per_kwh: Option<f64>,
    /// The price's currency (`EUR`, `USD`…).
    pub currency: String,
}

impl Default for EnergySettings {
    fn default() -> Self {
        EnergySettings {
            time_zone: "UTC".into(),
            co2_g_per_kwh: None,
            idle_w: 20.0,
            full_load_w: 100.0,
            powercap_root: PathBuf::from("/sys/class/powercap"),
            meter_signal: None,
            price_per_kwh: None,
            currency: "EUR".into(),
        }
    }
}

/// One external signal and where the host gets it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignalEntry {
    /// Name policies subscribe to.
    pub name: String,
    /// A value older than this many seconds is stale (unknown to policies).
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Smallest plausible value.
    pub min: Option<f64>,
    /// Largest plausible value.
    pub max: Option<f64>,
    /// Poll a JSON document over HTTP(S).
    pub http: Option<HttpSignal>,
    /// Subscribe to an MQTT topic.
    pub mqtt: Option<MqttSignal>,
    /// Watch a local file.
    pub file: Option<FileSignal>,
}

/// HTTP(S) JSON polling.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSignal {
    /// URL to GET.
    pub url: String,
    /// JSON pointer to the number (none: the body is the number).
    pub pointer: Option<String>,
    /// Seconds between polls.
    #[serde(default = "default_http_interval")]
    pub interval_secs: f64,
}

/// MQTT subscription.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttSignal {
    /// Broker as `host:port`.
    pub broker: String,
    /// Topic name (no wildcards).
    pub topic: String,
    /// JSON pointer to the number (none: the payload is the number).
    pub pointer: Option<String>,
}

/// A local file holding a number or JSON.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSignal {
    /// The file.
    pub path: PathBuf,
    /// JSON pointer to the number (none: the file is the number).
    pub pointer: Option<String>,
    /// Milliseconds between checks for a change.
    #[serde(default = "default_file_poll")]
    pub poll_ms: u64,
}

/// One energy policy.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Name shown in status ("paused by <name>: …").
    pub name: String,
    /// A first-party policy (`surplus-only`, `price`, `quota`, `schedule`,
    /// `heater`, `grid-emergency`), an installed package, or a `.wasm` path.
    pub plugin: String,
    /// Whether the policy takes part in arbitration.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// What applies while the policy fails (trap, timeout): `"pause"`
    /// (the default) or `"run"`.
    #[serde(default = "default_fail_safe")]
    pub fail_safe: FailSafe,
    /// The policy's own settings, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

fn optional_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("`{s}` is not an address like 127.0.0.1:8421"))
    })
}

fn serialize_optional_addr<S: serde::Serializer>(
    addr: &Option<std::net::SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str(""),
    }
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_ttl() -> u64 {
    60
}

fn default_http_interval() -> f64 {
    10.0
}

fn default_file_poll() -> u64 {
    500
}

fn default_fail_safe() -> FailSafe {
    FailSafe::Pause
}

/// Per-plugin limits the operator may tune, within host maxima.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Wall-clock budget of one call, in milliseconds (1..=1000).
    pub call_timeout_ms: u64,
    /// Linear memory per instance, in MiB (1..=256).
    pub memory_mib: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            call_timeout_ms: 10,
            memory_mib: 16,
        }
    }
}

/// One pool.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    /// `scheme://host:port[/path]`, e.g. `stratum+tcp://pool.example.com:3333`;
    /// the pool's plugin must handle the scheme (checked by [`preflight`]).
    pub url: PoolUrl,
    /// Worker name (usually `account.worker` or a payout address).
    pub user: String,
    /// Whether the pool is used (a disabled pool stays configured).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Worker password; many pools ignore it.
    #[serde(default)]
    pub password: String,
    /// Pool-protocol plugin: the name of an installed plugin, or a path to
    /// a `.wasm` component. Default: the built-in Stratum V1 plugin.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Settings for the pool's plugin (a TOML table, handed to the plugin,
    /// which validates them). Empty by default.
    #[serde(default)]
    pub settings: toml::Table,
}

/// A parsed pool URL, `scheme://host:port[/path]`. Any scheme parses;
/// which ones are usable is decided by the plugins ([`preflight`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUrl {
    /// The URL as written.
    pub url: String,
    /// The scheme, lower-case (`stratum+tcp`, `stratum2+tcp`…).
    pub scheme: String,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// What follows `host:port/`, without the leading and trailing `/`;
    /// empty if nothing does. Stratum V2 puts the authority public key here.
    pub path: String,
}

impl PoolUrl {
    /// The same pool: scheme, host (case-insensitive), port and path equal.
    pub fn same_endpoint(&self, other: &PoolUrl) -> bool {
        self.scheme == other.scheme
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.path == other.path
    }
}

/// Whether `s` is a URL scheme (RFC 3986: a letter, then letters, digits,
/// `+`, `-`, `.`).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

impl std::str::FromStr for PoolUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "`{s}` is not a scheme://host:port URL (e.g. stratum+tcp://pool.example.com:3333)"
            )
        })?;
        if !is_scheme(scheme) {
            return Err(format!("`{s}` has an invalid scheme `{scheme}`"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{s}` contains spaces or control characters"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once("]:")
                .ok_or_else(|| format!("`{s}`: expected [addr]:port"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{s}`: `{h}` is not an IPv6 address"));
            }
            (h, p)
        } else {
            let (h, p) = authority
                .rsplit_once(':')
                .ok_or_else(|| format!("`{s}` has no port"))?;
            let name_ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !name_ok {
                return Err(format!("`{s}` has no valid host"));
            }
            (h, p)
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}` has an invalid port `{port}`"))?;
        if port == 0 {
            return Err(format!("`{s}`: port 0 is not allowed"));
        }
        Ok(PoolUrl {
            url: s.to_string(),
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_string(),
            port,
            path: path.trim_matches('/').to_string(),
        })
    }
}

impl Serialize for PoolUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

impl<'de> Deserialize<'de> for PoolUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_backend() -> String {
    "auto".into()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/hashwatt")
}

fn default_status_interval() -> u64 {
    10
}

fn default_failback_secs() -> u64 {
    60
}

/// What is wrong with one field: the dotted field path (`pools[0].url`)
/// and the message. Turned into [`ConfigError::Invalid`] by [`Problem::at`],
/// which finds the field's line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    field: String,
    message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The error for `path`, with the line of the field in `text`.
    fn at(self, path: &Path, text: &str) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of_field(text, &self.field),
            field: self.field,
            message: self.message,
        }
    }
}

/// Reads the configuration file at `path` as text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Config {
    /// The whole configuration as TOML, as the command path persists it.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Checks a configuration built in memory (by a command) as strictly as
    /// a file: the same checks, reported against `path`.
    pub fn validate(&self, path: &Path, checker: &mut Checker) -> Result<(), ConfigError> {
        let text = self.to_toml().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: 0,
            field: "(top level)".into(),
            message: format!("cannot be written as TOML: {e}"),
        })?;
        let parsed = Config::parse(path, &text)?;
        checker.check(&parsed, path, &text)
    }

    /// Reads and validates the file at `path` (everything but [`preflight`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(path, &read(path)?)
    }

    /// Parses and checks `text` as the contents of `path` (used for
    /// messages only): the schema, then every check that needs nothing but
    /// the file and this machine. [`preflight`] does the rest.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = parse_toml(text).map_err(|p| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: p.line,
            field: p.field,
            message: p.message,
        })?;
        config.check().map_err(|p| p.at(path, text))?;
        Ok(config)
    }

    /// Cross-field and value checks serde cannot express; the first
    /// problem found.
    fn check(&self) -> Result<(), Problem> {
        self.check_pools()?;
        if self.threads > 1024 {
            return Err(Problem::new(
                "threads",
                format!("{} threads is not plausible (at most 1024)", self.threads),
            ));
        }
        check_backend(&self.backend)?;
        if !(1..=1000).contains(&self.plugin_limits.call_timeout_ms) {
            return Err(Problem::new(
                "plugin_limits.call_timeout_ms",
                format!(
                    "{} ms is outside 1..=1000",
                    self.plugin_limits.call_timeout_ms
                ),
            ));
        }
        if !(1..=256).contains(&self.plugin_limits.memory_mib) {
            return Err(Problem::new(
                "plugin_limits.memory_mib",
                format!("{} MiB is outside 1..=256", self.plugin_limits.memory_mib),
            ));
        }
        for (i, key) in self.trusted_keys.iter().enumerate() {
            crate::plugin::package::parse_public_key(key)
                .map_err(|e| Problem::new(format!("trusted_keys[{i}]"), e.to_string()))?;
        }
        self.check_web()?;
        self.energy.check()?;
        self.check_signals()?;
        if let Some(name) = &self.energy.meter_signal
            && !self.signals.iter().any(|s| &s.name == name)
        {
            return Err(Problem::new(
                "energy.meter_signal",
                format!("no [[signals]] entry is named {name:?}"),
            ));
        }
        self.check_policies()?;
        asic::check(&self.asic)?;
        if self.status_interval_secs == 0 {
            return Err(Problem::new("status_interval_secs", "must be at least 1"));
        }
        Ok(())
    }

    fn check_pools(&self) -> Result<(), Problem> {
        if self.pools.is_empty() {
            return Err(Problem::new(
                "pools",
                "at least one [[pools]] entry is required",
            ));
        }
        for (i, p) in self.pools.iter().enumerate() {
            if p.user.trim().is_empty() {
                return Err(Problem::new(
                    format!("pools[{i}].user"),
                    "must not be empty",
                ));
            }
            check_credential(&p.user).map_err(|m| Problem::new(format!("pools[{i}].user"), m))?;
            check_credential(&p.password)
                .map_err(|m| Problem::new(format!("pools[{i}].password"), m))?;
            if let Some(spec) = &p.plugin {
                PluginSource::parse(spec)
                    .map_err(|m| Problem::new(format!("pools[{i}].plugin"), m))?;
            }
            if let Some(j) = self.pools[..i]
                .iter()
                .position(|o| o.url.same_endpoint(&p.url) && o.user == p.user)
            {
                return Err(Problem::new(
                    format!("pools[{i}].url"),
                    format!(
                        "pools[{i}] is the same pool and user as pools[{j}] ({} as {:?}); \
                         remove one (a second connection would only split the same work)",
                        p.url.url, p.user
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_web(&self) -> Result<(), Problem> {
        let w = &self.web;
        // Two of the appliance's own listeners on one port would fail at
        // start with a bare "address in use"; say which ones clash.
        if self.esp_miner.enabled {
            let esp = self.esp_miner.listen;
            for (field, addr) in [
                ("web.listen", w.listen),
                ("web.redirect_listen", w.redirect_listen),
            ] {
                if let Some(a) = addr
                    && a.port() == esp.port()
                    && (a.ip() == esp.ip() || a.ip().is_unspecified() || esp.ip().is_unspecified())
                {
                    return Err(Problem::new(
                        "esp_miner.listen",
                        format!(
                            "{esp} takes the same port as {field} ({a}); give one of them another port"
                        ),
                    ));
                }
            }
        }
        if w.redirect_listen.is_some() && !w.tls {
            return Err(Problem::new(
                "web.redirect_listen",
                "redirects go to HTTPS: set `tls = true` too, or remove it",
            ));
        }
        for (field, n, max) in [
            ("web.max_connections", w.max_connections, 65_536),
            (
                "web.max_connections_per_client",
                w.max_connections_per_client,
                w.max_connections.max(1),
            ),
        ] {
            if n == 0 || n > max {
                return Err(Problem::new(field, format!("{n} is outside 1..={max}")));
            }
        }
        for (i, name) in w.names.iter().enumerate() {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(Problem::new(
                    format!("web.names[{i}]"),
                    format!("{name:?} is not a host name like hashwatt.local"),
                ));
            }
        }
        let c = &self.cgminer;
        for (field, n, max) in [
            ("cgminer.max_connections", c.max_connections, 65_536),
            (
                "cgminer.max_connections_per_client",
                c.max_connections_per_client,
                c.max_connections.max(1),
            ),
        ] {
            if n == 0 || n > max {
                return Err(Problem::new(field, format!("{n} is outside 1..={max}")));
            }
        }
        for (i, net) in self.cgminer.privileged.iter().enumerate() {
            if crate::web::cgminer::parse_network(net).is_none() {
                return Err(Problem::new(
                    format!("cgminer.privileged[{i}]"),
                    format!("{net:?} is not an address or network like 192.168.1.0/24"),
                ));
            }
        }
        Ok(())
    }

    fn check_signals(&self) -> Result<(), Problem> {
        for (i, sig) in self.signals.iter().enumerate() {
            let at = |field: &str| format!("signals[{i}].{field}");
            if sig.name.is_empty() || sig.name.len() > MAX_SIGNAL_NAME_BYTES {
                return Err(Problem::new(
                    at("name"),
                    format!("must be 1..={MAX_SIGNAL_NAME_BYTES} bytes"),
                ));
            }
            if self.signals[..i].iter().any(|o| o.name == sig.name) {
                return Err(Problem::new(
                    at("name"),
                    format!("signal {:?} is defined twice", sig.name),
                ));
            }
            if sig.ttl_secs == 0 {
                return Err(Problem::new(
                    at("ttl_secs"),
                    "must be at least 1 (values older than ttl_secs are unknown to policies)",
                ));
            }
            for (field, bound) in [("min", sig.min), ("max", sig.max)] {
                if let Some(v) = bound
                    && !v.is_finite()
                {
                    return Err(Problem::new(
                        at(field),
                        format!("must be a finite number, not {v}"),
                    ));
                }
            }
            if let (Some(lo), Some(hi)) = (sig.min, sig.max)
                && lo > hi
            {
                return Err(Problem::new(
                    at("min"),
                    format!("min {lo} is greater than max {hi}"),
                ));
            }
            let sources = usize::from(sig.http.is_some())
                + usize::from(sig.mqtt.is_some())
                + usize::from(sig.file.is_some());
            if sources > 1 {
                return Err(Problem::new(
                    format!("signals[{i}]"),
                    "give at most one of http, mqtt, file",
                ));
            }
            if let Some(h) = &sig.http {
                check_http_url(&h.url).map_err(|m| Problem::new(at("http.url"), m))?;
                if !(h.interval_secs.is_finite() && HTTP_INTERVAL_SECS.contains(&h.interval_secs)) {
                    return Err(Problem::new(
                        at("http.interval_secs"),
                        format!(
                            "{} s is outside {}..={} s",
                            h.interval_secs,
                            HTTP_INTERVAL_SECS.start(),
                            HTTP_INTERVAL_SECS.end()
                        ),
                    ));
                }
                check_pointer(h.pointer.as_deref())
                    .map_err(|m| Problem::new(at("http.pointer"), m))?;
            }
            if let Some(m) = &sig.mqtt {
                if m.broker
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(Problem::new(
                        at("mqtt.broker"),
                        format!("{:?} is not host:port", m.broker),
                    ));
                }
                if m.topic.is_empty() || m.topic.contains(['+', '#']) {
                    return Err(Problem::new(
                        at("mqtt.topic"),
                        format!(
                            "{:?} is not a topic name (non-empty, no + or # wildcards)",
                            m.topic
                        ),
                    ));
                }
                check_pointer(m.pointer.as_deref())
                    .map_err(|msg| Problem::new(at("mqtt.pointer"), msg))?;
            }
            if let Some(f) = &sig.file {
                if f.path.as_os_str().is_empty() {
                    return Err(Problem::new(at("file.path"), "must not be empty"));
                }
                if !FILE_POLL_MS.contains(&f.poll_ms) {
                    return Err(Problem::new(
                        at("file.poll_ms"),
                        format!(
                            "{} ms is outside {}..={} ms",
                            f.poll_ms,
                            FILE_POLL_MS.start(),
                            FILE_POLL_MS.end()
                        ),
                    ));
                }
                check_pointer(f.pointer.as_deref())
                    .map_err(|m| Problem::new(at("file.pointer"), m))?;
            }
        }
        Ok(())
    }

    fn check_policies(&self) -> Result<(), Problem> {
        for (i, p) in self.policies.iter().enumerate() {
            if crate::policy::state::check_name(&p.name).is_err() {
                return Err(Problem::new(
                    format!("policies[{i}].name"),
                    format!(
                        "{:?} is not a policy name: 1 to 64 letters, digits, '.', '_' or '-', \
                         not starting with '.' (it names the policy's state file)",
                        p.name
                    ),
                ));
            }
            if self.policies[..i].iter().any(|o| o.name == p.name) {
                return Err(Problem::new(
                    format!("policies[{i}].name"),
                    format!("policy {:?} is defined twice", p.name),
                ));
            }
            if crate::plugin::builtin::policy(&p.plugin).is_none() {
                PluginSource::parse(&p.plugin).map_err(|m| {
                    let first_party: Vec<&str> = crate::plugin::builtin::POLICIES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect();
                    Problem::new(
                        format!("policies[{i}].plugin"),
                        format!("{m}, or a first-party policy ({})", first_party.join(", ")),
                    )
                })?;
            }
        }
        Ok(())
    }
}

impl EnergySettings {
    fn check(&self) -> Result<(), Problem> {
        if jiff::tz::TimeZone::get(&self.time_zone).is_err() {
            return Err(Problem::new(
                "energy.time_zone",
                format!(
                    "unknown time zone {:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
                    self.time_zone
                ),
            ));
        }
        for (field, w) in [("idle_w", self.idle_w), ("full_load_w", self.full_load_w)] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Problem::new(
                    format!("energy.{field}"),
                    format!("must be a finite number of watts, 0 or more, not {w}"),
                ));
            }
        }
        if self.full_load_w <= self.idle_w {
            return Err(Problem::new(
                "energy.full_load_w",
                format!(
                    "{} W must be greater than idle_w ({} W)",
                    self.full_load_w, self.idle_w
                ),
            ));
        }
        if let Some(g) = self.co2_g_per_kwh
            && !(g.is_finite() && g >= 0.0)
        {
            return Err(Problem::new(
                "energy.co2_g_per_kwh",
                format!("must be a finite number of g CO₂ per kWh, 0 or more, not {g}"),
            ));
        }
        if let Some(p) = self.price_per_kwh
            && !(p.is_finite() && (0.0..=1000.0).contains(&p))
        {
            return Err(Problem::new(
                "energy.price_per_kwh",
                format!("must be a finite price per kWh in 0..=1000, not {p}"),
            ));
        }
        if self.currency.is_empty()
            || self.currency.len() > 8
            || !self
                .currency
                .chars()
                .all(|c| c.is_alphanumeric() || "$€£¥₿".contains(c))
        {
            return Err(Problem::new(
                "energy.currency",
                format!("{:?} is not a currency code like EUR", self.currency),
            ));
        }
        Ok(())
    }
}

/// What a `plugin = "…"` value names: an installed package or a `.wasm` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginSource<'a> {
    /// An installed (signed) package, by name.
    Package(&'a str),
    /// A bare component file (unsigned).
    File(&'a Path),
}

impl<'a> PluginSource<'a> {
    /// Classifies `spec`: a path if it ends in `.wasm`, else a package name
    /// (1 to 64 letters, digits, `-`, `_`, `.`, not starting with `.`).
    /// Anything else is refused with the reason.
    pub fn parse(spec: &'a str) -> Result<Self, String> {
        if spec.ends_with(".wasm") {
            if spec.len() == ".wasm".len() || spec.chars().any(char::is_control) {
                return Err(format!("{spec:?} is not a usable path to a .wasm file"));
            }
            return Ok(PluginSource::File(Path::new(spec)));
        }
        let package = (1..=64).contains(&spec.len())
            && !spec.starts_with('.')
            && spec
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if package {
            Ok(PluginSource::Package(spec))
        } else {
            Err(format!(
                "{spec:?} is neither a package name (1 to 64 letters, digits, '-', '_', '.', \
                 not starting with '.') nor a path ending in .wasm"
            ))
        }
    }
}

/// A pool `user` or `password`: bounded, and no control characters (they
/// would break the line-based protocols and the logs).
fn check_credential(value: &str) -> Result<(), String> {
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(format!(
            "{} bytes is too long (at most {MAX_CREDENTIAL_BYTES})",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters (newlines, tabs…)".into());
    }
    Ok(())
}

/// `auto`, or a backend this CPU runs.
fn check_backend(name: &str) -> Result<(), Problem> {
    if name == "auto" {
        return Ok(());
    }
    let usable = || {
        std::iter::once("auto")
            .chain(hashwatt_hash::available().iter().map(|b| b.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if hashwatt_hash::by_name(name).is_some() {
        Ok(())
    } else if hashwatt_hash::ALL_BACKENDS.contains(&name) {
        Err(Problem::new(
            "backend",
            format!(
                "hash backend {name:?} is not supported on this CPU; usable here: {}",
                usable()
            ),
        ))
    } else {
        Err(Problem::new(
            "backend",
            format!("unknown hash backend {name:?}; usable here: {}", usable()),
        ))
    }
}

/// An `http://` or `https://` URL with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains spaces or control characters"));
    }
    Ok(())
}

/// A JSON pointer: empty (the whole document) or starting with `/`.
fn check_pointer(pointer: Option<&str>) -> Result<(), String> {
    match pointer {
        Some(p) if !p.is_empty() && !p.starts_with('/') => Err(format!(
            "{p:?} is not a JSON pointer (they start with '/', e.g. \"/{p}\")"
        )),
        _ => Ok(()),
    }
}

/// Where and why a TOML document did not deserialise.
#[derive(Debug)]
pub(crate) struct TomlProblem {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// Dotted path of the field, or "(top level)".
    pub field: String,
    /// What was wrong.
    pub message: String,
}

/// Deserialises `text`, naming the line and field of the first problem, so
/// every TOML file the operator writes (config, plugin manifests) reports
/// errors the same way.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TomlProblem> {
    let problem =
        |span: Option<std::ops::Range<usize>>, field: String, message: String| TomlProblem {
            line: span.map(|s| line_of(text, s.start)).unwrap_or(0),
            field: if field.is_empty() || field == "." {
                "(top level)".into()
            } else {
                field
            },
            message,
        };
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| problem(e.span(), String::new(), e.message().to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        problem(inner.span(), field, inner.message().to_string())
    })
}

/// 1-based line number of byte offset `pos` in `text`.
fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based line of a dotted field path (`pools[1].user`) in `text`: of the
/// field's key, or of the nearest enclosing item that is written out (a
/// field left at its default has no line of its own); 0 if none is.
fn line_of_field(text: &str, field: &str) -> usize {
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return 0;
    };
    let mut line = 0;
    let mut here: Option<&toml::de::DeValue<'_>> = None;
    for part in field.split('.') {
        let (key, indices) = part.split_once('[').unwrap_or((part, ""));
        let table = match here {
            None => Some(doc.get_ref()),
            Some(v) => v.as_table(),
        };
        let Some((k, v)) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key)) else {
            break;
        };
        line = line_of(text, k.span().start);
        here = Some(v.get_ref());
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            let Some(element) = index
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .and_then(|i| here?.as_array()?.get(i))
            else {
                return line;
            };
            line = line_of(text, element.span().start);
            here = Some(element.get_ref());
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn minimal_config_parses() {
        let c = parse("[[pools]]\nurl = \"stratum+tcp://pool.example.com:3333\"\nuser = \"w1\"\n")
            .unwrap();
        assert_eq!(c.pools[0].url.host, "pool.example.com");
        assert_eq!(c.pools[0].url.port, 3333);
        assert_eq!(c.threads, 0);
        assert_eq!(c.backend, "auto");
    }

    #[test]
    fn bad_field_names_file_line_and_field() {
        let err = parse(
            "threads = 2\n[[pools]]\nurl = \"stratum+tcp://h:3333\"\nuser = \"w\"\npassword = 5\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("test.toml:5: field `pools[0].password`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_url_is_refused() {
        let msg = parse("[[pools]]\nurl = \"stratum+tcp://h:99999\"\nuser = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("test.toml:2: field `pools[0].url`") && msg.contains("invalid port"),
            "{msg}"
        );
        for (url, why) in [
            ("pool.example.com:3333", "not a scheme://host:port URL"),
            ("stratum+tcp://pool.example.com", "no port"),
            ("1tcp://h:1", "invalid scheme"),
            ("stratum+tcp://user@h:1", "no valid host"),
            ("stratum+tcp://a:b:1", "no valid host"),
            ("stratum+tcp://h:0", "port 0"),
            ("stratum+tcp://[nope]:1", "not an IPv6 address"),
            ("stratum+tcp://h :1", "spaces"),
        ] {
            let msg = parse(&format!("[[pools]]\nurl = {url:?}\nuser = \"w\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("test.toml:2: field `pools[0].url`") && msg.contains(why),
                "{url}: {msg}"
            );
        }
    }

    #[test]
    fn any_scheme_parses_with_host_port_and_path() {
        let u: PoolUrl = "stratum2+tcp://Pool.Example.com:34254/9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
            .parse()
            .unwrap();
        assert_eq!(u.scheme, "stratum2+tcp");
        assert_eq!((u.host.as_str(), u.port), ("Pool.Example.com", 34254));
        assert_eq!(
            u.path,
            "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
        );
        let u: PoolUrl = "Stratum+TCP://h:3333/".parse().unwrap();
        assert_eq!((u.scheme.as_str(), u.path.as_str()), ("stratum+tcp", ""));
        assert_eq!(u.url, "Stratum+TCP://h:3333/");
        // A scheme no plugin claims parses; the preflight refuses it.
        assert!(parse("[[pools]]\nurl = \"http://h:1\"\nuser = \"w\"\n").is_ok());
    }

    #[test]
    fn unknown_field_and_syntax_errors() {
        let msg = parse("treads = 2\n[[pools]]\nurl = \"stratum+tcp://h:1\"\nuser = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("test.toml:1") && msg.contains("treads"),
            "{msg}"
        );
        let msg = parse("threads = = 2\n").unwrap_err().to_string();
        assert!(msg.starts_with("test.toml:1:"), "{msg}");
    }

    #[test]
    fn semantic_checks() {
        let msg = parse("pools = []\n").unwrap_err().to_string();
        assert!(
            msg.contains("pools") && msg.contains("at least one"),
            "{msg}"
        );
        let msg = parse("[[pools]]\nurl = \"stratum+tcp://h:1\"\nuser = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("pools[0].user") && msg.contains("test.toml:3"),
            "{msg}"
        );
    }

    #[test]
    fn ipv6_url() {
        let u: PoolUrl = "stratum+tcp://[::1]:3333".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3333));
    }

    /// Three lines: one valid pool. Whatever follows starts at line 4.
    const POOL: &str = "[[pools]]\nurl = \"stratum+tcp://h:1\"\nuser = \"w\"\n";

    /// The error for `POOL` + `rest`, which must start with
    /// `test.toml:<line>: field `<field>`` and contain `what`.
    #[track_caller]
    fn refused(rest: &str, line: usize, field: &str, what: &str) {
        let text = format!("{POOL}{rest}");
        let msg = match parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        let head = format!("test.toml:{line}: field `{field}`: ");
        assert!(
            msg.starts_with(&head) && msg.contains(what),
            "want {head}…{what}…, got: {msg}"
        );
    }

    #[test]
    fn energy_figures_must_be_finite_and_ordered() {
        for v in ["nan", "inf", "-inf", "-1.0"] {
            refused(
                &format!("[energy]\nidle_w = {v}\n"),
                5,
                "energy.idle_w",
                "finite number of watts",
            );
            refused(
                &format!("[energy]\nidle_w = 1.0\nfull_load_w = {v}\n"),
                6,
                "energy.full_load_w",
                "finite number of watts",
            );
            refused(
                &format!("[energy]\nco2_g_per_kwh = {v}\n"),
                5,
                "energy.co2_g_per_kwh",
                "finite number",
            );
        }
        refused(
            "[energy]\nidle_w = 50.0\nfull_load_w = 50.0\n",
            6,
            "energy.full_load_w",
            "greater than idle_w (50 W)",
        );
        // Only full_load_w written: the line is that of the key.
        refused(
            "[energy]\nfull_load_w = 10.0\n",
            5,
            "energy.full_load_w",
            "greater than idle_w (20 W)",
        );
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        refused(
            "\n[energy]\ntime_zone = \"Europe/Berlln\"\n",
            6,
            "energy.time_zone",
            "unknown time zone \"Europe/Berlln\"",
        );
        let c = parse(&format!("{POOL}[energy]\ntime_zone = \"Europe/Berlin\"\n")).unwrap();
        assert_eq!(c.energy.time_zone, "Europe/Berlin");
    }

    #[test]
    fn signal_ranges_and_ttl() {
        let sig = "[[signals]]\nname = \"s\"\n";
        refused(
            &format!("{sig}min = 5.0\nmax = 3.0\n"),
            6,
            "signals[0].min",
            "min 5 is greater than max 3",
        );
        refused(&format!("{sig}max = nan\n"), 6, "signals[0].max", "finite");
        refused(&format!("{sig}min = -inf\n"), 6, "signals[0].min", "finite");
        refused(
            &format!("{sig}ttl_secs = 0\n"),
            6,
            "signals[0].ttl_secs",
            "at least 1",
        );
        refused(
            "[[signals]]\nname = \"\"\n",
            5,
            "signals[0].name",
            "1..=128 bytes",
        );
        // The second signal's line, not the first one's.
        refused(
            &format!("{sig}[[signals]]\nname = \"t\"\nttl_secs = 0\n"),
            8,
            "signals[1].ttl_secs",
            "at least 1",
        );
    }

    #[test]
    fn signal_sources_are_checked() {
        let sig = "[[signals]]\nname = \"s\"\n";
        for v in ["inf", "nan", "0.01", "86401.0", "-1.0"] {
            refused(
                &format!("{sig}http = {{ url = \"http://m/x\", interval_secs = {v} }}\n"),
                6,
                "signals[0].http.interval_secs",
                "is outside 0.1..=86400 s",
            );
        }
        refused(
            &format!("{sig}http = {{ url = \"ftp://m/x\" }}\n"),
            6,
            "signals[0].http.url",
            "not an http:// or https:// URL",
        );
        refused(
            &format!("{sig}http = {{ url = \"https:///x\" }}\n"),
            6,
            "signals[0].http.url",
            "no host",
        );
        refused(
            &format!("{sig}http = {{ url = \"http://m/x\", pointer = \"export_kw\" }}\n"),
            6,
            "signals[0].http.pointer",
            "\"/export_kw\"",
        );
        refused(
            &format!("{sig}[signals.file]\npath = \"/run/x\"\npoll_ms = 0\n"),
            8,
            "signals[0].file.poll_ms",
            "0 ms is outside 10..=3600000 ms",
        );
        refused(
            &format!("{sig}mqtt = {{ broker = \"b:1883\", topic = \"grid/#\" }}\n"),
            6,
            "signals[0].mqtt.topic",
            "wildcards",
        );
        let ok = parse(&format!(
            "{POOL}{sig}http = {{ url = \"HTTPS://meter.local/j\", pointer = \"/w\", interval_secs = 0.5 }}\n"
        ));
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn plugin_values_are_package_names_or_wasm_paths() {
        let pool = "[[pools]]\nurl = \"stratum+tcp://h:2\"\nuser = \"w\"\n";
        refused(
            &format!("{pool}plugin = \"../../etc/passwd\"\n"),
            7,
            "pools[1].plugin",
            "neither a package name",
        );
        refused(
            "[[policies]]\nname = \"p\"\nplugin = \"../../etc/passwd\"\n",
            6,
            "policies[0].plugin",
            "or a first-party policy (surplus-only, price",
        );
        refused(
            &format!("{pool}plugin = \".hidden\"\n"),
            7,
            "pools[1].plugin",
            "not starting with '.'",
        );
        refused(
            &format!("{pool}plugin = \"{}\"\n", "a".repeat(65)),
            7,
            "pools[1].plugin",
            "1 to 64",
        );
        assert_eq!(
            PluginSource::parse("my-pool_2.1"),
            Ok(PluginSource::Package("my-pool_2.1"))
        );
        assert_eq!(
            PluginSource::parse("../plugins/x.wasm"),
            Ok(PluginSource::File(Path::new("../plugins/x.wasm")))
        );
        assert!(PluginSource::parse(".wasm").is_err());
        for ok in [
            format!("{pool}plugin = \"sv2\"\n"),
            format!("{pool}plugin = \"/opt/p/pool.wasm\"\n"),
            "[[policies]]\nname = \"p\"\nplugin = \"surplus-only\"\n".to_string(),
            "[[policies]]\nname = \"p\"\nplugin = \"./my.wasm\"\n".to_string(),
        ] {
            let r = parse(&format!("{POOL}{ok}"));
            assert!(r.is_ok(), "{ok}: {:?}", r.err());
        }
    }

    #[test]
    fn credentials_are_bounded_and_printable() {
        let pool = |user: &str, password: &str| {
            format!(
                "[[pools]]\nurl = \"stratum+tcp://h:2\"\nuser = {user:?}\npassword = {password:?}\n"
            )
        };
        refused(
            &pool("w", &"x".repeat(1 << 20)),
            7,
            "pools[1].password",
            "1048576 bytes is too long (at most 512)",
        );
        refused(
            &pool(&"u".repeat(513), ""),
            6,
            "pools[1].user",
            "at most 512",
        );
        refused(
            &pool("w\nmining.authorize", ""),
            6,
            "pools[1].user",
            "control characters",
        );
        refused(
            &pool("w", "x\ty"),
            7,
            "pools[1].password",
            "control characters",
        );
        assert!(parse(&format!("{POOL}{}", pool(&"u".repeat(512), "d=0.5,x"))).is_ok());
    }

    #[test]
    fn duplicate_pools_are_refused() {
        refused(
            "\n[[pools]]\nurl = \"stratum+tcp://H:1/\"\nuser = \"w\"\n",
            6,
            "pools[1].url",
            "same pool and user as pools[0]",
        );
        // Another user, or another port, is another pool.
        for other in [
            "[[pools]]\nurl = \"stratum+tcp://h:1\"\nuser = \"w2\"\n",
            "[[pools]]\nurl = \"stratum+tcp://h:2\"\nuser = \"w\"\n",
        ] {
            assert!(parse(&format!("{POOL}{other}")).is_ok(), "{other}");
        }
    }

    #[test]
    fn web_settings_are_checked() {
        for (bad, field, says) in [
            (
                "[web]\nredirect_listen = \"0.0.0.0:80\"\n",
                "web.redirect_listen",
                "tls = true",
            ),
            (
                "[web]\nmax_connections = 0\n",
                "web.max_connections",
                "outside",
            ),
            (
                "[web]\nmax_connections = 10\nmax_connections_per_client = 11\n",
                "web.max_connections_per_client",
                "outside 1..=10",
            ),
            (
                "[web]\nnames = [\"bad name\"]\n",
                "web.names[0]",
                "not a host name",
            ),
            (
                "[cgminer]\nprivileged = [\"10.0.0.0/33\"]\n",
                "cgminer.privileged[0]",
                "not an address",
            ),
            (
                "[cgminer]\nmax_connections = 8\nmax_connections_per_client = 9\n",
                "cgminer.max_connections_per_client",
                "outside 1..=8",
            ),
            (
                "[energy]\nprice_per_kwh = -1\n",
                "energy.price_per_kwh",
                "0..=1000",
            ),
        ] {
            let msg = parse(&format!("{POOL}{bad}")).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("field `{field}`")) && msg.contains(says),
                "{bad}: {msg}"
            );
        }
        for ok in [
            "[web]\nlisten = \"127.0.0.1:8443\"\ntls = true\nredirect_listen = \"127.0.0.1:8081\"\nnames = [\"hashwatt.local\", \"miner-1\"]\n",
            "[web]\nlisten = \"\"\n",
            "[cgminer]\nenabled = true\nprivileged = [\"192.168.1.0/24\", \"::1\", \"10.0.0.7\"]\n",
        ] {
            assert!(parse(&format!("{POOL}{ok}")).is_ok(), "{ok}");
        }
    }

    #[test]
    fn backend_must_exist_and_run_here() {
        let msg = parse(&format!("backend = \"turbo\"\n{POOL}"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(
                "test.toml:1: field `backend`: unknown hash backend \"turbo\"; usable here: auto, "
            ) && msg.contains("scalar"),
            "{msg}"
        );
        assert!(parse(&format!("backend = \"scalar\"\n{POOL}")).is_ok());
        #[cfg(target_arch = "x86_64")]
        {
            let msg = parse(&format!("backend = \"armv8-sha2-x2\"\n{POOL}"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("test.toml:1: field `backend`: ")
                    && msg.contains("not supported on this CPU; usable here: auto, "),
                "{msg}"
            );
        }
    }

    #[test]
    fn fail_safe_is_an_enum_from_the_start() {
        let policy = "[[policies]]\nname = \"p\"\nplugin = \"surplus-only\"\n";
        refused(
            &format!("{policy}fail_safe = \"stop\"\n"),
            7,
            "policies[0].fail_safe",
            "unknown variant `stop`, expected `pause` or `run`",
        );
        let c = parse(&format!("{POOL}{policy}fail_safe = \"run\"\n")).unwrap();
        assert_eq!(c.policies[0].fail_safe, FailSafe::Run);
        let c = parse(&format!("{POOL}{policy}")).unwrap();
        assert_eq!(c.policies[0].fail_safe, FailSafe::Pause);
        refused(
            "[[policies]]\nname = \"a/b\"\nplugin = \"price\"\n",
            5,
            "policies[0].name",
            "not a policy name",
        );
    }

    #[test]
    fn pool_settings_are_carried_as_a_table() {
        let c = parse(&format!(
            "{POOL}[pools.settings]\nauthority_key = \"9auq\"\nchannels = 2\n"
        ))
        .unwrap();
        assert_eq!(c.pools[0].settings["authority_key"].as_str(), Some("9auq"));
        assert_eq!(c.pools[0].settings["channels"].as_integer(), Some(2));
        assert!(
            parse("[[pools]]\nurl = \"stratum+tcp://h:1\"\nuser = \"w\"\n")
                .unwrap()
                .pools[0]
                .settings
                .is_empty()
        );
        refused(
            "settings = \"fast\"\n",
            4,
            "pools[0].settings",
            "invalid type",
        );
    }

    #[test]
    fn trusted_keys_are_checked() {
        let msg = parse(&format!("trusted_keys = [\n  \"00\",\n]\n{POOL}"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("test.toml:2: field `trusted_keys[0]`: "),
            "{msg}"
        );
    }

    #[test]
    fn line_of_a_field_follows_the_path() {
        let text = "threads = 1\n[[pools]]\nurl = \"a\"\nuser = \"x\"\n\n[[pools]]\nurl = \"b\"\nuser = \"y\"\n[energy]\nidle_w = 1.0\n";
        assert_eq!(line_of_field(text, "threads"), 1);
        assert_eq!(line_of_field(text, "pools[0].user"), 4);
        assert_eq!(line_of_field(text, "pools[1].user"), 8);
        // A field left at its default: the nearest enclosing item.
        assert_eq!(line_of_field(text, "pools[1].password"), 6);
        assert_eq!(line_of_field(text, "energy.full_load_w"), 9);
        assert_eq!(line_of_field(text, "status_interval_secs"), 0);
        assert_eq!(line_of_field("= broken", "threads"), 0);
    }
}
