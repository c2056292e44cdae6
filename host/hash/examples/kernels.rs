//! Single-thread inner-loop rate of every available backend, best of
//! several interleaved runs (the machine may be shared):
//! `cargo run --release -p hashwatt-hash --example kernels -- [RUNS] [MS]`.

use std::time::Duration;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(5);
    let ms = args.get(1).copied().unwrap_or(300);
    let backends = hashwatt_hash::available();
    let mut best = vec![0f64; backends.len()];
    for _ in 0..runs {
        for (b, r) in backends.iter().zip(best.iter_mut()) {
            *r = r.max(hashwatt_hash::measure(&**b, Duration::from_millis(ms)));
        }
    }
    for (b, r) in backends.iter().zip(best) {
        println!("{:<16} {:>8.2} MH/s", b.name(), r / 1e6);
    }
}
