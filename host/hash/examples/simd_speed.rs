//! Single-thread throughput of the SIMD backends (and the portable one for
//! comparison): `cargo run --release -p hashwatt-hash --example simd_speed
//! [nonces-per-run]`. Prints the best of several runs, since the machine may
//! be shared.

use std::time::Instant;

use hashwatt_hash::{Backend, Prepared};

fn backends() -> Vec<Box<dyn Backend>> {
    let mut v: Vec<Box<dyn Backend>> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(b) = hashwatt_hash::avx512::Avx512x16::new() {
            v.push(Box::new(b));
        }
        if let Some(b) = hashwatt_hash::avx2::Avx2x8::new() {
            v.push(Box::new(b));
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if let Some(b) = hashwatt_hash::aarch64::ArmSha2x2::new() {
            v.push(Box::new(b));
        }
    }
    v.push(Box::new(hashwatt_hash::scalar::Scalar));
    v
}

fn main() {
    let per_run: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1 << 22);
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(91).wrapping_add(7));
    // A difficulty-1 style target: essentially no candidate lanes.
    let mut target = [0u8; 32];
    target[4..6].copy_from_slice(&[0xff, 0xff]);
    let job = Prepared::new(&header, &target);
    for b in backends() {
        let mut best = f64::INFINITY;
        let mut hits = 0u64;
        for run in 0..7u32 {
            let start = run.wrapping_mul(per_run);
            let t = Instant::now();
            b.scan(&job, start, per_run, &mut |_| hits += 1);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{:<16} {:>8.2} MH/s  ({} nonces per run, best of 7, {} hits)",
            b.name(),
            f64::from(per_run) / best / 1e6,
            per_run,
            hits
        );
    }
}
