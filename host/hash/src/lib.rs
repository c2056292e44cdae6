//! SHA-256d nonce scanning for hashwatt.
//!
//! This crate is the appliance's CPU hashing core: it scans nonce ranges of
//! Bitcoin block headers for hashes that meet a target, and it verifies the
//! nonces ASICs report. Backends are chosen at run time: every backend the
//! CPU supports is listed by [`available`], and [`select`] picks one by name
//! or by a short calibration run (feature flags alone mislead: SHA-NI is the
//! fastest on AMD Zen, 16-lane AVX-512 on Intel Xeon).

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod backend;
pub mod bench;
pub mod scalar;
pub mod sha256;
#[cfg(target_arch = "x86_64")]
pub mod shani;
pub mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use backend::{Backend, Prepared};
pub use sha256::sha256d;
pub use workers::{WorkSource, WorkUnit, Workers};

/// Errors of backend selection and benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The named backend does not exist or this CPU cannot run it.
    #[error("unknown or unsupported hash backend {name:?} (available: {available})")]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// Comma-separated names this CPU supports.
        available: String,
    },
    /// Invalid benchmark options.
    #[error("invalid benchmark options: {0}")]
    BadOptions(String),
}

/// Scans `count` nonces from `start` of `header` with `backend` and returns
/// the nonces whose SHA-256d meets `target` (big-endian), sorted. Ranges are
/// clipped at `u32::MAX`.
pub fn scan(
    backend: &dyn Backend,
    header: &[u8; 80],
    target: &[u8; 32],
    start: u32,
    count: u64,
) -> Vec<u32> {
    let job = Prepared::new(header, target);
    let mut out = Vec::new();
    let mut pos = start as u64;
    let end = (start as u64 + count).min(1 << 32);
    while pos < end {
        let n = (end - pos).min(u32::MAX as u64) as u32;
        backend.scan(&job, pos as u32, n, &mut |nonce| out.push(nonce));
        pos += n as u64;
    }
    out.sort_unstable();
    out
}

/// Every backend this CPU supports, fastest-first by a static guess (the
/// real order on a given machine comes from [`calibrate`]).
pub fn available() -> Vec<Arc<dyn Backend>> {
    let mut v: Vec<Arc<dyn Backend>> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use shani::{Isa, ShaNi};
        if let Some(b) = avx512::Avx512x16::new() {
            v.push(Arc::new(b));
        }
        // Measured on Zen 4: the VEX (AVX2) build of the SHA-NI kernels is
        // the fastest, the AVX-512VL build the slowest (EVEX register moves
        // around the legacy-encoded SHA instructions).
        for lanes in [4, 2, 3, 1] {
            for isa in [Isa::Avx, Isa::Sse, Isa::Vl] {
                if let Some(b) = ShaNi::with_isa(lanes, isa) {
                    v.push(Arc::new(b));
                }
            }
        }
        if let Some(b) = avx2::Avx2x8::new() {
            v.push(Arc::new(b));
        }
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(b) = aarch64::ArmSha2x2::new() {
        v.push(Arc::new(b));
    }
    v.push(Arc::new(scalar::Scalar));
    v
}

/// The name of every backend hashwatt has, on any CPU and architecture
/// (`available` lists the subset this CPU runs). Lets a configuration tell
/// a misspelt name from a backend this machine cannot run.
pub const ALL_BACKENDS: &[&str] = &[
    "avx512-x16",
    "sha-ni-x4-avx",
    "sha-ni-x4",
    "sha-ni-x4-vl",
    "sha-ni-x2-avx",
    "sha-ni-x2",
    "sha-ni-x2-vl",
    "sha-ni-x3-avx",
    "sha-ni-x3",
    "sha-ni-x3-vl",
    "sha-ni-x1-avx",
    "sha-ni-x1",
    "sha-ni-x1-vl",
    "avx2-x8",
    "armv8-sha2-x2",
    "scalar",
];

/// The backend called `name`, if this CPU supports it.
pub fn by_name(name: &str) -> Option<Arc<dyn Backend>> {
    available().into_iter().find(|b| b.name() == name)
}

/// Backends worth calibrating: the 16-lane AVX-512 and 8-lane AVX2
/// kernels and the four-lane SHA-NI kernels in each build; the other
/// SHA-NI lane counts, the single-lane variants and the portable one never
/// won a measurement when these exist. Falls back to everything available.
pub fn candidates() -> Vec<Arc<dyn Backend>> {
    const WORTH: [&str; 7] = [
        "armv8-sha2-x2",
        "avx512-x16",
        "sha-ni-x4-avx",
        "sha-ni-x4",
        "sha-ni-x4-vl",
        "sha-ni-x2-avx",
        "avx2-x8",
    ];
    let all = available();
    let fast: Vec<_> = all
        .iter()
        .filter(|b| WORTH.contains(&b.name()))
        .cloned()
        .collect();
    if fast.is_empty() { all } else { fast }
}

/// Result of a calibration run.
#[derive(Clone)]
pub struct Calibration {
    /// The fastest backend measured.
    pub chosen: Arc<dyn Backend>,
    /// Every candidate's single-thread rate in hashes per second, in the
    /// order measured.
    pub rates: Vec<(&'static str, f64)>,
}

impl std::fmt::Debug for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calibration")
            .field("chosen", &self.chosen.name())
            .field("rates", &self.rates)
            .finish()
    }
}

/// A header for measuring: arbitrary but fixed, target zero so nothing is
/// found and every backend takes its common (early-exit) path.
fn bench_job() -> Prepared {
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    Prepared::new(&header, &[0; 32])
}

/// Single-thread rate of `backend` over roughly `duration`.
pub fn measure(backend: &dyn Backend, duration: Duration) -> f64 {
    let job = bench_job();
    let mut sink = 0u32;
    let mut total = 0u64;
    let mut batch = 4096u32;
    let t0 = Instant::now();
    let mut start = 0u32;
    loop {
        backend.scan(&job, start, batch, &mut |n| sink = sink.wrapping_add(n));
        total += batch as u64;
        start = start.wrapping_add(batch) & !(1 << 31);
        let dt = t0.elapsed();
        if dt >= duration {
            std::hint::black_box(sink);
            return total as f64 / dt.as_secs_f64();
        }
        if dt < duration / 50 {
            batch = batch.saturating_mul(2).min(1 << 22);
        }
    }
}

/// Measures each candidate on one thread for about `duration` (split in
/// two interleaved passes, best kept, to damp noise from other load) and
/// returns the fastest. With no candidates the portable backend is chosen
/// unmeasured.
pub fn calibrate(candidates: &[Arc<dyn Backend>], duration: Duration) -> Calibration {
    let mut best = vec![0f64; candidates.len()];
    for _ in 0..2 {
        for (b, r) in candidates.iter().zip(best.iter_mut()) {
            *r = r.max(measure(&**b, duration / 2));
        }
    }
    let chosen = best
        .iter()
        .zip(candidates)
        .max_by(|a, b| a.0.total_cmp(b.0))
        .map(|(_, b)| b.clone())
        .unwrap_or_else(|| Arc::new(scalar::Scalar));
    Calibration {
        chosen,
        rates: candidates.iter().map(|b| b.name()).zip(best).collect(),
    }
}

/// A selected backend and, if it was chosen by calibration, the figures.
#[derive(Clone, Debug)]
pub struct Selected {
    /// The backend to hash with.
    pub backend: Arc<dyn Backend>,
    /// Present when the backend was picked by calibration.
    pub calibration: Option<Calibration>,
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-candidate calibration time used by [`select`].
pub const CALIBRATION_TIME: Duration = Duration::from_millis(120);

/// Picks the backend: by `name` (`None` or `"auto"` = calibrate the
/// [`candidates`] for [`CALIBRATION_TIME`] each). Logs the choice.
pub fn select(name: Option<&str>) -> Result<Selected, HashError> {
    match name {
        Some(n) if n != "auto" => {
            let backend = by_name(n).ok_or_else(|| HashError::UnknownBackend {
                name: n.to_string(),
                available: available()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            tracing::info!(backend = backend.name(), "hash backend selected by name");
            Ok(Selected {
                backend,
                calibration: None,
            })
        }
        _ => {
            let cal = calibrate(&candidates(), CALIBRATION_TIME);
            let figures = cal
                .rates
                .iter()
                .map(|(n, r)| format!("{n}={:.2}MH/s", r / 1e6))
                .collect::<Vec<_>>()
                .join(" ");
            tracing::info!(backend = cal.chosen.name(), %figures, "hash backend selected by calibration");
            Ok(Selected {
                backend: cal.chosen.clone(),
                calibration: Some(cal),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_backend_is_listed_in_all_backends() {
        for b in available() {
            assert!(ALL_BACKENDS.contains(&b.name()), "{} missing", b.name());
        }
    }

    #[test]
    fn block_125552() {
        let h: [u8; 80] = hex::decode("0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695").unwrap().try_into().unwrap();
        let mut t = [0u8; 32];
        t[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x1f]);
        let mut header = h;
        header[76..].fill(0);
        for b in available() {
            let found = scan(&*b, &header, &t, 0x9546a142 - 5, 10);
            assert_eq!(found, vec![0x9546a142], "{}", b.name());
        }
    }

    #[test]
    fn by_name_and_select() {
        assert_eq!(by_name("scalar").unwrap().name(), "scalar");
        assert!(by_name("no-such").is_none());
        assert!(matches!(
            select(Some("no-such")),
            Err(HashError::UnknownBackend { .. })
        ));
        let s = select(Some("scalar")).unwrap();
        assert!(s.calibration.is_none());
    }

    #[test]
    fn calibrate_picks_a_measured_candidate() {
        let c = candidates();
        let cal = calibrate(&c, Duration::from_millis(20));
        assert_eq!(cal.rates.len(), c.len());
        assert!(cal.rates.iter().all(|(_, r)| *r > 0.0));
        let best = cal.rates.iter().map(|r| r.1).fold(0f64, f64::max);
        let chosen = cal
            .rates
            .iter()
            .find(|r| r.0 == cal.chosen.name())
            .unwrap()
            .1;
        assert_eq!(chosen, best);
    }
}
