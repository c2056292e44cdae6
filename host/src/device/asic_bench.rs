//! `hashwatt bench asic`: the ASIC device against the chip-chain emulator
//! on a real pseudo-terminal, measuring what the driver costs and adds:
//! solutions per second against the rate the emulator was set to, the
//! latency from a nonce leaving the "chips" to its solution reaching the
//! miner, and the host CPU it takes per 1,000 nonces a second.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashwatt_asic::board::emulated::EmulatedBoard;
use hashwatt_asic::chain::ChainConfig;
use hashwatt_asic::emulator::{Emulator, EmulatorConfig};
use hashwatt_asic::model::Model;
use hashwatt_work::{Extranonce2Range, Job, JobSpec, Target, WorkKindSpec};

use super::asic::{AsicDevice, AsicSettings};
use super::{Device, Solution, SolutionSink, Task};

/// What the bench is asked to do.
#[derive(Debug, Clone)]
pub struct AsicBench {
    /// Chip model emulated.
    pub model: Model,
    /// Chips on the chain.
    pub chips: usize,
    /// Nonces per second the emulator is set to deliver.
    pub nonce_rate: f64,
    /// Nonces to measure over.
    pub nonces: u64,
}

struct Recorder {
    emu: Arc<Emulator>,
    seen: Mutex<Vec<(Instant, Option<Duration>)>>,
}

impl SolutionSink for Recorder {
    fn solution(&self, _device: usize, s: Solution) {
        let now = Instant::now();
        let latency = self
            .emu
            .sent_at(s.nonce)
            .map(|t| now.saturating_duration_since(t));
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((now, latency));
    }
}

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn job() -> anyhow::Result<Job> {
    Ok(Job::validate(JobSpec {
        id: "bench".into(),
        kind: WorkKindSpec::Extended {
            coinbase_prefix: vec![1; 50],
            extranonce1: vec![2; 4],
            extranonce2_size: 4,
            coinbase_suffix: vec![3; 50],
            merkle_branches: vec![vec![4; 32]],
        },
        prev_hash: vec![7; 32],
        version: 0x2000_0000,
        version_mask: 0x1fff_e000,
        nbits: 0x1703_a30c,
        ntime: 1_700_000_000,
        clean: true,
    })?)
}

/// Runs the bench and returns the report.
pub fn run(b: &AsicBench) -> anyhow::Result<String> {
    // Each nonce stands for 4096 hashes: the emulator's CPU cost stays
    // small next to the driver's.
    let difficulty = 1.0 / 1_048_576.0;
    let hashrate = b.nonce_rate * difficulty * 4_294_967_296.0;
    let emu = Arc::new(Emulator::spawn(EmulatorConfig {
        model: b.model,
        chips: b.chips,
        hashrate_hs: hashrate,
        difficulty,
    })?);
    let board = EmulatedBoard::new(b.chips, 25.0);
    let tmp = std::env::temp_dir().join(format!("hashwatt-bench-asic-{}", std::process::id()));
    let settings = AsicSettings {
        name: "bench".into(),
        port: emu.tty_path().to_path_buf(),
        chain: ChainConfig {
            expected_chips: Some(b.chips),
            min_nonce_difficulty: Some(difficulty),
            ..ChainConfig::new(b.model)
        },
        voltage_mv: None,
        thermal: Default::default(),
        autotune: None,
        tune_bounds: None,
        tune_settle: Duration::from_secs(60),
        tune_dir: tmp.clone(),
        job_interval: Duration::from_millis(500),
        dead_after: Duration::from_secs(60),
        retry: Duration::from_secs(1),
    };
    // The board's sensors read the emulated dies; keep them near ambient.
    let device = AsicDevice::start(settings, board.board("bench"));
    let recorder = Arc::new(Recorder {
        emu: emu.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let sink: Arc<dyn SolutionSink> = recorder.clone();
    device.attach(0, Arc::downgrade(&sink));
    device.assign(
        Task {
            id: 1,
            job: job()?,
            extranonce2: Extranonce2Range {
                size: 4,
                start: 0,
                count: 1 << 32,
            },
            versions: 0..hashwatt_work::rolling_space(0x1fff_e000),
            ntime_roll: 0,
            share_target: Target::from_difficulty(difficulty)?,
        },
        true,
    );
    // Warm up: the chain comes up and the first nonces arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorder.seen.lock().map(|s| s.len()).unwrap_or(0) < 50 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no nonces from the emulated chain: {:?}",
            device.telemetry().problem
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let start_count = recorder.seen.lock().map(|s| s.len()).unwrap_or(0);
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let emu0: u64 = emu.stats().hashes_computed;
    let limit = t0 + Duration::from_secs_f64((b.nonces as f64 / b.nonce_rate) * 3.0 + 30.0);
    while recorder.seen.lock().map(|s| s.len()).unwrap_or(0) < start_count + b.nonces as usize {
        anyhow::ensure!(
            Instant::now() < limit,
            "the chain stalled: {:?}",
            device.telemetry()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let emu_hashes = emu.stats().hashes_computed - emu0;
    let seen = recorder.seen.lock().map(|s| s.clone()).unwrap_or_default();
    drop(device);
    let _ = std::fs::remove_dir_all(&tmp);
    let window = &seen[start_count..];
    let n = window.len();
    let rate = n as f64 / secs;
    let mut lat: Vec<Duration> = window.iter().filter_map(|(_, l)| *l).collect();
    lat.sort_unstable();
    let pct = |p: f64| -> Duration {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    // The emulator hashes on this machine too: take its share out of the
    // process CPU by the rate of the best backend.
    let backend_rate = hashwatt_hash::select(None)
        .ok()
        .and_then(|s| {
            s.calibration.and_then(|c| {
                c.rates
                    .iter()
                    .find(|(name, _)| *name == s.backend.name())
                    .map(|(_, r)| *r)
            })
        })
        .unwrap_or(0.0);
    let emu_cpu = if backend_rate > 0.0 {
        emu_hashes as f64 / backend_rate
    } else {
        0.0
    };
    let host_cpu = (cpu - emu_cpu).max(0.0);
    let mut out = String::new();
    writeln!(
        out,
        "ASIC device vs emulator: {} × {}, {} nonces measured",
        b.model, b.chips, n
    )?;
    writeln!(
        out,
        "  solutions/s     {rate:.1} vs {:.1} configured ({:.1} %)",
        b.nonce_rate,
        100.0 * rate / b.nonce_rate
    )?;
    writeln!(
        out,
        "  nonce→solution  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms ({} timed)",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lat.len()
    )?;
    writeln!(
        out,
        "  process CPU     {cpu:.2} s over {secs:.2} s; emulator hashing ≈ {emu_cpu:.2} s"
    )?;
    writeln!(
        out,
        "  host driver CPU {:.1} % of a core per 1,000 nonces/s verified",
        100.0 * host_cpu / secs / (rate / 1000.0).max(1e-9)
    )?;
    Ok(out)
}
