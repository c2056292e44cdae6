//! What the panel shows about plugins: every plugin the appliance could
//! run (built in, installed, or a bare file a configuration names), who
//! vouched for it, what uses it, how it is doing and what it costs.
//! Assembled by [`crate::control::Appliance::plugins`].

use std::path::Path;

use serde::Serialize;

use super::PluginStats;
use super::cli::Listed;
use super::package::{self, MANIFEST_FILE, Manifest, SIG_FILE, SignatureFile};
use crate::config::Config;
use crate::policy::engine::PolicyStatus;
use crate::status::{PoolState, PoolStatus};

/// One plugin as the operator sees it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// The plugin's name (for a bare `.wasm` file: the path configured).
    pub name: String,
    /// Its version (`""` when its manifest cannot be read).
    pub version: String,
    /// `pool` or `policy`.
    pub kind: String,
    /// Whether it carries a signature file (built-in plugins are part of
    /// the binary and carry none).
    pub signed: bool,
    /// The key id of the signing key, trusted or not.
    pub signer: Option<String>,
    /// Whether the host trusts it: built in, or signed by a trusted key and
    /// verified.
    pub trusted: bool,
    /// Whether it is embedded in the binary.
    pub built_in: bool,
    /// What uses it: pool ids (as text) for a pool plugin, policy names
    /// for a policy plugin.
    pub used_by: Vec<String>,
    /// `running` (in use and working), `connecting` (a pool plugin whose
    /// pools have no work yet), `failed` (disabled, or waiting for a
    /// restart after a failure), `stopped` (its users are disabled),
    /// `idle` (nothing uses it) or `invalid` (it no longer verifies).
    pub state: String,
    /// Times its instances were restarted after a failure (for policies:
    /// failures, each followed by a restart).
    pub restarts: u64,
    /// The latest failure, if any.
    pub last_error: Option<String>,
    /// The most linear memory one of its instances has held, in bytes
    /// (`None` when no instance has run).
    pub memory_bytes: Option<u64>,
    /// Milliseconds spent in calls into it since start, all instances
    /// (`None` when no instance has run).
    pub time_ms: Option<f64>,
}

/// Everything [`build`] reads, gathered by the control plane.
pub(crate) struct Inputs<'a> {
    pub config: &'a Config,
    /// Running pools: id and plugin spec (`None`: built in).
    pub pools: Vec<(u64, Option<String>)>,
    pub pool_status: &'a [PoolStatus],
    pub policies: &'a [PolicyStatus],
    /// Installed packages, verified again.
    pub installed: Vec<Listed>,
    /// The accounting of a plugin by key, if it ever ran.
    pub stats: &'a dyn Fn(&str) -> Option<std::sync::Arc<PluginStats>>,
}

/// Builds the list: built-in pool plugin, built-in policies, installed
/// packages, then bare files the configuration names.
pub(crate) fn build(inputs: Inputs<'_>) -> Vec<PluginInfo> {
    let mut out = Vec::new();
    let pools_using = |spec: Option<&str>| -> Vec<u64> {
        inputs
            .pools
            .iter()
            .filter(|(_, p)| p.as_deref() == spec)
            .map(|(id, _)| *id)
            .collect()
    };
    let policies_using = |plugin: &str| -> Vec<String> {
        inputs
            .config
            .policies
            .iter()
            .filter(|p| p.plugin == plugin)
            .map(|p| p.name.clone())
            .collect()
    };
    let stats = |keys: &[String]| -> (Option<u64>, Option<f64>) {
        let found: Vec<_> = keys.iter().filter_map(|k| (inputs.stats)(k)).collect();
        let ran = found
            .iter()
            .any(|s| s.calls() > 0 || s.memory_peak_bytes() > 0);
        if !ran {
            return (None, None);
        }
        let memory = found.iter().map(|s| s.memory_peak_bytes()).max();
        let time = found
            .iter()
            .map(|s| s.call_time().as_secs_f64() * 1000.0)
            .sum();
        (memory, Some(time))
    };
    let version = env!("CARGO_PKG_VERSION").to_string();

    // The built-in Stratum V1 plugin.
    let ids = pools_using(None);
    let (memory_bytes, time_ms) = stats(&[super::builtin::STRATUM_V1_STATS_KEY.to_string()]);
    out.push(pool_row(
        Row {
            name: "stratum-v1".into(),
            version: version.clone(),
            signed: false,
            signer: None,
            trusted: true,
            built_in: true,
            memory_bytes,
            time_ms,
        },
        &ids,
        inputs.pool_status,
    ));
    // The built-in policies.
    for (name, _) in super::builtin::POLICIES {
        let users = policies_using(name);
        let keys: Vec<String> = users.iter().map(|u| format!("policy:{u}")).collect();
        let (memory_bytes, time_ms) = stats(&keys);
        out.push(policy_row(
            Row {
                name: (*name).into(),
                version: version.clone(),
                signed: false,
                signer: None,
                trusted: true,
                built_in: true,
                memory_bytes,
                time_ms,
            },
            users,
            inputs.policies,
        ));
    }
    // Installed packages.
    for Listed { name, package } in inputs.installed {
        let dir = super::cli::plugins_dir(&inputs.config.state_dir).join(&name);
        match package {
            Ok(p) => {
                let signer = p
                    .signature
                    .as_deref()
                    .and_then(|s| SignatureFile::parse(s).ok())
                    .map(|s| s.key_id);
                let mut row = Row {
                    name: name.clone(),
                    version: p.manifest.version.to_string(),
                    signed: p.signature.is_some(),
                    signer,
                    trusted: p.signer.is_some(),
                    built_in: false,
                    memory_bytes: None,
                    time_ms: None,
                };
                match p.manifest.kind {
                    package::PluginKind::Pool => {
                        (row.memory_bytes, row.time_ms) = stats(&[format!("pool:{name}")]);
                        out.push(pool_row(row, &pools_using(Some(&name)), inputs.pool_status));
                    }
                    package::PluginKind::Policy => {
                        // A built-in policy of the same name shadows it.
                        let users = if super::builtin::policy(&name).is_some() {
                            Vec::new()
                        } else {
                            policies_using(&name)
                        };
                        let keys: Vec<String> =
                            users.iter().map(|u| format!("policy:{u}")).collect();
                        (row.memory_bytes, row.time_ms) = stats(&keys);
                        out.push(policy_row(row, users, inputs.policies));
                    }
                }
            }
            Err(e) => out.push(invalid_row(&name, &dir, e.to_string())),
        }
    }
    // Bare files named by the configuration.
    let mut files: Vec<(String, &str)> = Vec::new();
    for (_, spec) in &inputs.pools {
        if let Some(spec) = spec
            .as_deref()
            .filter(|s| !super::loader::is_package_name(s))
            && !files.iter().any(|(f, _)| f == spec)
        {
            files.push((spec.to_string(), "pool"));
        }
    }
    for p in &inputs.config.policies {
        if super::builtin::policy(&p.plugin).is_none()
            && !super::loader::is_package_name(&p.plugin)
            && !files.iter().any(|(f, _)| f == &p.plugin)
        {
            files.push((p.plugin.clone(), "policy"));
        }
    }
    for (path, kind) in files {
        let row = |memory_bytes, time_ms| Row {
            name: path.clone(),
            version: String::new(),
            signed: false,
            signer: None,
            trusted: false,
            built_in: false,
            memory_bytes,
            time_ms,
        };
        if kind == "pool" {
            let stem = Path::new(&path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            let (m, t) = stats(&[format!("pool:{stem}")]);
            out.push(pool_row(
                row(m, t),
                &pools_using(Some(&path)),
                inputs.pool_status,
            ));
        } else {
            let users = policies_using(&path);
            let keys: Vec<String> = users.iter().map(|u| format!("policy:{u}")).collect();
            let (m, t) = stats(&keys);
            out.push(policy_row(row(m, t), users, inputs.policies));
        }
    }
    out
}

/// The parts of a row that do not depend on its users.
struct Row {
    name: String,
    version: String,
    signed: bool,
    signer: Option<String>,
    trusted: bool,
    built_in: bool,
    memory_bytes: Option<u64>,
    time_ms: Option<f64>,
}

impl Row {
    fn finish(
        self,
        kind: &str,
        used_by: Vec<String>,
        state: &str,
        restarts: u64,
        last_error: Option<String>,
    ) -> PluginInfo {
        PluginInfo {
            name: self.name,
            version: self.version,
            kind: kind.into(),
            signed: self.signed,
            signer: self.signer,
            trusted: self.trusted,
            built_in: self.built_in,
            used_by,
            state: state.into(),
            restarts,
            last_error,
            memory_bytes: self.memory_bytes,
            time_ms: self.time_ms,
        }
    }
}

fn pool_row(row: Row, ids: &[u64], status: &[PoolStatus]) -> PluginInfo {
    let pools: Vec<&PoolStatus> = status.iter().filter(|p| ids.contains(&p.id)).collect();
    let state = if ids.is_empty() {
        "idle"
    } else if pools.iter().any(|p| p.state == PoolState::Disabled) {
        "failed"
    } else if pools.iter().any(|p| p.state == PoolState::Healthy) {
        "running"
    } else if pools.iter().any(|p| p.state == PoolState::Connecting) {
        "connecting"
    } else {
        "stopped"
    };
    let restarts = pools.iter().map(|p| p.plugin_restarts).sum();
    let last_error = pools
        .iter()
        .find_map(|p| p.disabled.clone().or_else(|| p.plugin_error.clone()));
    let used_by = ids.iter().map(u64::to_string).collect();
    row.finish("pool", used_by, state, restarts, last_error)
}

fn policy_row(row: Row, users: Vec<String>, status: &[PolicyStatus]) -> PluginInfo {
    let mine: Vec<&PolicyStatus> = status.iter().filter(|p| users.contains(&p.name)).collect();
    let state = if users.is_empty() {
        "idle"
    } else if mine.iter().any(|p| p.enabled && !p.running) {
        "failed"
    } else if mine.iter().any(|p| p.enabled && p.running) {
        "running"
    } else {
        "stopped"
    };
    let restarts = mine.iter().map(|p| p.failures).sum();
    let last_error = mine.iter().find_map(|p| p.last_error.clone());
    row.finish("policy", users, state, restarts, last_error)
}

/// An installed package that no longer verifies: what can still be read
/// of its manifest and signature, and why it is refused.
fn invalid_row(name: &str, dir: &Path, error: String) -> PluginInfo {
    let manifest = package::read_limited(&dir.join(MANIFEST_FILE), package::MAX_MANIFEST_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| Manifest::parse(&t).ok());
    let signer = package::read_limited(&dir.join(SIG_FILE), package::MAX_SIG_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| SignatureFile::parse(&t).ok())
        .map(|s| s.key_id);
    PluginInfo {
        name: name.into(),
        version: manifest
            .as_ref()
            .map(|m| m.version.to_string())
            .unwrap_or_default(),
        kind: manifest
            .as_ref()
            .map(|m| m.kind.to_string())
            .unwrap_or_default(),
        signed: signer.is_some(),
        signer,
        trusted: false,
        built_in: false,
        used_by: Vec::new(),
        state: "invalid".into(),
        restarts: 0,
        last_error: Some(error),
        memory_bytes: None,
        time_ms: None,
    }
}
