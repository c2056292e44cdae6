//! Loading the plugins a configuration names, for the control plane: pool
//! plugins (built in, installed package, or unsigned file), the hot-install
//! watcher that trials a new version before the driver switches to it, and
//! energy policies.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;

use crate::app::USER_AGENT;
use crate::config::{Config, PolicyEntry, PoolEntry};
use crate::plugin::cli as plugin_cli;
use crate::plugin::package::{PluginKind, Trust};
use crate::plugin::policy::{PolicyLimits, PolicyPluginFactory, PolicyPluginPre};
use crate::plugin::pool::PoolPluginPre;
use crate::plugin::{Limits, Runtime, builtin};
use crate::policy::engine::{PolicyEngine, PolicySpec};
use crate::status::Status;

/// Whether a `plugin = "…"` value names an installed package (not a path).
pub(crate) fn is_package_name(spec: &str) -> bool {
    !spec.contains('/') && !spec.ends_with(".wasm")
}

/// Loads the pool plugin a pool entry names: an installed, signature-checked
/// package by name, or a path to a bare `.wasm` component. A bare component
/// carries no signature, so it is only accepted when the operator allowed
/// unsigned plugins. Returns the plugin and a label for status.
pub(crate) fn load_pool_plugin(
    runtime: &Runtime,
    config: &Config,
    entry: &PoolEntry,
    spec: &str,
) -> anyhow::Result<(PoolPluginPre, String)> {
    let cache_dir = plugin_cli::cache_dir(&config.state_dir);
    if is_package_name(spec) {
        let (pre, label, _) = load_installed_pool_plugin(runtime, config, entry, spec)?;
        return Ok((pre, label));
    }
    if !config.allow_unsigned_plugins {
        anyhow::bail!(
            "refusing an unsigned plugin file (install a signed package, or set allow_unsigned_plugins = true)"
        );
    }
    let wasm = std::fs::read(spec).with_context(|| format!("cannot read {spec}"))?;
    tracing::warn!(
        plugin = spec,
        "loading an UNSIGNED pool plugin (allow_unsigned_plugins = true)"
    );
    let name = std::path::Path::new(spec)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    let (component, _) = runtime.compile_cached(&cache_dir, &name, &wasm)?;
    Ok((
        PoolPluginPre::from_component(runtime, &name, &component)?,
        format!("{name} (unsigned file)"),
    ))
}

/// Loads an installed pool plugin package; also returns its identity
/// (sha256 of manifest and wasm) so a watcher can tell when a new version lands.
fn load_installed_pool_plugin(
    runtime: &Runtime,
    config: &Config,
    entry: &PoolEntry,
    name: &str,
) -> anyhow::Result<(PoolPluginPre, String, [u8; 32])> {
    let trust = Trust::from_config(config)?;
    let package = plugin_cli::load_installed(&config.state_dir, name, &trust)?;
    package.expect_kind(PluginKind::Pool)?;
    if !package
        .manifest
        .capabilities
        .allows_endpoint(&entry.url.host, entry.url.port)
    {
        anyhow::bail!(
            "its manifest does not allow the endpoint {}:{} (pool_endpoints)",
            entry.url.host,
            entry.url.port
        );
    }
    let (component, _) = runtime.compile_cached(
        &plugin_cli::cache_dir(&config.state_dir),
        name,
        &package.wasm,
    )?;
    let pre = PoolPluginPre::from_component(runtime, name, &component)?
        .with_capabilities(package.manifest.capabilities.clone());
    Ok((
        pre,
        format!("{name}@{}", package.manifest.version),
        package.wasm_sha256,
    ))
}

/// What makes an installed version distinct: its manifest and its wasm.
fn package_identity(p: &crate::plugin::package::VerifiedPackage) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(p.wasm_sha256);
    h.update(p.manifest_text.as_bytes());
    h.finalize().into()
}

/// Hot install: watches an installed pool plugin and hands a new version to
/// the pool's driver once it has been verified and instantiated on trial.
/// If the new version fails, the running one keeps running and the reason
/// is shown in the pool's status.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn watch_installed(
    runtime: Runtime,
    config: Config,
    entry: PoolEntry,
    index: u64,
    name: String,
    updates: watch::Sender<PoolPluginPre>,
    status: Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) {
    let identity = |c: &Config| -> Option<[u8; 32]> {
        let trust = Trust::from_config(c).ok()?;
        plugin_cli::load_installed(&c.state_dir, &name, &trust)
            .ok()
            .map(|p| package_identity(&p))
    };
    let mut running = identity(&config);
    let mut refused: Option<[u8; 32]> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = identity(&config);
        if now.is_none() || now == running || now == refused {
            continue;
        }
        let trial = load_installed_pool_plugin(&runtime, &config, &entry, &name).and_then(
            |(pre, label, sha)| {
                let pool_config = crate::plugin::pool::PoolConfig {
                    url: entry.url.url.clone(),
                    host: entry.url.host.clone(),
                    port: entry.url.port,
                    user: entry.user.clone(),
                    password: entry.password.clone(),
                    user_agent: USER_AGENT.to_string(),
                    // A trial only: the driver offers what its devices can do.
                    version_rolling: true,
                    settings: crate::plugin::pool::settings_map(&entry.settings),
                };
                let limits = Limits {
                    call_timeout: Duration::from_millis(config.plugin_limits.call_timeout_ms),
                    memory_bytes: config.plugin_limits.memory_mib << 20,
                    ..Limits::default()
                };
                crate::plugin::call_blocking(|| pre.instantiate(&pool_config, limits))?;
                Ok((pre, label, sha))
            },
        );
        match trial {
            Ok((pre, label, sha)) => {
                info!(pool = index, plugin = %label, "new plugin version passed its trial; switching");
                status.update_pool(index, |s| {
                    s.plugin = label;
                    s.plugin_error = None;
                });
                running = Some(sha);
                refused = None;
                let _ = updates.send(pre);
            }
            Err(e) => {
                let reason = format!("new version of {name} refused, the running one stays: {e:#}");
                tracing::error!(pool = index, "{reason}");
                status.update_pool(index, |s| s.plugin_error = Some(reason));
                refused = now;
            }
        }
    }
}

/// A policy component and the HTTP feeds it may read (`None`: any).
pub(crate) type PolicyWasm = (std::borrow::Cow<'static, [u8]>, Option<Vec<String>>);

/// The component of the policy plugin `plugin` names, and the HTTP feeds
/// it may read: `None` for first-party policies (trusted with any
/// configured feed), the manifest's list for an installed package, none
/// for a bare file.
pub(crate) fn policy_wasm(config: &Config, plugin: &str) -> anyhow::Result<PolicyWasm> {
    Ok(if let Some(bytes) = builtin::policy(plugin) {
        (bytes.into(), None)
    } else if is_package_name(plugin) {
        let trust = Trust::from_config(config)?;
        let package = plugin_cli::load_installed(&config.state_dir, plugin, &trust)?;
        package.expect_kind(PluginKind::Policy)?;
        let feeds = package.manifest.capabilities.http_feeds.clone();
        (package.wasm.into(), Some(feeds))
    } else {
        if !config.allow_unsigned_plugins {
            anyhow::bail!(
                "refusing an unsigned plugin file (install a signed package, or set allow_unsigned_plugins = true)"
            );
        }
        tracing::warn!(
            plugin = plugin,
            "loading an UNSIGNED policy plugin (allow_unsigned_plugins = true)"
        );
        let bytes = std::fs::read(plugin).with_context(|| format!("cannot read {}", plugin))?;
        (bytes.into(), Some(Vec::new()))
    })
}

/// Loads and adds one configured policy to the engine.
pub(crate) fn add_policy(
    runtime: &Runtime,
    config: &Config,
    engine: &PolicyEngine,
    entry: &PolicyEntry,
) -> anyhow::Result<()> {
    let (wasm, declared_feeds) = policy_wasm(config, &entry.plugin)?;
    let pre = PolicyPluginPre::new(runtime, &entry.name, &wasm)?;
    let json = serde_json::to_string(&entry.config)
        .context("policy config is not representable as JSON")?;
    let mut limits = PolicyLimits::default();
    limits.call.call_timeout = Duration::from_millis(config.plugin_limits.call_timeout_ms);
    limits.call.memory_bytes = config.plugin_limits.memory_mib << 20;
    if let Some(declared) = &declared_feeds {
        let trial = crate::plugin::call_blocking(|| pre.instantiate(&json, limits.clone()))?;
        for name in trial.subscriptions() {
            let feed = config
                .signals
                .iter()
                .find(|s| &s.name == name)
                .and_then(|s| s.http.as_ref());
            if let Some(h) = feed
                && !declared.iter().any(|d| d == &h.url)
            {
                anyhow::bail!(
                    "it subscribes to signal {name:?}, fetched from {}, which its manifest does not declare in capabilities.http_feeds",
                    h.url
                );
            }
        }
    }
    engine.add_policy(
        // A policy configured disabled stays out of arbitration from its
        // first round (at start, when added, when its settings change).
        PolicySpec {
            enabled: entry.enabled,
            ..PolicySpec::new(&entry.name, entry.fail_safe)
        },
        Arc::new(PolicyPluginFactory::new(pre, &json, limits)),
    )?;
    info!(
        policy = entry.name,
        plugin = entry.plugin,
        "energy policy enabled"
    );
    Ok(())
}
