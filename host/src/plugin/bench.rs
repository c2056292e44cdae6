//! Plugin runtime benchmark (`hashwatt bench plugin`): what the sandbox
//! costs on the path that matters to a miner, measured with the real,
//! embedded Stratum V1 plugin.
//!
//! * compile: the component from its bytes (paid once per host start
//!   without a cache);
//! * load from the precompiled cache ([`super::cache`]), version-checked,
//!   linked, its URL schemes asked on a throwaway instance, and ready to
//!   instantiate (paid once per host start with a warm cache);
//! * instantiate: a fresh instance and session from the pre-linked plugin
//!   (paid on every plugin restart);
//! * call overhead: one `received` call carrying one typical
//!   `mining.notify` line, plugin and host validation included, and an
//!   empty `received` call (the bare boundary crossing);
//! * notify to new work: from the notify bytes to the first header the
//!   hashing backends can use (`received` → validated
//!   [`PoolAction::NewJob`] → [`Job::merkle_root`] → [`Job::header`]);
//! * host resident memory with three plugin instances loaded.

use std::fmt;
use std::time::{Duration, Instant};

use hashwatt_work::Job;
use serde_json::{Value, json};

use super::cache::CacheOutcome;
use super::pool::{CallOutput, PoolAction, PoolConfig, PoolPlugin, PoolPluginPre};
use super::{Limits, Runtime, builtin};

/// Goal for the notify-to-new-work p99.
pub const GOAL_NOTIFY_TO_WORK_P99: Duration = Duration::from_micros(200);
/// Goal for instantiating a plugin (p50).
pub const GOAL_INSTANTIATE: Duration = Duration::from_millis(1);
/// Goal for loading a plugin from the precompiled cache (p50).
pub const GOAL_CACHED_LOAD: Duration = Duration::from_millis(5);
/// Goal for the host's resident memory with three plugins loaded.
pub const GOAL_RSS_BYTES: u64 = 64 << 20;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The plugin did not behave as a Stratum V1 client should.
    #[error("stratum-v1 plugin: {0}")]
    Plugin(String),
    /// `/proc/self/status` has no readable `VmRSS` line.
    #[error("cannot read VmRSS from /proc/self/status: {0}")]
    Rss(String),
}

/// Median and tail of a set of timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest sample.
    pub max: Duration,
}

impl Percentiles {
    /// Summarises samples (an empty set gives zeros).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: usize| {
            samples
                .get((n * q / 100).min(n.saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Percentiles {
            samples: n,
            p50: at(50),
            p99: at(99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:>10}  p99 {:>10}  max {:>10}  (n={})",
            micros(self.p50),
            micros(self.p99),
            micros(self.max),
            self.samples
        )
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// What [`run`] measured.
#[derive(Clone, Debug)]
pub struct PluginBenchReport {
    /// Size of the embedded Stratum V1 component.
    pub component_bytes: usize,
    /// Compiling the component from its bytes and linking it.
    pub compile: Percentiles,
    /// Loading the precompiled component from the cache and linking it.
    pub cached_load: Percentiles,
    /// Instantiating the plugin and constructing its session.
    pub instantiate: Percentiles,
    /// An empty `received` call: the bare cost of crossing into the sandbox.
    pub empty_call: Percentiles,
    /// A `received` call carrying one `mining.notify` line (returns a job).
    pub notify_call: Percentiles,
    /// From the notify bytes to the first header of the new job.
    pub notify_to_work: Percentiles,
    /// Host resident set size before loading the three instances.
    pub rss_before_bytes: u64,
    /// Host resident set size with three plugin instances loaded.
    pub rss_three_plugins_bytes: u64,
    /// Build profile the host was compiled with (timings depend on it).
    pub profile: &'static str,
}

impl PluginBenchReport {
    /// Whether every goal of the plugin runtime is met.
    pub fn meets_goals(&self) -> bool {
        self.notify_to_work.p99 < GOAL_NOTIFY_TO_WORK_P99
            && self.instantiate.p50 < GOAL_INSTANTIATE
            && self.cached_load.p50 < GOAL_CACHED_LOAD
            && self.rss_three_plugins_bytes < GOAL_RSS_BYTES
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

impl fmt::Display for PluginBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        writeln!(
            f,
            "plugin runtime benchmark (stratum-v1, {} bytes, {} build)",
            self.component_bytes, self.profile
        )?;
        writeln!(f, "  compile from bytes    {}", self.compile)?;
        writeln!(
            f,
            "  load from cache       {}  [goal p50 < 5 ms: {}]",
            self.cached_load,
            verdict(self.cached_load.p50 < GOAL_CACHED_LOAD)
        )?;
        writeln!(
            f,
            "  instantiate           {}  [goal p50 < 1 ms: {}]",
            self.instantiate,
            verdict(self.instantiate.p50 < GOAL_INSTANTIATE)
        )?;
        writeln!(f, "  empty received call   {}", self.empty_call)?;
        writeln!(f, "  notify received call  {}", self.notify_call)?;
        writeln!(
            f,
            "  notify -> new work    {}  [goal p99 < 200 µs: {}]",
            self.notify_to_work,
            verdict(self.notify_to_work.p99 < GOAL_NOTIFY_TO_WORK_P99)
        )?;
        write!(
            f,
            "  host RSS              {:.1} MiB with 3 plugins ({:.1} MiB before)  [goal < 64 MiB: {}]",
            mib(self.rss_three_plugins_bytes),
            mib(self.rss_before_bytes),
            verdict(self.rss_three_plugins_bytes < GOAL_RSS_BYTES)
        )
    }
}

/// Runs the benchmark: `iterations` samples for the per-call figures and
/// instantiation, a few (at most 5) for compilation.
pub fn run(iterations: usize) -> anyhow::Result<PluginBenchReport> {
    let iterations = iterations.max(1);
    let wasm = builtin::STRATUM_V1;
    let rss_before_bytes = rss_bytes()?;
    let runtime = Runtime::new()?;

    let mut compile = Vec::new();
    let mut pre = None;
    for _ in 0..iterations.min(5) {
        let start = Instant::now();
        let p = PoolPluginPre::new(&runtime, "stratum-v1", wasm)?;
        compile.push(start.elapsed());
        pre = Some(p);
    }
    let pre = pre.ok_or_else(|| BenchError::Plugin("not compiled".into()))?;
    let cached_load = cached_loads(&runtime, wasm, iterations.min(50))?;

    let mut instantiate = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let plugin = pre.instantiate(&config(), limits())?;
        instantiate.push(start.elapsed());
        drop(plugin);
    }

    // Three live, subscribed instances, as a host with three pools has.
    let mut plugins = Vec::new();
    for _ in 0..3 {
        let mut plugin = pre.instantiate(&config(), limits())?;
        handshake(&mut plugin)?;
        plugins.push(plugin);
    }
    let rss_three_plugins_bytes = rss_bytes()?;
    let plugin = plugins
        .first_mut()
        .ok_or_else(|| BenchError::Plugin("no instance".into()))?;

    let mut empty_call = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let out = plugin.received(0, &[])?;
        empty_call.push(start.elapsed());
        std::hint::black_box(out);
    }

    let lines: Vec<Vec<u8>> = (0..iterations).map(notify_line).collect();
    let mut notify_call = Vec::with_capacity(iterations);
    let mut notify_to_work = Vec::with_capacity(iterations);
    for line in &lines {
        let start = Instant::now();
        let out = plugin.received(0, line)?;
        let called = start.elapsed();
        let job = first_job(&out)?;
        let extranonce2 = vec![0u8; job.extranonce2_size()];
        let root = job.merkle_root(&extranonce2)?;
        let header = job.header(&root, job.version(), job.ntime(), 0);
        let ready = start.elapsed();
        std::hint::black_box(header);
        notify_call.push(called);
        notify_to_work.push(ready);
    }
    drop(plugins);

    Ok(PluginBenchReport {
        component_bytes: wasm.len(),
        compile: Percentiles::of(compile),
        cached_load: Percentiles::of(cached_load),
        instantiate: Percentiles::of(instantiate),
        empty_call: Percentiles::of(empty_call),
        notify_call: Percentiles::of(notify_call),
        notify_to_work: Percentiles::of(notify_to_work),
        rss_before_bytes,
        rss_three_plugins_bytes,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    })
}

/// Times loading `wasm` from a warm cache in a private directory (removed
/// afterwards): the cache's checks, deserialization and linking.
fn cached_loads(runtime: &Runtime, wasm: &[u8], samples: usize) -> anyhow::Result<Vec<Duration>> {
    // Unique per call: two benchmarks in one process must not share it.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("hashwatt-bench-cache-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let (_, first) = runtime.compile_cached(&dir, "stratum-v1", wasm)?;
        if first == CacheOutcome::Hit {
            return Err(
                BenchError::Plugin("fresh cache directory already held an entry".into()).into(),
            );
        }
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            let (component, outcome) = runtime.compile_cached(&dir, "stratum-v1", wasm)?;
            let pre = PoolPluginPre::from_component(runtime, "stratum-v1", &component)?;
            times.push(start.elapsed());
            if outcome != CacheOutcome::Hit {
                return Err(BenchError::Plugin(format!("cache not used: {outcome:?}")).into());
            }
            std::hint::black_box(pre);
        }
        Ok(times)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The host's default limits, with a call budget that a loaded machine
/// cannot exceed by accident: the benchmark measures, it does not police.
fn limits() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

fn config() -> PoolConfig {
    PoolConfig {
        url: "stratum+tcp://127.0.0.1:3333".into(),
        host: "127.0.0.1".into(),
        port: 3333,
        user: "bench.worker".into(),
        password: "x".into(),
        user_agent: "hashwatt-bench".into(),
        version_rolling: true,
        settings: Default::default(),
    }
}

/// Answers every request in `out` as an agreeable pool would.
fn answer(out: &CallOutput) -> Result<Vec<u8>, BenchError> {
    let mut replies = Vec::new();
    for action in &out.actions {
        let PoolAction::Send(bytes) = action else {
            continue;
        };
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let request: Value = serde_json::from_slice(line)
                .map_err(|e| BenchError::Plugin(format!("sent non-JSON: {e}")))?;
            let result = match request["method"].as_str().unwrap_or("") {
                "mining.subscribe" => json!([[["mining.notify", "b3ba"]], "08000002", 4]),
                "mining.configure" => {
                    json!({"version-rolling": true, "version-rolling.mask": "1fffe000"})
                }
                _ => json!(true),
            };
            let reply = json!({"id": request["id"], "result": result, "error": null});
            replies.extend(reply.to_string().into_bytes());
            replies.push(b'\n');
        }
    }
    Ok(replies)
}

/// Subscribes, authorizes and sets a difficulty.
fn handshake(plugin: &mut PoolPlugin) -> anyhow::Result<()> {
    let mut out = plugin.connected(0)?;
    // configure → subscribe → authorize/extranonce.subscribe: at most three rounds.
    for _ in 0..3 {
        let replies = answer(&out)?;
        if replies.is_empty() {
            break;
        }
        out = plugin.received(0, &replies)?;
    }
    let difficulty = b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[65536]}\n";
    plugin.received(0, difficulty)?;
    let out = plugin.received(0, &notify_line(0))?;
    first_job(&out)?;
    Ok(())
}

/// A mainnet-sized `mining.notify`: ~100-byte coinb1, ~200-byte coinb2 and
/// 12 merkle branches (a block of a few thousand transactions).
fn notify_line(n: usize) -> Vec<u8> {
    let hex = |len: usize, seed: usize| -> String {
        (0..len)
            .map(|i| format!("{:02x}", (i * 31 + seed * 7 + 3) % 251))
            .collect()
    };
    let mut coinb1 = String::from("0100000001");
    coinb1.push_str(&"00".repeat(32));
    coinb1.push_str("ffffffff");
    coinb1.push_str("4b03");
    coinb1.push_str(&hex(54, n));
    let mut coinb2 = String::from("ffffffff02");
    coinb2.push_str(&hex(190, n + 1));
    coinb2.push_str("00000000");
    let branches: Vec<String> = (0..12).map(|b| hex(32, n * 13 + b)).collect();
    let params = json!([
        format!("{n:x}"),
        hex(32, n),
        coinb1,
        coinb2,
        branches,
        "20000000",
        "17034219",
        "665f1c2a",
        n.is_multiple_of(16)
    ]);
    let mut line = json!({"id": null, "method": "mining.notify", "params": params})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

fn first_job(out: &CallOutput) -> Result<&Job, BenchError> {
    if let Some(reason) = out.rejected.first() {
        return Err(BenchError::Plugin(format!("job rejected: {reason}")));
    }
    out.actions
        .iter()
        .find_map(|a| match a {
            PoolAction::NewJob(job) => Some(job),
            _ => None,
        })
        .ok_or_else(|| BenchError::Plugin("a mining.notify produced no job".into()))
}

/// The process's resident set size (Linux `/proc/self/status` `VmRSS`).
fn rss_bytes() -> Result<u64, BenchError> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| BenchError::Rss(e.to_string()))?;
    parse_vm_rss(&status).ok_or_else(|| BenchError::Rss("no VmRSS line".into()))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let p = Percentiles::of((1..=100).rev().map(Duration::from_micros).collect());
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50, Duration::from_micros(51));
        assert_eq!(p.p99, Duration::from_micros(100));
        assert_eq!(p.max, Duration::from_micros(100));
        assert_eq!(Percentiles::of(Vec::new()).p99, Duration::ZERO);
    }

    #[test]
    fn vm_rss_parsing() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("VmRSS: lots\n"), None);
        assert_eq!(parse_vm_rss(""), None);
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn small_run_measures_everything() {
        let report = run(20).unwrap();
        assert_eq!(report.instantiate.samples, 20);
        assert_eq!(report.notify_to_work.samples, 20);
        assert_eq!(report.compile.samples, 5);
        assert_eq!(report.cached_load.samples, 20);
        assert!(report.notify_to_work.p50 >= report.notify_call.p50 / 2);
        assert!(report.rss_three_plugins_bytes > 0);
        let text = report.to_string();
        assert!(text.contains("notify -> new work"), "{text}");
        eprintln!("{text}");
    }

    /// The full benchmark: `cargo test --release -p hashwatt --lib
    /// plugin::bench::tests::full -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark; run explicitly"]
    fn full() {
        println!("{}", run(5000).unwrap());
    }
}
