//! The configuration checks that need the plugin runtime, run once before
//! the appliance starts (no state dir is created, no worker, socket or
//! store is left behind):
//!
//! - each pool URL's scheme must be one its plugin handles;
//! - a pool or policy plugin named by package must be installed, verified
//!   (signature, trust) and of the right kind; a `.wasm` file must exist and
//!   be allowed (`allow_unsigned_plugins`);
//! - every policy is instantiated once with its `config`, so the plugin
//!   itself refuses a typo or a bad value, and the signals it subscribes to
//!   must be defined (and, for third-party policies, HTTP feeds declared).
//!
//! Errors are [`ConfigError::Invalid`] at the line of the offending field.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError, PluginSource, PolicyEntry, PoolEntry, Problem};
use crate::plugin::cli as plugin_cli;
use crate::plugin::package::{MAX_WASM_BYTES, PluginKind, Trust, VerifiedPackage, sha256};
use crate::plugin::policy::{PolicyLimits, PolicyPluginPre};
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{PluginError, Runtime, builtin};

/// Runs every check that needs the plugin runtime on a configuration that
/// [`Config::parse`] accepted from `text` (the contents of `path`, used for
/// line numbers and messages). The first problem found is returned.
pub fn preflight(config: &Config, path: &Path, text: &str) -> Result<(), ConfigError> {
    let runtime = Runtime::new().map_err(|e| {
        Problem::new(
            "(top level)",
            format!("cannot start the plugin runtime: {e}"),
        )
        .at(path, text)
    })?;
    Checker::new(runtime).check(config, path, text)
}

/// The preflight with the plugins it compiled kept between checks, so the
/// command path (which checks the whole configuration on every change)
/// pays instantiations, not compilations.
pub struct Checker {
    runtime: Runtime,
    pools: HashMap<[u8; 32], PoolPluginPre>,
    policies: HashMap<([u8; 32], String), PolicyPluginPre>,
}

impl Checker {
    /// A checker compiling with `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Checker {
            runtime,
            pools: HashMap::new(),
            policies: HashMap::new(),
        }
    }

    /// Remembers an already compiled pool plugin for the component `wasm`.
    pub fn with_pool_plugin(mut self, wasm: &[u8], pre: PoolPluginPre) -> Self {
        self.pools.insert(sha256(wasm), pre);
        self
    }

    /// [`preflight`] with this checker's compiled plugins.
    pub fn check(&mut self, config: &Config, path: &Path, text: &str) -> Result<(), ConfigError> {
        check(self, config).map_err(|p| p.at(path, text))
    }

    fn pool_plugin(&mut self, name: &str, wasm: &[u8]) -> Result<PoolPluginPre, PluginError> {
        let key = sha256(wasm);
        if let Some(pre) = self.pools.get(&key) {
            return Ok(pre.clone());
        }
        let pre = PoolPluginPre::new(&self.runtime, name, wasm)?;
        self.pools.insert(key, pre.clone());
        Ok(pre)
    }

    fn policy_plugin(&mut self, name: &str, wasm: &[u8]) -> Result<PolicyPluginPre, PluginError> {
        let key = (sha256(wasm), name.to_string());
        if let Some(pre) = self.policies.get(&key) {
            return Ok(pre.clone());
        }
        let pre = PolicyPluginPre::new(&self.runtime, name, wasm)?;
        self.policies.insert(key, pre.clone());
        Ok(pre)
    }
}

fn check(checker: &mut Checker, config: &Config) -> Result<(), Problem> {
    for (i, pool) in config.pools.iter().enumerate() {
        check_pool(config, checker, i, pool)?;
    }
    for (i, policy) in config.policies.iter().enumerate() {
        check_policy(config, checker, i, policy)?;
    }
    Ok(())
}

/// Checks a pool against its plugin: the plugin must load (package
/// verified, file allowed), claim the URL's scheme (the pool contract's
/// `url-schemes`) and accept the pool's `settings` (`validate-settings`).
fn check_pool(
    config: &Config,
    checker: &mut Checker,
    i: usize,
    pool: &PoolEntry,
) -> Result<(), Problem> {
    let at = |message: String| Problem::new(format!("pools[{i}].plugin"), message);
    let (pre, label) = match &pool.plugin {
        None => {
            let pre = checker
                .pool_plugin("stratum-v1", builtin::STRATUM_V1)
                .map_err(|e| at(format!("the built-in Stratum V1 plugin: {e}")))?;
            (pre, "the built-in Stratum V1 plugin".to_string())
        }
        Some(spec) => {
            let wasm = match PluginSource::parse(spec).map_err(at)? {
                PluginSource::Package(name) => {
                    let package = installed(config, name, PluginKind::Pool).map_err(at)?;
                    if !package
                        .manifest
                        .capabilities
                        .allows_endpoint(&pool.url.host, pool.url.port)
                    {
                        return Err(at(format!(
                            "package {name:?} may not connect to {}:{}: its manifest's \
                             pool_endpoints do not list it",
                            pool.url.host, pool.url.port
                        )));
                    }
                    package.wasm
                }
                PluginSource::File(file) => unsigned_file(config, file, true)
                    .map_err(at)?
                    .unwrap_or_default(),
            };
            let pre = checker
                .pool_plugin(spec, &wasm)
                .map_err(|e| at(e.to_string()))?;
            (pre, format!("plugin {spec:?}"))
        }
    };
    let schemes = pre.url_schemes().map_err(|e| at(e.to_string()))?;
    if !schemes.iter().any(|s| s == &pool.url.scheme) {
        return Err(Problem::new(
            format!("pools[{i}].url"),
            format!(
                "no pool plugin handles `{}://` URLs: {label} handles {}; for another \
                 protocol set `plugin` to a pool plugin that handles it",
                pool.url.scheme,
                schemes
                    .iter()
                    .map(|s| format!("`{s}://`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let settings =
        crate::plugin::pool::settings_json(&crate::plugin::pool::settings_map(&pool.settings));
    let limits = crate::plugin::Limits {
        call_timeout: Duration::from_millis(config.plugin_limits.call_timeout_ms.max(100)),
        memory_bytes: config.plugin_limits.memory_mib << 20,
        ..crate::plugin::Limits::default()
    };
    match pre.validate_settings(&settings, limits) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Problem::new(format!("pools[{i}].settings"), reason)),
        Err(e) => Err(Problem::new(
            format!("pools[{i}].settings"),
            format!("{label} failed while checking the settings: {e}"),
        )),
    }
}

fn check_policy(
    config: &Config,
    checker: &mut Checker,
    i: usize,
    entry: &PolicyEntry,
) -> Result<(), Problem> {
    let at_plugin = |message: String| Problem::new(format!("policies[{i}].plugin"), message);
    let at_config = |message: String| Problem::new(format!("policies[{i}].config"), message);
    // First-party policies may read any configured feed; others only the
    // HTTP feeds their manifest declares (none for a bare file).
    let (wasm, declared_feeds): (std::borrow::Cow<'static, [u8]>, Option<Vec<String>>) =
        if let Some(bytes) = builtin::policy(&entry.plugin) {
            (bytes.into(), None)
        } else {
            match PluginSource::parse(&entry.plugin).map_err(at_plugin)? {
                PluginSource::Package(name) => {
                    let package = installed(config, name, PluginKind::Policy).map_err(at_plugin)?;
                    let feeds = package.manifest.capabilities.http_feeds.clone();
                    (package.wasm.into(), Some(feeds))
                }
                PluginSource::File(file) => {
                    let bytes = unsigned_file(config, file, true)
                        .map_err(at_plugin)?
                        .unwrap_or_default();
                    (bytes.into(), Some(Vec::new()))
                }
            }
        };
    let pre = checker
        .policy_plugin(&entry.name, &wasm)
        .map_err(|e| at_plugin(e.to_string()))?;
    let json = serde_json::to_string(&entry.config)
        .map_err(|e| at_config(format!("cannot be handed to the plugin as JSON: {e}")))?;
    let mut limits = PolicyLimits::default();
    limits.call.call_timeout = Duration::from_millis(config.plugin_limits.call_timeout_ms);
    limits.call.memory_bytes = config.plugin_limits.memory_mib << 20;
    let instance = pre.instantiate(&json, limits).map_err(|e| match e {
        PluginError::Load { reason, .. } => {
            at_config(format!("policy plugin {:?}: {reason}", entry.plugin))
        }
        other => at_config(format!(
            "policy plugin {:?} failed while reading its settings: {other}",
            entry.plugin
        )),
    })?;
    for name in instance.subscriptions() {
        let Some(signal) = config.signals.iter().find(|s| &s.name == name) else {
            let defined: Vec<&str> = config.signals.iter().map(|s| s.name.as_str()).collect();
            return Err(at_config(format!(
                "the policy subscribes to signal {name:?}, which no [[signals]] entry defines \
                 (defined: {})",
                if defined.is_empty() {
                    "none".to_string()
                } else {
                    defined.join(", ")
                }
            )));
        };
        if let (Some(declared), Some(http)) = (&declared_feeds, &signal.http)
            && !declared.iter().any(|d| d == &http.url)
        {
            return Err(at_plugin(format!(
                "the policy subscribes to signal {name:?}, fetched from {}, which its \
                 manifest does not declare in capabilities.http_feeds",
                http.url
            )));
        }
    }
    Ok(())
}

/// The installed package `name`, verified against the configured trust and
/// of `kind`.
fn installed(config: &Config, name: &str, kind: PluginKind) -> Result<VerifiedPackage, String> {
    let trust = Trust::from_config(config).map_err(|e| e.to_string())?;
    let package = plugin_cli::load_installed(&config.state_dir, name, &trust).map_err(|e| {
        format!(
            "{e} (in {}; install it with `hashwatt plugin install`)",
            plugin_cli::plugins_dir(&config.state_dir).display()
        )
    })?;
    package.expect_kind(kind).map_err(|e| e.to_string())?;
    Ok(package)
}

/// A bare `.wasm` file: allowed only with `allow_unsigned_plugins`, and it
/// must be a readable WebAssembly file. Returns its bytes if `read_all`.
fn unsigned_file(config: &Config, file: &Path, read_all: bool) -> Result<Option<Vec<u8>>, String> {
    if !config.allow_unsigned_plugins {
        return Err(format!(
            "{} is an unsigned plugin file: install a signed package, or set \
             allow_unsigned_plugins = true",
            file.display()
        ));
    }
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", file.display());
    let mut f = std::fs::File::open(file).map_err(cannot)?;
    let size = f.metadata().map_err(cannot)?.len();
    if size > MAX_WASM_BYTES {
        return Err(format!(
            "{}: {size} bytes is larger than the {MAX_WASM_BYTES}-byte limit",
            file.display()
        ));
    }
    let mut magic = [0u8; 4];
    let is_wasm = f.read_exact(&mut magic).is_ok() && &magic == b"\0asm";
    if !is_wasm {
        return Err(format!("{} is not a WebAssembly file", file.display()));
    }
    if !read_all {
        return Ok(None);
    }
    let mut bytes = magic.to_vec();
    f.read_to_end(&mut bytes).map_err(cannot)?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` (which must pass [`Config::parse`]) and preflights it.
    fn preflight_of(text: &str) -> Result<(), String> {
        let path = Path::new("test.toml");
        let config = Config::parse(path, text).map_err(|e| format!("parse: {e}"))?;
        preflight(&config, path, text).map_err(|e| e.to_string())
    }

    #[track_caller]
    fn refused(text: &str, line: usize, field: &str, what: &str) {
        let msg = preflight_of(text).expect_err(text);
        let head = format!("test.toml:{line}: field `{field}`: ");
        assert!(
            msg.starts_with(&head) && msg.contains(what),
            "want {head}…{what}…, got: {msg}"
        );
    }

    const POOL: &str = "[[pools]]\nurl = \"stratum+tcp://h:1\"\nuser = \"w\"\n";

    #[test]
    fn a_scheme_no_plugin_handles_is_refused_with_the_ones_available() {
        refused(
            "[[pools]]\nurl = \"stratum2+tcp://h:1/KEY\"\nuser = \"w\"\n",
            2,
            "pools[0].url",
            "no pool plugin handles `stratum2+tcp://` URLs: the built-in Stratum V1 plugin handles `stratum+tcp://`",
        );
        assert_eq!(preflight_of(POOL), Ok(()));
    }

    #[test]
    fn pool_plugins_must_be_installed_or_allowed_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let head = format!("state_dir = {state:?}\n");
        refused(
            &format!(
                "{head}[[pools]]\nurl = \"stratum2+tcp://h:1/KEY\"\nuser = \"w\"\nplugin = \"sv2\"\n"
            ),
            5,
            "pools[0].plugin",
            "no plugin named `sv2` is installed",
        );
        let file = dir.path().join("pool.wasm");
        let with_file = format!("{head}{POOL}plugin = {:?}\n", file);
        refused(
            &with_file,
            5,
            "pools[0].plugin",
            "allow_unsigned_plugins = true",
        );
        let unsigned = format!("allow_unsigned_plugins = true\n{with_file}");
        refused(&unsigned, 6, "pools[0].plugin", "cannot read");
        std::fs::write(&file, b"#!/bin/sh\n").unwrap();
        refused(&unsigned, 6, "pools[0].plugin", "not a WebAssembly file");
        std::fs::write(&file, builtin::STRATUM_V1).unwrap();
        assert_eq!(preflight_of(&unsigned), Ok(()));
        assert!(
            !state.exists(),
            "the preflight must not create the state dir"
        );
    }

    #[test]
    fn a_typo_in_a_policy_config_is_refused_by_the_plugin_at_its_line() {
        let text = format!(
            "{POOL}[[signals]]\nname = \"grid_export\"\n\n[[policies]]\nname = \"surplus\"\nplugin = \"surplus-only\"\nconfig = {{ signal = \"grid_export\", treshold_kw = 1.0 }}\n"
        );
        refused(
            &text,
            10,
            "policies[0].config",
            "policy plugin \"surplus-only\": configuration refused: invalid config: unknown field `treshold_kw`, expected one of",
        );
        let fixed = text.replace("treshold_kw", "threshold_kw");
        assert_eq!(preflight_of(&fixed), Ok(()));
    }

    #[test]
    fn every_first_party_policy_refuses_unknown_settings() {
        for (name, _) in builtin::POLICIES {
            let text = format!(
                "{POOL}[[policies]]\nname = \"p\"\nplugin = \"{name}\"\n[policies.config]\nbogus_setting = 1\n"
            );
            refused(
                &text,
                7,
                "policies[0].config",
                "unknown field `bogus_setting`",
            );
        }
    }

    #[test]
    fn a_policy_may_only_subscribe_to_defined_signals() {
        refused(
            &format!(
                "{POOL}[[signals]]\nname = \"price\"\n[[policies]]\nname = \"surplus\"\nplugin = \"surplus-only\"\nconfig = {{ signal = \"grid_export\", threshold_kw = 1.0 }}\n"
            ),
            9,
            "policies[0].config",
            "subscribes to signal \"grid_export\", which no [[signals]] entry defines (defined: price)",
        );
    }

    #[test]
    fn a_policy_file_must_be_allowed_and_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.wasm");
        let policy = format!("[[policies]]\nname = \"p\"\nplugin = {file:?}\n");
        refused(
            &format!("{POOL}{policy}"),
            6,
            "policies[0].plugin",
            "unsigned plugin file",
        );
        std::fs::write(&file, b"\0asm\x0d\0\x01\0\xff\xff").unwrap();
        refused(
            &format!("allow_unsigned_plugins = true\n{POOL}{policy}"),
            7,
            "policies[0].plugin",
            "cannot load plugin p",
        );
    }
}
