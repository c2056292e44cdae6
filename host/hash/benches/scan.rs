//! Inner-loop throughput of every available backend: one `scan` call over
//! 16 384 nonces with a target nothing meets (the common mining path).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hashwatt_hash::{Prepared, available};

const NONCES: u32 = 16_384;

fn scan(c: &mut Criterion) {
    let header: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let job = Prepared::new(&header, &[0; 32]);
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(NONCES as u64));
    for b in available() {
        g.bench_function(BenchmarkId::from_parameter(b.name()), |bench| {
            let mut start = 0u32;
            bench.iter(|| {
                let mut hits = 0u32;
                b.scan(&job, start, NONCES, &mut |_| hits += 1);
                start = start.wrapping_add(NONCES);
                hits
            })
        });
    }
    g.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
