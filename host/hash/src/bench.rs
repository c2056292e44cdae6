//! `hashwatt bench hash`: hashrate and notify latency of every backend.
//!
//! Everything is measured through [`Workers`], the way the host mines, so
//! the figures include batching and hand-off overhead. Notify latency is
//! the time from [`Workers::notify`] until the last worker has asked for the
//! new work, as recorded by the workers themselves (the measuring thread
//! sleeps, so it does not steal a core from them).
//!
//! [`ablation`] measures what each standard mining shortcut gains, one at a
//! time on the four-lane SHA-NI kernel (see [`Ablation`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::workers::{WorkSource, WorkUnit, Workers};
use crate::{Backend, HashError};

/// What to benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Backend name; `None` or `"all"` = every available backend.
    pub backend: Option<String>,
    /// Threads for the all-thread figures; 0 = all cores.
    pub threads: usize,
    /// Seconds per hashrate measurement.
    pub seconds: f64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            backend: None,
            threads: 0,
            seconds: 2.0,
        }
    }
}

/// Figures of one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendBench {
    /// Backend name.
    pub name: &'static str,
    /// Hashes per second with one worker thread.
    pub single_hs: f64,
    /// Hashes per second with `threads` worker threads.
    pub all_hs: f64,
    /// Worker threads used for `all_hs` and the latency figures.
    pub threads: usize,
    /// Median notify-to-all-workers latency, microseconds.
    pub notify_p50_us: f64,
    /// 99th percentile notify-to-all-workers latency, microseconds.
    pub notify_p99_us: f64,
    /// Number of notifies measured.
    pub notify_samples: usize,
}

/// The benchmark's result.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// CPU model string from /proc/cpuinfo (or "unknown").
    pub cpu_model: String,
    /// Seconds per hashrate measurement.
    pub seconds: f64,
    /// One entry per backend, in the order measured.
    pub backends: Vec<BackendBench>,
}

/// Number of notifies timed per backend.
const NOTIFY_SAMPLES: usize = 200;

/// Runs the benchmark described by `opts`.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, HashError> {
    if !(opts.seconds.is_finite() && opts.seconds > 0.0 && opts.seconds <= 3600.0) {
        return Err(HashError::BadOptions(format!(
            "seconds must be in (0, 3600], got {}",
            opts.seconds
        )));
    }
    let backends: Vec<Arc<dyn Backend>> = match opts.backend.as_deref() {
        None | Some("all") => crate::available(),
        Some(name) => vec![crate::by_name(name).ok_or_else(|| {
            HashError::UnknownBackend {
                name: name.to_string(),
                available: crate::available()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?],
    };
    let threads = if opts.threads == 0 {
        crate::workers::default_threads()
    } else {
        opts.threads
    };
    let dur = Duration::from_secs_f64(opts.seconds);
    let mut out = Vec::with_capacity(backends.len());
    for b in backends {
        let single_hs = hashrate(&b, 1, dur);
        let all_hs = if threads == 1 {
            single_hs
        } else {
            hashrate(&b, threads, dur)
        };
        let mut lat = notify_latencies(&b, threads, NOTIFY_SAMPLES);
        lat.sort_by(f64::total_cmp);
        out.push(BackendBench {
            name: b.name(),
            single_hs,
            all_hs,
            threads,
            notify_p50_us: percentile(&lat, 0.50),
            notify_p99_us: percentile(&lat, 0.99),
            notify_samples: lat.len(),
        });
    }
    Ok(BenchReport {
        cpu_model: cpu_model(),
        seconds: opts.seconds,
        backends: out,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

/// The CPU model from /proc/cpuinfo, "unknown" elsewhere.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| {
                    l.starts_with("model name")
                        || l.starts_with("Model")
                        || l.starts_with("Hardware")
                })
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Feeds whole-range units (target zero: nothing found) and records, per
/// worker, when it last asked for work and for which epoch.
struct BenchSource {
    base: Instant,
    epoch: AtomicU64,
    seen: Box<[(AtomicU64, AtomicU64)]>,
}

impl BenchSource {
    fn new(threads: usize) -> Self {
        BenchSource {
            base: Instant::now(),
            epoch: AtomicU64::new(0),
            seen: (0..threads)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl WorkSource for BenchSource {
    fn next_work(&self, worker: usize) -> Option<WorkUnit> {
        let now = self.base.elapsed().as_nanos() as u64;
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some((e, t)) = self.seen.get(worker) {
            t.store(now, Ordering::Relaxed);
            e.store(epoch, Ordering::Release);
        }
        let header: [u8; 80] = core::array::from_fn(|i| (i as u8) ^ (epoch as u8) ^ (worker as u8));
        Some(WorkUnit {
            header,
            target: [0; 32],
            nonce_start: 0,
            nonce_end: u32::MAX,
            tag: epoch,
        })
    }

    fn found(&self, _worker: usize, _unit: &WorkUnit, _nonce: u32) {}
}

fn hashrate(backend: &Arc<dyn Backend>, threads: usize, dur: Duration) -> f64 {
    let src = Arc::new(BenchSource::new(threads));
    let w = Workers::start(backend.clone(), threads, true, src);
    std::thread::sleep(Duration::from_millis(100));
    let (h0, t0) = (w.hashes(), Instant::now());
    std::thread::sleep(dur);
    let (h1, t1) = (w.hashes(), Instant::now());
    (h1 - h0) as f64 / (t1 - t0).as_secs_f64()
}

/// Latencies in microseconds of `samples` notifies, 1–3 ms apart.
fn notify_latencies(backend: &Arc<dyn Backend>, threads: usize, samples: usize) -> Vec<f64> {
    let src = Arc::new(BenchSource::new(threads));
    let w = Workers::start(backend.clone(), threads, true, src.clone());
    let n = w.threads();
    std::thread::sleep(Duration::from_millis(50));
    let mut lat = Vec::with_capacity(samples);
    let mut jitter = 0x2545_f491u32;
    for _ in 0..samples {
        jitter ^= jitter << 13;
        jitter ^= jitter >> 17;
        jitter ^= jitter << 5;
        std::thread::sleep(Duration::from_micros(1000 + (jitter % 2000) as u64));
        let epoch = src.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let sent = src.base.elapsed().as_nanos() as u64;
        w.notify();
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            std::thread::sleep(Duration::from_micros(200));
            let all = src
                .seen
                .iter()
                .take(n)
                .all(|(e, _)| e.load(Ordering::Acquire) >= epoch);
            if all {
                let last = src
                    .seen
                    .iter()
                    .take(n)
                    .map(|(_, t)| t.load(Ordering::Relaxed))
                    .max()
                    .unwrap_or(sent);
                lat.push(last.saturating_sub(sent) as f64 / 1e3);
                break;
            }
            if Instant::now() > deadline {
                // Counted as a 200 ms outlier rather than dropped.
                lat.push(200_000.0);
                break;
            }
        }
    }
    lat
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "CPU: {}  ({} s per measurement)",
            self.cpu_model, self.seconds
        )?;
        writeln!(
            f,
            "{:<16} {:>12} {:>14} {:>8} {:>13} {:>13}",
            "backend", "1 thread", "all threads", "threads", "notify p50", "notify p99"
        )?;
        for b in &self.backends {
            writeln!(
                f,
                "{:<16} {:>9.2} MH/s {:>9.2} MH/s {:>8} {:>10.0} µs {:>10.0} µs",
                b.name,
                b.single_hs / 1e6,
                b.all_hs / 1e6,
                b.threads,
                b.notify_p50_us,
                b.notify_p99_us
            )?;
        }
        Ok(())
    }
}

impl BenchReport {
    /// The report as a JSON object (rates in H/s, latencies in µs).
    pub fn to_json(&self) -> String {
        let backends: Vec<_> = self
            .backends
            .iter()
            .map(|b| {
                serde_json::json!({
                    "name": b.name,
                    "single_thread_hs": b.single_hs,
                    "all_threads_hs": b.all_hs,
                    "threads": b.threads,
                    "notify_p50_us": b.notify_p50_us,
                    "notify_p99_us": b.notify_p99_us,
                    "notify_samples": b.notify_samples,
                })
            })
            .collect();
        serde_json::json!({
            "cpu_model": self.cpu_model,
            "seconds": self.seconds,
            "backends": backends,
        })
        .to_string()
    }
}

/// A level of the mining-shortcut ablation. Each level adds one shortcut to
/// the previous one, so the gain of a shortcut is the rate of its level over
/// the rate of the level before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ablation {
    /// No shortcut: per nonce three whole 64-round compressions (IV and
    /// header bytes 0..64, then bytes 64..80 with the nonce, then the digest
    /// block), every schedule word computed, the exact eight-word comparison.
    Full,
    /// Block 0's state (the midstate) computed once per header; per nonce
    /// two whole compressions.
    Midstate,
    /// The first hash's second block precomputed: it starts at round 4 from
    /// the per-header state, with constant message+K words for rounds 4..=15
    /// and the constant `msg1` schedule terms.
    Precomputed,
    /// The second hash's constant padding: message+K words for rounds
    /// 8..=15 and the `msg1` term of the padding words are per-header.
    Padding,
    /// Early exit: the second hash stops after rounds 60–61 unless some
    /// lane's final top word can meet the target. The production kernel.
    EarlyExit,
}

impl Ablation {
    /// Every level, in the order each adds its shortcut.
    pub const ALL: [Ablation; 5] = [
        Ablation::Full,
        Ablation::Midstate,
        Ablation::Precomputed,
        Ablation::Padding,
        Ablation::EarlyExit,
    ];

    /// Short name, as in reports: `full`, `midstate`, `precomputed`,
    /// `padding`, `early-exit`.
    pub fn name(self) -> &'static str {
        match self {
            Ablation::Full => "full",
            Ablation::Midstate => "midstate",
            Ablation::Precomputed => "precomputed",
            Ablation::Padding => "padding",
            Ablation::EarlyExit => "early-exit",
        }
    }
}

/// The result of [`ablation`].
#[derive(Clone, Debug, PartialEq)]
pub struct AblationReport {
    /// CPU model string from /proc/cpuinfo (or "unknown").
    pub cpu_model: String,
    /// The kernel the levels are built from (`sha-ni-x4-avx`).
    pub kernel: &'static str,
    /// Seconds measured per level.
    pub seconds: f64,
    /// Single-thread hashes per second of each level, in [`Ablation::ALL`]
    /// order.
    pub levels: Vec<(Ablation, f64)>,
}

/// Interleaved passes per level in [`ablation`]; the best pass is kept.
const ABLATION_PASSES: u32 = 3;

/// Measures every [`Ablation`] level of the four-lane SHA-NI kernel on one
/// thread for about `seconds` each (split in interleaved passes, best kept,
/// to damp noise from other load), with a target nothing meets (the common
/// mining path).
///
/// It exists because each mining shortcut should justify itself by a
/// measurement, not by folklore: the production kernel applies them all at
/// once, so only these reduced kernels show what each one is worth on this
/// CPU. Errors with [`HashError::UnknownBackend`] on a CPU without SHA-NI
/// (or AVX2), and with [`HashError::BadOptions`] unless `seconds` is in
/// (0, 3600].
pub fn ablation(seconds: f64) -> Result<AblationReport, HashError> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err(HashError::BadOptions(format!(
            "seconds must be in (0, 3600], got {seconds}"
        )));
    }
    let scanners = ablation_scanners().ok_or_else(|| HashError::UnknownBackend {
        name: "sha-ni-x4-avx".to_string(),
        available: crate::available()
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let pass = Duration::from_secs_f64(seconds / ABLATION_PASSES as f64);
    let mut best = vec![0f64; scanners.len()];
    for _ in 0..ABLATION_PASSES {
        for (s, r) in scanners.iter().zip(best.iter_mut()) {
            *r = r.max(crate::measure(&**s, pass));
        }
    }
    Ok(AblationReport {
        cpu_model: cpu_model(),
        kernel: "sha-ni-x4-avx",
        seconds,
        levels: Ablation::ALL.into_iter().zip(best).collect(),
    })
}

/// One scanner per level, in [`Ablation::ALL`] order, if the CPU has them.
fn ablation_scanners() -> Option<Vec<Box<dyn Backend>>> {
    #[cfg(target_arch = "x86_64")]
    {
        Ablation::ALL
            .into_iter()
            .map(|l| crate::shani::AblationScanner::new(l).map(|s| Box::new(s) as Box<dyn Backend>))
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

impl std::fmt::Display for AblationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "CPU: {}  ({}, 1 thread, {} s per level)",
            self.cpu_model, self.kernel, self.seconds
        )?;
        writeln!(
            f,
            "{:<12} {:>12} {:>14} {:>9}",
            "level", "rate", "vs previous", "vs full"
        )?;
        let full = self.levels.first().map_or(f64::NAN, |l| l.1);
        let mut prev = f64::NAN;
        for &(level, hs) in &self.levels {
            let step = if prev.is_nan() {
                "-".to_string()
            } else {
                format!("{:+.1} %", (hs / prev - 1.0) * 100.0)
            };
            writeln!(
                f,
                "{:<12} {:>7.2} MH/s {:>14} {:>8.2}x",
                level.name(),
                hs / 1e6,
                step,
                hs / full
            )?;
            prev = hs;
        }
        Ok(())
    }
}

impl AblationReport {
    /// The report as a JSON object (rates in H/s).
    pub fn to_json(&self) -> String {
        let levels: Vec<_> = self
            .levels
            .iter()
            .map(|(l, hs)| serde_json::json!({ "level": l.name(), "hs": hs }))
            .collect();
        serde_json::json!({
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "seconds": self.seconds,
            "levels": levels,
        })
        .to_string()
    }
}
