//! The appliance configuration file (TOML).
//!
//! Loading is all-or-nothing: a file with any error is refused as a whole,
//! with the file, line and field named, and nothing in the running system
//! changes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
#[derive(Clone, Debug, Deserialize)]
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
    /// Where the HTTP API listens (loopback by default; it has no
    /// authentication yet, so do not expose it). Empty string disables it.
    #[serde(default = "default_api_listen", deserialize_with = "optional_addr")]
    pub api_listen: Option<std::net::SocketAddr>,
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
}

/// Energy metering: RAPL where readable, else a calibrated model.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
        }
    }
}

/// One external signal and where the host gets it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Name shown in status ("paused by <name>: …").
    pub name: String,
    /// A first-party policy (`surplus-only`, `price`, `quota`, `schedule`,
    /// `heater`, `grid-emergency`), an installed package, or a `.wasm` path.
    pub plugin: String,
    /// What applies while the policy fails (trap, timeout): "pause" or "run".
    #[serde(default = "default_fail_safe")]
    pub fail_safe: String,
    /// The policy's own settings, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_api_listen() -> Option<std::net::SocketAddr> {
    Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8421)))
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

fn default_ttl() -> u64 {
    60
}

fn default_http_interval() -> f64 {
    10.0
}

fn default_file_poll() -> u64 {
    500
}

fn default_fail_safe() -> String {
    "pause".into()
}

/// Per-plugin limits the operator may tune, within host maxima.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    /// `stratum+tcp://host:port`.
    pub url: PoolUrl,
    /// Worker name (usually `account.worker` or a payout address).
    pub user: String,
    /// Worker password; many pools ignore it.
    #[serde(default)]
    pub password: String,
    /// Pool-protocol plugin: the name of an installed plugin, or a path to
    /// a `.wasm` component. Default: the built-in Stratum V1 plugin.
    #[serde(default)]
    pub plugin: Option<String>,
}

/// A parsed `stratum+tcp://host:port` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUrl {
    /// The URL as written.
    pub url: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::str::FromStr for PoolUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("stratum+tcp://")
            .ok_or_else(|| format!("`{s}` is not a stratum+tcp://host:port URL"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6
                .split_once("]:")
                .ok_or_else(|| format!("`{s}`: expected [addr]:port"))?;
            (h, p)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| format!("`{s}` has no port"))?
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("`{s}` has no valid host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}` has an invalid port `{port}`"))?;
        if port == 0 {
            return Err(format!("`{s}`: port 0 is not allowed"));
        }
        Ok(PoolUrl {
            url: s.to_string(),
            host: host.to_string(),
            port,
        })
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

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses `text` as the contents of `path` (used for messages only).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = parse_toml(text).map_err(|p| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: p.line,
            field: p.field,
            message: p.message,
        })?;
        config.check().map_err(|(field, message)| {
            let line = find_key_line(text, &field);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                field,
                message,
            }
        })?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express.
    fn check(&self) -> Result<(), (String, String)> {
        if self.pools.is_empty() {
            return Err((
                "pools".into(),
                "at least one [[pools]] entry is required".into(),
            ));
        }
        for (i, p) in self.pools.iter().enumerate() {
            if p.user.trim().is_empty() {
                return Err((format!("pools[{i}].user"), "must not be empty".into()));
            }
        }
        if self.threads > 1024 {
            return Err((
                "threads".into(),
                format!("{} threads is not plausible (at most 1024)", self.threads),
            ));
        }
        if !(1..=1000).contains(&self.plugin_limits.call_timeout_ms) {
            return Err((
                "plugin_limits.call_timeout_ms".into(),
                format!(
                    "{} ms is outside 1..=1000",
                    self.plugin_limits.call_timeout_ms
                ),
            ));
        }
        if !(1..=256).contains(&self.plugin_limits.memory_mib) {
            return Err((
                "plugin_limits.memory_mib".into(),
                format!("{} MiB is outside 1..=256", self.plugin_limits.memory_mib),
            ));
        }
        for (i, sig) in self.signals.iter().enumerate() {
            let sources = usize::from(sig.http.is_some())
                + usize::from(sig.mqtt.is_some())
                + usize::from(sig.file.is_some());
            if sources > 1 {
                return Err((
                    format!("signals[{i}]"),
                    "give at most one of http, mqtt, file".into(),
                ));
            }
            if self.signals[..i].iter().any(|o| o.name == sig.name) {
                return Err((
                    format!("signals[{i}].name"),
                    format!("signal {:?} is defined twice", sig.name),
                ));
            }
            if let Some(m) = &sig.mqtt
                && m.broker
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
            {
                return Err((
                    format!("signals[{i}].mqtt.broker"),
                    format!("{:?} is not host:port", m.broker),
                ));
            }
        }
        if let Some(name) = &self.energy.meter_signal
            && !self.signals.iter().any(|s| &s.name == name)
        {
            return Err((
                "energy.meter_signal".into(),
                format!("no [[signals]] entry is named {name:?}"),
            ));
        }
        for (i, p) in self.policies.iter().enumerate() {
            if !matches!(p.fail_safe.as_str(), "pause" | "run") {
                return Err((
                    format!("policies[{i}].fail_safe"),
                    format!("must be \"pause\" or \"run\", not {:?}", p.fail_safe),
                ));
            }
            if self.policies[..i].iter().any(|o| o.name == p.name) {
                return Err((
                    format!("policies[{i}].name"),
                    format!("policy {:?} is defined twice", p.name),
                ));
            }
        }
        if self.status_interval_secs == 0 {
            return Err(("status_interval_secs".into(), "must be at least 1".into()));
        }
        Ok(())
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

/// Best-effort line of the last key of a dotted field path.
fn find_key_line(text: &str, field: &str) -> usize {
    let key = field.rsplit('.').next().unwrap_or(field);
    let key = key.split('[').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
                || l.starts_with(&format!("[[{key}]]"))
        })
        .map(|i| i + 1)
        .unwrap_or(0)
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
        let msg = parse("[[pools]]\nurl = \"http://h:1\"\nuser = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("test.toml:2")
                && msg.contains("pools[0].url")
                && msg.contains("stratum+tcp"),
            "{msg}"
        );
        let msg = parse("[[pools]]\nurl = \"stratum+tcp://h:99999\"\nuser = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("invalid port"), "{msg}");
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
}
